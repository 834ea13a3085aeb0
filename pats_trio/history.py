"""Recent tweets, so that a new viewer's page is never empty."""

from __future__ import annotations

import itertools
from collections import deque

from pats_trio.events import STREAM_KINDS, StreamKind, TweetEvent
from pats_trio.matching import Phrase, matches_any

SCAN_SIZE = 1_000
"""Tweets kept per stream kind: a filter viewer's history is picked from these."""


class History:
    """A ring buffer of recent tweets per stream kind, with deleted tweets taken out."""

    def __init__(self, size: int, *, scan: int = SCAN_SIZE) -> None:
        self.size = size
        # Arrival order, not tweet time: it is what viewers saw, and clients' clocks vary.
        self._arrivals = itertools.count()
        self._recent: dict[StreamKind, deque[tuple[int, TweetEvent]]] = {
            kind: deque(maxlen=max(scan, size) if size else 0) for kind in STREAM_KINDS
        }

    def add(self, kind: StreamKind, event: TweetEvent) -> None:
        self._recent[kind].append((next(self._arrivals), event))

    def forget(self, id_str: str) -> None:
        """A deleted tweet must not come back to a new viewer."""
        for recent in self._recent.values():
            for entry in [entry for entry in recent if entry[1].id_str == id_str]:
                recent.remove(entry)

    def recent_for(self, track: tuple[Phrase, ...]) -> list[TweetEvent]:
        """Up to `size` tweets for this viewer, oldest first.

        A sample viewer gets the latest sample tweets. A filter viewer gets the latest tweets from
        either stream that its phrases match: the filter stream only carried the old union.
        """
        if not self.size:
            return []
        if not track:
            return [event for _, event in self._recent["sample"]][-self.size :]
        seen: set[str] = set()
        found: list[TweetEvent] = []
        candidates = sorted((*self._recent["filter"], *self._recent["sample"]), reverse=True)
        for _, event in candidates:
            if event.id_str in seen or not matches_any(track, event.terms):
                continue
            seen.add(event.id_str)
            found.append(event)
            if len(found) == self.size:
                break
        found.reverse()
        return found
