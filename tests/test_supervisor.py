"""`pats-trio serve --workers N` as a real process: how its workers share the viewers."""

from __future__ import annotations

import random
import signal
import socket
from collections import Counter
from pathlib import Path

import orjson
import trio
from trio_websocket import HandshakeError, open_websocket_url

from tests.support import free_port, pats_trio_argv
from tests.test_serving import STARTUP_TIMEOUT, clean_env, serving

WORKERS = 3
VIEWERS = 30


async def reconnecting_viewer(
    url: str, workers: Counter[str], all_in: trio.Event, leave: trio.Event
) -> None:
    """A page after a restart: it retries every 50-100 ms until it is let in, then stays."""
    while True:
        try:
            async with open_websocket_url(url) as ws:
                hello = orjson.loads(await ws.get_message())
                assert hello["type"] == "hello"
                workers[hello["worker"]] += 1
                if workers.total() == VIEWERS:
                    all_in.set()
                await leave.wait()
                return
        except (OSError, HandshakeError):
            await trio.sleep(0.05 + random.random() * 0.05)


async def test_viewers_reconnecting_after_a_restart_are_spread_over_every_worker(
    tmp_path: Path,
) -> None:
    """With one listening socket shared by every worker, the first worker to be ready accepted
    every viewer already waiting (all 30 of them, measured); the others got none."""
    port = free_port()
    argv = pats_trio_argv("serve", "--port", str(port), "--workers", str(WORKERS))
    env = clean_env(PATS_EMULATOR_RATE="0", PATS_MAX_CLIENTS_PER_IP="1000")
    url = f"ws://127.0.0.1:{port}/ws"
    workers: Counter[str] = Counter()
    all_in, leave = trio.Event(), trio.Event()
    with trio.fail_after(STARTUP_TIMEOUT * 2):
        async with trio.open_nursery() as nursery:
            for _ in range(VIEWERS):
                nursery.start_soon(reconnecting_viewer, url, workers, all_in, leave)
            await trio.sleep(0.5)  # every viewer is retrying: the server is down
            log = (tmp_path / "output.log").open("wb")
            async with serving(argv, port, tmp_path, env, stdout=log, stderr=log) as process:
                await all_in.wait()
                leave.set()
                process.send_signal(signal.SIGTERM)
                with trio.fail_after(20):
                    await process.wait()
            log.close()
    print(f"viewers per worker: {sorted(workers.values())}")
    assert len(workers) == WORKERS, workers
    assert min(workers.values()) >= 3, workers


async def test_a_port_another_server_shares_with_so_reuseport_is_still_in_use() -> None:
    """Our sockets use SO_REUSEPORT, which would let us join another server's group on the
    same port and take half its connections: the port is checked first, without it."""
    with socket.socket() as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        argv = pats_trio_argv("serve", "--port", str(port), "--workers", "2")
        with trio.fail_after(STARTUP_TIMEOUT):
            done = await trio.run_process(
                argv, env=clean_env(), capture_stdout=True, capture_stderr=True, check=False
            )
    assert done.returncode == 2
    assert f"port {port} is in use" in done.stderr.decode()
