"""Frames prepared once: a message's WebSocket wire bytes, plain and compressed, for every viewer.

gorilla/websocket's `PreparedMessage` (what Centrifugo broadcasts with) in a few lines: a tweet
is encoded once (`events.TweetEvent`), and the first viewer that needs it in a given form builds
the whole frame, header included, once: text or binary, plain or compressed with
permessage-deflate (RFC 7692) for one negotiated window. Every later viewer with the same
parameters is handed the same `bytes`. That only works where the server never compresses with
a viewer's own history, so `hypercorn_ws.py` negotiates `server_no_context_takeover` with every
client; a message compressed on its own is then valid on every such connection.

Pure: values in, bytes out, no I/O. The ASGI extension that carries these frames to the server
is named here so that `viewer.py` needs no import of any server.
"""

from __future__ import annotations

import zlib

EXTENSION = "pats.prepared_frames"
"""Present in a WebSocket scope's `extensions` when the server takes `SEND_PREPARED` messages."""
SEND_PREPARED = "pats.websocket.send_prepared"
"""An ASGI message: `{"type": SEND_PREPARED, "frames": [PreparedFrame, ...], "binary": bool}`.
The server writes each frame's wire bytes for the connection's parameters, all in one write."""

COMPRESSION_LEVEL = 9
"""Compression runs once per message and window, not once per viewer, so the best ratio costs
nothing that grows with viewers."""
MIN_WINDOW_BITS = 9
MAX_WINDOW_BITS = 15

_OPCODE_TEXT = 0x1
_OPCODE_BINARY = 0x2
_FIN = 0x80
_RSV1 = 0x40
_SYNC_FLUSH_TAIL = b"\x00\x00\xff\xff"


class PreparedFrame:
    """One message's payload and the wire frames built from it so far, by form.

    `shared` frames (a tweet, which goes to many viewers) are compressed where the connection
    negotiated compression. A frame built for one viewer (its hello, an error, a `skipped`
    count) goes uncompressed: compressing it would cost one compressor per message per viewer,
    which is the cost this module removes, and RFC 7692 lets any message go uncompressed.
    """

    __slots__ = ("_bodies", "_wire", "payload", "shared")

    def __init__(self, payload: bytes, *, shared: bool = True) -> None:
        self.payload = payload
        self.shared = shared
        self._wire: dict[int, bytes] | None = None
        self._bodies: dict[int, tuple[bool, bytes]] | None = None

    @classmethod
    def for_one_viewer(cls, text: str) -> PreparedFrame:
        return cls(text.encode(), shared=False)

    def wire(self, *, binary: bool, window_bits: int | None) -> bytes:
        """The whole frame for a connection: `window_bits` is the server's negotiated LZ77
        window under `server_no_context_takeover`, or None where nothing was negotiated."""
        if not self.shared:
            window_bits = None
        key = (window_bits or 0) | (0x100 if binary else 0)
        wire = self._wire.get(key) if self._wire is not None else None
        if wire is None:
            compressed, body = self._body(window_bits)
            first = _FIN | (_OPCODE_BINARY if binary else _OPCODE_TEXT) | (_RSV1 * compressed)
            wire = _header(first, len(body)) + body
            if self._wire is None:
                self._wire = {}
            self._wire[key] = wire
        return wire

    def _body(self, window_bits: int | None) -> tuple[bool, bytes]:
        """The payload as it goes on the wire for a window, and whether it is compressed: once
        per window, whatever the opcode (text and binary frames carry the same body)."""
        if window_bits is None:
            return False, self.payload
        body = self._bodies.get(window_bits) if self._bodies is not None else None
        if body is None:
            compressed = deflate(self.payload, window_bits)
            smaller = len(compressed) < len(self.payload)
            body = (True, compressed) if smaller else (False, self.payload)
            if self._bodies is None:
                self._bodies = {}
            self._bodies[window_bits] = body
        return body


def deflate(payload: bytes, window_bits: int) -> bytes:
    """A message compressed on its own, as RFC 7692 frames it (the sync flush's tail taken off)."""
    if not MIN_WINDOW_BITS <= window_bits <= MAX_WINDOW_BITS:
        raise ValueError(f"window bits must be {MIN_WINDOW_BITS}-{MAX_WINDOW_BITS}")
    compressor = zlib.compressobj(COMPRESSION_LEVEL, zlib.DEFLATED, -window_bits)
    data = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
    return data[: -len(_SYNC_FLUSH_TAIL)] if data.endswith(_SYNC_FLUSH_TAIL) else data


def _header(first: int, length: int) -> bytes:
    """A server frame's header: servers never mask (RFC 6455 5.1)."""
    if length < 126:
        return bytes((first, length))
    if length < 1 << 16:
        return bytes((first, 126)) + length.to_bytes(2, "big")
    return bytes((first, 127)) + length.to_bytes(8, "big")
