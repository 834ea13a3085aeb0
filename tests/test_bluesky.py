"""The Jetstream source against the Jetstream emulator over loopback WebSockets."""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import pytest
import trio
import trio.testing

from pats_trio.emulator.jetstream import JetstreamEmulator, JetstreamURLs, serve_jetstream
from pats_trio.events import Event, NoticeEvent, StatusEvent, StreamKind, TweetEvent
from pats_trio.upstream.bluesky import BlueskyUpstream
from pats_trio.upstream.lifecycle import RepeatedEvent

TIMEOUT = 15.0
MOCK_TIMEOUT = 3600.0
RECOVERY_SECONDS = 600.0
IDLE_BEFORE_JUMP_SECONDS = 0.2
"""Virtual seconds a recovery may take (backoffs included) before the test says it never came."""
ALICE = "did:plc:aliceaaaaaaaaaaaaaaaaaaa"


@dataclass
class Recorder:
    """The publish callback: every (kind, event) with the trio time it came, and a waiter."""

    published: list[tuple[StreamKind, Event, float]] = field(default_factory=list)
    _changed: RepeatedEvent = field(default_factory=RepeatedEvent)

    def __call__(self, kind: StreamKind, event: Event) -> None:
        self.published.append((kind, event, trio.current_time()))
        self._changed.set()

    async def wait_for(self, predicate: Callable[[Recorder], bool]) -> None:
        await self._changed.wait_until(lambda: predicate(self))

    def tweets(self, kind: StreamKind = "sample") -> list[dict[str, Any]]:
        return [
            orjson.loads(event.frame)["tweet"]
            for k, event, _ in self.published
            if k == kind and isinstance(event, TweetEvent)
        ]

    def ids(self, kind: StreamKind = "sample") -> list[str]:
        return [tweet["id_str"] for tweet in self.tweets(kind)]

    def notices(self, kind: StreamKind, frame_type: str) -> list[dict[str, Any]]:
        found = []
        for k, event, _ in self.published:
            if k == kind and isinstance(event, NoticeEvent):
                frame = orjson.loads(event.frame)
                if frame["type"] == frame_type:
                    found.append(frame)
        return found

    def states(self, kind: StreamKind = "sample") -> list[str]:
        return [e.state for k, e, _ in self.published if k == kind and isinstance(e, StatusEvent)]

    def statuses(self, kind: StreamKind = "sample") -> list[StatusEvent]:
        return [e for k, e, _ in self.published if k == kind and isinstance(e, StatusEvent)]


@dataclass
class Harness:
    emulator: JetstreamEmulator
    urls: JetstreamURLs
    upstream: BlueskyUpstream
    recorder: Recorder


@asynccontextmanager
async def running(
    *,
    emulator: JetstreamEmulator | None = None,
    hosts: Sequence[str] | None = None,
    linger: float = 30.0,
    stall: float = 60.0,
) -> AsyncIterator[Harness]:
    """An emulator on loopback and a BlueskyUpstream reading it (hosts default to it alone)."""
    emulator = emulator or JetstreamEmulator(rate=0, seed=1)
    async with trio.open_nursery() as nursery, httpx.AsyncClient() as http:
        urls: JetstreamURLs = await nursery.start(serve_jetstream, emulator)
        recorder = Recorder()
        upstream = BlueskyUpstream(
            recorder,
            hosts=hosts or [urls.jetstream],
            appview=urls.appview,
            http=http,
            linger=linger,
            stall=stall,
            rng=random.Random(7),
        )
        await nursery.start(upstream.run)
        try:
            yield Harness(emulator, urls, upstream, recorder)
        finally:
            nursery.cancel_scope.cancel()


async def connected(harness: Harness, count: int = 1) -> None:
    await harness.emulator.wait_until(
        lambda e: len(e.open_connections()) == 1 and len(e.connections) >= count
    )
    await harness.recorder.wait_for(lambda r: r.states().count("connected") >= count)


async def refused_url() -> str:
    """A loopback ws:// URL where nothing listens (the port was just freed)."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    await listeners[0].aclose()
    return f"ws://127.0.0.1:{port}"


async def test_posts_reach_the_kinds_that_have_viewers() -> None:
    with trio.fail_after(TIMEOUT):
        async with running() as h:
            await trio.sleep(0.2)
            assert h.emulator.connections == [], "no viewers, no connection"
            h.upstream.demand("sample", active=True)
            await connected(h)
            first = h.emulator.post(ALICE, "hello sample")
            await h.recorder.wait_for(lambda r: len(r.ids()) == 1)
            h.upstream.demand("filter", active=True, track="python")
            second = h.emulator.post(ALICE, "hello python")
            await h.recorder.wait_for(lambda r: len(r.ids()) == 2)
            await h.recorder.wait_for(lambda r: len(r.ids("filter")) == 1)
    rkeys = [first["commit"]["rkey"], second["commit"]["rkey"]]
    assert h.recorder.ids() == [f"at://{ALICE}/app.bsky.feed.post/{rkey}" for rkey in rkeys]
    assert h.recorder.ids("filter") == h.recorder.ids()[1:]
    # One event object for both kinds: parsed and encoded once.
    tweet_events = [e for _, e, _ in h.recorder.published if isinstance(e, TweetEvent)]
    assert tweet_events[1] is tweet_events[2]
    assert "python" in tweet_events[2].terms
    assert h.recorder.states()[:2] == ["connecting", "connected"]
    assert h.recorder.states("filter")[:2] == ["connecting", "connected"]
    connection = h.emulator.connections[0]
    assert connection.collections == ("app.bsky.feed.post",)
    assert connection.cursor is None
    assert connection.user_agent is not None
    assert connection.user_agent.startswith("pats-trio/")


async def test_a_filter_change_never_reconnects(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(MOCK_TIMEOUT):
        async with running() as h:
            h.upstream.demand("filter", active=True, track="python")
            await connected(h)
            h.upstream.demand("filter", active=True, track="rust, trio")
            await trio.sleep(30)
            h.emulator.post(ALICE, "trio and rust")
            await h.recorder.wait_for(lambda r: len(r.ids("filter")) == 1)
    assert len(h.emulator.connections) == 1
    assert h.recorder.ids() == [], "no sample viewers, nothing for them"


async def test_resumes_without_duplicates_across_a_drop() -> None:
    with trio.fail_after(TIMEOUT):
        async with running() as h:
            h.upstream.demand("sample", active=True)
            await connected(h)
            before = [h.emulator.post(ALICE, f"before {n} ✨") for n in range(3)]
            await h.recorder.wait_for(lambda r: len(r.ids()) == 3)
            last_time_us = before[-1]["time_us"]
            h.emulator.drop_streams()
            # Written while we are disconnected: only the replay can bring it.
            missed = h.emulator.post(ALICE, "while you were away")
            await connected(h, count=2)
            after = h.emulator.post(ALICE, "after")
            await h.recorder.wait_for(lambda r: len(r.ids()) >= 5)
            await trio.sleep(0.2)
    resumed = h.emulator.connections[1]
    assert resumed.cursor == last_time_us - 5_000_000
    assert resumed.replayed >= 4, "the replay repeats what we had, and what we missed"
    expected = [
        f"at://{ALICE}/app.bsky.feed.post/{event['commit']['rkey']}"
        for event in [*before, missed, after]
    ]
    assert h.recorder.ids() == expected
    assert h.upstream.stats.duplicates == 3
    assert h.upstream.stats.disconnects["stream ended"] == 1


async def test_fails_over_to_the_next_host() -> None:
    with trio.fail_after(TIMEOUT):
        dead = await refused_url()
        emulator = JetstreamEmulator(rate=0)
        async with trio.open_nursery() as nursery:
            urls: JetstreamURLs = await nursery.start(serve_jetstream, emulator)
            async with running(hosts=[dead, urls.jetstream]) as h:
                h.upstream.demand("sample", active=True)
                await emulator.wait_until(lambda e: len(e.open_connections()) == 1)
                await h.recorder.wait_for(lambda r: "connected" in r.states())
                emulator.post(ALICE, "from the second host")
                await h.recorder.wait_for(lambda r: len(r.ids()) == 1)
            nursery.cancel_scope.cancel()
    hosts = [s.details.get("host") for s in h.recorder.statuses() if s.state != "idle"]
    assert hosts[:3] == [dead, urls.jetstream, urls.jetstream]
    assert h.recorder.states()[:3] == ["connecting", "connecting", "connected"]
    assert h.upstream.stats.disconnects["network"] == 1
    assert h.emulator.connections == [], "the harness's own emulator was never asked"


async def test_a_refused_handshake_fails_over_and_all_refusing_backs_off(
    autojump_clock: trio.testing.MockClock,
) -> None:
    first, second = JetstreamEmulator(rate=0), JetstreamEmulator(rate=0)
    recorder = Recorder()
    with trio.fail_after(MOCK_TIMEOUT):
        async with trio.open_nursery() as nursery, httpx.AsyncClient() as http:
            first_urls: JetstreamURLs = await nursery.start(serve_jetstream, first)
            second_urls: JetstreamURLs = await nursery.start(serve_jetstream, second)
            upstream = BlueskyUpstream(
                recorder,
                hosts=[first_urls.jetstream, second_urls.jetstream],
                appview=first_urls.appview,
                http=http,
                rng=random.Random(1),
            )
            first.refuse_next(1, status=503)
            second.refuse_next(1, status=503)
            await nursery.start(upstream.run)
            started = trio.current_time()
            upstream.demand("sample", active=True)
            await first.wait_until(lambda e: len(e.open_connections()) == 1)
            waited = trio.current_time() - started
            await recorder.wait_for(lambda r: "connected" in r.states())
            nursery.cancel_scope.cancel()
    # The first host refuses: fail over at once. The second refuses too: every host has
    # refused, so back off before trying the first again.
    assert [c.status for c in first.connections] == [503, 101]
    assert [c.status for c in second.connections] == [503]
    assert recorder.states() == ["connecting", "connecting", "backoff", "connecting", "connected"]
    backoff = next(s.details for s in recorder.statuses() if s.state == "backoff")
    assert 2.5 <= backoff["retry_in"] <= 5.0
    assert "HTTP 503" in backoff["reason"]
    assert backoff["retry_in"] <= waited < backoff["retry_in"] + 1
    assert upstream.stats.disconnects["http"] == 2


async def test_sixty_seconds_of_silence_is_a_dead_socket(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(MOCK_TIMEOUT):
        async with running() as h:
            h.upstream.demand("sample", active=True)
            await connected(h)
            await trio.sleep(40)
            h.emulator.post(ALICE, "the last word")
            await h.recorder.wait_for(lambda r: len(r.ids()) == 1)
            last_frame_at = trio.current_time()
            h.emulator.stall_streams()
            await h.emulator.wait_until(lambda e: len(e.connections) == 2)
            reconnected_at = trio.current_time()
            await connected(h, count=2)
            h.emulator.post(ALICE, "back")
            await h.recorder.wait_for(lambda r: len(r.ids()) == 2)
    assert 60 <= reconnected_at - last_frame_at < 61
    assert h.upstream.stats.disconnects["stall"] == 1
    assert h.emulator.connections[1].cursor is not None


async def test_lingers_then_disconnects(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(MOCK_TIMEOUT):
        async with running(linger=30, stall=1e6) as h:
            h.upstream.demand("sample", active=True)
            await connected(h)
            connection = h.emulator.connections[0]
            h.upstream.demand("sample", active=False)
            await trio.sleep(20)
            assert connection.closed_at is None, "still lingering"
            h.upstream.demand("filter", active=True)
            await trio.sleep(60)
            assert connection.closed_at is None, "a viewer came back within the linger"
            left_at = trio.current_time()
            h.upstream.demand("filter", active=False)
            await h.emulator.wait_until(lambda _: connection.closed_at is not None)
            await h.recorder.wait_for(lambda r: r.states()[-1:] == ["idle"])
    closed_at: float | None = connection.closed_at
    assert closed_at is not None
    assert 30 <= closed_at - left_at < 31
    assert len(h.emulator.connections) == 1
    assert h.upstream.state == {"sample": "idle", "filter": "idle"}


async def test_deletes_become_delete_notices_for_both_kinds() -> None:
    with trio.fail_after(TIMEOUT):
        async with running() as h:
            h.upstream.demand("sample", active=True)
            await connected(h)
            post = h.emulator.post(ALICE, "oops")
            h.emulator.delete(ALICE, post["commit"]["rkey"])
            await h.recorder.wait_for(lambda r: len(r.notices("filter", "delete")) == 1)
    id_str = f"at://{ALICE}/app.bsky.feed.post/{post['commit']['rkey']}"
    assert h.recorder.ids() == [id_str]
    assert h.recorder.notices("sample", "delete") == [{"type": "delete", "id_str": id_str}]
    assert h.upstream.stats.deletes == 1


async def test_junk_is_counted_and_skipped() -> None:
    with trio.fail_after(TIMEOUT):
        async with running() as h:
            h.upstream.demand("sample", active=True)
            await connected(h)
            h.emulator.inject_raw("{not json")
            h.emulator.inject_raw('{"kind": "commit", "time_us": 5, "did": "nope"}')
            commit = {"operation": "create", "collection": "app.bsky.feed.post", "rkey": "3k"}
            h.emulator.inject({"kind": "commit", "did": ALICE, "commit": commit})
            h.emulator.identity(ALICE, "alice.example")
            h.emulator.account(ALICE, active=False, status="deactivated")
            h.emulator.post(ALICE, "still here")
            await h.recorder.wait_for(lambda r: len(r.ids()) == 1)
    assert h.upstream.stats.malformed == 3
    assert h.upstream.stats.identities == 1
    assert h.upstream.stats.accounts == 1
    assert len(h.emulator.connections) == 1, "junk never costs the connection"


def post_ids(posts: Sequence[dict[str, Any]]) -> list[str]:
    return [f"at://{ALICE}/app.bsky.feed.post/{post['commit']['rkey']}" for post in posts]


def skip_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == "pats_trio.upstream.bluesky"
        and record.levelno == logging.WARNING
        and "skipped" in record.getMessage()
    ]


async def test_a_server_that_sends_an_event_over_our_limit_anyway_costs_one_reconnect(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A server that ignores ``maxMessageSizeBytes`` sends the event of a 1 MB record of ``<``,
    6 MB of JSON; our limit closes the socket (1009). The next connection rewinds as usual but
    reads with a larger limit, learns the event's time_us, drops it, and goes on: the posts after
    it arrive, once each."""
    # Megabytes cross loopback in steps, with real instants when no socket is ready; the clock
    # may jump only once they have been idle a while, or a stall deadline would come early.
    autojump_clock.autojump_threshold = IDLE_BEFORE_JUMP_SECONDS
    emulator = JetstreamEmulator(rate=0, seed=1, honour_max_message_size=False)
    with trio.fail_after(MOCK_TIMEOUT):
        async with running(emulator=emulator) as h:
            h.upstream.demand("sample", active=True)
            await connected(h)
            before = [h.emulator.post(ALICE, f"before {n}") for n in range(2)]
            await h.recorder.wait_for(lambda r: len(r.ids()) == 2)
            big = h.emulator.post(ALICE, "<" * 1_000_000)
            after = [h.emulator.post(ALICE, f"after {n}") for n in range(3)]
            with trio.move_on_after(RECOVERY_SECONDS):
                await h.recorder.wait_for(lambda r: len(r.ids()) == 5)
            await trio.sleep(1)
    assert h.recorder.ids() == post_ids(before + after)
    assert len(h.emulator.connections) == 2
    first, second = h.emulator.connections
    assert first.max_message_size == second.max_message_size > 0, "asked, and ignored"
    assert first.closed_at is not None
    assert first.closed_at < second.opened_at, "its socket closed at once, not when replaced"
    assert second.cursor == before[-1]["time_us"] - 5_000_000
    assert h.upstream.stats.disconnects["stream ended"] == 1
    assert h.upstream.stats.oversized == 1
    assert h.upstream.stats.duplicates == 2, "the rewind's replay, dropped"
    assert h.upstream.cursor == after[-1]["time_us"]
    [warning] = skip_warnings(caplog)
    assert str(big["time_us"]) in warning


async def test_an_event_the_server_fails_on_is_stepped_over(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Whatever ends the connections at one event, not only our limit: here the server closes
    every stream that reaches it. The resume point moves forward, first just past the last event
    read, then a blind millisecond further, and the posts after that arrive (any within that
    millisecond would be lost, and the warning says so)."""
    with trio.fail_after(MOCK_TIMEOUT):
        async with running() as h:
            h.upstream.demand("sample", active=True)
            await connected(h)
            before = [h.emulator.post(ALICE, f"before {n}") for n in range(2)]
            await h.recorder.wait_for(lambda r: len(r.ids()) == 2)
            poison = h.emulator.post(ALICE, "the server fails on this one")
            h.emulator.choke_on(poison["time_us"])
            await trio.sleep(1)
            after = [h.emulator.post(ALICE, f"after {n}") for n in range(2)]
            with trio.move_on_after(RECOVERY_SECONDS):
                await h.recorder.wait_for(lambda r: len(r.ids()) == 4)
            await trio.sleep(1)
    assert h.recorder.ids() == post_ids(before + after)
    last_good = before[-1]["time_us"]
    assert [c.cursor for c in h.emulator.connections] == [
        None,
        last_good - 5_000_000,
        last_good + 1,
        last_good + 1_000,
    ]
    [warning] = skip_warnings(caplog)
    assert str(last_good) in warning
