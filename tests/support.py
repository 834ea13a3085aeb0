"""What the tests share: a viewer that reads frames, a status builder, and the served app."""

from __future__ import annotations

import shutil
import socket
import sys
from dataclasses import dataclass, field
from typing import Any

import orjson
from trio_websocket import ConnectionClosed, WebSocketConnection

from pats_trio.app import PatsApp
from pats_trio.emulator import Emulator


def free_port() -> int:
    """A loopback port nobody listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def pats_trio_argv(*args: str) -> list[str]:
    """The `pats-trio` command, installed or run from the checkout."""
    exe = shutil.which("pats-trio")
    return [*([exe] if exe else [sys.executable, "-m", "pats_trio"]), *args]


def hypercorn_argv(port: int, *options: str) -> list[str]:
    """`hypercorn --worker-class trio ... pats_trio.app:app`, as the README runs it, on loopback."""
    return [
        sys.executable,
        "-m",
        "hypercorn",
        "--worker-class",
        "trio",
        "--bind",
        f"127.0.0.1:{port}",
        *options,
        "pats_trio.app:app",
    ]


@dataclass
class Served:
    """An app being served, and the emulator it reads from."""

    app: PatsApp
    emulator: Emulator
    http_url: str
    ws_url: str


@dataclass
class Viewer:
    """A WebSocket viewer that keeps every frame it has read, by type."""

    ws: WebSocketConnection
    frames: list[dict[str, Any]] = field(default_factory=list)
    surplus: list[dict[str, Any]] = field(default_factory=list)
    """Tweets read as part of a batch but not yet handed out."""
    message_types: set[type] = field(default_factory=set)
    """Text (str) or binary (bytes) messages, as they came."""

    async def next_frame(self) -> dict[str, Any]:
        message = await self.ws.get_message()
        self.message_types.add(type(message))
        frame: dict[str, Any] = orjson.loads(message)
        self.frames.append(frame)
        return frame

    async def next_of(self, kind: str) -> dict[str, Any]:
        while True:
            frame = await self.next_frame()
            if frame["type"] == kind:
                return frame

    async def read_until_closed(self) -> None:
        """Read on until the server closes; raises trio_websocket.ConnectionClosed."""
        while True:
            await self.next_frame()

    async def tweets(self, count: int) -> list[dict[str, Any]]:
        """Read until `count` tweets arrived, unpacking `tweets` batches."""
        got, self.surplus = self.surplus, []
        while len(got) < count:
            frame = await self.next_frame()
            if frame["type"] == "tweet":
                got.append(frame["tweet"])
            elif frame["type"] == "tweets":
                got.extend(frame["tweets"])
        got, self.surplus = got[:count], got[count:]
        return got


def close_code(closed: ConnectionClosed) -> int | None:
    return closed.reason.code if closed.reason is not None else None


def status(text: str, id_: int, *, screen_name: str = "someone", **extra: Any) -> dict[str, Any]:
    """A minimal but valid v1.1 status for injecting into the emulator."""
    return {
        "id": id_,
        "id_str": str(id_),
        "created_at": "Wed Oct 10 20:19:24 +0000 2018",
        "timestamp_ms": "1539202764000",
        "text": text,
        "lang": "en",
        "user": {
            "id": 7,
            "id_str": "7",
            "name": screen_name.title(),
            "screen_name": screen_name,
            "profile_image_url_https": "https://example.com/a.png",
        },
        "entities": {"hashtags": [], "user_mentions": [], "urls": []},
        **extra,
    }
