"""The browser protocol: every JSON frame the server sends, and the close codes it uses."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson

# Close codes. 1008 is the standard "policy violation"; 4000-4999 are ours.
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY_VIOLATION = 1008
CLOSE_TRY_AGAIN_LATER = 1013
CLOSE_TOO_SLOW = 4001

Frame = str
"""A frame encoded once, then handed as the same object to every viewer that gets it."""

BINARY_SUBPROTOCOL = "pats.binary"
"""A client that offers this WebSocket subprotocol gets every frame as a binary message holding
the same UTF-8 JSON. Text frames must be handed to the server as `str`, which it encodes again
for every viewer; binary ones go out as they were encoded, once."""


def _encode(payload: Mapping[str, Any]) -> Frame:
    return orjson.dumps(payload).decode()


def hello(*, mode: str, source: str, stream: str, track: Iterable[str], worker: str) -> Frame:
    """`worker` is an opaque id of the process serving this socket, for telling workers apart."""
    return _encode(
        {
            "type": "hello",
            "mode": mode,
            "source": source,
            "stream": stream,
            "track": list(track),
            "worker": worker,
        }
    )


def tweet(trimmed: Mapping[str, Any]) -> Frame:
    return _encode({"type": "tweet", "tweet": trimmed})


def tweet_payload(tweet_frame_utf8: bytes) -> memoryview:
    """The tweet object inside a UTF-8 `tweet` frame, without a copy, ready to join a batch."""
    return memoryview(tweet_frame_utf8)[_TWEET_PREFIX_LEN:-1]


def tweets_utf8(payloads: Sequence[bytes | memoryview]) -> bytes:
    """Join tweets (see `tweet_payload`) into one `tweets` batch without re-encoding them."""
    return b"".join((_TWEETS_OPEN, b",".join(payloads), b"]}"))


def tweets(payloads: Sequence[bytes | memoryview]) -> Frame:
    """`tweets_utf8` as text. The join is done on bytes: joining the frames as text costs about
    five times as much whenever one of them holds a character outside Latin-1, as most do."""
    return tweets_utf8(payloads).decode()


_TWEETS_OPEN = b'{"type":"tweets","tweets":['
_TWEET_PREFIX_LEN = len(b'{"type":"tweet","tweet":')


def profile(*, did: str, handle: str | None, name: str | None, avatar: str | None) -> Frame:
    """A Bluesky author's profile, sent after their posts, which went out with the DID only."""
    shown = {"did": did, "handle": handle, "name": name, "avatar": avatar}
    return _encode({"type": "profile", "profile": shown})


def delete(id_str: str) -> Frame:
    return _encode({"type": "delete", "id_str": id_str})


def limit(undelivered: int) -> Frame:
    return _encode({"type": "limit", "undelivered": undelivered})


def skipped(count: int) -> Frame:
    return _encode({"type": "skipped", "count": count})


def status(stream: str, state: str, **details: Any) -> Frame:
    return _encode({"type": "status", "stream": stream, "state": state, **details})


def pending(*, queued: Sequence[str], over_share: Sequence[str], retry_in: float | None) -> Frame:
    """Phrases of this viewer's filter that the upstream does not follow yet. `queued` ones are
    asked for within `retry_in` seconds (the filter connection then restarts, a few seconds
    more); `over_share` ones wait for room in the phrase budget, which others need now. Both
    empty: all of them have been asked for."""
    shown = None if retry_in is None else round(retry_in, 1)
    return _encode(
        {
            "type": "pending",
            "queued": list(queued),
            "over_share": list(over_share),
            "retry_in": shown,
        }
    )


def error(code: str, message: str) -> Frame:
    return _encode({"type": "error", "code": code, "message": message})
