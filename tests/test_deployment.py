"""Separate servers are not workers of one: two `pats-trio serve` processes started side by side
from one shell under `setsid` (or `nohup`, or systemd: one parent, one command line but for the
port) give no "one of N workers and REDIS_URL is not set" warning. Real workers of one server
(hypercorn's) still warn: see tests/test_scaling.py."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
from functools import partial
from pathlib import Path

import pytest
import trio

from tests.support import free_port, pats_trio_argv
from tests.test_serving import clean_env, wait_until_serving

TEST_TIMEOUT = 60.0


@pytest.mark.skipif(shutil.which("setsid") is None, reason="needs util-linux's setsid")
async def test_two_separate_servers_under_setsid_are_not_taken_for_workers(
    tmp_path: Path,
) -> None:
    ports = [free_port(), free_port()]
    logs = [tmp_path / f"server{port}.log" for port in ports]
    # As a person would type it: `setsid pats-trio serve --port N > log 2>&1 &`, twice.
    script = " ".join(
        f"setsid {shlex.join(pats_trio_argv('serve', '--port', str(port)))} > {log} 2>&1 &"
        for port, log in zip(ports, logs, strict=True)
    )
    env = clean_env(PATS_EMULATOR_RATE="0", LOG_LEVEL="INFO")
    with trio.fail_after(TEST_TIMEOUT):
        async with trio.open_nursery() as nursery:
            shell: trio.Process = await nursery.start(
                partial(trio.run_process, ["sh", "-c", f"{script} wait"], cwd=tmp_path, env=env)
            )
            try:
                for port in ports:
                    await wait_until_serving(f"http://127.0.0.1:{port}")
                await trio.sleep(0.5)
            finally:
                # The servers are the shell's children, each leading a session of its own.
                children = await trio.Path(
                    f"/proc/{shell.pid}/task/{shell.pid}/children"
                ).read_text()
                for pid in children.split():
                    os.kill(int(pid), signal.SIGTERM)
    for log in logs:
        text = log.read_text()
        assert "serving on" in text
        assert "REDIS_URL is not set" not in text, text
