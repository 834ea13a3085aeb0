"""Fair shares, end to end: the app under hypercorn on loopback, reading the emulator.

One client must not take the phrase budget or the upstream's reconnect budget from everyone
else. The clock is Trio's MockClock (autojump, after real idleness, since real sockets carry
the frames), so minutes of churn take seconds.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import orjson
import pytest
import trio
import trio.testing
from trio_websocket import WebSocketConnection, open_websocket_url

from tests.support import Served, Viewer, status

IDLE_BEFORE_JUMP_SECONDS = 0.05
"""Real seconds of idleness before the mock clock jumps: loopback frames arrive well within."""
CHURN_SECONDS = 2.0
WINDOW_SECONDS = 300.0
NEWCOMER_AFTER = 100.0
"""The hog has used the whole reconnect budget by then, before any fix."""

_ids = itertools.count(5_000)


async def churn(ws: WebSocketConnection, every: float) -> None:
    """Change the filter every `every` seconds, forever, reading whatever comes."""

    async def drain() -> None:
        while True:
            await ws.get_message()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(drain)
        for n in itertools.count():
            await ws.send_message(orjson.dumps({"type": "filter", "track": f"churn{n}"}).decode())
            await trio.sleep(every)


async def keep_injecting(served: Served, text: str) -> None:
    while True:
        served.emulator.inject(status(f"{text} {next(_ids)}", next(_ids)))
        await trio.sleep(1.0)


@pytest.mark.parametrize("newcomer_address", ["10.0.0.2", "10.0.0.1"], ids=["elsewhere", "same"])
async def test_a_viewer_changing_its_filter_every_2s_cannot_starve_a_newcomer(
    make_served: Callable[..., Any], autojump_clock: trio.testing.MockClock, newcomer_address: str
) -> None:
    """A socket changing its filter every 2 s (within its 30 a minute) used the whole
    reconnect budget: a newcomer waited 190 s for its first tweet, shown "connected". From
    another address or the hog's own (a NAT), it must not wait on the hog."""
    autojump_clock.autojump_threshold = IDLE_BEFORE_JUMP_SECONDS
    served: Served = await make_served(
        filter_debounce_seconds=1.0,
        min_reconnect_seconds=5.0,
        max_connects_per_5min=20,
        trusted_proxy_header="X-Forwarded-For",
    )
    started = trio.current_time()
    with trio.fail_after(WINDOW_SECONDS * 2):
        async with trio.open_nursery() as nursery:
            hog = await nursery.start(_open, served.ws_url + "?filter=churn", "10.0.0.1")
            nursery.start_soon(churn, hog, CHURN_SECONDS)
            await trio.sleep(NEWCOMER_AFTER)
            nursery.start_soon(keep_injecting, served, "newcomer")
            url = served.ws_url + "?filter=newcomer"
            async with open_websocket_url(url, extra_headers=_from(newcomer_address)) as ws:
                joined = trio.current_time()
                newcomer = Viewer(ws)
                await newcomer.tweets(1)
                waited = trio.current_time() - joined
            await trio.sleep_until(started + WINDOW_SECONDS)
            nursery.cancel_scope.cancel()
    opened = [
        record
        for record in served.emulator.connections
        if record.kind == "filter" and record.opened_at < started + WINDOW_SECONDS
    ]
    print(f"newcomer waited {waited:.1f}s; {len(opened)} filter connections in 300 s")
    assert waited < 15, waited
    assert len(opened) <= 10, len(opened)


async def _open(
    url: str, address: str, *, task_status: trio.TaskStatus[WebSocketConnection]
) -> None:
    async with open_websocket_url(url, extra_headers=_from(address)) as ws:
        task_status.started(ws)
        await trio.sleep_forever()


def _from(address: str) -> list[tuple[bytes, bytes]]:
    return [(b"X-Forwarded-For", address.encode())]


async def test_a_400_phrase_hog_leaves_room_for_a_newcomer(
    make_served: Callable[..., Any],
) -> None:
    """One socket with 400 phrases filled the union, and every other new phrase was refused."""
    served: Served = await make_served(trusted_proxy_header="X-Forwarded-For")
    hogging = ",".join(f"hog{i}" for i in range(400))
    with trio.fail_after(30):
        async with (
            open_websocket_url(
                served.ws_url + "?filter=" + hogging, extra_headers=_from("10.0.0.1")
            ) as ws_hog,
            open_websocket_url(
                served.ws_url + "?filter=newcomer", extra_headers=_from("10.0.0.2")
            ) as ws_new,
        ):
            hog, newcomer = Viewer(ws_hog), Viewer(ws_new)
            assert len((await hog.next_of("hello"))["track"]) == 400
            assert (await newcomer.next_of("hello"))["track"] == ["newcomer"]
            # The hog keeps its filter for routing, but one phrase over its share is not
            # followed upstream now, and it is told which.
            pending = await hog.next_of("pending")
            assert len(pending["over_share"]) == 1
            assert pending["queued"] == []
            await served.emulator.wait_until(
                lambda emu: any("newcomer" in c.track for c in emu.open_connections("filter"))
            )
            (record,) = [c for c in served.emulator.open_connections("filter")]
            assert len(record.track.split(",")) == 400
            tweet = status("a newcomer tweet", next(_ids))
            served.emulator.inject(tweet)
            assert [t["id_str"] for t in await newcomer.tweets(1)] == [tweet["id_str"]]
            # Another socket from the hog's address has no share left to take.
            url = served.ws_url + "?filter=more"
            async with open_websocket_url(url, extra_headers=_from("10.0.0.1")) as ws_more:
                error = await Viewer(ws_more).next_of("error")
                assert error["code"] == "too_many_phrases"
                assert "share" in error["message"]


async def test_the_viewer_and_address_phrase_caps_are_refused_by_name(
    make_served: Callable[..., Any],
) -> None:
    served: Served = await make_served(
        trusted_proxy_header="X-Forwarded-For", max_phrases_per_viewer=3, max_phrases_per_address=4
    )
    with trio.fail_after(30):
        url = served.ws_url + "?filter=a,b,c,d"
        async with open_websocket_url(url, extra_headers=_from("10.0.0.1")) as ws:
            error = await Viewer(ws).next_of("error")
            assert error["code"] == "viewer_phrase_limit"
            assert "at most 3 phrases" in error["message"]
        url = served.ws_url + "?filter=a,b,c"
        async with open_websocket_url(url, extra_headers=_from("10.0.0.1")) as ws_first:
            assert (await Viewer(ws_first).next_of("hello"))["track"] == ["a", "b", "c"]
            url = served.ws_url + "?filter=c,d,e"
            async with open_websocket_url(url, extra_headers=_from("10.0.0.1")) as ws:
                error = await Viewer(ws).next_of("error")
                assert error["code"] == "address_phrase_limit"
                assert "at most 4 phrases" in error["message"]
            async with open_websocket_url(url, extra_headers=_from("10.0.0.2")) as ws:
                assert (await Viewer(ws).next_of("hello"))["track"] == ["c", "d", "e"]
