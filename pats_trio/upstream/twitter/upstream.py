"""Twitter's v1.1 streams as an upstream: one runner for sample, one for filter."""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial

import trio

from pats_trio.config import Settings
from pats_trio.events import STREAM_KINDS, StreamKind
from pats_trio.upstream.backoff import ConnectionBudget
from pats_trio.upstream.source import Publish, SourceStats
from pats_trio.upstream.twitter.runner import STALL_SECONDS, ConnectFn, StreamRunner


class TwitterUpstream:
    """Both stream kinds, each with its own lifecycle, connection budget and backoff."""

    def __init__(
        self,
        publish: Publish,
        connectors: Mapping[StreamKind, ConnectFn],
        *,
        source: str = "twitter",
        linger: float = Settings.linger_seconds,
        debounce: float = Settings.filter_debounce_seconds,
        stall: float = STALL_SECONDS,
        min_reconnect: float = Settings.min_reconnect_seconds,
        max_connects_per_window: int = Settings.max_connects_per_5min,
        delimited: bool = Settings.twitter_delimited,
    ) -> None:
        self.runners: dict[StreamKind, StreamRunner] = {
            kind: StreamRunner(
                kind,
                connectors[kind],
                partial(publish, kind),
                linger=linger,
                debounce=debounce,
                source=source,
                delimited=delimited,
                stall=stall,
                budget=ConnectionBudget(
                    min_interval=min_reconnect, max_per_window=max_connects_per_window
                ),
            )
            for kind in STREAM_KINDS
        }

    def demand(self, kind: StreamKind, *, active: bool, track: str = "") -> None:
        self.runners[kind].demand(active=active, track=track if kind == "filter" else "")

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            for runner in self.runners.values():
                await nursery.start(runner.run)
            task_status.started()

    def state_of(self, kind: StreamKind) -> str:
        return self.runners[kind].state

    def retry_in_of(self, kind: StreamKind) -> float:
        return self.runners[kind].retry_in

    def stats_of(self, kind: StreamKind) -> SourceStats:
        return self.runners[kind].stats

    def resume_point(self) -> int | None:
        """The v1.1 streams cannot replay: a new connection starts at the live edge."""
        return None

    def resume_from(self, point: int) -> None:
        pass
