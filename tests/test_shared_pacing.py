"""Reconnect pacing that outlives a term of office, on Trio's virtual clock.

Each term builds a fresh upstream whose own `ConnectionBudget` and backoff start empty; under
`SHARED_PACING` its lifecycle also keeps the deployment's record. `MemoryPacing` is that record in
memory, computed by the same `wait_for_turn` the Redis record uses (`broker/pacing.py`, tested
against a real Redis in test_broker_redis.py).
"""

from __future__ import annotations

import doctest
from collections.abc import Mapping

import trio
import trio.testing

from pats_trio.broker import lease, pacing
from pats_trio.broker.pacing import wait_for_turn
from pats_trio.upstream import backoff
from pats_trio.upstream.backoff import ConnectionBudget
from pats_trio.upstream.lifecycle import SHARED_PACING, Link, Retry
from tests.test_lifecycle import TIMEOUT, RefusedError, Scripted


class MemoryPacing:
    """`SharedPacing` kept in memory, in the virtual clock."""

    def __init__(self) -> None:
        self.attempts: dict[str, list[float]] = {}
        self.not_before: dict[str, float] = {}
        self.ladders: dict[str, dict[str, int]] = {}

    async def delay(self, stream: str, budget: ConnectionBudget | None) -> float:
        now = trio.current_time()
        return wait_for_turn(
            now, self.attempts.get(stream, []), self.not_before.get(stream, 0.0), budget
        )

    async def connecting(self, stream: str) -> None:
        self.attempts.setdefault(stream, []).append(trio.current_time())

    async def backing_off(self, stream: str, seconds: float, ladder: Mapping[str, int]) -> None:
        until = trio.current_time() + seconds
        self.not_before[stream] = max(self.not_before.get(stream, 0.0), until)
        self.ladders[stream] = dict(ladder)

    def ladder(self, stream: str) -> Mapping[str, int]:
        return self.ladders.get(stream, {})

    def connected(self, stream: str) -> None:
        self.ladders[stream] = {}


def budget() -> ConnectionBudget:
    return ConnectionBudget(min_interval=5.0, max_per_window=20)


async def term(shared: MemoryPacing | None, source: Scripted, seconds: float) -> None:
    """Run `source` as one term of office of `seconds`, under `shared` pacing."""
    token = SHARED_PACING.set(shared)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(source.lifecycle.run)
            source.lifecycle.demand(active=True, target="")
            await trio.sleep(seconds)
            nursery.cancel_scope.cancel()
    finally:
        SHARED_PACING.reset(token)


def test_the_docstring_examples_hold() -> None:
    for module in (pacing, lease, backoff):
        result = doctest.testmod(module)
        assert result.failed == 0


async def test_a_new_term_keeps_the_minimum_interval_after_the_last_terms_attempt(
    autojump_clock: trio.testing.MockClock,
) -> None:
    shared = MemoryPacing()
    with trio.fail_after(TIMEOUT):
        await term(shared, Scripted(budget=budget()), 1.0)
        successor = Scripted(budget=budget())
        await term(shared, successor, 10.0)
    [first, second] = shared.attempts["scripted"]
    assert second - first == 5.0
    assert successor.states()[:2] == ["backoff", "connecting"]
    assert successor.statuses()[0].details["reason"] == "pacing reconnects"


async def test_without_shared_pacing_each_term_starts_with_an_empty_budget(
    autojump_clock: trio.testing.MockClock,
) -> None:
    first, second = Scripted(budget=budget()), Scripted(budget=budget())
    with trio.fail_after(TIMEOUT):
        await term(None, first, 1.0)
        started = trio.current_time()
        await term(None, second, 1.0)
    assert len(first.connections) == len(second.connections) == 1
    assert second.states()[0] == "connecting"
    assert trio.current_time() - started == 1.0


async def test_a_new_term_waits_out_the_backoff_the_last_one_began(
    autojump_clock: trio.testing.MockClock,
) -> None:
    shared = MemoryPacing()
    refused = Scripted()
    refused.refusals.append(RefusedError(Retry("rate limited", "http", 60.0)))
    with trio.fail_after(TIMEOUT):
        await term(shared, refused, 1.0)
        assert refused.connections == []
        successor = Scripted(stall=1e6)
        began = trio.current_time()
        await term(shared, successor, 120.0)
    [_, second] = shared.attempts["scripted"]
    assert len(successor.connections) == 1
    assert second - began == 59.0


class Unavailable(Scripted):
    """Answers 503 to every attempt it is told to refuse, and backs off as Twitter asks: the
    HTTP ladder (5 s, 10 s, 20 s, ...) of the link's own `Backoff`."""

    def failure(self, exc: Exception, link: Link[str]) -> Retry | None:
        if isinstance(exc, RefusedError):
            return Retry("HTTP 503", "http", link.backoff.after_http_error(503))
        return super().failure(exc, link)  # type: ignore[return-value]


async def test_a_new_term_climbs_on_from_the_last_terms_backoff_ladder(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Only the end of the wait in progress was shared: the next owner's first failure started
    at the bottom of the ladder again (5 s after two failures had reached 10 s), so owners
    that kept changing kept the account at the fastest retry. The ladder's stage is the
    deployment's too."""
    shared = MemoryPacing()
    first = Unavailable(stall=1e6)
    first.refusals.extend(RefusedError(Retry("", "http", 0.0)) for _ in range(2))
    with trio.fail_after(TIMEOUT):
        await term(shared, first, 6.0)  # 503 at 0 (wait 5 s), 503 at 5 (wait 10 s)
        assert first.connections == []
        successor = Unavailable(stall=1e6)
        successor.refusals.append(RefusedError(Retry("", "http", 0.0)))
        await term(shared, successor, 60.0)
    waits = [s.details["retry_in"] for s in successor.statuses() if s.state == "backoff"]
    # The rest of the last term's 10 s wait, then the third stage of the ladder.
    assert waits == [9.0, 20.0]
    assert len(successor.connections) == 1
    assert shared.ladders["scripted"] == {}
