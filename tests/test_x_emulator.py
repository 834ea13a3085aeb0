"""The X API v2 emulator over real HTTP: its limits and error bodies as X documents them."""

from __future__ import annotations

import os
import re
import signal
import subprocess

import httpx
import orjson
import pytest
import trio
import trio.testing

from pats_trio.emulator.xapi import XEmulator, serve_xapi
from pats_trio.emulator.xrules import RuleSyntaxError, parse_rule
from tests.support import pats_trio_argv

TOKEN = "emulator-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
RULES = "/2/tweets/search/stream/rules"
STREAM = "/2/tweets/search/stream"


async def started(nursery: trio.Nursery, **options: int) -> tuple[XEmulator, httpx.AsyncClient]:
    emulator = XEmulator(rate=0, filter_rate=0, seed=1, token=TOKEN, **options)
    url = await nursery.start(serve_xapi, emulator)
    return emulator, httpx.AsyncClient(base_url=url, headers=AUTH, timeout=60)


async def test_rules_are_checked_added_listed_and_deleted(nursery: trio.Nursery) -> None:
    emulator, http = await started(nursery, max_rule_chars=30, max_rules=2)
    with trio.fail_after(10):
        add = {"add": [{"value": "python", "tag": "t"}, {"value": "(a b", "tag": "t"}]}
        dry = (await http.post(RULES, params={"dry_run": "true"}, json=add)).json()
        assert dry["meta"]["summary"] == {"created": 0, "not_created": 2, "valid": 1, "invalid": 1}
        assert dry["errors"][0]["title"] == "UnprocessableEntity"
        assert dry["errors"][0]["type"].endswith("/problems/invalid-rules")
        assert emulator.rules == {}, "a dry run changes nothing"
        added = (await http.post(RULES, json=add)).json()
        [rule] = added["data"]
        assert rule["value"] == "python"
        again = {"add": [{"value": "python"}, {"value": "x" * 31}, {"value": "b"}, {"value": "c"}]}
        answer = (await http.post(RULES, json=again)).json()
        titles = [e["title"] for e in answer["errors"]]
        assert titles == ["DuplicateRule", "UnprocessableEntity", "RulesCapExceeded"]
        assert answer["errors"][0]["id"] == rule["id"]
        listed = (await http.get(RULES)).json()
        assert {r["value"] for r in listed["data"]} == {"python", "b"}
        gone = (await http.post(RULES, json={"delete": {"ids": [rule["id"]]}})).json()
        assert gone["meta"]["summary"] == {"deleted": 1, "not_deleted": 0}
        both = await http.post(RULES, json={"add": [], "delete": {"ids": []}})
        assert both.status_code == 400


async def test_rule_changes_past_the_window_get_429_with_the_reset(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    emulator, http = await started(nursery, rule_changes_per_window=2)
    with trio.fail_after(1000):
        for _ in range(2):
            assert (await http.post(RULES, json={"delete": {"ids": []}})).status_code == 200
        refused = await http.post(RULES, json={"delete": {"ids": []}})
        assert refused.status_code == 429
        reset = int(refused.headers["x-rate-limit-reset"])
        assert 899 <= reset - emulator.wall() <= 901
        assert refused.headers["x-rate-limit-remaining"] == "0"
        await trio.sleep(900)
        assert (await http.post(RULES, json={"delete": {"ids": []}})).status_code == 200


async def test_the_stream_wants_the_token_allows_one_connection_and_sends_keepalives(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    emulator, http = await started(nursery)
    with trio.fail_after(1000):
        refused = await httpx.AsyncClient(base_url=str(http.base_url)).get(STREAM)
        assert refused.status_code == 401
        async with http.stream("GET", STREAM) as first:
            assert first.status_code == 200
            second = await http.get(STREAM)
            assert second.status_code == 429
            assert second.json()["connection_issue"] == "TooManyConnections"
            started_at = trio.current_time()
            chunks = first.aiter_raw()
            assert await anext(chunks) == b"\r\n"
            assert trio.current_time() - started_at == pytest.approx(20, abs=0.5)
    assert [c.status for c in emulator.connections] == [401, 200, 429]


async def test_posts_carry_the_rules_they_matched(nursery: trio.Nursery) -> None:
    emulator, http = await started(nursery)
    emulator.add_rule("python", tag="pats-trio")
    emulator.add_rule("from:someone OR trio", tag="theirs")
    with trio.fail_after(10):
        async with http.stream("GET", STREAM) as response:
            await emulator.wait_until(lambda e: len(e.open_connections()) == 1)
            emulator.inject(emulator.factory.status_matching(["python"], 1_700_000_000_000))
            emulator.inject(emulator.factory.status_matching(["golang"], 1_700_000_000_000))
            emulator.inject(emulator.factory.status_matching(["trio"], 1_700_000_000_000))
            lines = []
            async for line in response.aiter_lines():
                if line.strip():
                    lines.append(orjson.loads(line))
                if len(lines) == 2:
                    break
    assert [[r["tag"] for r in m["matching_rules"]] for m in lines] == [["pats-trio"], ["theirs"]]
    assert all(m["includes"]["users"] for m in lines)


@pytest.mark.parametrize("value", ["", "(a", "a OR", "from:", "-a", '"open'])
def test_rules_x_would_refuse_are_refused(value: str) -> None:
    with pytest.raises(RuleSyntaxError):
        parse_rule(value)


async def test_emulate_x_runs_the_v2_emulator_as_its_own_process() -> None:
    argv = pats_trio_argv("emulate", "--x", "--port", "0", "--rate", "0")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TWITTER_", "PATS_", "X_"))}
    with trio.fail_after(30):
        process = await trio.lowlevel.open_process(
            argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        try:
            assert process.stdout is not None
            seen = b""
            while (found := re.search(rb"at (http://127\.0\.0\.1:\d+)\n", seen)) is None:
                chunk = await process.stdout.receive_some()
                assert chunk, seen
                seen += chunk
            async with httpx.AsyncClient(base_url=found.group(1).decode(), headers=AUTH) as http:
                answer = await http.post(RULES, json={"add": [{"value": "python", "tag": "t"}]})
                assert answer.json()["meta"]["summary"]["created"] == 1
                assert (await http.get(RULES)).json()["data"][0]["value"] == "python"
            process.send_signal(signal.SIGTERM)
            assert await process.wait() == 0
        finally:
            if process.returncode is None:
                process.kill()
                with trio.move_on_after(5):
                    await process.wait()
