"""The emulators' test control APIs (`/_control`), over real loopback HTTP with httpx: the
Twitter streaming-API emulator's and the Jetstream + AppView emulator's."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import orjson
import pytest
import trio
import trio_websocket

from pats_trio.emulator import Emulator, serve_emulator
from pats_trio.emulator.control import CONTROL_PREFIX
from pats_trio.emulator.jetstream import JetstreamEmulator, JetstreamURLs, facet, serve_jetstream
from tests.support import status

pytestmark = pytest.mark.trio

TIMEOUT = 15.0


@asynccontextmanager
async def control_client(emulator: Emulator) -> AsyncIterator[tuple[str, httpx.AsyncClient]]:
    """The emulator served on a free port; yields its streaming base URL and a client whose
    base URL is the control API."""
    async with trio.open_nursery() as nursery:
        base_url: str = await nursery.start(serve_emulator, emulator)
        root = base_url.removesuffix("/1.1")
        try:
            async with httpx.AsyncClient(base_url=root + CONTROL_PREFIX, timeout=None) as client:
                yield base_url, client
        finally:
            nursery.cancel_scope.cancel()


async def next_line(lines: AsyncIterator[str]) -> str:
    """The next non-empty line of a stream (keep-alives skipped)."""
    async for line in lines:
        if line:
            return line
    raise AssertionError("the stream ended")


async def open_records(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    response = await client.get("/connections")
    assert response.status_code == 200
    records: list[dict[str, Any]] = response.json()
    return [record for record in records if record["open"]]


async def test_inject_raw_and_connections_reach_a_real_stream() -> None:
    emulator = Emulator(rate=0, filter_rate=0, seed=1, control=True)
    with trio.fail_after(TIMEOUT):
        async with (
            control_client(emulator) as (base_url, control),
            httpx.AsyncClient(timeout=None) as client,
            client.stream("GET", f"{base_url}/statuses/sample.json") as sample,
            client.stream(
                "POST", f"{base_url}/statuses/filter.json", data={"track": "trio"}
            ) as filt,
        ):
            assert (sample.status_code, filt.status_code) == (200, 200)
            await emulator.wait_until(lambda e: len(e.open_connections()) == 2)
            records = await open_records(control)
            assert [(r["kind"], r["track"], r["method"]) for r in records] == [
                ("sample", "", "GET"),
                ("filter", "trio", "POST"),
            ]
            assert "authorization" not in records[0]
            sample_lines, filter_lines = sample.aiter_lines(), filt.aiter_lines()

            one = await control.post("/inject", content=orjson.dumps(status("hello trio", 1)))
            assert one.json() == {"injected": 1}
            batch = [status("plain words", 2), status("more trio news", 3)]
            assert (await control.post("/inject", json=batch)).json() == {"injected": 2}
            got = [orjson.loads(await next_line(sample_lines))["id"] for _ in range(3)]
            assert got == [1, 2, 3]
            got = [orjson.loads(await next_line(filter_lines))["id"] for _ in range(2)]
            assert got == [1, 3]

            delete = b'{"delete":{"status":{"id":1,"id_str":"1","user_id":7}}}\r\n'
            raw = await control.post("/raw", params={"kind": "filter"}, content=delete)
            assert raw.json() == {"streams": 1}
            assert orjson.loads(await next_line(filter_lines))["delete"]["status"]["id"] == 1
            # The sample stream did not get it: its next message is the next injected tweet.
            await control.post("/inject", json=status("after the delete", 4))
            assert orjson.loads(await next_line(sample_lines))["id"] == 4

            all_records = (await control.get("/connections")).json()
            assert all_records[0]["sent"] == 4
            assert all_records[1]["sent"] == 2


async def test_clock_is_the_one_connection_records_are_read_on() -> None:
    """Another process lines the records up with its own time through `/clock`."""
    emulator = Emulator(rate=0, filter_rate=0, seed=1, control=True)
    with trio.fail_after(TIMEOUT):
        async with (
            control_client(emulator) as (base_url, control),
            httpx.AsyncClient(timeout=None) as client,
        ):
            before = (await control.get("/clock")).json()
            async with client.stream("GET", f"{base_url}/statuses/sample.json") as sample:
                assert sample.status_code == 200
                await emulator.wait_until(lambda e: len(e.open_connections()) == 1)
                during = (await control.get("/clock")).json()
            await emulator.wait_until(lambda e: not e.open_connections())
            after = (await control.get("/clock")).json()
            (record,) = (await control.get("/connections")).json()
            assert before["now"] <= record["opened_at"] <= during["now"]
            assert during["now"] <= record["closed_at"] <= after["now"]
            assert before["wall_ms"] <= during["wall_ms"] <= after["wall_ms"]
            assert (await control.post("/clock")).status_code == 405


async def test_bad_requests_get_clear_errors() -> None:
    with trio.fail_after(TIMEOUT):
        async with control_client(Emulator(rate=0, control=True)) as (_, control):
            assert (await control.get("/inject")).status_code == 405
            assert (await control.post("/connections")).status_code == 405
            assert (await control.get("/nothing")).status_code == 404
            assert (await control.post("/inject", content=b"not json")).status_code == 400
            assert (await control.post("/inject", json=[1, 2])).status_code == 400
            bad_kind = await control.post("/raw", params={"kind": "firehose"}, content=b"x")
            assert bad_kind.status_code == 400
            assert "sample or filter" in bad_kind.json()["error"]
            assert (await control.post("/raw", content=b"\r\n")).json() == {"streams": 0}
            assert (await control.get("/connections")).json() == []


async def test_control_api_is_not_served_unless_enabled() -> None:
    emulator = Emulator(rate=0)
    with trio.fail_after(TIMEOUT):
        async with control_client(emulator) as (_, control):
            assert (await control.get("/connections")).status_code == 404
            assert (await control.post("/inject", json=status("x", 1))).status_code == 404


# --- The Jetstream + AppView emulator's control API ---------------------------------------------

ALICE = "did:plc:aliceaaaaaaaaaaaaaaaaaaa"
# Up to the line's end: a chunk may end in the middle of the URL.
BANNER = re.compile(
    rb"emulating Bluesky's Jetstream at (ws://\S+) and the AppView at (http://\S+)\r?\n"
)


@asynccontextmanager
async def jetstream_control(
    emulator: JetstreamEmulator,
) -> AsyncIterator[tuple[JetstreamURLs, httpx.AsyncClient]]:
    """The Jetstream emulator on a free port; yields its URLs and a client for `/_control`."""
    async with trio.open_nursery() as nursery:
        urls: JetstreamURLs = await nursery.start(serve_jetstream, emulator)
        try:
            async with httpx.AsyncClient(
                base_url=urls.appview + CONTROL_PREFIX, timeout=None
            ) as client:
                yield urls, client
        finally:
            nursery.cancel_scope.cancel()


async def next_event(ws: trio_websocket.WebSocketConnection) -> dict[str, Any]:
    event: dict[str, Any] = orjson.loads(await ws.get_message())
    return event


async def test_jetstream_control_posts_deletes_and_sets_profiles_on_a_real_stream() -> None:
    emulator = JetstreamEmulator(rate=0, seed=1, control=True)
    with trio.fail_after(TIMEOUT):
        async with jetstream_control(emulator) as (urls, control):
            records = (await control.get("/connections")).json()
            assert records == []
            async with trio_websocket.open_websocket_url(
                f"{urls.jetstream}/subscribe?wantedCollections=app.bsky.feed.post"
            ) as ws:
                await emulator.wait_until(lambda e: len(e.open_connections()) == 1)
                [record] = (await control.get("/connections")).json()
                assert record["open"] is True
                assert record["cursor"] is None
                assert record["collections"] == ["app.bsky.feed.post"]
                assert record["query"] == "wantedCollections=app.bsky.feed.post"
                assert (record["max_message_size"], record["too_big"]) == (0, 0)

                text = "héllo #trio"
                facets = [facet(7, 12, {"$type": "app.bsky.richtext.facet#tag", "tag": "trio"})]
                body = {"did": ALICE, "text": text, "rkey": "3kfirst", "tags": ["x"]}
                answer = await control.post("/post", json={**body, "facets": facets})
                assert answer.status_code == 200
                posted = answer.json()
                assert posted == await next_event(ws)  # the stamped event is what streams got
                assert posted["commit"]["rkey"] == "3kfirst"
                record_sent = posted["commit"]["record"]
                assert (record_sent["text"], record_sent["facets"]) == (text, facets)
                assert (record_sent["tags"], record_sent["langs"]) == (["x"], ["en"])

                generated = (await control.post("/post", json={"did": ALICE, "text": "two"})).json()
                assert generated == await next_event(ws)
                assert re.fullmatch(r"[2-7a-z]{13}", generated["commit"]["rkey"])
                assert generated["time_us"] > posted["time_us"]

                deleted = await control.post("/delete", json={"did": ALICE, "rkey": "3kfirst"})
                event = await next_event(ws)
                assert event == deleted.json()
                assert (event["commit"]["operation"], event["commit"]["rkey"]) == (
                    "delete",
                    "3kfirst",
                )

                profile = {"did": ALICE, "handle": "alice.test", "name": "Alice", "avatar": None}
                set_profile = await control.post("/profile", json=profile)
                assert set_profile.json() == {
                    "profile": {"did": ALICE, "handle": "alice.test", "displayName": "Alice"}
                }
                identity = await control.post(
                    "/identity", json={"did": ALICE, "handle": "alice2.test"}
                )
                event = await next_event(ws)
                assert event == identity.json()
                assert event["identity"]["handle"] == "alice2.test"
                views = await control.get(
                    urls.appview + "/xrpc/app.bsky.actor.getProfiles", params={"actors": ALICE}
                )
                assert views.json()["profiles"] == [
                    {"did": ALICE, "handle": "alice2.test", "displayName": "Alice"}
                ]

                latency = await control.post("/profile-latency", json={"seconds": 0.2})
                assert latency.json() == {"seconds": 0.2}
                assert emulator.profile_latency == 0.2

            cursor = posted["time_us"]
            async with trio_websocket.open_websocket_url(
                f"{urls.jetstream}/subscribe?cursor={cursor}"
            ) as ws:
                assert (await next_event(ws))["commit"]["rkey"] == "3kfirst"  # replayed
                await emulator.wait_until(lambda e: len(e.open_connections()) == 1)
                first, second = (await control.get("/connections")).json()
                assert (first["open"], first["sent"]) == (False, 4)
                assert (second["open"], second["cursor"]) == (True, cursor)
                assert second["replayed"] >= 1


async def test_jetstream_clock_is_the_one_connection_records_are_read_on() -> None:
    emulator = JetstreamEmulator(rate=0, seed=1, control=True)
    with trio.fail_after(TIMEOUT):
        async with jetstream_control(emulator) as (urls, control):
            before = (await control.get("/clock")).json()["now"]
            async with trio_websocket.open_websocket_url(f"{urls.jetstream}/subscribe"):
                await emulator.wait_until(lambda e: len(e.open_connections()) == 1)
                during = (await control.get("/clock")).json()["now"]
            await emulator.wait_until(lambda e: not e.open_connections())
            after = (await control.get("/clock")).json()["now"]
            [record] = (await control.get("/connections")).json()
            assert before <= record["opened_at"] <= during <= record["closed_at"] <= after
            assert (await control.post("/clock", json={})).status_code == 405


async def test_jetstream_control_answers_bad_requests_with_clear_errors() -> None:
    emulator = JetstreamEmulator(rate=0, control=True)
    with trio.fail_after(TIMEOUT):
        async with jetstream_control(emulator) as (_, control):

            async def error(method: str, path: str, status: int, **kwargs: Any) -> str:
                response = await control.request(method, path, **kwargs)
                assert response.status_code == status, response.text
                assert response.headers["content-type"] == "application/json"
                message: str = response.json()["error"]
                return message

            assert "no control endpoint" in await error("GET", "/nothing", 404)
            assert "takes POST" in await error("GET", "/post", 405)
            assert "takes GET" in await error("POST", "/connections", 405)
            assert "not JSON" in await error("POST", "/post", 400, content=b"{")
            assert "JSON object" in await error("POST", "/post", 400, json=[{"did": ALICE}])
            assert "missing field(s): text" in await error(
                "POST", "/post", 400, json={"did": ALICE}
            )
            unknown = {"did": ALICE, "text": "x", "txet": "y"}
            assert "unknown field(s): txet" in await error("POST", "/post", 400, json=unknown)
            bad_did = {"did": "alice", "text": "x"}
            assert "did is not valid" in await error("POST", "/post", 422, json=bad_did)
            no_text = {"did": ALICE, "text": 5}
            assert "text must be a string" in await error("POST", "/post", 400, json=no_text)
            bad_rkey = {"did": ALICE, "text": "x", "rkey": "a/b"}
            assert "rkey is not valid" in await error("POST", "/post", 422, json=bad_rkey)
            bad_tags = {"did": ALICE, "text": "x", "tags": "trio"}
            assert "array of strings" in await error("POST", "/post", 400, json=bad_tags)
            past_end = {"did": ALICE, "text": "é", "facets": [facet(0, 3, {})]}
            assert "byteStart <= byteEnd" in await error("POST", "/post", 422, json=past_end)
            no_rkey = {"did": ALICE}
            assert "missing field(s): rkey" in await error("POST", "/delete", 400, json=no_rkey)
            no_handle = {"did": ALICE, "name": "A"}
            assert "handle" in await error("POST", "/profile", 400, json=no_handle)
            bad_name = {"did": ALICE, "handle": "a.test", "name": 1}
            assert "name must be" in await error("POST", "/profile", 400, json=bad_name)
            bad_latency = {"seconds": -1}
            assert "from 0 to" in await error("POST", "/profile-latency", 400, json=bad_latency)
            assert "from 0 to" in await error(
                "POST", "/profile-latency", 400, json={"seconds": True}
            )
            assert (await control.get("/connections")).json() == []
    assert list(emulator.history) == []  # nothing reached the firehose
    assert ALICE not in emulator.profiles


async def test_jetstream_control_api_is_not_served_unless_enabled() -> None:
    emulator = JetstreamEmulator(rate=0)
    with trio.fail_after(TIMEOUT):
        async with jetstream_control(emulator) as (_, control):
            assert (await control.get("/connections")).status_code == 404
            post = await control.post("/post", json={"did": ALICE, "text": "x"})
            assert post.status_code == 404
    assert list(emulator.history) == []


def pats_trio_argv(*args: str) -> list[str]:
    exe = shutil.which("pats-trio")
    return [*([exe] if exe else [sys.executable, "-m", "pats_trio"]), *args]


async def read_until(stream: trio.abc.ReceiveStream, pattern: re.Pattern[bytes]) -> re.Match[bytes]:
    """Read `stream` until `pattern` matches what came so far."""
    seen = b""
    while True:
        chunk = await stream.receive_some()
        if not chunk:
            raise AssertionError(
                f"the process ended its output without {pattern.pattern!r}:\n{seen!r}"
            )
        seen += chunk
        found = pattern.search(seen)
        if found is not None:
            return found


async def poll_open_connection(control: httpx.AsyncClient) -> dict[str, Any]:
    """The first open stream in the emulator's records, once there is one (another process: no
    `wait_until` across it)."""
    while True:
        records = [
            record for record in (await control.get("/connections")).json() if record["open"]
        ]
        if records:
            found: dict[str, Any] = records[0]
            return found
        await trio.sleep(0.05)


async def test_emulate_jetstream_runs_as_its_own_process_with_its_control_api() -> None:
    argv = pats_trio_argv("emulate", "--jetstream", "--control", "--port", "0", "--rate", "0")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TWITTER_", "PATS_"))}
    with trio.fail_after(TIMEOUT * 2):
        process = await trio.lowlevel.open_process(
            argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        try:
            assert process.stdout is not None
            found = await read_until(process.stdout, BANNER)
            ws_url, http_url = (part.decode() for part in found.groups())
            assert ws_url.removeprefix("ws://") == http_url.removeprefix("http://")
            async with (
                httpx.AsyncClient(base_url=http_url + CONTROL_PREFIX, timeout=None) as control,
                trio_websocket.open_websocket_url(f"{ws_url}/subscribe") as ws,
            ):
                await poll_open_connection(control)
                posted = (await control.post("/post", json={"did": ALICE, "text": "hi"})).json()
                assert await next_event(ws) == posted
                [record] = (await control.get("/connections")).json()
                assert record["open"] is True
            process.send_signal(signal.SIGTERM)
            assert await process.wait() == 0
        finally:
            if process.returncode is None:
                process.kill()
                with trio.move_on_after(5):
                    await process.wait()
