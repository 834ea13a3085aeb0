"""The day's posts read, kept beyond this process: the cost guard's memory.

`DailyMeter` counts what this process reads. A restart, or another worker taking the upstream
over, would start it from zero and buy one more day's cap each time. So `PostLedger`, run beside
the stream by whoever owns the upstream, seeds the meter from two witnesses that outlive it:

* **X's usage endpoint** (`usage.py`), at start, on each (re)connect (at most one check every
  `USAGE_MIN_GAP` seconds) and every `USAGE_INTERVAL` seconds: the project's reads today, and
  whether the project's monthly cap is reached. X's figure can lag behind the stream, so it
  only ever raises the count. A failure (network, 401/403, 429, an answer that is not a usage
  object) is logged once, in plain words, and the count goes on from the other witnesses.
* **the deployment's count** (`upstream.tally.SharedTally`, Redis in a deployment): the owner
  adds its posts in batches (`FLUSH_SECONDS`), raised to what it knows from X, and reads the
  deployment's figure back. Increments that cannot be written (Redis down) are kept and added
  later; a term that ends writes what it holds before it goes (`FINAL_FLUSH_SECONDS`).

The first connection waits for the first answers (`FIRST_SEED_WAIT` at most), so a restarted
server never reads before it knows what was read today.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import trio

from pats_trio.upstream.backoff import doubling
from pats_trio.upstream.lifecycle import RepeatedEvent
from pats_trio.upstream.tally import SHARED_TALLY, SharedTally, TallyUnavailableError
from pats_trio.upstream.x.client import XError, XHTTPError
from pats_trio.upstream.x.cost import DAY_SECONDS, DailyMeter, utc_day
from pats_trio.upstream.x.usage import UsageFormatError, UsageReport, read_usage

LOGGER = logging.getLogger(__name__)

TALLY_NAME = "x-posts"
USAGE_INTERVAL = 300.0
"""Between two checks of X's usage while nothing asks for one: 3 of the 50 requests X allows a
15-minute window."""
USAGE_MIN_GAP = 30.0
"""The least time between two checks, however often the stream reconnects (30 a window)."""
FIRST_SEED_WAIT = 10.0
"""The longest the first connection waits for X's figure and the deployment's count."""
FLUSH_SECONDS = 1.0
"""How long increments gather before they are added to the deployment's count: one round trip
a second however fast posts arrive."""
TALLY_RETRY_FIRST, TALLY_RETRY_CAP = 0.5, 10.0
FINAL_FLUSH_SECONDS = 2.0
DAY_MARGIN_SECONDS = 3600.0
"""How long a day's count outlives its day (for late increments and a clock a little behind)."""


@dataclass
class LedgerStats:
    """How the witnesses answered, for /metrics and the tests."""

    usage_checks: int = 0
    usage_failures: int = 0
    tally_failures: int = 0


class PostLedger:
    """Seeds `meter` from X's usage and the deployment's count, and adds this process's posts
    to the latter. `on_change` is called whenever a seed or a report may have changed whether
    reading may go on."""

    def __init__(
        self,
        meter: DailyMeter,
        fetch_usage: Callable[[], Awaitable[Any]],
        *,
        wall: Callable[[], float] = time.time,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self.meter = meter
        self._fetch_usage = fetch_usage
        self._wall = wall
        self.on_change = on_change
        self.report = UsageReport()
        """X's last answer (empty until one was read)."""
        self.stats = LedgerStats()
        self.pending: dict[int, int] = {}
        """Posts read per UTC day and not yet added to the deployment's count."""
        self._tally: SharedTally | None = None
        self._flush = RepeatedEvent()
        self._check = RepeatedEvent()
        self._checked = RepeatedEvent()
        self._usage_tried = trio.Event()
        self._tally_tried = trio.Event()
        self._usage_failing = False

    @property
    def project_capped(self) -> bool:
        return self.report.project_capped

    def record(self, now: float) -> bool:
        """One post was read at `now`; False once it reached the day's cap."""
        within = self.meter.record(now)
        if self._tally is not None:
            day = utc_day(now)
            self.pending[day] = self.pending.get(day, 0) + 1
            self._flush.set()
        return within

    def refresh(self) -> None:
        """The stream (re)connects: check X's figure again, unless one was read just now."""
        self._check.set()

    async def recheck(self) -> None:
        """Ask X again now and wait for its answer (`FIRST_SEED_WAIT` at most): a stream held
        back by the project's cap retries on what X says now, not on what it said before."""
        checked = self._checked.next_set()
        self._check.set()
        with trio.move_on_after(FIRST_SEED_WAIT):
            await checked.wait()

    async def ready(self) -> None:
        """Until both witnesses answered once, or failed to (`FIRST_SEED_WAIT` at most)."""
        with trio.move_on_after(FIRST_SEED_WAIT):
            await self._usage_tried.wait()
            await self._tally_tried.wait()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Check X's usage and keep the deployment's count, until cancelled."""
        self._tally = tally = SHARED_TALLY.get()
        if tally is None:
            self._tally_tried.set()
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._watch_usage)
                if tally is not None:
                    nursery.start_soon(self._keep_tally, tally)
                task_status.started()
        finally:
            if tally is not None and self.pending:
                with trio.CancelScope(shield=True) as last:
                    last.deadline = trio.current_time() + FINAL_FLUSH_SECONDS
                    try:
                        await self._flush_once(tally)
                    except TallyUnavailableError:
                        LOGGER.warning(
                            "x usage: %d posts read could not be added to the deployment's "
                            "count before this term ended (Redis did not answer)",
                            sum(self.pending.values()),
                        )

    # X's usage endpoint

    async def _watch_usage(self) -> None:
        while True:
            wait = await self._check_usage()
            self._usage_tried.set()
            self._checked.set()
            await trio.sleep(USAGE_MIN_GAP)
            with trio.move_on_after(max(wait - USAGE_MIN_GAP, 0.0)):
                await self._check.wait()

    async def _check_usage(self) -> float:
        """One check; returns how long until the next one unless a reconnect asks sooner."""
        self.stats.usage_checks += 1
        now = self._wall()
        day = utc_day(now)
        try:
            report = read_usage(await self._fetch_usage(), day)
        except (XError, UsageFormatError) as exc:
            self.stats.usage_failures += 1
            if not self._usage_failing:
                self._usage_failing = True
                LOGGER.warning(
                    "x usage: X's usage figures could not be read (%s); the daily cap counts "
                    "%s meanwhile",
                    exc,
                    "the posts this deployment read" if self._tally else "the posts read here",
                )
            if isinstance(exc, XHTTPError) and exc.reset_at is not None:
                return max(exc.reset_at - self._wall(), USAGE_MIN_GAP)
            return USAGE_INTERVAL
        if self._usage_failing:
            self._usage_failing = False
            LOGGER.info("x usage: X's usage figures are read again")
        was_capped, self.report = self.report.project_capped, report
        if report.project_capped and not was_capped:
            LOGGER.warning(
                "x usage: the X project's monthly cap is reached (%s of %s posts); reading "
                "stops until X resets it",
                f"{report.project_usage:,}",
                f"{report.project_cap:,}",
            )
        elif was_capped and not report.project_capped:
            LOGGER.info("x usage: the X project's monthly cap no longer holds; reading resumes")
        if report.today is not None:
            self._seed(now, day, report.today, "X's figure for the project")
        self.on_change()
        return USAGE_INTERVAL

    # the deployment's count

    async def _keep_tally(self, tally: SharedTally) -> None:
        failures = 0
        while True:
            try:
                await self._flush_once(tally)
            except TallyUnavailableError as exc:
                self._tally_tried.set()
                failures += 1
                self.stats.tally_failures += 1
                if failures == 1:
                    LOGGER.warning(
                        "x usage: the deployment's count of posts could not be updated (%s); "
                        "the posts read meanwhile are added once it can be",
                        exc,
                    )
                await trio.sleep(doubling(TALLY_RETRY_FIRST, TALLY_RETRY_CAP, failures - 1))
                continue
            if failures:
                LOGGER.info("x usage: the deployment's count of posts is updated again")
            failures = 0
            self._tally_tried.set()
            await self._flush.wait_until(lambda: bool(self.pending))
            await trio.sleep(FLUSH_SECONDS)

    async def _flush_once(self, tally: SharedTally) -> None:
        """Add what is pending, day by day, and seed the meter with the deployment's figure
        (today's is read even when nothing is pending)."""
        now = self._wall()
        batch = {utc_day(now): 0, **self.pending}
        for day, count in sorted(batch.items()):
            floor = self.meter.today if day == self.meter.day else 0
            ttl = (day + 1) * DAY_SECONDS - now + DAY_MARGIN_SECONDS
            total = await tally.add(TALLY_NAME, day, count, floor=floor, ttl=math.ceil(ttl))
            left = self.pending.get(day, 0) - count
            if left > 0:
                self.pending[day] = left
            else:
                self.pending.pop(day, None)
            if self._seed(now, day, total, "the deployment's count"):
                self.on_change()

    def _seed(self, now: float, day: int, count: int, witness: str) -> bool:
        """Raise the meter to a witness's figure for `day`, saying so when it does."""
        counted = self.meter.today
        if not self.meter.seed(now, day, count):
            return False
        LOGGER.info(
            "x usage: %s says %d posts were read today, %d more than counted here; the cap "
            "counts on from there",
            witness,
            count,
            count - counted,
        )
        return True
