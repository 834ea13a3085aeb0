"""How upstream events reach every worker's hub, and how viewers' keywords reach the upstream.

`MemoryBroker` runs the upstream in this process (one worker). `RedisBroker` lets one process per
deployment own the upstream and feeds every worker through a Redis stream.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import trio

from pats_trio.events import Event, StreamKind
from pats_trio.upstream.source import Upstream


class Sink(Protocol):
    """The hub, as a broker sees it."""

    def route(self, kind: StreamKind, event: Event) -> None:
        """Hand an event to the viewers it concerns."""

    def remember(self, kind: StreamKind, event: Event) -> None:
        """Keep an old event for new viewers' history, without sending it to anyone."""


@dataclass(frozen=True, slots=True)
class DeploymentStats:
    """What a broker that shares one upstream among workers counts, for /metrics."""

    connected: bool
    """Whether this worker reads the shared feed now (else its viewers see `degraded`)."""
    lag_seconds: float
    """How far behind the feed's newest entry this worker's reader was at its last read."""
    published: int
    """Events this worker published to the feed while it owned the upstream."""
    publish_failures: int
    """Events it could not publish while it owned the upstream."""
    terms_of_office: int
    """Times this worker took the upstream lease."""


class Broker(Protocol):
    upstream: Upstream | None
    """The upstream this process runs now or ran last, if any."""
    owner: bool
    """Whether this process runs the deployment's upstream now."""

    def demand(self, kind: StreamKind, *, active: bool, track: str = "") -> None:
        """This worker's viewers: whether anyone watches `kind`, and the union of their track."""

    async def run(
        self, sink: Sink, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Deliver events to `sink` until cancelled."""

    def health(self) -> dict[str, Any]:
        """What /readyz reports about the broker; `ready` is False when viewers get no feed."""

    def phrases_elsewhere(self) -> frozenset[str]:
        """Phrases other workers' viewers follow: they share the upstream's phrase limit."""

    def deployment_stats(self) -> DeploymentStats | None:
        """The shared feed's numbers for /metrics; None when this process's upstream is its own."""
