"""The whole server on PATS_SOURCE=x: the app under hypercorn, the X API v2 emulator over real
HTTP, real WebSocket viewers."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx
import orjson
import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from trio_websocket import open_websocket_url

from pats_trio.app import create_app
from pats_trio.config import Settings
from pats_trio.emulator.xapi import XEmulator, serve_xapi
from pats_trio.matching import matches_any, parse_track, tweet_terms
from pats_trio.upstream.x import SAMPLE_UNAVAILABLE
from tests.conftest import settings_for_tests
from tests.support import Viewer, status
from tests.test_x_upstream import PARTIAL_ERROR

TIMEOUT = 20
TOKEN = "app-test-token-0123456789"


async def serve_app(nursery: trio.Nursery, settings: Settings) -> str:
    app = create_app(settings)
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    binds: list[str] = await nursery.start(serve, app, config)
    return binds[0]


async def start(nursery: trio.Nursery, **overrides: Any) -> tuple[XEmulator, str]:
    emulator = XEmulator(rate=0, filter_rate=0, seed=7, token=TOKEN)
    api_url = await nursery.start(serve_xapi, emulator)
    settings = settings_for_tests(
        source_setting="x", x_api_url=api_url, x_bearer_token=TOKEN, **overrides
    )
    return emulator, await serve_app(nursery, settings)


def ws(http_url: str, track: str = "") -> str:
    url = "ws" + http_url.removeprefix("http") + "/ws"
    return url + (f"?filter={quote(track)}" if track else "")


async def rules_carry(emulator: XEmulator, phrases: set[str]) -> None:
    def carried(e: XEmulator) -> set[str]:
        return {p.strip("()") for r in e.rules.values() for p in r.value.split(" OR ")}

    await emulator.wait_until(lambda e: carried(e) == phrases)


async def test_a_refused_rule_is_told_to_its_viewers_and_nobody_else(nursery: trio.Nursery) -> None:
    emulator, http_url = await start(nursery)
    emulator.reject_terms = {"forbidden"}
    with trio.fail_after(TIMEOUT):
        async with (
            open_websocket_url(ws(http_url, "python")) as ws_python,
            open_websocket_url(ws(http_url, "forbidden")) as ws_bad,
            open_websocket_url(ws(http_url, "trio,forbidden")) as ws_both,
        ):
            python, bad, both = Viewer(ws_python), Viewer(ws_bad), Viewer(ws_both)
            error = await bad.next_of("error")
            assert error["code"] == "x_rule_rejected"
            assert "'forbidden'" in error["message"]
            assert "The term 'forbidden' is not allowed" in error["message"]
            assert (await both.next_of("error"))["code"] == "x_rule_rejected"
            await rules_carry(emulator, {"python", "trio"})
            await emulator.wait_until(lambda e: bool(e.open_connections()))
            emulator.inject(status("python and trio", 1))
            assert (await python.tweets(1))[0]["id_str"] == "1"
            assert (await both.tweets(1))[0]["id_str"] == "1"
            assert not any(f["type"] == "error" for f in python.frames)
            assert len(emulator.connections) == 1


async def test_viewers_come_and_go_on_one_stream_and_get_exactly_their_posts(
    nursery: trio.Nursery,
) -> None:
    emulator, http_url = await start(nursery)
    with trio.fail_after(TIMEOUT):
        async with open_websocket_url(ws(http_url, "python")) as ws_python:
            python = Viewer(ws_python)
            hello = await python.next_of("hello")
            assert (hello["source"], hello["mode"]) == ("x", "live")
            await rules_carry(emulator, {"python"})
            await emulator.wait_until(lambda e: bool(e.open_connections()))
            async with open_websocket_url(ws(http_url, "trio rust")) as ws_trio:
                trio_viewer = Viewer(ws_trio)
                await rules_carry(emulator, {"python", "trio rust"})
                emulator.inject(status("rust meets trio", 2))
                emulator.inject(status("python 3.14", 3))
                got = await trio_viewer.tweets(1)
                assert got[0]["id_str"] == "2"
                assert got[0]["source"] == "x"
                assert (await python.tweets(1))[0]["id_str"] == "3"
            await rules_carry(emulator, {"python"})
            # In-band change of keywords: new rules, the same stream.
            await ws_python.send_message(orjson.dumps({"type": "filter", "track": "golang"}))
            assert (await python.next_of("hello"))["track"] == ["golang"]
            await rules_carry(emulator, {"golang"})
            emulator.inject(status("golang generics", 4))
            assert (await python.tweets(1))[0]["id_str"] == "4"
    assert len(emulator.connections) == 1


async def test_the_sample_view_says_in_plain_words_that_x_has_none(nursery: trio.Nursery) -> None:
    emulator, http_url = await start(nursery)
    with trio.fail_after(TIMEOUT):
        async with open_websocket_url(ws(http_url)) as ws_sample:
            sample = Viewer(ws_sample)
            frame = await sample.next_of("status")
    assert frame["state"] == "error"
    assert frame["reason"] == SAMPLE_UNAVAILABLE
    assert emulator.connections == []


async def test_metrics_count_posts_and_spend_and_never_show_the_token(
    nursery: trio.Nursery,
) -> None:
    emulator, http_url = await start(nursery, x_max_posts_per_day=100, x_price_per_post=0.005)
    with trio.fail_after(TIMEOUT):
        async with open_websocket_url(ws(http_url, "python")) as ws_python:
            python = Viewer(ws_python)
            await rules_carry(emulator, {"python"})
            await emulator.wait_until(lambda e: len(e.open_connections()) == 1)
            for n in range(1, 4):
                emulator.inject(status(f"python {n}", n))
            await python.tweets(3)
            async with httpx.AsyncClient() as client:
                text = (await client.get(http_url + "/metrics")).text
                ready = (await client.get(http_url + "/readyz")).text
    assert "pats_x_posts_read_today 3.0" in text
    assert "pats_x_estimated_spend_today 0.015" in text
    assert "pats_x_daily_post_cap 100.0" in text
    assert 'pats_x_posts_matched_total{rules="ours"} 3.0' in text
    assert "pats_x_rules 1.0" in text
    assert TOKEN not in text
    assert TOKEN not in ready


async def test_a_partial_error_on_the_stream_never_reaches_a_viewer_and_is_counted(
    nursery: trio.Nursery,
) -> None:
    emulator, http_url = await start(nursery)
    with trio.fail_after(TIMEOUT):
        async with open_websocket_url(ws(http_url, "python")) as ws_python:
            python = Viewer(ws_python)
            await rules_carry(emulator, {"python"})
            await emulator.wait_until(lambda e: len(e.open_connections()) == 1)
            emulator.inject_error(PARTIAL_ERROR)
            emulator.inject(status("python after the error line", 1))
            assert (await python.tweets(1))[0]["id_str"] == "1"
            async with httpx.AsyncClient() as client:
                text = (await client.get(http_url + "/metrics")).text
    assert not any(f["type"] == "error" for f in python.frames)
    assert 'pats_x_stream_problems_total{kind="partial"} 1.0' in text


async def test_without_a_token_the_built_in_v2_emulator_serves_the_demo(
    nursery: trio.Nursery,
) -> None:
    http_url = await serve_app(
        nursery, settings_for_tests(source_setting="x", emulator_rate=50.0, emulator_seed=2)
    )
    with trio.fail_after(TIMEOUT):
        async with open_websocket_url(ws(http_url, "python")) as ws_python:
            python = Viewer(ws_python)
            hello = await python.next_of("hello")
            assert (hello["source"], hello["mode"]) == ("x", "demo")
            got = await python.tweets(2)
    assert all(matches_any(parse_track("python"), tweet_terms(t)) for t in got)


def test_settings_never_show_the_token() -> None:
    settings = settings_for_tests(source_setting="x", x_bearer_token=TOKEN)
    assert TOKEN not in repr(settings)
    assert "x_token='***'" in repr(settings)
    assert settings.source == "x"
    assert TOKEN not in repr(settings.x_token)
