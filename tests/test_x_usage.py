"""The X cost guard's memory: X's usage endpoint (the v2 emulator's, over loopback), the daily cap
through a restart of the server and a Redis takeover, the project's monthly cap, and every way
the usage endpoint can fail without stopping the stream."""

from __future__ import annotations

import doctest
import logging
from functools import partial

import httpx
import pytest
import trio
import trio.testing
from glide import GlideClient
from trio_websocket import open_websocket_url

from pats_trio.app import create_app
from pats_trio.broker import tally as tally_module
from pats_trio.broker.redis import client_config
from pats_trio.broker.tally import DeploymentTally, tally_key
from pats_trio.config import Settings
from pats_trio.credentials import BearerToken
from pats_trio.emulator.xapi import STREAM_PATH, USAGE_PATH, XEmulator, serve_xapi
from pats_trio.redis_url import parse_redis_url
from pats_trio.upstream.tally import SHARED_TALLY
from pats_trio.upstream.x import cost, messages, usage
from pats_trio.upstream.x.client import get_usage
from pats_trio.upstream.x.ledger import TALLY_NAME, USAGE_INTERVAL
from pats_trio.upstream.x.usage import read_usage
from tests.conftest import settings_for_tests
from tests.redis_server import RedisServer
from tests.support import Viewer, free_port, status
from tests.test_x_app import rules_carry
from tests.test_x_scaling import Worker, _serve, start_x_worker, wait_for
from tests.test_x_upstream import TOKEN, Harness, start

TIMEOUT = 30
COULD_NOT_READ = "X's usage figures could not be read"


def auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_the_docstring_examples_hold() -> None:
    for module in (cost, usage, tally_module):
        assert doctest.testmod(module).failed == 0


async def redis_holds(redis: RedisServer, key: str, value: str) -> None:
    """Until `key` holds `value` (Redis wakes no one: poll it)."""
    while True:
        if await redis.cli("GET", key) == value:
            return
        await trio.sleep(0.05)


# the emulator's usage endpoint


async def test_the_emulators_usage_endpoint_counts_the_posts_it_delivered_per_utc_day(
    nursery: trio.Nursery,
) -> None:
    emulator = XEmulator(
        rate=0, filter_rate=0, seed=5, token=TOKEN, project_cap=1000, usage_checks_per_window=4
    )
    url = await nursery.start(serve_xapi, emulator)
    emulator.add_rule("python", "pats-trio")
    with trio.fail_after(TIMEOUT):
        async with httpx.AsyncClient(base_url=url) as http:
            for headers in ({}, auth("not-the-token")):
                refused = await http.get(USAGE_PATH, headers=headers)
                assert refused.status_code == 401
                assert refused.headers["content-type"] == "application/problem+json"
                assert refused.json()["title"] == "Unauthorized"
            async with http.stream("GET", STREAM_PATH, headers=auth()) as stream:
                await emulator.wait_until(lambda e: len(e.open_connections()) == 1)
                emulator.inject(status("golang only", 9))  # matches no rule: not delivered
                for n in range(1, 4):
                    emulator.inject(status(f"python {n}", n))
                posts = 0
                async for line in stream.aiter_lines():
                    posts += bool(line.strip())
                    if posts == 3:
                        break
            plain = (await http.get(USAGE_PATH, headers=auth())).json()["data"]
            daily = await http.get(
                USAGE_PATH,
                headers=auth(),
                params={"days": "2", "usage.fields": "daily_project_usage,daily_client_app_usage"},
            )
            bad_days = await http.get(USAGE_PATH, headers=auth(), params={"days": "91"})
            bad_field = await http.get(
                USAGE_PATH, headers=auth(), params={"usage.fields": "tweets_consumed"}
            )
            limited = await http.get(USAGE_PATH, headers=auth())
    assert set(plain) == {"cap_reset_day", "project_cap", "project_id", "project_usage"}
    assert (plain["project_cap"], plain["project_usage"]) == ("1000", "3")
    assert isinstance(plain["cap_reset_day"], int)
    assert 1 <= plain["cap_reset_day"] <= 31
    data = daily.json()["data"]
    assert set(data) == {"daily_project_usage", "daily_client_app_usage"}
    lines = data["daily_project_usage"]["usage"]
    assert [line["usage"] for line in lines] == ["0", "3"]
    today = emulator.today()
    assert usage.utc_day_of(lines[-1]["date"]) == today
    assert data["daily_client_app_usage"][0]["usage"] == lines
    assert read_usage(daily.json(), today).today == 3
    assert (bad_days.status_code, bad_field.status_code) == (400, 400)
    assert bad_field.json()["title"] == "Invalid Request"
    assert limited.status_code == 429
    assert int(limited.headers["x-rate-limit-reset"]) >= emulator.wall()


async def test_a_test_in_another_process_sets_and_fails_the_usage_through_the_control_api(
    nursery: trio.Nursery,
) -> None:
    emulator = XEmulator(rate=0, filter_rate=0, seed=5, token=TOKEN)
    url = await nursery.start(serve_xapi, emulator)
    with trio.fail_after(TIMEOUT):
        async with httpx.AsyncClient(base_url=url) as http:
            hidden = await http.post("/_control/usage", json={"count": 7})
            emulator.control = True
            set_ = await http.post("/_control/usage", json={"count": 7, "project_cap": 50})
            bad = await http.post("/_control/usage", json={"count": "seven"})
            fail = await http.post("/_control/usage-failure", json={"status": 503})
            failed = await http.get(USAGE_PATH, headers=auth())
            answered = await http.get(USAGE_PATH, headers=auth())
            seen = (await http.get("/_control/usage")).json()
    assert hidden.status_code == 404, "no control API unless asked for"
    assert set_.status_code == 200
    assert bad.status_code == 400
    assert fail.json() == {"failing": 1}
    assert failed.status_code == 503
    assert answered.json()["data"]["project_usage"] == "7"
    assert answered.json()["data"]["project_cap"] == "50"
    assert list(seen["days"].values()) == [7]
    assert seen["requests"] == [503, 200]


# a restart of the server


async def serve_app(settings: Settings, *, task_status: trio.TaskStatus[Worker]) -> None:
    await _serve(create_app(settings), task_status=task_status)


async def test_a_restarted_server_counts_on_from_xs_figure_and_stops_at_the_same_cap(
    nursery: trio.Nursery,
) -> None:
    emulator = XEmulator(rate=0, filter_rate=0, seed=7, token=TOKEN)
    api_url = await nursery.start(serve_xapi, emulator)
    settings = settings_for_tests(
        source_setting="x",
        x_api_url=api_url,
        x_bearer_token=TOKEN,
        x_max_posts_per_day=5,
        x_price_per_post=0.005,
    )
    with trio.fail_after(TIMEOUT):
        first: Worker = await nursery.start(serve_app, settings)
        async with open_websocket_url(first.ws_url + "?filter=python") as ws:
            viewer = Viewer(ws)
            await rules_carry(emulator, {"python"})
            await emulator.wait_until(lambda e: len(e.open_connections()) == 1)
            for n in range(1, 4):
                emulator.inject(status(f"python {n}", n))
            assert [t["id_str"] for t in await viewer.tweets(3)] == ["1", "2", "3"]
        first.scope.cancel()
        await emulator.wait_until(lambda e: not e.open_connections())

        second: Worker = await nursery.start(serve_app, settings)
        async with open_websocket_url(second.ws_url + "?filter=python") as ws:
            viewer = Viewer(ws)
            await emulator.wait_until(lambda e: len(e.open_connections()) == 1)
            connected = [f for f in viewer.frames if f.get("state") == "connected"]
            while not connected:
                frame = await viewer.next_of("status")
                connected = [frame] if frame["state"] == "connected" else []
            emulator.inject(status("python 4", 4))
            emulator.inject(status("python 5", 5))
            error = await viewer.next_of("error")
            await emulator.wait_until(lambda e: not e.open_connections())
            emulator.inject(status("python 6", 6))  # read by nobody: the stream is closed
            got = [
                tweet["id_str"]
                for frame in viewer.frames
                for tweet in (
                    [frame["tweet"]] if frame["type"] == "tweet" else frame.get("tweets", [])
                )
            ]
            http_url = "http" + second.ws_url.removeprefix("ws").removesuffix("/ws")
            async with httpx.AsyncClient() as http:
                metrics = await http.get(http_url + "/metrics")
        second.scope.cancel()
    assert (connected[0]["posts_today"], connected[0]["spend_today"]) == (3, 0.015)
    assert error["code"] == "x_daily_cap"
    assert emulator.usage[emulator.today()] == 5, "five posts read in all: one cap, not two"
    assert got == ["4", "5"]
    assert "pats_x_posts_read_today 5.0" in metrics.text
    assert "pats_x_estimated_spend_today 0.025" in metrics.text
    assert 'pats_x_usage_checks_total{outcome="ok"}' in metrics.text


# a Redis takeover


async def test_a_new_owner_after_a_takeover_counts_on_from_the_deployments_count(
    nursery: trio.Nursery, redis: RedisServer
) -> None:
    emulator = XEmulator(rate=0, filter_rate=0, seed=11, token=TOKEN)
    emulator.fail_usage(503, count=1000)  # only Redis can tell the new owner what was read
    api_url = await nursery.start(serve_xapi, emulator)

    with trio.fail_after(TIMEOUT):
        first, second = [
            await start_x_worker(
                nursery,
                api_url,
                redis,
                name,
                token=TOKEN,
                x_max_posts_per_day=5,
                redis_prefix="xcost",
            )
            for name in ("x1", "x2")
        ]
        await wait_for(lambda: first.owner or second.owner)
        owner, other = (first, second) if first.owner else (second, first)
        async with open_websocket_url(other.ws_url + "?filter=python") as ws:
            viewer = Viewer(ws)
            await rules_carry(emulator, {"python"})
            await emulator.wait_until(lambda e: len(e.open_connections()) == 1)
            for n in range(1, 4):
                emulator.inject(status(f"python {n}", n))
            assert [t["id_str"] for t in await viewer.tweets(3)] == ["1", "2", "3"]
            owner.scope.cancel()
            await wait_for(lambda: other.owner)
            await emulator.wait_until(lambda e: len(e.open_connections()) == 1)
            emulator.inject(status("python 4", 4))
            emulator.inject(status("python 5", 5))
            error = await viewer.next_of("error")
            await emulator.wait_until(lambda e: not e.open_connections())
            emulator.inject(status("python 6", 6))  # read by nobody: the stream is closed
        key = tally_key("xcost", TALLY_NAME, cost.utc_day(emulator.wall()))
        await redis_holds(redis, key, "5")  # the new owner's batch, a second later
    assert error["code"] == "x_daily_cap"
    assert emulator.usage[emulator.today()] == 5, "five posts read in all: one cap, not two"


async def test_posts_read_while_redis_is_away_are_added_once_it_is_back(
    nursery: trio.Nursery, redis: RedisServer
) -> None:
    target = parse_redis_url(redis.url)
    client = await GlideClient.create(client_config(target, "tally-test"))
    tally = DeploymentTally(client, "away")
    token = SHARED_TALLY.set(tally)
    try:
        with trio.fail_after(TIMEOUT):
            x = await start(nursery)
            x.want("python")
            await x.in_step()
            await x.emulator.wait_until(lambda e: len(e.open_connections()) == 1)
            day = cost.utc_day(x.emulator.wall())
            key = tally.key(TALLY_NAME, day)
            x.emulator.inject(status("python 1", 1))
            await redis_holds(redis, key, "1")
            await redis.stop()
            for n in range(2, 5):
                x.emulator.inject(status(f"python {n}", n))
            await x.recorder.wait_for(lambda: len(x.recorder.tweet_ids()) == 4)
            await wait_for(lambda: x.upstream.ledger.stats.tally_failures > 0)
            await redis.start()  # empty: it lost the day's count
            await redis_holds(redis, key, "4")
            assert x.upstream.ledger.pending == {}
    finally:
        SHARED_TALLY.reset(token)
        with trio.CancelScope(shield=True), trio.move_on_after(1.0):
            await client.close()


# the project's monthly cap


async def test_a_reached_project_cap_stops_reading_says_so_and_resumes_when_x_lifts_it(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    emulator = XEmulator(rate=0, filter_rate=0, seed=3, token=TOKEN, project_cap=10)
    emulator.set_usage(10)
    with trio.fail_after(TIMEOUT * 100):
        x = await start(nursery, emulator=emulator)
        x.want("python")
        await x.in_step()

        def told() -> list[str]:
            return [n.frame for n in x.recorder.notices() if "x_project_cap" in n.frame]

        await x.recorder.wait_for(lambda: bool(told()))
        capped_at = trio.current_time()
        assert "monthly limit of 10 posts is used up" in told()[0]
        assert "X says it resets in" in told()[0]
        assert emulator.connections == [], "no connect is spent on a capped project"
        await trio.sleep(USAGE_INTERVAL / 2)
        emulator.project_cap = 100
        await emulator.wait_until(lambda e: len(e.open_connections()) == 1)
        assert trio.current_time() - capped_at <= USAGE_INTERVAL + 11
        emulator.inject(status("python again", 1))
        await x.recorder.wait_for(lambda: x.recorder.tweet_ids() == ["1"])
    assert len(told()) == 1


async def test_x_refusing_the_stream_for_the_project_cap_is_told_in_plain_words(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    emulator = XEmulator(rate=0, filter_rate=0, seed=3, token=TOKEN, project_cap=10)
    emulator.set_usage(10)
    emulator.fail_usage(503, count=1000)  # the usage endpoint cannot say it: the stream does
    with trio.fail_after(TIMEOUT * 100):
        x = await start(nursery, emulator=emulator)
        x.want("python")
        await x.in_step()
        await x.recorder.wait_for(
            lambda: any("x_project_cap" in n.frame for n in x.recorder.notices())
        )
        retry = x.recorder.retries()[-1]
    assert [r.status for r in emulator.connections] == [429]
    assert retry >= USAGE_INTERVAL


@pytest.mark.parametrize(
    "problem",
    [
        # X's current pages write types on api.x.com, and title nothing "UsageCapExceeded".
        {
            "title": "Usage Capped",
            "detail": "Usage cap exceeded: Monthly product cap",
            "type": "https://api.x.com/2/problems/usage-capped",
        },
        {"type": "https://api.twitter.com/2/problems/usage-capped", "title": "Too Many Requests"},
    ],
)
async def test_the_project_cap_is_known_by_the_problem_s_type_not_its_title(
    problem: dict[str, str], nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    emulator = XEmulator(rate=0, filter_rate=0, seed=3, token=TOKEN)
    emulator.fail_next(429, count=1000, body=problem)
    with trio.fail_after(TIMEOUT * 100):
        x = await start(nursery, emulator=emulator)
        x.want("python")
        await x.recorder.wait_for(
            lambda: any("x_project_cap" in n.frame for n in x.recorder.notices())
        )
        retry = x.recorder.retries()[-1]
    assert retry >= USAGE_INTERVAL, "checked again with the usage, not a 60 s rate-limit wait"
    assert [r.status for r in emulator.connections] == [429]


def test_a_usage_capped_problem_on_the_stream_ends_it() -> None:
    line = b'{"errors":[{"title":"x","detail":"capped","type":"https://api.x.com/2/problems/usage-capped"}]}'
    (problem,) = messages.LineDecoder().feed(line + b"\r\n")
    assert isinstance(problem, messages.Problem)
    assert (problem.kind, problem.disconnects) == ("usage-capped", True)


# the usage endpoint failing


FAILURES: dict[str, tuple[int, bytes | None]] = {
    "unauthorized": (401, None),
    "forbidden": (403, None),
    "rate limited": (429, None),
    "server error": (503, None),
    "not json": (200, b"<html>upstream connect error</html>"),
    "not a usage object": (200, b'{"errors": [{"title": "Not Found Error"}]}'),
}


@pytest.mark.parametrize("failure", [*FAILURES, "network"])
async def test_a_usage_endpoint_that_fails_never_stops_the_stream(
    failure: str,
    nursery: trio.Nursery,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    emulator = XEmulator(rate=0, filter_rate=0, seed=3, token=TOKEN)
    if failure in FAILURES:
        code, body = FAILURES[failure]
        emulator.fail_usage(code, count=1000, body=body)
    with trio.fail_after(TIMEOUT * 100):
        x: Harness = await start(nursery, emulator=emulator, max_posts_per_day=100)
        if failure == "network":
            dead = f"http://127.0.0.1:{free_port()}"
            x.upstream.ledger._fetch_usage = partial(
                get_usage, httpx.AsyncClient(), dead, BearerToken(TOKEN), {}
            )
        x.want("python")
        await x.in_step()
        await emulator.wait_until(lambda e: len(e.open_connections()) == 1)
        for n in range(1, 3):
            emulator.inject(status(f"python {n}", n))
        await x.recorder.wait_for(lambda: len(x.recorder.tweet_ids()) == 2)
        await trio.sleep(USAGE_INTERVAL * 3)
        emulator.inject(status("python 3", 3))
        await x.recorder.wait_for(lambda: len(x.recorder.tweet_ids()) == 3)
    assert x.upstream.meter.today == 3
    assert len(emulator.connections) == 1, "the stream was never dropped"
    if failure != "network":
        assert len(emulator.usage_requests) >= 3, "X was asked at start and every 5 minutes"
    assert x.upstream.ledger.stats.usage_failures >= 3
    warnings = [r for r in caplog.records if COULD_NOT_READ in r.getMessage()]
    assert len(warnings) == 1, "told once, in plain words"
    assert TOKEN not in caplog.text


async def test_x_counting_more_than_was_read_here_stops_an_open_stream_at_the_cap(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    emulator = XEmulator(rate=0, filter_rate=0, seed=3, token=TOKEN)
    with trio.fail_after(TIMEOUT * 100):
        x = await start(nursery, emulator=emulator, max_posts_per_day=50)
        x.want("python")
        await x.in_step()
        await emulator.wait_until(lambda e: len(e.open_connections()) == 1)
        opened_at = trio.current_time()
        emulator.set_usage(50)  # another app of the project read the rest of the day's cap
        await emulator.wait_until(lambda e: not e.open_connections())
        closed_after = trio.current_time() - opened_at
    assert closed_after <= USAGE_INTERVAL + 1
    assert x.upstream.meter.today == 50
    assert any("x_daily_cap" in n.frame for n in x.recorder.notices())
