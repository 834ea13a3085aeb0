"""Prepared frames over real sockets: the app under hypercorn with `hypercorn_ws` installed (as
`create_app` does), and without it, as under any other ASGI server; viewers that offer
permessage-deflate (wsproto itself, since trio-websocket cannot offer it) and viewers that don't."""

from __future__ import annotations

import functools
import gc
import hashlib
import itertools
import os
import socket
import ssl
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest
import trio
from hypercorn.config import Config
from hypercorn.events import RawData
from hypercorn.protocol import ws_stream
from hypercorn.trio import serve
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.utils import LifespanFailureError
from trio_websocket import open_websocket_url
from wsproto import ConnectionType, WSConnection
from wsproto.connection import Connection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)
from wsproto.extensions import PerMessageDeflate

from pats_trio import hypercorn_ws
from pats_trio.app import LazyApp, PatsApp, create_app
from pats_trio.emulator import Emulator, serve_emulator
from pats_trio.frames import BINARY_SUBPROTOCOL
from pats_trio.hypercorn_ws import IncompatibleHypercornError, SharedDeflate
from pats_trio.prepared_frames import PreparedFrame, deflate
from tests.conftest import settings_for_tests
from tests.h2_websocket import H2WebSocketStream
from tests.support import Served, Viewer, free_port, status
from tests.tls import TestCertificate
from tests.trio_websocket_asgi import serve_asgi_websockets

TIMEOUT = 15
UNREACHABLE = "http://127.0.0.1:9/1.1"
"""An upstream for apps that must never connect (the discard port)."""
_ids = itertools.count(70_000)


@dataclass(eq=False)
class WsprotoViewer:
    """A viewer on wsproto directly, which can offer permessage-deflate; keeps the raw bytes."""

    stream: trio.abc.Stream
    connection: WSConnection | Connection
    extensions: list[Any]
    raw: bytearray = field(default_factory=bytearray)
    _parts: list[Any] = field(default_factory=list)
    _ready: list[str | bytes] = field(default_factory=list)

    @classmethod
    async def open(
        cls,
        ws_url: str,
        *,
        offer: PerMessageDeflate | None,
        binary: bool = False,
        ssl_context: ssl.SSLContext | None = None,
        receive_buffer: int | None = None,
    ) -> WsprotoViewer:
        """`ssl_context` for a `wss://` URL: HTTP/1.1 over TLS. `receive_buffer` sets the
        socket's SO_RCVBUF before it connects: a small window, for a viewer that stops reading."""
        url = urlsplit(ws_url)
        assert url.hostname is not None
        assert url.port is not None
        stream: trio.abc.Stream
        if receive_buffer is None:
            stream = await trio.open_tcp_stream(url.hostname, url.port)
        else:
            sock = trio.socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
            await sock.connect((url.hostname, url.port))
            stream = trio.SocketStream(sock)
        if url.scheme == "wss":
            assert ssl_context is not None, "a wss:// URL needs an ssl_context"
            stream = trio.SSLStream(stream, ssl_context, server_hostname=url.hostname)
        connection = WSConnection(ConnectionType.CLIENT)
        request = Request(
            host=f"{url.hostname}:{url.port}",
            target=url.path,
            extensions=[offer] if offer is not None else [],
            subprotocols=[BINARY_SUBPROTOCOL] if binary else [],
        )
        await stream.send_all(connection.send(request))
        while True:
            connection.receive_data(bytes(await stream.receive_some(65536)))
            for event in connection.events():
                if isinstance(event, AcceptConnection):
                    return cls(stream, connection, list(event.extensions))
                assert not isinstance(event, RejectConnection), event

    @classmethod
    async def open_h2(
        cls,
        ws_url: str,
        *,
        offer: PerMessageDeflate | None,
        binary: bool = False,
        ssl_context: ssl.SSLContext | None = None,
    ) -> WsprotoViewer:
        """The same viewer over HTTP/2 (RFC 8441): TLS with ALPN h2 for `wss://`, cleartext
        with prior knowledge (h2c) for `ws://`."""
        headers = [(b"sec-websocket-version", b"13")]
        if offer is not None:
            headers.append((b"sec-websocket-extensions", f"{offer.name}; {offer.offer()}".encode()))
        if binary:
            headers.append((b"sec-websocket-protocol", BINARY_SUBPROTOCOL.encode()))
        stream = await H2WebSocketStream.connect(ws_url, headers=headers, ssl_context=ssl_context)
        accepted = stream.response.get(b"sec-websocket-extensions")
        extensions: list[Any] = []
        if offer is not None and accepted is not None:
            offer.finalize(accepted.decode())
            extensions.append(offer)
        connection = Connection(ConnectionType.CLIENT, extensions=extensions)
        return cls(stream, connection, extensions)

    async def message(self) -> str | bytes:
        while not self._ready:
            data = bytes(await self.stream.receive_some(65536))
            assert data, "the server closed the connection"
            self.raw += data
            self.connection.receive_data(data)
            for event in self.connection.events():
                if isinstance(event, TextMessage | BytesMessage):
                    self._parts.append(event.data)
                    if event.message_finished:
                        first = self._parts[0]
                        joined = (
                            "".join(self._parts)
                            if isinstance(first, str)
                            else b"".join(part for part in self._parts if isinstance(part, bytes))
                        )
                        self._ready.append(joined)
                        self._parts.clear()
                elif isinstance(event, Ping):
                    await self.stream.send_all(self.connection.send(event.response()))
                elif isinstance(event, CloseConnection):
                    raise AssertionError(f"closed by the server: {event.code}")
        return self._ready.pop(0)

    async def frame(self) -> dict[str, Any]:
        frame: dict[str, Any] = orjson.loads(await self.message())
        return frame

    async def tweets(self, count: int) -> list[dict[str, Any]]:
        got: list[dict[str, Any]] = []
        while len(got) < count:
            frame = await self.frame()
            if frame["type"] == "tweet":
                got.append(frame["tweet"])
            elif frame["type"] == "tweets":
                got.extend(frame["tweets"])
        return got

    async def aclose(self) -> None:
        await self.stream.aclose()


@pytest.fixture
def compressions(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every zlib compressor made in this process from here on, by window bits: the server's,
    whoever makes it (the viewers here never send a message, so never compress)."""
    made: list[int] = []
    original = zlib.compressobj

    def counting(level: int = -1, method: int = zlib.DEFLATED, wbits: int = 15, *a: Any) -> Any:
        made.append(abs(wbits))
        return original(level, method, wbits, *a)

    monkeypatch.setattr(zlib, "compressobj", counting)
    return made


@pytest.fixture
def hypercorn_writes(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every write that goes through hypercorn's `TCPServer.protocol_send`, on connections
    opened from here on; prepared frames written straight to the socket are not among them."""
    writes: list[bytes] = []
    original = TCPServer.protocol_send

    async def counting(self: TCPServer, event: Any) -> None:
        if isinstance(event, RawData):
            writes.append(event.data)
        await original(self, event)

    monkeypatch.setattr(TCPServer, "protocol_send", counting)
    return writes


@pytest.fixture
def without_integration() -> Iterator[None]:
    """hypercorn as it ships, for connections opened in the test; the app's next build puts the
    integration back, and so does this fixture's end (so it comes before `monkeypatch`)."""
    yield
    hypercorn_ws.install()


def tweets_for_test(count: int) -> list[dict[str, Any]]:
    text = "prepared once, sent to every viewer; the same words compress well " * 3
    return [status(f"{n} {text}", next(_ids)) for n in range(count)]


async def inject_when_connected(served: Served, statuses: list[dict[str, Any]]) -> None:
    await inject_when_connected_to(served.emulator, statuses)


async def inject_when_connected_to(emulator: Emulator, statuses: list[dict[str, Any]]) -> None:
    await emulator.wait_until(lambda emu: bool(emu.open_connections("sample")))
    for one in statuses:
        emulator.inject(one)


async def test_viewers_with_and_without_compression_read_the_same_tweets_from_bytes_built_once(
    served: Served, compressions: list[int], hypercorn_writes: list[bytes]
) -> None:
    with trio.fail_after(TIMEOUT):
        assert hypercorn_ws.installed()
        a = await WsprotoViewer.open(served.ws_url, offer=PerMessageDeflate())
        b = await WsprotoViewer.open(served.ws_url, offer=PerMessageDeflate())
        small = await WsprotoViewer.open(
            served.ws_url, offer=PerMessageDeflate(server_max_window_bits=10), binary=True
        )
        binary = await WsprotoViewer.open(served.ws_url, offer=PerMessageDeflate(), binary=True)
        plain = await WsprotoViewer.open(served.ws_url, offer=None)
        deflated = (a, b, small, binary)
        for viewer in deflated:
            assert [type(e) for e in viewer.extensions] == [PerMessageDeflate]
            assert viewer.extensions[0].server_no_context_takeover
        for viewer in (*deflated, plain):
            assert (await viewer.frame())["type"] == "hello"
        async with open_websocket_url(served.ws_url) as ws:
            library = Viewer(ws)
            assert (await library.next_frame())["type"] == "hello"
            before, written = len(compressions), len(hypercorn_writes)
            sent = tweets_for_test(6)
            await inject_when_connected(served, sent)
            expected = [t["id_str"] for t in sent]
            got = {v: await v.tweets(len(sent)) for v in (*deflated, plain)}
            got_library = await library.tweets(len(sent))
            through_hypercorn = hypercorn_writes[written:]
        assert [t["id_str"] for t in got_library] == expected
        # Sockets that keep up are written directly; nothing of the tweets went through hypercorn.
        frames = [w for w in through_hypercorn if w[0] & 0x0F in (0x1, 0x2) and w[0] & 0x80]
        assert frames == [], "the emulator's writes (HTTP) are hypercorn's, the viewers' aren't"
        for tweets in got.values():
            assert tweets == got_library, "every viewer decodes the same JSON"
        # Once per tweet per negotiated window (15 for a, b and binary, 10 for small), never per
        # viewer, nor per opcode: text and binary frames carry the same compressed body.
        assert sorted(compressions[before:]) == [10] * len(sent) + [15] * len(sent)
        assert a.raw == b.raw, "the same wire bytes on both sockets"
        assert len(a.raw) < 0.7 * len(plain.raw)
        for viewer in (*deflated, plain):
            await viewer.aclose()


async def test_a_deflate_viewer_keeps_no_compression_state_on_the_server(served: Served) -> None:
    with trio.fail_after(TIMEOUT):
        viewers = [await WsprotoViewer.open(served.ws_url, offer=PerMessageDeflate())]
        viewers.append(await WsprotoViewer.open(served.ws_url, offer=PerMessageDeflate()))
        for viewer in viewers:
            assert (await viewer.frame())["type"] == "hello"
        await inject_when_connected(served, tweets_for_test(3))
        for viewer in viewers:
            assert len(await viewer.tweets(3)) == 3
        negotiated = [o for o in gc.get_objects() if isinstance(o, SharedDeflate)]
        assert len(negotiated) >= 2, "the server's extensions, one per deflate viewer"
        for extension in negotiated:
            assert extension._compressor is None
            assert extension._decompressor is None
            assert extension.client_max_window_bits == hypercorn_ws.INBOUND_WINDOW_BITS
        for viewer in viewers:
            await viewer.aclose()


async def test_the_plain_asgi_path_serves_viewers_on_a_server_without_the_integration(
    make_served: Callable[..., Any], without_integration: None
) -> None:
    with trio.fail_after(TIMEOUT):
        served: Served = await make_served()
        hypercorn_ws.uninstall()
        deflated = await WsprotoViewer.open(served.ws_url, offer=PerMessageDeflate())
        async with open_websocket_url(served.ws_url) as ws:
            viewer = Viewer(ws)
            assert (await viewer.next_frame())["type"] == "hello"
            assert (await deflated.frame())["type"] == "hello"
            sent = tweets_for_test(4)
            await inject_when_connected(served, sent)
            got = await viewer.tweets(len(sent))
            got_deflated = await deflated.tweets(len(sent))
        assert [t["id_str"] for t in got] == [t["id_str"] for t in sent]
        assert got_deflated == got
        # hypercorn's own negotiation, with context takeover, on this path.
        assert not deflated.extensions[0].server_no_context_takeover
        await deflated.aclose()


def test_an_untested_hypercorn_release_is_refused_loudly(
    without_integration: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    hypercorn_ws.uninstall()
    monkeypatch.setattr(hypercorn_ws, "hypercorn_version", lambda: "0.19.0")
    with pytest.raises(IncompatibleHypercornError, match=r"hypercorn 0\.19\.0"):
        hypercorn_ws.install()
    assert not hypercorn_ws.installed()
    assert hypercorn_ws.deflate_extension() is PerMessageDeflate


def test_a_hypercorn_whose_negotiation_ignores_the_integration_is_refused(
    without_integration: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    hypercorn_ws.uninstall()
    original = ws_stream.Handshake.accept

    def hard_wired(self: Any, *args: Any) -> Any:
        """A release that builds wsproto's extension itself, not through the module name."""
        ours = hypercorn_ws.deflate_extension()
        setattr(ws_stream, "PerMessageDeflate", PerMessageDeflate)  # noqa: B010
        try:
            return original(self, *args)
        finally:
            setattr(ws_stream, "PerMessageDeflate", ours)  # noqa: B010

    monkeypatch.setattr(ws_stream.Handshake, "accept", hard_wired)
    with pytest.raises(IncompatibleHypercornError, match="server_no_context_takeover"):
        hypercorn_ws.install()
    assert not hypercorn_ws.installed()
    assert hypercorn_ws.deflate_extension() is PerMessageDeflate


def test_installing_again_wraps_no_method_twice_even_under_another_wrapper(
    without_integration: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every app build installs; another module (a hypercorn repair) may wrap the same method."""
    hypercorn_ws.install()
    ours = ws_stream.WSStream.app_send

    @functools.wraps(ours)
    async def theirs(self: Any, message: Any) -> None:
        await ours(self, message)

    monkeypatch.setattr(ws_stream.WSStream, "app_send", theirs)
    for _ in range(3):
        hypercorn_ws.uninstall()
        hypercorn_ws.install()
    assert ws_stream.WSStream.app_send is theirs
    layers: list[Any] = []
    method: Any = ws_stream.WSStream.app_send
    while method is not None:
        layers.append(method)
        method = getattr(method, "__wrapped__", None)
    assert layers[:2] == [theirs, ours]
    assert len(layers) == 3, "theirs, ours, hypercorn's"


@pytest.mark.parametrize(
    ("offer", "answer", "window"),
    [
        (
            "permessage-deflate; client_max_window_bits",
            "server_no_context_takeover; client_no_context_takeover; client_max_window_bits=9",
            15,
        ),
        ("permessage-deflate", "server_no_context_takeover; client_no_context_takeover", 15),
        (
            "permessage-deflate; server_max_window_bits=10; client_max_window_bits=12",
            "server_no_context_takeover; client_no_context_takeover; client_max_window_bits=9; "
            "server_max_window_bits=10",
            10,
        ),
        ("permessage-deflate; server_max_window_bits=8", None, None),
    ],
)
def test_negotiation_rules_out_context_takeover(
    offer: str, answer: str | None, window: int | None
) -> None:
    hypercorn_ws.install()
    handshake = ws_stream.Handshake(
        [
            (b"connection", b"Upgrade"),
            (b"upgrade", b"websocket"),
            (b"sec-websocket-key", b"dGhlIHNhbXBsZSBub25jZQ=="),
            (b"sec-websocket-version", b"13"),
            (b"sec-websocket-extensions", offer.encode()),
        ],
        "1.1",
    )
    _, headers, _ = handshake.accept(None, [])
    accepted = dict(headers).get(b"sec-websocket-extensions")
    assert accepted == (None if answer is None else f"permessage-deflate; {answer}".encode())
    assert hypercorn_ws.negotiated_window_bits(headers) == window


def test_a_prepared_frame_is_a_whole_frame_that_inflates_to_its_payload() -> None:
    payload = orjson.dumps({"type": "tweet", "tweet": {"text": "ünïcode ✓ " * 40}})
    frame = PreparedFrame(payload)
    plain = frame.wire(binary=False, window_bits=None)
    assert plain[:4] == bytes((0x81, 126)) + len(payload).to_bytes(2, "big")
    assert plain[4:] == payload
    packed = frame.wire(binary=True, window_bits=15)
    assert packed[0] == 0x80 | 0x40 | 0x2, "FIN, RSV1 (compressed), binary"
    assert frame.wire(binary=True, window_bits=15) is packed, "built once"
    as_text = frame.wire(binary=False, window_bits=15)
    assert as_text[0] == 0x80 | 0x40 | 0x1
    assert as_text[1:] == packed[1:], "the same compressed body under another opcode"
    body = packed[2:] if packed[1] < 126 else packed[4:]
    assert zlib.decompressobj(-15).decompress(body + b"\x00\x00\xff\xff") == payload
    assert body == deflate(payload, 15)
    one_viewer = PreparedFrame.for_one_viewer('{"type":"skipped","count":3}')
    assert one_viewer.wire(binary=False, window_bits=15)[0] == 0x81, "never compressed"


# Prepared frames where the socket is not written directly: over TLS (HTTP/1.1, and HTTP/2 by
# ALPN) and over HTTP/2 in cleartext (h2c, prior knowledge). The bytes are the same; they go
# through hypercorn, which wraps them in TLS records or HTTP/2 DATA frames.


def server_frames(data: bytes) -> list[bytes]:
    """Whole server frames (unmasked, RFC 6455 5.2), each with its header, in order."""
    frames: list[bytes] = []
    at = 0
    while at < len(data):
        length, start = data[at + 1] & 0x7F, at + 2
        if length == 126:
            length, start = int.from_bytes(data[at + 2 : at + 4], "big"), at + 4
        elif length == 127:
            length, start = int.from_bytes(data[at + 2 : at + 10], "big"), at + 10
        assert start + length <= len(data), "a frame cut short"
        frames.append(data[at : start + length])
        at = start + length
    return frames


def is_compressed(frame: bytes) -> bool:
    return bool(frame[0] & 0x40)


def tweet_frames(data: bytes) -> list[bytes]:
    """The server frames in `data` that carry a tweet (a viewer's `status` frames do not)."""
    found = []
    for frame in server_frames(data):
        length = frame[1] & 0x7F
        body = frame[2 + {126: 2, 127: 8}.get(length, 0) :]
        if is_compressed(frame):
            body = zlib.decompressobj(-15).decompress(body + b"\x00\x00\xff\xff")
        if orjson.loads(body)["type"] == "tweet":
            found.append(frame)
    return found


async def test_over_tls_viewers_with_and_without_compression_read_intact_tweets_via_hypercorn(
    make_served: Callable[..., Any],
    tmp_path: Path,
    compressions: list[int],
    hypercorn_writes: list[bytes],
) -> None:
    certificate = TestCertificate.make(tmp_path)
    with trio.fail_after(TIMEOUT):
        served: Served = await make_served(hypercorn=certificate.hypercorn, history_size=4)
        assert served.ws_url.startswith("wss://")
        context = certificate.client_context("http/1.1")
        text = await WsprotoViewer.open(
            served.ws_url, offer=PerMessageDeflate(), ssl_context=context
        )
        binary = await WsprotoViewer.open(
            served.ws_url, offer=PerMessageDeflate(), binary=True, ssl_context=context
        )
        plain = await WsprotoViewer.open(served.ws_url, offer=None, ssl_context=context)
        deflated = (text, binary)
        for viewer in deflated:
            assert [type(e) for e in viewer.extensions] == [PerMessageDeflate]
            assert viewer.extensions[0].server_no_context_takeover
        async with open_websocket_url(served.ws_url, ssl_context=context) as ws:
            library = Viewer(ws)
            assert (await library.next_frame())["type"] == "hello"
            after_hello = {}
            for viewer in (*deflated, plain):
                assert (await viewer.frame())["type"] == "hello"
                after_hello[viewer] = len(viewer.raw)
            before, written = len(compressions), len(hypercorn_writes)
            sent = tweets_for_test(6)
            await inject_when_connected(served, sent)
            expected = [t["id_str"] for t in sent]
            got = {v: await v.tweets(len(sent)) for v in (*deflated, plain)}
            assert [t["id_str"] for t in await library.tweets(len(sent))] == expected
            # A newcomer gets the last four as a backlog, prepared frames in one write.
            late = await WsprotoViewer.open(
                served.ws_url, offer=PerMessageDeflate(), ssl_context=context
            )
            assert (await late.frame())["type"] == "hello"
            backlog = await late.tweets(4)
        for tweets in got.values():
            assert [t["id_str"] for t in tweets] == expected
            assert tweets == got[plain], "every viewer decodes the same JSON"
        assert backlog == got[plain][-4:]
        frames = {v: tweet_frames(bytes(v.raw[after_hello[v] :])) for v in got}
        for viewer in deflated:
            assert all(is_compressed(f) for f in frames[viewer]), "deflate, really"
        assert not any(is_compressed(f) for f in frames[plain])
        assert frames[text] == [bytes((f[0] & ~0x0F | 0x1,)) + f[1:] for f in frames[binary]]
        # Compressed once per tweet for the one window every deflate viewer negotiated.
        assert sorted(compressions[before:]) == [15] * len(sent)
        # All of it went through hypercorn (which encrypts), none straight to the socket.
        through = [
            f
            for w in hypercorn_writes[written:]
            if w[:1] in (b"\x81", b"\x82", b"\xc1", b"\xc2")
            for f in server_frames(w)
        ]
        for viewer in got:
            assert set(frames[viewer]) <= set(through)
        for viewer in (*deflated, plain, late):
            await viewer.aclose()


@pytest.mark.parametrize("scheme", ["wss", "ws"], ids=["h2 over TLS", "h2c"])
async def test_over_http2_viewers_read_intact_tweets_and_a_backlog_via_hypercorn(
    make_served: Callable[..., Any],
    tmp_path: Path,
    scheme: str,
    compressions: list[int],
    hypercorn_writes: list[bytes],
) -> None:
    certificate = TestCertificate.make(tmp_path)
    tls = scheme == "wss"
    with trio.fail_after(TIMEOUT):
        served: Served = await make_served(
            hypercorn=certificate.hypercorn if tls else {}, history_size=3
        )
        ws_url = urlsplit(served.ws_url)._replace(scheme=scheme).geturl()
        context = certificate.client_context() if tls else None
        deflated = await WsprotoViewer.open_h2(
            ws_url, offer=PerMessageDeflate(), ssl_context=context
        )
        binary = await WsprotoViewer.open_h2(
            ws_url, offer=PerMessageDeflate(), binary=True, ssl_context=context
        )
        plain = await WsprotoViewer.open_h2(ws_url, offer=None, ssl_context=context)
        assert isinstance(deflated.stream, H2WebSocketStream)
        assert isinstance(binary.stream, H2WebSocketStream)
        accepted = deflated.stream.response[b"sec-websocket-extensions"].decode()
        assert "server_no_context_takeover" in accepted
        assert binary.stream.response[b"sec-websocket-protocol"] == BINARY_SUBPROTOCOL.encode()
        viewers = (deflated, binary, plain)
        after_hello = {}
        for viewer in viewers:
            assert (await viewer.frame())["type"] == "hello"
            after_hello[viewer] = len(viewer.raw)
        before = len(compressions)
        sent = tweets_for_test(5)
        await inject_when_connected(served, sent)
        expected = [t["id_str"] for t in sent]
        got = {v: await v.tweets(len(sent)) for v in viewers}
        late = await WsprotoViewer.open_h2(ws_url, offer=PerMessageDeflate(), ssl_context=context)
        assert (await late.frame())["type"] == "hello"
        backlog = await late.tweets(3)
        for tweets in got.values():
            assert [t["id_str"] for t in tweets] == expected
            assert tweets == got[plain]
        assert backlog == got[plain][-3:]
        assert sorted(compressions[before:]) == [15] * len(sent)
        frames = {v: tweet_frames(bytes(v.raw[after_hello[v] :])) for v in viewers}
        assert all(is_compressed(f) for v in (deflated, binary) for f in frames[v])
        assert not any(is_compressed(f) for f in frames[plain])
        # Inside hypercorn's HTTP/2 DATA frames, not written to the socket as they are.
        through = b"".join(hypercorn_writes)
        for frame in (f for v in viewers for f in frames[v]):
            assert frame in through
        for viewer in (*viewers, late):
            await viewer.aclose()


# The plain ASGI path under another server: trio-websocket's server with the app's lifespan
# (tests/trio_websocket_asgi.py). The integration is installed in this process, as every app
# build does, yet nothing of hypercorn is on these connections: the scope alone decides.


@dataclass
class OtherServer:
    """An app served by the other server (WebSockets only), and the emulator it reads."""

    app: PatsApp
    emulator: Emulator
    ws_url: str


@pytest.fixture
async def other_server(nursery: trio.Nursery) -> OtherServer:
    emulator = Emulator(rate=0, filter_rate=0, seed=1)
    base_url = await nursery.start(serve_emulator, emulator)
    app = create_app(
        settings_for_tests(
            twitter_stream_url=base_url,
            history_size=3,
            client_queue_size=16,
            slow_client_seconds=3600,
        )
    )
    ws_base = await nursery.start(serve_asgi_websockets, app)
    return OtherServer(app, emulator, ws_base + "/ws")


async def test_under_another_asgi_server_viewers_get_plain_frames_and_a_tweets_backlog(
    other_server: OtherServer, compressions: list[int]
) -> None:
    emulator, ws_url = other_server.emulator, other_server.ws_url
    with trio.fail_after(TIMEOUT):
        assert hypercorn_ws.installed()
        offering = await WsprotoViewer.open(ws_url, offer=PerMessageDeflate())
        assert offering.extensions == [], "this server declines permessage-deflate"
        async with (
            open_websocket_url(ws_url) as text_ws,
            open_websocket_url(ws_url, subprotocols=[BINARY_SUBPROTOCOL]) as binary_ws,
        ):
            text, binary = Viewer(text_ws), Viewer(binary_ws)
            for viewer in (text, binary):
                assert (await viewer.next_frame())["type"] == "hello"
            assert (await offering.frame())["type"] == "hello"
            sent = tweets_for_test(4)
            await emulator.wait_until(lambda emu: bool(emu.open_connections("sample")))
            for one in sent:
                emulator.inject(one)
            expected = [t["id_str"] for t in sent]
            got = [await v.tweets(len(sent)) for v in (text, binary)]
            got.append(await offering.tweets(len(sent)))
            assert text.message_types == {str}
            assert binary.message_types == {bytes}
            # A newcomer's backlog: one `tweets` frame on this path, as the ASGI path batches.
            async with open_websocket_url(ws_url) as late_ws:
                late = Viewer(late_ws)
                assert (await late.next_frame())["type"] == "hello"
                backlog = await late.next_of("tweets")
        for tweets in got:
            assert [t["id_str"] for t in tweets] == expected
            assert tweets == got[0]
        assert [t["id_str"] for t in backlog["tweets"]] == expected[-3:]
        assert compressions == [], "nothing compressed, by anyone"
        await offering.aclose()


async def test_under_another_asgi_server_a_viewer_gone_during_a_send_ends_quietly(
    other_server: OtherServer,
) -> None:
    """The ASGI spec has a server raise an OSError from a `send` once the peer is gone, where
    hypercorn drops the message; a viewer that vanishes while its socket is full must end as
    one that closed, not as an error from the app (this server, like trio's own
    `serve_listeners`, lets a handler's error end the whole server)."""
    hub, emulator = other_server.app.worker.hub, other_server.emulator
    with trio.fail_after(TIMEOUT):
        stuck = await WsprotoViewer.open(other_server.ws_url, offer=None, receive_buffer=4096)
        assert (await stuck.frame())["type"] == "hello"
        await emulator.wait_until(lambda emu: bool(emu.open_connections("sample")))
        n = 0
        while hub.skipped["sample"] == 0:  # its queue is full: its send waits on its socket
            for _ in range(20):
                n += 1
                emulator.inject(status(hard_to_compress(n), next(_ids)))
            await trio.sleep(0.005)
        assert isinstance(stuck.stream, trio.SocketStream)
        stuck.stream.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await stuck.aclose()  # a reset: the pending send fails
        while hub.viewer_count() > 0:  # noqa: ASYNC110 (the hub has no event for this)
            await trio.sleep(0.01)
        async with open_websocket_url(other_server.ws_url) as ws:
            viewer = Viewer(ws)
            assert (await viewer.next_frame())["type"] == "hello"
            after = tweets_for_test(1)
            await inject_when_connected_to(emulator, after)
            got = await viewer.tweets(4)  # the history's three first
            assert got[-1]["id_str"] == after[0]["id_str"]


async def test_an_untested_hypercorn_release_stops_the_served_app_at_start_up(
    without_integration: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`hypercorn pats_trio.app:app` on another release: hypercorn never listens, and says why,
    rather than serve without the integration."""
    hypercorn_ws.uninstall()
    monkeypatch.setattr(hypercorn_ws, "hypercorn_version", lambda: "0.19.0")
    lazy = LazyApp(lambda: create_app(settings_for_tests(twitter_stream_url=UNREACHABLE)))
    port = free_port()
    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.accesslog = None
    with (
        trio.fail_after(TIMEOUT),
        pytest.RaisesGroup(LifespanFailureError, flatten_subgroups=True) as failed,
    ):
        await serve(lazy, config)
    assert "IncompatibleHypercornError: hypercorn 0.19.0" in str(failed.value.exceptions[0])
    assert not lazy.built
    with pytest.raises(OSError, match="all attempts to connect"):
        await trio.open_tcp_stream("127.0.0.1", port)
    assert not hypercorn_ws.installed()
    assert hypercorn_ws.deflate_extension() is PerMessageDeflate


@pytest.fixture
def direct_writes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """(bytes asked, bytes taken) of every `os.write` from here on: the direct path's writes to
    viewers' sockets (0 taken: the socket was full). Each still writes."""
    writes: list[tuple[int, int]] = []
    original = os.write

    def counting(fd: int, data: Any) -> int:
        try:
            written = original(fd, data)
        except BlockingIOError:
            writes.append((len(data), 0))
            raise
        writes.append((len(data), written))
        return written

    monkeypatch.setattr(os, "write", counting)
    return writes


def hard_to_compress(n: int) -> str:
    return " ".join(hashlib.sha256(f"{n}/{k}".encode()).hexdigest() for k in range(16))


@pytest.mark.parametrize("offer", [PerMessageDeflate(), None], ids=["deflate", "plain"])
async def test_a_viewer_whose_socket_fills_gets_whole_frames_in_order_after_partial_writes(
    make_served: Callable[..., Any],
    direct_writes: list[tuple[int, int]],
    offer: PerMessageDeflate | None,
) -> None:
    """The direct path writes what the socket takes and hands the rest of the frame to
    hypercorn; a frame cut there, sent twice or overtaken would garble everything after it."""
    served: Served = await make_served(client_queue_size=64, slow_client_seconds=3600)
    stuck = await WsprotoViewer.open(served.ws_url, offer=offer, receive_buffer=4096)
    try:
        with trio.fail_after(60):
            assert (await stuck.frame())["type"] == "hello"
            await served.emulator.wait_until(lambda emu: bool(emu.open_connections("sample")))
            sent: list[str] = []
            while not any(0 < taken < asked for asked, taken in direct_writes):
                assert len(sent) < 50_000, "no write was ever partial"
                for _ in range(20):
                    one = status(hard_to_compress(len(sent)), next(_ids))
                    served.emulator.inject(one)
                    sent.append(one["id_str"])
                await trio.sleep(0.005)
            # More, while the rest of that frame waits in hypercorn: they queue, or are skipped.
            for _ in range(200):
                one = status(hard_to_compress(len(sent)), next(_ids))
                served.emulator.inject(one)
                sent.append(one["id_str"])
            received, skipped, markers = await read_until_a_marker(served, stuck, _ids)
    finally:
        # A write to a full socket is shielded (hypercorn's, and the rest of a partial one),
        # so only the peer's close ends it.
        await stuck.aclose()
    order = {id_: n for n, id_ in enumerate(sent)}
    tweets = [id_ for id_ in received if id_ in order]
    positions = [order[id_] for id_ in tweets]
    assert positions == sorted(set(positions)), "in order, each once"
    assert skipped > 0
    # Every tweet arrived or was counted as skipped; so may markers before the last have been.
    assert len(sent) <= len(tweets) + skipped <= len(sent) + markers - 1


async def read_until_a_marker(
    served: Served, viewer: WsprotoViewer, ids: Iterator[int]
) -> tuple[list[str], int, int]:
    """Read a viewer that fell behind until a marker tweet, injected every 50 ms from now on,
    reaches it: the ids it read (markers included), how many tweets it was told it missed, and
    how many markers were injected."""
    received: list[str] = []
    skipped = 0
    markers: set[str] = set()
    async with trio.open_nursery() as nursery:

        async def send_markers() -> None:
            while True:
                marker = status("marker", next(ids))
                served.emulator.inject(marker)
                markers.add(marker["id_str"])
                await trio.sleep(0.05)

        nursery.start_soon(send_markers)
        while not markers & set(received[-1:]):
            frame = await viewer.frame()  # wsproto fails on a garbled frame or deflate block
            if frame["type"] == "skipped":
                skipped += frame["count"]
            elif frame["type"] == "tweet":
                received.append(frame["tweet"]["id_str"])
        nursery.cancel_scope.cancel()
    return received, skipped, len(markers)
