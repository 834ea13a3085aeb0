"""The in-process broker: demand reaches the upstream, whenever it was said, and events the hub."""

from __future__ import annotations

from typing import Any

import trio

from pats_trio import frames
from pats_trio.broker.memory import MemoryBroker
from pats_trio.events import Event, NoticeEvent, StreamKind
from pats_trio.upstream.source import Publish, SourceStats

TIMEOUT = 10


class ScriptedUpstream:
    """An upstream whose network is this test: it records demand and publishes on cue."""

    def __init__(self, publish: Publish) -> None:
        self.publish = publish
        self.demands: list[tuple[StreamKind, bool, str]] = []
        self.running = trio.Event()

    def demand(self, kind: StreamKind, *, active: bool, track: str = "") -> None:
        self.demands.append((kind, active, track))

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        self.running.set()
        await trio.sleep_forever()

    def state_of(self, kind: StreamKind) -> str:
        return "idle"

    def retry_in_of(self, kind: StreamKind) -> float:
        return 0.0

    def stats_of(self, kind: StreamKind) -> SourceStats:
        return SourceStats()

    def resume_point(self) -> int | None:
        return None

    def resume_from(self, point: int) -> None:
        raise AssertionError("a memory broker never resumes")


class Routed:
    """The hub as the broker sees it."""

    def __init__(self) -> None:
        self.events: list[tuple[StreamKind, Event]] = []

    def route(self, kind: StreamKind, event: Event) -> None:
        self.events.append((kind, event))

    def remember(self, kind: StreamKind, event: Event) -> None:
        raise AssertionError("nothing is older than the process without Redis")


async def test_demand_said_before_the_upstream_runs_reaches_it_and_later_demand_too(
    nursery: trio.Nursery,
) -> None:
    with trio.fail_after(TIMEOUT):
        made: list[ScriptedUpstream] = []

        def make(publish: Publish) -> ScriptedUpstream:
            made.append(ScriptedUpstream(publish))
            return made[-1]

        broker = MemoryBroker(make)
        broker.demand("filter", active=True, track="python")
        health: dict[str, Any] = broker.health()
        assert health == {"mode": "memory", "ready": False}
        sink = Routed()
        await nursery.start(broker.run, sink)
        (upstream,) = made
        assert ("filter", True, "python") in upstream.demands
        broker.demand("sample", active=True)
        assert upstream.demands[-1] == ("sample", True, "")
        assert broker.health()["ready"]
        notice = NoticeEvent(frames.limit(3))
        upstream.publish("filter", notice)
        assert sink.events == [("filter", notice)]
