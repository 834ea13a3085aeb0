"""Repairs to hypercorn, made when the app is built (2 to 5 pinned to 0.18.0).

1. **A busy socket is a closed one.** hypercorn closes a connection with `send_eof()` outside
   the lock its writers take, and `send_eof` holds Trio's one-sender guard across a checkpoint.
   A write that starts in that window, such as the answer to the close frame a refused viewer
   sends back as the server closes, raises `trio.BusyResourceError`; nothing catches it, and it
   ended the whole server process with every viewer on it. Such a write now ends its connection.
2. **A protocol error gets its close frame.** wsproto reports a frame it cannot parse (an
   unmasked client frame, invalid UTF-8 in a text message, an unknown opcode) as a
   `CloseConnection` carrying the code it owes the peer (1002, 1007), but leaves its connection
   open; `WSStream` answers a close only in `REMOTE_CLOSING`, so the peer got a bare TCP close.
   It now gets the close frame with that code first (RFC 6455 section 7.1.7).
3. **A silent peer is dropped.** `websocket_ping_interval` makes hypercorn ping, but it never
   looks for an answer, so a peer that went away without a FIN (a sleeping laptop, a dead NAT
   entry) stayed counted for good. A WebSocket that has sent nothing at all, pong or message,
   for `SILENT_PINGS` ping intervals is closed (no close frame: nobody is there to read it).
   And the ping task ends when its stream does, not up to an interval later: hypercorn's
   slept on, holding the connection's task group (and every object of it) until it woke.
4. **A message that has begun must finish.** hypercorn held whatever part of a message had
   arrived (up to `websocket_max_message_size`) for as long as its peer kept the socket, sending
   a frame's first bytes and then trickling or stopping. A message unfinished after
   `MESSAGE_SECONDS_SETTING` seconds (`PATS_WS_MESSAGE_SECONDS`) is closed with 1008 and its
   bytes dropped. A peer idle between messages is the ping's business, not this one's.
5. **The server's own close lets go.** After its own 1009, hypercorn waited for the peer's
   answer for as long as the socket lived, and went on buffering the rest of the refused message
   meanwhile (the soak saw four 15.9 MB frames held that way). What arrives after any close of
   the server's (a 1009, a protocol error's, a timed-out message's, the app's) is now dropped,
   and the connection ends `CLOSE_SECONDS` after it whatever the peer does, as with websockets'
   `close_timeout` (the app's closes already ended it when the app returned, unless the close
   frame's write was waiting on a full socket).

Each repair is checked against hypercorn's own classes by the tests. Repairs 2 to 5 replace
private `WSStream` methods: a hypercorn of another version keeps its own, with a warning, rather
than being patched blind.
"""

from __future__ import annotations

import functools
import importlib.metadata
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import trio
from hypercorn.events import Closed
from hypercorn.protocol.events import Body, Data, StreamClosed
from hypercorn.protocol.ws_stream import FrameTooLargeError, WSStream
from hypercorn.trio.tcp_server import TCPServer
from wsproto.connection import ConnectionState
from wsproto.events import CloseConnection, Message, Ping
from wsproto.frame_protocol import CloseReason
from wsproto.utilities import LocalProtocolError

LOGGER = logging.getLogger(__name__)

PINNED_VERSION = "0.18.0"
"""The hypercorn these repairs were written against (they replace private methods)."""
SILENT_PINGS = 2
"""A peer that has sent nothing for this many ping intervals is taken for gone."""
CLOSE_REASON_CHARS = 100
"""A close frame's reason must fit in 123 bytes; wsproto's own sentences are ASCII."""
CLOSE_SECONDS = 5.0
"""How long the server waits for the answer to its own close frame before it lets go."""
MESSAGE_SECONDS = 10.0
"""How long a message may take from its first byte to its last, unless the config says."""
MESSAGE_SECONDS_SETTING = "pats_websocket_message_seconds"
"""The attribute of hypercorn's `Config` that `protocol_limits` sets (hypercorn has none)."""

_REPAIRED = "_pats_repaired"


def repair_hypercorn() -> None:
    """Idempotent: every app build calls it."""
    if getattr(TCPServer.protocol_send, _REPAIRED, False):
        return
    _repair_busy_socket()  # wraps a public method, as it was in 0.17 and is in 0.18
    version = importlib.metadata.version("hypercorn")
    if version != PINNED_VERSION:
        LOGGER.warning(
            "hypercorn %s is not %s: protocol errors get no close frame, and silent WebSocket "
            "peers, unfinished messages and unanswered closes are not dropped (those repairs "
            "replace private methods of that version)",
            version,
            PINNED_VERSION,
        )
        return
    WSStream.handle = _handle_stamped(WSStream.handle)  # type: ignore[method-assign,assignment]
    WSStream._handle_events = _handle_events  # type: ignore[method-assign]
    WSStream._send_pings = _send_pings  # type: ignore[method-assign]
    WSStream._send_wsproto_event = _send_wsproto_event  # type: ignore[method-assign]


def _repair_busy_socket() -> None:
    original: Callable[[TCPServer, Any], Awaitable[None]] = TCPServer.protocol_send

    async def protocol_send(self: TCPServer, event: Any) -> None:
        try:
            await original(self, event)
        except trio.BusyResourceError:
            await self.protocol.handle(Closed())

    setattr(protocol_send, _REPAIRED, True)
    TCPServer.protocol_send = protocol_send  # type: ignore[method-assign]


def _handle_stamped(
    original: Callable[[WSStream, Any], Awaitable[None]],
) -> Callable[[WSStream, Any], Awaitable[None]]:
    """`WSStream.handle`, noting when the peer last sent anything (a pong included), and waking
    the stream's timers when it closes. Made with `functools.wraps`, so that `hypercorn_ws`
    finds its own wrapper under this one (`__wrapped__`) and never wraps twice."""

    @functools.wraps(original)
    async def handle(self: WSStream, event: Any) -> None:
        if isinstance(event, (Body, Data)):
            self._pats_heard = self.context.time()  # type: ignore[attr-defined]
        await original(self, event)
        if self.closed:
            closed: trio.Event | None = getattr(self, "_pats_closed", None)
            if closed is not None:
                closed.set()
            _message_over(self)

    return handle


def _closed_event(stream: WSStream) -> trio.Event:
    """Set when `stream` closes (by `handle`), for the timers that must end with it."""
    closed: trio.Event | None = getattr(stream, "_pats_closed", None)
    if closed is None:
        closed = stream._pats_closed = trio.Event()  # type: ignore[attr-defined]
        if stream.closed:
            closed.set()
    return closed


def _message_over(stream: WSStream) -> None:
    """The message under way, if any, is done with: delivered, refused or abandoned."""
    done: trio.Event | None = getattr(stream, "_pats_message", None)
    if done is not None:
        done.set()
        stream._pats_message = None  # type: ignore[attr-defined]


async def _handle_events(self: WSStream) -> None:
    """hypercorn 0.18.0's `WSStream._handle_events`, with the close a protocol error owes, a
    time bound on each message, and nothing kept of what arrives after the server's close."""
    for event in self.connection.events():
        if isinstance(event, Message):
            if self.connection.state is not ConnectionState.OPEN:
                continue  # the server has closed (its 1009 included): nobody will read it
            begins = self.buffer.value is None
            try:
                self.buffer.extend(event)
            except FrameTooLargeError:
                # hypercorn kept the buffer, and went on filling it with the rest of the
                # message until the peer answered the close.
                self.buffer.clear()
                _message_over(self)
                await self._send_wsproto_event(CloseConnection(code=CloseReason.MESSAGE_TOO_BIG))
                continue

            if event.message_finished:
                _message_over(self)
                assert self.app_put is not None
                await self.app_put(self.buffer.to_message())
                self.buffer.clear()
            elif begins:
                done = self._pats_message = trio.Event()  # type: ignore[attr-defined]
                self.task_group.spawn(_expire_message, self, done)
        elif isinstance(event, Ping):
            await self._send_wsproto_event(event.response())
        elif isinstance(event, CloseConnection):
            if self.connection.state == ConnectionState.REMOTE_CLOSING:
                await self._send_wsproto_event(event.response())
            elif self.connection.state == ConnectionState.OPEN:
                # Not the peer's close (that moves the state on): wsproto could not parse
                # what the peer sent, and `event.code` is the close it is owed.
                reason = (event.reason or "")[:CLOSE_REASON_CHARS]
                await self._send_wsproto_event(CloseConnection(code=event.code, reason=reason))
            await self.send(StreamClosed(stream_id=self.stream_id))


def message_seconds(config: Any) -> float:
    """The time a message may take, as `protocol_limits` set it on hypercorn's config."""
    seconds: float = getattr(config, MESSAGE_SECONDS_SETTING, MESSAGE_SECONDS)
    return seconds


async def _expire_message(self: WSStream, done: trio.Event) -> None:
    """Close with 1008, and drop what arrived, if the message begun is not done in time."""
    seconds = message_seconds(self.config)
    with trio.move_on_after(seconds):
        await done.wait()
    if done.is_set() or self.closed or self.connection.state is not ConnectionState.OPEN:
        return
    LOGGER.info(
        "closing a WebSocket whose message was unfinished after %.0fs (%d bytes)",
        seconds,
        self.buffer.length,
    )
    self.buffer.clear()
    _message_over(self)
    close = CloseConnection(code=CloseReason.POLICY_VIOLATION, reason="message too slow")
    await self._send_wsproto_event(close)


async def _send_wsproto_event(self: WSStream, event: Any) -> None:
    """hypercorn 0.18.0's `WSStream._send_wsproto_event`, which also starts the bound on the
    answer to the server's own close, before the close frame's write (that may wait on a full
    socket) rather than after it."""
    try:
        data = self.connection.send(event)
    except LocalProtocolError:
        return
    if (
        isinstance(event, CloseConnection)
        and self.connection.state is ConnectionState.LOCAL_CLOSING
        and not getattr(self, "_pats_letting_go", False)
    ):
        self._pats_letting_go = True  # type: ignore[attr-defined]
        self.task_group.spawn(_let_go_after_close, self)
    await self.send(Data(stream_id=self.stream_id, data=data))


async def _let_go_after_close(self: WSStream) -> None:
    """End the connection `CLOSE_SECONDS` after the server's close if the peer has not."""
    with trio.move_on_after(CLOSE_SECONDS):
        await _closed_event(self).wait()
    if self.closed:
        return
    LOGGER.info("closing a WebSocket whose peer did not answer the close in %.0fs", CLOSE_SECONDS)
    await self.send(StreamClosed(stream_id=self.stream_id))


async def _send_pings(self: WSStream) -> None:
    """Ping every interval; close a WebSocket whose peer has been silent for `SILENT_PINGS`.

    The first ping goes one interval after the handshake, not at once as hypercorn's did: a
    ping that crosses a client's own close crashes trio-websocket 0.12's reader (it answers
    with a pong wsproto refuses in LOCAL_CLOSING; python-trio/trio-websocket#184), and a
    short-lived client (a probe, a page reload) would meet one every time."""
    interval = self.config.websocket_ping_interval
    assert interval is not None
    if getattr(self, "_pats_heard", None) is None:
        self._pats_heard = self.context.time()  # type: ignore[attr-defined]
    # hypercorn slept the whole interval before looking at `closed` again, and the connection's
    # task group (the TCP server, this stream) waited on it that long after every close.
    closed = _closed_event(self)
    while True:
        with trio.move_on_after(interval):
            await closed.wait()
        if self.closed:
            return
        silent = self.context.time() - self._pats_heard  # type: ignore[attr-defined]
        if silent > SILENT_PINGS * interval:
            LOGGER.info("closing a WebSocket whose peer was silent for %.0fs", silent)
            await self.send(StreamClosed(stream_id=self.stream_id))
            return
        await self._send_wsproto_event(Ping())
