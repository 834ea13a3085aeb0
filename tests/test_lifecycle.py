"""The shared source lifecycle with a scripted adapter, on Trio's virtual clock.

The Twitter and Bluesky adapters are tested against their emulators (test_runner.py,
test_bluesky.py); these tests pin what the lifecycle does for any adapter.
"""

from __future__ import annotations

import doctest
import logging
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing

from pats_trio.events import Event, StatusEvent, StreamKind
from pats_trio.upstream import lifecycle as lifecycle_module
from pats_trio.upstream import outage as outage_module
from pats_trio.upstream.lifecycle import (
    HandedOver,
    Lifecycle,
    Link,
    RepeatedEvent,
    Retry,
    StreamStalledError,
)
from pats_trio.upstream.source import SourceStats

TIMEOUT = 3600.0  # virtual seconds; this bounds a hang


class RefusedError(Exception):
    """The scripted upstream refused a connection."""

    def __init__(self, retry: Retry) -> None:
        super().__init__(retry.reason)
        self.retry = retry


class Connection:
    """One scripted connection: what the test sends, the adapter reads."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.send, self.receive = trio.open_memory_channel[str](16)
        self.closed = False


class Scripted:
    """An adapter on a scripted upstream; it records what the lifecycle asks of it."""

    def __init__(self, **options: Any) -> None:
        self.connections: list[Connection] = []
        self.refusals: list[Exception] = []
        self.items: list[str] = []
        self.events: list[tuple[StreamKind, Event]] = []
        self.changed = RepeatedEvent()
        self.lifecycle = Lifecycle[str, Connection](
            "scripted",
            self,
            publish=self._publish,
            kinds=("sample", "filter"),
            stats=SourceStats(),
            target="",
            **{"linger": 30.0, "stall": 60.0, **options},
        )

    def _publish(self, kind: StreamKind, event: Event) -> None:
        self.events.append((kind, event))
        self.changed.set()

    def states(self, kind: StreamKind = "sample") -> list[str]:
        return [e.state for k, e in self.events if k == kind and isinstance(e, StatusEvent)]

    def statuses(self) -> list[StatusEvent]:
        return [e for k, e in self.events if k == "sample" and isinstance(e, StatusEvent)]

    async def until(self, predicate: Any) -> None:
        await self.changed.wait_until(lambda: predicate(self))

    @asynccontextmanager
    async def open(self, target: str) -> AsyncIterator[Connection]:
        if self.refusals:
            raise self.refusals.pop(0)
        connection = Connection(target)
        self.connections.append(connection)
        try:
            yield connection
        finally:
            connection.closed = True
            self.changed.set()

    async def read(self, connection: Connection, link: Link[str]) -> None:
        async for item in self.lifecycle.arrivals(connection.receive.receive):
            if item == "end":
                return
            if item == "replaced":
                raise RefusedError(Retry("replaced", "disconnect", 0.0))
            self.items.append(item)
            self.changed.set()

    def failure(self, exc: Exception, link: Link[str]) -> Retry | HandedOver | None:
        if isinstance(exc, StreamStalledError):
            return Retry(str(exc), "stall", link.after_drop())
        if isinstance(exc, RefusedError):
            if exc.retry.reason == "replaced" and self.lifecycle.being_replaced(link):
                return HandedOver("replaced")
            return exc.retry
        return None

    def details(self) -> dict[str, Any]:
        return {"host": "scripted"}


def test_the_docstring_examples_hold() -> None:
    result = doctest.testmod(lifecycle_module)
    assert result.attempted > 0
    assert result.failed == 0


async def test_connects_on_demand_lingers_and_tells_every_kind(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    source = Scripted()
    await nursery.start(source.lifecycle.run)
    with trio.fail_after(TIMEOUT):
        await trio.sleep(100)
        assert source.connections == []
        source.lifecycle.demand(active=True, target="")
        await source.until(lambda s: s.lifecycle.state == "connected")
        [connection] = source.connections
        source.lifecycle.demand(active=False, target="")
        left_at = trio.current_time()
        await source.until(lambda s: s.lifecycle.state == "idle")
    assert connection.closed
    assert 30 <= trio.current_time() - left_at < 31
    assert source.states("sample") == source.states("filter") == ["connecting", "connected", "idle"]
    assert source.statuses()[1].details == {"host": "scripted"}


async def test_a_new_target_waits_for_the_next_connection_by_default(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    source = Scripted(stall=1e6)
    await nursery.start(source.lifecycle.run)
    with trio.fail_after(TIMEOUT):
        source.lifecycle.demand(active=True, target="a")
        await source.until(lambda s: s.lifecycle.state == "connected")
        source.lifecycle.demand(active=True, target="b")
        await trio.sleep(600)
        assert [c.target for c in source.connections] == ["a"]
        await source.connections[0].send.send("end")
        await source.until(lambda s: len(s.connections) == 2)
    assert [c.target for c in source.connections] == ["a", "b"]
    assert source.lifecycle.stats.disconnects == {"stream ended": 1}


async def test_with_replace_after_a_new_target_connects_before_the_old_one_goes(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    source = Scripted(replace_after=1.0)
    await nursery.start(source.lifecycle.run)
    with trio.fail_after(TIMEOUT):
        source.lifecycle.demand(active=True, target="a")
        await source.until(lambda s: s.lifecycle.state == "connected")
        old = source.connections[0]
        source.lifecycle.demand(active=True, target="b")
        await source.until(lambda s: s.lifecycle.serving_target == "b")
        await source.until(lambda _: old.closed)
    assert [c.target for c in source.connections] == ["a", "b"]
    assert source.states() == ["connecting", "connected", "connected"]


async def test_an_old_connection_closed_for_its_replacement_is_a_handover(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    source = Scripted(replace_after=1.0)
    await nursery.start(source.lifecycle.run)
    with trio.fail_after(TIMEOUT):
        source.lifecycle.demand(active=True, target="a")
        await source.until(lambda s: s.lifecycle.state == "connected")
        source.refusals.append(RefusedError(Retry("busy", "http", 5.0)))
        source.lifecycle.demand(active=True, target="b")
        await trio.sleep(2)  # the replacement was refused: viewers, served by "a", hear nothing
        await source.connections[0].send.send("replaced")
        await source.until(lambda s: s.lifecycle.serving_target == "b")
    assert source.lifecycle.stats.disconnects == {"http": 1, "handover": 1}
    assert source.states() == ["connecting", "connected", "connecting", "connected"]


async def test_an_rng_jitters_every_delay_and_fatal_is_an_error(
    nursery: trio.Nursery,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    source = Scripted(rng=random.Random(5))
    source.refusals += [
        RefusedError(Retry("busy", "http", 8.0)),
        RefusedError(Retry("HTTP 401", "fatal", 8.0)),
    ]
    await nursery.start(source.lifecycle.run)
    with trio.fail_after(TIMEOUT):
        source.lifecycle.demand(active=True, target="")
        await source.until(lambda s: s.lifecycle.state == "connected")
    backoff, error = (s for s in source.statuses() if s.state in ("backoff", "error"))
    assert (backoff.state, error.state) == ("backoff", "error")
    for told in (backoff, error):
        assert 4.0 <= told.details["retry_in"] <= 8.0
        assert told.details["retry_in"] == round(told.details["retry_in"], 3)
    assert [r.levelno for r in caplog.records if "HTTP 401" in r.getMessage()] == [logging.ERROR]
    assert source.lifecycle.stats.disconnects == {"http": 1, "fatal": 1}


async def test_an_immediate_failover_is_logged_but_not_told(
    nursery: trio.Nursery,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    source = Scripted()
    source.refusals.append(RefusedError(Retry("refused", "network", 0.0, failover="host 2")))
    await nursery.start(source.lifecycle.run)
    with trio.fail_after(TIMEOUT), caplog.at_level(logging.INFO):
        source.lifecycle.demand(active=True, target="")
        await source.until(lambda s: s.lifecycle.state == "connected")
    assert source.states() == ["connecting", "connecting", "connected"]
    assert "scripted: refused, failing over to host 2" in caplog.text


async def test_silence_for_the_stall_limit_is_a_dead_connection(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    source = Scripted(stall=60.0)
    await nursery.start(source.lifecycle.run)
    with trio.fail_after(TIMEOUT):
        source.lifecycle.demand(active=True, target="")
        await source.until(lambda s: s.lifecycle.state == "connected")
        await trio.sleep(59)
        await source.connections[0].send.send("alive")
        quiet_from = trio.current_time()
        await source.until(lambda s: len(s.connections) == 2)
    assert 60 <= trio.current_time() - quiet_from < 61
    assert source.items == ["alive"]
    assert source.lifecycle.stats.disconnects == {"stall": 1}


async def test_a_failure_the_adapter_does_not_know_is_raised(
    autojump_clock: trio.testing.MockClock,
) -> None:
    source = Scripted()
    source.refusals.append(ValueError("a bug, not the network"))

    async def serve() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(source.lifecycle.run)
            source.lifecycle.demand(active=True, target="")

    with trio.fail_after(TIMEOUT), pytest.raises(ExceptionGroup) as raised:
        await serve()
    assert raised.group_contains(ValueError, depth=None)


async def test_an_outage_logs_its_reason_once_then_a_periodic_still_unreachable_line(
    nursery: trio.Nursery,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    reason = "network error: HandshakeError ([Errno -2] Name or service not known)"
    source = Scripted()
    # Ten minutes of failures every 5 s: 120 retries, four hosts each.
    for n in range(120):
        failover = f"host {n % 4 + 1}" if n % 4 else None
        source.refusals.append(
            RefusedError(Retry(reason, "network", 0.0 if failover else 5.0, failover))
        )
    await nursery.start(source.lifecycle.run)
    with trio.fail_after(TIMEOUT), caplog.at_level(logging.INFO):
        source.lifecycle.demand(active=True, target="")
        await source.until(lambda s: s.lifecycle.state == "connected")
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert sum(reason in line for line in lines) <= 12, lines
    assert lines[0].startswith(f"scripted: {reason}")
    still = [line for line in lines if "still unreachable" in line]
    assert 1 <= len(still) <= 3, lines
    assert "reachable again after" in lines[-1]


def test_the_outage_log_docstring_examples_hold() -> None:
    result = doctest.testmod(outage_module)
    assert result.attempted > 0
    assert result.failed == 0
