"""How an upstream outage reads in the log: its reason once, then a "still unreachable" line
every `STILL_UNREACHABLE_EVERY` seconds, not one line per retry.

A Bluesky host that cannot be resolved fails every few seconds on each of four hosts; a line per
attempt buries the one thing the operator needs (why) under hundreds of copies. `OutageLog` is
pure: it takes the time and the failure, and says what to log, so the lifecycle keeps its I/O.

>>> log = OutageLog()
>>> log.failed("DNS failure", now=0.0)
'DNS failure'
>>> log.failed("DNS failure", now=5.0) is None
True
>>> log.failed("DNS failure", now=61.0)
'still unreachable after 3 failed attempts in 61s (latest: DNS failure)'
>>> log.recovered(now=70.0)
'reachable again after 70s and 3 failed attempts'
"""

from __future__ import annotations

from dataclasses import dataclass

STILL_UNREACHABLE_EVERY = 60.0
"""Seconds between two "still unreachable" lines while every retry fails."""


@dataclass
class OutageLog:
    """The failures in a row since the last established connection."""

    every: float = STILL_UNREACHABLE_EVERY
    started_at: float | None = None
    """When the first failure of the current outage happened; None while connected."""
    attempts: int = 0
    logged_at: float = 0.0
    kind: str = ""
    """The class of the failure last logged ("network", "http", "fatal"...)."""

    def failed(self, reason: str, *, now: float, kind: str = "") -> str | None:
        """A failure at `now`: the line to log, or None when the last one still says it. A
        failure of another `kind` is news, and is logged as it is."""
        self.attempts += 1
        if self.started_at is None or kind != self.kind:
            if self.started_at is None:
                self.started_at = now
            self.logged_at, self.kind = now, kind
            return reason
        if now - self.logged_at < self.every:
            return None
        self.logged_at = now
        return (
            f"still unreachable after {self.attempts} failed attempts in "
            f"{now - self.started_at:.0f}s (latest: {reason})"
        )

    def recovered(self, *, now: float) -> str | None:
        """A connection was established: the line that closes an outage of several failures."""
        started_at, attempts = self.started_at, self.attempts
        self.started_at, self.attempts = None, 0
        if started_at is None or attempts < 2:
            return None
        return f"reachable again after {now - started_at:.0f}s and {attempts} failed attempts"
