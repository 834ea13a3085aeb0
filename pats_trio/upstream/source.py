"""What every upstream source offers the broker, whichever network it reads."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import trio

from pats_trio.events import Event, StreamKind
from pats_trio.upstream.runner import RunnerStats

Publish = Callable[[StreamKind, Event], None]


class Upstream(Protocol):
    def demand(self, kind: StreamKind, *, active: bool, track: str = "") -> None:
        """Whether anyone watches `kind`, and for filter the union of phrases they need."""

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve demand until cancelled; cancelling closes every upstream connection."""

    def state_of(self, kind: StreamKind) -> str:
        """The connection state viewers of `kind` were last told."""

    def retry_in_of(self, kind: StreamKind) -> float:
        """Seconds of the current backoff for `kind`, else 0."""

    def stats_of(self, kind: StreamKind) -> RunnerStats:
        """Counters for metrics."""

    def resume_point(self) -> int | None:
        """Where a successor could pick this source up, or None if it cannot replay."""

    def resume_from(self, point: int) -> None:
        """Before `run`: start at a predecessor's `resume_point`, not at the live edge."""


UpstreamFactory = Callable[[Publish], Upstream]
"""Builds a fresh upstream that publishes with the given function (a new owner starts clean)."""
