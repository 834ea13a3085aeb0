"""`pats-trio tail`: follow the stream in a terminal, as readable lines or JSON lines.

The formatting and the reconnect delays are pure functions so they can be tested without a
server; `tail()` is the only coroutine that touches the network, and `run()` is the only function
that touches the process (signals, exit status, a closed stdout).
"""

from __future__ import annotations

import os
import re
import signal
import sys
from collections import OrderedDict
from collections.abc import Callable, Mapping
from datetime import datetime, tzinfo
from typing import Any, TextIO
from urllib.parse import quote, urlsplit, urlunsplit

import orjson
import trio
from decouple import AutoConfig
from trio_websocket import (
    ConnectionClosed,
    DisconnectionTimeout,
    HandshakeError,
    WebSocketConnection,
    open_websocket_url,
)

from pats_trio import frames
from pats_trio.config import Settings
from pats_trio.upstream import backoff

DEFAULT_URL = "ws://127.0.0.1:8000/ws"
INITIAL_DELAY = 1.0
MAX_DELAY = 30.0
CONNECT_TIMEOUT = 10.0
DISCONNECT_TIMEOUT = 5.0
PING_INTERVAL = 20.0
"""Seconds between keep-alive pings: a quiet stream still proves, or disproves, the connection."""
PONG_TIMEOUT = 10.0
"""A ping unanswered this long means a dead connection (a sleeping laptop, a lost NAT entry)."""
MAX_PROFILES = 1000
"""Author profiles kept for naming later posts (text mode)."""
MAX_REMEMBERED = 2000
"""Printed tweets remembered, so a delete of one of them can be reported (text mode)."""
MAX_MESSAGE_SIZE = 4 * 1024 * 1024
"""A `tweets` batch holds up to 64 tweets, each possibly with a retweet and a quote inside."""

EXIT_OK = 0
EXIT_REFUSED = 2
"""The server refused the filter (close 1008): retrying would only be refused again."""

_LINE_BREAKS = re.compile(r"\s*[\r\n\x0b\x0c\x85\u2028\u2029]+\s*")
# C0 and C1 controls (ESC included) would let a tweet drive the terminal; tabs become spaces.
_CONTROLS = {code: "\ufffd" for code in (*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0))}
_CONTROLS[ord("\t")] = " "


class _OutputClosedError(Exception):
    """The reader of our output went away (`| head`); nothing more to do, and nothing to say."""


def backoff_delay(attempt: int, jitter: float) -> float:
    """Seconds to wait before reconnect attempt `attempt` (0 for the first after a success).

    The ceiling starts at 1 s and doubles up to 30 s; `jitter` in [0, 1) picks a point between half
    the ceiling and the ceiling, so terminals that lost the same server do not return in step.

    >>> backoff_delay(0, 0.0), backoff_delay(3, 0.999999) < 8, backoff_delay(40, 0.0)
    (0.5, True, 15.0)
    """
    return backoff.jitter(backoff.doubling(INITIAL_DELAY, MAX_DELAY, attempt), jitter)


def jittered_delay(attempt: int) -> float:
    """`backoff_delay` with fresh randomness, the default for `tail()`."""
    return backoff.jittered(backoff.doubling(INITIAL_DELAY, MAX_DELAY, attempt))


def local_server_url() -> str:
    """The `/ws` URL of the server this directory's settings run (PATS_HOST and PATS_PORT, from
    the environment or `.env`), as `pats-trio serve` would bind it."""
    env = AutoConfig(search_path=".")
    host = env("PATS_HOST", default=Settings.host)
    port = env("PATS_PORT", default=str(Settings.port))
    return f"ws://{host}:{port}/ws"


def viewer_url(url: str) -> str:
    """The `/ws` URL for what a person may paste: the page's own `http(s)://` address (its
    `?filter=` kept) as well as the socket's `ws(s)://` one."""
    parts = urlsplit(url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    path = "/ws" if scheme != parts.scheme and parts.path in ("", "/") else parts.path
    return urlunsplit(parts._replace(scheme=scheme, path=path))


def with_filter(url: str, track: str | None) -> str:
    """The viewer URL with `?filter=` set, so the server applies the filter at the handshake."""
    if not track:
        return url
    parts = urlsplit(url)
    query = "&".join(
        item for item in parts.query.split("&") if item and not item.startswith("filter=")
    )
    query = (query + "&" if query else "") + "filter=" + quote(track, safe=",")
    return urlunsplit(parts._replace(query=query))


def clean(text: str) -> str:
    """One terminal line: line breaks folded to a space, control characters made harmless."""
    return _LINE_BREAKS.sub(" ", text).translate(_CONTROLS).strip()


def clock_time(timestamp_ms: object, tz: tzinfo | None = None) -> str:
    """HH:MM:SS of a tweet in `tz` (local time when None); `--:--:--` when it is unreadable."""
    if not isinstance(timestamp_ms, int | float) or isinstance(timestamp_ms, bool):
        return "--:--:--"
    try:
        return datetime.fromtimestamp(timestamp_ms / 1000, tz).strftime("%H:%M:%S")
    except (OverflowError, OSError, ValueError):
        return "--:--:--"


def _screen_name(tweet: Mapping[str, Any]) -> str:
    user = tweet.get("user")
    name = user.get("screen_name") if isinstance(user, Mapping) else None
    return clean(name) if isinstance(name, str) else "?"


def _name(tweet: Mapping[str, Any]) -> str:
    user = tweet.get("user")
    name = user.get("name") if isinstance(user, Mapping) else None
    return clean(name) if isinstance(name, str) else ""


def _text(tweet: Mapping[str, Any]) -> str:
    text = tweet.get("text")
    return clean(text) if isinstance(text, str) else ""


def format_tweet(tweet: Mapping[str, Any], *, tz: tzinfo | None = None) -> str:
    """One readable line for a trimmed tweet, e.g. ``20:19:24 @ada (Ada): hello``.

    A retweet shows who retweeted whom and the original's full text, because the retweet's own
    text is a truncated ``RT @b: ...``. A quote follows the text after an arrow.
    """
    when = clock_time(tweet.get("timestamp_ms"), tz)
    retweeted = tweet.get("retweeted_status")
    if isinstance(retweeted, Mapping):
        line = f"{when} 🔁 @{_screen_name(tweet)} RT @{_screen_name(retweeted)}: {_text(retweeted)}"
        shown: Mapping[str, Any] = retweeted
    else:
        name = _name(tweet)
        who = f"@{_screen_name(tweet)} ({name})" if name else f"@{_screen_name(tweet)}"
        line = f"{when} {who}: {_text(tweet)}"
        shown = tweet
    quoted = shown.get("quoted_status")
    if isinstance(quoted, Mapping):
        line += f" ↪ @{_screen_name(quoted)}: {_text(quoted)}"
    url = _url(shown) or _url(tweet)
    if url:
        line += f" <{url}>"
    return line


def _url(tweet: Mapping[str, Any]) -> str | None:
    """The post's own permalink (`url`, sent for Bluesky posts) when it is a plain http(s) URL."""
    url = tweet.get("url")
    if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
        return None
    return clean(url).replace(" ", "%20") or None


class Profiles:
    """The newest name and handle per author id (a Bluesky DID), for posts printed after a
    `profile` frame: the server sends one after an author's first posts. Bounded: least recently
    used first out."""

    def __init__(self, cap: int = MAX_PROFILES) -> None:
        self.cap = cap
        self._by_id: OrderedDict[str, dict[str, str]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._by_id)

    def remember(self, profile: object) -> None:
        if not isinstance(profile, Mapping):
            return
        did = profile.get("did")
        if not isinstance(did, str) or not did:
            return
        known = self._by_id.pop(did, {})
        for field, key in (("handle", "screen_name"), ("name", "name")):
            value = profile.get(field)
            if isinstance(value, str) and value.strip():
                known[key] = value
        self._by_id[did] = known
        while len(self._by_id) > self.cap:
            self._by_id.popitem(last=False)

    def fill(self, tweet: Mapping[str, Any], *, _depth: int = 0) -> Mapping[str, Any]:
        """`tweet` with the names known for its authors, its retweet's and its quote's."""
        filled: dict[str, Any] | None = None
        user = tweet.get("user")
        if isinstance(user, Mapping) and isinstance(user.get("id_str"), str):
            known = self._by_id.get(user["id_str"])
            if known:
                self._by_id.move_to_end(user["id_str"])
                filled = {**tweet, "user": {**user, **known}}
        if _depth < 2:
            for key in ("retweeted_status", "quoted_status"):
                inner = tweet.get(key)
                if isinstance(inner, Mapping):
                    inner_filled = self.fill(inner, _depth=_depth + 1)
                    if inner_filled is not inner:
                        filled = {**(filled or tweet), key: inner_filled}
        return tweet if filled is None else filled


class Printed:
    """Tweets printed lately, by id, with what a delete line says about them. Bounded."""

    def __init__(self, cap: int = MAX_REMEMBERED) -> None:
        self.cap = cap
        self._by_id: OrderedDict[str, str] = OrderedDict()

    def __contains__(self, id_str: object) -> bool:
        return id_str in self._by_id

    def add(self, tweet: Mapping[str, Any], *, tz: tzinfo | None = None) -> None:
        shown = [tweet]
        retweeted = tweet.get("retweeted_status")
        if isinstance(retweeted, Mapping):
            shown.append(retweeted)  # deleting the original takes its retweets with it
        for item in shown:
            id_str = item.get("id_str")
            if isinstance(id_str, str):
                when = clock_time(item.get("timestamp_ms"), tz)
                self._by_id[id_str] = f"{when} @{_screen_name(item)} (id {clean(id_str)})"
                self._by_id.move_to_end(id_str)
        while len(self._by_id) > self.cap:
            self._by_id.popitem(last=False)

    def pop(self, id_str: object) -> str | None:
        """The summary of a printed tweet, forgotten now that it is deleted; None if unseen."""
        return self._by_id.pop(id_str, None) if isinstance(id_str, str) else None


def format_delete(summary: str) -> str:
    """The line for a printed tweet that was deleted, e.g. ``✗ deleted: 20:19:24 @ada (id 1)``."""
    return f"✗ deleted: {summary}"


def tweets_in(frame: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The tweets a frame carries, in order: one for `tweet`, all of a `tweets` batch, else none."""
    kind = frame.get("type")
    if kind == "tweet" and isinstance(frame.get("tweet"), Mapping):
        return [frame["tweet"]]
    if kind == "tweets" and isinstance(frame.get("tweets"), list):
        return [tweet for tweet in frame["tweets"] if isinstance(tweet, Mapping)]
    return []


def format_notice(frame: Mapping[str, Any]) -> str | None:
    """A short line for stderr about a non-tweet frame, or None for frames not worth a line.

    `delete` and `profile` get none here: readable output reports a delete on stdout, next to
    the tweet's own line, and only for tweets it printed (every viewer gets every delete).
    """
    kind = frame.get("type")
    if kind == "hello":
        track = frame.get("track") or []
        what = f"filter stream: {', '.join(map(str, track))}" if track else "sample stream"
        demo = " (demo data)" if frame.get("mode") == "demo" else ""
        return f"connected: {what}{demo}"
    if kind == "status":
        line = f"upstream {frame.get('stream', '?')}: {frame.get('state', '?')}"
        if frame.get("reason"):
            line += f" ({clean(str(frame['reason']))})"
        retry_in = frame.get("retry_in")
        if isinstance(retry_in, int | float) and retry_in > 0:
            line += f", retrying in {retry_in:.0f}s"
        return line
    if kind == "limit":
        return f"{frame.get('undelivered', '?')} matching tweets not delivered (Twitter's limit)"
    if kind == "skipped":
        return f"skipped {frame.get('count', '?')} tweets: this terminal fell behind"
    if kind == "error":
        return f"error: {clean(str(frame.get('message') or frame.get('code') or 'unknown'))}"
    return None


def _write(stream: TextIO, lines: list[str]) -> None:
    """Write and flush at once, so a pipe sees each tweet as it arrives."""
    if not lines:
        return
    try:
        stream.write("".join(line + "\n" for line in lines))
        stream.flush()
    except BrokenPipeError as exc:
        raise _OutputClosedError from exc


async def tail(
    url: str,
    *,
    json_lines: bool,
    out: TextIO,
    err: TextIO,
    tz: tzinfo | None = None,
    delay_for: Callable[[int], float] = jittered_delay,
    ping_interval: float = PING_INTERVAL,
    pong_timeout: float = PONG_TIMEOUT,
) -> int:
    """Follow the viewer WebSocket at `url`, reconnecting for ever; returns an exit status.

    Tweets go to `out`: readable lines, or with `json_lines` each trimmed tweet as one JSON
    object, with `delete` and `profile` frames passed through as they are (they have a `type`,
    tweets do not). Readable output says when a tweet it printed is deleted, and names authors
    from `profile` frames. Notices go to `err`, so `--json` output stays clean for a pipe.

    A ping goes out every `ping_interval` seconds; no pong within `pong_timeout` drops the
    connection and reconnects, so a dead connection does not look like a quiet stream.

    Error handling: a lost or refused connection is retried after `delay_for(attempt)` seconds;
    `attempt` restarts at 0 after each `hello`. Close 1008 means the server refused the filter,
    so it returns `EXIT_REFUSED` rather than loop. A closed `out` or `err` returns `EXIT_OK`.
    Cancellation is never caught.
    """
    attempt = 0
    view = _View(json_lines=json_lines, out=out, err=err, tz=tz)
    try:
        while True:
            lost = ""
            try:
                async with open_websocket_url(
                    url,
                    subprotocols=[frames.BINARY_SUBPROTOCOL],
                    max_message_size=MAX_MESSAGE_SIZE,
                    connect_timeout=CONNECT_TIMEOUT,
                    disconnect_timeout=DISCONNECT_TIMEOUT,
                ) as ws:

                    def greeted() -> None:
                        nonlocal attempt
                        attempt = 0

                    lost = await _follow(ws, view, greeted, ping_interval, pong_timeout)
            except ConnectionClosed as closed:
                code = closed.reason.code if closed.reason is not None else None
                if code == frames.CLOSE_POLICY_VIOLATION:
                    _write(err, ["the server refused this filter; not reconnecting"])
                    return EXIT_REFUSED
                lost = f"connection closed ({code})"
            except DisconnectionTimeout:
                # Closing a connection that stopped answering: why it stopped says more.
                lost = lost or "connection lost (the close went unanswered)"
            except HandshakeError as exc:
                lost = f"cannot connect to {url} ({exc.__cause__ or type(exc).__name__})"
            delay = delay_for(attempt)
            attempt += 1
            _write(err, [f"{lost}; reconnecting in {delay:.1f}s"])
            await trio.sleep(delay)
    except _OutputClosedError:
        return EXIT_OK


async def _follow(
    ws: WebSocketConnection,
    view: _View,
    greeted: Callable[[], None],
    ping_interval: float,
    pong_timeout: float,
) -> str:
    """Show frames until the pong is late (returns why) or the connection closes (raises)."""
    late = ""
    failure: ConnectionClosed | _OutputClosedError | None = None
    async with trio.open_nursery() as nursery:

        async def keep_alive() -> None:
            nonlocal late
            while True:
                await trio.sleep(ping_interval)
                with trio.move_on_after(pong_timeout):
                    try:
                        await ws.ping()
                    except ConnectionClosed:
                        return  # the reader gets the same news
                    continue
                late = f"no answer to a ping within {pong_timeout:g}s"
                nursery.cancel_scope.cancel()
                return

        nursery.start_soon(keep_alive)
        # Caught here and raised after the nursery, so callers see them bare, not in a group.
        try:
            await _show_frames(ws, view, greeted)
        except (ConnectionClosed, _OutputClosedError) as exc:
            failure = exc
        nursery.cancel_scope.cancel()
    if failure is not None:
        raise failure
    return late  # the keep-alive gave up and cancelled the reader


async def _show_frames(ws: WebSocketConnection, view: _View, greeted: Callable[[], None]) -> None:
    while True:
        frame = _decode(await ws.get_message())
        if frame.get("type") == "hello":
            greeted()
        view.show(frame)


def _decode(message: str | bytes) -> dict[str, Any]:
    try:
        frame = orjson.loads(message)
    except orjson.JSONDecodeError:
        return {}
    return frame if isinstance(frame, dict) else {}


class _View:
    """Where each frame goes, and what readable output remembers between frames."""

    def __init__(self, *, json_lines: bool, out: TextIO, err: TextIO, tz: tzinfo | None) -> None:
        self.json_lines = json_lines
        self.out = out
        self.err = err
        self.tz = tz
        self.profiles = Profiles()
        self.printed = Printed()

    def show(self, frame: Mapping[str, Any]) -> None:
        kind = frame.get("type")
        tweets = tweets_in(frame)
        if self.json_lines:
            if tweets:
                _write(self.out, [orjson.dumps(tweet).decode() for tweet in tweets])
            elif kind in ("delete", "profile"):
                _write(self.out, [orjson.dumps(frame).decode()])
        elif tweets:
            filled = [self.profiles.fill(tweet) for tweet in tweets]
            for tweet in filled:
                self.printed.add(tweet, tz=self.tz)
            _write(self.out, [format_tweet(tweet, tz=self.tz) for tweet in filled])
        elif kind == "delete":
            summary = self.printed.pop(frame.get("id_str"))
            if summary is not None:
                _write(self.out, [format_delete(summary)])
        elif kind == "profile":
            self.profiles.remember(frame.get("profile"))
        if tweets:
            return
        notice = format_notice(frame)
        if notice is not None:
            _write(self.err, [notice])


async def _tail_until_signalled(url: str, json_lines: bool) -> int:
    """Run `tail()` until it returns or SIGINT/SIGTERM arrives, which is a normal way to stop."""
    status = EXIT_OK
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:

            async def follow() -> None:
                nonlocal status
                status = await tail(url, json_lines=json_lines, out=sys.stdout, err=sys.stderr)
                nursery.cancel_scope.cancel()

            nursery.start_soon(follow)
            async for _ in signals:
                nursery.cancel_scope.cancel()
                break
    return status


def run(url: str, *, track: str | None, json_lines: bool) -> int:
    """The `pats-trio tail` process: exit status 0 on Ctrl-C or a closed stdout, 2 if refused."""
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="replace")
    try:
        status = trio.run(_tail_until_signalled, with_filter(viewer_url(url), track), json_lines)
    except KeyboardInterrupt:  # Ctrl-C before the signal receiver was installed
        status = EXIT_OK
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        # Python flushes stdout again at exit and would complain; point it at /dev/null.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return status
