"""The event loop's lateness: a blocked loop stalls every viewer, so it must show."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing

from pats_trio.looplag import BUCKETS, STALL_SECONDS, TICK_SECONDS, LoopLag

TIMEOUT = 60


@asynccontextmanager
async def running(lag: LoopLag) -> AsyncIterator[None]:
    async with trio.open_nursery() as nursery:
        await nursery.start(lag.run)
        yield
        nursery.cancel_scope.cancel()


async def test_a_blocked_loop_is_counted_as_a_stall_and_logged(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    lag = LoopLag()
    with trio.fail_after(TIMEOUT), caplog.at_level(logging.WARNING, "pats_trio.looplag"):
        async with running(lag):
            await trio.sleep(10 * TICK_SECONDS + TICK_SECONDS / 2)
            assert (lag.samples, lag.stalls, lag.total_seconds) == (10, 0, 0.0)
            # The loop held for a second: time passes and no task runs, as under a blocking call.
            autojump_clock.jump(1.0)
            await trio.sleep(TICK_SECONDS * 1.5)  # the late wake-up, then one on time
    assert lag.stalls == 1
    late = 1.0 - TICK_SECONDS / 2
    assert lag.total_seconds == pytest.approx(late)
    assert lag.counts[BUCKETS.index(1.0)] == 1  # in (0.5, 1.0]
    assert lag.samples == 10 + 1 + 1
    [record] = caplog.records
    assert record.getMessage() == (
        f"the event loop stalled, up to {late:.2f}s late (1 stall since the last such line): "
        "something blocked it"
    )


async def test_an_overloaded_loop_logs_one_line_a_minute_not_one_per_tick(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    lag = LoopLag()
    with trio.fail_after(10 * TIMEOUT), caplog.at_level(logging.WARNING, "pats_trio.looplag"):
        async with running(lag):
            for _ in range(80):  # 80 stalls over 70 s
                await trio.sleep(TICK_SECONDS / 2)
                autojump_clock.jump(STALL_SECONDS + TICK_SECONDS)
            await trio.sleep(TICK_SECONDS / 2)  # the last one noticed
    assert lag.stalls == 80
    first, second = (record.getMessage() for record in caplog.records)
    assert "(1 stall since" in first
    assert "(69 stalls since" in second


async def test_lateness_under_the_stall_bound_is_measured_but_not_logged(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    lag = LoopLag()
    with trio.fail_after(TIMEOUT), caplog.at_level(logging.WARNING, "pats_trio.looplag"):
        async with running(lag):
            await trio.sleep(TICK_SECONDS / 2)
            autojump_clock.jump(TICK_SECONDS / 2 + STALL_SECONDS / 2)
            await trio.sleep(TICK_SECONDS)
    assert lag.stalls == 0
    assert lag.total_seconds == pytest.approx(STALL_SECONDS / 2)
    assert caplog.records == []
