"""Repairs to hypercorn, made when the app is built (2 and 3 pinned to 0.18.0).

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

Each repair is checked against hypercorn's own classes by the tests. Repairs 2 and 3 replace
private `WSStream` methods: a hypercorn of another version keeps its own, with a warning, rather
than being patched blind.
"""

from __future__ import annotations

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

LOGGER = logging.getLogger(__name__)

PINNED_VERSION = "0.18.0"
"""The hypercorn these repairs were written against (they replace private methods)."""
SILENT_PINGS = 2
"""A peer that has sent nothing for this many ping intervals is taken for gone."""
CLOSE_REASON_CHARS = 100
"""A close frame's reason must fit in 123 bytes; wsproto's own sentences are ASCII."""

_REPAIRED = "_pats_repaired"


def repair_hypercorn() -> None:
    """Idempotent: every app build calls it."""
    if getattr(TCPServer.protocol_send, _REPAIRED, False):
        return
    _repair_busy_socket()  # wraps a public method, as it was in 0.17 and is in 0.18
    version = importlib.metadata.version("hypercorn")
    if version != PINNED_VERSION:
        LOGGER.warning(
            "hypercorn %s is not %s: protocol errors get no close frame and silent WebSocket "
            "peers are not dropped (those repairs replace private methods of that version)",
            version,
            PINNED_VERSION,
        )
        return
    WSStream.handle = _handle_stamped(WSStream.handle)  # type: ignore[method-assign,assignment]
    WSStream._handle_events = _handle_events  # type: ignore[method-assign]
    WSStream._send_pings = _send_pings  # type: ignore[method-assign]


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
    """`WSStream.handle`, noting when the peer last sent anything (a pong included)."""

    async def handle(self: WSStream, event: Any) -> None:
        if isinstance(event, (Body, Data)):
            self._pats_heard = self.context.time()  # type: ignore[attr-defined]
        await original(self, event)
        closed: trio.Event | None = getattr(self, "_pats_closed", None)
        if self.closed and closed is not None:
            closed.set()

    return handle


async def _handle_events(self: WSStream) -> None:
    """hypercorn 0.18.0's `WSStream._handle_events`, with the close a protocol error owes."""
    for event in self.connection.events():
        if isinstance(event, Message):
            try:
                self.buffer.extend(event)
            except FrameTooLargeError:
                await self._send_wsproto_event(CloseConnection(code=CloseReason.MESSAGE_TOO_BIG))
                break

            if event.message_finished:
                assert self.app_put is not None
                await self.app_put(self.buffer.to_message())
                self.buffer.clear()
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
    closed = self._pats_closed = trio.Event()  # type: ignore[attr-defined]
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
