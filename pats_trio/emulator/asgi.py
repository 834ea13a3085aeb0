"""The few ASGI pieces the emulators share: types, lifespan, bodies and plain responses."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

import trio
from hypercorn.config import Config

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

TEXT = b"text/plain; charset=utf-8"
JSON = b"application/json"


def hypercorn_config(host: str, port: int, errorlog: logging.Logger, grace: float) -> Config:
    """How both emulators are served: quiet (hypercorn's own lines at WARNING), no access log."""
    config = Config()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = errorlog
    if errorlog.level == logging.NOTSET:
        errorlog.setLevel(logging.WARNING)
    config.graceful_timeout = grace
    return config


class BodyTooLargeError(Exception):
    """The request body passed the caller's limit."""


async def lifespan(receive: Receive, send: Send) -> None:
    """Nothing to start or stop: the emulators' state lives in their objects."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def cancel_on_disconnect(receive: Receive, scope: trio.CancelScope) -> None:
    """A stream (HTTP body or WebSocket) stops as soon as its client goes away."""
    while (await receive())["type"] not in ("http.disconnect", "websocket.disconnect"):
        pass
    scope.cancel()


async def read_body(receive: Receive, limit: int) -> bytes:
    """The whole request body; raises BodyTooLargeError past `limit` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        if message["type"] != "http.request":
            continue
        chunk = bytes(message.get("body", b""))
        size += len(chunk)
        if size > limit:
            raise BodyTooLargeError(f"body over {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def respond(
    send: Send,
    status: int,
    body: bytes,
    *,
    content_type: bytes = TEXT,
    headers: Sequence[tuple[bytes, bytes]] = (),
) -> None:
    all_headers = [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode()),
        *headers,
    ]
    await send({"type": "http.response.start", "status": status, "headers": all_headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
