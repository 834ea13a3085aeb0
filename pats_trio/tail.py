"""`pats-trio tail`: follow the stream in a terminal, as readable lines or JSON lines.

The formatting and the reconnect delays are pure functions so they can be tested without a
server; `tail()` is the only coroutine that touches the network, and `run()` is the only function
that touches the process (signals, exit status, a closed stdout).
"""

from __future__ import annotations

import os
import random
import re
import signal
import sys
from collections.abc import Callable, Mapping
from datetime import datetime, tzinfo
from typing import Any, TextIO
from urllib.parse import quote, urlsplit, urlunsplit

import orjson
import trio
from trio_websocket import ConnectionClosed, HandshakeError, open_websocket_url

from pats_trio import frames

DEFAULT_URL = "ws://127.0.0.1:8000/ws"
INITIAL_DELAY = 1.0
MAX_DELAY = 30.0
CONNECT_TIMEOUT = 10.0
DISCONNECT_TIMEOUT = 5.0
MAX_MESSAGE_SIZE = 4 * 1024 * 1024
"""A `tweets` batch holds up to 64 tweets, each possibly with a retweet and a quote inside."""

EXIT_OK = 0
EXIT_REFUSED = 2
"""The server refused the filter (close 1008): retrying would only be refused again."""

_LINE_BREAKS = re.compile(r"\s*[\r\n\x0b\x0c\x85\u2028\u2029]+\s*")
# C0 and C1 controls (ESC included) would let a tweet drive the terminal; tabs become spaces.
_CONTROLS = {code: "\ufffd" for code in (*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0))}
_CONTROLS[ord("\t")] = " "
_MAX_DOUBLINGS = 16


class _OutputClosedError(Exception):
    """The reader of our output went away (`| head`); nothing more to do, and nothing to say."""


def backoff_delay(attempt: int, jitter: float) -> float:
    """Seconds to wait before reconnect attempt `attempt` (0 for the first after a success).

    The ceiling starts at 1 s and doubles up to 30 s; `jitter` in [0, 1) picks a point between half
    the ceiling and the ceiling, so terminals that lost the same server do not return in step.

    >>> backoff_delay(0, 0.0), backoff_delay(3, 0.999999) < 8, backoff_delay(40, 0.0)
    (0.5, True, 15.0)
    """
    ceiling = min(MAX_DELAY, INITIAL_DELAY * 2.0 ** min(max(attempt, 0), _MAX_DOUBLINGS))
    return ceiling * (0.5 + 0.5 * min(max(jitter, 0.0), 1.0))


def jittered_delay(attempt: int) -> float:
    """`backoff_delay` with fresh randomness, the default for `tail()`."""
    return backoff_delay(attempt, random.random())


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
    return line


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

    `delete` gets none: a terminal cannot take back a printed line, and the sample stream sends
    many deletes for tweets this viewer never saw.
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
) -> int:
    """Follow the viewer WebSocket at `url`, reconnecting for ever; returns an exit status.

    Tweets go to `out` (readable lines, or with `json_lines` each trimmed tweet as one JSON
    object); notices go to `err`, so `--json` output stays clean for a pipe.

    Error handling: a lost or refused connection is retried after `delay_for(attempt)` seconds;
    `attempt` restarts at 0 after each `hello`. Close 1008 means the server refused the filter,
    so it returns `EXIT_REFUSED` rather than loop. A closed `out` or `err` returns `EXIT_OK`.
    Cancellation is never caught.
    """
    attempt = 0
    try:
        while True:
            try:
                async with open_websocket_url(
                    url,
                    max_message_size=MAX_MESSAGE_SIZE,
                    connect_timeout=CONNECT_TIMEOUT,
                    disconnect_timeout=DISCONNECT_TIMEOUT,
                ) as ws:
                    while True:
                        frame = _decode(await ws.get_message())
                        if frame.get("type") == "hello":
                            attempt = 0
                        _show(frame, json_lines=json_lines, out=out, err=err, tz=tz)
            except ConnectionClosed as closed:
                code = closed.reason.code if closed.reason is not None else None
                if code == frames.CLOSE_POLICY_VIOLATION:
                    _write(err, ["the server refused this filter; not reconnecting"])
                    return EXIT_REFUSED
                lost = f"connection closed ({code})"
            except HandshakeError as exc:
                lost = f"cannot connect to {url} ({exc.__cause__ or type(exc).__name__})"
            delay = delay_for(attempt)
            attempt += 1
            _write(err, [f"{lost}; reconnecting in {delay:.1f}s"])
            await trio.sleep(delay)
    except _OutputClosedError:
        return EXIT_OK


def _decode(message: str | bytes) -> dict[str, Any]:
    try:
        frame = orjson.loads(message)
    except orjson.JSONDecodeError:
        return {}
    return frame if isinstance(frame, dict) else {}


def _show(
    frame: Mapping[str, Any], *, json_lines: bool, out: TextIO, err: TextIO, tz: tzinfo | None
) -> None:
    tweets = tweets_in(frame)
    if tweets:
        if json_lines:
            _write(out, [orjson.dumps(tweet).decode() for tweet in tweets])
        else:
            _write(out, [format_tweet(tweet, tz=tz) for tweet in tweets])
        return
    notice = format_notice(frame)
    if notice is not None:
        _write(err, [notice])


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
        status = trio.run(_tail_until_signalled, with_filter(url, track), json_lines)
    except KeyboardInterrupt:  # Ctrl-C before the signal receiver was installed
        status = EXIT_OK
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        # Python flushes stdout again at exit and would complain; point it at /dev/null.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return status
