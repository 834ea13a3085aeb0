"""The browser protocol: every JSON frame the server sends, and the close codes it uses."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson

# Close codes. 1008 is the standard "policy violation"; 4000-4999 are ours.
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY_VIOLATION = 1008
CLOSE_TRY_AGAIN_LATER = 1013
CLOSE_TOO_SLOW = 4001

Frame = str
"""A frame encoded once, then handed as the same object to every viewer that gets it."""


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


def tweets(encoded_tweets: Iterable[Frame]) -> Frame:
    """Join already-encoded `tweet` frames into one `tweets` batch without re-encoding them.

    Each `tweet` frame is `{"type":"tweet","tweet":{...}}`; the payload starts at a fixed offset.
    """
    inner = ",".join(frame[_TWEET_PREFIX_LEN:-1] for frame in encoded_tweets)
    return '{"type":"tweets","tweets":[' + inner + "]}"


_TWEET_PREFIX_LEN = len('{"type":"tweet","tweet":')


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


def error(code: str, message: str) -> Frame:
    return _encode({"type": "error", "code": code, "message": message})
