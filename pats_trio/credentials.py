"""Credentials (Twitter's OAuth 1.0a set, X's Bearer token), out of every repr and redacted.

A module of its own, below both `config` (which reads them) and the clients (which sign or
send them), so that neither imports the other for it.
"""

from __future__ import annotations

from dataclasses import dataclass

MIN_REDACTED_LENGTH = 4


@dataclass(frozen=True, slots=True)
class Credentials:
    """OAuth 1.0a user-context credentials. The repr shows none of them."""

    consumer_key: str
    consumer_secret: str
    access_token: str
    access_token_secret: str

    def __repr__(self) -> str:
        return (
            "Credentials(consumer_key='***', consumer_secret='***', "
            "access_token='***', access_token_secret='***')"
        )

    def redact(self, text: str) -> str:
        """`text` with every credential replaced, for messages built from foreign input."""
        for value in (
            self.consumer_key,
            self.consumer_secret,
            self.access_token,
            self.access_token_secret,
        ):
            if len(value) >= MIN_REDACTED_LENGTH:
                text = text.replace(value, "***")
        return text


@dataclass(frozen=True, slots=True)
class BearerToken:
    """X's app-only Bearer token (API v2). The repr shows none of it."""

    value: str

    def __repr__(self) -> str:
        return "BearerToken('***')"

    def redact(self, text: str) -> str:
        """`text` with the token replaced, for messages built from foreign input."""
        if len(self.value) >= MIN_REDACTED_LENGTH:
            text = text.replace(self.value, "***")
        return text
