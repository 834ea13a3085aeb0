"""The floor: the same prepared frame bytes written to the same sockets with plain `send`.

What no WebSocket server can undercut: each tweet is read from the same emulator, trimmed and
encoded once (`pats_trio.events.tweet_event`), and its prepared wire bytes
(`pats_trio.prepared_frames`, compressed once where the viewer offered permessage-deflate,
which this server accepts without context takeover) are written to every viewer's socket with
one non-blocking `socket.send` each, in a plain loop. No tasks per viewer, no channels, no ASGI,
no frame parsing: a viewer's socket is never read after the handshake. A socket that cannot take
all of a frame keeps the rest (up to `PENDING_LIMIT`) and gets it before the next frame.

    python benchmarks/floor_server.py --port P --upstream http://127.0.0.1:E/1.1
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import logging
import signal
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field

import httpx
import orjson
import trio

from pats_trio.events import tweet_event
from pats_trio.frames import BINARY_SUBPROTOCOL
from pats_trio.prepared_frames import MAX_WINDOW_BITS

LOGGER = logging.getLogger("floor")
RECONNECT_SECONDS = 0.5
PENDING_LIMIT = 4 * 1024 * 1024
HANDSHAKE_LIMIT = 16 * 1024
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


@dataclass(eq=False)
class Viewer:
    sock: socket.socket
    binary: bool
    window_bits: int | None
    pending: bytes = b""


@dataclass
class Floor:
    viewers: set[Viewer] = field(default_factory=set)

    def publish(self, wire: dict[tuple[bool, int | None], bytes], viewers: set[Viewer]) -> None:
        dead = []
        for viewer in viewers:
            data = wire[viewer.binary, viewer.window_bits]
            if viewer.pending:
                data = viewer.pending + data
            try:
                sent = viewer.sock.send(data)
            except BlockingIOError:
                sent = 0
            except OSError:
                dead.append(viewer)
                continue
            viewer.pending = data[sent:]
            if len(viewer.pending) > PENDING_LIMIT:
                dead.append(viewer)
        for viewer in dead:
            self.viewers.discard(viewer)
            viewer.sock.close()

    async def follow(self, upstream: str) -> None:
        async with httpx.AsyncClient(timeout=httpx.Timeout(10.0, read=None)) as http:
            while True:
                try:
                    url = upstream.rstrip("/") + "/statuses/sample.json"
                    async with http.stream("GET", url) as response:
                        response.raise_for_status()
                        async for line in response.aiter_lines():
                            self._line(line)
                except (httpx.HTTPError, orjson.JSONDecodeError) as error:
                    LOGGER.warning("upstream: %s; reconnecting", error)
                await trio.sleep(RECONNECT_SECONDS)

    def _line(self, line: str) -> None:
        if not line.strip():
            return
        status = orjson.loads(line)
        if not isinstance(status, dict) or "id_str" not in status:
            return
        event = tweet_event(status, source="emulator")
        if event is None or not self.viewers:
            return
        forms = {(v.binary, v.window_bits) for v in self.viewers}
        wire = {form: event.prepared.wire(binary=form[0], window_bits=form[1]) for form in forms}
        self.publish(wire, set(self.viewers))

    async def handshake(self, stream: trio.SocketStream) -> None:
        """Answer the upgrade, then hand the bare socket to the fan-out loop."""
        head = b""
        with trio.move_on_after(10):
            while b"\r\n\r\n" not in head and len(head) < HANDSHAKE_LIMIT:
                chunk = await stream.receive_some(4096)
                if not chunk:
                    break
                head += chunk
        headers = {}
        for line in head.split(b"\r\n\r\n")[0].split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        key = headers.get(b"sec-websocket-key")
        if key is None:
            await stream.aclose()
            return
        accept = base64.b64encode(hashlib.sha1(key + WS_GUID).digest())
        binary = BINARY_SUBPROTOCOL.encode() in headers.get(b"sec-websocket-protocol", b"")
        deflate = b"permessage-deflate" in headers.get(b"sec-websocket-extensions", b"")
        response = [
            b"HTTP/1.1 101 Switching Protocols",
            b"Upgrade: websocket",
            b"Connection: Upgrade",
            b"Sec-WebSocket-Accept: " + accept,
        ]
        if binary:
            response.append(b"Sec-WebSocket-Protocol: " + BINARY_SUBPROTOCOL.encode())
        if deflate:
            response.append(
                b"Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; "
                b"client_no_context_takeover"
            )
        await stream.send_all(b"\r\n".join(response) + b"\r\n\r\n")
        sock = socket.socket(fileno=stream.socket.detach())
        sock.setblocking(False)
        self.viewers.add(Viewer(sock, binary, MAX_WINDOW_BITS if deflate else None))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="the emulator's base URL, …/1.1")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    floor = Floor()

    async def run() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(floor.follow, args.upstream)
            listeners = await trio.open_tcp_listeners(args.port, host=args.host, backlog=4096)
            nursery.start_soon(trio.serve_listeners, floor.handshake, listeners)
            print(f"floor serving on ws://{args.host}:{args.port}/", flush=True)
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for _ in signals:
                    break
            nursery.cancel_scope.cancel()

    trio.run(run)


if __name__ == "__main__":
    main()
