"""The Jetstream and AppView emulator over real loopback sockets."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import orjson
import pytest
import trio
import trio.testing
import trio_websocket

from pats_trio.emulator.corpus import USERS
from pats_trio.emulator.jetstream import (
    MAX_ACTORS,
    JetstreamEmulator,
    JetstreamURLs,
    did_for,
    serve_jetstream,
)
from pats_trio.upstream.bluesky.jetstream import Post, parse_event, post_payload

TIMEOUT = 15.0
ALICE = "did:plc:aliceaaaaaaaaaaaaaaaaaaa"


@asynccontextmanager
async def serving(emulator: JetstreamEmulator) -> AsyncIterator[JetstreamURLs]:
    async with trio.open_nursery() as nursery:
        urls: JetstreamURLs = await nursery.start(serve_jetstream, emulator)
        try:
            yield urls
        finally:
            nursery.cancel_scope.cancel()


async def next_event(ws: trio_websocket.WebSocketConnection) -> dict[str, Any]:
    event: dict[str, Any] = orjson.loads(await ws.get_message())
    return event


async def test_wanted_collections_filter_commits_but_not_identity() -> None:
    emulator = JetstreamEmulator(rate=0)
    with trio.fail_after(TIMEOUT):
        async with serving(emulator) as urls:
            query = "wantedCollections=app.bsky.feed.post&wantedCollections=app.bsky.graph.*"
            async with trio_websocket.open_websocket_url(
                f"{urls.jetstream}/subscribe?{query}",
                extra_headers=[(b"user-agent", b"test-client/1")],
            ) as ws:
                await emulator.wait_until(lambda e: len(e.open_connections()) == 1)
                like = {"collection": "app.bsky.feed.like", "operation": "create", "rkey": "1"}
                emulator.inject({"did": ALICE, "kind": "commit", "commit": like})
                follow = {"collection": "app.bsky.graph.follow", "operation": "create", "rkey": "2"}
                emulator.inject({"did": ALICE, "kind": "commit", "commit": follow})
                emulator.identity(ALICE, "alice.test")
                emulator.post(ALICE, "hi")
                kinds = [await next_event(ws) for _ in range(3)]
    assert [e.get("commit", {}).get("collection", e["kind"]) for e in kinds] == [
        "app.bsky.graph.follow",
        "identity",
        "app.bsky.feed.post",
    ]
    times = [e["time_us"] for e in kinds]
    assert times == sorted(times)
    assert len(set(times)) == 3
    record = emulator.connections[0]
    assert record.collections == ("app.bsky.feed.post", "app.bsky.graph.*")
    assert record.user_agent == "test-client/1"


async def test_a_cursor_replays_the_history_then_goes_live() -> None:
    emulator = JetstreamEmulator(rate=0)
    with trio.fail_after(TIMEOUT):
        async with serving(emulator) as urls:
            posts = [emulator.post(ALICE, f"post {n}") for n in range(4)]
            cursor = posts[1]["time_us"]
            async with trio_websocket.open_websocket_url(
                f"{urls.jetstream}/subscribe?cursor={cursor}"
            ) as ws:
                replayed = [await next_event(ws) for _ in range(3)]
                live = emulator.post(ALICE, "live")
                assert await next_event(ws) == live
    assert replayed == posts[1:]
    assert emulator.connections[0].cursor == cursor
    assert emulator.connections[0].replayed == 3


async def test_refused_and_dropped_streams() -> None:
    emulator = JetstreamEmulator(rate=0)
    with trio.fail_after(TIMEOUT):
        async with serving(emulator) as urls:
            emulator.refuse_next(1, status=503)
            with pytest.raises(trio_websocket.ConnectionRejected) as refused:
                async with trio_websocket.open_websocket_url(f"{urls.jetstream}/subscribe"):
                    pass
            async with trio_websocket.open_websocket_url(f"{urls.jetstream}/subscribe") as ws:
                await emulator.wait_until(lambda e: len(e.open_connections()) == 1)
                emulator.drop_streams()
                with pytest.raises(trio_websocket.ConnectionClosed):
                    await ws.get_message()
    assert refused.value.status_code == 503
    assert [c.status for c in emulator.connections] == [503, 101]
    assert emulator.connections[1].closed_at is not None


async def test_a_stalled_stream_stays_open_and_silent(
    autojump_clock: trio.testing.MockClock,
) -> None:
    emulator = JetstreamEmulator(rate=0)
    with trio.fail_after(3600):
        async with (
            serving(emulator) as urls,
            trio_websocket.open_websocket_url(f"{urls.jetstream}/subscribe") as ws,
        ):
            await emulator.wait_until(lambda e: len(e.open_connections()) == 1)
            emulator.stall_streams()
            emulator.post(ALICE, "unheard")
            with trio.move_on_after(300) as silence:
                await ws.get_message()
            assert silence.cancelled_caught
            assert emulator.open_connections() != []


async def test_get_profiles_logs_calls_limits_actors_and_rate_limits() -> None:
    emulator = JetstreamEmulator(rate=0)
    known = did_for(USERS[0].screen_name)
    with trio.fail_after(TIMEOUT):
        async with serving(emulator) as urls, httpx.AsyncClient(base_url=urls.appview) as http:
            path = "/xrpc/app.bsky.actor.getProfiles"
            ok = await http.get(path, params=[("actors", known), ("actors", ALICE)])
            too_many = await http.get(
                path, params=[("actors", f"did:plc:{n}") for n in range(MAX_ACTORS + 1)]
            )
            emulator.rate_limit_profiles(30)
            limited = await http.get(path, params={"actors": known})
    assert ok.status_code == 200
    assert [p["did"] for p in ok.json()["profiles"]] == [known], "unknown actors are left out"
    assert ok.json()["profiles"][0]["handle"].endswith(".bsky.social")
    assert too_many.status_code == 400
    assert limited.status_code == 429
    assert 29 <= int(limited.headers["ratelimit-reset"]) - time.time() <= 31
    assert limited.headers["ratelimit-remaining"] == "0"
    assert [(len(c.actors), c.status) for c in emulator.profile_calls] == [
        (2, 200),
        (MAX_ACTORS + 1, 400),
        (1, 429),
    ]


async def test_synthetic_events_have_facets_at_utf8_byte_offsets(
    autojump_clock: trio.testing.MockClock,
) -> None:
    emulator = JetstreamEmulator(rate=50, seed=4)
    events: list[dict[str, Any]] = []
    with trio.fail_after(3600):
        async with (
            serving(emulator) as urls,
            trio_websocket.open_websocket_url(f"{urls.jetstream}/subscribe") as ws,
        ):
            while len(events) < 400:
                events.append(await next_event(ws))
    posts = [e for e in events if e["kind"] == "commit" and e["commit"]["operation"] == "create"]
    assert len(posts) > 300
    assert any(e["commit"]["operation"] == "delete" for e in events if e["kind"] == "commit")
    multibyte_before_a_facet = 0
    facets_seen = 0
    for event in posts:
        record = event["commit"]["record"]
        encoded = record["text"].encode()
        for facet in record.get("facets", []):
            facets_seen += 1
            start, end = facet["index"]["byteStart"], facet["index"]["byteEnd"]
            shown = encoded[start:end].decode()  # raises if not on character boundaries
            feature = facet["features"][0]
            if feature["$type"].endswith("#tag"):
                assert shown == "#" + feature["tag"]
            elif feature["$type"].endswith("#mention"):
                assert shown.startswith("@")
            if len(encoded[:start]) != len(encoded[:start].decode()):
                multibyte_before_a_facet += 1
        post = parse_event(event)
        assert isinstance(post, Post)
        post_payload(post)
    assert facets_seen > 100
    assert multibyte_before_a_facet > 10


async def test_events_are_encoded_as_go_does() -> None:
    """Jetstream is written in Go, whose encoding/json escapes these characters: a record full of
    them makes an event several times its size, which is what `maxMessageSizeBytes` measures."""
    emulator = JetstreamEmulator(rate=0)
    text = "a<b> & c \u2028 é ✨"
    with trio.fail_after(TIMEOUT):
        async with (
            serving(emulator) as urls,
            trio_websocket.open_websocket_url(f"{urls.jetstream}/subscribe") as ws,
        ):
            await emulator.wait_until(lambda e: len(e.open_connections()) == 1)
            emulator.post(ALICE, text)
            raw = await ws.get_message()
    assert isinstance(raw, str)
    assert r"a\u003cb\u003e \u0026 c \u2028 é ✨" in raw
    assert not {"<", ">", "&", "\u2028"} & set(raw)
    assert orjson.loads(raw)["commit"]["record"]["text"] == text


async def test_max_message_size_bytes_leaves_out_longer_events_live_and_replayed() -> None:
    emulator = JetstreamEmulator(rate=0)
    limit = 4096
    # 1000 characters, 6000 bytes of JSON once escaped.
    big_text = "<" * 1000
    with trio.fail_after(TIMEOUT):
        async with serving(emulator) as urls:
            subscribe = f"{urls.jetstream}/subscribe"
            async with (
                trio_websocket.open_websocket_url(f"{subscribe}?maxMessageSizeBytes={limit}") as ws,
                trio_websocket.open_websocket_url(subscribe) as unlimited,
                trio_websocket.open_websocket_url(f"{subscribe}?maxMessageSizeBytes=0") as zero,
                trio_websocket.open_websocket_url(f"{subscribe}?maxMessageSizeBytes=-5") as minus,
            ):
                await emulator.wait_until(lambda e: len(e.open_connections()) == 4)
                first = emulator.post(ALICE, "small")
                big = emulator.post(ALICE, big_text)
                last = emulator.post(ALICE, "small again")
                assert [await next_event(ws) for _ in range(2)] == [first, last]
                raw_big = ""
                for stream in (unlimited, zero, minus):
                    assert await next_event(stream) == first
                    raw_big = str(await stream.get_message())
                    assert orjson.loads(raw_big) == big
                    assert await next_event(stream) == last
            async with trio_websocket.open_websocket_url(
                f"{subscribe}?cursor={first['time_us']}&maxMessageSizeBytes={limit}"
            ) as replaying:
                assert [await next_event(replaying) for _ in range(2)] == [first, last]
            not_a_number = f"{subscribe}?maxMessageSizeBytes=1MB"
            with pytest.raises(trio_websocket.ConnectionRejected) as refused:
                async with trio_websocket.open_websocket_url(not_a_number):
                    pass
    assert len(raw_big.encode()) > 6000 > limit
    live, _, zero_record, minus_record, replayed, bad = emulator.connections
    assert (live.max_message_size, live.too_big, live.sent) == (limit, 1, 2)
    assert live.query == f"maxMessageSizeBytes={limit}"
    assert (zero_record.max_message_size, zero_record.too_big) == (0, 0)
    assert (minus_record.max_message_size, minus_record.too_big) == (0, 0)
    assert (replayed.replayed, replayed.too_big) == (2, 1)
    assert refused.value.status_code == 400
    assert bad.status == 400


async def test_a_server_that_ignores_max_message_size_bytes_sends_everything() -> None:
    emulator = JetstreamEmulator(rate=0, honour_max_message_size=False)
    with trio.fail_after(TIMEOUT):
        async with (
            serving(emulator) as urls,
            trio_websocket.open_websocket_url(
                f"{urls.jetstream}/subscribe?maxMessageSizeBytes=100"
            ) as ws,
        ):
            await emulator.wait_until(lambda e: len(e.open_connections()) == 1)
            big = emulator.post(ALICE, "x" * 500)
            assert await next_event(ws) == big
    assert (emulator.connections[0].max_message_size, emulator.connections[0].too_big) == (100, 0)


async def test_a_stream_chokes_on_the_named_event_live_and_in_every_replay() -> None:
    emulator = JetstreamEmulator(rate=0)
    with trio.fail_after(TIMEOUT):
        async with serving(emulator) as urls:
            subscribe = f"{urls.jetstream}/subscribe"
            async with trio_websocket.open_websocket_url(subscribe) as ws:
                await emulator.wait_until(lambda e: len(e.open_connections()) == 1)
                first = emulator.post(ALICE, "fine")
                poison = emulator.inject({"did": ALICE, "kind": "identity", "identity": {}})
                emulator.choke_on(poison["time_us"])
                emulator.post(ALICE, "never sent")
                assert await next_event(ws) == first
                with pytest.raises(trio_websocket.ConnectionClosed) as live:
                    await ws.get_message()
            async with trio_websocket.open_websocket_url(
                f"{subscribe}?cursor={first['time_us']}"
            ) as ws:
                assert await next_event(ws) == first
                with pytest.raises(trio_websocket.ConnectionClosed) as replayed:
                    await ws.get_message()
    for closed in (live.value, replayed.value):
        assert closed.reason is not None
        assert closed.reason.code == 1011
    assert [c.sent for c in emulator.connections] == [1, 1]
