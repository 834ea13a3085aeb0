"""`pats-trio tail`: formatting and backoff as values, then the client against the served app."""

from __future__ import annotations

import io
import itertools
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC
from functools import partial
from typing import Any

import orjson
import pytest
import trio
import trio.testing
from hypercorn.config import Config
from hypercorn.trio import serve
from trio_websocket import open_websocket_url
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Ping, Request, TextMessage

from pats_trio.app import create_app
from pats_trio.cli import build_parser, tail_command
from pats_trio.emulator import Emulator, serve_emulator
from pats_trio.matching import TrackError, parse_track
from pats_trio.tail import (
    EXIT_OK,
    EXIT_REFUSED,
    MAX_DELAY,
    PING_INTERVAL,
    PONG_TIMEOUT,
    Printed,
    Profiles,
    backoff_delay,
    clean,
    format_delete,
    format_notice,
    format_tweet,
    tail,
    tweets_in,
    with_filter,
)
from tests.conftest import settings_for_tests
from tests.support import Served, Viewer, free_port, status

TIMEOUT = 15
FAST_RETRY = 0.05

_ids = itertools.count(90_000)


def new_id() -> int:
    return next(_ids)


def trimmed(text: str, id_: int, *, screen_name: str = "someone", **extra: Any) -> dict[str, Any]:
    """A tweet shaped like the server's trimmed payload, for the pure formatting tests."""
    return {
        "id_str": str(id_),
        "text": text,
        "created_at": "Wed Oct 10 20:19:24 +0000 2018",
        "timestamp_ms": 1539202764000,
        "user": {"name": screen_name.title(), "screen_name": screen_name},
        "entities": {"hashtags": [], "user_mentions": [], "urls": []},
        **extra,
    }


# --- pure parts ---------------------------------------------------------------------------------


def test_tweet_line_has_time_handle_name_and_folded_text() -> None:
    tweet = trimmed("first line\n\nsecond\r\nthird", 1, screen_name="ada")
    assert format_tweet(tweet, tz=UTC) == "20:19:24 @ada (Ada): first line second third"


def test_retweet_line_names_both_and_uses_the_original_text() -> None:
    original = trimmed("the whole original text", 2, screen_name="bob")
    retweet = trimmed("RT @bob: the whole orig…", 3, screen_name="ada", retweeted_status=original)
    assert format_tweet(retweet, tz=UTC) == "20:19:24 🔁 @ada RT @bob: the whole original text"


def test_quote_follows_the_text() -> None:
    quoted = trimmed("quoted words", 4, screen_name="cy")
    tweet = trimmed("look", 5, screen_name="ada", quoted_status=quoted)
    assert format_tweet(tweet, tz=UTC) == "20:19:24 @ada (Ada): look ↪ @cy: quoted words"


def test_terminal_control_characters_never_reach_the_terminal() -> None:
    tweet = trimmed("red \x1b[31mtext\x07\ttab", 6, screen_name="e\x1b]0;vil")
    line = format_tweet(tweet, tz=UTC)
    assert "\x1b" not in line
    assert "\x07" not in line
    assert "\t" not in line
    assert clean("a\u2028b\x85c") == "a b c"


def test_unreadable_time_and_missing_user_still_give_a_line() -> None:
    assert format_tweet({"text": "x", "timestamp_ms": "soon"}) == "--:--:-- @?: x"


def test_batches_unpack_in_order_and_other_frames_carry_no_tweets() -> None:
    batch = {"type": "tweets", "tweets": [trimmed("a", 1), trimmed("b", 2), trimmed("c", 3)]}
    assert [t["text"] for t in tweets_in(batch)] == ["a", "b", "c"]
    assert [t["text"] for t in tweets_in({"type": "tweet", "tweet": trimmed("d", 4)})] == ["d"]
    assert tweets_in({"type": "delete", "id_str": "1"}) == []


def test_notices_are_short_lines_and_deletes_are_not_shown() -> None:
    hello = {"type": "hello", "mode": "demo", "stream": "filter", "track": ["python", "trio rust"]}
    assert format_notice(hello) == "connected: filter stream: python, trio rust (demo data)"
    backoff = {"type": "status", "stream": "sample", "state": "backoff", "retry_in": 5.0}
    assert format_notice(backoff) == "upstream sample: backoff, retrying in 5s"
    assert format_notice({"type": "limit", "undelivered": 7}) is not None
    assert "3" in (format_notice({"type": "skipped", "count": 3}) or "")
    assert format_notice({"type": "error", "code": "x", "message": "no"}) == "error: no"
    assert format_notice({"type": "delete", "id_str": "1"}) is None


DID = "did:plc:alice123"
POST_URL = "https://bsky.app/profile/alice.bsky.social/post/3kabc"


def bluesky_post(text: str, id_: str, **extra: Any) -> dict[str, Any]:
    """A Bluesky post as the server sends it before the author's profile arrived: the DID
    stands in for the handle and the name."""
    return trimmed(
        text,
        0,
        id_str=id_,
        source="bluesky",
        url=POST_URL,
        user={"id_str": DID, "name": DID, "screen_name": DID, "profile_image_url_https": None},
        **extra,
    )


def test_a_post_with_its_own_url_prints_it_after_the_text() -> None:
    line = format_tweet(bluesky_post("hi there", "at-1"), tz=UTC)
    assert line == f"20:19:24 @{DID} ({DID}): hi there <{POST_URL}>"
    assert format_tweet(trimmed("no url", 1), tz=UTC).endswith(": no url")
    for bad in ("javascript:alert(1)", "ftp://x/y", 7, ""):
        assert format_tweet(trimmed("t", 1, url=bad), tz=UTC).endswith(": t")
    assert "\x1b" not in format_tweet(trimmed("t", 1, url="https://x/\x1b[2J"), tz=UTC)


def test_profiles_name_later_posts_and_stay_bounded() -> None:
    profiles = Profiles(cap=2)
    post = bluesky_post("hi", "at-1")
    assert profiles.fill(post) is post  # nothing known yet: the same object, no copy
    profiles.remember({"did": DID, "handle": "alice.bsky.social", "name": "Alice", "avatar": None})
    assert format_tweet(profiles.fill(post), tz=UTC) == (
        f"20:19:24 @alice.bsky.social (Alice): hi <{POST_URL}>"
    )
    assert post["user"]["screen_name"] == DID  # the frame itself is left alone
    # An empty name keeps the one already known; the retweet's and the quote's authors are named.
    profiles.remember({"did": DID, "handle": "alice.example", "name": ""})
    repost = trimmed("RT", 2, screen_name="bob", retweeted_status=post)
    assert "RT @alice.example: hi" in format_tweet(profiles.fill(repost), tz=UTC)
    quote = trimmed("look", 3, screen_name="bob", quoted_status=post)
    assert "↪ @alice.example: hi" in format_tweet(profiles.fill(quote), tz=UTC)
    for junk in (None, "x", {"did": 5}, {"handle": "no did"}):
        profiles.remember(junk)
    assert len(profiles) == 1
    profiles.remember({"did": "did:plc:b", "handle": "b"})
    profiles.remember({"did": "did:plc:c", "handle": "c"})
    assert len(profiles) == 2
    assert profiles.fill(post) is post  # the oldest went first


def test_deletes_are_reported_only_for_printed_tweets() -> None:
    printed = Printed(cap=3)
    original = trimmed("original", 2, screen_name="bob")
    printed.add(trimmed("RT @bob: original", 3, screen_name="ada", retweeted_status=original))
    assert "2" in printed
    assert "3" in printed
    assert printed.pop("2") == "20:19:24 @bob (id 2)"
    assert printed.pop("2") is None  # reported once
    assert printed.pop("99") is None
    assert printed.pop(3) is None
    assert format_delete("20:19:24 @ada (id 3)") == "✗ deleted: 20:19:24 @ada (id 3)"
    for i in range(10, 14):
        printed.add(trimmed("t", i))
    assert "3" not in printed
    assert "10" not in printed
    assert "13" in printed


def test_backoff_doubles_from_one_second_to_thirty_with_jitter() -> None:
    ceilings = [backoff_delay(attempt, 0.999999) for attempt in range(8)]
    assert [round(c) for c in ceilings] == [1, 2, 4, 8, 16, 30, 30, 30]
    floors = [backoff_delay(attempt, 0.0) for attempt in range(8)]
    assert floors == [0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 15.0, 15.0]
    assert backoff_delay(10_000, 0.5) <= MAX_DELAY


def test_filter_goes_into_the_url() -> None:
    assert with_filter("ws://h:1/ws", None) == "ws://h:1/ws"
    assert with_filter("ws://h:1/ws", "python, trio rust") == (
        "ws://h:1/ws?filter=python,%20trio%20rust"
    )
    assert with_filter("ws://h:1/ws?filter=old&x=1", "new") == "ws://h:1/ws?x=1&filter=new"


def test_cli_has_a_tail_command() -> None:
    args = build_parser().parse_args(["tail", "--filter", "a,b", "--json"])
    assert (args.handler, args.filter, args.json) == (tail_command, "a,b", True)
    # No --url: the server PATS_HOST and PATS_PORT name, found when it runs (test_cli.py).
    assert build_parser().parse_args(["tail"]).url is None


# --- the client against the app -----------------------------------------------------------------


class WatchedText(io.StringIO):
    """A text stream a test can wait on: every write wakes `wait_until`."""

    def __init__(self) -> None:
        super().__init__()
        self._changed = trio.Event()

    def write(self, text: str) -> int:
        written = super().write(text)
        self._changed.set()
        self._changed = trio.Event()
        return written

    async def wait_until(self, predicate: Callable[[list[str]], bool]) -> None:
        """Return once `predicate(lines written so far)` holds; callers bound it with fail_after."""
        while True:
            changed = self._changed
            if predicate(lines(self)):
                return
            await changed.wait()


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def hellos(err_lines: list[str]) -> int:
    return sum(line.startswith("connected:") for line in err_lines)


class Streams:
    """The text streams `tail()` writes to, in place of stdout and stderr."""

    def __init__(self) -> None:
        self.out = WatchedText()
        self.err = WatchedText()

    def start(self, nursery: trio.Nursery, url: str, *, json_lines: bool = False) -> None:
        nursery.start_soon(
            partial(
                tail,
                url,
                json_lines=json_lines,
                out=self.out,
                err=self.err,
                tz=UTC,
                delay_for=lambda attempt: FAST_RETRY,
            )
        )


async def test_readable_lines_for_sample_tweets(make_served: Callable[..., Any]) -> None:
    with trio.fail_after(TIMEOUT):
        served: Served = await make_served()
        streams = Streams()
        async with trio.open_nursery() as nursery:
            streams.start(nursery, served.ws_url)
            await served.emulator.wait_until(lambda emu: bool(emu.open_connections("sample")))
            sent = [status(f"tweet {i}\nline two", new_id(), screen_name="ada") for i in range(3)]
            for tweet in sent:
                served.emulator.inject(tweet)
            await streams.out.wait_until(lambda out: len(out) == 3)
            nursery.cancel_scope.cancel()
    assert lines(streams.out) == [f"20:19:24 @ada (Ada): tweet {i} line two" for i in range(3)]
    assert lines(streams.err)[0] == "connected: sample stream (demo data)"


async def test_json_lines_are_the_trimmed_tweets_as_received_with_a_filter(
    make_served: Callable[..., Any],
) -> None:
    with trio.fail_after(TIMEOUT):
        served: Served = await make_served()
        streams = Streams()
        async with (
            trio.open_nursery() as nursery,
            open_websocket_url(served.ws_url + "?filter=python") as ws,
        ):
            viewer = Viewer(ws)
            await viewer.next_of("hello")
            streams.start(nursery, with_filter(served.ws_url, "python"), json_lines=True)
            await streams.err.wait_until(lambda err: hellos(err) == 1)
            await served.emulator.wait_until(
                lambda emu: any(c.track == "python" for c in emu.open_connections("filter"))
            )
            miss = status("nothing to see", new_id())
            hits = [status(f"python {i}", new_id()) for i in range(3)]
            for tweet in [hits[0], miss, hits[1], hits[2]]:
                served.emulator.inject(tweet)
            expected = await viewer.tweets(3)
            await streams.out.wait_until(lambda out: len(out) == 3)
            nursery.cancel_scope.cancel()
    got = [orjson.loads(line) for line in lines(streams.out)]
    assert got == expected
    assert [t["id_str"] for t in got] == [t["id_str"] for t in hits]
    assert lines(streams.err)[0] == "connected: filter stream: python (demo data)"
    assert not any(line.startswith("{") for line in lines(streams.err))


async def test_a_burst_arrives_complete_and_in_order(make_served: Callable[..., Any]) -> None:
    """A burst reaches a viewer as `tweets` batches; every tweet comes out, in order."""
    with trio.fail_after(TIMEOUT):
        served: Served = await make_served()
        streams = Streams()
        async with trio.open_nursery() as nursery:
            streams.start(nursery, served.ws_url, json_lines=True)
            await served.emulator.wait_until(lambda emu: bool(emu.open_connections("sample")))
            sent = [status(f"burst {i}", new_id()) for i in range(200)]
            for tweet in sent:
                served.emulator.inject(tweet)
            await streams.out.wait_until(lambda out: len(out) == len(sent))
            nursery.cancel_scope.cancel()
    got = [orjson.loads(line)["id_str"] for line in lines(streams.out)]
    assert got == [t["id_str"] for t in sent]


async def test_bad_filter_is_final_with_status_2_and_the_servers_message(served: Served) -> None:
    with pytest.raises(TrackError) as refused:
        parse_track("a,,b")
    err = io.StringIO()
    with trio.fail_after(TIMEOUT):
        exit_status = await tail(
            with_filter(served.ws_url, "a,,b"),
            json_lines=False,
            out=io.StringIO(),
            err=err,
            delay_for=lambda attempt: FAST_RETRY,
        )
    assert exit_status == EXIT_REFUSED
    assert f"error: {refused.value.message}" in lines(err)
    assert "reconnecting in" not in err.getvalue()


class ClosedPipe(io.StringIO):
    """stdout after `| head` has exited."""

    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")


async def test_closed_output_ends_quietly(served: Served) -> None:
    with trio.fail_after(TIMEOUT):
        result: list[int] = []

        async def follow() -> None:
            result.append(
                await tail(served.ws_url, json_lines=True, out=ClosedPipe(), err=io.StringIO())
            )

        async with trio.open_nursery() as nursery:
            nursery.start_soon(follow)
            await served.emulator.wait_until(lambda emu: bool(emu.open_connections("sample")))
            served.emulator.inject(status("into the void", new_id()))
        # The nursery only closes once tail() has returned.
    assert result == [EXIT_OK]


async def serve_app_on(
    port: int,
    stream_url: str,
    *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """A fresh app on a fixed port, so a client can find it again after it went away."""
    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.accesslog = None
    app = create_app(settings_for_tests(twitter_stream_url=stream_url))
    await serve(app, config, task_status=task_status)


async def test_reconnects_after_the_server_goes_away_and_comes_back(nursery: trio.Nursery) -> None:
    emulator = Emulator(rate=0, filter_rate=0, seed=1)
    port = free_port()
    streams = Streams()

    async def inject_until_shown(text: str) -> None:
        await emulator.wait_until(lambda emu: len(emu.open_connections("sample")) == 1)
        emulator.inject(status(text, new_id(), screen_name="ada"))
        await streams.out.wait_until(lambda out: any(line.endswith(text) for line in out))

    with trio.fail_after(TIMEOUT):
        stream_url = await nursery.start(serve_emulator, emulator)
        with trio.CancelScope() as first:
            async with trio.open_nursery() as server:
                await server.start(serve_app_on, port, stream_url)
                streams.start(nursery, f"ws://127.0.0.1:{port}/ws")
                await inject_until_shown("before the restart")
                first.cancel()
        await streams.err.wait_until(lambda err: any("reconnecting in" in line for line in err))
        await streams.err.wait_until(lambda err: any("cannot connect" in line for line in err))
        await nursery.start(serve_app_on, port, stream_url)
        await streams.err.wait_until(lambda err: hellos(err) == 2)
        await inject_until_shown("after the restart")
    assert [line.split(": ", 1)[1] for line in lines(streams.out)] == [
        "before the restart",
        "after the restart",
    ]
    nursery.cancel_scope.cancel()


def tail_argv(url: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "pats_trio", "tail", "--url", url, *extra]


async def test_tail_process_prints_json_and_stops_cleanly_on_ctrl_c(served: Served) -> None:
    with trio.fail_after(TIMEOUT):
        process = await trio.lowlevel.open_process(
            tail_argv(served.ws_url, "--json"), stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        try:
            assert process.stdout is not None
            assert process.stderr is not None
            await served.emulator.wait_until(lambda emu: bool(emu.open_connections("sample")))
            tweet = status("through a pipe", new_id())
            served.emulator.inject(tweet)
            received = b""
            while b"\n" not in received:
                chunk = await process.stdout.receive_some()
                assert chunk, "tail exited before printing a tweet"
                received += chunk
            assert orjson.loads(received.split(b"\n")[0])["id_str"] == tweet["id_str"]
            process.send_signal(signal.SIGINT)
            stderr = b""
            while chunk := await process.stderr.receive_some():
                stderr += chunk
            await process.wait()
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    assert process.returncode == 0
    assert b"Traceback" not in stderr
    assert b"connected: sample stream" in stderr


async def test_tail_process_exits_2_on_a_bad_filter(served: Served) -> None:
    with pytest.raises(TrackError) as refused:
        parse_track("a,,b")
    with trio.fail_after(TIMEOUT):
        result = await trio.run_process(
            tail_argv(served.ws_url, "--filter", "a,,b"),
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    assert result.returncode == EXIT_REFUSED
    assert refused.value.message in result.stderr.decode()
    assert b"Traceback" not in result.stderr


# --- deletes, profiles and keep-alive pings over real sockets ----------------------------------


async def test_deletes_of_printed_tweets_are_reported_and_json_passes_them_through(
    make_served: Callable[..., Any],
) -> None:
    with trio.fail_after(TIMEOUT):
        served: Served = await make_served()
        text, json = Streams(), Streams()
        async with trio.open_nursery() as nursery:
            text.start(nursery, served.ws_url)
            json.start(nursery, served.ws_url, json_lines=True)
            await served.emulator.wait_until(lambda emu: bool(emu.open_connections("sample")))
            await text.err.wait_until(lambda err: hellos(err) == 1)
            await json.err.wait_until(lambda err: hellos(err) == 1)
            kept, doomed = new_id(), new_id()
            served.emulator.inject(status("kept", kept, screen_name="ada"))
            served.emulator.inject(status("soon gone", doomed, screen_name="ada"))
            await text.out.wait_until(lambda out: len(out) == 2)
            for id_ in (12345, doomed):  # the first was never shown, so never sent
                served.emulator.inject_raw(
                    b'{"delete":{"status":{"id":%d,"id_str":"%d","user_id":7,"user_id_str":"7"}}}'
                    b"\r\n" % (id_, id_)
                )
            await json.out.wait_until(lambda out: len(out) == 3)
            await text.out.wait_until(lambda out: len(out) == 3)
            nursery.cancel_scope.cancel()
    assert lines(text.out)[2] == f"✗ deleted: 20:19:24 @ada (id {doomed})"
    got = [orjson.loads(line) for line in lines(json.out)]
    assert [t["id_str"] for t in got[:2]] == [str(kept), str(doomed)]
    assert got[2:] == [{"type": "delete", "id_str": str(doomed)}]


@dataclass
class FakeServer:
    """A WebSocket server on loopback, written with wsproto so a test decides all it does: the
    frames it sends after the handshake, and whether it answers pings. One that does not stops
    reading at the first ping, like a peer that is gone."""

    frames: list[dict[str, Any]]
    answer_pings: bool = True
    url: str = ""
    connections: int = 0
    pings: int = 0
    _changed: trio.Event = field(default_factory=trio.Event)

    async def start(self, nursery: trio.Nursery) -> None:
        listeners = await nursery.start(partial(trio.serve_tcp, self._handle, 0, host="127.0.0.1"))
        self.url = f"ws://127.0.0.1:{listeners[0].socket.getsockname()[1]}/ws"

    async def wait_until(self, predicate: Callable[[FakeServer], bool]) -> None:
        while not predicate(self):
            await self._changed.wait()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def _handle(self, stream: trio.SocketStream) -> None:
        ws = WSConnection(ConnectionType.SERVER)
        async with stream:
            while data := await stream.receive_some():
                ws.receive_data(data)
                for event in ws.events():
                    if isinstance(event, Request):
                        self.connections += 1
                        sent = [ws.send(AcceptConnection())]
                        sent += [
                            ws.send(TextMessage(orjson.dumps(f).decode())) for f in self.frames
                        ]
                        await stream.send_all(b"".join(sent))
                    elif isinstance(event, Ping):
                        self.pings += 1
                        if not self.answer_pings:
                            self._notify()
                            await trio.sleep_forever()
                        await stream.send_all(ws.send(event.response()))
                    elif isinstance(event, CloseConnection):
                        await stream.send_all(ws.send(event.response()))
                        return
                    self._notify()


HELLO = {"type": "hello", "mode": "live", "source": "bluesky", "stream": "sample", "track": []}


async def test_profiles_name_the_authors_of_later_posts(nursery: trio.Nursery) -> None:
    profile = {"did": DID, "handle": "alice.bsky.social", "name": "Alice", "avatar": None}
    server = FakeServer(
        [
            HELLO,
            {"type": "tweet", "tweet": bluesky_post("before", "at-1")},
            {"type": "profile", "profile": profile},
            {"type": "tweet", "tweet": bluesky_post("after", "at-2")},
            {"type": "delete", "id_str": "at-1"},
        ]
    )
    await server.start(nursery)
    text, json = Streams(), Streams()
    with trio.fail_after(TIMEOUT):
        text.start(nursery, server.url)
        json.start(nursery, server.url, json_lines=True)
        await text.out.wait_until(lambda out: len(out) == 3)
        await json.out.wait_until(lambda out: len(out) == 4)
    assert lines(text.out) == [
        f"20:19:24 @{DID} ({DID}): before <{POST_URL}>",
        f"20:19:24 @alice.bsky.social (Alice): after <{POST_URL}>",
        f"✗ deleted: 20:19:24 @{DID} (id at-1)",
    ]
    assert lines(text.err) == ["connected: sample stream"]
    got = [orjson.loads(line) for line in lines(json.out)]
    assert got[0]["id_str"] == "at-1"
    assert got[1] == {"type": "profile", "profile": profile}
    assert got[2]["user"]["screen_name"] == DID  # JSON passes frames on as they came
    assert got[3] == {"type": "delete", "id_str": "at-1"}
    nursery.cancel_scope.cancel()


async def test_pings_keep_a_quiet_connection(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    server = FakeServer([HELLO])
    await server.start(nursery)
    streams = Streams()
    with trio.fail_after(PING_INTERVAL * 10):
        streams.start(nursery, server.url)
        await streams.err.wait_until(lambda err: hellos(err) == 1)
        started = trio.current_time()
        await server.wait_until(lambda s: s.pings == 5)
    assert trio.current_time() - started == pytest.approx(5 * PING_INTERVAL, abs=0.5)
    assert server.connections == 1
    assert lines(streams.err) == ["connected: sample stream"]
    nursery.cancel_scope.cancel()


async def test_an_unanswered_ping_drops_the_connection_and_reconnects(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    server = FakeServer([HELLO], answer_pings=False)
    await server.start(nursery)
    streams = Streams()
    with trio.fail_after(PING_INTERVAL * 10):
        streams.start(nursery, server.url)
        await streams.err.wait_until(lambda err: hellos(err) == 1)
        started = trio.current_time()
        await streams.err.wait_until(lambda err: any("ping" in line for line in err))
        gave_up = trio.current_time()
        await streams.err.wait_until(lambda err: hellos(err) == 2)
    # The pong's wait starts with the first ping; closing the dead socket then takes a while.
    assert gave_up - started >= PING_INTERVAL + PONG_TIMEOUT
    assert gave_up - started <= PING_INTERVAL + PONG_TIMEOUT + 10
    assert server.connections == 2
    assert lines(streams.err)[1] == (
        f"no answer to a ping within {PONG_TIMEOUT:g}s; reconnecting in {FAST_RETRY:.1f}s"
    )
    nursery.cancel_scope.cancel()


async def test_the_server_answers_the_keep_alive_pings(
    make_served: Callable[..., Any], autojump_clock: trio.testing.MockClock
) -> None:
    """Minutes of virtual quiet against the real app: one connection, and tweets still arrive."""
    served: Served = await make_served()
    streams = Streams()
    async with trio.open_nursery() as nursery:
        with trio.fail_after(PING_INTERVAL * 20):
            streams.start(nursery, served.ws_url)
            await streams.err.wait_until(lambda err: hellos(err) == 1)
            await trio.sleep(PING_INTERVAL * 6)
            await served.emulator.wait_until(lambda emu: bool(emu.open_connections("sample")))
            served.emulator.inject(status("still here", new_id(), screen_name="ada"))
            await streams.out.wait_until(lambda out: len(out) == 1)
        nursery.cancel_scope.cancel()
    assert hellos(lines(streams.err)) == 1
    assert not any("ping" in line or "reconnecting" in line for line in lines(streams.err))
