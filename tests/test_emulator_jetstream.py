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
from pats_trio.upstream.jetstream import Post, parse_event, post_payload

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
