"""Counts that belong to the deployment, not to the process that runs the upstream now.

A source that counts what it costs (X's posts read per UTC day) must not start again from zero
when its process restarts, or when another worker takes the upstream over: each restart would
buy one more day's cap. Whoever runs a term of office with a place to keep such counts (the
Redis broker) sets `SHARED_TALLY` around the upstream's `run`, as it does `SHARED_PACING`; a
source that finds none counts in its process alone.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Protocol


class TallyUnavailableError(Exception):
    """The shared tally could not be reached; the caller keeps its increments and tries later."""


class SharedTally(Protocol):
    async def add(self, name: str, day: int, count: int, *, floor: int, ttl: float) -> int:
        """Add `count` to the deployment's figure `name` for UTC `day` (raised to `floor` if it
        is less: another witness saw more) and return the figure. The figure expires `ttl`
        seconds from now. Raises `TallyUnavailableError`."""


SHARED_TALLY: ContextVar[SharedTally | None] = ContextVar("SHARED_TALLY", default=None)
"""The tally of the term of office an upstream runs in; read once as the upstream's run starts."""
