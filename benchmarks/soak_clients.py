"""The soak benchmark's viewers: canaries that count numbered tweets, and the hostile clients.

A canary holds one viewer socket for the whole run, reconnecting whenever the server closes it,
and files every numbered tweet (its number in `id_str`, or on Bluesky in the post's record key)
by arrival time and by connection, every `status` frame and every close. Half of them speak through
trio-websocket; the other half offer permessage-deflate, as browsers do, through the raw
client of `fanout_clients.py` (trio-websocket cannot offer it). Every client binds its own
loopback source address, so the per-address limits the attackers meet never refuse a canary.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
import trio
import trio_websocket
from fanout_clients import (
    HandshakeError,
    Stats,
    client_frame,
    handshake_request,
    negotiated_inflater,
    read_raw,
    split_handshake,
)

from pats_trio.frames import BINARY_SUBPROTOCOL

CANARY_WORD = "soakcanary"
CANARY_BASE = 7_000_000_000_000_000_000
"""Canary tweets' ids are this plus their number: far from the emulator's own ids."""
NEWCOMER_BASE = 7_100_000_000_000_000_000
"""The newcomers' tweets, which match only the phrases newcomers bring."""
NUMBERS = 100_000_000_000_000_000
CANARY_ADDRESS = "127.0.0.2"
PLACEMENT_ATTEMPTS = 40
RECONNECT_DELAY = 0.5
CONNECT_TIMEOUT = 10.0
OP_BINARY = 0x2


def numbered_status(number: int, words: str, base: int = CANARY_BASE) -> dict[str, Any]:
    """A minimal valid v1.1 status carrying `number` (its id is `base` plus it); `words` are
    the phrases it matches."""
    return {
        "id": base + number,
        "id_str": str(base + number),
        "created_at": "Wed Oct 10 20:19:24 +0000 2018",
        "timestamp_ms": str(int(time.time() * 1000)),
        "text": f"{words} number {number}",
        "lang": "en",
        "user": {
            "id": 7,
            "id_str": "7",
            "name": "Soak",
            "screen_name": "soak",
            "profile_image_url_https": "https://example.com/a.png",
        },
        "entities": {"hashtags": [], "user_mentions": [], "urls": []},
    }


SOAK_DID = "did:plc:soakcanary"
"""The Bluesky author of every numbered post."""


def rkey_prefix(base: int) -> str:
    """On Bluesky the number is in the post's record key: `soak<base's first digits><n>`."""
    return f"soak{str(base)[:2]}n"


def numbered_post(number: int, words: str, base: int = CANARY_BASE) -> dict[str, Any]:
    """`numbered_status` for the Jetstream emulator's ``POST /_control/post``."""
    return {
        "did": SOAK_DID,
        "text": f"{words} number {number}",
        "rkey": f"{rkey_prefix(base)}{number}",
    }


def tweet_number(tweet: dict[str, Any], base: int) -> int | None:
    """The number of a numbered tweet of this `base` (a v1.1 id, or a Bluesky post's AT URI
    ending in its record key); None for any other."""
    id_str = tweet.get("id_str")
    if not isinstance(id_str, str):
        return None
    if id_str.startswith("at://"):
        rkey = id_str.rsplit("/", 1)[-1]
        prefix = rkey_prefix(base)
        digits = rkey.removeprefix(prefix)
        return int(digits) if rkey.startswith(prefix) and digits.isdigit() else None
    if not id_str.isdigit():
        return None
    number = int(id_str) - base
    return number if 0 < number < NUMBERS else None


@dataclass
class Received:
    """What one viewer socket (of any kind) saw, with `trio.current_time()` stamps."""

    base: int = CANARY_BASE
    """Which numbered tweets count (`numbered_status`)."""
    arrivals: list[tuple[float, int]] = field(default_factory=list)
    """(time, number) of every numbered tweet."""
    statuses: list[tuple[float, str, str]] = field(default_factory=list)
    """(time, stream, state) of every status frame."""
    errors: list[tuple[float, str]] = field(default_factory=list)
    workers: list[str] = field(default_factory=list)
    connection: int = 0
    hello_on: int = -1
    """The connection the last hello came on."""
    seen: set[int] = field(default_factory=set)
    duplicates: list[tuple[float, int]] = field(default_factory=list)
    """A number seen twice on the same connection (history after a reconnect is not counted)."""

    def frame(self, payload: bytes | str, now: float | None = None) -> None:
        """File one message received at `now` (default: trio's clock now)."""
        message = orjson.loads(payload)
        kind = message.get("type")
        now = trio.current_time() if now is None else now
        if kind == "tweet":
            self._tweet(now, message["tweet"])
        elif kind == "tweets":
            for tweet in message["tweets"]:
                self._tweet(now, tweet)
        elif kind == "status":
            self.statuses.append((now, str(message.get("stream")), str(message.get("state"))))
        elif kind == "hello":
            self.workers.append(str(message.get("worker")))
            self.hello_on = self.connection
        elif kind == "error":
            self.errors.append((now, str(message.get("code"))))

    def _tweet(self, now: float, tweet: dict[str, Any]) -> None:
        number = tweet_number(tweet, self.base)
        if number is None:
            return
        if number in self.seen:
            self.duplicates.append((now, number))
        self.seen.add(number)
        self.arrivals.append((now, number))

    def new_connection(self) -> None:
        self.connection += 1
        self.seen = set()


class _RawStats(Stats):
    """`fanout_clients.read_raw` hands every whole message here."""

    def __init__(self, received: Received) -> None:
        super().__init__()
        self.received = received

    def record_frame(self, payload: bytes, now_ms: int, wire: int | None = None) -> None:
        self.received.frame(payload)


def ws_path(track: str) -> str:
    return "/ws" + (f"?filter={quote(track)}" if track else "")


async def open_stream(host: str, port: int, source: str) -> trio.SocketStream:
    return await trio.open_tcp_stream(host, port, local_address=source)


@dataclass
class Canary:
    """One long-lived viewer: `track` empty for the sample stream, `deflate` for a raw client
    that offers permessage-deflate."""

    name: str
    track: str
    deflate: bool
    want_worker: str | None = None
    received: Received = field(default_factory=Received)
    closes: list[tuple[float, int | None]] = field(default_factory=list)
    """(time, close code or None when the socket just ended)."""
    connects: list[float] = field(default_factory=list)
    open: bool = False
    placed: trio.Event = field(default_factory=trio.Event)
    _attempts: int = 0
    _session_scope: trio.CancelScope = field(default_factory=trio.CancelScope)

    @property
    def stream(self) -> str:
        return "filter" if self.track else "sample"

    @property
    def worker(self) -> str | None:
        return self.received.workers[-1] if self.received.workers else None

    async def run(self, host: str, port: int) -> None:
        """Connect (placed on `want_worker` if it can be), read, reconnect; until cancelled."""
        while True:
            placing = not self.placed.is_set()
            self._session_scope = trio.CancelScope()
            try:
                with self._session_scope:
                    await self._session(host, port, placing)
            except (OSError, HandshakeError, trio.BrokenResourceError, trio.TooSlowError):
                self.closes.append((trio.current_time(), None))
            except trio_websocket.HandshakeError:
                self.closes.append((trio.current_time(), None))
            finally:
                self.open = False
            if placing:
                self._attempts += 1
                if self._attempts >= PLACEMENT_ATTEMPTS:
                    self.placed.set()
            await trio.sleep(0 if placing and not self.placed.is_set() else RECONNECT_DELAY)

    def move_to(self, worker: str) -> None:
        """Place this canary on `worker` again (its own died): reconnect until it lands there."""
        self.want_worker = worker
        self.placed = trio.Event()
        self._attempts = 0
        self._session_scope.cancel()

    def _landed(self, placing: bool) -> bool:
        """During placement, a socket on the wrong worker is closed at once."""
        if not placing:
            return True
        if self.want_worker is None or self.worker == self.want_worker:
            self.placed.set()
            return True
        return False

    async def _session(self, host: str, port: int, placing: bool) -> None:
        with trio.fail_after(CONNECT_TIMEOUT):
            stream = await open_stream(host, port, CANARY_ADDRESS)
        if self.deflate:
            await self._raw(stream, host, port, placing)
        else:
            await self._websocket(stream, host, port, placing)

    async def _websocket(
        self, stream: trio.SocketStream, host: str, port: int, placing: bool
    ) -> None:
        async with trio.open_nursery() as nursery:
            with trio.fail_after(CONNECT_TIMEOUT):
                ws = await trio_websocket.wrap_client_stream(
                    nursery, stream, host, ws_path(self.track), subprotocols=[BINARY_SUBPROTOCOL]
                )
            self.received.new_connection()
            self.open = True
            self.connects.append(trio.current_time())
            try:
                first = await ws.get_message()
                self.received.frame(first)
                if not self._landed(placing):
                    await ws.aclose()
                    return
                while True:
                    self.received.frame(await ws.get_message())
            except trio_websocket.ConnectionClosed as closed:
                code = closed.reason.code if closed.reason is not None else None
                self.closes.append((trio.current_time(), code))
            finally:
                nursery.cancel_scope.cancel()

    async def _raw(self, stream: trio.SocketStream, host: str, port: int, placing: bool) -> None:
        try:
            with trio.fail_after(CONNECT_TIMEOUT):
                await stream.send_all(
                    handshake_request(host, port, ws_path(self.track), deflate=True)
                )
                buffer = b""
                while (parts := split_handshake(buffer)) is None:
                    data = await stream.receive_some(4096)
                    if not data:
                        raise HandshakeError("closed during the handshake")
                    buffer += data
            head, leftover = parts
            self.received.new_connection()
            self.open = True
            self.connects.append(trio.current_time())
            stats = _RawStats(self.received)
            done = trio.Event()

            async def reading() -> None:
                try:
                    await read_raw(stream, leftover, stats, negotiated_inflater(head))
                finally:
                    done.set()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(reading)
                if placing:
                    with trio.move_on_after(CONNECT_TIMEOUT):
                        while self.received.hello_on != self.received.connection:
                            if done.is_set():
                                break
                            await trio.sleep(0.01)
                    if not self._landed(placing):
                        nursery.cancel_scope.cancel()
                        return
                await done.wait()
            self.closes.append((trio.current_time(), None))
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(1):
                await stream.aclose()


# --------------------------------------------------------------------------------------------
# Hostile clients


@dataclass
class Newcomer:
    """A viewer who arrives during a fault with a phrase nobody follows yet: how long until its
    first tweet, and what it was told meanwhile."""

    track: str
    source: str
    floor: int = 0
    """Tweets numbered up to this were injected before it came: history, not live."""
    received: Received = field(default_factory=lambda: Received(base=NEWCOMER_BASE))
    connected_at: float | None = None
    first_tweet_after: float | None = None
    closed: int | None = None

    def live(self) -> list[float]:
        return [t for t, n in self.received.arrivals if n > self.floor]

    async def run(self, host: str, port: int) -> None:
        with contextlib.suppress(OSError, trio_websocket.HandshakeError, trio.TooSlowError):
            stream = await open_stream(host, port, self.source)
            async with trio.open_nursery() as nursery:
                ws = await trio_websocket.wrap_client_stream(
                    nursery, stream, host, ws_path(self.track), subprotocols=[BINARY_SUBPROTOCOL]
                )
                self.connected_at = trio.current_time()
                try:
                    while True:
                        self.received.frame(await ws.get_message())
                        if self.first_tweet_after is None and self.live():
                            self.first_tweet_after = trio.current_time() - self.connected_at
                except trio_websocket.ConnectionClosed as closed:
                    self.closed = closed.reason.code if closed.reason is not None else None
                finally:
                    nursery.cancel_scope.cancel()


async def phrase_hog(host: str, port: int, source: str, phrases: list[str], out: Received) -> None:
    """One viewer asking for every phrase it can; holds its socket until cancelled."""
    with contextlib.suppress(OSError, trio_websocket.HandshakeError):
        stream = await open_stream(host, port, source)
        async with trio.open_nursery() as nursery:
            ws = await trio_websocket.wrap_client_stream(
                nursery, stream, host, ws_path(",".join(phrases)), subprotocols=[BINARY_SUBPROTOCOL]
            )
            try:
                while True:
                    out.frame(await ws.get_message())
            except trio_websocket.ConnectionClosed:
                return
            finally:
                nursery.cancel_scope.cancel()


async def filter_churner(
    host: str, port: int, source: str, every: float, out: Received, changes: list[float]
) -> None:
    """One viewer that changes its filter every `every` seconds to phrases nobody else wants."""
    with contextlib.suppress(OSError, trio_websocket.HandshakeError):
        stream = await open_stream(host, port, source)
        async with trio.open_nursery() as nursery:
            ws = await trio_websocket.wrap_client_stream(
                nursery, stream, host, ws_path("churn0"), subprotocols=[BINARY_SUBPROTOCOL]
            )

            async def change() -> None:
                n = 0
                while True:
                    await trio.sleep(every)
                    n += 1
                    await ws.send_message(
                        orjson.dumps({"type": "filter", "track": f"churn{n}, spin{n}"}).decode()
                    )
                    changes.append(trio.current_time())

            nursery.start_soon(change)
            try:
                while True:
                    out.frame(await ws.get_message())
            except trio_websocket.ConnectionClosed:
                return
            finally:
                nursery.cancel_scope.cancel()


def never_reading_socket(host: str, port: int, source: str) -> socket.socket:
    """A viewer that completes the handshake and then never reads, with a tiny receive buffer."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.bind((source, 0))
    sock.settimeout(CONNECT_TIMEOUT)
    sock.connect((host, port))
    sock.sendall(handshake_request(host, port, "/ws"))
    buffer = b""
    while split_handshake(buffer) is None:
        data = sock.recv(1)  # no further than the handshake: the rest stays unread
        if not data:
            raise HandshakeError("closed during the handshake")
        buffer += data
    return sock


TCP_ESTABLISHED = 1


def server_closed(sock: socket.socket) -> bool:
    """Whether the server has closed or reset this socket, without reading from it (Linux's
    TCP_INFO: anything but ESTABLISHED means a FIN or a reset came)."""
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)
    except OSError:
        return True
    return info[0] != TCP_ESTABLISHED


def send_queue_bytes(port: int, peers: set[str]) -> int:
    """Bytes the server's sockets on `port` hold unsent or unacknowledged toward `peers`
    (/proc/net/tcp's tx_queue): how full the never-reading viewers' sockets are."""
    total = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            fields = line.split()
            local, remote, queues = fields[1], fields[2], fields[4]
            if int(local.split(":")[1], 16) != port:
                continue
            peer = socket.inet_ntoa(bytes.fromhex(remote.split(":")[0])[::-1])
            if peer in peers:
                total += int(queues.split(":")[0], 16)
    return total


def idle_http_socket(host: str, port: int, source: str) -> socket.socket:
    """A keep-alive HTTP client that asked for /healthz once, read the answer, and went idle."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((source, 0))
    sock.settimeout(CONNECT_TIMEOUT)
    sock.connect((host, port))
    sock.sendall(f"GET /healthz HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        data = sock.recv(4096)
        if not data:
            break
        buffer += data
    return sock


async def huge_frame(
    host: str, port: int, source: str, size: int, fraction: float, hold: float
) -> str:
    """Send one binary frame announcing `size` bytes, `fraction` of it, then hold the socket.

    Masked with key zero, so the payload goes as it is. Answers how the server reacted."""
    try:
        stream = await open_stream(host, port, source)
    except OSError as error:
        return f"connect failed: {error.strerror}"
    try:
        await stream.send_all(handshake_request(host, port, "/ws"))
        buffer = b""
        with trio.fail_after(CONNECT_TIMEOUT):
            while split_handshake(buffer) is None:
                data = await stream.receive_some(4096)
                if not data:
                    return "closed during the handshake"
                buffer += data
        header = bytes([0x80 | OP_BINARY, 0x80 | 127]) + size.to_bytes(8, "big") + b"\0\0\0\0"
        await stream.send_all(header)
        chunk = bytes(1 << 20)
        remaining = int(size * fraction)
        while remaining > 0:
            await stream.send_all(chunk[: min(len(chunk), remaining)])
            remaining -= len(chunk)
        with trio.move_on_after(hold):
            while await stream.receive_some(65536):
                pass
            return "closed by the server"
        return "still open"
    except (trio.BrokenResourceError, OSError):
        return "reset by the server"
    except HandshakeError as error:
        return f"refused: {error}"
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(1):
            await trio.aclose_forcefully(stream)


@dataclass
class FloodTally:
    upgraded: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)


FOREIGN_ORIGIN = "http://attacker.example/" + "x" * 2000
"""A page elsewhere, with a long name: what the server logs of it is bounded or not."""


async def handshake_flood(
    host: str,
    port: int,
    sources: list[str],
    count: int,
    concurrency: int,
    tally: FloodTally,
    foreign_every: int = 4,
) -> None:
    """`count` handshakes, `concurrency` at a time, each closed as soon as it is answered;
    one in `foreign_every` comes from a foreign origin, which the server refuses (and logs)."""
    limiter = trio.CapacityLimiter(concurrency)

    def request(i: int) -> bytes:
        plain = handshake_request(host, port, "/ws")
        if i % foreign_every:
            return plain
        return plain[:-2] + f"Origin: {FOREIGN_ORIGIN}\r\n\r\n".encode()

    async def one(i: int) -> None:
        async with limiter:
            try:
                with trio.fail_after(CONNECT_TIMEOUT):
                    stream = await open_stream(host, port, sources[i % len(sources)])
                    try:
                        await stream.send_all(request(i))
                        buffer = b""
                        while split_handshake(buffer) is None:
                            data = await stream.receive_some(4096)
                            if not data:
                                raise HandshakeError("closed without an answer")
                            buffer += data
                        tally.upgraded += 1
                        with trio.move_on_after(0.5):
                            await stream.send_all(client_frame(0x8, (1000).to_bytes(2, "big")))
                    finally:
                        await trio.aclose_forcefully(stream)
            except HandshakeError as error:
                tally.refused[str(error)[:40]] += 1
            except (OSError, trio.BrokenResourceError, trio.TooSlowError) as error:
                tally.failed[type(error).__name__] += 1

    async with trio.open_nursery() as nursery:
        for i in range(count):
            nursery.start_soon(one, i)


def loopback_sources(block: int, count: int) -> list[str]:
    """`count` loopback addresses 127.0.<block>.1..: one per simulated attacker."""
    return [f"127.0.{block}.{i + 1}" for i in range(count)]


def open_file_count(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None
