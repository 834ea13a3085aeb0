"""The emulator's test control API (`/_control`), over real loopback HTTP with httpx."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import orjson
import pytest
import trio

from pats_trio.emulator import Emulator, serve_emulator
from pats_trio.emulator.control import CONTROL_PREFIX
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
