"""Readiness and Prometheus metrics: GET /readyz and GET /metrics, read live from the hub.

Nothing here sits on the hot path. The hub and the runners keep plain integer counters; the
collector reads them (and the viewer counts, states and keyword union) only when scraped.
Each worker gets its own `CollectorRegistry`, so several apps in one process never collide.

No label or value carries a setting: kinds, states and reason classes are fixed vocabularies,
so no credential or URL can reach a scrape.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector
from quart import Quart, Response

from pats_trio.events import STREAM_KINDS
from pats_trio.hub import Hub
from pats_trio.looplag import BUCKETS, STALL_SECONDS, TICK_SECONDS, LoopLag
from pats_trio.upstream.source import DISCONNECT_REASONS, SourceStats
from pats_trio.upstream.x import XUpstream
from pats_trio.upstream.x.cost import utc_day
from pats_trio.worker import Worker

LOGGER = logging.getLogger(__name__)

NAMESPACE = "pats"
UPSTREAM_STATES = ("idle", "connecting", "connected", "backoff", "error", "degraded")

RUNNER_COUNTERS: tuple[tuple[str, str, str], ...] = (
    # (SourceStats field, metric name without _total, help)
    ("tweets", "upstream_tweets", "Tweets received upstream and handed to the hub."),
    ("connects", "upstream_connects", "Upstream connections that answered HTTP 200."),
    ("duplicates", "upstream_duplicates", "Tweets dropped as already seen (filter restarts)."),
    ("stall_warnings", "upstream_stall_warnings", "FALLING_BEHIND warnings from upstream."),
    ("withheld", "upstream_withheld", "Withheld tweets not shown, and user_withheld notices."),
    ("unknown", "upstream_unknown_messages", "Upstream messages of an unknown type, dropped."),
    ("malformed", "upstream_malformed_messages", "Upstream lines that were not JSON, dropped."),
    ("oversized", "upstream_oversized_messages", "Upstream messages over the size cap, dropped."),
)


def readiness(worker: Worker) -> tuple[bool, dict[str, Any]]:
    """Whether this process can serve viewers now, and the state of what that depends on."""
    hub = worker.hub
    if not hub.started:
        return False, {"ready": False, "hub": "starting"}
    body: dict[str, Any] = {
        "hub": "running" if hub.running else "stopped",
        "upstream": {kind: hub.upstream_state(kind) for kind in STREAM_KINDS},
        "viewers": {kind: hub.viewer_count(kind) for kind in STREAM_KINDS},
        "worker": worker.id,
        "pid": os.getpid(),
    }
    broker = hub.broker.health()
    ready = hub.running and bool(broker.pop("ready"))
    body["broker"] = broker
    return ready, {"ready": ready, **body}


class HubCollector(Collector):
    """Reads the hub and its runners at scrape time; yields nothing before serving starts."""

    def __init__(self, hub: Hub) -> None:
        self._hub = hub

    def collect(self) -> Iterator[Metric]:
        hub = self._hub
        if not hub.started:
            return
        yield from _hub_metrics(hub)
        yield from _runner_metrics(hub)
        yield from _broker_metrics(hub)
        yield from _x_metrics(hub)


def _hub_metrics(hub: Hub) -> Iterator[Metric]:
    viewers = GaugeMetricFamily(
        f"{NAMESPACE}_viewers", "WebSocket viewers connected, by stream kind.", labels=["kind"]
    )
    delivered = CounterMetricFamily(
        f"{NAMESPACE}_frames_delivered",
        "Frames queued for viewers, by the viewer's stream kind.",
        labels=["kind"],
    )
    skipped = CounterMetricFamily(
        f"{NAMESPACE}_frames_skipped",
        "Frames dropped because a viewer's queue was full, by the viewer's stream kind.",
        labels=["kind"],
    )
    for kind in STREAM_KINDS:
        viewers.add_metric([kind], hub.viewer_count(kind))
        delivered.add_metric([kind], hub.delivered[kind])
        skipped.add_metric([kind], hub.skipped[kind])
    yield viewers
    yield delivered
    yield skipped
    yield CounterMetricFamily(
        f"{NAMESPACE}_slow_viewer_closes",
        "Viewers closed (code 4001) because their queue stayed full too long.",
        value=hub.evictions,
    )
    yield GaugeMetricFamily(
        f"{NAMESPACE}_filter_union_phrases",
        "Phrases in the keyword union the filter connection carries.",
        value=len(hub.union()),
    )
    yield GaugeMetricFamily(
        f"{NAMESPACE}_hub_running", "1 while the hub runs, else 0.", value=int(hub.running)
    )


def _broker_metrics(hub: Hub) -> Iterator[Metric]:
    broker = hub.broker
    yield GaugeMetricFamily(
        f"{NAMESPACE}_upstream_owner",
        "1 while this process runs the upstream connections (always, without Redis).",
        value=int(broker.upstream is not None and broker.owner),
    )
    stats = broker.deployment_stats()
    if stats is None:
        return
    # Redis is the one broker that shares a feed, so these keep the names they were scraped by.
    yield GaugeMetricFamily(
        f"{NAMESPACE}_redis_connected",
        "1 while this worker reads the Redis stream, else 0 (viewers see a degraded status).",
        value=int(stats.connected),
    )
    yield GaugeMetricFamily(
        f"{NAMESPACE}_redis_lag_seconds",
        "How far behind the newest entry of the Redis stream this worker's reader was.",
        value=stats.lag_seconds,
    )
    yield CounterMetricFamily(
        f"{NAMESPACE}_redis_published",
        "Events this worker published to Redis while it owned the upstream.",
        value=stats.published,
    )
    yield CounterMetricFamily(
        f"{NAMESPACE}_redis_publish_failures",
        "Events this worker could not publish to Redis while it owned the upstream.",
        value=stats.publish_failures,
    )
    yield CounterMetricFamily(
        f"{NAMESPACE}_upstream_terms_of_office",
        "Times this worker took the upstream lease.",
        value=stats.terms_of_office,
    )


def _x_metrics(hub: Hub) -> Iterator[Metric]:
    """What X's posts cost and how its rules stand, while this process runs an X upstream."""
    upstream = hub.broker.upstream
    if not isinstance(upstream, XUpstream):
        return
    meter, stats, rules = upstream.meter, upstream.stats, upstream.rules.stats
    now = upstream.wall()
    yield GaugeMetricFamily(
        f"{NAMESPACE}_x_posts_read_today",
        "Posts read from X this UTC day, by the whole deployment as far as is known (this "
        "process, the deployment's count in Redis, X's usage figures); the cap is "
        "PATS_X_MAX_POSTS_PER_DAY.",
        value=meter.today if meter.day == utc_day(now) else 0,
    )
    yield GaugeMetricFamily(
        f"{NAMESPACE}_x_estimated_spend_today",
        "Posts read this UTC day times PATS_X_PRICE_PER_POST (an estimate, in that currency).",
        value=meter.spend_today(now),
    )
    yield GaugeMetricFamily(
        f"{NAMESPACE}_x_daily_post_cap", "PATS_X_MAX_POSTS_PER_DAY (0: no cap).", value=meter.cap
    )
    yield GaugeMetricFamily(
        f"{NAMESPACE}_x_capped",
        "1 while today's cap holds the stream closed.",
        value=int(meter.capped(now)),
    )
    yield CounterMetricFamily(
        f"{NAMESPACE}_x_posts_read",
        "Posts read from X since the process started.",
        value=meter.total,
    )
    ledger = upstream.ledger
    yield GaugeMetricFamily(
        f"{NAMESPACE}_x_project_capped",
        "1 while X reports the project's monthly cap of posts reached (nothing is read).",
        value=int(ledger.project_capped),
    )
    checks = CounterMetricFamily(
        f"{NAMESPACE}_x_usage_checks",
        "Requests to X's usage endpoint (GET /2/usage/tweets), by outcome.",
        labels=["outcome"],
    )
    checks.add_metric(["ok"], ledger.stats.usage_checks - ledger.stats.usage_failures)
    checks.add_metric(["failed"], ledger.stats.usage_failures)
    yield checks
    yield GaugeMetricFamily(
        f"{NAMESPACE}_x_posts_not_yet_in_redis",
        "Posts read by this owner not yet added to the deployment's count in Redis.",
        value=sum(ledger.pending.values()),
    )
    matched = CounterMetricFamily(
        f"{NAMESPACE}_x_posts_matched",
        "Posts by the rules they matched (matching_rules): ours, or only rules pats-trio did "
        "not make; and posts ours delivered that no viewer's phrase matched (unrouted).",
        labels=["rules"],
    )
    matched.add_metric(["ours"], stats.matched_ours)
    matched.add_metric(["foreign_only"], stats.matched_foreign_only)
    matched.add_metric(["unrouted"], stats.unrouted)
    yield matched
    yield CounterMetricFamily(
        f"{NAMESPACE}_x_posts_routed_on_x_match",
        "Posts no viewer's phrase matched as delivered, shown to the viewers of the one "
        "plain-word phrase of the rule X said they matched.",
        value=stats.routed_on_x_match,
    )
    yield CounterMetricFamily(
        f"{NAMESPACE}_x_posts_unattributable",
        "Posts X said matched our rules that no viewer's phrase matched as delivered, and whose "
        "rules name no one phrase (several phrases packed, or punctuation): dropped.",
        value=stats.unattributable,
    )
    problems = CounterMetricFamily(
        f"{NAMESPACE}_x_stream_problems",
        "Error objects alone on a line of X's stream, never shown to viewers: partial errors "
        "about a referenced post or user, and the others (stream-ending ones included).",
        labels=["kind"],
    )
    problems.add_metric(["partial"], stats.partial_errors)
    problems.add_metric(["other"], stats.problems - stats.partial_errors)
    yield problems
    yield GaugeMetricFamily(
        f"{NAMESPACE}_x_rules", "Rules pats-trio keeps on X.", value=rules.rules
    )
    yield GaugeMetricFamily(
        f"{NAMESPACE}_x_foreign_rules",
        "Rules the X app has that pats-trio did not make (left alone; their posts are billed).",
        value=rules.foreign,
    )
    yield CounterMetricFamily(
        f"{NAMESPACE}_x_rule_requests",
        "Requests to X's rules endpoint (lists, dry runs, adds, deletes).",
        value=upstream.rules.client.requests,
    )
    yield GaugeMetricFamily(
        f"{NAMESPACE}_x_rejected_phrases",
        "Viewers' phrases X refused as rules.",
        value=len(upstream.rules.rejected),
    )
    yield GaugeMetricFamily(
        f"{NAMESPACE}_x_rule_change_waiting",
        "1 while a rule change waits for X's rate limit.",
        value=int(rules.waiting),
    )


def _runner_metrics(hub: Hub) -> Iterator[Metric]:
    upstream = hub.broker.upstream
    stats: dict[str, SourceStats] = {
        kind: upstream.stats_of(kind) if upstream is not None else SourceStats()
        for kind in STREAM_KINDS
    }
    for field, name, help_text in RUNNER_COUNTERS:
        family = CounterMetricFamily(f"{NAMESPACE}_{name}", help_text, labels=["kind"])
        for kind in STREAM_KINDS:
            family.add_metric([kind], getattr(stats[kind], field))
        yield family
    disconnects = CounterMetricFamily(
        f"{NAMESPACE}_upstream_disconnects",
        "Upstream connections that ended or failed, by stream kind and reason class.",
        labels=["kind", "reason"],
    )
    backoff = GaugeMetricFamily(
        f"{NAMESPACE}_upstream_backoff_seconds",
        "The current wait before reconnecting (backoff or error), else 0.",
        labels=["kind"],
    )
    state = GaugeMetricFamily(
        f"{NAMESPACE}_upstream_state",
        "1 for the upstream connection's current state, 0 for the others.",
        labels=["kind", "state"],
    )
    for kind in STREAM_KINDS:
        for reason in DISCONNECT_REASONS:
            disconnects.add_metric([kind, reason], stats[kind].disconnects[reason])
        backoff.add_metric([kind], upstream.retry_in_of(kind) if upstream is not None else 0.0)
        current = hub.upstream_state(kind)
        for state_name in UPSTREAM_STATES:
            state.add_metric([kind, state_name], int(current == state_name))
    yield disconnects
    yield backoff
    yield state


class LoopLagCollector(Collector):
    """The event loop's lateness (see `looplag`), from plain counters at scrape time."""

    def __init__(self, lag: LoopLag) -> None:
        self._lag = lag

    def collect(self) -> Iterator[Metric]:
        lag = self._lag
        cumulative, buckets = 0, []
        for bound, count in zip((*map(str, BUCKETS), "+Inf"), lag.counts, strict=True):
            cumulative += count
            buckets.append((bound, cumulative))
        yield HistogramMetricFamily(
            f"{NAMESPACE}_event_loop_lag_seconds",
            f"How late the event loop woke a task that asked to wake every {TICK_SECONDS} s. "
            "Every viewer of this process waits as long.",
            buckets=buckets,
            sum_value=lag.total_seconds,
        )
        yield CounterMetricFamily(
            f"{NAMESPACE}_event_loop_stalls",
            f"Wake-ups {STALL_SECONDS} s or more late: something blocked the event loop.",
            value=lag.stalls,
        )


def make_registry(worker: Worker) -> CollectorRegistry:
    """A registry of this worker's own: its hub and loop lag, and the process collectors."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(HubCollector(worker.hub))
    registry.register(LoopLagCollector(worker.loop_lag))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


def register_observability(app: Quart, worker: Worker) -> CollectorRegistry:
    """Add GET /readyz and GET /metrics about `worker` to `app`; returns the registry /metrics
    serves."""
    registry = make_registry(worker)

    @app.get("/readyz")
    async def readyz() -> Any:
        ready, body = readiness(worker)
        return body, 200 if ready else 503

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)

    return registry
