"""Benchmark viewers: many WebSocket connections per process, driven over a pipe.

Each client process runs one trio loop holding hundreds or thousands of connections. The
connections speak just enough RFC 6455 to read a server's frames (no extensions, unfragmented
text frames, masked close and pong replies), because a full client library costs more CPU per
frame than the servers under test and the clients share the machine's cores with them.
`--client-impl trio-websocket` swaps in trio-websocket for comparison.

What a client records, per process, keyed by the second the tweet was created upstream
(``timestamp_ms``) so a window can be asked for later: tweets received, a latency histogram
(receipt wall time minus ``timestamp_ms``), frames and ``skipped`` counts by receipt second.
"""

from __future__ import annotations

import base64
import contextlib
import os
import random
import re
import resource
import socket
import time
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import orjson
import trio

from pats_trio.frames import BINARY_SUBPROTOCOL

HANDSHAKE_LIMIT = 16 * 1024
CONNECT_CONCURRENCY = 24
CONNECT_ATTEMPTS = 5
DEFLATE_OFFER = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits"
TWEET_PREFIX = b'{"type":"tweet",'
TWEETS_PREFIX = b'{"type":"tweets",'
SKIPPED_PREFIX = b'{"type":"skipped",'
TIMESTAMP = re.compile(rb'"timestamp_ms":(\d+)')
"""The outer status's `timestamp_ms` comes before any nested retweet's or quote's."""
READ_SIZE = 65536
_CHUNK = bytearray(READ_SIZE)
"""Where every connection of a process reads into, then copies what came to its own buffer:
nothing awaits in between, and one 64 KiB block per idle connection would add up."""
_CHUNK_VIEW = memoryview(_CHUNK)
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING = 0x0, 0x1, 0x2, 0x8, 0x9
TEXT_OR_BINARY = (OP_TEXT, OP_BINARY)


def latency_bucket(ms: int) -> int:
    """1 ms buckets to 1 s, 10 ms to 10 s, 100 ms to 60 s; everything later in the last one."""
    if ms < 1_000:
        return max(ms, 0)
    if ms < 10_000:
        return 1_000 + (ms - 1_000) // 10
    return 1_900 + min((ms - 10_000) // 100, 500)


def bucket_ms(bucket: int) -> float:
    """The upper edge of a latency bucket, in milliseconds."""
    if bucket < 1_000:
        return float(bucket + 1)
    if bucket < 1_900:
        return 1_000.0 + (bucket - 1_000 + 1) * 10
    return 10_000.0 + (bucket - 1_900 + 1) * 100


def percentile(histogram: Counter[int], fraction: float) -> float | None:
    total = sum(histogram.values())
    if not total:
        return None
    rank = fraction * total
    seen = 0
    for bucket in sorted(histogram):
        seen += histogram[bucket]
        if seen >= rank:
            return bucket_ms(bucket)
    return bucket_ms(max(histogram))


@dataclass
class Stats:
    """Everything one process's connections received, by second."""

    tweets: Counter[int] = field(default_factory=Counter)
    by_receipt: Counter[int] = field(default_factory=Counter)
    """Tweets by the second they were received, however old: the throughput of a server
    that fell behind, whose tweets come too late to count for their own second."""
    latency: dict[int, Counter[int]] = field(default_factory=dict)
    frames: Counter[int] = field(default_factory=Counter)
    skipped: Counter[int] = field(default_factory=Counter)
    wire_bytes: Counter[int] = field(default_factory=Counter)
    """Bytes of data frames as they came on the wire (header included, compressed or not)."""
    payload_bytes: Counter[int] = field(default_factory=Counter)
    """The same frames' payloads as read, inflated where they came compressed."""
    closed_by_server: int = 0
    errors: int = 0

    def record_frame(self, payload: bytes, now_ms: int, wire: int | None = None) -> None:
        """One message as read (inflated where it came compressed)."""
        second = now_ms // 1000
        self.frames[second] += 1
        self.wire_bytes[second] += len(payload) if wire is None else wire
        self.payload_bytes[second] += len(payload)
        stamps: list[int] = []
        self.record_contents(payload, stamps, second)
        self.by_receipt[second] += len(stamps)
        self.record_tweets(stamps, now_ms)

    def record_contents(self, payload: bytes, stamps: list[int], second: int) -> None:
        """One message's tweets (their creation times onto `stamps`) and skipped count."""
        if payload.startswith(TWEET_PREFIX):
            match = TIMESTAMP.search(payload)
            if match is not None:
                stamps.append(int(match[1]))
        elif payload.startswith(TWEETS_PREFIX):
            stamps.extend(int(tweet["timestamp_ms"]) for tweet in orjson.loads(payload)["tweets"])
        elif payload.startswith(SKIPPED_PREFIX):
            self.skipped[second] += int(orjson.loads(payload)["count"])

    def record_read(
        self, now_ms: int, frames: int, wire: int, payload: int, stamps: list[int]
    ) -> None:
        """What one read off a socket held: counted once per read, not once per frame."""
        second = now_ms // 1000
        self.frames[second] += frames
        self.wire_bytes[second] += wire
        self.payload_bytes[second] += payload
        self.by_receipt[second] += len(stamps)
        self.record_tweets(stamps, now_ms)

    def record_tweets(self, stamps: list[int], now_ms: int) -> None:
        """One tweet per entry (duplicates too), by the second it was created upstream."""
        latency, tweets = self.latency, self.tweets
        current, count = -1, 0
        histogram: Counter[int] = Counter()
        for stamp in stamps:
            second = stamp // 1000
            if second != current:
                if count:
                    tweets[current] += count
                current, count = second, 0
                found = latency.get(second)
                if found is None:
                    found = latency[second] = Counter()
                histogram = found
            count += 1
            ms = now_ms - stamp
            histogram[ms if 0 <= ms < 1000 else latency_bucket(ms)] += 1
        if count:
            tweets[current] += count

    def window(self, first: int, end: int) -> dict[str, Any]:
        """Tweets created in seconds [first, end), frames and skips received in them."""
        latency: Counter[int] = Counter()
        for second in range(first, end):
            latency.update(self.latency.get(second, Counter()))
        return {
            "tweets": sum(self.tweets[s] for s in range(first, end)),
            "received": sum(self.by_receipt[s] for s in range(first, end)),
            "frames": sum(self.frames[s] for s in range(first, end)),
            "skipped": sum(self.skipped[s] for s in range(first, end)),
            "wire_bytes": sum(self.wire_bytes[s] for s in range(first, end)),
            "payload_bytes": sum(self.payload_bytes[s] for s in range(first, end)),
            "latency": dict(latency),
        }


def raise_fd_limit() -> int:
    """Raise this process's open-file soft limit to its hard limit; returns the new limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


# --------------------------------------------------------------------------------------------
# A minimal RFC 6455 client


def handshake_request(host: str, port: int, path: str, deflate: bool = False) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    offer = f"{DEFLATE_OFFER}\r\n" if deflate else ""
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"Sec-WebSocket-Protocol: {BINARY_SUBPROTOCOL}\r\n{offer}\r\n"
    ).encode()


class Inflater:
    """permessage-deflate (RFC 7692), receiving side, as a browser that offered it needs."""

    def __init__(self, context_takeover: bool) -> None:
        self._takeover = context_takeover
        self._zlib = zlib.decompressobj(wbits=-zlib.MAX_WBITS)

    def inflate(self, payload: bytes) -> bytes:
        if not self._takeover:
            self._zlib = zlib.decompressobj(wbits=-zlib.MAX_WBITS)
        return self._zlib.decompress(payload + b"\x00\x00\xff\xff")


def negotiated_inflater(head: bytes) -> Inflater | None:
    """An Inflater if the handshake response accepted permessage-deflate, else None."""
    for line in head.lower().split(b"\r\n"):
        if line.startswith(b"sec-websocket-extensions:") and b"permessage-deflate" in line:
            return Inflater(context_takeover=b"server_no_context_takeover" not in line)
    return None


def client_frame(opcode: int, payload: bytes = b"") -> bytes:
    """A masked client frame (mask key zero, so the payload goes as it is), payload < 126."""
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + b"\0\0\0\0" + payload


class HandshakeError(Exception):
    pass


def split_handshake(buffer: bytes) -> tuple[bytes, bytes] | None:
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        if len(buffer) > HANDSHAKE_LIMIT:
            raise HandshakeError("no end of the handshake response")
        return None
    head, rest = buffer[:end], buffer[end + 4 :]
    if not head.startswith((b"HTTP/1.1 101", b"HTTP/1.0 101")):
        raise HandshakeError(head.split(b"\r\n", 1)[0].decode("latin-1"))
    return head, rest


async def open_raw(
    host: str, port: int, path: str, deflate: bool = False
) -> tuple[trio.SocketStream, bytes, Inflater | None]:
    stream = await trio.open_tcp_stream(host, port)
    try:
        await stream.send_all(handshake_request(host, port, path, deflate))
        buffer = b""
        while True:
            data = await stream.receive_some(4096)
            if not data:
                raise HandshakeError("closed during the handshake")
            buffer += data
            parts = split_handshake(buffer)
            if parts is not None:
                return stream, parts[1], negotiated_inflater(parts[0])
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise


class FrameReader:
    """The server's frames out of a connection's bytes, counted into `Stats`.

    A whole, unmasked, uncompressed data frame (nearly every frame) is read where it lies in
    the buffer: no copy, one regular-expression search for a tweet's `timestamp_ms`, and the
    counts kept for the whole read. Fragments, compressed messages and control frames take the
    general path, and so does every message when `stats` is a subclass that wants each one
    handed to its `record_frame` (the soak's viewers)."""

    __slots__ = ("compressed", "fast", "inflater", "partial", "stats", "wire")

    def __init__(self, stats: Stats, inflater: Inflater | None = None) -> None:
        self.stats = stats
        self.fast = type(stats).record_frame is Stats.record_frame
        self.inflater = inflater
        self.partial = bytearray()
        self.compressed = False  # RSV1 on a message's first frame
        self.wire = 0  # the message's bytes on the wire, over all its frames

    def feed(self, buffer: bytearray, now_ms: int) -> tuple[int, list[tuple[int, bytes]]]:
        """Count every whole frame in `buffer`; returns how many bytes were read and the control
        frames (opcode, payload) to answer, in order. A close ends the reading."""
        stats = self.stats
        controls: list[tuple[int, bytes]] = []
        stamps: list[int] = []
        frames = wire_total = payload_total = 0
        second_now = now_ms // 1000
        search, starts, fast = TIMESTAMP.search, buffer.startswith, self.fast
        pos, size = 0, len(buffer)
        while size - pos >= 2:
            first, second = buffer[pos], buffer[pos + 1]
            length = second & 0x7F
            header = 2
            if length == 126:
                if size - pos < 4:
                    break
                length = int.from_bytes(buffer[pos + 2 : pos + 4], "big")
                header = 4
            elif length == 127:
                if size - pos < 10:
                    break
                length = int.from_bytes(buffer[pos + 2 : pos + 10], "big")
                header = 10
            if second & 0x80:  # a server never masks, but read it right anyway
                header += 4
            start = pos + header
            end = start + length
            if end > size:
                break
            opcode = first & 0x0F
            if fast and (first & 0xC0) == 0x80 and opcode in TEXT_OR_BINARY and not second & 0x80:
                # FIN, no RSV1, unmasked: the common case, read where it lies.
                frames += 1
                wire_total += end - pos
                payload_total += length
                if starts(TWEET_PREFIX, start):
                    match = search(buffer, start, end)
                    if match is not None:
                        stamps.append(int(match[1]))
                elif starts(TWEETS_PREFIX, start) or starts(SKIPPED_PREFIX, start):
                    stats.record_contents(bytes(buffer[start:end]), stamps, second_now)
                pos = end
                continue
            frame_wire, pos = end - pos, end
            payload = bytes(buffer[start:end])
            if second & 0x80:
                mask = buffer[start - 4 : start]
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            if opcode in (OP_TEXT, OP_BINARY, OP_CONT):
                if opcode != OP_CONT:
                    self.compressed = bool(first & 0x40)
                    self.wire = 0
                self.wire += frame_wire
                if not first & 0x80:
                    self.partial += payload
                    continue
                if self.partial:
                    payload = bytes(self.partial + payload)
                    self.partial.clear()
                if self.compressed and self.inflater is not None:
                    payload = self.inflater.inflate(payload)
                if not fast:
                    stats.record_frame(payload, now_ms, self.wire)
                    continue
                frames += 1
                wire_total += self.wire
                payload_total += len(payload)
                stats.record_contents(payload, stamps, second_now)
            elif opcode in (OP_PING, OP_CLOSE):
                controls.append((opcode, payload))
                if opcode == OP_CLOSE:
                    break
        if frames:
            stats.record_read(now_ms, frames, wire_total, payload_total, stamps)
        return pos, controls


async def read_raw(
    stream: trio.SocketStream, leftover: bytes, stats: Stats, inflater: Inflater | None = None
) -> None:
    """Read frames until the server closes; answer pings and the close.

    The socket (non-blocking, as Trio keeps it) is read with one `readv` per wake-up,
    after waiting for it to be readable: what Trio's stream adds to each receive (a checkpoint
    after every successful read, a failed read first when nothing is waiting) cost as much as
    counting the frames, and these processes must stay cheaper than the servers they measure."""
    reader = FrameReader(stats, inflater)
    sock = stream.socket
    fd = sock.fileno()
    buffer = bytearray(leftover)
    while True:
        consumed, controls = reader.feed(buffer, int(time.time() * 1000))
        del buffer[:consumed]
        for opcode, payload in controls:
            if opcode == OP_PING:
                await stream.send_all(client_frame(0xA, payload[:125]))
            else:
                stats.closed_by_server += 1
                with trio.move_on_after(1):
                    await stream.send_all(client_frame(OP_CLOSE, payload[:2]))
                return
        await trio.lowlevel.wait_readable(sock)
        try:
            received = os.readv(fd, (_CHUNK,))
        except BlockingIOError:
            continue
        if not received:
            stats.closed_by_server += 1
            return
        buffer += _CHUNK_VIEW[:received]


async def run_raw(
    host: str,
    port: int,
    path: str,
    stats: Stats,
    ready: trio.Semaphore,
    tally: Tally,
    deflate: bool = False,
) -> None:
    for attempt in range(CONNECT_ATTEMPTS):
        try:
            async with ready:
                stream, leftover, inflater = await open_raw(host, port, path, deflate)
        except (OSError, HandshakeError, trio.BrokenResourceError):
            await trio.sleep(0.2 * (attempt + 1) + random.random() * 0.2)
            continue
        break
    else:
        stats.errors += 1
        return
    tally.open()
    try:
        await read_raw(stream, leftover, stats, inflater)
    except (trio.BrokenResourceError, OSError):
        stats.closed_by_server += 1
    finally:
        tally.live[0] -= 1
        with trio.CancelScope(shield=True), trio.move_on_after(1):
            await stream.aclose()


async def run_trio_websocket(
    host: str,
    port: int,
    path: str,
    stats: Stats,
    ready: trio.Semaphore,
    tally: Tally,
    deflate: bool = False,
) -> None:
    import trio_websocket

    if deflate:
        raise ValueError("trio-websocket cannot offer permessage-deflate: use the raw client")

    await ready.acquire()
    handshaking = True
    try:
        async with trio_websocket.open_websocket(
            host, port, path, use_ssl=False, subprotocols=[BINARY_SUBPROTOCOL]
        ) as ws:
            ready.release()
            handshaking = False
            tally.open()
            try:
                while True:
                    message = await ws.get_message()
                    data = message.encode() if isinstance(message, str) else message
                    stats.record_frame(data, int(time.time() * 1000))
            finally:
                tally.live[0] -= 1
    except (OSError, trio_websocket.HandshakeError):
        if handshaking:
            stats.errors += 1
    except trio_websocket.ConnectionClosed:
        stats.closed_by_server += 1
    finally:
        if handshaking:
            ready.release()


# --------------------------------------------------------------------------------------------
# The client process


@dataclass
class Tally:
    """Connections opened by one `connect` command, and those open now in the whole process."""

    live: list[int]
    opened: int = 0

    def open(self) -> None:
        self.opened += 1
        self.live[0] += 1


@dataclass
class Group:
    """Connections opened by one `connect` command; closed together."""

    tally: Tally
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    done: trio.Event = field(default_factory=trio.Event)


async def _open_group(
    impl: str,
    host: str,
    port: int,
    paths: Sequence[str],
    stats: Stats,
    group: Group,
    deflate: bool,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    run = run_raw if impl == "raw" else run_trio_websocket
    ready = trio.Semaphore(CONNECT_CONCURRENCY)
    with group.scope:
        async with trio.open_nursery() as nursery:
            for path in paths:
                nursery.start_soon(run, host, port, path, stats, ready, group.tally, deflate)
            task_status.started()
    group.done.set()


async def client_main_async(pipe: Connection, impl: str) -> None:
    """Serve commands from the pipe; every group of connections keeps its own `Stats`."""
    groups: dict[str, tuple[Group, Stats]] = {}
    async with trio.open_nursery() as nursery:
        while True:
            command: tuple[Any, ...] = await trio.to_thread.run_sync(pipe.recv)
            verb = command[0]
            if verb == "connect":
                _, name, host, port, paths, timeout, deflate = command
                group, stats = Group(Tally([0])), Stats()
                groups[name] = (group, stats)
                await nursery.start(_open_group, impl, host, port, paths, stats, group, deflate)
                with trio.move_on_after(timeout):
                    for _ in iter(int, 1):  # poll: handshakes report no event
                        if group.tally.opened + stats.errors >= len(paths):
                            break
                        await trio.sleep(0.05)
                pipe.send({"opened": group.tally.opened, "errors": stats.errors})
            elif verb == "stats":
                _, name, first, end = command
                if name in groups:
                    group, stats = groups[name]
                    window = stats.window(first, end)
                    window.update(
                        connected=group.tally.live[0],
                        closed_by_server=stats.closed_by_server,
                        errors=stats.errors,
                    )
                else:
                    window = {}
                window["cpu"] = time.process_time()
                pipe.send(window)
            elif verb == "close":
                group, _ = groups.pop(command[1])
                group.scope.cancel()
                await group.done.wait()
                pipe.send({"closed": True})
            elif verb == "quit":
                nursery.cancel_scope.cancel()
                pipe.send({"quit": True})
                return


def client_main(pipe: Connection, impl: str, cpus: frozenset[int] | None = None) -> None:
    """The target of each client `multiprocessing.Process`; `cpus` pins it (`--pin-clients`)."""
    if cpus:
        os.sched_setaffinity(0, cpus)
    raise_fd_limit()
    with contextlib.suppress(KeyboardInterrupt, EOFError):
        trio.run(client_main_async, pipe, impl)


def slow_socket(host: str, port: int, path: str, receive_buffer: int = 4096) -> socket.socket:
    """A viewer that completes the handshake and then never reads: a blocking plain socket."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.connect((host, port))
    sock.sendall(handshake_request(host, port, path))
    buffer = b""
    while split_handshake(buffer) is None:
        data = sock.recv(4096)
        if not data:
            raise HandshakeError("closed during the handshake")
        buffer += data
    return sock
