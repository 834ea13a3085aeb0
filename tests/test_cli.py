"""The command line as a person meets it: wrong settings are one line and status 2."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

import pats_trio
from pats_trio.tail import local_server_url, viewer_url
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
            "pats-trio: PATS_SOURCE must be emulator, twitter, bluesky or x, got 'nonsense'",
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


def test_version_and_help_that_shows_defaults(tmp_path: Path) -> None:
    version = run(tmp_path, "--version")
    assert version.returncode == 0
    assert version.stdout.strip() == f"pats-trio {pats_trio.__version__}"
    emulate = run(tmp_path, "emulate", "--help")
    assert "(default: 5.0)" in " ".join(emulate.stdout.split())
    assert "(default: None)" not in run(tmp_path, "tail", "--help").stdout


@pytest.mark.parametrize(
    ("given", "url"),
    [
        ("http://127.0.0.1:8000/", "ws://127.0.0.1:8000/ws"),
        ("https://pats.example.org", "wss://pats.example.org/ws"),
        ("http://127.0.0.1:8000/?filter=python", "ws://127.0.0.1:8000/ws?filter=python"),
        ("ws://127.0.0.1:9000/ws", "ws://127.0.0.1:9000/ws"),
    ],
)
def test_tail_takes_the_pages_address_as_well_as_the_sockets(given: str, url: str) -> None:
    assert viewer_url(given) == url


def test_tail_finds_the_server_these_settings_run(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("PATS_HOST", "PATS_PORT"):
        monkeypatch.delenv(name, raising=False)
    assert local_server_url() == "ws://127.0.0.1:8000/ws"
    (tmp_path / ".env").write_text("PATS_PORT=8123\n")
    assert local_server_url() == "ws://127.0.0.1:8123/ws"
    monkeypatch.setenv("PATS_HOST", "0.0.0.0")
    assert local_server_url() == "ws://0.0.0.0:8123/ws"
