"""A redis-server of the test's own on a free loopback port, which a test may stop and restart."""

from __future__ import annotations

import shutil
import signal
import subprocess
from dataclasses import dataclass, field

import trio

from tests.support import free_port

STARTUP_TIMEOUT = 10.0


@dataclass
class RedisServer:
    """One redis-server process; nothing is saved to disk, so a restart starts it empty."""

    port: int = field(default_factory=free_port)
    process: trio.Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.process = await trio.lowlevel.open_process(
            [
                exe,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        with trio.fail_after(STARTUP_TIMEOUT):
            while True:
                if await self.answers():
                    return
                await trio.sleep(0.05)

    async def answers(self) -> bool:
        return (await self.cli("PING")) == "PONG"

    async def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)
            self.process.kill()
            with trio.CancelScope(shield=True):
                await self.process.wait()
            self.process = None

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): commands queue up unanswered, and run on `resume`."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    async def monitor(self, seconds: float) -> list[str]:
        """The commands clients sent over `seconds` (not those run inside scripts), by name,
        as `MONITOR` saw them."""
        process = await trio.lowlevel.open_process(
            ["redis-cli", "-h", "127.0.0.1", "-p", str(self.port), "MONITOR"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert process.stdout is not None
        seen = bytearray()
        try:
            with trio.move_on_after(seconds):
                async for chunk in process.stdout:
                    seen += chunk
        finally:
            process.kill()
            with trio.CancelScope(shield=True):
                await process.wait()
        # 1700000000.123456 [0 127.0.0.1:50000] "EVALSHA" "..." (a script's own: [0 lua])
        lines = seen.decode(errors="replace").splitlines()
        return [
            line.split('"', 2)[1].lower() for line in lines if '"' in line and " lua]" not in line
        ]

    async def cli(self, *args: str) -> str:
        """One command through redis-cli; its reply as text, or "" when the server is down."""
        result = await trio.run_process(
            ["redis-cli", "-h", "127.0.0.1", "-p", str(self.port), *args],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
        return result.stdout.decode().strip() if result.returncode == 0 else ""
