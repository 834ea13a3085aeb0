"""The repairs to hypercorn, against hypercorn's own `TCPServer` and `WSStream`."""

from __future__ import annotations

import importlib.metadata
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any

import pytest
import trio
from hypercorn.config import Config
from hypercorn.events import Closed, RawData
from hypercorn.protocol.events import Data, StreamClosed
from hypercorn.protocol.ws_stream import ASGIWebsocketState, WSStream
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from wsproto.connection import Connection, ConnectionType
from wsproto.events import CloseConnection, Ping

from pats_trio.hypercorn_patch import (
    CLOSE_SECONDS,
    MESSAGE_SECONDS_SETTING,
    PINNED_VERSION,
    SILENT_PINGS,
    repair_hypercorn,
)

TIMEOUT = 5


class ClosingStream:
    """A socket stream that another task is shutting down, as hypercorn's `_close` does."""

    async def send_all(self, data: bytes) -> None:
        raise trio.BusyResourceError("another task is currently sending data on this SocketStream")


class Protocol:
    def __init__(self) -> None:
        self.handled: list[Any] = []

    async def handle(self, event: Any) -> None:
        self.handled.append(event)


async def test_a_write_that_finds_the_socket_closing_ends_the_connection_not_the_server() -> None:
    with trio.fail_after(TIMEOUT):
        repair_hypercorn()
        repair_hypercorn()  # idempotent: every app build calls it
        server = TCPServer.__new__(TCPServer)
        server.send_lock = trio.Lock()
        server.stream = ClosingStream()  # type: ignore[assignment]
        protocol = Protocol()
        server.protocol = protocol  # type: ignore[assignment]
        await server.protocol_send(RawData(data=b"close frame"))
        assert protocol.handled == [Closed()]


class Sent:
    """What a `WSStream` hands its protocol, in order."""

    def __init__(self) -> None:
        self.events: list[Any] = []

    async def __call__(self, event: Any) -> None:
        self.events.append(event)

    def close_frames(self) -> list[CloseConnection]:
        """The close frames among the bytes sent, as a client reads them."""
        client = Connection(ConnectionType.CLIENT)
        for event in self.events:
            if isinstance(event, Data):
                client.receive_data(event.data)
        return [event for event in client.events() if isinstance(event, CloseConnection)]


class Spawned:
    """The connection's task group, as far as a `WSStream` uses it: the tasks it asks for are
    kept, for the test to run (or not)."""

    def __init__(self) -> None:
        self.calls: list[tuple[Callable[..., Awaitable[None]], tuple[Any, ...]]] = []

    def spawn(self, func: Callable[..., Awaitable[None]], *args: Any) -> None:
        self.calls.append((func, args))

    async def run_all(self) -> None:
        async with trio.open_nursery() as nursery:
            for func, args in self.calls:
                nursery.start_soon(func, *args)


def accepted_stream(config: Config | None = None) -> tuple[WSStream, Sent, list[Any]]:
    """hypercorn's own `WSStream`, past an accepted handshake, without a socket."""
    repair_hypercorn()
    sent, delivered = Sent(), []

    async def app_put(message: Any) -> None:
        delivered.append(message)

    stream = WSStream(
        None,  # type: ignore[arg-type]
        config or Config(),
        WorkerContext(None),
        Spawned(),  # type: ignore[arg-type]
        False,
        ("127.0.0.1", 1),
        ("127.0.0.1", 2),
        sent,
        1,
    )
    stream.handshake = SimpleNamespace(accepted=True)  # type: ignore[assignment]
    stream.connection = Connection(ConnectionType.SERVER)
    stream.app_put = app_put
    stream.state = ASGIWebsocketState.CONNECTED
    return stream, sent, delivered


def client_frame(opcode: int, payload: bytes, *, masked: bool = True) -> bytes:
    """One final frame, as a client would send it (or, unmasked, as no client may)."""
    assert len(payload) < 126
    if not masked:
        return bytes((0x80 | opcode, len(payload))) + payload
    mask = b"\x01\x02\x03\x04"
    body = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
    return bytes((0x80 | opcode, 0x80 | len(payload))) + mask + body


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (client_frame(0x1, b"hello", masked=False), 1002),
        (client_frame(0x1, b"\xff\xfe invalid"), 1007),
        (client_frame(0x3, b"reserved opcode"), 1002),
    ],
    ids=["unmasked", "invalid-utf8", "bad-opcode"],
)
async def test_a_protocol_error_gets_a_close_frame_with_its_code_before_the_stream_ends(
    frame: bytes, code: int
) -> None:
    """hypercorn 0.18 dropped the TCP connection without the close frame RFC 6455 asks for."""
    with trio.fail_after(TIMEOUT):
        stream, sent, delivered = accepted_stream()
        await stream.handle(Data(stream_id=1, data=frame))
        assert [close.code for close in sent.close_frames()] == [code]
        assert isinstance(sent.events[-1], StreamClosed)
        assert delivered == []


async def test_a_peers_own_close_is_still_answered_once() -> None:
    with trio.fail_after(TIMEOUT):
        stream, sent, _ = accepted_stream()
        await stream.handle(Data(stream_id=1, data=client_frame(0x8, b"\x03\xe8bye")))
        assert [close.code for close in sent.close_frames()] == [1000]
        assert isinstance(sent.events[-1], StreamClosed)


def pings_every(seconds: float) -> Config:
    config = Config()
    config.websocket_ping_interval = seconds
    return config


async def test_a_peer_that_never_answers_a_ping_is_dropped(autojump_clock: Any) -> None:
    """hypercorn pinged, but never looked for an answer: a silent peer stayed counted."""
    with trio.fail_after(TIMEOUT * 10):
        stream, sent, _ = accepted_stream(pings_every(5))
        started = trio.current_time()
        await stream._send_pings()
        assert isinstance(sent.events[-1], StreamClosed)
        silent = trio.current_time() - started
        assert SILENT_PINGS * 5 < silent <= (SILENT_PINGS + 1) * 5


async def test_a_peer_that_answers_pings_stays(autojump_clock: Any) -> None:
    with trio.fail_after(TIMEOUT * 100):
        stream, sent, _ = accepted_stream(pings_every(5))
        client = Connection(ConnectionType.CLIENT)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stream._send_pings)
            for _ in range(60):
                await trio.sleep(5)
                for event in sent.events:
                    if isinstance(event, Data):
                        client.receive_data(event.data)
                sent.events.clear()
                for event in client.events():
                    if isinstance(event, Ping):
                        pong = client.send(event.response())
                        await stream.handle(Data(stream_id=1, data=pong))
            assert not any(isinstance(event, StreamClosed) for event in sent.events)
            stream.closed = True
            nursery.cancel_scope.cancel()


def test_the_repairs_are_for_the_installed_hypercorn() -> None:
    """They replace private methods: another hypercorn must be read again, not patched blind."""
    repair_hypercorn()
    assert importlib.metadata.version("hypercorn") == PINNED_VERSION
    assert getattr(TCPServer.protocol_send, "_pats_repaired", False)


async def test_the_ping_task_ends_with_its_stream_not_an_interval_later(
    autojump_clock: Any,
) -> None:
    """hypercorn's slept on after a close, holding the connection's task group for up to the
    whole interval: every closed viewer's objects outlived it by 20 s."""
    with trio.fail_after(TIMEOUT):
        stream, _, _ = accepted_stream(pings_every(20))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stream._send_pings)
            await trio.sleep(1)
            closed_at = trio.current_time()
            await stream.handle(StreamClosed(stream_id=1))
        assert trio.current_time() - closed_at < 1


async def test_the_first_ping_waits_one_interval(autojump_clock: Any) -> None:
    """A ping crossing a client's close crashes trio-websocket 0.12's reader
    (python-trio/trio-websocket#184); hypercorn pinged every new socket at once."""
    with trio.fail_after(TIMEOUT * 10):
        stream, sent, _ = accepted_stream(pings_every(20))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stream._send_pings)
            await trio.sleep(19)
            assert sent.events == []
            await trio.sleep(2)
            assert len(sent.events) == 1
            await stream.handle(StreamClosed(stream_id=1))


def spawned(stream: WSStream) -> Spawned:
    return stream.task_group  # type: ignore[return-value]


def frame_start(opcode: int, length: int, *, fin: bool = True) -> bytes:
    """A client frame's header announcing `length` bytes (up to 64 KiB), masked with key zero
    so that its payload goes as it is."""
    first = (0x80 if fin else 0) | opcode
    if length < 126:
        return bytes((first, 0x80 | length)) + bytes(4)
    return bytes((first, 0x80 | 126)) + length.to_bytes(2, "big") + bytes(4)


def limited(max_bytes: int, message_seconds: float = 10) -> Config:
    config = Config()
    config.websocket_max_message_size = max_bytes
    setattr(config, MESSAGE_SECONDS_SETTING, message_seconds)
    return config


async def test_a_refused_message_is_dropped_and_what_follows_it_is_not_kept() -> None:
    """hypercorn kept the refused message's buffer and went on filling it with the rest of the
    message until the peer answered its 1009: four 15.9 MB frames held 46 MiB in the soak."""
    with trio.fail_after(TIMEOUT):
        stream, sent, delivered = accepted_stream(limited(1000))
        await stream.handle(Data(stream_id=1, data=frame_start(0x2, 60_000) + bytes(2000)))
        assert [close.code for close in sent.close_frames()] == [1009]
        for _ in range(20):
            await stream.handle(Data(stream_id=1, data=bytes(2000)))
        assert stream.buffer.length == 0
        assert stream.buffer.value is None
        assert [close.code for close in sent.close_frames()] == [1009]
        assert delivered == []


async def test_a_message_unfinished_in_time_is_closed_with_1008_and_dropped(
    autojump_clock: Any,
) -> None:
    with trio.fail_after(TIMEOUT * 10):
        stream, sent, delivered = accepted_stream(limited(10_000, message_seconds=3))
        began = trio.current_time()
        await stream.handle(Data(stream_id=1, data=frame_start(0x2, 5000) + bytes(100)))
        assert stream.buffer.length == 100
        await spawned(stream).run_all()
        assert 3 <= trio.current_time() - began < 4
        assert [close.code for close in sent.close_frames()] == [1008]
        assert stream.buffer.value is None
        assert delivered == []


async def test_a_message_finished_in_time_is_delivered_and_its_timer_ends(
    autojump_clock: Any,
) -> None:
    with trio.fail_after(TIMEOUT * 10):
        stream, sent, delivered = accepted_stream(limited(10_000, message_seconds=3))
        await stream.handle(Data(stream_id=1, data=frame_start(0x1, 5, fin=False) + b"hello"))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(spawned(stream).run_all)
            await trio.sleep(2)
            await stream.handle(Data(stream_id=1, data=frame_start(0x0, 6) + b" world"))
            began = trio.current_time()
        assert trio.current_time() - began < 1
        assert [message["text"] for message in delivered] == ["hello world"]
        assert sent.close_frames() == []


async def test_the_servers_own_close_lets_go_of_a_peer_that_never_answers(
    autojump_clock: Any,
) -> None:
    """hypercorn waited for the answer to its close for as long as the socket lived."""
    with trio.fail_after(TIMEOUT * 10):
        stream, sent, _ = accepted_stream(limited(1000))
        await stream.handle(Data(stream_id=1, data=frame_start(0x2, 60_000) + bytes(2000)))
        began = trio.current_time()
        await spawned(stream).run_all()
        assert trio.current_time() - began == pytest.approx(CLOSE_SECONDS)
        assert isinstance(sent.events[-1], StreamClosed)


async def test_a_peer_that_answers_the_close_ends_the_wait_at_once(autojump_clock: Any) -> None:
    with trio.fail_after(TIMEOUT * 10):
        stream, sent, _ = accepted_stream(limited(1000))
        # All of a message too long, so that the peer's answer is next.
        await stream.handle(Data(stream_id=1, data=frame_start(0x2, 3000) + bytes(3000)))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(spawned(stream).run_all)
            await trio.sleep(1)
            await stream.handle(Data(stream_id=1, data=client_frame(0x8, b"\x03\xf1")))
            assert stream.closed is False  # hypercorn's protocol would send StreamClosed back
            await stream.handle(StreamClosed(stream_id=1))
            answered = trio.current_time()
        assert trio.current_time() - answered < 1
        assert [event for event in sent.events if isinstance(event, StreamClosed)] == [
            StreamClosed(stream_id=1)
        ]
