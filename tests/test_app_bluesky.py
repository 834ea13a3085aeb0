"""The whole server on the Bluesky source: the app under hypercorn, reading the Jetstream
emulator over a real WebSocket, with real WebSocket viewers."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from trio_websocket import open_websocket_url

from pats_trio.app import create_app
from pats_trio.config import SettingsError, load_settings
from pats_trio.emulator.jetstream import JetstreamEmulator, JetstreamURLs, did_for, serve_jetstream
from tests.conftest import settings_for_tests
from tests.support import Viewer

TIMEOUT = 20
POSTS_ARRIVE_SECONDS = 5.0
"""Loopback delivers in milliseconds; past this, the posts are not coming."""


async def start(nursery: trio.Nursery, **overrides: Any) -> tuple[JetstreamEmulator, str]:
    emulator = JetstreamEmulator(rate=0, seed=5)
    urls: JetstreamURLs = await nursery.start(serve_jetstream, emulator)
    settings = settings_for_tests(
        source_setting="bluesky",
        bluesky_hosts=(urls.jetstream,),
        bluesky_appview=urls.appview,
        **overrides,
    )
    app = create_app(settings)
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    binds = await nursery.start(serve, app, config)
    return emulator, "ws" + binds[0].removeprefix("http") + "/ws"


async def test_filter_viewers_get_exactly_their_posts_and_a_filter_change_never_reconnects(
    nursery: trio.Nursery,
) -> None:
    emulator, ws_url = await start(nursery)
    alice, bob = did_for("alice"), did_for("bob")
    emulator.set_profile(alice, "alice.example", "Alice A.", "https://cdn.example/alice.jpg")
    emulator.set_profile(bob, "bob.example", "Bob B.", None)
    with trio.fail_after(TIMEOUT):
        async with (
            open_websocket_url(ws_url) as ws_sample,
            open_websocket_url(ws_url + "?filter=python") as ws_python,
        ):
            sample, python = Viewer(ws_sample), Viewer(ws_python)
            hello = await sample.next_of("hello")
            assert (hello["source"], hello["mode"]) == ("bluesky", "live")
            await python.next_of("hello")
            await emulator.wait_until(lambda e: len(e.open_connections()) == 1)
            while (await sample.next_of("status"))["state"] != "connected":
                pass

            emulator.post(alice, "Trio and structured concurrency")
            emulator.post(bob, "New python release today")
            got = await sample.tweets(2)
            assert [t["text"] for t in got] == [
                "Trio and structured concurrency",
                "New python release today",
            ]
            assert all(t["source"] == "bluesky" for t in got)
            assert got[1]["url"].startswith("https://bsky.app/profile/")
            only = await python.tweets(1)
            assert only[0]["text"] == "New python release today"

            # In-band change to a new keyword: matched locally, the one upstream socket stays.
            await ws_python.send_message('{"type":"filter","track":"trio"}')
            assert (await python.next_of("hello"))["track"] == ["trio"]
            emulator.post(bob, "trio nurseries are neat")
            assert (await python.tweets(1))[0]["text"] == "trio nurseries are neat"
            assert len(emulator.connections) == 1

            # A delete reaches both viewers, as the id the post went out with.
            post = got[0]
            emulator.delete(alice, post["id_str"].rsplit("/", 1)[1])
            assert (await sample.next_of("delete"))["id_str"] == post["id_str"]
            assert (await python.next_of("delete"))["id_str"] == post["id_str"]

            # Each author's profile follows their first post, so the page can fill cards in.
            while len([f for f in sample.frames if f["type"] == "profile"]) < 2:
                await sample.next_frame()
            profiles = {
                f["profile"]["did"]: f["profile"] for f in sample.frames if f["type"] == "profile"
            }
            assert profiles[alice] == {
                "did": alice,
                "handle": "alice.example",
                "name": "Alice A.",
                "avatar": "https://cdn.example/alice.jpg",
            }
            assert (profiles[bob]["handle"], profiles[bob]["name"]) == ("bob.example", "Bob B.")


async def test_an_account_taken_down_takes_its_posts_off_every_page_and_out_of_history(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    emulator, ws_url = await start(nursery, history_size=10)
    alice, bob = did_for("alice"), did_for("bob")
    with trio.fail_after(TIMEOUT):
        async with (
            open_websocket_url(ws_url) as ws_sample,
            open_websocket_url(ws_url + "?filter=python") as ws_python,
            open_websocket_url(ws_url + "?filter=rust") as ws_rust,
        ):
            sample, python, rust = Viewer(ws_sample), Viewer(ws_python), Viewer(ws_rust)
            for viewer in (sample, python, rust):
                await viewer.next_of("hello")
            await emulator.wait_until(lambda e: len(e.open_connections()) == 1)
            while (await sample.next_of("status"))["state"] != "connected":
                pass
            emulator.post(alice, "python tips, part one")
            emulator.post(alice, "lunch")
            emulator.post(bob, "python and rust together")
            shown = [t["id_str"] for t in await sample.tweets(3)]
            await python.tweets(2)
            await rust.tweets(1)

            emulator.account(alice, active=False, status="takendown")
            emulator.post(bob, "python rust marker")
            for viewer in (sample, python, rust):
                await viewer.tweets(1)
            async with open_websocket_url(ws_url) as ws_late:
                late = Viewer(ws_late)
                await late.next_of("hello")
                history = [t["id_str"] for t in await late.tweets(2)]

    def deletes(viewer: Viewer) -> list[str]:
        return [f["id_str"] for f in viewer.frames if f["type"] == "delete"]

    assert deletes(sample) == shown[:2]
    assert deletes(python) == shown[:1]
    assert deletes(rust) == [], "none of alice's posts was shown there"
    assert history[0] == shown[2], "a newcomer never sees the account's posts"
    assert any(
        "takendown" in r.getMessage() and "2 recent posts" in r.getMessage() for r in caplog.records
    )


async def test_an_event_over_the_message_limit_does_not_stop_the_posts_after_it(
    nursery: trio.Nursery,
) -> None:
    """The issue: a record of 250 KB of ``<`` is a 1.5 MB event (Jetstream writes ``<`` as six
    bytes), over the upstream's 1 MiB message limit. It closed the socket, the rewind replayed it
    and closed the next one, and so on: no post after it reached any viewer. Jetstream leaves out
    what the client asks it to (``maxMessageSizeBytes``), so the one connection carries on."""
    emulator, ws_url = await start(nursery)
    alice = did_for("alice")
    with trio.fail_after(TIMEOUT):
        async with open_websocket_url(ws_url) as ws:
            sample = Viewer(ws)
            await sample.next_of("hello")
            await emulator.wait_until(lambda e: len(e.open_connections()) == 1)
            while (await sample.next_of("status"))["state"] != "connected":
                pass
            emulator.post(alice, "before the big one")
            assert [t["text"] for t in await sample.tweets(1)] == ["before the big one"]
            emulator.post(alice, "<" * 250_000)
            emulator.post(alice, "after the big one")
            emulator.post(alice, "and after that")
            got: list[dict[str, Any]] = []
            with trio.move_on_after(POSTS_ARRIVE_SECONDS):
                got = await sample.tweets(2)
            assert [t["text"] for t in got] == ["after the big one", "and after that"]
    assert len(emulator.connections) == 1
    [connection] = emulator.connections
    assert connection.too_big == 1
    assert "maxMessageSizeBytes=" in connection.query
    assert 0 < connection.max_message_size <= 1024 * 1024


def test_bluesky_is_chosen_with_pats_source(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATS_SOURCE", "bluesky")
    monkeypatch.setenv("PATS_BLUESKY_HOSTS", "wss://one.example, wss://two.example/")
    settings = load_settings()
    assert settings.source == "bluesky"
    assert settings.bluesky_hosts == ("wss://one.example", "wss://two.example")
    monkeypatch.setenv("PATS_BLUESKY_HOSTS", "https://not-a-websocket.example")
    with pytest.raises(SettingsError, match="PATS_BLUESKY_HOSTS"):
        load_settings()
    monkeypatch.setenv("PATS_SOURCE", "myspace")
    with pytest.raises(SettingsError, match="PATS_SOURCE"):
        load_settings()
