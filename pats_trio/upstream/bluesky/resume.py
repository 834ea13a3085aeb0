"""Where a Jetstream connection resumes, so that no one event can stop the stream for good.

A reconnect resumes a little before the latest ``time_us`` read (the rewind; the replayed posts
are dropped as duplicates). If what ended the connection was an event it could not get past (one
over our message limit, or one the server fails on), the rewind replays that event, it ends the
next connection the same way, and so on forever. `ResumePlan` decides, from values alone, where
each connection starts and with which message limit, so that no resume point fails twice:

* A connection that our message limit closed (1009) is followed by one with a larger, still
  bounded, limit, which reads the event only to learn its ``time_us`` and drop it. Nothing else is
  lost.
* A connection that ends where the previous one did (the latest ``time_us`` read has not moved)
  is a repeat. The first repeat resumes just past that point, without the rewind. Each further
  repeat steps over what follows, blindly, since what ends the connections cannot be read: 1 ms,
  then 2, 4, ... up to `MAX_SKIP_US`. Any post in a step is lost, which the caller logs.

Only connections that were established count. One that ends at the same point counts as a repeat
only if it got as far as that point: it read a message, or our limit closed it, or it started past
the point. A host that accepts and at once closes does not make anything be skipped.
"""

from __future__ import annotations

from dataclasses import dataclass

FIRST_SKIP_US = 1_000
"""The first blind step, small: posts come tens a second on the live firehose, so what follows
the stuck point is usually milliseconds on, and small steps lose the fewest posts beyond it."""
MAX_SKIP_US = 1_000_000
"""The largest blind step, so that a host that keeps failing for its own reasons costs at most a
second of posts at each attempt (and the attempts back off)."""


@dataclass(frozen=True)
class Attempt:
    """What the next connection asks for."""

    cursor: int | None
    """The ``time_us`` to replay from; None: from now."""
    max_message_bytes: int


@dataclass(frozen=True)
class Skip:
    """A blind step over events nothing could read, for the caller to log."""

    stuck_at: int
    """The latest ``time_us`` read, where `repeats` connections in a row ended."""
    resume_at: int
    """The next connection's cursor: anything before it and after `stuck_at` is lost."""
    repeats: int


class ResumePlan:
    """The resume point and message limit of each connection; one instance per upstream.

    >>> plan = ResumePlan(rewind_us=5_000_000, max_message_bytes=1024, large_message_bytes=8192)
    >>> plan.next_attempt(last=20_000_000)
    Attempt(cursor=15000000, max_message_bytes=1024)
    >>> plan.ended(20_000_000, received=True, too_big=True)
    >>> plan.next_attempt(last=20_000_000)
    Attempt(cursor=15000000, max_message_bytes=8192)
    >>> plan.ended(20_000_000, received=True, too_big=True)
    >>> plan.next_attempt(last=20_000_000)
    Attempt(cursor=20000001, max_message_bytes=8192)
    >>> plan.ended(20_000_000, received=False, too_big=True)
    Skip(stuck_at=20000000, resume_at=20001000, repeats=2)
    """

    def __init__(
        self,
        *,
        rewind_us: int,
        max_message_bytes: int,
        large_message_bytes: int,
        first_skip_us: int = FIRST_SKIP_US,
        max_skip_us: int = MAX_SKIP_US,
    ) -> None:
        if large_message_bytes < max_message_bytes:
            raise ValueError("the large message limit must not be below the usual one")
        self._rewind_us = rewind_us
        self._max_message_bytes = max_message_bytes
        self._large_message_bytes = large_message_bytes
        self._first_skip_us = first_skip_us
        self._max_skip_us = max_skip_us
        self._stuck_at: int | None = None
        self._repeats = 0
        self._large = False

    @property
    def repeats(self) -> int:
        """Connections in a row that ended without reading past where the one before ended."""
        return self._repeats

    def next_attempt(self, last: int | None) -> Attempt:
        """Where the next connection starts, given the latest ``time_us`` read (None: none)."""
        limit = self._large_message_bytes if self._large else self._max_message_bytes
        if last is None:
            return Attempt(None, limit)
        if self._stuck_at is None or self._repeats == 0 or last > self._stuck_at:
            return Attempt(max(last - self._rewind_us, 0), limit)
        return Attempt(self._stuck_at + self._step(), limit)

    def ended(self, last: int | None, *, received: bool, too_big: bool) -> Skip | None:
        """An established connection ended.

        `last` is the latest ``time_us`` read by then, `received` whether this connection read
        any message, `too_big` whether our message limit closed it. Returns a `Skip` when the
        next attempt steps blindly over events.
        """
        if last is not None and (self._stuck_at is None or last > self._stuck_at):
            self._stuck_at = last
            self._repeats = 0
            self._large = too_big
            return None
        self._large = self._large or too_big
        if self._stuck_at is None or not (received or too_big or self._repeats > 0):
            return None
        self._repeats += 1
        if self._repeats < 2:
            return None
        return Skip(self._stuck_at, self._stuck_at + self._step(), self._repeats)

    def _step(self) -> int:
        """How far past the stuck point the next attempt starts: just past it, then blindly."""
        if self._repeats < 2:
            return 1
        doublings = min(self._repeats - 2, 32)
        return min(self._first_skip_us << doublings, self._max_skip_us)
