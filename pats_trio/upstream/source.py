"""What every upstream source offers the broker, whichever network it reads."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import trio

from pats_trio.events import Event, StreamKind

Publish = Callable[[StreamKind, Event], None]
"""How a source hands an event for one stream kind's viewers to the broker."""

DISCONNECT_REASONS = (
    "stream ended",
    "stall",
    "network",
    "http",
    "fatal",
    "disconnect",
    "handover",
    "no rules",
)
"""Reason classes for `SourceStats.disconnects`; "fatal" is anything that needs a person;
"handover" is an old connection the upstream closed because its replacement opened; "no rules"
an X stream refused (409) because the app had no rules."""


@dataclass
class SourceStats:
    """Counters over a source's life, for logs, tests and metrics; every source keeps these
    (a source adds its own in a subclass), so the metrics read them all alike."""

    connects: int = 0
    tweets: int = 0
    duplicates: int = 0
    stall_warnings: int = 0
    withheld: int = 0
    unknown: int = 0
    malformed: int = 0
    oversized: int = 0
    disconnects: Counter[str] = field(default_factory=Counter)
    """Connections that ended or failed, by reason class (see `DISCONNECT_REASONS`)."""


class Upstream(Protocol):
    def demand(self, kind: StreamKind, *, active: bool, track: str = "") -> None:
        """Whether anyone watches `kind`, and for filter the union of phrases they need."""

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve demand until cancelled; cancelling closes every upstream connection."""

    def state_of(self, kind: StreamKind) -> str:
        """The connection state viewers of `kind` were last told."""

    def retry_in_of(self, kind: StreamKind) -> float:
        """Seconds of the current backoff for `kind`, else 0."""

    def stats_of(self, kind: StreamKind) -> SourceStats:
        """Counters for metrics."""

    def resume_point(self) -> int | None:
        """Where a successor could pick this source up, or None if it cannot replay."""

    def resume_from(self, point: int) -> None:
        """Before `run`: start at a predecessor's `resume_point`, not at the live edge."""


UpstreamFactory = Callable[[Publish], Upstream]
"""Builds a fresh upstream that publishes with the given function (a new owner starts clean)."""
