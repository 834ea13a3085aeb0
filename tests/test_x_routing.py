"""Routing on X, over real sockets: what X matched reaches the viewers whose phrases it matches,
through the fields X matches (a long post's whole text, a link's unwound URL), and a post X
matched through something the payload lacks reaches only viewers one of whose phrases it could
match."""

from __future__ import annotations

from typing import Any

import httpx
import trio
from trio_websocket import open_websocket_url

from pats_trio.emulator.xapi import XEmulator
from tests.support import Viewer, status
from tests.test_x_app import TIMEOUT, start, ws

LONG = "a long post " * 25 + "that names zanzibar only after 280 characters"


async def ready(emulator: XEmulator, values: set[str]) -> None:
    """Until the app's rules are `values` and its stream is open."""
    await emulator.wait_until(
        lambda e: {r.value for r in e.rules.values()} == values and len(e.open_connections()) == 1
    )


def quoting(quoted_text: str, id_: int) -> dict[str, Any]:
    """A quote post whose own text says nothing; the quoted post (id `id_ + 1`) holds the words."""
    return status("look at this", id_, quoted_status=status(quoted_text, id_ + 1))


async def metrics(http_url: str) -> str:
    async with httpx.AsyncClient() as client:
        return (await client.get(http_url + "/metrics")).text


async def test_a_long_post_reaches_its_viewer_whole(nursery: trio.Nursery) -> None:
    emulator, http_url = await start(nursery)
    with trio.fail_after(TIMEOUT):
        async with open_websocket_url(ws(http_url, "zanzibar")) as ws_viewer:
            viewer = Viewer(ws_viewer)
            await ready(emulator, {"zanzibar"})
            emulator.inject(status(LONG, 1))
            [got] = await viewer.tweets(1)
    assert got["text"] == LONG


async def test_a_post_x_matched_through_a_link_s_unwound_url_reaches_its_viewer(
    nursery: trio.Nursery,
) -> None:
    emulator, http_url = await start(nursery)
    link = {
        "url": "https://t.co/abc",
        "expanded_url": "https://bit.ly/3xyz",
        "display_url": "bit.ly/3xyz",
        "unwound_url": "https://www.nasa.gov/artemis-launch",
        "indices": [10, 26],
    }
    post = status("read this https://t.co/abc", 2, entities={"urls": [link]})
    with trio.fail_after(TIMEOUT):
        async with open_websocket_url(ws(http_url, "artemis")) as ws_viewer:
            viewer = Viewer(ws_viewer)
            await ready(emulator, {"artemis"})
            emulator.inject(post)
            [got] = await viewer.tweets(1)
    assert got["id_str"] == "2"
    assert got["entities"]["urls"][0]["unwound_url"] == link["unwound_url"]


async def test_a_post_x_matched_on_a_rule_of_one_phrase_reaches_that_phrase_s_viewer(
    nursery: trio.Nursery,
) -> None:
    """X matched the quoted post but could not send it: the rule carries one phrase of plain
    words, so X's word names the phrase."""
    emulator, http_url = await start(nursery)
    with trio.fail_after(TIMEOUT):
        async with open_websocket_url(ws(http_url, "okapi")) as ws_viewer:
            viewer = Viewer(ws_viewer)
            await ready(emulator, {"okapi"})
            # The emulator applies a rule at once, X in seconds: a first post, seen, tells that
            # the app has read X's answer with the rule's id too.
            emulator.inject(status("okapi", 9))
            await viewer.tweets(1)
            emulator.inject(quoting("an okapi in the wild", 10), unavailable=["11"])
            [got] = await viewer.tweets(1)
            text = await metrics(http_url)
    assert got["id_str"] == "10"
    assert "quoted_status" not in got
    assert "pats_x_posts_routed_on_x_match_total 1.0" in text


async def test_a_viewer_never_sees_a_post_none_of_its_phrases_could_match(
    nursery: trio.Nursery,
) -> None:
    """Two phrases packed in one rule: X's match names neither, so neither viewer gets it."""
    emulator, http_url = await start(nursery)
    with trio.fail_after(TIMEOUT):
        async with (
            open_websocket_url(ws(http_url, "okapi")) as ws_okapi,
            open_websocket_url(ws(http_url, "zebra")) as ws_zebra,
        ):
            okapi, zebra = Viewer(ws_okapi), Viewer(ws_zebra)
            await ready(emulator, {"okapi OR zebra"})
            emulator.inject(status("okapi zebra", 19))
            for viewer in (okapi, zebra):
                assert [t["id_str"] for t in await viewer.tweets(1)] == ["19"]
            emulator.inject(quoting("an okapi in the wild", 20), unavailable=["21"])
            emulator.inject(status("okapi and zebra again", 23))
            for viewer in (okapi, zebra):
                assert [t["id_str"] for t in await viewer.tweets(1)] == ["23"]
            text = await metrics(http_url)
    assert "pats_x_posts_unattributable_total 1.0" in text
    assert "pats_x_posts_routed_on_x_match_total 0.0" in text


async def test_x_s_word_is_not_enough_for_a_phrase_x_matches_more_loosely(
    nursery: trio.Nursery,
) -> None:
    """X reads the quoted term ``"c++"`` as the token ``c``: a post with a plain C matches the
    rule of that one phrase on X, and is still not shown to its viewer."""
    emulator, http_url = await start(nursery)
    with trio.fail_after(TIMEOUT):
        async with open_websocket_url(ws(http_url, "c++")) as ws_cpp:
            cpp = Viewer(ws_cpp)
            await ready(emulator, {'"c++"'})
            emulator.inject(status("C++", 29))
            assert [t["id_str"] for t in await cpp.tweets(1)] == ["29"]
            emulator.inject(status("I write C every day", 30))
            emulator.inject(status("I write C++ every day", 31))
            assert [t["id_str"] for t in await cpp.tweets(1)] == ["31"]
            text = await metrics(http_url)
    assert "pats_x_posts_unattributable_total 1.0" in text
