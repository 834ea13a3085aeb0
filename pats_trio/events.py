"""What an upstream source hands to the hub: each message already trimmed and encoded once."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Literal

from pats_trio import frames
from pats_trio.matching import tweet_terms
from pats_trio.prepared_frames import PreparedFrame
from pats_trio.tweets import TweetShapeError, trim

LOGGER = logging.getLogger(__name__)

StreamKind = Literal["sample", "filter"]
STREAM_KINDS: tuple[StreamKind, ...] = ("sample", "filter")


@dataclass(frozen=True, slots=True)
class TweetEvent:
    """A tweet for viewers: `frame` is shared by all of them, `terms` drives routing."""

    id_str: str
    frame: frames.Frame
    terms: frozenset[str]
    shows: tuple[str, ...] = ()
    """Other tweets the card shows and drops with them (a retweet's original), so that a delete
    of one of those reaches this tweet's viewers."""
    frame_utf8: bytes = field(init=False, repr=False, compare=False)
    """`frame` in UTF-8, for viewers that asked for binary frames."""
    payload: memoryview = field(init=False, repr=False, compare=False)
    """The tweet object alone, a view into `frame_utf8`: batches are joined as bytes, which
    costs a fraction of joining the frames as text (see `frames.tweets`)."""
    prepared: PreparedFrame = field(init=False, repr=False, compare=False)
    """The frame's wire bytes, built once per form and shared by every viewer that gets the
    same form (`prepared_frames.py`)."""

    def __post_init__(self) -> None:
        utf8 = self.frame.encode()
        object.__setattr__(self, "frame_utf8", utf8)
        object.__setattr__(self, "payload", frames.tweet_payload(utf8))
        object.__setattr__(self, "prepared", PreparedFrame(utf8))


@dataclass(frozen=True, slots=True)
class NoticeEvent:
    """A frame for the stream's viewers (delete, withheld, limit); a delete goes only to the
    viewers who could hold the tweet (see `routed.py`)."""

    frame: frames.Frame
    deletes: str | None = None
    """The id of a tweet this notice takes back, so history forgets it too."""
    phrases: frozenset[str] | None = None
    """Only for the viewers who follow one of these phrases (a rule X refused), if given."""


@dataclass(frozen=True, slots=True)
class StatusEvent:
    """The upstream connection changed state; new viewers get the latest one too."""

    state: str
    frame: frames.Frame
    details: dict[str, Any]


Event = TweetEvent | NoticeEvent | StatusEvent


def status_event(kind: StreamKind, state: str, **details: Any) -> StatusEvent:
    return StatusEvent(state, frames.status(kind, state, **details), details)


def tweet_event(status: dict[str, Any], *, source: str = "twitter") -> TweetEvent | None:
    """Trim and encode once; a tweet the browser could not show is logged and skipped."""
    try:
        trimmed = trim(status, source=source)
    except TweetShapeError as exc:
        LOGGER.warning("skipping malformed tweet: %s", exc)
        return None
    original = trimmed.get("retweeted_status")
    original_id = original.get("id_str") if isinstance(original, dict) else None
    shows = (original_id,) if isinstance(original_id, str) else ()
    return TweetEvent(trimmed["id_str"], frames.tweet(trimmed), tweet_terms(trimmed), shows)
