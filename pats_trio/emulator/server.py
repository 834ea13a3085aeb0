"""Twitter's v1.1 streaming endpoints as an ASGI app, served on loopback by hypercorn.

Routes, as `stream.twitter.com` had them:

* ``GET /1.1/statuses/sample.json``: the sample stream, `rate` synthetic tweets per second.
* ``POST /1.1/statuses/filter.json`` (form body) or ``GET`` (query): ``track=`` with Twitter's
  semantics (comma = OR, space = AND), matched with the server's own `pats_trio.matching`.
  Besides the sample tweets that match, each filter stream gets `filter_rate` tweets per second
  written for one of its phrases, the way the real filter stream drew from the whole firehose.

Each message is an orjson-encoded status and ``\\r\\n``. With ``delimited=length`` a message is
preceded by its byte length (counting its own ``\\r\\n``, as Twitter did) on a line of its own.
An idle stream gets a bare ``\\r\\n`` keep-alive every `keepalive_interval` seconds. The body has
no content-length, so hypercorn sends it with chunked transfer encoding.

Every open stream has a bounded memory channel. The generator and `inject` never wait for a
reader: a stream whose channel is full misses the message, and the miss is counted on its
`ConnectionRecord`. With ``stall_warnings=true`` it is told, like Twitter did, with a
``FALLING_BEHIND`` warning once its queue passes `FALLING_BEHIND_PERCENT`.

One account has one standing connection per endpoint, as on Twitter: when a stream is accepted
(it passed every check and will get its HTTP 200), an older open stream of the same kind with the
same credential set (the OAuth consumer key and access token, or no OAuth at all) gets what it has
queued, then a ``disconnect`` message with code 2 ("Duplicate stream"), and its body ends. The new
stream's 200 goes out once that is written (`REPLACE_WAIT` at most), so the old connection hears
of its end before the new one is answered, the order in which it reached clients from Twitter.
Twitter's documentation counts one standing connection per account across all public endpoints,
sample and filter together; the emulator counts each endpoint on its own, because pats-trio runs a
sample and a filter stream with one account. A known difference, not an oversight.

An emulator built with ``control=True`` also answers the HTTP control API of
`pats_trio.emulator.control` under ``/_control``, for tests that run it as its own process.

Tests drive faults with `fail_next`, `drop_streams`, `stall_streams`, `inject` and `inject_raw`,
and observe with `connections`, `sent` and `wait_until`. All scheduling uses trio's clock, so a
`trio.testing.MockClock` drives keep-alives and the generator.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any, NamedTuple, cast
from urllib.parse import parse_qs

import orjson
import trio
from hypercorn.trio import serve

from pats_trio.credentials import Credentials
from pats_trio.emulator.asgi import (
    BodyTooLargeError,
    Receive,
    Send,
    cancel_on_disconnect,
    hypercorn_config,
    lifespan,
    read_body,
    respond,
)
from pats_trio.emulator.corpus import TweetFactory
from pats_trio.emulator.oauth import Account, OAuthCheck, account_of
from pats_trio.events import StreamKind
from pats_trio.matching import Phrase, TrackError, matches_any, parse_track, tweet_terms
from pats_trio.tweets import TweetShapeError, trim

LOGGER = logging.getLogger(__name__)
# hypercorn's own messages; its "Running on ... (CTRL + C to quit)" would be mistaken for the app's.
HYPERCORN_LOGGER = logging.getLogger(__name__ + ".hypercorn")

API_PREFIX = "/1.1"
CONTROL_PATH = "/_control"
"""Where `control.serve_control` is mounted (its `CONTROL_PREFIX`; a test checks they agree)."""
SAMPLE_PATH = API_PREFIX + "/statuses/sample.json"
FILTER_PATH = API_PREFIX + "/statuses/filter.json"
# Messages queued for one stream before it starts missing them.
STREAM_BUFFER = 1000
# A backlog is written as one chunk of up to this many bytes, so a fast reader keeps up with
# bursts of injections instead of draining one message per scheduling turn.
MAX_CHUNK_BYTES = 256 * 1024
# A larger request body gets 413.
MAX_BODY_BYTES = 64 * 1024
# With stall_warnings=true, a stream is warned once its queue is this full.
FALLING_BEHIND_PERCENT = 60
# A generator that fell behind (a paused process) catches up at most this many seconds.
MAX_LAG = 1.0
# How long hypercorn waits for open connections when the emulator shuts down.
SHUTDOWN_GRACE = 1.0
CRLF = b"\r\n"
KEEPALIVE = CRLF
MISSING_TRACK = b"Parameter track is missing"
UNAUTHORIZED = b'{"errors":[{"code":32,"message":"Could not authenticate you."}]}'
DUPLICATE_STREAM = 2
# A new stream's 200 waits this long at most for the stream it replaces to be told (a client
# that has stopped reading holds that write up).
REPLACE_WAIT = 1.0


@dataclass
class ConnectionRecord:
    """One request to a streaming endpoint, kept after it closes so tests can inspect it.

    `status` is the HTTP status it got; a refused request is closed at once. `sent` counts the
    tweets written to it and `skipped` those it missed because its queue was full. `replaced_by`
    is the id of the newer stream, same kind and same credentials, that ended this one with a
    code 2 disconnect; its `closed_at` is the moment that stream was accepted.
    """

    id: int
    kind: StreamKind
    track: str
    method: str
    delimited: bool
    opened_at: float
    closed_at: float | None = None
    authorization: str | None = field(default=None, repr=False)
    status: int = 200
    sent: int = 0
    skipped: int = 0
    replaced_by: int | None = None


class _Out(NamedTuple):
    """One queued item: a message to frame (`framed`) or raw bytes to write as they are."""

    data: bytes
    framed: bool
    tweet: bool


@dataclass(eq=False)
class _Stream:
    record: ConnectionRecord
    account: Account
    phrases: tuple[Phrase, ...]
    stall_warnings: bool
    send_channel: trio.MemorySendChannel[_Out]
    receive_channel: trio.MemoryReceiveChannel[_Out]
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    stalled: bool = False
    dropped: bool = False
    warned: bool = False
    farewell: bytes = b""
    """The last message, written once the queue closes and drains; then the body ends."""
    finished: trio.Event = field(default_factory=trio.Event)


def _duplicate_stream(old: ConnectionRecord, new: ConnectionRecord) -> bytes:
    """Twitter's disconnect message for a stream that a newer one with its credentials replaced."""
    return orjson.dumps(
        {
            "disconnect": {
                "code": DUPLICATE_STREAM,
                "stream_name": f"emulator-{old.kind}{old.id}",
                "reason": f"{old.kind} stream {new.id} opened with the same credentials",
            }
        }
    )


def _falling_behind(percent: int) -> bytes:
    return orjson.dumps(
        {
            "warning": {
                "code": "FALLING_BEHIND",
                "message": (
                    "Your connection is falling behind and messages are being queued for "
                    f"delivery to you. Your queue is now over {percent}% full. You will miss "
                    "messages when the queue is full."
                ),
                "percent_full": percent,
            }
        }
    )


class Emulator:
    """The streaming API's state: open streams, the tweet source, and the faults to inject.

    The instance is the ASGI app. `serve_emulator` serves it and runs `generate`; an emulator
    served some other way gets only injected and per-filter tweets unless `generate` runs too.

    `rate` is sample tweets per second (0: only injected ones); `filter_rate` (default `rate`) is
    tweets per second written for each filter stream's own track. Arrivals are Poisson, drawn
    from `seed` like the tweets themselves. `control` mounts the HTTP control API
    (`pats_trio.emulator.control`) under ``/_control``; leave it off anywhere but tests. With
    `credentials`, every request must carry an OAuth 1.0a signature made with them, or gets 401.
    """

    def __init__(
        self,
        *,
        rate: float = 5.0,
        seed: int | None = None,
        keepalive_interval: float = 30.0,
        filter_rate: float | None = None,
        control: bool = False,
        credentials: Credentials | None = None,
        one_stream_per_account: bool = True,
    ) -> None:
        if rate < 0 or (filter_rate is not None and filter_rate < 0):
            raise ValueError("rates must not be negative")
        if keepalive_interval <= 0:
            raise ValueError("keepalive_interval must be positive")
        self.rate = rate
        self.filter_rate = rate if filter_rate is None else filter_rate
        self.keepalive_interval = keepalive_interval
        self.control = control
        self.one_stream_per_account = one_stream_per_account
        """As on Twitter. Off only where clients that would each have an account of their own
        share this emulator unsigned (the benchmarks' contestants)."""
        self._oauth = OAuthCheck(credentials) if credentials is not None else None
        self.factory = TweetFactory(seed)
        self.connections: list[ConnectionRecord] = []
        self.sent = 0
        self.skipped = 0
        self._timing = random.Random(None if seed is None else f"timing:{seed}")
        self._streams: dict[int, _Stream] = {}
        self._failures: deque[tuple[int, bytes]] = deque()
        self._changed = trio.Event()
        self._wall_offset: float | None = None

    # ---- observing

    def open_connections(self, kind: str | None = None) -> list[ConnectionRecord]:
        """Records of the streams open now, oldest first, of one kind or all."""
        return [stream.record for stream in self._open_streams(kind)]

    async def wait_until(self, predicate: Callable[[Emulator], bool]) -> None:
        """Return once `predicate(self)` holds; it is checked after every open, close and tweet.

        For example ``await emulator.wait_until(lambda e: len(e.open_connections()) == 1)``.
        """
        while True:
            changed = self._changed
            if predicate(self):
                return
            await changed.wait()

    def now_ms(self) -> int:
        """Wall-clock milliseconds that advance with trio's clock (a MockClock included)."""
        if self._wall_offset is None:
            self._wall_offset = time.time() - trio.current_time()
        return int((self._wall_offset + trio.current_time()) * 1000)

    # ---- injecting

    def inject(self, status: dict[str, Any]) -> None:
        """Send this raw status now to every sample stream and every filter stream it matches."""
        self._broadcast(status)

    def inject_raw(self, data: bytes, kind: str | None = None) -> None:
        """Write `data` unframed to the open streams of `kind` (or all): control messages, junk."""
        item = _Out(bytes(data), framed=False, tweet=False)
        for stream in self._open_streams(kind):
            self._offer(stream, item)

    def fail_next(self, status: int, count: int = 1, body: bytes = b"") -> None:
        """Answer the next `count` streaming requests with this HTTP status and body."""
        self._failures.extend([(status, body)] * count)

    def drop_streams(self, kind: str | None = None) -> None:
        """End open streams abruptly: the client sees the connection close mid-body.

        They count as closed at once (`closed_at` set, gone from `open_connections`), so
        ``drop_streams(); await wait_until(lambda e: len(e.open_connections()) == 1)`` waits
        for the reconnection. A client that has stopped reading holds the close up until it
        reads again, since hypercorn finishes a write it has started.
        """
        streams = self._open_streams(kind)
        for stream in streams:
            stream.dropped = True
            stream.scope.cancel()
            self._close(stream)
        if streams:
            self._notify()

    def stall_streams(self, kind: str | None = None) -> None:
        """Open streams send nothing more, keep-alives included, but stay open."""
        for stream in self._open_streams(kind):
            stream.stalled = True

    # ---- the tweet source

    async def generate(self) -> None:
        """Broadcast `rate` synthetic tweets per second to the open streams, until cancelled."""
        if self.rate <= 0:
            await trio.sleep_forever()
        next_at = trio.current_time()
        while True:
            next_at = max(
                next_at + self._timing.expovariate(self.rate), trio.current_time() - MAX_LAG
            )
            await trio.sleep_until(next_at)
            if self._streams:
                self._broadcast(self.factory.next_status(self.now_ms()))

    async def _feed_filter(self, stream: _Stream) -> None:
        """Write `filter_rate` tweets per second for this stream's phrases, until cancelled."""
        next_at = trio.current_time()
        while True:
            next_at = max(
                next_at + self._timing.expovariate(self.filter_rate),
                trio.current_time() - MAX_LAG,
            )
            await trio.sleep_until(next_at)
            phrase = self._timing.choice(stream.phrases)
            status = self.factory.status_matching(phrase.text.split(), self.now_ms())
            if matches_any(stream.phrases, _terms(status)):
                self._offer(stream, _Out(orjson.dumps(status), framed=True, tweet=True))

    def _broadcast(self, status: Mapping[str, Any]) -> None:
        item = _Out(orjson.dumps(status), framed=True, tweet=True)
        terms: frozenset[str] | None = None
        for stream in list(self._streams.values()):
            if stream.record.kind == "filter":
                if terms is None:
                    terms = _terms(status)
                if not matches_any(stream.phrases, terms):
                    continue
            self._offer(stream, item)

    def _offer(self, stream: _Stream, item: _Out) -> None:
        """Queue without waiting; a full queue misses the item and counts it."""
        if stream.stalled:
            return
        try:
            stream.send_channel.send_nowait(item)
        except trio.WouldBlock:
            stream.record.skipped += 1
            self.skipped += 1
            return
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return
        if stream.stall_warnings:
            used = stream.send_channel.statistics().current_buffer_used
            percent = used * 100 // STREAM_BUFFER
            if percent < FALLING_BEHIND_PERCENT // 2:
                stream.warned = False
            elif percent >= FALLING_BEHIND_PERCENT and not stream.warned:
                stream.warned = True
                warning = _Out(_falling_behind(FALLING_BEHIND_PERCENT), framed=True, tweet=False)
                with contextlib.suppress(trio.WouldBlock):
                    stream.send_channel.send_nowait(warning)

    def _replace_older(self, stream: _Stream) -> list[_Stream]:
        """End every other open stream of this kind and account, as Twitter ends the older one.

        Its queue is closed, so it gets what was queued for it, then the code 2 message, then the
        end of the body. A stalled stream sends nothing more, so it is just closed.
        """
        if not self.one_stream_per_account:
            return []
        replaced = [
            older
            for older in self._open_streams(stream.record.kind)
            if older is not stream and older.account == stream.account
        ]
        for older in replaced:
            older.record.replaced_by = stream.record.id
            older.farewell = _duplicate_stream(older.record, stream.record)
            self._close(older)
            older.send_channel.close()
            if older.stalled:
                older.scope.cancel()
            LOGGER.info(
                "emulator: %s stream %d replaced by stream %d with the same credentials",
                stream.record.kind,
                older.record.id,
                stream.record.id,
            )
        if replaced:
            self._notify()
        return replaced

    def _close(self, stream: _Stream) -> bool:
        """Unregister a stream and stamp its record; False if that was already done."""
        if self._streams.pop(stream.record.id, None) is None:
            return False
        stream.record.closed_at = trio.current_time()
        return True

    def _open_streams(self, kind: str | None) -> list[_Stream]:
        return [s for s in self._streams.values() if kind is None or s.record.kind == kind]

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    # ---- ASGI

    async def __call__(self, scope: Mapping[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path = scope["path"]
        if self.control and (path == CONTROL_PATH or path.startswith(CONTROL_PATH + "/")):
            # Imported here: the control API names this module's types, which it drives.
            from pats_trio.emulator.control import serve_control

            await serve_control(self, scope, receive, send)
            return
        try:
            body: bytes | None = await read_body(receive, MAX_BODY_BYTES)
        except BodyTooLargeError:
            body = None
        if path == SAMPLE_PATH:
            kind: StreamKind = "sample"
        elif path == FILTER_PATH:
            kind = "filter"
        else:
            await respond(send, 404, b"Not Found")
            return
        method = scope["method"]
        if method not in (("GET",) if kind == "sample" else ("GET", "POST")):
            await respond(send, 405, b"Method Not Allowed")
            return
        if body is None:
            await respond(send, 413, b"Request Entity Too Large")
            return
        params = parse_qs(scope["query_string"].decode("latin-1"), keep_blank_values=True)
        if method == "POST":
            form = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
            for name, values in form.items():
                params.setdefault(name, []).extend(values)

        def param(name: str) -> str:
            values: list[str] = params.get(name, [""])
            return values[-1]

        authorization = next(
            (
                value.decode("latin-1")
                for name, value in scope["headers"]
                if name == b"authorization"
            ),
            None,
        )
        record = ConnectionRecord(
            id=len(self.connections) + 1,
            kind=kind,
            track=param("track") if kind == "filter" else "",
            method=method,
            delimited=param("delimited") == "length",
            opened_at=trio.current_time(),
            authorization=authorization,
        )
        self.connections.append(record)
        if self._oauth is not None and not self._signed(scope, method, body):
            await self._refuse(record, send, 401, UNAUTHORIZED)
            return
        if self._failures:
            status, text = self._failures.popleft()
            await self._refuse(record, send, status, text)
            return
        phrases: tuple[Phrase, ...] = ()
        if kind == "filter":
            try:
                phrases = parse_track(record.track)
            except TrackError as error:
                status = 413 if error.code == "too_many_phrases" else 406
                await self._refuse(record, send, status, error.message.encode())
                return
            if not phrases:
                await self._refuse(record, send, 406, MISSING_TRACK)
                return
        await self._stream(
            record,
            account_of(authorization),
            phrases,
            param("stall_warnings") == "true",
            receive,
            send,
        )

    def _signed(self, scope: Mapping[str, Any], method: str, body: bytes) -> bool:
        assert self._oauth is not None
        headers = {
            name.decode("latin-1").title(): value.decode("latin-1")
            for name, value in scope["headers"]
            if name in (b"authorization", b"content-type", b"host")
        }
        if "Authorization" not in headers:
            return False
        query = scope["query_string"].decode("latin-1")
        uri = f"http://{headers.get('Host', 'localhost')}{scope['path']}" + (
            f"?{query}" if query else ""
        )
        return self._oauth.verifies(method, uri, body.decode("utf-8", "replace"), headers)

    async def _refuse(self, record: ConnectionRecord, send: Send, status: int, body: bytes) -> None:
        record.status = status
        record.closed_at = trio.current_time()
        self._notify()
        LOGGER.info("emulator: %s request %d refused with %d", record.kind, record.id, status)
        await respond(send, status, body)

    async def _stream(
        self,
        record: ConnectionRecord,
        account: Account,
        phrases: tuple[Phrase, ...],
        stall_warnings: bool,
        receive: Receive,
        send: Send,
    ) -> None:
        """Serve one stream until the client leaves, `drop_streams`, a newer stream of its
        account, or cancellation."""
        send_channel, receive_channel = trio.open_memory_channel[_Out](STREAM_BUFFER)
        stream = _Stream(record, account, phrases, stall_warnings, send_channel, receive_channel)
        # Registered before the headers go out: a client that has its 200 gets every injection.
        self._streams[record.id] = stream
        self._notify()
        LOGGER.info(
            "emulator: %s stream %d opened (track=%r, delimited=%s)",
            record.kind,
            record.id,
            record.track,
            record.delimited,
        )
        try:
            headers = [(b"content-type", b"application/json")]
            # The stream this one replaces is told before this one is answered, as on Twitter.
            with trio.move_on_after(REPLACE_WAIT):
                for older in self._replace_older(stream):
                    await older.finished.wait()
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            with stream.scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(cancel_on_disconnect, receive, nursery.cancel_scope)
                    if record.kind == "filter" and self.filter_rate > 0:
                        nursery.start_soon(self._feed_filter, stream)
                    await self._write(stream, send)
                    nursery.cancel_scope.cancel()
            # A replaced stream's body ends properly (`_write`). Returning without the final
            # empty body makes hypercorn close the connection, so a dropped stream ends
            # mid-body, before the chunked terminator.
        finally:
            stream.finished.set()
            if self._close(stream):
                self._notify()
            send_channel.close()
            receive_channel.close()
            how = " by drop_streams" if stream.dropped else ""
            if record.replaced_by is not None:
                how = f" for stream {record.replaced_by}"
            LOGGER.info(
                "emulator: %s stream %d closed%s after %d tweets (%d skipped)",
                record.kind,
                record.id,
                how,
                record.sent,
                record.skipped,
            )

    async def _write(self, stream: _Stream, send: Send) -> None:
        """Write queued messages, a keep-alive when idle, until the queue is closed; then the
        farewell and the end of the body. Nothing at all once stalled."""
        ended = False
        while not ended:
            frames: list[bytes] = []
            size = tweets = 0
            with trio.move_on_after(self.keepalive_interval):
                try:
                    item = await stream.receive_channel.receive()
                    while True:
                        frames.append(_frame(item, stream.record.delimited))
                        size += len(frames[-1])
                        tweets += item.tweet
                        if size >= MAX_CHUNK_BYTES:
                            break
                        item = stream.receive_channel.receive_nowait()
                except trio.WouldBlock:
                    pass
                except trio.EndOfChannel:
                    ended = True
            if stream.stalled:
                await trio.sleep_forever()
            if ended:
                farewell = _Out(stream.farewell, framed=True, tweet=False)
                frames.append(_frame(farewell, stream.record.delimited))
            data = b"".join(frames) or KEEPALIVE
            await send({"type": "http.response.body", "body": data, "more_body": True})
            if tweets:
                stream.record.sent += tweets
                self.sent += tweets
                self._notify()
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def _frame(item: _Out, delimited: bool) -> bytes:
    if not item.framed:
        return item.data
    message = item.data + CRLF
    if delimited:
        return str(len(message)).encode() + CRLF + message
    return message


def _terms(status: Mapping[str, Any]) -> frozenset[str]:
    """What the server would match this status on; nothing for a status it could not trim."""
    try:
        return tweet_terms(trim(status))
    except TweetShapeError:
        return frozenset()


async def serve_emulator(
    emulator: Emulator,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve `emulator` over HTTP/1.1 on `host`:`port` and run its tweet generator, forever.

    Reports the streaming base URL, such as ``"http://127.0.0.1:43121/1.1"``, through
    `task_status`, so callers write::

        base_url = await nursery.start(serve_emulator, emulator)

    Port 0 picks a free port. The access log is off.

    Resource handling:
        hypercorn owns the listening socket and every connection; the generator runs beside it
        in this function's nursery. Cancelling the caller's scope closes all of them, and every
        open stream's `ConnectionRecord` gets its `closed_at`.

    Error handling:
        A failure to bind (`OSError`) propagates before `task_status.started`, so
        `nursery.start` raises it. Per-connection errors stay inside hypercorn, which closes
        that connection and carries on.
    """
    config = hypercorn_config(host, port, HYPERCORN_LOGGER, SHUTDOWN_GRACE)
    async with trio.open_nursery() as nursery:
        # Emulator has the ASGI shape, with plain mappings where hypercorn has TypedDicts.
        app = cast(Any, emulator)
        binds: list[str] = await nursery.start(partial(serve, app, config, mode="asgi"))
        nursery.start_soon(emulator.generate)
        base_url = binds[0] + API_PREFIX
        LOGGER.info("emulator: streaming API at %s (%.1f tweets/s)", base_url, emulator.rate)
        if emulator.control:
            LOGGER.warning("emulator: control API open at %s%s", binds[0], CONTROL_PATH)
        task_status.started(base_url)
