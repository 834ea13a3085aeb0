"""Several workers sharing one upstream through a real redis-server, in one process.

Each worker is a full app served by hypercorn on its own port, with its own worker id, reading
the same emulator through the Redis broker. The process-level tests (several hypercorn worker
processes, SIGKILL) are in test_scaling.py.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import trio
import trio.lowlevel
from glide import GlideClient
from hypercorn.config import Config
from hypercorn.trio import serve
from trio_websocket import ConnectionClosed, open_websocket_url

from pats_trio.app import PatsApp, create_app
from pats_trio.broker.codec import encode
from pats_trio.broker.pacing import DeploymentPacing
from pats_trio.broker.redis import PRIME_WAIT, RedisBroker, client_config
from pats_trio.config import Settings
from pats_trio.emulator import ConnectionRecord, Emulator, serve_emulator
from pats_trio.emulator.corpus import TweetFactory
from pats_trio.emulator.jetstream import JetstreamEmulator, JetstreamURLs, did_for, serve_jetstream
from pats_trio.events import Event, StreamKind, TweetEvent, tweet_event
from pats_trio.redis_url import parse_redis_url
from pats_trio.upstream.source import Publish, SourceStats
from tests.conftest import settings_for_tests
from tests.redis_server import RedisServer
from tests.support import Viewer, close_code, status

TIMEOUT = 30
LEASE_SECONDS = 2.0


@dataclass
class Worker:
    app: PatsApp
    http_url: str
    ws_url: str
    scope: trio.CancelScope

    @property
    def broker(self) -> RedisBroker:
        broker = self.app.worker.hub.broker
        assert isinstance(broker, RedisBroker)
        return broker


@dataclass
class Deployment:
    redis: RedisServer
    emulator: Emulator
    base_url: str
    nursery: trio.Nursery
    workers: list[Worker]

    async def add_worker(self, name: str, **overrides: Any) -> Worker:
        values: dict[str, Any] = {
            "twitter_stream_url": self.base_url,
            "redis_url": self.redis.url,
            "redis_lease_seconds": LEASE_SECONDS,
            "redis_heartbeat_seconds": 0.2,
            "redis_prefix": "test",
        }
        values.update(overrides)
        app = create_app(settings_for_tests(**values), worker_id=name)
        worker: Worker = await self.nursery.start(_serve_worker, app)
        self.workers.append(worker)
        return worker

    def owners(self) -> list[Worker]:
        return [w for w in self.workers if w.broker.owner]

    async def wait_for_owner(self) -> Worker:
        await wait_for(lambda: bool(self.owners()))
        [owner] = self.owners()
        return owner


async def _serve_worker(app: PatsApp, *, task_status: trio.TaskStatus[Worker]) -> None:
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(serve, app, config)
            http_url = binds[0]
            ws_url = "ws" + http_url.removeprefix("http") + "/ws"
            task_status.started(Worker(app, http_url, ws_url, scope))


@pytest.fixture
async def deployment(nursery: trio.Nursery) -> AsyncIterator[Deployment]:
    redis = RedisServer()
    await redis.start()
    try:
        emulator = Emulator(rate=0, filter_rate=0, seed=3)
        base_url = await nursery.start(serve_emulator, emulator)
        yield Deployment(redis, emulator, base_url, nursery, [])
    finally:
        await redis.stop()


def max_open_at_once(records: Iterable[ConnectionRecord]) -> int:
    """The most connections that were open at the same moment (refused requests don't count)."""
    edges: list[tuple[float, int]] = []
    for record in records:
        if record.status != 200:
            continue
        edges.append((record.opened_at, 1))
        edges.append((record.closed_at if record.closed_at is not None else float("inf"), -1))
    most = current = 0
    for _, step in sorted(edges, key=lambda edge: (edge[0], edge[1])):
        current += step
        most = max(most, current)
    return most


def same_track_overlap(records: Iterable[ConnectionRecord]) -> bool:
    """Two filter connections with the same track open at once: two owners, not a restart."""
    served = [r for r in records if r.status == 200]
    for i, a in enumerate(served):
        for b in served[i + 1 :]:
            a_end = a.closed_at if a.closed_at is not None else float("inf")
            b_end = b.closed_at if b.closed_at is not None else float("inf")
            if a.track == b.track and a.opened_at < b_end and b.opened_at < a_end:
                return True
    return False


def connections(emulator: Emulator, kind: str) -> list[ConnectionRecord]:
    return [record for record in emulator.connections if record.kind == kind]


async def wait_for(predicate: Callable[[], bool]) -> None:
    while True:
        if predicate():
            return
        await trio.sleep(0.02)


async def test_three_workers_share_one_upstream_and_each_viewer_gets_exactly_its_tweets(
    deployment: Deployment,
) -> None:
    with trio.fail_after(TIMEOUT):
        workers = [await deployment.add_worker(f"w{i}") for i in range(3)]
        async with (
            open_websocket_url(workers[0].ws_url) as ws_sample_0,
            open_websocket_url(workers[1].ws_url) as ws_sample_1,
            open_websocket_url(workers[1].ws_url + "?filter=python") as ws_python,
            open_websocket_url(workers[2].ws_url + "?filter=rust") as ws_rust,
        ):
            viewers = [Viewer(ws) for ws in (ws_sample_0, ws_sample_1, ws_python, ws_rust)]
            hellos = [await viewer.next_of("hello") for viewer in viewers]
            assert [h["worker"] for h in hellos] == ["w0", "w1", "w1", "w2"]
            emulator = deployment.emulator
            await emulator.wait_until(
                lambda e: (
                    bool(e.open_connections("sample"))
                    and any(
                        sorted(c.track.split(",")) == ["python", "rust"]
                        for c in e.open_connections("filter")
                    )
                )
            )
            # Let every worker's reader settle on the stream before the tweets go in.
            await wait_for(lambda: all(w.broker.connected for w in workers))
            for i in range(4):
                emulator.inject(status(f"sample {i} about nothing", 100 + i))
            emulator.inject(status("python news", 200))
            emulator.inject(status("rust news", 201))
            emulator.inject(status("python and rust news", 202))

            sample_ids = [str(100 + i) for i in range(4)]
            for viewer in viewers[:2]:
                got = await viewer.tweets(4)
                assert [t["id_str"] for t in got] == sample_ids
            python = await viewers[2].tweets(2)
            rust = await viewers[3].tweets(2)
            assert [t["id_str"] for t in python] == ["200", "202"]
            assert [t["id_str"] for t in rust] == ["201", "202"]

            # Nothing more arrives: no duplicate from another worker or another connection.
            with trio.move_on_after(0.5):
                extra = await viewers[2].tweets(1)
                pytest.fail(f"a duplicate or stray tweet arrived: {extra}")
        assert len(deployment.owners()) == 1
        assert max_open_at_once(connections(emulator, "sample")) == 1
        assert max_open_at_once(connections(emulator, "filter")) <= 2
        assert not same_track_overlap(connections(emulator, "filter"))


async def test_a_new_keyword_on_another_worker_restarts_the_owners_filter_with_the_union(
    deployment: Deployment,
) -> None:
    with trio.fail_after(TIMEOUT):
        first = await deployment.add_worker("a")
        owner = await deployment.wait_for_owner()
        assert owner is first
        second = await deployment.add_worker("b")
        emulator = deployment.emulator
        async with open_websocket_url(first.ws_url + "?filter=python") as ws_a:
            viewer_a = Viewer(ws_a)
            await viewer_a.next_of("hello")
            await emulator.wait_until(
                lambda e: [c.track for c in e.open_connections("filter")] == ["python"]
            )
            async with open_websocket_url(second.ws_url + "?filter=trio") as ws_b:
                viewer_b = Viewer(ws_b)
                assert (await viewer_b.next_of("hello"))["worker"] == "b"
                await emulator.wait_until(
                    lambda e: [c.track for c in e.open_connections("filter")] == ["python,trio"]
                )
                await wait_for(lambda: second.broker.connected)
                emulator.inject(status("trio 0.30 is out", 300))
                emulator.inject(status("python 3.14 is out", 301))
                assert [t["id_str"] for t in await viewer_b.tweets(1)] == ["300"]
                assert [t["id_str"] for t in await viewer_a.tweets(1)] == ["301"]
            # The second viewer left, so its keyword leaves the union (after the linger).
            await emulator.wait_until(
                lambda e: [c.track for c in e.open_connections("filter")] == ["python"]
            )
        # Only the owner ever connected upstream.
        assert first.broker.terms_of_office == 1
        assert second.broker.terms_of_office == 0


async def test_when_the_owner_goes_another_worker_takes_over_within_the_lease(
    deployment: Deployment,
) -> None:
    with trio.fail_after(TIMEOUT):
        first = await deployment.add_worker("first")
        await deployment.wait_for_owner()
        second = await deployment.add_worker("second")
        emulator = deployment.emulator
        async with open_websocket_url(second.ws_url) as ws:
            viewer = Viewer(ws)
            await viewer.next_of("hello")
            await emulator.wait_until(lambda e: bool(e.open_connections("sample")))
            await wait_for(lambda: second.broker.connected)
            emulator.inject(status("before the owner left", 400))
            assert [t["id_str"] for t in await viewer.tweets(1)] == ["400"]

            gone_at = trio.current_time()
            first.scope.cancel()
            await emulator.wait_until(
                lambda e: any(c.opened_at > gone_at for c in e.open_connections("sample"))
            )
            took = trio.current_time() - gone_at
            assert second.broker.owner
            assert took < LEASE_SECONDS
            emulator.inject(status("after the takeover", 401))
            assert [t["id_str"] for t in await viewer.tweets(1)] == ["401"]
        assert max_open_at_once(connections(emulator, "sample")) == 1


async def test_a_redis_restart_degrades_the_feed_and_every_worker_recovers_on_its_own(
    deployment: Deployment,
) -> None:
    with trio.fail_after(TIMEOUT):
        workers = [await deployment.add_worker(f"r{i}") for i in range(2)]
        emulator = deployment.emulator
        async with (
            open_websocket_url(workers[0].ws_url) as ws_0,
            open_websocket_url(workers[1].ws_url) as ws_1,
        ):
            viewers = [Viewer(ws_0), Viewer(ws_1)]
            for viewer in viewers:
                await viewer.next_of("hello")
            await emulator.wait_until(lambda e: bool(e.open_connections("sample")))
            await wait_for(lambda: all(w.broker.connected for w in workers))

            await deployment.redis.stop()
            for viewer in viewers:
                while (await viewer.next_of("status"))["state"] != "degraded":
                    pass
            async with httpx.AsyncClient() as client:
                ready = await client.get(workers[0].http_url + "/readyz")
            assert ready.status_code == 503
            assert ready.json()["broker"]["redis"] == "unreachable"

            await deployment.redis.start()
            await wait_for(lambda: all(w.broker.connected for w in workers))
            await deployment.wait_for_owner()
            await emulator.wait_until(lambda e: bool(e.open_connections("sample")))
            # The new owner publishes again; both viewers, on their old sockets, get the tweet.
            await wait_for(lambda: any(w.broker.published for w in workers))
            emulator.inject(status("after the restart", 500))
            for viewer in viewers:
                assert [t["id_str"] for t in await viewer.tweets(1)] == ["500"]
            async with httpx.AsyncClient() as client:
                ready = await client.get(workers[1].http_url + "/readyz")
            assert ready.status_code == 200


async def test_a_new_worker_reads_history_from_the_stream(deployment: Deployment) -> None:
    with trio.fail_after(TIMEOUT):
        first = await deployment.add_worker("old", history_size=5)
        emulator = deployment.emulator
        async with open_websocket_url(first.ws_url) as ws:
            viewer = Viewer(ws)
            await viewer.next_of("hello")
            await emulator.wait_until(lambda e: bool(e.open_connections("sample")))
            await wait_for(lambda: first.broker.connected)
            for i in range(8):
                emulator.inject(status(f"tweet {i}", 600 + i))
            await viewer.tweets(8)
            later = await deployment.add_worker("new", history_size=5)
            # It serves only once it has read the stream's tail, so the first viewer gets it too.
            assert later.broker.connected
            async with open_websocket_url(later.ws_url) as ws_new:
                newcomer = Viewer(ws_new)
                assert (await newcomer.next_of("hello"))["worker"] == "new"
                got = await newcomer.tweets(5)
        assert [t["id_str"] for t in got] == [str(600 + i) for i in range(3, 8)]


async def test_a_worker_started_while_redis_is_down_serves_degraded_then_recovers(
    deployment: Deployment,
) -> None:
    """It used to connect to Redis with a blocking call, which froze the worker's event loop for
    the connection timeout at every attempt: 18 s to start, and its viewers frozen with it."""
    await deployment.redis.stop()
    with trio.fail_after(TIMEOUT):
        started = trio.current_time()
        worker = await deployment.add_worker("early")
        assert trio.current_time() - started < PRIME_WAIT
        async with httpx.AsyncClient() as client:
            ready = await client.get(worker.http_url + "/readyz")
        assert ready.status_code == 503
        assert ready.json()["broker"]["redis"] == "unreachable"
        async with open_websocket_url(worker.ws_url) as ws:
            viewer = Viewer(ws)
            await viewer.next_of("hello")
            assert (await viewer.next_of("status"))["state"] == "degraded"
            # The event loop keeps running while every Redis command is failing.
            async with httpx.AsyncClient() as client:
                for _ in range(20):
                    with trio.fail_after(0.5):
                        assert (await client.get(worker.http_url + "/healthz")).status_code == 200
                    await trio.sleep(0.1)
            await deployment.redis.start()
            await wait_for(lambda: worker.broker.connected and worker.broker.owner)
            await deployment.emulator.wait_until(lambda e: bool(e.open_connections("sample")))
            deployment.emulator.inject(status("once redis is up", 700))
            assert [t["id_str"] for t in await viewer.tweets(1)] == ["700"]


async def test_metrics_and_readiness_report_redis_ownership_and_lag(
    deployment: Deployment,
) -> None:
    with trio.fail_after(TIMEOUT):
        owner = await deployment.add_worker("m-owner")
        await deployment.wait_for_owner()
        other = await deployment.add_worker("m-other")
        emulator = deployment.emulator
        async with open_websocket_url(other.ws_url) as ws:
            viewer = Viewer(ws)
            await viewer.next_of("hello")
            await emulator.wait_until(lambda e: bool(e.open_connections("sample")))
            await wait_for(lambda: other.broker.connected)
            emulator.inject(status("counted", 1000))
            await viewer.tweets(1)
            async with httpx.AsyncClient() as client:
                metrics = {
                    worker.app.worker.id: (await client.get(worker.http_url + "/metrics")).text
                    for worker in (owner, other)
                }
                ready = (await client.get(other.http_url + "/readyz")).json()
    assert "pats_upstream_owner 1.0" in metrics["m-owner"]
    assert "pats_upstream_owner 0.0" in metrics["m-other"]
    assert "pats_redis_connected 1.0" in metrics["m-other"]
    assert "pats_redis_lag_seconds " in metrics["m-other"]
    published = [
        line
        for line in metrics["m-owner"].splitlines()
        if line.startswith("pats_redis_published_total")
    ]
    # hello-time statuses plus the tweet: the owner put them all on the stream.
    assert published
    assert float(published[0].split()[1]) >= 1
    assert ready["broker"] == {
        "mode": "redis",
        "redis": "connected",
        "worker": "m-other",
        "owner": False,
        "lag_seconds": ready["broker"]["lag_seconds"],
    }
    assert 0 <= ready["broker"]["lag_seconds"] < 5


async def bluesky_deployment(
    deployment: Deployment, *, seed: int, prefix: str
) -> tuple[JetstreamEmulator, dict[str, Any]]:
    """A Jetstream emulator, and the settings for workers that read it through Redis."""
    jetstream = JetstreamEmulator(rate=0, seed=seed)
    urls: JetstreamURLs = await deployment.nursery.start(serve_jetstream, jetstream)
    settings = {
        "source_setting": "bluesky",
        "bluesky_hosts": (urls.jetstream,),
        "bluesky_appview": urls.appview,
        "redis_prefix": prefix,
    }
    return jetstream, settings


async def test_bluesky_keeps_one_firehose_for_the_whole_deployment(
    deployment: Deployment,
) -> None:
    jetstream, bluesky = await bluesky_deployment(deployment, seed=9, prefix="sky")
    with trio.fail_after(TIMEOUT):
        workers = [await deployment.add_worker(f"sky{i}", **bluesky) for i in range(2)]
        async with (
            open_websocket_url(workers[0].ws_url) as ws_sample,
            open_websocket_url(workers[1].ws_url + "?filter=trio") as ws_trio,
        ):
            sample, trio_viewer = Viewer(ws_sample), Viewer(ws_trio)
            await sample.next_of("hello")
            await trio_viewer.next_of("hello")
            await jetstream.wait_until(lambda e: len(e.open_connections()) == 1)
            await wait_for(lambda: all(w.broker.connected for w in workers))
            jetstream.post(did_for("ada"), "structured concurrency with trio")
            jetstream.post(did_for("bob"), "something else entirely")
            got = await sample.tweets(2)
            assert [t["source"] for t in got] == ["bluesky", "bluesky"]
            assert [t["text"] for t in await trio_viewer.tweets(1)] == [
                "structured concurrency with trio"
            ]
        # Two workers, both kinds watched, and the firehose was opened once in all.
        assert len(jetstream.connections) == 1


def phrases(prefix: str, count: int) -> str:
    return ",".join(f"{prefix}{i:03d}" for i in range(count))


async def test_the_phrase_limit_counts_every_workers_viewers(deployment: Deployment) -> None:
    """The limit is the upstream's: a worker used to check only its own viewers, so phrases past
    the limit on another worker were accepted and then never tracked."""
    with trio.fail_after(TIMEOUT):
        workers = [await deployment.add_worker(f"cap{i}") for i in range(2)]
        async with open_websocket_url(workers[0].ws_url + "?filter=" + phrases("a", 250)) as ws_a:
            assert len((await Viewer(ws_a).next_of("hello"))["track"]) == 250
            await wait_for(lambda: len(workers[1].broker.phrases_elsewhere()) == 250)
            async with open_websocket_url(workers[1].ws_url + "?filter=" + phrases("b", 200)) as ws:
                refused = Viewer(ws)
                error = await refused.next_of("error")
                assert error["code"] == "too_many_phrases"
                assert "450" in error["message"]
                with pytest.raises(ConnectionClosed) as closed:
                    await refused.next_frame()
                assert close_code(closed.value) == 1008
            # Up to the limit is fine, shared phrases counted once.
            fits = phrases("a", 100) + "," + phrases("c", 150)
            async with open_websocket_url(workers[1].ws_url + "?filter=" + fits) as ws:
                assert len((await Viewer(ws).next_of("hello"))["track"]) == 250
            # A worker that starts now knows the others' phrases before it takes a viewer.
            late = await deployment.add_worker("cap-late")
            assert set(phrases("a", 250).split(",")) <= late.broker.phrases_elsewhere()
        # Once the first worker's viewer has gone, the second may take the room.
        await wait_for(lambda: not workers[1].broker.phrases_elsewhere())
        async with open_websocket_url(workers[1].ws_url + "?filter=" + phrases("b", 200)) as ws:
            assert len((await Viewer(ws).next_of("hello"))["track"]) == 200


async def test_a_new_bluesky_owner_resumes_where_the_old_one_stopped(
    deployment: Deployment,
) -> None:
    """Jetstream replays from a cursor: the posts made while no worker held the firehose reach
    the viewers once each, instead of being lost to a takeover that started at the live edge."""
    jetstream, bluesky = await bluesky_deployment(deployment, seed=11, prefix="resume")
    with trio.fail_after(TIMEOUT):
        workers = [await deployment.add_worker(f"r{i}", **bluesky) for i in range(2)]
        owner = await deployment.wait_for_owner()
        [survivor] = [w for w in workers if w is not owner]
        async with open_websocket_url(survivor.ws_url) as ws:
            viewer = Viewer(ws)
            await viewer.next_of("hello")
            await jetstream.wait_until(lambda e: len(e.open_connections()) == 1)
            for i in range(3):
                jetstream.post(did_for("ada"), f"before the takeover {i}")
            assert [t["text"] for t in await viewer.tweets(3)] == [
                f"before the takeover {i}" for i in range(3)
            ]
            # The successor's first attempt is refused, so these posts fall in the gap.
            jetstream.refuse_next(1)
            owner.scope.cancel()
            await jetstream.wait_until(lambda e: len(e.connections) == 2)
            for i in range(3):
                jetstream.post(did_for("bob"), f"during the takeover {i}")
            got = await viewer.tweets(3)
            assert [t["text"] for t in got] == [f"during the takeover {i}" for i in range(3)]
            jetstream.post(did_for("cy"), "after the takeover")
            assert [t["text"] for t in await viewer.tweets(1)] == ["after the takeover"]
        refused, resumed = jetstream.connections[1:]
        assert refused.status != 101
        assert resumed.status == 101
        assert resumed.cursor is not None
        assert resumed.replayed >= 3


class BurstUpstream:
    """An upstream that publishes `size` sample tweets at once when told to."""

    def __init__(self, publish: Publish, size: int) -> None:
        self._publish = publish
        self._size = size
        self.go = trio.Event()

    def demand(self, kind: StreamKind, *, active: bool, track: str = "") -> None:
        pass

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await self.go.wait()
        factory = TweetFactory(seed=5)
        for _ in range(self._size):
            event = tweet_event(factory.next_status(int(time.time() * 1000)))
            assert event is not None
            self._publish("sample", event)
        await trio.sleep_forever()

    def state_of(self, kind: StreamKind) -> str:
        return "connected"

    def retry_in_of(self, kind: StreamKind) -> float:
        return 0.0

    def stats_of(self, kind: StreamKind) -> SourceStats:
        return SourceStats()

    def resume_point(self) -> int | None:
        return None

    def resume_from(self, point: int) -> None:
        pass


class CountingSink:
    def __init__(self) -> None:
        self.tweets: list[str] = []

    def route(self, kind: StreamKind, event: Event) -> None:
        if isinstance(event, TweetEvent):
            self.tweets.append(event.id_str)

    def remember(self, kind: StreamKind, event: Event) -> None:
        pass


async def test_a_busy_owner_publishes_a_burst_without_a_round_trip_per_tweet() -> None:
    """A worker fanning out to many viewers gets back to any one task only once per scheduling
    round. Publishing one tweet per round trip then capped the whole deployment at a few dozen
    tweets a second; the owner must send whatever is waiting together."""
    burst = 1_000
    upstreams: list[BurstUpstream] = []

    def make_upstream(publish: Publish) -> BurstUpstream:
        upstreams.append(BurstUpstream(publish, burst))
        return upstreams[-1]

    redis = RedisServer()
    await redis.start()
    try:
        defaults = Settings()
        broker = RedisBroker(
            parse_redis_url(redis.url),
            make_upstream,
            worker_id="busy",
            prefix="burst",
            lease_seconds=defaults.redis_lease_seconds,
            heartbeat_seconds=defaults.redis_heartbeat_seconds,
            maxlen=defaults.redis_stream_maxlen,
        )
        sink = CountingSink()
        rounds = 0

        async def busy_loop() -> None:
            """Stands in for the fan-out: each round of the scheduler costs a millisecond."""
            nonlocal rounds
            while True:
                rounds += 1
                started = time.perf_counter()
                while time.perf_counter() - started < 0.001:
                    pass
                await trio.lowlevel.checkpoint()

        with trio.fail_after(TIMEOUT):
            async with trio.open_nursery() as nursery:
                await nursery.start(broker.run, sink)
                await wait_for(lambda: broker.owner and broker.connected and bool(upstreams))
                nursery.start_soon(busy_loop)
                rounds = 0
                upstreams[-1].go.set()
                await wait_for(lambda: len(sink.tweets) >= burst)
                taken = rounds
                nursery.cancel_scope.cancel()
    finally:
        await redis.stop()
    # Every tweet arrived once, in order, through Redis.
    assert len(sink.tweets) == len(set(sink.tweets)) == burst
    assert broker.published >= burst
    assert broker.publish_failures == 0
    # One round trip per tweet would take at least `burst` rounds.
    assert taken < burst / 5, f"{taken} scheduling rounds to publish {burst} tweets"


def opened(records: Iterable[ConnectionRecord]) -> list[float]:
    return sorted(record.opened_at for record in records if record.status == 200)


async def test_redis_restarts_keep_the_deployments_pacing_and_one_connection_at_a_time(
    deployment: Deployment,
) -> None:
    """Each term of office built a fresh upstream whose connection budget started empty: with
    Redis restarted again and again, every new owner connected at once (2-3 s apart against a
    5 s minimum), and the old owner's connection could still be open. Pacing is the
    deployment's, kept in Redis; a Redis that lost it makes the new owner wait out the old term
    and the minimum interval after it. Each outage here is longer than an owner may run on
    without renewing (0.6 lease), so each costs the owner its term."""
    minimum = 3.0
    # Without the one-stream rule, an overlap shows as two open records instead of a handover.
    emulator = Emulator(rate=0, filter_rate=0, seed=4, one_stream_per_account=False)
    base_url = await deployment.nursery.start(serve_emulator, emulator)
    with trio.fail_after(TIMEOUT):
        workers = [
            await deployment.add_worker(
                f"pace{i}", twitter_stream_url=base_url, min_reconnect_seconds=minimum
            )
            for i in range(2)
        ]
        async with (
            open_websocket_url(workers[0].ws_url) as ws_0,
            open_websocket_url(workers[1].ws_url) as ws_1,
        ):
            viewers = [Viewer(ws_0), Viewer(ws_1)]
            for viewer in viewers:
                await viewer.next_of("hello")
            await emulator.wait_until(lambda e: bool(e.open_connections("sample")))
            for _ in range(3):
                await trio.sleep(1.2)
                await deployment.redis.stop()
                await trio.sleep(LEASE_SECONDS * 0.8)
                await deployment.redis.start()
            restarted_at = trio.current_time()
            await emulator.wait_until(
                lambda e: any(c.opened_at > restarted_at for c in e.open_connections("sample"))
            )
            await wait_for(lambda: all(w.broker.connected for w in workers))
            await wait_for(lambda: any(w.broker.published for w in workers))
            emulator.inject(status("paced", 1200))
            for viewer in viewers:
                assert [t["id_str"] for t in await viewer.tweets(1)] == ["1200"]
    samples = connections(emulator, "sample")
    starts = opened(samples)
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    assert max_open_at_once(samples) == 1
    assert min(gaps) >= minimum - 0.05, f"sample connections {gaps} s apart"


async def test_a_paused_redis_leaves_no_ghost_lease(deployment: Deployment) -> None:
    """A `SET NX PX` that timed out on the client still ran when Redis resumed, so the lease
    belonged to a worker that thought it had failed, and nobody served until it expired. Each
    attempt has its own token, and a worker adopts whatever an earlier attempt of its left."""
    lease_seconds = 3.0
    with trio.fail_after(TIMEOUT):
        workers = [
            await deployment.add_worker(f"ghost{i}", redis_lease_seconds=lease_seconds)
            for i in range(3)
        ]
        emulator = deployment.emulator
        owner = await deployment.wait_for_owner()
        others = [w for w in workers if w is not owner]
        async with open_websocket_url(others[0].ws_url) as ws:
            viewer = Viewer(ws)
            await viewer.next_of("hello")
            await emulator.wait_until(lambda e: bool(e.open_connections("sample")))
            # Longer than the lease's expiry and the client's request timeout: the lease runs
            # out inside Redis, and the attempts made meanwhile time out on their clients. The
            # owner leaves meanwhile, so only those attempts are queued for the free lease.
            deployment.redis.pause()
            await trio.sleep(0.2)
            owner.scope.cancel()
            await trio.sleep(3.3)
            deployment.redis.resume()
            resumed_at = trio.current_time()

            by_id = {w.app.worker.id: w for w in others}
            ghost_since: float | None = None
            longest_ghost = 0.0
            while trio.current_time() - resumed_at < 2.5:
                raw = await deployment.redis.cli("GET", "test:owner")
                holder = by_id.get(raw.split("|", 1)[0]) if raw else None
                now = trio.current_time()
                if holder is not None and not holder.broker.owner:
                    ghost_since = now if ghost_since is None else ghost_since
                    longest_ghost = max(longest_ghost, now - ghost_since)
                else:
                    ghost_since = None
                await trio.sleep(0.02)
            back = [c for c in emulator.connections if c.opened_at > resumed_at]
            await wait_for(lambda: all(w.broker.connected for w in others))
            await wait_for(lambda: any(w.broker.owner for w in others))
            await emulator.wait_until(lambda e: bool(e.open_connections("sample")))
            emulator.inject(status("after the pause", 1300))
            assert [t["id_str"] for t in await viewer.tweets(1)] == ["1300"]
    assert longest_ghost < 0.5, f"the lease sat with a worker that did not use it {longest_ghost}s"
    assert back, "no upstream connection within 2.5 s of Redis resuming"
    gap = back[0].opened_at - resumed_at
    assert gap < 1.2, f"the upstream came back {gap:.2f}s after Redis resumed"


async def test_the_owner_keeps_its_stream_through_a_loop_of_redis_restarts(
    deployment: Deployment,
) -> None:
    """A renewal that failed stopped the owner's upstream at once, and after each restart every
    new term waited out 0.7 lease and the minimum interval: with Redis restarted 15 times in
    36 s viewers lost 897 of 1,030 tweets. An owner that cannot renew runs on until 0.6 lease
    after its last renewal, and takes the lease again when Redis comes back empty (nobody else
    may take it within 0.7 lease of Redis's start): one connection throughout, and viewers lose
    only what the owner published while Redis was down."""
    restarts, every, tick = 5, 2.5, 0.05
    emulator = Emulator(rate=0, filter_rate=0, seed=5, one_stream_per_account=False)
    base_url = await deployment.nursery.start(serve_emulator, emulator)
    with trio.fail_after(TIMEOUT + restarts * every):
        workers = [
            await deployment.add_worker(
                f"loop{i}", twitter_stream_url=base_url, min_reconnect_seconds=3.0
            )
            for i in range(2)
        ]
        async with (
            open_websocket_url(workers[0].ws_url) as ws_0,
            open_websocket_url(workers[1].ws_url) as ws_1,
        ):
            viewers = [Viewer(ws_0), Viewer(ws_1)]
            got: list[list[int]] = [[], []]

            async def read(viewer: Viewer, into: list[int]) -> None:
                with contextlib.suppress(ConnectionClosed):
                    while True:
                        frame = await viewer.next_frame()
                        tweets = [frame["tweet"]] if frame["type"] == "tweet" else []
                        tweets += frame.get("tweets", []) if frame["type"] == "tweets" else []
                        into.extend(int(t["id_str"]) for t in tweets)

            sent: list[int] = []

            async def inject() -> None:
                for number in itertools.count(10_000):
                    emulator.inject(status(f"tick {number}", number))
                    sent.append(number)
                    await trio.sleep(tick)

            async with trio.open_nursery() as nursery:
                for viewer, into in zip(viewers, got, strict=True):
                    await viewer.next_of("hello")
                    nursery.start_soon(read, viewer, into)
                await emulator.wait_until(lambda e: bool(e.open_connections("sample")))
                await wait_for(lambda: any(w.broker.published for w in workers))
                nursery.start_soon(inject)
                await trio.sleep(1.0)
                down = 0.0
                for _ in range(restarts):
                    stopped_at = trio.current_time()
                    await deployment.redis.stop()
                    await deployment.redis.start()
                    down += trio.current_time() - stopped_at
                    await trio.sleep(every)
                await trio.sleep(1.0)
                nursery.cancel_scope.cancel()
    samples = connections(emulator, "sample")
    lost = [len(set(sent) - set(into)) for into in got]
    print(f"{restarts} restarts, Redis down {down:.2f}s in all: lost {lost} of {len(sent)}")
    assert len([c for c in samples if c.status == 200]) == 1, "the owner reconnected"
    assert max_open_at_once(samples) == 1
    # What the owner published while Redis was down, and while its client reconnected.
    allowed = (down + restarts * 0.6) / tick
    assert max(lost) <= allowed, f"lost {lost} of {len(sent)}, Redis down {down:.2f}s"
    assert max(lost) < len(sent) / 4


async def until_stored(client: GlideClient, predicate: Callable[[bytes | None], bool]) -> None:
    while True:
        if predicate(await client.get("p:pacing:sample")):
            return
        await trio.sleep(0.02)


async def test_the_pacing_record_carries_the_backoff_ladder_and_survives_a_restart() -> None:
    """The next owner reads how far up each ladder the last one had climbed; a connection that
    opens resets it; a term that carries on through a Redis restart writes the record back."""
    redis = RedisServer()
    await redis.start()
    try:
        with trio.fail_after(TIMEOUT):
            target = parse_redis_url(redis.url)
            client = await GlideClient.create(client_config(target, "pacing-test"))
            try:
                first = DeploymentPacing(client, "p", fence=1.0)
                assert await first.delay("sample", None) == 0.0
                assert first.ladder("sample") == {}
                await first.backing_off("sample", 0.5, {"http": 2, "failures": 2})
                successor = DeploymentPacing(client, "p", fence=1.0)
                await successor.delay("sample", None)
                assert successor.ladder("sample") == {"http": 2, "failures": 2}

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(successor.run)
                    successor.connected("sample")
                    await until_stored(client, lambda raw: b'"http"' not in (raw or b""))
                    await client.custom_command(["FLUSHALL"])
                    successor.lost()
                    await until_stored(client, lambda raw: raw is not None)
                    nursery.cancel_scope.cancel()
                third = DeploymentPacing(client, "p", fence=1.0)
                await third.delay("sample", None)
                assert third.ladder("sample") == {}
            finally:
                await client.close()
    finally:
        await redis.stop()


async def test_a_tweet_from_history_does_not_come_again_on_the_filter_stream(
    deployment: Deployment,
) -> None:
    """A worker that has just started primes its history from the stream's tail. A tweet that
    is there from the sample stream, and still on its way on the filter stream (each stream has
    its own connection), went to a new filter viewer twice: once as history, once live."""
    tick = tweet_event(status("canary one", 901))
    marker = tweet_event(status("canary two", 902))
    assert tick is not None
    assert marker is not None
    client = await GlideClient.create(client_config(parse_redis_url(deployment.redis.url), "t"))
    try:
        with trio.fail_after(TIMEOUT):
            await client.xadd("test:events", encode("sample", tick))
            worker = await deployment.add_worker("primed", history_size=10)
            async with open_websocket_url(worker.ws_url + "?filter=canary") as ws:
                viewer = Viewer(ws)
                assert [t["id_str"] for t in await viewer.tweets(1)] == ["901"]
                await client.xadd("test:events", encode("filter", tick))
                await client.xadd("test:events", encode("filter", marker))
                later = [t["id_str"] for t in await viewer.tweets(1)]
    finally:
        await client.close()
    assert later == ["902"], "the tweet shown as history came again live"


async def test_after_a_redis_pause_viewers_are_not_shown_a_stale_connected(
    deployment: Deployment,
) -> None:
    """An owner that cannot renew stops its upstream at 0.6 lease, but its last status stays
    "connected" in Redis: a worker whose reader came back from the pause restored it, and its
    viewers saw "connected" while no connection was open. The owner's release says that
    nobody serves (queued in the paused Redis, it runs before the readers come back)."""
    workers = [await deployment.add_worker(f"stale{i}") for i in range(2)]
    owner = await deployment.wait_for_owner()
    other = next(w for w in workers if w is not owner)
    emulator = deployment.emulator
    shown: list[tuple[float, str]] = []
    with trio.fail_after(TIMEOUT):
        async with open_websocket_url(other.ws_url) as ws, trio.open_nursery() as nursery:
            viewer = Viewer(ws)

            async def record() -> None:
                while True:
                    frame = await viewer.next_frame()
                    if frame["type"] == "status":
                        shown.append((trio.current_time(), frame["state"]))

            nursery.start_soon(record)
            await emulator.wait_until(lambda e: bool(e.open_connections("sample")))
            await wait_for(lambda: bool(shown) and shown[-1][1] == "connected")
            deployment.redis.pause()
            await trio.sleep(LEASE_SECONDS * 1.5)
            deployment.redis.resume()
            resumed_at = trio.current_time()
            await emulator.wait_until(
                lambda e: any(c.opened_at > resumed_at for c in e.open_connections("sample"))
            )
            reopened = max(c.opened_at for c in connections(emulator, "sample"))
            await trio.sleep(0.5)
            nursery.cancel_scope.cancel()
    # Once the pause is over, no "connected" before the new connection opened.
    told = [(at, state) for at, state in shown if resumed_at < at < reopened]
    assert "connected" not in [state for _, state in told], f"{told}, reopened {reopened}"


async def test_an_idle_deployment_sends_redis_few_commands(deployment: Deployment) -> None:
    """Idle Redis traffic was most of what a second worker cost (a command costs a worker about
    0.2 ms of CPU through glide). The owner read every demand key with a SCAN and an MGET four
    times a second, and every worker's census once a second, the owner's too: two idle workers
    sent 17.7 commands a second, 12 of them for demand. One script per read, and no census of
    its own while a worker reads the union: 10.7."""
    seconds = 5.0
    with trio.fail_after(TIMEOUT):
        for i in range(2):
            await deployment.add_worker(
                f"idle{i}", redis_lease_seconds=10.0, redis_heartbeat_seconds=2.0
            )
        owner = await deployment.wait_for_owner()
        await wait_for(lambda: owner.broker.upstream is not None)  # past the fence
        await trio.sleep(1.0)
        sent = await deployment.redis.monitor(seconds)
    kinds = {name: sent.count(name) for name in sorted(set(sent))}
    assert len(sent) / seconds < 14, f"{len(sent) / seconds:.1f} commands/s: {kinds}"
