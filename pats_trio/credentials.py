"""Twitter's OAuth 1.0a credentials, kept out of every repr and redacted from foreign text.

A module of its own, below both `config` (which reads them) and the Twitter client (which signs
with them), so that neither imports the other for it.
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
