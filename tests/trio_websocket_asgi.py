"""A second ASGI server for the tests of the plain path: WebSocket scopes served by
trio-websocket's server, and the app's lifespan run as the ASGI spec says. No hypercorn code is
on this path, so nothing announces prepared frames, and nothing negotiates permessage-deflate
(trio-websocket's server declines every extension).

hypercorn's Trio worker is the only maintained Trio ASGI server, and the app, a Quart-Trio app,
needs Trio; this stands in for "any other server" with what the ASGI spec promises and no more:
no `extensions` in the scope, and a `send` on a closed WebSocket raises an `OSError`
(`ClientDisconnectedError`), as the spec asks. WebSockets only: an HTTP request is not served.

Resource handling: everything runs in the nursery of `serve_asgi_websockets`; cancelling it
runs the app's lifespan shut-down first.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import trio
from trio_websocket import (
    ConnectionClosed,
    Endpoint,
    WebSocketConnection,
    WebSocketRequest,
    serve_websocket,
)

ASGIApp = Callable[
    [
        MutableMapping[str, Any],
        Callable[[], Awaitable[MutableMapping[str, Any]]],
        Callable[[MutableMapping[str, Any]], Awaitable[None]],
    ],
    Awaitable[None],
]


SHUTDOWN_TIMEOUT = 5.0


class ClientDisconnectedError(OSError):
    """A `send` on a WebSocket the peer has closed (ASGI: "a server-specific subclass of
    OSError")."""


async def serve_asgi_websockets(
    app: ASGIApp, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED
) -> None:
    """Run the app's lifespan start-up, then serve its WebSockets on a loopback port; reports
    the `ws://` base URL. Runs until cancelled; then the app's lifespan shut-down runs (it
    gets up to `SHUTDOWN_TIMEOUT`, shielded), after the WebSockets were dropped."""
    async with trio.open_nursery() as lifespan_nursery:
        lifespan = _Lifespan(app)
        await lifespan_nursery.start(lifespan.run)
        try:
            async with trio.open_nursery() as nursery:
                server = await nursery.start(serve_websocket, _handler(app), "127.0.0.1", 0, None)
                task_status.started(f"ws://127.0.0.1:{server.port}")
                await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(SHUTDOWN_TIMEOUT):
                await lifespan.shutdown()
            lifespan.scope.cancel()


class _Lifespan:
    """The app's lifespan call, shielded from the server's cancellation: it ends with the
    shut-down exchange, so the app's own tasks stop the way they would under any server."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.scope = trio.CancelScope(shield=True)
        self._to_app, self._receive = trio.open_memory_channel[MutableMapping[str, Any]](1)
        self._send, self._from_app = trio.open_memory_channel[MutableMapping[str, Any]](1)

    async def run(self, *, task_status: trio.TaskStatus[None]) -> None:
        with self.scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._call_app)
                await self._to_app.send({"type": "lifespan.startup"})
                message = await self._from_app.receive()
                assert message["type"] == "lifespan.startup.complete", message
                task_status.started()

    async def shutdown(self) -> None:
        """Until the app says its shut-down is complete, or returns without a word: pats-trio's
        `after_serving` cancels quart-trio's nursery, its lifespan loop included, and hypercorn
        too takes the app's return for the end."""
        await self._to_app.send({"type": "lifespan.shutdown"})
        try:
            message = await self._from_app.receive()
        except trio.EndOfChannel:
            return
        assert message["type"] == "lifespan.shutdown.complete", message

    async def _call_app(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}}
        async with self._send:
            await self.app(scope, self._receive.receive, self._send.send)


def _handler(app: ASGIApp) -> Callable[[WebSocketRequest], Awaitable[None]]:
    async def handle(request: WebSocketRequest) -> None:
        path, _, query = request.path.partition("?")
        remote, local = request.remote, request.local
        assert isinstance(remote, Endpoint)
        assert isinstance(local, Endpoint)
        scope: MutableMapping[str, Any] = {
            "type": "websocket",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "scheme": "ws",
            "path": path,
            "raw_path": path.encode(),
            "query_string": query.encode(),
            "root_path": "",
            "headers": list(request.headers),
            "client": (str(remote.address), remote.port),
            "server": (str(local.address), local.port),
            "subprotocols": list(request.proposed_subprotocols),
        }
        await app(scope, *_channels(request))

    return handle


def _channels(
    request: WebSocketRequest,
) -> tuple[
    Callable[[], Awaitable[MutableMapping[str, Any]]],
    Callable[[MutableMapping[str, Any]], Awaitable[None]],
]:
    """The `receive` and `send` of one WebSocket scope."""
    opened: list[WebSocketConnection] = []
    connected = [False]

    async def receive() -> MutableMapping[str, Any]:
        if not connected[0]:
            connected[0] = True
            return {"type": "websocket.connect"}
        if not opened:
            await trio.sleep_forever()  # the app reads before it accepts: nothing to read yet
        try:
            message = await opened[0].get_message()
        except ConnectionClosed as closed:
            code = closed.reason.code if closed.reason is not None else 1005
            return {"type": "websocket.disconnect", "code": code}
        if isinstance(message, str):
            return {"type": "websocket.receive", "text": message}
        return {"type": "websocket.receive", "bytes": message}

    async def send(message: MutableMapping[str, Any]) -> None:
        kind = message["type"]
        try:
            if kind == "websocket.accept":
                opened.append(await request.accept(subprotocol=message.get("subprotocol")))
            elif kind == "websocket.send":
                text = message.get("text")
                await opened[0].send_message(text if text is not None else message["bytes"])
            elif kind == "websocket.close":
                if opened:
                    await opened[0].aclose(message.get("code", 1000), message.get("reason"))
                else:
                    await request.reject(403)
            else:
                raise ValueError(f"unexpected ASGI message {kind!r}")
        except ConnectionClosed as closed:
            raise ClientDisconnectedError(f"the WebSocket is closed: {closed.reason}") from closed

    return receive, send
