"""Soak: a real deployment under real faults, one phase per fault, with canary viewers counting.

`pats-trio serve --workers 3` with `REDIS_URL` pointing at this run's own redis-server, reading
the Twitter v1.1 emulator (``bench_emulator.py``: the package's emulator, control API on, one
stream per account off so two connections of one stream show up as an overlap rather than as a
replacement), or with ``--source bluesky`` the Jetstream emulator. Canary viewers
(``soak_clients.py``) on every worker, filtered and unfiltered, half of them offering
permessage-deflate, get numbered tweets injected at a steady rate, so each counts what it lost
and what it got twice. The faults come one after the other, each a phase followed by a settle
period, and every figure is read at the end over each phase's window: see README.md for what
each one means.

    python benchmarks/bench_soak.py [--quick] [--source bluesky] [--fault NAME ...] [--rate R]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import platform
import re
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import trio

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_fanout import HOST, Proc, fmt, free_port, print_table, rss_kib, start  # noqa: E402
from fanout_clients import raise_fd_limit  # noqa: E402
from soak_clients import (  # noqa: E402
    CANARY_BASE,
    CANARY_WORD,
    NEWCOMER_BASE,
    Canary,
    FloodTally,
    Newcomer,
    Received,
    filter_churner,
    handshake_flood,
    huge_frame,
    idle_http_socket,
    loopback_sources,
    never_reading_socket,
    numbered_post,
    numbered_status,
    open_file_count,
    phrase_hog,
    send_queue_bytes,
    server_closed,
)

from pats_trio.matching import MAX_PHRASES  # noqa: E402

RESULTS = HERE / "results"
WORKERS = 3
OWNER_KEY = "pats:owner"
"""The upstream lease (`RedisBroker.owner_key` with the default PATS_REDIS_PREFIX)."""
WORKER_LINE = re.compile(r"app built: worker (\w+), pid (\d+)")
NEWCOMER_WORDS = ("soaknewhog", "soaknewchurn")
"""Each fault's newcomer follows a phrase of its own; the newcomers' tweets carry them all, and
no canary tweet does, so a newcomer's tweets come only once the upstream follows its phrase."""
SAMPLE_EVERY = 0.1
"""Resolution of the time-based figures (seconds without an upstream, "connected" shown)."""
MONITOR_EVERY = 1.0
HEALTH_EVERY = 0.5
HEALTH_TIMEOUT = 2.0
READY_TIMEOUT = 60.0
IN_FLIGHT = 0.5
"""A tweet belongs to the phase it would reach viewers in: one injected just before a fault
began, still on its way through the owner and Redis, is the fault's to lose."""
DRAIN = 5.0
"""After the last phase, how long the canaries may still receive its tweets."""
# What the deployment runs with beyond the shipped defaults: the worker lines (INFO) map worker
# ids to pids, and a viewer that stops reading is evicted after 5 s rather than 30, so that a
# quick run sees whether it is dropped.
PATS_ENV = {"LOG_LEVEL": "INFO", "PATS_SLOW_CLIENT_SECONDS": "5"}
FAULTS = (
    "baseline",
    "redis-restart",
    "redis-pause",
    "owner-kill",
    "owner-freeze",
    "never-reading",
    "huge-frames",
    "handshake-flood",
    "idle-http",
    "phrase-hog",
    "filter-churn",
)
TAKEOVER_FAULTS = ("baseline", "redis-restart", "redis-pause", "owner-kill", "owner-freeze")
"""What the Bluesky variant runs by default: the rest do not depend on the source."""


# --------------------------------------------------------------------------------------------
# The deployment


class Deployment:
    """redis-server, the emulator and `pats-trio serve --workers 3`, each its own process."""

    def __init__(self, workdir: Path, source: str, seed: int, background_rate: float) -> None:
        self.workdir = workdir
        self.source = source
        self.redis_port = free_port()
        self.redis: Proc | None = None
        self.start_redis()
        emulator_port = free_port()
        self.emulator_url = f"http://{HOST}:{emulator_port}"
        env = {**PATS_ENV, "REDIS_URL": f"redis://{HOST}:{self.redis_port}/0"}
        if source == "bluesky":
            argv = [sys.executable, "-m", "pats_trio", "emulate", "--jetstream", "--control"]
            argv += ["--rate", str(background_rate), "--seed", str(seed)]
            env["PATS_SOURCE"] = "bluesky"
            env["PATS_BLUESKY_HOSTS"] = f"ws://{HOST}:{emulator_port}"
            env["PATS_BLUESKY_APPVIEW"] = self.emulator_url
        else:
            argv = [sys.executable, str(HERE / "bench_emulator.py")]
            argv += ["--rate", str(background_rate), "--filter-rate", "0", "--seed", str(seed)]
            env["TWITTER_STREAM_URL"] = self.emulator_url + "/1.1"
        argv += ["--host", HOST, "--port", str(emulator_port)]
        self.emulator = start("emulator", argv, emulator_port, workdir)
        self.port = free_port()
        argv = [sys.executable, "-m", "pats_trio", "serve", "--workers", str(WORKERS)]
        argv += ["--host", HOST, "--port", str(self.port)]
        self.pats = start("pats", argv, self.port, workdir, env)
        self.frozen: set[int] = set()

    def start_redis(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("bench_soak needs redis-server on PATH")
        argv = [binary, "--port", str(self.redis_port), "--bind", HOST]
        argv += ["--save", "", "--appendonly", "no"]
        self.redis = start("redis", argv, self.redis_port, self.workdir)

    def kill_redis(self) -> None:
        if self.redis is not None:
            self.redis.popen.kill()
            self.redis.popen.wait()
            self.redis = None

    def workers(self) -> dict[str, int]:
        """Worker id to pid, for the workers alive now (from the log's "app built" lines)."""
        found: dict[str, int] = {}
        for match in WORKER_LINE.finditer(self.pats.log.read_text(errors="replace")):
            found[match[1]] = int(match[2])
        return {worker: pid for worker, pid in found.items() if _alive(pid)}

    async def owner(self) -> tuple[str, int] | None:
        """The lease holder's worker id and pid, from the lease key."""
        result = await trio.run_process(
            ["redis-cli", "-h", HOST, "-p", str(self.redis_port), "GET", OWNER_KEY],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
        # The lease holds a term, "worker|attempt|host|pid|start" (broker/lease.py).
        worker = result.stdout.decode().strip().split("|", 1)[0]
        pid = self.workers().get(worker)
        return None if pid is None else (worker, pid)

    def signal(self, pid: int, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)
        if signum == signal.SIGSTOP:
            self.frozen.add(pid)
        elif signum == signal.SIGCONT:
            self.frozen.discard(pid)

    def stop(self) -> None:
        for pid in list(self.frozen):
            self.signal(pid, signal.SIGCONT)
        if self.redis is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.redis.popen.pid, signal.SIGCONT)
        self.pats.stop()
        self.emulator.stop()
        if self.redis is not None:
            self.redis.stop()


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


# --------------------------------------------------------------------------------------------
# What runs for the whole soak: the injector, the monitor and the health poller


@dataclass
class Phase:
    name: str
    start: float
    end: float = 0.0
    fault_end: float = 0.0
    notes: dict[str, Any] = field(default_factory=dict)


@dataclass
class Soak:
    args: argparse.Namespace
    deployment: Deployment
    control: httpx.AsyncClient
    canaries: list[Canary] = field(default_factory=list)
    injected: dict[int, float] = field(default_factory=dict)
    inject_failures: int = 0
    newcomer_number: int = 0
    """The last newcomers' tweet injected."""
    log_sizes: list[tuple[float, int]] = field(default_factory=list)
    samples: list[tuple[float, dict[int, tuple[int, int | None]]]] = field(default_factory=list)
    """(time, {pid: (RSS KiB, open descriptors)}) for each worker alive then."""
    health: list[tuple[float, bool, float]] = field(default_factory=list)
    phases: list[Phase] = field(default_factory=list)
    clock_offset: float = 0.0
    """Emulator clock minus ours."""

    @property
    def port(self) -> int:
        return self.deployment.port

    async def sync_clock(self) -> None:
        before = trio.current_time()
        answer = (await self.control.get("/_control/clock")).json()
        after = trio.current_time()
        self.clock_offset = float(answer["now"]) - (before + after) / 2

    async def inject_forever(self) -> None:
        number = 0
        every = 1.0 / self.args.rate
        next_at = trio.current_time()
        while True:
            next_at += every
            number += 1
            self.injected[number] = trio.current_time()
            try:
                await self.inject(number, CANARY_WORD, CANARY_BASE)
            except httpx.HTTPError:
                self.inject_failures += 1
            await trio.sleep_until(max(next_at, trio.current_time()))

    async def inject_for_newcomers_forever(self) -> None:
        words = " ".join(NEWCOMER_WORDS)
        while True:
            await trio.sleep(1.0 / self.args.newcomer_rate)
            self.newcomer_number += 1
            with contextlib.suppress(httpx.HTTPError):
                await self.inject(self.newcomer_number, words, NEWCOMER_BASE)

    async def inject(self, number: int, words: str, base: int) -> None:
        """One numbered tweet (or Bluesky post) into the emulator's streams, now."""
        if self.deployment.source == "bluesky":
            await self.control.post("/_control/post", json=numbered_post(number, words, base))
        else:
            await self.control.post("/_control/inject", json=numbered_status(number, words, base))

    @property
    def kinds(self) -> tuple[str, ...]:
        """The upstream connections' kinds: one Jetstream connection serves both streams."""
        return ("jetstream",) if self.deployment.source == "bluesky" else ("sample", "filter")

    async def monitor_forever(self) -> None:
        while True:
            now = trio.current_time()
            pids = self.deployment.workers().values()
            sample = {pid: (rss_kib(pid), open_file_count(pid)) for pid in pids}
            self.samples.append((now, sample))
            with contextlib.suppress(OSError):
                self.log_sizes.append((now, self.deployment.pats.log.stat().st_size))
            await trio.sleep(MONITOR_EVERY)

    async def health_forever(self) -> None:
        """GET /healthz on a new connection each time, so any worker may answer."""
        limits = httpx.Limits(max_keepalive_connections=0)
        url = f"http://{HOST}:{self.port}/healthz"
        async with httpx.AsyncClient(limits=limits, timeout=HEALTH_TIMEOUT) as client:
            while True:
                began = trio.current_time()
                ok = False
                with trio.move_on_after(HEALTH_TIMEOUT):
                    with contextlib.suppress(httpx.HTTPError):
                        ok = (await client.get(url)).status_code == 200
                self.health.append((began, ok, trio.current_time() - began))
                await trio.sleep(HEALTH_EVERY)


# --------------------------------------------------------------------------------------------
# The faults: each an async function that applies it for its duration and notes what it saw


Fault = Callable[[Soak, Phase], Awaitable[None]]


async def fault_baseline(soak: Soak, phase: Phase) -> None:
    await trio.sleep(soak.args.baseline)


async def fault_redis_restart(soak: Soak, phase: Phase) -> None:
    restarts, every = soak.args.restarts, soak.args.restart_every
    phase.notes["restarts"] = f"{restarts}, {every:g} s apart"
    for _ in range(restarts):
        await trio.to_thread.run_sync(soak.deployment.kill_redis)
        await trio.sleep(0.2)
        await trio.to_thread.run_sync(soak.deployment.start_redis)
        await trio.sleep(every)


async def fault_redis_pause(soak: Soak, phase: Phase) -> None:
    redis = soak.deployment.redis
    assert redis is not None
    phase.notes["paused"] = f"SIGSTOP {soak.args.pause:g} s"
    os.kill(redis.popen.pid, signal.SIGSTOP)
    try:
        await trio.sleep(soak.args.pause)
    finally:
        os.kill(redis.popen.pid, signal.SIGCONT)


async def _owner(soak: Soak, phase: Phase) -> tuple[str, int] | None:
    owner = await soak.deployment.owner()
    phase.notes["owner"] = "none found" if owner is None else f"worker {owner[0]} pid {owner[1]}"
    return owner


async def fault_owner_kill(soak: Soak, phase: Phase) -> None:
    owner = await _owner(soak, phase)
    before = set(soak.deployment.workers())
    if owner is not None:
        soak.deployment.signal(owner[1], signal.SIGKILL)
        phase.notes["killed"] = f"SIGKILL pid {owner[1]}"
    await trio.sleep(soak.args.kill_wait)
    after = await soak.deployment.owner()
    phase.notes["new owner"] = "none" if after is None else f"worker {after[0]}"
    replacements = sorted(set(soak.deployment.workers()) - before)
    if owner is not None and replacements:
        # The dead worker's canaries go to its replacement, so every worker keeps four.
        moved = [c for c in soak.canaries if c.want_worker == owner[0]]
        for canary in moved:
            canary.move_to(replacements[0])
        phase.notes["replacement"] = f"worker {replacements[0]}, {len(moved)} canaries moved to it"


def _canaries_on(soak: Soak, worker: str) -> int:
    return sum(1 for c in soak.canaries if c.worker == worker and c.open)


async def fault_owner_freeze(soak: Soak, phase: Phase) -> None:
    owner = await _owner(soak, phase)
    if owner is None:
        await trio.sleep(soak.args.freeze)
        return
    phase.notes["canaries on it"] = str(_canaries_on(soak, owner[0]))
    soak.deployment.signal(owner[1], signal.SIGSTOP)
    try:
        await trio.sleep(soak.args.freeze)
    finally:
        soak.deployment.signal(owner[1], signal.SIGCONT)
    phase.notes["frozen"] = f"SIGSTOP {soak.args.freeze:g} s"


async def fault_never_reading(soak: Soak, phase: Phase) -> None:
    """Viewers that never read, while the sample stream runs fast enough to fill them."""
    count = soak.args.never_reading
    sources = loopback_sources(10, count)
    sockets: list[socket.socket] = []
    for source in sources:
        with contextlib.suppress(OSError, ConnectionError):
            sockets.append(
                await trio.to_thread.run_sync(never_reading_socket, HOST, soak.port, source)
            )
    began = trio.current_time()
    dropped: dict[int, float] = {}
    queued = 0
    await _set_background_rate(soak, soak.args.fill_rate)
    try:
        with trio.move_on_after(soak.args.never_reading_seconds):
            await _watch_closes(sockets, soak.args.never_reading_seconds / 2, dropped)
            queued = send_queue_bytes(soak.port, set(sources))
            await _watch_closes(sockets, soak.args.never_reading_seconds, dropped)
    finally:
        await _set_background_rate(soak, soak.args.background_rate)
        for sock in sockets:
            sock.close()
    phase.notes["never-reading viewers"] = _closes_note(len(sockets), dropped, began)
    phase.notes["sample rate while held"] = f"{soak.args.fill_rate:g}/s"
    phase.notes["their server-side send queues halfway"] = f"{queued:,} bytes"


async def _watch_closes(
    sockets: list[socket.socket], seconds: float, closed: dict[int, float] | None = None
) -> dict[int, float]:
    """Hold the sockets `seconds`, noting when the server closed each (index: time)."""
    closed = {} if closed is None else closed
    with trio.move_on_after(seconds):
        while len(closed) < len(sockets):
            for i, sock in enumerate(sockets):
                if i not in closed and server_closed(sock):
                    closed[i] = trio.current_time()
            await trio.sleep(0.25)
    return closed


def _closes_note(opened: int, closed: dict[int, float], began: float) -> str:
    if not closed:
        return f"{opened} held, none closed by the server"
    after = sorted(t - began for t in closed.values())
    return (
        f"{opened} held, {len(closed)} closed by the server after {after[0]:.1f}-{after[-1]:.1f} s"
    )


async def fault_idle_http(soak: Soak, phase: Phase) -> None:
    """Keep-alive HTTP clients that ask once and go idle: does the server ever close them?"""
    sockets: list[socket.socket] = []
    for source in loopback_sources(15, soak.args.idle_http // 50 + 1):
        for _ in range(min(50, soak.args.idle_http - len(sockets))):
            with contextlib.suppress(OSError):
                sockets.append(
                    await trio.to_thread.run_sync(idle_http_socket, HOST, soak.port, source)
                )
    began = trio.current_time()
    try:
        closed = await _watch_closes(sockets, soak.args.idle_http_seconds)
    finally:
        for sock in sockets:
            sock.close()
    phase.notes["idle keep-alive clients"] = _closes_note(len(sockets), closed, began)


async def _set_background_rate(soak: Soak, rate: float) -> None:
    with contextlib.suppress(httpx.HTTPError):
        await soak.control.post("/_bench/rate", json={"rate": rate, "filter_rate": 0})


async def fault_huge_frames(soak: Soak, phase: Phase) -> None:
    """Frames announcing ~16 MB: some sent whole, some left unfinished and held open."""
    count, size = soak.args.huge_frames, soak.args.huge_frame_bytes
    outcomes: Counter[str] = Counter()
    sources = loopback_sources(11, count)

    async def one(i: int) -> None:
        fraction = 1.0 if i % 2 == 0 else 0.5
        how = await huge_frame(HOST, soak.port, sources[i], size, fraction, soak.args.huge_hold)
        outcomes[f"{'whole' if fraction == 1 else 'half'}: {how}"] += 1

    async with trio.open_nursery() as nursery:
        for i in range(count):
            nursery.start_soon(one, i)
    phase.notes["frames"] = f"{count} of {size / 1e6:.1f} MB (half of them left unfinished)"
    phase.notes["outcomes"] = ", ".join(f"{k} x{v}" for k, v in sorted(outcomes.items()))


async def fault_handshake_flood(soak: Soak, phase: Phase) -> None:
    tally = FloodTally()
    sources = loopback_sources(12, 20)
    began = trio.current_time()
    with trio.move_on_after(soak.args.flood_seconds):
        await handshake_flood(
            HOST, soak.port, sources, soak.args.handshakes, soak.args.flood_concurrency, tally
        )
    took = trio.current_time() - began
    done = tally.upgraded + sum(tally.refused.values()) + sum(tally.failed.values())
    phase.notes["handshakes"] = (
        f"{done:,} of {soak.args.handshakes:,} in {took:.1f} s from {len(sources)} addresses: "
        f"{tally.upgraded:,} upgraded"
    )
    if tally.refused:
        phase.notes["refused"] = ", ".join(f"{k} x{v}" for k, v in tally.refused.most_common(3))
    if tally.failed:
        phase.notes["failed"] = ", ".join(f"{k} x{v}" for k, v in tally.failed.most_common(3))
    await trio.sleep(max(0.0, soak.args.flood_seconds - took))


async def _with_newcomer(soak: Soak, phase: Phase, word: str, source: str) -> Newcomer:
    newcomer = Newcomer(word, source, floor=soak.newcomer_number)
    waiting = soak.args.attack_seconds - soak.args.newcomer_after
    async with trio.open_nursery() as nursery:
        nursery.start_soon(newcomer.run, HOST, soak.port)
        await trio.sleep(waiting)
        nursery.cancel_scope.cancel()
    waited = newcomer.first_tweet_after
    told = [
        f"no live tweet in {waiting:.0f} s"
        if waited is None
        else f"first live tweet after {waited:.1f} s",
        f"states {_states(newcomer.received, 'filter')}",
    ]
    if newcomer.closed is not None:
        told.append(f"closed {newcomer.closed}")
    if newcomer.received.errors:
        told.append(f"errors {[code for _, code in newcomer.received.errors]}")
    phase.notes["newcomer"] = f"?filter={word}: " + ", ".join(told)
    return newcomer


def _states(received: Received, stream: str) -> str:
    states = [state for _, kind, state in received.statuses if kind == stream]
    return "->".join(dict.fromkeys(states)) or "none"


async def fault_phrase_hog(soak: Soak, phase: Phase) -> None:
    """One viewer takes as many phrases as its filter may hold; then a newcomer arrives."""
    # Every phrase the upstream may follow but the canaries' own.
    phrases = [f"hog{i}" for i in range(MAX_PHRASES - 1)]
    hog = Received()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(phrase_hog, HOST, soak.port, "127.0.13.1", phrases, hog)
        await trio.sleep(soak.args.newcomer_after)
        await _with_newcomer(soak, phase, NEWCOMER_WORDS[0], "127.0.13.2")
        nursery.cancel_scope.cancel()
    phase.notes["hog"] = f"{len(phrases)} phrases: " + (
        f"refused {[c for _, c in hog.errors]}" if hog.errors else "admitted"
    )


async def fault_filter_churn(soak: Soak, phase: Phase) -> None:
    """One viewer changes its filter every 2 s; then a newcomer arrives."""
    churn = Received()
    changes: list[float] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            filter_churner, HOST, soak.port, "127.0.14.1", soak.args.churn_every, churn, changes
        )
        await trio.sleep(soak.args.newcomer_after)
        await _with_newcomer(soak, phase, NEWCOMER_WORDS[1], "127.0.14.2")
        nursery.cancel_scope.cancel()
    refused = Counter(code for _, code in churn.errors)
    phase.notes["churner"] = f"{len(changes)} changes, every {soak.args.churn_every:g} s" + (
        f", refused {dict(refused)}" if refused else ""
    )


FAULT_TABLE: dict[str, Fault] = {
    "baseline": fault_baseline,
    "redis-restart": fault_redis_restart,
    "redis-pause": fault_redis_pause,
    "owner-kill": fault_owner_kill,
    "owner-freeze": fault_owner_freeze,
    "never-reading": fault_never_reading,
    "huge-frames": fault_huge_frames,
    "handshake-flood": fault_handshake_flood,
    "idle-http": fault_idle_http,
    "phrase-hog": fault_phrase_hog,
    "filter-churn": fault_filter_churn,
}


# --------------------------------------------------------------------------------------------
# Reading the figures


@dataclass
class Upstream:
    """One stream connection as the emulator recorded it, on our clock."""

    kind: str
    opened: float
    closed: float | None
    status: int


ACCEPTED = 200
"""An accepted stream's status in `Upstream` (Jetstream's 101 is read as this)."""


def upstreams(records: list[dict[str, Any]], offset: float) -> list[Upstream]:
    """The emulator's records (Twitter's, or Jetstream's, which have no kind), on our clock."""
    return [
        Upstream(
            str(r.get("kind", "jetstream")),
            float(r["opened_at"]) - offset,
            None if r["closed_at"] is None else float(r["closed_at"]) - offset,
            ACCEPTED if int(r["status"]) == 101 else int(r["status"]),
        )
        for r in records
    ]


def open_at(conns: list[Upstream], kind: str, at: float) -> int:
    return sum(
        1
        for c in conns
        if c.kind == kind
        and c.status == ACCEPTED
        and c.opened <= at
        and (c.closed is None or c.closed > at)
    )


def stream_figures(conns: list[Upstream], kind: str, start: float, end: float) -> dict[str, Any]:
    mine = sorted((c for c in conns if c.kind == kind), key=lambda c: c.opened)
    opened = [c for c in mine if start <= c.opened < end]
    gaps = []
    for c in opened:
        earlier = [o.opened for o in mine if o.opened < c.opened]
        if earlier:
            gaps.append(c.opened - max(earlier))
    ticks = _ticks(start, end)
    counts = [open_at(conns, kind, t) for t in ticks]
    return {
        "opened": sum(1 for c in opened if c.status == ACCEPTED),
        "refused": sum(1 for c in opened if c.status != ACCEPTED),
        "shortest_gap_s": min(gaps) if gaps else None,
        "max_open": max(counts, default=0),
        "overlap_s": sum(1 for n in counts if n >= 2) * SAMPLE_EVERY,
        "no_upstream_s": sum(1 for n in counts if n == 0) * SAMPLE_EVERY,
    }


def _ticks(start: float, end: float) -> list[float]:
    count = max(int((end - start) / SAMPLE_EVERY), 0)
    return [start + i * SAMPLE_EVERY for i in range(count)]


def canary_figures(
    canary: Canary,
    numbers: list[int],
    conns: list[Upstream],
    start: float,
    end: float,
    kinds: Sequence[str] = ("sample", "filter"),
) -> dict[str, Any]:
    """`kinds`: the upstream kinds; a canary's stream is served by the one of its name, or by
    the only one there is."""
    upstream = canary.stream if canary.stream in kinds else kinds[0]
    got = {n for _, n in canary.received.arrivals}
    wanted = set(numbers)
    arrivals = sorted(t for t, n in canary.received.arrivals if start <= t < end)
    points = [start, *arrivals, end]
    longest = max((b - a for a, b in itertools.pairwise(points)), default=0.0)
    statuses = [(t, state) for t, kind, state in canary.received.statuses if kind == canary.stream]
    shown_connected = 0
    index = 0
    state = "none"
    for tick in _ticks(start, end):
        while index < len(statuses) and statuses[index][0] <= tick:
            state = statuses[index][1]
            index += 1
        if state == "connected" and open_at(conns, upstream, tick) == 0:
            shown_connected += 1
    seen_states = [s for t, s in statuses if start <= t < end]
    return {
        "lost": len(wanted - got),
        "duplicated": sum(1 for _, n in canary.received.duplicates if n in wanted),
        "longest_gap_s": longest,
        "connected_without_upstream_s": shown_connected * SAMPLE_EVERY,
        "states": list(dict.fromkeys(seen_states)),
        "closes": [code for t, code in canary.closes if start <= t < end],
        "reconnects": sum(1 for t in canary.connects if start <= t < end),
    }


def resource_figures(soak: Soak, start: float, end: float) -> dict[str, Any]:
    window = [(t, s) for t, s in soak.samples if start <= t < end]
    if not window:
        return {}

    def largest_rss(sample: dict[int, tuple[int, int | None]]) -> float:
        return max((rss for rss, _ in sample.values()), default=0) / 1024

    def fds(sample: dict[int, tuple[int, int | None]]) -> int:
        return sum(n or 0 for _, n in sample.values())

    before = [(t, s) for t, s in soak.samples if t < start]
    if before:  # the figures just before the fault began
        window.insert(0, before[-1])

    return {
        "rss_mib": [
            largest_rss(window[0][1]),
            max(largest_rss(s) for _, s in window),
            largest_rss(window[-1][1]),
        ],
        "fds": [fds(window[0][1]), max(fds(s) for _, s in window), fds(window[-1][1])],
        "workers": [len(window[0][1]), len(window[-1][1])],
        "log_bytes": _log_growth(soak, start, end),
    }


def _log_growth(soak: Soak, start: float, end: float) -> int:
    sizes = [size for t, size in soak.log_sizes if start <= t < end]
    return sizes[-1] - sizes[0] if sizes else 0


def health_figures(soak: Soak, start: float, end: float) -> dict[str, Any]:
    polls = [(ok, took) for t, ok, took in soak.health if start <= t < end]
    return {
        "polls": len(polls),
        "answered": sum(1 for ok, _ in polls if ok),
        "slowest_ms": max((took for _, took in polls), default=0.0) * 1000,
    }


def phase_figures(soak: Soak, phase: Phase, conns: list[Upstream]) -> dict[str, Any]:
    numbers = [n for n, t in soak.injected.items() if phase.start <= t + IN_FLIGHT < phase.end]
    canaries = {
        c.name: canary_figures(c, numbers, conns, phase.start, phase.end, soak.kinds)
        for c in soak.canaries
    }
    return {
        "name": phase.name,
        "seconds": phase.end - phase.start,
        "fault_seconds": phase.fault_end - phase.start,
        "injected": len(numbers),
        "notes": phase.notes,
        "streams": {
            kind: stream_figures(conns, kind, phase.start, phase.end) for kind in soak.kinds
        },
        "canaries": canaries,
        "resources": resource_figures(soak, phase.start, phase.end),
        "healthz": health_figures(soak, phase.start, phase.end),
    }


def _pair(figures: dict[str, Any], key: str, spec: str) -> str:
    """One figure for each upstream kind (sample / filter, or the one Jetstream connection)."""
    return " / ".join(fmt(streams[key], spec) for streams in figures["streams"].values())


def print_phase(f: dict[str, Any]) -> None:
    canaries = f["canaries"].values()
    lost = [c["lost"] for c in canaries]
    dups = [c["duplicated"] for c in canaries]
    closes: Counter[str] = Counter(
        "no code" if code is None else str(code) for c in canaries for code in c["closes"]
    )
    states = sorted({s for c in canaries for s in c["states"]})
    res, health = f["resources"], f["healthz"]
    rows = [
        ["numbered tweets injected", f"{f['injected']:,}"],
        ["lost per canary: max / total", f"{max(lost, default=0)} / {sum(lost)}"],
        ["duplicated per canary: max / total", f"{max(dups, default=0)} / {sum(dups)}"],
        [
            "longest gap without a tweet, s (worst canary)",
            fmt(max((c["longest_gap_s"] for c in canaries), default=0), ".1f"),
        ],
        [f"upstream connections opened ({' / '.join(f['streams'])})", _pair(f, "opened", ",.0f")],
        ["  refused by the emulator", _pair(f, "refused", ",.0f")],
        ["  shortest gap between opens, s", _pair(f, "shortest_gap_s", ".1f")],
        ["  most open at once", _pair(f, "max_open", ",.0f")],
        ["  seconds with two or more open", _pair(f, "overlap_s", ".1f")],
        ["  seconds with none open", _pair(f, "no_upstream_s", ".1f")],
        [
            '"connected" shown with no upstream, s (worst canary)',
            fmt(max((c["connected_without_upstream_s"] for c in canaries), default=0), ".1f"),
        ],
        ["status states the canaries saw", ", ".join(states) or "-"],
        [
            "canary closes (code x n) / reconnects",
            (", ".join(f"{k} x{v}" for k, v in closes.items()) or "none")
            + f" / {sum(c['reconnects'] for c in canaries)}",
        ],
    ]
    if res:
        rows.append(
            [
                "RSS MiB, largest worker: start / peak / end",
                " / ".join(f"{v:.0f}" for v in res["rss_mib"]),
            ]
        )
        rows.append(
            [
                "descriptors, all workers: start / peak / end",
                " / ".join(f"{v:,}" for v in res["fds"]),
            ]
        )
        rows.append(["workers alive: start / end", " / ".join(str(v) for v in res["workers"])])
        rows.append(["server log written, bytes", f"{res['log_bytes']:,}"])
    rows.append(
        [
            "/healthz answered / polled, slowest ms",
            f"{health['answered']} / {health['polls']}, {health['slowest_ms']:.0f}",
        ]
    )
    rows += [[name, str(value)] for name, value in f["notes"].items()]
    if f["name"] == "whole run":
        print(f"== whole run: {f['seconds']:.0f} s")
    else:
        print(f"== {f['name']}: fault {f['fault_seconds']:.0f} s, phase {f['seconds']:.0f} s")
    print_table(["figure", "value"], rows)


def print_summary(figures: list[dict[str, Any]]) -> None:
    rows = []
    for f in figures:
        canaries = f["canaries"].values()
        res = f["resources"]
        rows.append(
            [
                f["name"],
                f"{max((c['lost'] for c in canaries), default=0)}",
                f"{max((c['duplicated'] for c in canaries), default=0)}",
                fmt(max((c["longest_gap_s"] for c in canaries), default=0), ".1f"),
                _pair(f, "opened", ",.0f"),
                _pair(f, "max_open", ",.0f"),
                _pair(f, "overlap_s", ".1f"),
                fmt(max((c["connected_without_upstream_s"] for c in canaries), default=0), ".1f"),
                "-" if not res else f"{res['rss_mib'][1]:.0f}",
                "-" if not res else f"{res['fds'][1]:,}",
                f"{f['healthz']['answered']}/{f['healthz']['polls']}",
            ]
        )
    kinds = " / ".join(figures[0]["streams"]) if figures else ""
    print(f"== summary (worst canary; upstream figures per stream: {kinds})")
    print_table(
        [
            "fault",
            "lost",
            "dup",
            "gap s",
            "opened",
            "at once",
            "overlap s",
            "conn. no upstr. s",
            "RSS MiB",
            "fds",
            "healthz",
        ],
        rows,
    )


def print_whole(f: dict[str, Any]) -> None:
    """The deployment's reconnect pacing over the whole soak: what Twitter would have seen."""
    minutes = f["seconds"] / 60
    per_5 = " / ".join(
        fmt(streams["opened"] / minutes * 5, ".1f") for streams in f["streams"].values()
    )
    canaries = f["canaries"].values()
    print(
        f"== whole run, {f['seconds']:.0f} s: upstream connections opened "
        f"{_pair(f, 'opened', ',.0f')} ({' / '.join(f['streams'])}), {per_5} per 5 min; "
        f"shortest gap between opens {_pair(f, 'shortest_gap_s', '.1f')} s; most open at once "
        f"{_pair(f, 'max_open', ',.0f')}; {_pair(f, 'overlap_s', '.1f')} s with two or more; "
        f"tweets lost {sum(c['lost'] for c in canaries):,} and duplicated "
        f"{sum(c['duplicated'] for c in canaries):,} over {len(canaries)} canaries"
    )


# --------------------------------------------------------------------------------------------
# The run


async def wait_ready(soak: Soak) -> None:
    """Every worker built, an owner elected, and the canaries' first tweets arriving."""
    deadline = trio.current_time() + READY_TIMEOUT
    while len(soak.deployment.workers()) < WORKERS or await soak.deployment.owner() is None:
        if trio.current_time() > deadline:
            raise RuntimeError("the deployment did not come up: see pats.log")
        await trio.sleep(0.5)


async def place_canaries(soak: Soak, nursery: trio.Nursery) -> None:
    workers = sorted(soak.deployment.workers())
    for worker in workers:
        for track, deflate in (("", False), (CANARY_WORD, False), ("", True), (CANARY_WORD, True)):
            name = f"{worker}-{'filter' if track else 'sample'}{'-deflate' if deflate else ''}"
            canary = Canary(name, track, deflate, want_worker=worker)
            soak.canaries.append(canary)
            nursery.start_soon(canary.run, HOST, soak.port)
    with trio.move_on_after(READY_TIMEOUT):
        for canary in soak.canaries:
            await canary.placed.wait()
    placed = Counter(c.worker for c in soak.canaries)
    print(
        f"{len(soak.canaries)} canaries on {len(placed)} workers "
        f"({', '.join(f'{w}: {n}' for w, n in sorted(placed.items(), key=str))})"
    )


async def run_soak(soak: Soak) -> list[dict[str, Any]]:
    async with trio.open_nursery() as nursery:
        await wait_ready(soak)
        await soak.sync_clock()
        nursery.start_soon(soak.monitor_forever)
        nursery.start_soon(soak.health_forever)
        await place_canaries(soak, nursery)
        nursery.start_soon(soak.inject_forever)
        nursery.start_soon(soak.inject_for_newcomers_forever)
        await trio.sleep(soak.args.warmup)
        for name in soak.args.faults:
            phase = Phase(name, trio.current_time())
            soak.phases.append(phase)
            print(f"-- {name}", flush=True)
            try:
                await FAULT_TABLE[name](soak, phase)
            except Exception as error:  # one broken fault must not lose the others' figures
                phase.notes["error"] = repr(error)
                print(f"!! {name} failed: {error!r}", flush=True)
            phase.fault_end = trio.current_time()
            await trio.sleep(soak.args.settle)
            phase.end = trio.current_time()
        await trio.sleep(DRAIN)
        records = (await soak.control.get("/_control/connections")).json()
        nursery.cancel_scope.cancel()
    conns = upstreams(records, soak.clock_offset)
    figures = [phase_figures(soak, phase, conns) for phase in soak.phases]
    if soak.phases:
        whole = Phase("whole run", soak.phases[0].start, soak.phases[-1].end)
        whole.fault_end = whole.end
        # A tweet the emulator never took is not the server's loss: say so beside the losses.
        whole.notes["injections that failed"] = str(soak.inject_failures)
        figures.append(phase_figures(soak, whole, conns))
    return figures


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="each fault briefly (~3 min)")
    parser.add_argument(
        "--fault", action="append", choices=FAULTS, help="run only these (repeatable)"
    )
    parser.add_argument(
        "--source",
        choices=("twitter", "bluesky"),
        default="twitter",
        help="the Twitter v1.1 emulator, or the Jetstream one (then only the takeover faults "
        "by default)",
    )
    parser.add_argument("--rate", type=float, default=20.0, help="numbered tweets per second")
    parser.add_argument(
        "--background-rate", type=float, default=2.0, help="the emulator's own sample tweets/s"
    )
    parser.add_argument("--seed", type=int, default=20261202)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--no-json", action="store_true")
    args = parser.parse_args(argv)
    quick = args.quick
    args.faults = args.fault or list(FAULTS if args.source == "twitter" else TAKEOVER_FAULTS)
    args.warmup = 3.0 if quick else 10.0
    args.settle = 8.0 if quick else 20.0
    args.baseline = 8.0 if quick else 30.0
    args.restarts = 3 if quick else 15
    args.restart_every = 3.0 if quick else 2.4
    args.pause = 10.0
    args.kill_wait = 10.0 if quick else 20.0
    args.freeze = 12.0 if quick else 15.0
    args.never_reading = 10 if quick else 50
    args.never_reading_seconds = 15.0 if quick else 60.0
    args.fill_rate = 50.0
    args.huge_frames = 4 if quick else 20
    args.huge_frame_bytes = 15_900_000
    args.huge_hold = 5.0 if quick else 60.0
    args.handshakes = 2_000 if quick else 10_000
    args.flood_concurrency = 32
    args.flood_seconds = 10.0 if quick else 60.0
    args.newcomer_rate = 2.0
    args.idle_http = 300 if quick else 1_000
    args.idle_http_seconds = 10.0 if quick else 60.0
    args.churn_every = 2.0
    # In a full run the churner has time to spend the upstream's reconnect budget
    # (PATS_MAX_CONNECTS_PER_5MIN) before the newcomer comes.
    args.attack_seconds = 12.0 if quick else 150.0
    args.newcomer_after = 3.0 if quick else 100.0
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with contextlib.suppress(OSError):
        os.nice(5)  # a shared machine: everything this run starts inherits it
    limit = raise_fd_limit()
    stamp = datetime.now(UTC)
    print(
        f"pats-trio soak, {'quick' if args.quick else 'full'} run: serve --workers {WORKERS} "
        f"with Redis, {args.source} emulator; {args.rate:g} numbered tweets/s; "
        f"open files {limit:,}"
    )
    print(f"Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs\n")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="pats-soak-") as scratch:
        deployment = Deployment(Path(scratch), args.source, args.seed, args.background_rate)
        try:

            async def run() -> list[dict[str, Any]]:
                async with httpx.AsyncClient(base_url=deployment.emulator_url, timeout=10) as http:
                    return await run_soak(Soak(args, deployment, http))

            figures = trio.run(run)
        except BaseException:
            sys.stderr.write(deployment.pats.log.read_text(errors="replace")[-3000:])
            raise
        finally:
            deployment.stop()
    for phase in figures:
        print_phase(phase)
    print_summary(figures[:-1])
    print_whole(figures[-1])
    elapsed = time.monotonic() - started
    print(f"{elapsed:.0f}s in all")
    if not args.no_json:
        args.out.mkdir(parents=True, exist_ok=True)
        path = args.out / f"{stamp:%Y%m%dT%H%M%SZ}-soak-{args.source}.json"
        document = {
            "benchmark": "soak",
            "started": stamp.isoformat(),
            "seconds": round(elapsed, 1),
            "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
            "options": {
                k: v for k, v in vars(args).items() if isinstance(v, int | float | str | list)
            },
            "phases": figures,
        }
        path.write_text(json.dumps(document, indent=1, default=str) + "\n")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
