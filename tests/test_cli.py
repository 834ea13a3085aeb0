"""The command line as a person meets it: wrong settings are one line and status 2."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

from tests.support import pats_trio_argv

TIMEOUT = 30


def run(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("TWITTER_", "PATS_"))}
    return subprocess.run(
        pats_trio_argv(*args),
        cwd=tmp_path,
        env=clean | env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


@pytest.mark.parametrize(
    ("env", "line"),
    [
        ({"PATS_PORT": "abc"}, "pats-trio: PATS_PORT must be a whole number, got 'abc'"),
        (
            {"PATS_SOURCE": "nonsense"},
            "pats-trio: PATS_SOURCE must be emulator, twitter or bluesky, got 'nonsense'",
        ),
        ({"LOG_LEVEL": "LOUD"}, "pats-trio: LOG_LEVEL must be a logging level name, got 'LOUD'"),
    ],
)
def test_a_bad_setting_is_one_line_naming_it_and_status_2(
    tmp_path: Path, env: dict[str, str], line: str
) -> None:
    done = run(tmp_path, "serve", **env)
    assert done.returncode == 2
    assert done.stderr.strip() == line
    assert "Traceback" not in done.stdout + done.stderr


def test_a_port_in_use_says_how_to_choose_another_and_never_claims_to_serve(
    tmp_path: Path,
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run(tmp_path, "serve", "--port", str(port), PATS_EMULATOR_RATE="0")
    assert done.returncode == 2
    assert f"pats-trio: port {port} is in use: set PATS_PORT or pass --port" in done.stderr
    assert "serving on" not in done.stderr
    assert "Traceback" not in done.stderr
