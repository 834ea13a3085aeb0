"""The in-process broker: this process owns the upstream and its hub is the only reader."""

from __future__ import annotations

from typing import Any

import trio

from pats_trio.broker import DeploymentStats, Sink
from pats_trio.events import STREAM_KINDS, StreamKind
from pats_trio.upstream.source import Upstream, UpstreamFactory


class MemoryBroker:
    """Demand goes straight to the upstream, and its events straight to the hub."""

    def __init__(self, make_upstream: UpstreamFactory) -> None:
        self._make_upstream = make_upstream
        self._demand: dict[StreamKind, tuple[bool, str]] = dict.fromkeys(STREAM_KINDS, (False, ""))
        self.upstream: Upstream | None = None
        self.owner = True
        """Without Redis, every process owns its upstream."""

    def demand(self, kind: StreamKind, *, active: bool, track: str = "") -> None:
        self._demand[kind] = (active, track)
        if self.upstream is not None:
            self.upstream.demand(kind, active=active, track=track)

    async def run(
        self, sink: Sink, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        upstream = self._make_upstream(sink.route)
        for kind, (active, track) in self._demand.items():
            upstream.demand(kind, active=active, track=track)
        self.upstream = upstream
        await upstream.run(task_status=task_status)

    def health(self) -> dict[str, Any]:
        return {"mode": "memory", "ready": self.upstream is not None}

    def phrases_elsewhere(self) -> frozenset[str]:
        return frozenset()

    def deployment_stats(self) -> DeploymentStats | None:
        return None
