"""The `/ws` endpoint as a plain ASGI handler: one viewer, from the handshake to the close.

It runs beside Quart rather than through it, because a viewer's socket is the hot path: Quart's
websocket wrapper yields, re-checks `accept` and fires a signal on every send, and keeps a task
and a queue of its own per socket. The benchmarks (benchmarks/README.md) measured both the CPU
per delivery and the memory per idle viewer that this saves. Everything else stays a Quart route.

Error handling: a page from a foreign origin gets HTTP 403 at the handshake. Past it, every
refusal is an `error` frame and a close: 1008 for a bad filter (one that is not UTF-8 included),
1013 when the server or the viewer's address has too many viewers, 4001 for a viewer that stays
too slow, 1001 when the server shuts down. None of them touches any other viewer. A viewer whose
peer is gone when a frame is sent (an `OSError` from the server's `send`, as the ASGI spec has
servers other than hypercorn report it) ends as if it had closed.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

import orjson
import trio

from pats_trio import frames
from pats_trio.admission import AdmissionError, ChangeRate, Limits, client_address, origin_allowed
from pats_trio.events import TweetEvent
from pats_trio.hub import Hub, Outgoing, Subscription
from pats_trio.matching import TrackError, parse_track
from pats_trio.outsider_log import OutsiderLog
from pats_trio.prepared_frames import EXTENSION, SEND_PREPARED, PreparedFrame
from pats_trio.worker import Worker

LOGGER = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

PATH = "/ws"
CLOSE_TIMEOUT = 5.0
EVICTION_GRACE_SECONDS = 10.0
"""An evicted viewer stuck in a send (its socket full) gets this long, then is dropped."""


class _Socket:
    """The ASGI send side of one accepted WebSocket, in text or, if asked, binary frames."""

    __slots__ = ("_send", "binary")

    def __init__(self, send: Send, *, binary: bool) -> None:
        self._send = send
        self.binary = binary

    async def send(self, frame: frames.Frame | bytes) -> None:
        if isinstance(frame, str):
            if not self.binary:
                await self._send({"type": "websocket.send", "text": frame, "bytes": None})
                return
            frame = frame.encode()
        await self._send({"type": "websocket.send", "text": None, "bytes": frame})

    async def send_one(self, item: Outgoing) -> None:
        await self.send(_one(item, self.binary))

    async def send_batch(self, batch: list[Outgoing]) -> None:
        for frame in _coalesce(batch, self.binary):
            await self.send(frame)

    async def close(self, code: int, reason: str) -> None:
        with trio.move_on_after(CLOSE_TIMEOUT):
            await self._send({"type": "websocket.close", "code": code, "reason": reason})

    async def refuse(self, code: int, error_code: str, message: str) -> None:
        with trio.move_on_after(CLOSE_TIMEOUT):
            await self.send(frames.error(error_code, message))
            await self._send({"type": "websocket.close", "code": code, "reason": error_code})


class _PreparedSocket(_Socket):
    """A socket on a server that takes prepared frames (`prepared_frames.EXTENSION`, which
    `hypercorn_ws.py` adds to hypercorn): each tweet's wire bytes are built once for all viewers,
    and a backlog goes out as that many tweet frames in a single write, not re-encoded as one
    `tweets` frame per viewer."""

    __slots__ = ()

    async def send(self, frame: frames.Frame | bytes) -> None:
        text = frame if isinstance(frame, str) else frame.decode()
        await self._send_prepared([PreparedFrame.for_one_viewer(text)])

    async def send_one(self, item: Outgoing) -> None:
        await self._send_prepared([_prepared(item)])

    async def send_batch(self, batch: list[Outgoing]) -> None:
        await self._send_prepared([_prepared(item) for item in batch])

    async def _send_prepared(self, prepared: list[PreparedFrame]) -> None:
        await self._send({"type": SEND_PREPARED, "frames": prepared, "binary": self.binary})


def _prepared(item: Outgoing) -> PreparedFrame:
    if isinstance(item, TweetEvent):
        return item.prepared
    return PreparedFrame.for_one_viewer(item)


async def serve_viewer(worker: Worker, scope: Scope, receive: Receive, send: Send) -> None:
    """One viewer's socket, admitted and served by `worker`; returns when it is closed, by
    either side."""
    if (await receive())["type"] != "websocket.connect":
        return
    settings, limits, hub = worker.settings, worker.limits, worker.hub
    handshake = _read_handshake(
        scope, settings.allowed_origins, settings.trusted_proxy_header, worker.outsiders
    )
    if handshake is None:
        await _deny(scope, send, 403, b"This origin may not open the stream.")
        return
    address, raw_filter = handshake
    binary = frames.BINARY_SUBPROTOCOL in scope.get("subprotocols", ())
    if binary:
        await send({"type": "websocket.accept", "subprotocol": frames.BINARY_SUBPROTOCOL})
    else:
        await send({"type": "websocket.accept"})
    prepared = EXTENSION in scope.get("extensions", ())
    socket = (_PreparedSocket if prepared else _Socket)(send, binary=binary)
    if isinstance(raw_filter, TrackError):
        await socket.refuse(frames.CLOSE_POLICY_VIOLATION, raw_filter.code, raw_filter.message)
        return
    try:
        if len(raw_filter) > limits.max_filter_length:
            raise TrackError(
                "filter_too_long", f"Filters are limited to {limits.max_filter_length} characters."
            )
        with worker.clients.admit(address):
            track = parse_track(raw_filter)
            del raw_filter
            async with hub.subscribe(track, address) as sub:
                await _serve(hub, sub, socket, receive, limits)
    except TrackError as exc:
        await socket.refuse(frames.CLOSE_POLICY_VIOLATION, exc.code, exc.message)
    except AdmissionError as exc:
        going = exc.code == "shutting_down"
        code = frames.CLOSE_GOING_AWAY if going else frames.CLOSE_TRY_AGAIN_LATER
        await socket.refuse(code, exc.code, exc.message)


def _read_handshake(
    scope: Scope, allowed_origins: frozenset[str], trusted_proxy_header: str, log: OutsiderLog
) -> tuple[str, str | TrackError] | None:
    """The viewer's address and raw filter, or why that filter is refused, or None for a
    foreign origin. An undecodable filter is refused rather than read with U+FFFD in place of
    its bytes, and `?track=` (Twitter's word, a likely slip for `?filter=`) rather than quietly
    giving the unfiltered stream.

    A function of its own so that the parsed headers and query are freed before the viewer's
    long life starts: they would cost every idle viewer about a kilobyte.
    """
    headers = {
        name.decode("latin-1").lower(): value.decode("latin-1")
        for name, value in scope.get("headers", ())
    }
    origin = headers.get("origin")
    if not origin_allowed(origin, headers.get("host"), allowed_origins):
        log.warning("origin", "refused a WebSocket from foreign origin %s", origin)
        return None
    peer = scope.get("client") or ("", 0)
    address = client_address(peer[0], headers, trusted_proxy_header)
    try:
        query = parse_qs(scope.get("query_string", b"").decode(), errors="strict")
    except UnicodeDecodeError:
        return address, TrackError(
            "bad_encoding", "The filter is not valid UTF-8: percent-encode its text as UTF-8."
        )
    if "track" in query and "filter" not in query:
        return address, TrackError(
            "unknown_parameter", "Use ?filter=a,b to choose keywords here, not ?track=."
        )
    return address, query.get("filter", [""])[0]


async def _serve(
    hub: Hub, sub: Subscription, socket: _Socket, receive: Receive, limits: Limits
) -> None:
    """The sender runs here; the reader beside it. Either one ending ends both."""
    gone = False
    with trio.CancelScope() as lifetime:
        sub.on_evicted = lambda: _abandon_later(lifetime)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_read_commands, hub, sub, receive, limits, nursery.cancel_scope)
            try:
                await _send_frames(sub, socket)
            except OSError:
                # The ASGI spec's word for a peer gone mid-send, from servers that raise on a
                # send after the close (hypercorn drops the message instead): it left.
                gone = True
            nursery.cancel_scope.cancel()
    if lifetime.cancelled_caught or gone:
        return  # evicted and stuck, or gone: the socket is dropped without a close
    if sub.going_away:
        await socket.close(frames.CLOSE_GOING_AWAY, "server shutting down")
    elif sub.evicted:
        await socket.refuse(
            frames.CLOSE_TOO_SLOW,
            "too_slow",
            "Your connection could not keep up with the stream, so it was closed.",
        )


def _abandon_later(scope: trio.CancelScope) -> None:
    scope.deadline = min(scope.deadline, trio.current_time() + EVICTION_GRACE_SECONDS)


async def _send_frames(sub: Subscription, socket: _Socket) -> None:
    """The only task that writes to this socket, so frames never interleave."""
    messages = sub.messages
    while True:
        try:
            first = await messages.receive()
        except trio.EndOfChannel:
            return
        if sub.evicted:
            return
        try:
            second = messages.receive_nowait()
        except (trio.WouldBlock, trio.EndOfChannel):
            # Light load, the usual case: one item, sent without building a batch.
            await socket.send_one(first)
        else:
            await _send_batch(sub, socket, [first, second])
        if sub.skipped:
            await socket.send(frames.skipped(sub.take_skipped()))


async def _send_batch(sub: Subscription, socket: _Socket, batch: list[Outgoing]) -> None:
    """Everything waiting, in as few writes as possible (the list is freed between batches):
    one `tweets` frame per run of tweets, or, with prepared frames, every frame in one write.

    The whole queue goes at once: a cap below the queue's size let a viewer that fell behind
    under load stay behind, since it sent at most the cap per turn while more arrived."""
    while True:
        try:
            batch.append(sub.messages.receive_nowait())
        except (trio.WouldBlock, trio.EndOfChannel):
            break
    await socket.send_batch(batch)


def _coalesce(batch: list[Outgoing], binary: bool) -> list[frames.Frame | bytes]:
    """Join runs of consecutive tweets into one `tweets` frame; keep everything in order."""
    out: list[frames.Frame | bytes] = []
    run: list[TweetEvent] = []
    for item in batch:
        if isinstance(item, TweetEvent):
            run.append(item)
            continue
        if run:
            out.append(_joined(run, binary))
            run = []
        out.append(item)
    if run:
        out.append(_joined(run, binary))
    return out


def _one(item: Outgoing, binary: bool) -> frames.Frame | bytes:
    if isinstance(item, TweetEvent):
        return item.frame_utf8 if binary else item.frame
    return item


def _joined(run: list[TweetEvent], binary: bool) -> frames.Frame | bytes:
    if len(run) == 1:
        return _one(run[0], binary)
    payloads = [tweet.payload for tweet in run]
    return frames.tweets_utf8(payloads) if binary else frames.tweets(payloads)


async def _read_commands(
    hub: Hub, sub: Subscription, receive: Receive, limits: Limits, done: trio.CancelScope
) -> None:
    """In-band filter changes. A bad command gets an `error` frame; the socket stays open."""
    changes: ChangeRate | None = None  # made on the first message: most viewers never send one
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            done.cancel()
            return
        if message["type"] != "websocket.receive":
            continue
        if changes is None:
            changes = ChangeRate(limits.filter_changes_per_minute)
        error = _command_error(hub, sub, message, limits, changes)
        if error is not None:
            hub.notify(sub, error)


def _command_error(
    hub: Hub,
    sub: Subscription,
    message: MutableMapping[str, Any],
    limits: Limits,
    changes: ChangeRate,
) -> frames.Frame | None:
    data: str | bytes | None = message.get("text")
    if data is None:
        data = message.get("bytes")
    if not data:
        return frames.error("bad_message", "Messages must be JSON objects.")
    size = len(data.encode() if isinstance(data, str) else data)
    if size > limits.max_message_bytes:
        return frames.error(
            "message_too_large", f"Messages are limited to {limits.max_message_bytes} bytes."
        )
    try:
        command = orjson.loads(data)
    except orjson.JSONDecodeError:
        return frames.error("bad_message", "Messages must be JSON objects.")
    if not isinstance(command, dict) or command.get("type") != "filter":
        return frames.error("bad_message", 'Only {"type":"filter","track":"..."} is understood.')
    raw = command.get("track", "")
    if not isinstance(raw, str):
        return frames.error("bad_message", "track must be a string.")
    if len(raw) > limits.max_filter_length:
        return frames.error(
            "filter_too_long", f"Filters are limited to {limits.max_filter_length} characters."
        )
    if not changes.allow(trio.current_time()):
        return frames.error(
            "too_many_changes",
            f"At most {limits.filter_changes_per_minute} filter changes a minute; "
            "this one was not applied.",
        )
    try:
        hub.retrack(sub, parse_track(raw))
    except TrackError as exc:
        return frames.error(exc.code, exc.message)
    return None


async def refuse_host(scope: Scope, receive: Receive, send: Send) -> None:
    """A request for a Host this server does not answer to: 421 Misdirected Request (HTTP), 403
    at a WebSocket's handshake."""
    body = b"This server does not answer to that host name."
    if scope["type"] == "websocket":
        if (await receive())["type"] == "websocket.connect":
            await _deny(scope, send, 403, body)
        return
    await _answer(send, "http.response", 421, body)


async def _deny(scope: Scope, send: Send, status: int, body: bytes) -> None:
    """An HTTP answer instead of the upgrade, where the server supports it; else a bare 403."""
    if "websocket.http.response" not in scope.get("extensions", {}):
        await send({"type": "websocket.close", "code": 1008, "reason": ""})
        return
    await _answer(send, "websocket.http.response", status, body)


async def _answer(send: Send, kind: str, status: int, body: bytes) -> None:
    """A plain-text HTTP answer; `kind` is the ASGI message prefix (a request's, or a refused
    WebSocket handshake's)."""
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": f"{kind}.start", "status": status, "headers": headers})
    await send({"type": f"{kind}.body", "body": body, "more_body": False})
