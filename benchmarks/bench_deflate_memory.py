"""Server memory per idle viewer, with and without `permessage-deflate` offered.

Browsers offer the extension. hypercorn alone accepts it with context takeover, so each browser
viewer kept its own zlib state (4.3x the memory of one that did not offer it); pats-trio now
negotiates it without context takeover (`pats_trio/hypercorn_ws.py`), and this checks that an
idle browser costs what any other viewer does. This starts `pats-trio` once per case
on a free loopback port, opens N viewers that speak just enough of the handshake to differ only
in that one header, and prints the RSS per viewer and the ratio of the two. The viewers read and
discard frames, so nothing backs up.
"""

from __future__ import annotations

import argparse
import base64
import os
import shutil
import socket
import subprocess
import sys

import trio

STARTUP_TIMEOUT = 30.0
SETTLE_SECONDS = 3.0
OFFER = b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


async def viewer(
    port: int, offer: bool, negotiated: list[bool], wanted: int, all_in: trio.Event
) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16))
    request = (
        b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n%s\r\n"
    ) % (port, key, OFFER if offer else b"")
    await stream.send_all(request)
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = await stream.receive_some(4096)
        if not chunk:
            return
        head += chunk
    negotiated.append(b"permessage-deflate" in head.split(b"\r\n\r\n")[0].lower())
    if len(negotiated) == wanted:
        all_in.set()
    while await stream.receive_some(65536):
        pass


async def measure(viewers: int, offer: bool) -> tuple[float, int]:
    port = free_port()
    exe = shutil.which("pats-trio")
    argv = [exe] if exe else [sys.executable, "-m", "pats_trio"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TWITTER_", "PATS_", "REDIS"))}
    env |= {
        "PATS_PORT": str(port),
        "PATS_EMULATOR_RATE": "0",
        "PATS_MAX_CLIENTS_PER_IP": str(viewers + 10),
        "PATS_HISTORY": "0",
        "LOG_LEVEL": "WARNING",
    }
    process = await trio.lowlevel.open_process(argv, env=env, stderr=subprocess.DEVNULL)
    try:
        with trio.fail_after(STARTUP_TIMEOUT):
            while True:
                try:
                    await (await trio.open_tcp_stream("127.0.0.1", port)).aclose()
                    break
                except OSError:
                    await trio.sleep(0.1)
        await trio.sleep(1.0)
        before = rss_kib(process.pid)
        negotiated: list[bool] = []
        all_in = trio.Event()
        async with trio.open_nursery() as nursery:
            for index in range(viewers):
                nursery.start_soon(viewer, port, offer, negotiated, viewers, all_in)
                if index % 50 == 49:
                    await trio.sleep(0.05)
            with trio.fail_after(STARTUP_TIMEOUT):
                await all_in.wait()
            await trio.sleep(SETTLE_SECONDS)
            after = rss_kib(process.pid)
            nursery.cancel_scope.cancel()
        return (after - before) / viewers, sum(negotiated)
    finally:
        process.terminate()
        with trio.CancelScope(shield=True):
            await process.wait()


async def main_async(viewers: int) -> None:
    plain, _ = await measure(viewers, offer=False)
    deflate, accepted = await measure(viewers, offer=True)
    print(f"{viewers:,} idle viewers, one pats-trio process per case")
    print(f"  without the offer:  {plain:6.1f} KiB of server RSS per viewer")
    print(f"  with the offer:     {deflate:6.1f} KiB ({accepted:,} negotiated it)")
    print(f"  ratio: {deflate / plain:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--viewers", type=int, default=1000)
    parser.add_argument("--quick", action="store_true", help="300 viewers")
    args = parser.parse_args()
    trio.run(main_async, 300 if args.quick else args.viewers)


if __name__ == "__main__":
    main()
