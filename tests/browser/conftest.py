"""Real-browser fixtures: Debian's chromium through Playwright's sync API, and the emulators and
the server as real processes on loopback.

Two stacks: the streaming-API emulator with a server reading it (`start_stack`, `stack`), and the
Jetstream + AppView emulator with a server on ``PATS_SOURCE=bluesky`` (`bluesky_stack`). Each
emulator runs with its control API (``pats-trio emulate [--jetstream] --control``), so a test
injects the exact tweets or posts it wants and waits until the server's upstream connection is
open before it does.
Every wait is bounded: Playwright's own timeouts, deadlines on every polling loop, and a per-test
watchdog that kills the processes when a test overruns (`TEST_TIMEOUT`), with a hard exit of the
whole run as the last resort.
"""

from __future__ import annotations

import faulthandler
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from pats_trio.matching import parse_track
from tests.support import free_port

CHROMIUM = Path(os.environ.get("PATS_CHROMIUM", "/usr/bin/chromium"))
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORT = {"width": 1100, "height": 900}
# Seconds a test may take, setup and teardown included, before the watchdog kills its processes.
TEST_TIMEOUT = 90.0
# Past this, the whole run is stopped with a traceback of every thread.
HARD_TIMEOUT = TEST_TIMEOUT + 60.0
# Starting a process until it answers.
STARTUP_TIMEOUT = 20.0
# Playwright's default for every action and expectation, in milliseconds.
WAIT_MS = 10_000
# The page reconnects after about 1 s, 2 s, 4 s ... (give or take 20%).
RECONNECT_MS = 20_000
PROCESS_EXIT_TIMEOUT = 10.0
POLL_INTERVAL = 0.05
# Requests to anything but loopback fail at once, so the page never waits on the network.
OFF_LOOPBACK = re.compile(r"^https?://(?!127\.0\.0\.1[:/])")
# Up to the line's end, so that a log read while the line is being written is not taken.
EMULATOR_BANNER = re.compile(r"emulating the Twitter streaming API at (http://\S+)\r?\n")
JETSTREAM_BANNER = re.compile(
    r"emulating Bluesky's Jetstream at (ws://\S+) and the AppView at (http://\S+)\r?\n"
)


class WaitTimeoutError(Exception):
    """A bounded wait ran out of time."""


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `predicate` until it holds; raise `WaitTimeoutError` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise WaitTimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(POLL_INTERVAL)


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without any Twitter or pats-trio setting, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TWITTER_", "PATS_"))}
    return env | extra


@dataclass
class Service:
    """One child process, its output in a log file."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=self.log_path.parent,  # away from any .env in the checkout
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def check_running(self) -> bool:
        """True while running; raises, with the log, once the process has exited."""
        if self.running:
            return True
        raise RuntimeError(f"{self.name} exited early:\n{self.log()[-4000:]}")

    def kill(self) -> None:
        """SIGKILL, and reap it."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(PROCESS_EXIT_TIMEOUT)

    def stop(self) -> None:
        """SIGTERM for a graceful shutdown, SIGKILL if it does not come."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(PROCESS_EXIT_TIMEOUT / 2)
        except subprocess.TimeoutExpired:
            self.kill()


def read_banner(service: Service, banner: re.Pattern[str]) -> re.Match[str]:
    """Start `service` and wait until its log shows `banner`: it prints its URLs there once it
    listens (``--port 0`` picks a free port, so the banner is the only place to learn it)."""
    service.start()
    found: list[re.Match[str]] = []

    def printed() -> bool:
        match = banner.search(service.log())
        if match is not None:
            found.append(match)
        return match is not None or not service.check_running()

    wait_for(printed, STARTUP_TIMEOUT, f"{service.name} to start")
    return found[0]


@dataclass
class EmulatorProcess:
    """``pats-trio emulate --control`` and a client for its control API."""

    service: Service
    base_url: str = ""
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=WAIT_MS / 1000))

    @classmethod
    def start(cls, log_dir: Path, *, rate: float, seed: int) -> EmulatorProcess:
        argv = [sys.executable, "-m", "pats_trio", "emulate", "--control", "--port", "0"]
        argv += ["--rate", str(rate), "--seed", str(seed)]
        service = Service("emulator", argv, clean_env(), log_dir / "emulator.log")
        emulator = cls(service)
        try:
            emulator.base_url = read_banner(service, EMULATOR_BANNER).group(1)
        except BaseException:
            emulator.close()
            raise
        return emulator

    @property
    def server_env(self) -> dict[str, str]:
        """What points a server at this emulator (unsigned)."""
        return {"TWITTER_STREAM_URL": self.base_url}

    @property
    def control_url(self) -> str:
        return self.base_url.removesuffix("/1.1") + "/_control"

    def inject(self, *statuses: dict[str, Any]) -> None:
        """Send these statuses now to every sample stream and every filter stream they match."""
        response = self.http.post(self.control_url + "/inject", json=list(statuses))
        response.raise_for_status()

    def inject_raw(self, data: bytes, kind: str = "sample") -> int:
        """Write `data` as it is to the open streams of `kind`; returns how many got it."""
        response = self.http.post(self.control_url + "/raw", params={"kind": kind}, content=data)
        response.raise_for_status()
        streams: int = response.json()["streams"]
        return streams

    def connections(self) -> list[dict[str, Any]]:
        response = self.http.get(self.control_url + "/connections")
        response.raise_for_status()
        records: list[dict[str, Any]] = response.json()
        return records

    def wait_for_stream(self, kind: str, track: str = "", *, after: int = 0) -> dict[str, Any]:
        """The open stream of `kind` (for filter: with this track, in any order) whose id is
        greater than `after`, once there is one."""
        wanted = {phrase.text for phrase in parse_track(track)}
        found: list[dict[str, Any]] = []

        def is_open() -> bool:
            self.service.check_running()
            found[:] = [
                record
                for record in self.connections()
                if record["open"]
                and record["kind"] == kind
                and record["id"] > after
                and {phrase.text for phrase in parse_track(record["track"])} == wanted
            ]
            return bool(found)

        wait_for(is_open, WAIT_MS / 1000, f"an open {kind} stream (track={track!r})")
        return found[-1]

    def last_connection_id(self) -> int:
        return max((record["id"] for record in self.connections()), default=0)

    def close(self) -> None:
        self.http.close()
        self.service.stop()


@dataclass
class JetstreamProcess:
    """``pats-trio emulate --jetstream --control``: Bluesky's Jetstream and AppView on one port,
    and a client for its control API."""

    service: Service
    ws_url: str = ""
    http_url: str = ""
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=WAIT_MS / 1000))

    @classmethod
    def start(cls, log_dir: Path) -> JetstreamProcess:
        argv = [sys.executable, "-m", "pats_trio", "emulate", "--jetstream", "--control"]
        argv += ["--port", "0", "--rate", "0", "--seed", "1"]
        service = Service("jetstream", argv, clean_env(), log_dir / "jetstream.log")
        emulator = cls(service)
        try:
            emulator.ws_url, emulator.http_url = read_banner(service, JETSTREAM_BANNER).groups()
        except BaseException:
            emulator.close()
            raise
        return emulator

    @property
    def server_env(self) -> dict[str, str]:
        """What points a server at this emulator: Jetstream and the AppView are both here."""
        return {
            "PATS_SOURCE": "bluesky",
            "PATS_BLUESKY_HOSTS": self.ws_url,
            "PATS_BLUESKY_APPVIEW": self.http_url,
        }

    def _control(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        response = self.http.post(f"{self.http_url}/_control{path}", json=dict(body))
        if response.is_error:
            raise AssertionError(f"control {path}: HTTP {response.status_code} {response.text}")
        answer: dict[str, Any] = response.json()
        return answer

    def post(self, did: str, text: str, **fields: Any) -> dict[str, Any]:
        """Post now; returns the event as every stream got it (``commit.rkey``, ``time_us``)."""
        return self._control("/post", {"did": did, "text": text, **fields})

    def delete(self, did: str, rkey: str) -> dict[str, Any]:
        return self._control("/delete", {"did": did, "rkey": rkey})

    def set_profile(
        self, did: str, handle: str, name: str | None = None, avatar: str | None = None
    ) -> None:
        """What the AppView answers for `did` from now on."""
        self._control("/profile", {"did": did, "handle": handle, "name": name, "avatar": avatar})

    def set_profile_latency(self, seconds: float) -> None:
        """getProfiles answers only after `seconds`: profiles arrive after their posts."""
        self._control("/profile-latency", {"seconds": seconds})

    def connections(self) -> list[dict[str, Any]]:
        response = self.http.get(f"{self.http_url}/_control/connections")
        response.raise_for_status()
        records: list[dict[str, Any]] = response.json()
        return records

    def wait_for_stream(self, *, after: int = 0) -> dict[str, Any]:
        """The open `/subscribe` stream whose id is greater than `after`, once there is one."""
        found: list[dict[str, Any]] = []

        def is_open() -> bool:
            self.service.check_running()
            found[:] = [r for r in self.connections() if r["open"] and r["id"] > after]
            return bool(found)

        wait_for(is_open, WAIT_MS / 1000, "an open Jetstream stream")
        return found[-1]

    def close(self) -> None:
        self.http.close()
        self.service.stop()


@dataclass
class ServerProcess:
    """``pats-trio serve`` on a fixed loopback port, reading an emulator unsigned."""

    service: Service
    port: int

    @classmethod
    def start(
        cls, log_dir: Path, upstream_env: Mapping[str, str], *, history: int = 0
    ) -> ServerProcess:
        """`upstream_env` points it at an emulator (its `server_env`). `history` is how many
        recent tweets a new viewer is sent at once (PATS_HISTORY)."""
        port = free_port()
        env = clean_env(
            **upstream_env,
            PATS_FILTER_DEBOUNCE_SECONDS="0.1",
            LOG_LEVEL="INFO",
            # Off unless a test asks for it: the server would replay its most recent matching
            # tweets to every new page (and to every filter change), and most tests check that
            # a page shows exactly the tweets they injected after it opened.
            PATS_HISTORY=str(history),
        )
        argv = [sys.executable, "-m", "pats_trio", "serve", "--port", str(port)]
        server = cls(Service("server", argv, env, log_dir / "server.log"), port)
        try:
            server.restart()
        except BaseException:
            server.kill()
            raise
        return server

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def restart(self) -> None:
        """(Re)start on the same port and wait until it answers /healthz.

        A restart right after a kill may find the port not yet released: the process then
        exits, and it is started again until the deadline.
        """
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            self.service.start()
            try:
                wait_for(self._healthy, max(0.1, deadline - time.monotonic()), "the server")
                return
            except RuntimeError:
                if time.monotonic() > deadline or "address already in use" not in (
                    self.service.log().lower()
                ):
                    raise
                time.sleep(0.2)

    def _healthy(self) -> bool:
        self.service.check_running()
        try:
            return httpx.get(self.url + "/healthz", timeout=1.0).status_code == 200
        except httpx.TransportError:
            return False

    def kill(self) -> None:
        self.service.kill()


@dataclass
class Stack:
    """An emulator, the server reading it, and where the page lives."""

    emulator: EmulatorProcess
    server: ServerProcess

    @property
    def url(self) -> str:
        return self.server.url + "/"


@dataclass
class BlueskyStack:
    """The Jetstream + AppView emulator, a server on ``PATS_SOURCE=bluesky``, and the page."""

    jetstream: JetstreamProcess
    server: ServerProcess

    @property
    def url(self) -> str:
        return self.server.url + "/"


class Stacks:
    """Starts the processes of a test's stacks, and stops them all (servers first) after it."""

    def __init__(self, tmp_path: Path, watchdog: Watchdog) -> None:
        self.tmp_path = tmp_path
        self.watchdog = watchdog
        self.servers: list[ServerProcess] = []
        self.emulators: list[EmulatorProcess | JetstreamProcess] = []

    def _log_dir(self) -> Path:
        log_dir = self.tmp_path / f"stack{len(self.servers)}"
        log_dir.mkdir()
        return log_dir

    def _server(
        self,
        log_dir: Path,
        emulator: EmulatorProcess | JetstreamProcess,
        history: int,
        env: Mapping[str, str] | None = None,
    ) -> ServerProcess:
        self.emulators.append(emulator)
        self.watchdog.services.append(emulator.service)
        server_env = {**emulator.server_env, **(env or {})}
        server = ServerProcess.start(log_dir, server_env, history=history)
        self.servers.append(server)
        self.watchdog.services.append(server.service)
        return server

    def twitter(
        self,
        *,
        rate: float = 0.0,
        seed: int = 1,
        history: int = 0,
        env: Mapping[str, str] | None = None,
    ) -> Stack:
        """`env` adds server settings to those that point it at the emulator."""
        log_dir = self._log_dir()
        emulator = EmulatorProcess.start(log_dir, rate=rate, seed=seed)
        return Stack(emulator, self._server(log_dir, emulator, history, env))

    def bluesky(self, *, history: int = 0) -> BlueskyStack:
        log_dir = self._log_dir()
        jetstream = JetstreamProcess.start(log_dir)
        return BlueskyStack(jetstream, self._server(log_dir, jetstream, history))

    def server_only(self, env: Mapping[str, str]) -> ServerProcess:
        """A server with no emulator: `env` points it at an upstream that cannot be reached."""
        server = ServerProcess.start(self._log_dir(), env)
        self.servers.append(server)
        self.watchdog.services.append(server.service)
        return server

    def close(self) -> None:
        for server in self.servers:
            server.service.stop()
        for emulator in self.emulators:
            emulator.close()


class Watchdog:
    """Kills a test's processes when it overruns, so every wait on them ends."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.services: list[Service] = []
        self.expired = False
        self._timer = threading.Timer(timeout, self._expire)
        self._timer.daemon = True

    def _expire(self) -> None:
        self.expired = True
        for service in self.services:
            if service.process is not None and service.process.poll() is None:
                service.process.kill()

    def __enter__(self) -> Watchdog:
        self._timer.start()
        faulthandler.dump_traceback_later(HARD_TIMEOUT, exit=True)
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()
        faulthandler.cancel_dump_traceback_later()


@pytest.fixture(autouse=True)
def watchdog() -> Iterator[Watchdog]:
    with Watchdog(TEST_TIMEOUT) as dog:
        yield dog
    if dog.expired:
        pytest.fail(f"the test ran over {TEST_TIMEOUT:.0f}s; its processes were killed")


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """Debian's chromium, headless; never a downloaded browser."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"no chromium at {CHROMIUM}: install Debian's (apt-get install chromium) "
            "or set PATS_CHROMIUM to a Chromium binary",
            pytrace=False,
        )
    expect.set_options(timeout=WAIT_MS)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=LAUNCH_ARGS, headless=True, timeout=30_000
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(request: pytest.FixtureRequest, browser: Browser, stacks: Stacks) -> Iterator[Page]:
    """A fresh context and page; fails the test on any uncaught error in any page of it.

    Indirect parametrization passes extra context options, such as ``{"bypass_csp": True}``.
    It depends on `stacks` only to be closed before the processes stop: a server with no
    open WebSocket shuts down at once instead of waiting out hypercorn's graceful timeout.
    """
    options: dict[str, Any] = getattr(request, "param", {})
    context = browser.new_context(
        viewport={"width": VIEWPORT["width"], "height": VIEWPORT["height"]},
        locale="en-US",
        timezone_id="UTC",
        color_scheme="light",
        **options,
    )
    context.set_default_timeout(WAIT_MS)
    context.set_default_navigation_timeout(WAIT_MS)
    context.route(OFF_LOOPBACK, lambda route: route.abort())
    errors: list[str] = []
    # Every page of the context, so that a test's second page is watched too.
    context.on("page", lambda new: new.on("pageerror", lambda error: errors.append(str(error))))
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()
    assert errors == [], f"uncaught errors in the page: {errors}"


@pytest.fixture
def stacks(tmp_path: Path, watchdog: Watchdog) -> Iterator[Stacks]:
    """The processes a test starts; all of them stop after the test."""
    started = Stacks(tmp_path, watchdog)
    try:
        yield started
    finally:
        started.close()


@pytest.fixture
def start_stack(stacks: Stacks) -> Callable[..., Stack]:
    """Start an emulator process and a server process reading it:
    ``start_stack(rate=..., seed=..., history=..., env=...)``."""
    return stacks.twitter


@pytest.fixture
def stack(start_stack: Callable[..., Stack]) -> Stack:
    """A server on an emulator that sends only the tweets a test injects."""
    return start_stack()


@pytest.fixture
def bluesky_stack(stacks: Stacks) -> BlueskyStack:
    """A server on ``PATS_SOURCE=bluesky`` reading a Jetstream emulator that sends only the
    posts a test makes, and whose AppView knows only the corpus and the profiles a test sets."""
    return stacks.bluesky()
