"""OAuth 1.0a as the streaming API reads it: whose request this is, and whether it is signed right.

The check is oauthlib's own server-side `SignatureOnlyEndpoint`: the signatures our client sends
are verified by an independent implementation, not by the code that made them.
"""

from __future__ import annotations

import string
from typing import Any

from oauthlib.oauth1 import RequestValidator, SignatureOnlyEndpoint
from oauthlib.oauth1.rfc5849.utils import parse_authorization_header

from pats_trio.credentials import Credentials

Account = tuple[str, str]
"""A credential set as the streaming API counts standing connections: consumer key, access token."""

ANONYMOUS: Account = ("", "")
"""Every request without OAuth parameters counts as this one account."""


def account_of(authorization: str | None) -> Account:
    """The credential set an Authorization header names; `ANONYMOUS` without one.

    This groups connections and checks nothing: whether the signature holds is `OAuthCheck`'s job.
    """
    if authorization is None:
        return ANONYMOUS
    try:
        params = dict(parse_authorization_header(authorization))
    except ValueError:
        return ANONYMOUS
    return (params.get("oauth_consumer_key", ""), params.get("oauth_token", ""))


class _Validator(RequestValidator):  # type: ignore[misc]
    """Knows one consumer and one access token, like a single Twitter app and account."""

    enforce_ssl = False  # the emulator serves plain HTTP on loopback
    # Twitter's keys are letters and digits (access tokens also "-"); accept any length.
    safe_characters = frozenset(string.ascii_letters + string.digits + "-_")
    client_key_length = (1, 256)
    access_token_length = (1, 256)
    nonce_length = (1, 64)
    dummy_client = "dummyclientkey000000000"
    dummy_access_token = "dummyaccesstoken0000000"

    def __init__(self, credentials: Credentials) -> None:
        super().__init__()
        self.credentials = credentials

    def validate_timestamp_and_nonce(self, *args: Any, **kwargs: Any) -> bool:
        return True

    def validate_client_key(self, client_key: str, request: Any) -> bool:
        return client_key == self.credentials.consumer_key

    def validate_access_token(self, client_key: str, token: str, request: Any) -> bool:
        return token == self.credentials.access_token

    def get_client_secret(self, client_key: str, request: Any) -> str:
        return self.credentials.consumer_secret

    def get_access_token_secret(self, client_key: str, token: str, request: Any) -> str:
        return self.credentials.access_token_secret


class OAuthCheck:
    """Verifies that a request is signed with exactly these credentials."""

    def __init__(self, credentials: Credentials) -> None:
        self._endpoint = SignatureOnlyEndpoint(_Validator(credentials))

    def verifies(self, method: str, uri: str, body: str | None, headers: dict[str, str]) -> bool:
        valid, _ = self._endpoint.validate_request(
            uri, http_method=method, body=body or None, headers=headers
        )
        return bool(valid)
