"""Prepared frames under hypercorn: its WebSocket stream negotiates compression without context
takeover and writes `prepared_frames` wire bytes as they are.

hypercorn (0.18) accepts permessage-deflate with context takeover from every browser and
compresses every message once per viewer in wsproto, keeping a compressor per viewer for the
connection's life (hypercorn issue #307): 4.3x the memory of an idle viewer, twice the CPU of a
delivery. Two small changes to `hypercorn.protocol.ws_stream`, made by `install()`:

* **Negotiation.** Every accepted offer gets `server_no_context_takeover` (so a message
  compressed once, on its own, is valid on every connection, and wsproto keeps no compressor
  between messages) and `client_no_context_takeover` (so it keeps no decompressor between a
  viewer's rare messages either), and a valueless `client_max_window_bits` offer, what browsers
  send, is answered with `INBOUND_WINDOW_BITS`. A `server_max_window_bits` offer is honoured.
* **Sending.** The stream announces the ASGI extension `prepared_frames.EXTENSION` in each
  WebSocket scope and takes `prepared_frames.SEND_PREPARED` messages: the frames' wire bytes for
  this connection's negotiated window, in one write, with no per-viewer encoding or compression.
  On plain HTTP/1.1 under the Trio worker, when no other write is under way, that write is one
  non-blocking `write` to the socket, as the benchmark's floor does (see `_send_prepared`).

Both are wrappers around hypercorn's own methods (`WSStream.handle` and `app_send`,
`Handshake.accept`) and the extension class its handshake names, so everything else (handshake
checks, pings, closes, the ordinary `websocket.send`) stays hypercorn's. Any other ASGI
server, or hypercorn without this, sends no such extension and the viewer uses plain
`websocket.send` (`viewer.py`).

Error handling: `install()` raises `IncompatibleHypercornError`, leaving hypercorn behaving as it
ships, for a hypercorn release outside `SUPPORTED_HYPERCORN` or one whose stream no longer has
the shape this relies on; it then negotiates a handshake to prove the change took. Nothing
falls back quietly: the tests run the same checks against the installed hypercorn.
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
from collections.abc import Awaitable, Callable
from typing import Any

import trio
from hypercorn.protocol import ws_stream
from hypercorn.protocol.events import Data, Request
from hypercorn.protocol.h11 import H11Protocol
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.utils import UnexpectedMessageError
from wsproto.connection import ConnectionState
from wsproto.extensions import PerMessageDeflate

from pats_trio.prepared_frames import (
    EXTENSION,
    MAX_WINDOW_BITS,
    MIN_WINDOW_BITS,
    SEND_PREPARED,
    PreparedFrame,
)

SUPPORTED_HYPERCORN = ("0.18.",)
"""The releases whose `WSStream` this was written against and tested with."""
INBOUND_WINDOW_BITS = 9
"""The LZ77 window a browser may compress its (few, small) messages with."""

_DEFLATE_NAME = "PerMessageDeflate"
"""The name `Handshake.accept` looks its extension class up by, in hypercorn's module."""
_WINDOW_ATTRIBUTE = "_pats_window_bits"
_DIRECT_ATTRIBUTE = "_pats_direct"
_MARK = "_pats_prepared_frames"
_active = [False]
"""Whether connections opened now get the negotiation and the announcement (see `install`)."""


class IncompatibleHypercornError(RuntimeError):
    """The installed hypercorn is not one this integration was tested with."""


class SharedDeflate(PerMessageDeflate):
    """permessage-deflate as every viewer gets it: no context kept on either side."""

    def __init__(self) -> None:
        super().__init__(client_no_context_takeover=True, server_no_context_takeover=True)

    def accept(self, offer: str) -> bool | str | None:
        """The answer to one offer; None declines it (a window outside 9-15, or a second offer
        in the same header after the first was accepted)."""
        if self.enabled():
            return None
        params: dict[str, str] = {}
        for part in offer.split(";")[1:]:
            name, _, value = part.partition("=")
            params[name.strip()] = value.strip().strip('"')
        answer = ["server_no_context_takeover", "client_no_context_takeover"]
        try:
            if "client_max_window_bits" in params:
                offered = params["client_max_window_bits"]
                bits = min(int(offered), INBOUND_WINDOW_BITS) if offered else INBOUND_WINDOW_BITS
                answer.append(f"client_max_window_bits={_window(bits)}")
            if "server_max_window_bits" in params:
                answer.append(
                    f"server_max_window_bits={_window(int(params['server_max_window_bits']))}"
                )
        except ValueError:
            return None
        accepted = "; ".join(answer)
        self.finalize(f"{self.name}; {accepted}")
        return accepted


def _window(bits: int) -> int:
    if not MIN_WINDOW_BITS <= bits <= MAX_WINDOW_BITS:
        raise ValueError(f"window bits {bits}")
    return bits


def negotiated_window_bits(response_headers: list[tuple[bytes, bytes]]) -> int | None:
    """The server's window for prepared compressed frames, from the handshake response: None
    where permessage-deflate was not accepted or context takeover was not ruled out."""
    for name, value in response_headers:
        if name.lower() != b"sec-websocket-extensions":
            continue
        for extension in value.decode("latin-1").split(","):
            parts = [part.strip() for part in extension.split(";")]
            if parts[0] != PerMessageDeflate.name or "server_no_context_takeover" not in parts:
                continue
            bits = MAX_WINDOW_BITS
            for part in parts[1:]:
                key, _, number = part.partition("=")
                if key.strip() == "server_max_window_bits":
                    bits = int(number.strip().strip('"'))
            return bits if MIN_WINDOW_BITS <= bits <= MAX_WINDOW_BITS else None
    return None


def installed() -> bool:
    return _active[0]


def install() -> None:
    """Idempotent: every app build calls it. Raises `IncompatibleHypercornError`; see the module.

    The wrappers stay once made and are made at most once per hypercorn method, even under
    another module's wrapper (found through `__wrapped__`); `uninstall` only turns them off, so
    it never takes away what was wrapped around or under them since."""
    if _active[0]:
        return
    _check_hypercorn()
    stream, handshake = ws_stream.WSStream, ws_stream.Handshake
    if not _ours_in(stream.handle):
        stream.handle = _wrap_handle(stream.handle)  # type: ignore[method-assign]
    if not _ours_in(stream.app_send):
        stream.app_send = _wrap_app_send(stream.app_send)  # type: ignore[method-assign]
    if not _ours_in(handshake.accept):
        handshake.accept = _wrap_accept(handshake.accept)  # type: ignore[method-assign]
    setattr(ws_stream, _DEFLATE_NAME, SharedDeflate)
    _active[0] = True
    try:
        _prove_negotiation()
    except IncompatibleHypercornError:
        uninstall()
        raise


def uninstall() -> None:
    """hypercorn's own negotiation and no prepared frames on connections opened from now on:
    for the tests of the plain ASGI path."""
    _active[0] = False
    setattr(ws_stream, _DEFLATE_NAME, PerMessageDeflate)


def _ours_in(method: Any) -> bool:
    while method is not None:
        if getattr(method, _MARK, False) is True:
            return True
        method = getattr(method, "__wrapped__", None)
    return False


def _wrap_handle(original: Callable[[Any, Any], Awaitable[None]]) -> Any:
    @functools.wraps(original)
    async def handle(self: Any, event: Any) -> None:
        if _active[0] and isinstance(event, Request) and not self.closed:
            self.app = _Announcing(self.app)
        await original(self, event)

    setattr(handle, _MARK, True)
    return handle


def _wrap_app_send(original: Callable[[Any, Any], Awaitable[None]]) -> Any:
    @functools.wraps(original)
    async def app_send(self: Any, message: Any) -> None:
        if message is not None and message["type"] == SEND_PREPARED:
            await _send_prepared(self, message)
        else:
            await original(self, message)

    setattr(app_send, _MARK, True)
    return app_send


def _wrap_accept(original: Callable[..., Any]) -> Any:
    @functools.wraps(original)
    def accept(self: Any, *args: Any, **kwargs: Any) -> Any:
        status_code, headers, connection = original(self, *args, **kwargs)
        setattr(self, _WINDOW_ATTRIBUTE, negotiated_window_bits(headers))
        return status_code, headers, connection

    setattr(accept, _MARK, True)
    return accept


def deflate_extension() -> Any:
    """The class hypercorn's handshake builds its permessage-deflate extension from."""
    return getattr(ws_stream, _DEFLATE_NAME, None)


def hypercorn_version() -> str:
    return importlib.metadata.version("hypercorn")


def _check_hypercorn() -> None:
    version = hypercorn_version()
    if not version.startswith(SUPPORTED_HYPERCORN):
        raise IncompatibleHypercornError(
            f"hypercorn {version} is not one pats-trio's WebSocket integration was tested with "
            f"({', '.join(v + 'x' for v in SUPPORTED_HYPERCORN)}): install a supported hypercorn"
        )
    missing = [
        name
        for owner, name in (
            (ws_stream, _DEFLATE_NAME),
            (ws_stream, "ASGIWebsocketState"),
            (ws_stream.WSStream, "handle"),
            (ws_stream.WSStream, "app_send"),
            (ws_stream.Handshake, "accept"),
        )
        if not hasattr(owner, name)
    ]
    if missing or deflate_extension() is not PerMessageDeflate:
        raise IncompatibleHypercornError(
            f"hypercorn {version}'s WebSocket stream changed shape "
            f"(missing: {', '.join(missing) or 'none'}; its deflate extension: "
            f"{deflate_extension()!r})"
        )


def _prove_negotiation() -> None:
    """A browser's offer, negotiated by the patched hypercorn, must come back without context
    takeover, else prepared compressed frames would corrupt wsproto's own."""
    offer = [
        (b"connection", b"Upgrade"),
        (b"upgrade", b"websocket"),
        (b"sec-websocket-key", b"dGhlIHNhbXBsZSBub25jZQ=="),
        (b"sec-websocket-version", b"13"),
        (b"sec-websocket-extensions", b"permessage-deflate; client_max_window_bits"),
    ]
    handshake = ws_stream.Handshake(offer, "1.1")
    _, headers, _ = handshake.accept(None, [])
    if getattr(handshake, _WINDOW_ATTRIBUTE, None) != MAX_WINDOW_BITS:
        raise IncompatibleHypercornError(
            f"hypercorn {hypercorn_version()} did not negotiate server_no_context_takeover "
            f"through pats-trio's extension: {dict(headers).get(b'sec-websocket-extensions')!r}"
        )


class _Announcing:
    """hypercorn's app wrapper, announcing `EXTENSION` in the scope it hands the app."""

    __slots__ = ("_app",)

    def __init__(self, app: Any) -> None:
        self._app = app

    async def __call__(self, scope: Any, *args: Any) -> None:
        scope["extensions"][EXTENSION] = {}
        await self._app(scope, *args)


async def _send_prepared(stream: Any, message: Any) -> None:
    """The frames' wire bytes for this connection, in one write: nothing once the stream or the
    WebSocket is closing.

    Where the connection is plain HTTP/1.1 under hypercorn's Trio worker and no other write is
    under way (its send lock is free), the bytes go straight to the socket with one
    non-blocking `write`, the floor's way, instead of through the protocol, the lock, a shielded
    scope and Trio's socket wrapper: that path cost about as much per delivery as everything
    else together. Whatever the socket does not take goes on through hypercorn, shielded, since
    part of a frame is already written."""
    if stream.closed:
        return
    if stream.state is not ws_stream.ASGIWebsocketState.CONNECTED:
        raise UnexpectedMessageError(stream.state, message["type"])
    if stream.connection.state is not ConnectionState.OPEN:
        return
    binary: bool = message["binary"]
    window_bits: int | None = getattr(stream.handshake, _WINDOW_ATTRIBUTE, None)
    frames: list[PreparedFrame] = message["frames"]
    if len(frames) == 1:
        data = frames[0].wire(binary=binary, window_bits=window_bits)
    else:
        data = b"".join(frame.wire(binary=binary, window_bits=window_bits) for frame in frames)
    server = _direct_server(stream)
    if server is None or server.send_lock.locked():
        await stream.send(Data(stream_id=stream.stream_id, data=data))
        return
    try:
        written = os.write(server.stream.socket.fileno(), data)
    except OSError:  # full (BlockingIOError), or closed: hypercorn's path finds out which
        written = 0
    if written == len(data):
        return
    if written == 0:
        await stream.send(Data(stream_id=stream.stream_id, data=data))
        return
    with trio.CancelScope(shield=True):
        await stream.send(Data(stream_id=stream.stream_id, data=data[written:]))


def _direct_server(stream: Any) -> Any:
    """The connection's `TCPServer`, where its socket may be written directly: HTTP/1.1
    without TLS under the Trio worker. None otherwise (HTTP/2 frames, TLS records, the asyncio
    worker): those writes go through hypercorn. Found once per stream."""
    found = stream.__dict__.get(_DIRECT_ATTRIBUTE, False)
    if found is False:
        protocol = getattr(stream.send, "__self__", None)
        server = getattr(getattr(protocol, "send", None), "__self__", None)
        direct = (
            isinstance(protocol, H11Protocol)
            and isinstance(server, TCPServer)
            and isinstance(getattr(server, "send_lock", None), trio.Lock)
            and isinstance(getattr(server, "stream", None), trio.SocketStream)
        )
        found = server if direct else None
        setattr(stream, _DIRECT_ATTRIBUTE, found)
    return found
