"""The repair to hypercorn's Trio worker, against hypercorn's own `TCPServer`."""

from __future__ import annotations

from typing import Any

import trio
from hypercorn.events import Closed, RawData
from hypercorn.trio.tcp_server import TCPServer

from pats_trio.hypercorn_patch import repair_hypercorn

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
