"""`pats-trio serve --workers N`: N workers on one port, each replaced if it dies.

hypercorn's own multi-worker mode stops every worker when one exits abnormally, so a crashed or
SIGKILLed worker would take its siblings' viewers with it. Here the survivors carry on, the dead
worker is replaced, and (with `REDIS_URL`) another worker takes over the upstream if the dead one
owned it. Each worker runs the app exactly as `pats-trio serve` does, so SIGTERM closes every
viewer with 1001 within the grace period.

Error handling: a worker that keeps dying (more than `MAX_RESTARTS` in `RESTART_WINDOW` seconds)
stops the whole server with a non-zero status rather than looping.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import multiprocessing
import os
import signal
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import Any

import trio
from hypercorn.config import Config, Sockets
from hypercorn.trio.run import worker_serve
from hypercorn.utils import wrap_app

from pats_trio.config import Settings, SettingsError
from pats_trio.logs import HYPERCORN_ERROR_LOG
from pats_trio.protocol_limits import limit_config

LOGGER = logging.getLogger(__name__)

MAX_RESTARTS = 5
RESTART_WINDOW = 60.0
EXIT_MARGIN = 5.0
"""Seconds past the grace period before a worker that has not exited is killed."""
PR_SET_PDEATHSIG = 1


class _Config(Config):
    """hypercorn's config, whose listening sockets give up on a peer that stops reading.

    hypercorn shields every socket write, so nothing in the app can abandon a send to a viewer
    whose socket is full: it held its slot (and the shutdown) for as long as the peer lived.
    With TCP_USER_TIMEOUT (inherited by every accepted socket) Linux aborts a connection whose
    data stays unacknowledged, a closed window included, for PATS_SHUTDOWN_GRACE_SECONDS; the
    blocked send then fails, the viewer's slot is freed, and a shutdown is not held past it.
    """

    user_timeout_ms: int = 0

    def create_sockets(self) -> Sockets:
        sockets = super().create_sockets()
        if self.user_timeout_ms and hasattr(socket, "TCP_USER_TIMEOUT"):
            for sock in sockets.insecure_sockets:
                if sock.family in (socket.AF_INET, socket.AF_INET6):
                    sock.setsockopt(
                        socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, self.user_timeout_ms
                    )
        return sockets


def bind(config: Config, settings: Settings) -> Sockets:
    """The listening sockets, bound now, so that a taken port is one clear line, not a trace."""
    sockets = _bound(config, settings)
    for sock in sockets.insecure_sockets:
        sock.listen(config.backlog)
    return sockets


def bind_per_worker(config: Config, settings: Settings, workers: int) -> list[Sockets]:
    """One listening socket per worker, all on one port with SO_REUSEPORT, so that the kernel
    spreads new connections over the workers by hash.

    With one socket shared by every worker, the first worker to be ready after a restart took
    every viewer already waiting to reconnect (30 of 30, measured), as the others were still
    starting. A socket per worker holds its share in its own backlog until its worker accepts.
    The supervisor keeps every socket open, so a worker that dies leaves its backlog to its
    replacement rather than dropping it.

    The port is first bound without SO_REUSEPORT and released, so that a port another server
    listens on (even one with SO_REUSEPORT, which would otherwise let us join its group and
    share its connections) is still the clear "in use" refusal; and port 0 becomes one port.
    """
    probe = _bound(config, settings)
    port = probe.insecure_sockets[0].getsockname()[1]
    for sock in probe.insecure_sockets:
        sock.close()
    config.workers = workers  # hypercorn sets SO_REUSEPORT on its sockets when workers > 1
    config.bind = [f"{settings.host}:{port}"]
    return [bind(config, settings) for _ in range(workers)]


def _bound(config: Config, settings: Settings) -> Sockets:
    try:
        return config.create_sockets()
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise SettingsError(
                f"port {settings.port} is in use: set PATS_PORT or pass --port"
            ) from None
        raise SettingsError(
            f"cannot listen on {settings.host}:{settings.port} ({exc.strerror}): "
            "set PATS_HOST and PATS_PORT, or pass --host and --port"
        ) from None


def hypercorn_config(settings: Settings) -> Config:
    config = _Config()
    # No socket may hold a send, a viewer's slot or a shutdown for longer than the grace.
    config.user_timeout_ms = int(settings.shutdown_grace_seconds * 1000)
    config.bind = [f"{settings.host}:{settings.port}"]
    config.accesslog = None
    # Given a logger, hypercorn uses it as it is; given none, it adds a console handler of its
    # own, in its own format, and the root handler printed every line a second time.
    config.errorlog = logging.getLogger(HYPERCORN_ERROR_LOG)
    config.graceful_timeout = settings.shutdown_grace_seconds
    limit_config(config, settings)
    return config


def die_with(supervisor_pid: int) -> None:
    """Ask Linux to send this worker SIGTERM when the supervisor dies, however it dies.

    Otherwise a SIGKILLed supervisor leaves its workers serving on, unsupervised: nobody
    replaces them, and nothing stops them short of finding and killing each one. SIGTERM makes a
    worker close its viewers with 1001, as on a normal stop.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != supervisor_pid:  # it died before the request was in place
        os.kill(os.getpid(), signal.SIGTERM)


def run_worker(
    sockets: Sockets | None, overrides: Mapping[str, Any], supervisor_pid: int | None = None
) -> None:
    """One worker: the app, served on the supervisor's sockets (bound and listening, see
    `bind`), until SIGTERM or SIGINT."""
    if supervisor_pid is not None:
        die_with(supervisor_pid)
    from pats_trio.app import create_app
    from pats_trio.config import load_settings

    settings = load_settings(**overrides)
    config = hypercorn_config(settings)
    app = create_app(settings)

    async def until_shutdown() -> None:
        await app.until_shutdown()
        # The supervisor forwards the signal a terminal already sent to the whole group: a second
        # one must not cut the graceful close short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)

    serve_on(app, config, sockets, until_shutdown)


def serve_on(
    app: Any,
    config: Config,
    sockets: Sockets | None,
    shutdown_trigger: Callable[[], Awaitable[None]],
) -> None:
    """Serve `app` on sockets already bound (by `bind`, or inherited from the supervisor)."""
    trio.run(
        partial(
            worker_serve,
            wrap_app(app, config.wsgi_max_body_size, None),
            config,
            sockets=sockets,
            shutdown_trigger=shutdown_trigger,
        )
    )


@dataclass
class Supervisor:
    """Starts the workers, replaces those that die, and stops them all on a signal."""

    settings: Settings
    workers: int
    overrides: Mapping[str, Any] = field(default_factory=dict)
    processes: list[BaseProcess] = field(default_factory=list)
    stopping: bool = False
    restarts: deque[float] = field(default_factory=deque)
    sockets_of: dict[BaseProcess, Sockets] = field(default_factory=dict)
    """Each worker's own listening socket, handed to its replacement if it dies."""
    signalled: set[int] = field(default_factory=set)
    """Workers already sent SIGTERM: a second one could cut their graceful close short."""

    def run(self) -> int:
        config = hypercorn_config(self.settings)
        per_worker = bind_per_worker(config, self.settings, self.workers)
        context = multiprocessing.get_context("spawn")
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._on_signal)
        LOGGER.info(
            "serving on http://%s:%d/ with %d workers",
            self.settings.host,
            self.settings.port,
            self.workers,
        )
        try:
            for sockets in per_worker:
                self._spawn(context, sockets)
            status = self._watch(context)
        finally:
            self._stop_all()
            for sockets in per_worker:
                for sock in sockets.insecure_sockets:
                    sock.close()
        return status

    def _spawn(self, context: Any, sockets: Sockets) -> None:
        process: BaseProcess = context.Process(
            target=run_worker, args=(sockets, dict(self.overrides), os.getpid()), daemon=False
        )
        process.start()
        self.processes.append(process)
        self.sockets_of[process] = sockets

    def _watch(self, context: Any) -> int:
        while not self.stopping:
            wait([process.sentinel for process in self.processes], timeout=1.0)
            for process in [p for p in self.processes if p.exitcode is not None]:
                process.join()
                self.processes.remove(process)
                sockets = self.sockets_of.pop(process)
                if self._stopped():  # a signal arrived during the wait
                    continue
                LOGGER.warning(
                    "worker pid %s exited with status %s; starting a new one",
                    process.pid,
                    process.exitcode,
                )
                now = time.monotonic()
                self.restarts.append(now)
                while self.restarts and now - self.restarts[0] > RESTART_WINDOW:
                    self.restarts.popleft()
                if len(self.restarts) > MAX_RESTARTS:
                    LOGGER.error(
                        "workers died %d times in %.0fs: stopping the server",
                        len(self.restarts),
                        RESTART_WINDOW,
                    )
                    return 1
                self._spawn(context, sockets)
        return 0

    def _stopped(self) -> bool:
        return self.stopping

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.stopping:
            LOGGER.warning("second %s: killing the workers", signal.Signals(signum).name)
            for process in self.processes:
                process.kill()
            return
        LOGGER.info("%s: stopping %d workers", signal.Signals(signum).name, len(self.processes))
        self.stopping = True
        self._terminate_all()

    def _terminate_all(self) -> None:
        for process in self.processes:
            if process.exitcode is None and process.pid not in self.signalled:
                assert process.pid is not None
                self.signalled.add(process.pid)
                os.kill(process.pid, signal.SIGTERM)

    def _stop_all(self) -> None:
        self.stopping = True
        deadline = time.monotonic() + self.settings.shutdown_grace_seconds + EXIT_MARGIN
        self._terminate_all()
        for process in self.processes:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.exitcode is None:
                LOGGER.warning("worker pid %s did not stop in time: killing it", process.pid)
                process.kill()
                process.join()
