"""The app over real sockets: hypercorn, the emulator over HTTP, and trio-websocket viewers."""

from __future__ import annotations

import itertools
import os
import re
import sys
from collections.abc import AsyncIterator, Callable, MutableMapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from trio_websocket import ConnectionClosed, open_websocket_url

from pats_trio.app import LazyApp, PatsApp, create_app
from pats_trio.config import Settings, SettingsError
from tests.support import Served, Viewer, close_code, status

TIMEOUT = 15
PROCESS_TIMEOUT = 60
CHECKOUT = Path(__file__).resolve().parent.parent
APP_BUILT = re.compile(r"app built: worker \w+, pid \d+")

_ids = itertools.count(10_000)


def new_id() -> int:
    return next(_ids)


async def wait_for_filter_track(served: Served, track: str) -> None:
    await served.emulator.wait_until(
        lambda emu: any(c.track == track for c in emu.open_connections("filter"))
    )


async def test_page_is_served_with_security_headers(served: Served) -> None:
    with trio.fail_after(TIMEOUT):
        async with httpx.AsyncClient() as client:
            page = await client.get(served.http_url + "/")
            script = await client.get(served.http_url + "/static/main.js")
    assert page.status_code == 200
    assert "<html" in page.text.lower()
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    assert script.status_code == 200
    assert "javascript" in script.headers["content-type"]


async def test_sample_viewer_gets_hello_then_trimmed_tweets(served: Served) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_websocket_url(served.ws_url) as ws:
            viewer = Viewer(ws)
            hello = await viewer.next_of("hello")
            assert isinstance(hello.pop("worker"), str)
            assert hello == {
                "type": "hello",
                "mode": "demo",
                "source": "emulator",
                "stream": "sample",
                "track": [],
            }
            await served.emulator.wait_until(lambda emu: bool(emu.open_connections("sample")))
            sent = [status(f"tweet number {i}", new_id()) for i in range(5)]
            for tweet in sent:
                served.emulator.inject(tweet)
            got = await viewer.tweets(5)
    assert [t["id_str"] for t in got] == [t["id_str"] for t in sent]
    first = got[0]
    assert first["text"] == "tweet number 0"
    assert first["user"]["screen_name"] == "someone"
    assert isinstance(first["timestamp_ms"], int)
    assert {"created_at", "entities"} <= first.keys()


async def test_filter_routing_follows_and_or_rules(served: Served) -> None:
    with trio.fail_after(TIMEOUT):
        async with (
            open_websocket_url(served.ws_url + "?filter=python,%20trio%20rust") as ws_a,
            open_websocket_url(served.ws_url + "?filter=rust") as ws_b,
        ):
            a, b = Viewer(ws_a), Viewer(ws_b)
            assert (await a.next_of("hello"))["track"] == ["python", "trio rust"]
            assert (await b.next_of("hello"))["track"] == ["rust"]
            await wait_for_filter_track(served, "python,rust,trio rust")
            cases = {
                "I love Python!": {"a"},
                "rust meets trio": {"a", "b"},
                "only trio here": set(),
                "rust alone": {"b"},
                "#python tips": {"a"},
                "TRIO and RUST shouting": {"a", "b"},
            }
            sent: dict[str, set[str]] = {}
            for text, who in cases.items():
                tweet = status(text, new_id())
                if text.startswith("#"):
                    tweet["entities"]["hashtags"] = [{"text": "python", "indices": [0, 7]}]
                served.emulator.inject(tweet)
                sent[tweet["id_str"]] = who
            # A last tweet both match marks the end of each viewer's stream.
            marker = status("python rust trio marker", new_id())
            served.emulator.inject(marker)
            got_a = await a.tweets(1 + sum("a" in w for w in sent.values()))
            got_b = await b.tweets(1 + sum("b" in w for w in sent.values()))
    assert [t["id_str"] for t in got_a] == [i for i, w in sent.items() if "a" in w] + [
        marker["id_str"]
    ]
    assert [t["id_str"] for t in got_b] == [i for i, w in sent.items() if "b" in w] + [
        marker["id_str"]
    ]


async def test_union_change_restarts_filter_without_gap_or_duplicates_or_alarm(
    served: Served,
) -> None:
    """The emulator, like Twitter, closes the old connection with code 2 as the new one opens."""
    emulator = served.emulator
    injected: list[str] = []
    with trio.fail_after(TIMEOUT):
        async with open_websocket_url(served.ws_url + "?filter=python") as ws_a:
            a = Viewer(ws_a)
            await a.next_of("hello")
            await wait_for_filter_track(served, "python")
            first_connection = emulator.open_connections("filter")[0]
            async with trio.open_nursery() as nursery:
                stop = trio.Event()

                async def feed() -> None:
                    while not stop.is_set():
                        tweet = status(f"python news {len(injected)}", new_id())
                        emulator.inject(tweet)
                        injected.append(tweet["id_str"])
                        await trio.sleep(0.002)

                nursery.start_soon(feed)
                await trio.sleep(0.05)
                async with open_websocket_url(served.ws_url + "?filter=rust") as ws_b:
                    await Viewer(ws_b).next_of("hello")
                    await wait_for_filter_track(served, "python,rust")
                    await emulator.wait_until(lambda _: first_connection.closed_at is not None)
                    await trio.sleep(0.05)
                    stop.set()
                last = status("python last one", new_id())
                emulator.inject(last)
                injected.append(last["id_str"])
            got = await a.tweets(len(injected))
    assert [t["id_str"] for t in got] == injected
    second = next(c for c in emulator.connections if c.track == "python,rust")
    assert first_connection.closed_at is not None
    assert second.opened_at <= first_connection.closed_at, "new connection opens before old closes"
    assert first_connection.replaced_by == second.id
    told = [f["state"] for f in a.frames if f["type"] == "status"]
    assert not {"error", "backoff"} & set(told), told


async def test_bad_filter_is_refused_with_error_and_1008(served: Served) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_websocket_url(served.ws_url) as ws_ok:
            ok = Viewer(ws_ok)
            await ok.next_of("hello")
            for query, code in (
                ("filter=a,,b", "empty_phrase"),
                ("filter=" + "x" * 61, "phrase_too_long"),
                # Not UTF-8: it used to become a phrase of U+FFFD characters.
                ("filter=%FF%FE%FD", "bad_encoding"),
                ("filter=caf%E9", "bad_encoding"),
                # Twitter's word for it: it used to give the unfiltered stream without a word.
                ("track=python", "unknown_parameter"),
            ):
                async with open_websocket_url(served.ws_url + "?" + query) as ws_bad:
                    bad = Viewer(ws_bad)
                    error = await bad.next_of("error")
                    assert error["code"] == code
                    assert error["message"]
                    with pytest.raises(ConnectionClosed) as closed:
                        await bad.next_frame()
                    assert close_code(closed.value) == 1008
            await served.emulator.wait_until(lambda emu: bool(emu.open_connections("sample")))
            tweet = status("still flowing", new_id())
            served.emulator.inject(tweet)
            assert [t["id_str"] for t in await ok.tweets(1)] == [tweet["id_str"]]


async def test_union_over_400_phrases_is_refused_for_the_newcomer_only(served: Served) -> None:
    first = ",".join(f"w{i}" for i in range(400))
    with trio.fail_after(TIMEOUT):
        async with open_websocket_url(served.ws_url + "?filter=" + first) as ws_full:
            full = Viewer(ws_full)
            assert len((await full.next_of("hello"))["track"]) == 400
            async with open_websocket_url(served.ws_url + "?filter=one%20more") as ws_extra:
                extra = Viewer(ws_extra)
                assert (await extra.next_of("error"))["code"] == "too_many_phrases"
                with pytest.raises(ConnectionClosed) as closed:
                    await extra.next_frame()
                assert close_code(closed.value) == 1008
            await served.emulator.wait_until(
                lambda emu: any(len(c.track.split(",")) == 400 for c in emu.open_connections())
            )
            tweet = status("w399 is here", new_id())
            served.emulator.inject(tweet)
            assert [t["id_str"] for t in await full.tweets(1)] == [tweet["id_str"]]


async def test_in_band_filter_change_switches_stream_without_reconnecting(served: Served) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_websocket_url(served.ws_url) as ws:
            viewer = Viewer(ws)
            assert (await viewer.next_of("hello"))["stream"] == "sample"
            await ws.send_message('{"type":"filter","track":"a,,b"}')
            assert (await viewer.next_of("error"))["code"] == "empty_phrase"
            await ws.send_message("not json")
            assert (await viewer.next_of("error"))["code"] == "bad_message"
            await ws.send_message('{"type":"filter","track":"Python"}')
            hello = await viewer.next_of("hello")
            assert (hello["stream"], hello["track"]) == ("filter", ["python"])
            await wait_for_filter_track(served, "python")
            miss, hit = status("nothing here", new_id()), status("python here", new_id())
            served.emulator.inject(miss)
            served.emulator.inject(hit)
            got = await viewer.tweets(1)
    assert [t["id_str"] for t in got] == [hit["id_str"]]


async def test_a_viewer_that_asks_for_binary_frames_gets_the_same_json_as_binary(
    served: Served,
) -> None:
    burst = [status(f"tweet {n} café ☕ 漢字 🎉", new_id()) for n in range(150)]
    with trio.fail_after(TIMEOUT):
        async with (
            open_websocket_url(served.ws_url, subprotocols=["pats.binary"]) as ws_binary,
            open_websocket_url(served.ws_url) as ws_text,
        ):
            assert ws_binary.subprotocol == "pats.binary"
            assert ws_text.subprotocol is None
            binary, text = Viewer(ws_binary), Viewer(ws_text)
            await binary.next_of("hello")
            await text.next_of("hello")
            await served.emulator.wait_until(lambda emu: bool(emu.open_connections("sample")))
            for tweet in burst:
                served.emulator.inject(tweet)
            got_binary, got_text = await binary.tweets(len(burst)), await text.tweets(len(burst))
    assert got_binary == got_text
    assert [t["id_str"] for t in got_binary] == [t["id_str"] for t in burst]
    assert got_binary[0]["text"] == "tweet 0 café ☕ 漢字 🎉"
    # Every message on the binary socket was binary, batches included (a backlog goes out as
    # prepared tweet frames in one write under hypercorn, as one `tweets` frame elsewhere).
    assert binary.message_types == {bytes}
    assert text.message_types == {str}


@asynccontextmanager
async def two_sample_viewers(served: Served) -> AsyncIterator[tuple[Viewer, Viewer]]:
    """Two sample viewers, both greeted, with the upstream sample stream open."""
    async with (
        open_websocket_url(served.ws_url) as ws_one,
        open_websocket_url(served.ws_url) as ws_two,
    ):
        one, two = Viewer(ws_one), Viewer(ws_two)
        await one.next_of("hello")
        await two.next_of("hello")
        await served.emulator.wait_until(lambda emu: bool(emu.open_connections("sample")))
        yield one, two


async def inject_paced(served: Served, texts: list[str], *, batch: int = 20) -> list[str]:
    """Inject tweets in small batches, so a viewer that reads keeps up."""
    ids = []
    for n, text in enumerate(texts):
        tweet = status(text, new_id())
        served.emulator.inject(tweet)
        ids.append(tweet["id_str"])
        if n % batch == batch - 1:
            await trio.sleep(0.005)
    return ids


PADDING = " and some more words to make this tweet long" * 5


async def test_slow_viewer_loses_only_its_own_tweets(make_served: Callable[..., Any]) -> None:
    queue_size = 200
    served: Served = await make_served(client_queue_size=queue_size, slow_client_seconds=3600)
    count = 3000
    got_fast: list[dict[str, Any]] = []
    with trio.fail_after(90):
        async with two_sample_viewers(served) as (slow, fast):
            async with trio.open_nursery() as nursery:

                async def read_fast() -> None:
                    got_fast.extend(await fast.tweets(count))

                nursery.start_soon(read_fast)
                sent = await inject_paced(served, [f"tweet {i}{PADDING}" for i in range(count)])
            assert [t["id_str"] for t in got_fast] == sent
            assert not any(f["type"] == "skipped" for f in fast.frames)
            # Now the slow viewer reads what it has; it must be told what it missed. Markers
            # keep coming until one gets through, since the first may meet a full buffer.
            received: list[str] = []
            skipped = 0
            markers: list[str] = []
            async with trio.open_nursery() as nursery:

                async def send_markers() -> None:
                    while True:
                        marker = status(f"marker {len(markers)}", new_id())
                        served.emulator.inject(marker)
                        markers.append(marker["id_str"])
                        await trio.sleep(0.05)

                async def read_until(wanted: list[str]) -> None:
                    nonlocal skipped
                    while not set(wanted) & set(received):
                        frame = await slow.next_frame()
                        if frame["type"] == "skipped":
                            skipped += frame["count"]
                        elif frame["type"] == "tweet":
                            received.append(frame["tweet"]["id_str"])
                        elif frame["type"] == "tweets":
                            received.extend(t["id_str"] for t in frame["tweets"])

                nursery.start_soon(send_markers)
                await read_until(markers)
                nursery.cancel_scope.cancel()
            # Caught up: a last tweet queued now arrives behind every `skipped` report.
            closing = status("closing", new_id())
            served.emulator.inject(closing)
            markers.append(closing["id_str"])
            await read_until([closing["id_str"]])
    assert skipped > 0
    # That the queue it built up drains in one write is test_viewer_sender's, for both paths.
    assert len(received) + skipped == count + len(markers)
    order = {id_: n for n, id_ in enumerate([*sent, *markers])}
    positions = [order[id_] for id_ in received]
    assert positions == sorted(set(positions)), "what the slow viewer got is in order, once"


async def test_viewer_that_stays_full_is_closed_with_4001(make_served: Callable[..., Any]) -> None:
    served: Served = await make_served(client_queue_size=32, slow_client_seconds=0.2)
    with trio.fail_after(90):
        async with two_sample_viewers(served) as (slow, fast):
            sent: list[str] = []
            end = status("after the close", new_id())
            received: list[str] = []
            async with trio.open_nursery() as nursery:

                async def read_fast() -> None:
                    while end["id_str"] not in received:
                        received.extend(t["id_str"] for t in await fast.tweets(1))

                nursery.start_soon(read_fast)
                while served.app.worker.hub.evictions == 0:
                    sent += await inject_paced(served, [f"tweet {len(sent)}{PADDING}"] * 40)
                served.emulator.inject(end)
            assert received == [*sent, end["id_str"]], "the other viewer lost nothing"
            error = await slow.next_of("error")
            assert error["code"] == "too_slow"
            with pytest.raises(ConnectionClosed) as closed:
                await slow.read_until_closed()
            assert close_code(closed.value) == 4001


async def test_control_messages_reach_the_viewers_they_concern(served: Served) -> None:
    emulator = served.emulator
    with trio.fail_after(TIMEOUT):
        async with (
            open_websocket_url(served.ws_url) as ws_sample,
            open_websocket_url(served.ws_url + "?filter=python") as ws_filter,
        ):
            sample, filtered = Viewer(ws_sample), Viewer(ws_filter)
            await sample.next_of("hello")
            await filtered.next_of("hello")
            await emulator.wait_until(lambda emu: len(emu.open_connections()) == 2)
            shown = status("python with a place", new_id(), place={"full_name": "Oslo"})
            shown["coordinates"] = {"type": "Point", "coordinates": [10.7, 59.9]}
            emulator.inject(shown)
            tweet = (await filtered.tweets(1))[0]
            assert not {"place", "coordinates", "geo"} & tweet.keys(), "geo is never forwarded"
            gone = shown["id_str"]
            emulator.inject_raw(
                b'{"delete":{"status":{"id":%s,"id_str":"%s","user_id":7,"user_id_str":"7"}}}\r\n'
                % (gone.encode(), gone.encode())
            )
            assert (await sample.next_of("delete"))["id_str"] == gone
            assert (await filtered.next_of("delete"))["id_str"] == gone
            held = status("python for some countries", new_id())
            emulator.inject(held)
            await filtered.tweets(1)
            for id_str in ("5", held["id_str"]):  # 5 was never shown: nobody is told
                withheld = (
                    b'{"status_withheld":{"id":%s,"user_id":7,"withheld_in_countries":["DE"]}}'
                )
                emulator.inject_raw(withheld % id_str.encode() + b"\r\n", kind="filter")
            assert (await filtered.next_of("delete"))["id_str"] == held["id_str"]
            # Twitter's limit count is cumulative per connection: viewers get the difference.
            emulator.inject_raw(b'{"limit":{"track":5}}\r\n', kind="filter")
            emulator.inject_raw(b'{"limit":{"track":12}}\r\n', kind="filter")
            first, second = await filtered.next_of("limit"), await filtered.next_of("limit")
            assert (first["undelivered"], second["undelivered"]) == (5, 7)
            marker = status("python marker", new_id())
            emulator.inject(marker)
            await filtered.tweets(1)
            await sample.tweets(1)
    assert not any(f["type"] == "limit" for f in sample.frames), "limit is for filter viewers"


def delete_line(id_str: str) -> bytes:
    return b'{"delete":{"status":{"id":%s,"id_str":"%s","user_id":7,"user_id_str":"7"}}}\r\n' % (
        id_str.encode(),
        id_str.encode(),
    )


async def test_a_delete_goes_only_to_viewers_who_could_hold_the_tweet(served: Served) -> None:
    emulator = served.emulator
    with trio.fail_after(TIMEOUT):
        async with (
            open_websocket_url(served.ws_url + "?filter=python") as ws_python,
            open_websocket_url(served.ws_url + "?filter=rust") as ws_rust,
        ):
            python, rust = Viewer(ws_python), Viewer(ws_rust)
            await python.next_of("hello")
            await rust.next_of("hello")
            await emulator.wait_until(
                lambda emu: any(c.track == "python,rust" for c in emu.open_connections("filter"))
            )
            original = status("rust in the kernel", new_id())
            snake = status("python 3.14 is out", new_id())
            retweet = status("RT @someone: rust in the kernel", new_id(), retweeted_status=original)
            emulator.inject(snake)
            emulator.inject(retweet)
            assert [t["id_str"] for t in await python.tweets(1)] == [snake["id_str"]]
            assert [t["id_str"] for t in await rust.tweets(1)] == [retweet["id_str"]]
            # Never shown to anyone, the python tweet, and the original of the shown retweet.
            for gone in ("424242", snake["id_str"], original["id_str"]):
                emulator.inject_raw(delete_line(gone), kind="filter")
            marker = status("python and rust marker", new_id())
            emulator.inject(marker)
            await python.tweets(1)
            await rust.tweets(1)
    deletes = {
        name: [f["id_str"] for f in viewer.frames if f["type"] == "delete"]
        for name, viewer in (("python", python), ("rust", rust))
    }
    assert deletes == {"python": [snake["id_str"]], "rust": [original["id_str"]]}


async def test_viewers_are_told_the_upstream_state(served: Served) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_websocket_url(served.ws_url) as ws:
            viewer = Viewer(ws)
            await viewer.next_of("hello")
            while (await viewer.next_of("status"))["state"] != "connected":
                pass
            served.emulator.fail_next(503)
            served.emulator.drop_streams()
            states: list[str] = []
            while not states or states[-1] != "connected":
                states.append((await viewer.next_of("status"))["state"])
    assert "backoff" in states
    backoff = next(f for f in viewer.frames if f.get("state") == "backoff")
    assert backoff["retry_in"] > 0
    assert backoff["reason"]


async def test_length_delimited_upstream_delivers_the_same_tweets(
    make_served: Callable[..., Any],
) -> None:
    served: Served = await make_served(twitter_delimited=True)
    with trio.fail_after(TIMEOUT):
        async with open_websocket_url(served.ws_url + "?filter=python") as ws:
            viewer = Viewer(ws)
            await viewer.next_of("hello")
            await wait_for_filter_track(served, "python")
            assert served.emulator.open_connections("filter")[0].delimited
            tweets = [status(f"python ✨ {n}", new_id()) for n in range(3)]
            for tweet in tweets:
                served.emulator.inject(tweet)
            got = await viewer.tweets(3)
    assert [t["text"] for t in got] == [t["text"] for t in tweets]


async def test_a_new_viewer_gets_recent_matching_tweets_at_once_but_never_deleted_ones(
    make_served: Any,
) -> None:
    served: Served = await make_served(history_size=3)
    with trio.fail_after(TIMEOUT):
        async with open_websocket_url(served.ws_url) as ws:
            first = Viewer(ws)
            await first.next_of("hello")
            await served.emulator.wait_until(lambda emu: bool(emu.open_connections("sample")))
            texts = ["python one", "rust two", "python three", "go four", "python five"]
            for i, text in enumerate(texts):
                served.emulator.inject(status(text, 9000 + i))
            await first.tweets(len(texts))
            served.emulator.inject_raw(
                b'{"delete":{"status":{"id":9002,"id_str":"9002","user_id":7}}}\r\n'
            )
            await first.next_of("delete")

            async with open_websocket_url(served.ws_url) as ws_sample:
                sample = Viewer(ws_sample)
                await sample.next_of("hello")
                got = await sample.tweets(3)
            assert [t["id_str"] for t in got] == ["9001", "9003", "9004"]

            async with open_websocket_url(served.ws_url + "?filter=python") as ws_python:
                python = Viewer(ws_python)
                await python.next_of("hello")
                got = await python.tweets(2)
            # From the sample stream's recent tweets: the python ones, less the deleted one.
            assert [t["id_str"] for t in got] == ["9000", "9004"]


def checkout_env() -> dict[str, str]:
    """This environment without our settings, able to import pats_trio and tests from here."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TWITTER_", "PATS_", "REDIS", "LOG_"))
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(CHECKOUT), env.get("PYTHONPATH")]))
    return env


async def test_collecting_the_tests_builds_no_app() -> None:
    """It did once: importing pats_trio.app built an app from the developer's own `.env`."""
    argv = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-s", "-p", "no:logging"]
    # As the tests session runs (the browser tests need playwright, which it does not install).
    argv += ["-p", "no:cacheprovider", "--ignore=tests/browser", "tests"]
    with trio.fail_after(PROCESS_TIMEOUT):
        result = await trio.run_process(
            argv, cwd=CHECKOUT, env=checkout_env(), capture_stdout=True, capture_stderr=True
        )
    output = (result.stdout + result.stderr).decode()
    assert re.search(r"\d+ tests collected", output), output
    assert APP_BUILT.findall(output) == []


IMPORT_THEN_BUILD = """
import sys
from pathlib import Path

import pats_trio.app
from pats_trio.config import SettingsError

print("imported", file=sys.stderr, flush=True)
try:
    pats_trio.app.app.get()
except SettingsError as exc:
    print("refused:", exc, file=sys.stderr, flush=True)
Path(".env").unlink()
first = pats_trio.app.app.get()
assert pats_trio.app.app.get() is first
print("built", file=sys.stderr, flush=True)
"""


async def test_importing_the_app_module_reads_no_env_and_app_is_built_once_on_use(
    tmp_path: Path,
) -> None:
    (tmp_path / ".env").write_text("LOG_LEVEL=LOUD\n")
    with trio.fail_after(PROCESS_TIMEOUT):
        result = await trio.run_process(
            [sys.executable, "-c", IMPORT_THEN_BUILD],
            cwd=tmp_path,
            env=checkout_env(),
            capture_stderr=True,
        )
    lines = result.stderr.decode().splitlines()
    imported, built = lines.index("imported"), lines.index("built")
    assert not APP_BUILT.search("\n".join(lines[:imported])), "built on import"
    assert lines[imported + 1] == "refused: LOG_LEVEL must be a logging level name, got 'LOUD'"
    assert len(APP_BUILT.findall("\n".join(lines[imported:built]))) == 1


async def test_lazy_app_builds_once_and_hands_every_call_to_that_app() -> None:
    built: list[PatsApp] = []

    def build() -> PatsApp:
        built.append(create_app(Settings(emulator_rate=0.0)))
        return built[-1]

    lazy = LazyApp(build)
    assert not lazy.built
    with trio.fail_after(TIMEOUT):
        async with lazy.get().test_app() as test_app:
            response = await test_app.test_client().get("/healthz")
    assert response.status_code == 200
    assert lazy.get() is lazy.get()
    assert len(built) == 1


async def test_lazy_app_that_cannot_be_built_fails_hypercorns_lifespan_start_up() -> None:
    """hypercorn stops on `lifespan.startup.failed`; on an exception it would serve on without
    lifespan support, and each request would try to build the app again."""

    def build() -> PatsApp:
        raise SettingsError("LOG_LEVEL must be a logging level name, got 'LOUD'")

    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> MutableMapping[str, Any]:
        return {"type": "lifespan.startup"}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    lazy = LazyApp(build)
    with trio.fail_after(TIMEOUT):
        await lazy({"type": "lifespan"}, receive, send)
        with pytest.raises(SettingsError):
            await lazy({"type": "http"}, receive, send)
    assert sent == [
        {
            "type": "lifespan.startup.failed",
            "message": "SettingsError: LOG_LEVEL must be a logging level name, got 'LOUD'",
        }
    ]
    assert not lazy.built


async def test_start_up_names_the_source_and_which_twitter_credentials_are_missing(
    make_served: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with trio.fail_after(TIMEOUT):
        served: Served = await make_served(
            twitter_consumer_key="ck-shown-nowhere", twitter_access_token="at-shown-nowhere"
        )
    lines = [record.getMessage() for record in caplog.records]
    assert (
        "TWITTER_CONSUMER_SECRET and TWITTER_ACCESS_TOKEN_SECRET are not set, so Twitter "
        "cannot be read: serving the demo stream instead"
    ) in lines
    url = served.app.worker.settings.twitter_stream_url
    assert (
        f"source: the demo stream (emulator) at {url}; connects when the first viewer arrives"
        in (lines)
    )
    assert not any("shown-nowhere" in line for line in lines), "no credential is ever logged"
