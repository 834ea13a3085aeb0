"""How late this process's event loop runs.

Every viewer of a worker shares its one Trio loop, so a blocking call anywhere (a library that
connects synchronously, a slow parse) stalls them all at once, and nothing else shows it: a
stalled loop answers no health check either until it is free again. A task that asks to wake
every `TICK_SECONDS` measures how late it wakes; /metrics shows that as a histogram, and a
lateness of `STALL_SECONDS` or more is logged.
"""

from __future__ import annotations

import bisect
import logging

import trio

LOGGER = logging.getLogger(__name__)

TICK_SECONDS = 0.25
STALL_SECONDS = 0.5
LOG_EVERY_SECONDS = 60.0
"""At most one stall line this often: an overloaded worker runs late at every tick."""
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
"""Upper bounds in seconds, as Prometheus histograms count them (a +Inf bucket follows)."""


class LoopLag:
    """Plain counters, read by the metrics collector at scrape time."""

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        """Wake-ups by lateness bucket, not cumulative; the last one is past every bound."""
        self.total_seconds = 0.0
        self.stalls = 0
        self._unlogged = 0
        self._unlogged_worst = 0.0
        self._logged_at = -LOG_EVERY_SECONDS

    @property
    def samples(self) -> int:
        return sum(self.counts)

    def record(self, late: float, now: float) -> None:
        self.counts[bisect.bisect_left(BUCKETS, late)] += 1
        self.total_seconds += late
        if late < STALL_SECONDS:
            return
        self.stalls += 1
        self._unlogged += 1
        self._unlogged_worst = max(self._unlogged_worst, late)
        if now - self._logged_at >= LOG_EVERY_SECONDS:
            LOGGER.warning(
                "the event loop stalled, up to %.2fs late (%d %s since the last such line): "
                "something blocked it",
                self._unlogged_worst,
                self._unlogged,
                "stall" if self._unlogged == 1 else "stalls",
            )
            self._logged_at, self._unlogged, self._unlogged_worst = now, 0, 0.0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Until cancelled."""
        task_status.started()
        while True:
            due = trio.current_time() + TICK_SECONDS
            await trio.sleep_until(due)
            now = trio.current_time()
            self.record(max(0.0, now - due), now)
