"""The two ways people start the server, run as real processes on the built-in emulator."""

from __future__ import annotations

import contextlib
import os
import re
import resource
import signal
import socket
import subprocess
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, open_websocket_url
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, TextMessage
from wsproto.events import Request as WSRequest

import pats_trio
from pats_trio.descriptors import viewer_capacity
from tests.support import free_port, hypercorn_argv, pats_trio_argv

STARTUP_TIMEOUT = 30
APP_BUILT = re.compile(r"app built: worker \w+, pid (\d+)")


def pats_trio_command(port: int) -> list[str]:
    return pats_trio_argv("serve", "--port", str(port))


def hypercorn_command(port: int) -> list[str]:
    return hypercorn_argv(port)


async def wait_until_serving(url: str) -> None:
    async with httpx.AsyncClient() as client:
        while True:
            try:
                if (await client.get(url + "/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await trio.sleep(0.1)


def clean_env(**settings: str) -> dict[str, str]:
    """This environment without pats-trio's, Twitter's or Redis's settings, plus `settings`."""
    prefixes = ("TWITTER_", "PATS_", "REDIS")
    return {k: v for k, v in os.environ.items() if not k.startswith(prefixes)} | settings


@asynccontextmanager
async def serving(
    argv: list[str], port: int, tmp_path: Path, env: dict[str, str], **options: Any
) -> AsyncIterator[trio.Process]:
    """The server as its own process, answering on `port` when this is entered; killed on the
    way out if it is still running."""
    async with trio.open_nursery() as nursery:
        process: trio.Process = await nursery.start(
            partial(trio.run_process, argv, cwd=tmp_path, env=env, check=False, **options)
        )
        try:
            with trio.fail_after(STARTUP_TIMEOUT):
                await wait_until_serving(f"http://127.0.0.1:{port}")
            yield process
        finally:
            if process.returncode is None:
                process.kill()


@pytest.mark.parametrize("command", [pats_trio_command, hypercorn_command])
async def test_server_process_shows_demo_tweets_without_credentials(
    command: object, tmp_path: Path
) -> None:
    port = free_port()
    env = clean_env(PATS_EMULATOR_RATE="20", LOG_LEVEL="INFO")
    argv = command(port)  # type: ignore[operator]
    async with serving(argv, port, tmp_path, env) as process:
        with trio.fail_after(STARTUP_TIMEOUT):
            async with httpx.AsyncClient() as client:
                page = await client.get(f"http://127.0.0.1:{port}/")
            assert page.status_code == 200
            assert "pats-trio" in page.text
            async with open_websocket_url(f"ws://127.0.0.1:{port}/ws") as ws:
                hello = orjson.loads(await ws.get_message())
                assert (hello["type"], hello["mode"]) == ("hello", "demo")
                while True:
                    frame = orjson.loads(await ws.get_message())
                    if frame["type"] in ("tweet", "tweets"):
                        break
            tweet = frame["tweet"] if frame["type"] == "tweet" else frame["tweets"][0]
            assert tweet["text"]
            assert tweet["user"]["screen_name"]
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(15):
            await process.wait()
        assert process.returncode == 0


async def read_until_closed(ws: WebSocketConnection) -> None:
    while True:
        await ws.get_message()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_a_signal_closes_every_viewer_with_1001_and_exits_in_the_grace_period(
    signum: signal.Signals, tmp_path: Path
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = clean_env(PATS_EMULATOR_RATE="20", PATS_SHUTDOWN_GRACE_SECONDS="5")
    async with serving(pats_trio_command(port), port, tmp_path, env) as process:
        with trio.fail_after(15):
            async with (
                open_websocket_url(f"ws://127.0.0.1:{port}/ws") as sample,
                open_websocket_url(f"ws://127.0.0.1:{port}/ws?filter=python") as filtered,
                # A browser tab's idle kept-alive connection, which held the whole grace.
                await trio.open_tcp_stream("127.0.0.1", port) as idle,
            ):
                await idle.send_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                assert (await idle.receive_some(65536)).startswith(b"HTTP/1.1 200")
                for ws in (sample, filtered):
                    assert orjson.loads(await ws.get_message())["type"] == "hello"
                signalled_at = trio.current_time()
                process.send_signal(signum)
                for ws in (sample, filtered):
                    with pytest.raises(ConnectionClosed) as closed:
                        await read_until_closed(ws)
                    assert closed.value.reason is not None
                    assert closed.value.reason.code == 1001
            await process.wait()
        assert process.returncode == 0
        assert trio.current_time() - signalled_at < 2, "one Ctrl-C, out within 2 s"
        with pytest.raises(httpx.TransportError):
            async with httpx.AsyncClient() as client:
                await client.get(url + "/healthz")


def hypercorn_json_logging_command(port: int) -> list[str]:
    recipe = Path(pats_trio.__file__).with_name("hypercorn-logging.json")
    return hypercorn_argv(port, "--log-config", f"json:{recipe}")


@pytest.mark.parametrize("redis", [False, True], ids=["alone", "redis-down"])
@pytest.mark.parametrize("command", [pats_trio_command, hypercorn_json_logging_command])
async def test_json_logs_hold_one_object_per_line_hypercorns_own_lines_included(
    command: object, redis: bool, tmp_path: Path
) -> None:
    """A log collector reads the output line by line: a text line among the JSON breaks it.
    hypercorn printed its own lines twice, once in its own format, and valkey-glide's core
    printed coloured text of its own about every failed connection."""
    port = free_port()
    env = clean_env(LOG_FORMAT="json", LOG_LEVEL="INFO")
    if redis:  # nothing listens there: the worker serves degraded and logs why
        env["REDIS_URL"] = f"redis://127.0.0.1:{free_port()}/0"
    argv = command(port)  # type: ignore[operator]
    log = tmp_path / "output.log"
    with log.open("wb") as output:
        async with serving(argv, port, tmp_path, env, stdout=output, stderr=output) as process:
            process.send_signal(signal.SIGTERM)
            with trio.fail_after(15):
                await process.wait()
    assert process.returncode == 0
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    assert [line for line in lines if not line.startswith("{")] == []
    entries = [orjson.loads(line) for line in lines]
    assert all(
        isinstance(e, dict) and {"ts", "level", "logger", "message"} <= e.keys() for e in entries
    )
    running = [e for e in entries if e["message"].startswith("Running on")]
    assert [e["logger"] for e in running] == ["hypercorn.error"]
    assert any(e["logger"].startswith("pats_trio") for e in entries)
    # A worker serves once it has found Redis unreachable, and has said so by then.
    unreachable = [e for e in entries if e["message"].startswith("redis unreachable")]
    assert bool(unreachable) == redis


def pats_trio_workers_command(port: int) -> list[str]:
    return pats_trio_argv("serve", "--port", str(port), "--workers", "2")


def app_builds(log: Path) -> list[int]:
    """The pid of each "app built" line, one per `create_app`."""
    return [int(pid) for pid in APP_BUILT.findall(log.read_text())]


async def wait_for_app_builds(log: Path, count: int) -> None:
    while True:
        if len(app_builds(log)) >= count:
            return
        await trio.sleep(0.1)


@pytest.mark.parametrize(
    ("command", "workers"),
    [(pats_trio_command, 0), (pats_trio_workers_command, 2), (hypercorn_command, 1)],
    ids=["serve", "serve-workers-2", "hypercorn"],
)
async def test_each_serving_process_builds_exactly_one_app(
    command: Callable[[int], list[str]], workers: int, tmp_path: Path
) -> None:
    """`pats-trio serve` built two (one on importing the app module, one with its overrides),
    and so did each worker; the supervisor built one it never served.

    `workers` is how many worker processes the command starts (hypercorn starts one by
    default); with none, the process serves, and builds, itself."""
    port = free_port()
    env = clean_env(LOG_LEVEL="INFO", LOG_FORMAT="text")
    log = tmp_path / "output.log"
    with log.open("wb") as output:
        async with serving(
            command(port), port, tmp_path, env, stdout=output, stderr=output
        ) as process:
            with trio.fail_after(STARTUP_TIMEOUT):
                await wait_for_app_builds(log, max(workers, 1))
            process.send_signal(signal.SIGTERM)
            with trio.fail_after(15):
                await process.wait()
    assert process.returncode == 0
    builds = app_builds(log)
    if workers:
        assert len(builds) == len(set(builds)) == workers, builds
        assert process.pid not in builds, "the process that starts the workers built an app"
    else:
        assert builds == [process.pid]


@pytest.mark.parametrize("command", [pats_trio_command, hypercorn_command])
async def test_a_huge_websocket_message_is_refused_by_the_protocol_before_it_is_buffered(
    command: object, tmp_path: Path
) -> None:
    """The app's 4 KiB limit used to be checked after hypercorn had buffered up to 16 MiB."""
    port = free_port()
    argv = command(port)  # type: ignore[operator]
    async with serving(argv, port, tmp_path, clean_env(PATS_EMULATOR_RATE="0")):
        with trio.fail_after(STARTUP_TIMEOUT):
            url = f"ws://127.0.0.1:{port}/ws"
            async with open_websocket_url(url) as kind:
                assert orjson.loads(await kind.get_message())["type"] == "hello"
                # A little too long: the app's own error, and the socket stays open.
                await kind.send_message("x" * 10_000)
                while (frame := orjson.loads(await kind.get_message()))["type"] != "error":
                    pass
                assert frame["code"] == "message_too_large"
                refused: ConnectionClosed | None = None
                # Only the refusal is awaited, not the end of that socket's closing handshake.
                with trio.move_on_after(5):
                    async with open_websocket_url(url) as huge:
                        assert orjson.loads(await huge.get_message())["type"] == "hello"
                        # 1 MiB fits the loopback buffers, so the send ends however early
                        # the server stops reading; before, it read and held all of it.
                        await huge.send_message("y" * (1024 * 1024))
                        try:
                            await read_until_closed(huge)
                        except ConnectionClosed as exc:
                            refused = exc
                assert refused is not None
                assert refused.reason is not None
                assert refused.reason.code == 1009
                await kind.send_message('{"type":"filter","track":"still here"}')
                while (frame := orjson.loads(await kind.get_message()))["type"] != "hello":
                    pass
                assert frame["track"] == ["still here"]


async def test_at_the_descriptor_limit_viewers_are_refused_cleanly_and_health_answers(
    tmp_path: Path,
) -> None:
    """With 200 descriptors, new viewers used to hang unanswered once `accept` hit EMFILE."""
    limit = 200
    port = free_port()
    env = clean_env(PATS_EMULATOR_RATE="0", PATS_MAX_CLIENTS_PER_IP="1000")

    def low_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    argv = pats_trio_command(port)
    options = {"preexec_fn": low_limit, "stderr": subprocess.PIPE}
    async with serving(argv, port, tmp_path, env, **options) as process:
        url = f"ws://127.0.0.1:{port}/ws"
        with trio.fail_after(STARTUP_TIMEOUT):
            async with contextlib.AsyncExitStack() as viewers:
                admitted = refused = 0
                for _ in range(limit + 20):
                    ws = await viewers.enter_async_context(open_websocket_url(url))
                    frame = orjson.loads(await ws.get_message())
                    if frame["type"] == "hello":
                        admitted += 1
                        continue
                    assert frame["code"] == "server_full"
                    with pytest.raises(ConnectionClosed) as closed:
                        await read_until_closed(ws)
                    assert closed.value.reason is not None
                    assert closed.value.reason.code == 1013
                    refused += 1
                async with httpx.AsyncClient() as client:
                    health = await client.get(f"http://127.0.0.1:{port}/healthz")
                assert health.status_code == 200
        assert admitted == viewer_capacity(limit)
        assert refused == limit + 20 - admitted
        process.kill()
        assert process.stderr is not None
        log = (await process.stderr.receive_some(1 << 20)).decode(errors="replace")
    assert f"viewers capped at {viewer_capacity(limit)}" in log
    assert "EMFILE" not in log


def never_reading_viewer(port: int) -> socket.socket:
    """A viewer that completes the handshake, then never reads: its window closes at once."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    client = WSConnection(ConnectionType.CLIENT)
    sock.sendall(client.send(WSRequest(host=f"127.0.0.1:{port}", target="/ws")))
    return sock


async def test_a_viewer_that_never_reads_loses_its_slot_and_holds_no_shutdown(
    tmp_path: Path,
) -> None:
    """hypercorn shields socket writes, so nothing could end a send to a full socket: the stuck
    viewer kept its address's only slot for as long as its peer lived, a stop waited on it past
    the grace, and a refused viewer's close racing the server's could end the whole process."""
    grace = 3
    port = free_port()
    env = clean_env(
        PATS_EMULATOR_RATE="1000",
        PATS_SLOW_CLIENT_SECONDS="1",
        PATS_MAX_CLIENTS_PER_IP="1",
        PATS_SHUTDOWN_GRACE_SECONDS=str(grace),
    )
    url = f"ws://127.0.0.1:{port}/ws"
    async with serving(pats_trio_command(port), port, tmp_path, env) as process:
        stuck = never_reading_viewer(port)
        with trio.fail_after(30):
            while True:
                await trio.sleep(0.5)
                async with open_websocket_url(url) as ws:
                    frame = orjson.loads(await ws.get_message())
                if frame["type"] == "hello":
                    break
                assert frame["code"] == "too_many_connections"
        stuck.close()
        stuck = never_reading_viewer(port)
        await trio.sleep(1)  # its window is closed and a send to it is stuck
        process.send_signal(signal.SIGTERM)
        stopped = trio.current_time()
        with trio.fail_after(grace + 5):
            await process.wait()
        assert trio.current_time() - stopped < grace + 3
        assert process.returncode == 0
        stuck.close()


async def raw_viewer(port: int) -> tuple[trio.SocketStream, WSConnection]:
    """A viewer on a plain socket, past the handshake, that sends exactly what it is told to
    (wsproto answers nothing by itself: no pongs)."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    client = WSConnection(ConnectionType.CLIENT)
    await stream.send_all(client.send(WSRequest(host=f"127.0.0.1:{port}", target="/ws")))
    while True:
        data = await stream.receive_some(65536)
        assert data, "closed during the handshake"
        client.receive_data(data)
        if any(isinstance(event, AcceptConnection) for event in client.events()):
            return stream, client


async def close_code_read(stream: trio.SocketStream, client: WSConnection) -> int | None:
    """Read until the server closes the TCP connection: the code of its close frame, if any."""
    code: int | None = None
    while data := await stream.receive_some(65536):
        client.receive_data(data)
        for event in client.events():
            if isinstance(event, CloseConnection):
                code = event.code
    return code


@pytest.mark.parametrize("command", [pats_trio_command, hypercorn_command])
async def test_protocol_errors_are_answered_with_their_close_codes(
    command: Callable[[int], list[str]], tmp_path: Path
) -> None:
    """hypercorn used to drop the TCP connection without a close frame."""
    port = free_port()
    masked = b"\x01\x02\x03\x04"
    cases = {
        b"\x81\x05hello": 1002,  # unmasked
        b"\x81\x84"
        + masked
        + bytes(b ^ masked[i] for i, b in enumerate(b"\xff\xfe\xfd\xfc")): 1007,
        b"\x83\x80" + masked: 1002,  # a reserved opcode
    }
    async with serving(command(port), port, tmp_path, clean_env(PATS_EMULATOR_RATE="0")):
        with trio.fail_after(STARTUP_TIMEOUT):
            for frame, expected in cases.items():
                stream, client = await raw_viewer(port)
                await stream.send_all(frame)
                assert await close_code_read(stream, client) == expected


@pytest.mark.parametrize("command", [pats_trio_command, hypercorn_command])
async def test_a_peer_that_stops_answering_pings_is_dropped_and_its_slot_freed(
    command: Callable[[int], list[str]], tmp_path: Path
) -> None:
    """Without server pings a peer gone without a FIN stayed counted (and held its address's
    slot) for as long as the server ran."""
    port = free_port()
    env = clean_env(PATS_EMULATOR_RATE="0", PATS_WS_PING_SECONDS="0.5", PATS_MAX_CLIENTS_PER_IP="1")
    url = f"ws://127.0.0.1:{port}/ws"
    async with serving(command(port), port, tmp_path, env):
        with trio.fail_after(STARTUP_TIMEOUT):
            # A viewer whose client answers pings (trio-websocket does) stays past many.
            async with open_websocket_url(url) as kept:
                assert orjson.loads(await kept.get_message())["type"] == "hello"
                await trio.sleep(2.5)
                assert not kept.closed
            while True:  # the server sees that one leave
                async with open_websocket_url(url) as probe:
                    if orjson.loads(await probe.get_message())["type"] == "hello":
                        break
            stream, client = await raw_viewer(port)
        with trio.fail_after(5):
            assert await close_code_read(stream, client) is None
        with trio.fail_after(5):
            async with open_websocket_url(url) as after:
                assert orjson.loads(await after.get_message())["type"] == "hello"


def server_holds_connection(port: int, peer_port: int) -> bool:
    """Whether a process still holds the server's end of the TCP connection from `peer_port`:
    an end that is closed lingers in /proc/net/tcp (FIN_WAIT, TIME_WAIT) without an inode."""
    wanted = (f"{port:04X}", f"{peer_port:04X}")
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, inode = fields[1], fields[2], fields[9]
        if (local.rsplit(":", 1)[1], remote.rsplit(":", 1)[1]) == wanted and inode != "0":
            return True
    return False


def frame_header(opcode: int, length: int, *, fin: bool = True) -> bytes:
    """A masked client frame's header announcing `length` bytes, masked with key zero so that
    the payload goes as it is."""
    first = (0x80 if fin else 0) | opcode
    if length < 126:
        return bytes((first, 0x80 | length)) + bytes(4)
    if length < 1 << 16:
        return bytes((first, 0x80 | 126)) + length.to_bytes(2, "big") + bytes(4)
    return bytes((first, 0x80 | 127)) + length.to_bytes(8, "big") + bytes(4)


async def dropped_within(
    seconds: float, port: int, stream: trio.SocketStream, client: WSConnection
) -> int | None:
    """The code of the server's close frame, once the server has also let go of the TCP
    connection, which must happen within `seconds` although this peer never answers."""
    peer_port = stream.socket.getsockname()[1]
    with trio.fail_after(seconds):
        code = await close_code_read(stream, client)
        while True:
            if not server_holds_connection(port, peer_port):
                return code
            await trio.sleep(0.05)


MESSAGE_SECONDS = 1


@pytest.mark.parametrize("command", [pats_trio_command, hypercorn_command])
async def test_a_message_that_does_not_finish_in_time_is_closed_and_an_idle_peer_is_not(
    command: Callable[[int], list[str]], tmp_path: Path
) -> None:
    """A peer could send the header and part of a frame, or a message's first fragments, and
    then trickle or stop: hypercorn held what had arrived for as long as the socket lived."""
    port = free_port()
    env = clean_env(
        PATS_EMULATOR_RATE="0",
        PATS_WS_PING_SECONDS="0",
        PATS_WS_MESSAGE_SECONDS=str(MESSAGE_SECONDS),
    )
    async with serving(command(port), port, tmp_path, env):
        with trio.fail_after(STARTUP_TIMEOUT):
            idle, idle_client = await raw_viewer(port)
            stopped, stopped_client = await raw_viewer(port)
            trickling, trickling_client = await raw_viewer(port)
        began = trio.current_time()
        # The first fragment of a text message, then nothing.
        await stopped.send_all(frame_header(0x1, 5, fin=False) + b"hello")
        # Half of an 8 KB frame (under the size limit), then a byte every 0.2 s.
        await trickling.send_all(frame_header(0x2, 8000) + bytes(4000))
        async with trio.open_nursery() as nursery:

            async def trickle() -> None:
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    while True:
                        await trio.sleep(0.2)
                        await trickling.send_all(b"\0")

            nursery.start_soon(trickle)
            bound = MESSAGE_SECONDS + 5 + 3  # the message's time, the close's, and slack
            assert await dropped_within(bound, port, stopped, stopped_client) == 1008
            assert await dropped_within(bound, port, trickling, trickling_client) == 1008
            nursery.cancel_scope.cancel()
        assert trio.current_time() - began >= MESSAGE_SECONDS
        # The viewer that sent nothing all this while is still served.
        with trio.fail_after(5):
            command_text = b'{"type":"filter","track":"still idle"}'
            await idle.send_all(idle_client.send(TextMessage(data=command_text.decode())))
            while True:
                data = await idle.receive_some(65536)
                assert data, "the idle viewer was closed"
                idle_client.receive_data(data)
                texts = [e.data for e in idle_client.events() if isinstance(e, TextMessage)]
                if any('"still idle"' in text for text in texts):
                    break


@pytest.mark.parametrize("command", [pats_trio_command, hypercorn_command])
async def test_the_servers_own_close_lets_go_of_the_connection_when_the_peer_never_answers(
    command: Callable[[int], list[str]], tmp_path: Path
) -> None:
    """After its own 1009, hypercorn waited for the peer's close for as long as the socket
    lived, and kept buffering the rest of the refused message meanwhile."""
    port = free_port()
    env = clean_env(PATS_EMULATOR_RATE="0", PATS_WS_PING_SECONDS="0")
    async with serving(command(port), port, tmp_path, env):
        with trio.fail_after(STARTUP_TIMEOUT):
            stream, client = await raw_viewer(port)
        # Announces 1 MB, sends 256 KB (past the 16 KiB limit), then only reads.
        await stream.send_all(frame_header(0x2, 1_000_000) + bytes(256 * 1024))
        assert await dropped_within(5 + 3, port, stream, client) == 1009
