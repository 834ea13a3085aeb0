"""One repair to hypercorn's Trio worker (0.17 and 0.18), made when the app is built.

hypercorn closes a connection with `send_eof()` outside the lock its writers take, and `send_eof`
holds Trio's one-sender guard across a checkpoint. A write that starts in that window, such as
the answer to the close frame a refused viewer sends back as the server closes, raises
`trio.BusyResourceError`; nothing catches it, and it ended the whole server process with every
viewer on it (seen with a viewer that stopped reading and refused viewers from its address).
A write that finds the socket busy this way is treated like one that finds it closed: the
connection is over. The repair is checked against hypercorn's own class by the tests, so a
hypercorn that changes `TCPServer.protocol_send` fails them instead of running unrepaired.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import trio
from hypercorn.events import Closed
from hypercorn.trio.tcp_server import TCPServer

_REPAIRED = "_pats_busy_socket_is_closed"


def repair_hypercorn() -> None:
    """Idempotent: every app build calls it."""
    original: Callable[[TCPServer, Any], Awaitable[None]] = TCPServer.protocol_send
    if getattr(original, _REPAIRED, False):
        return

    async def protocol_send(self: TCPServer, event: Any) -> None:
        try:
            await original(self, event)
        except trio.BusyResourceError:
            await self.protocol.handle(Closed())

    setattr(protocol_send, _REPAIRED, True)
    TCPServer.protocol_send = protocol_send  # type: ignore[method-assign]
