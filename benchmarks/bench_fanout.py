"""End-to-end fan-out: pats-trio against a bare trio-websocket broadcast server, same run.

One emulator process (``bench_emulator.py``) is the upstream for everything. Each server runs
as its own process: pats-trio (``serve_pats.py``, which serves the app as ``pats-trio serve``
does) and the baseline (``baseline_server.py``). Viewers are spread over several client
processes (``fanout_clients.py``). Each measured step is a window of whole seconds; a tweet
counts in it when its upstream ``timestamp_ms`` falls inside, and it is delivered if a viewer
received it by the end of the drain that follows. Figures are read as ratios against the
baseline: see README.md.

    python benchmarks/bench_fanout.py [--quick] [--scenario NAME ...] [--seconds T]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import multiprocessing
import os
import platform
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_matching import make_phrases  # noqa: E402
from fanout_clients import (  # noqa: E402
    client_main,
    percentile,
    raise_fd_limit,
    slow_socket,
)

RESULTS = HERE / "results"
HOST = "127.0.0.1"
SCENARIOS = ("sample", "capacity", "filter", "idle", "deflate", "seed", "slow", "gc", "redis")
# Not run by default: cProfile slows the server down.
EXTRA_SCENARIOS = ("profile",)
PROFILE_TOP = 25
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024
START_TIMEOUT = 30.0
DELIVERED_TARGET = 0.90
SATURATION_START = 5.0
SATURATION_FACTOR = 1.25
SATURATION_MAX = 3_000.0
FILTER_PHRASES = 400
GC_THRESHOLD = "50000,20,100"
PYTHON_GC_DEFAULTS = "700,10,10"
# The gc scenario's servers: label, gc.freeze() after start-up, gc.set_threshold. pats-trio ships
# with GC_THRESHOLD (pats_trio/gctune.py); the second server puts CPython's defaults back.
GC_VARIANTS: tuple[tuple[str, bool, str | None], ...] = (
    ("pats-trio", False, None),
    ("pats-trio+python-gc-defaults", False, PYTHON_GC_DEFAULTS),
    ("pats-trio+gc-freeze", True, None),
)
QUIESCE_TIMEOUT = 60.0
SERVER_CPUS: str | None = None
"""`--pin-server`: the CPU list (taskset's form) every server under test runs on."""
# Environment for pats-trio: every viewer comes from loopback, and the benchmark wants the
# upstream to reconnect at once when the filter union changes.
PATS_ENV = {
    "PATS_MAX_CLIENTS": "100000",
    "PATS_MAX_CLIENTS_PER_IP": "100000",
    "PATS_MIN_RECONNECT_SECONDS": "0",
    "PATS_MAX_CONNECTS_PER_5MIN": "100000",
    "PATS_FILTER_DEBOUNCE_SECONDS": "0.5",
    "PATS_SHUTDOWN_GRACE_SECONDS": "2",
    "LOG_LEVEL": "WARNING",
}


# --------------------------------------------------------------------------------------------
# Processes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
        with socket.socket() as sock, contextlib.suppress(OSError):
            sock.settimeout(0.5)
            sock.connect((HOST, port))
            return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port} after {timeout:.0f}s")


def children_of(pid: int) -> list[int]:
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = (entry / "stat").read_text()
            if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def cpu_seconds(pid: int) -> float:
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    return 0.0


def run_queue_seconds(pid: int) -> float:
    """Time spent runnable but waiting for a CPU (/proc/<pid>/schedstat): other load's mark."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9
    return 0.0


def host_cpu_times() -> tuple[int, int]:
    """All CPUs' (busy, total) jiffies from /proc/stat; idle and iowait count as not busy."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        total = sum(fields[:8])  # guest time is already counted in user and nice
        return total - fields[3] - fields[4], total
    return 0, 0


def host_busy_share(before: tuple[int, int], after: tuple[int, int]) -> float | None:
    """The share of the machine's CPU time (all cores) that anything used between two reads."""
    total = after[1] - before[1]
    return (after[0] - before[0]) / total if total > 0 else None


def rss_kib(pid: int) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


@dataclass
class Proc:
    """A child process we started, stopped with SIGTERM (then SIGKILL) by its own pid."""

    name: str
    popen: subprocess.Popen[bytes]
    port: int
    log: Path

    def pids(self) -> list[int]:
        """The process and its children (hypercorn's workers when there are several)."""
        return [self.popen.pid, *children_of(self.popen.pid)]

    def cpu(self) -> float:
        return sum(cpu_seconds(pid) for pid in self.pids())

    def waited(self) -> float:
        return sum(run_queue_seconds(pid) for pid in self.pids())

    def rss(self) -> int:
        return sum(rss_kib(pid) for pid in self.pids())

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


def start(
    name: str, argv: list[str], port: int, workdir: Path, env: dict[str, str] | None = None
) -> Proc:
    log = workdir / f"{name}.log"
    if SERVER_CPUS and name != "emulator":
        argv = ["taskset", "-c", SERVER_CPUS, *argv]
    full_env = {**os.environ, **(env or {})}
    # Never read a developer's .env or credentials: the server runs in the scratch directory.
    for key in list(full_env):
        if key.startswith("TWITTER_") or key == "REDIS_URL":
            full_env.pop(key)
    full_env.update(env or {})
    with log.open("wb") as out:
        popen = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, cwd=workdir, env=full_env
        )
    proc = Proc(name, popen, port, log)
    try:
        wait_for_port(port, popen, START_TIMEOUT)
    except RuntimeError:
        proc.stop()
        sys.stderr.write(log.read_text(errors="replace")[-3000:])
        raise
    return proc


class Emulator:
    def __init__(self, workdir: Path, seed: int) -> None:
        self.port = free_port()
        self.proc = start(
            "emulator",
            [
                sys.executable,
                str(HERE / "bench_emulator.py"),
                "--port",
                str(self.port),
                "--rate",
                "0",
                "--filter-rate",
                "0",
                "--seed",
                str(seed),
            ],
            self.port,
            workdir,
        )
        self.base = f"http://{HOST}:{self.port}"
        self.http = httpx.Client(base_url=self.base, timeout=10)

    @property
    def stream_url(self) -> str:
        return self.base + "/1.1"

    def set_rate(self, rate: float, filter_rate: float = 0.0) -> None:
        self.http.post("/_bench/rate", json={"rate": rate, "filter_rate": filter_rate})

    def generated(self, start_ms: int, end_ms: int) -> int:
        answer = self.http.get("/_bench/generated", params={"from": start_ms, "to": end_ms})
        count: int = answer.json()["count"]
        return count

    def connections(self) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = self.http.get("/_control/connections").json()
        return records

    def close(self) -> None:
        self.http.close()
        self.proc.stop()


@dataclass
class Server:
    """A server under test: which one, how to reach it, and what it reports."""

    label: str
    proc: Proc
    gc_stats: Path | None = None

    @property
    def port(self) -> int:
        return self.proc.port

    def gc(self) -> dict[str, Any] | None:
        if self.gc_stats is None or not self.gc_stats.exists():
            return None
        with contextlib.suppress(OSError, json.JSONDecodeError):
            data: dict[str, Any] = json.loads(self.gc_stats.read_text())
            return data
        return None

    def metrics(self) -> dict[str, float]:
        """pats-trio's /metrics as {"name{labels}": value}; empty for the baseline."""
        if self.label.startswith("baseline"):
            return {}
        with contextlib.suppress(httpx.HTTPError):
            text = httpx.get(f"http://{HOST}:{self.port}/metrics", timeout=5).text
            out: dict[str, float] = {}
            for line in text.splitlines():
                if line and not line.startswith("#"):
                    name, _, value = line.rpartition(" ")
                    with contextlib.suppress(ValueError):
                        out[name] = float(value)
            return out
        return {}

    def stop(self) -> None:
        self.proc.stop()


def start_baseline(emulator: Emulator, workdir: Path) -> Server:
    port = free_port()
    argv = [sys.executable, str(HERE / "baseline_server.py"), "--port", str(port)]
    argv += ["--upstream", emulator.stream_url]
    return Server("baseline", start("baseline", argv, port, workdir))


def pats_env(emulator: Emulator, extra: dict[str, str] | None = None) -> dict[str, str]:
    return {**PATS_ENV, "TWITTER_STREAM_URL": emulator.stream_url, **(extra or {})}


def start_pats(
    emulator: Emulator,
    workdir: Path,
    *,
    label: str = "pats-trio",
    freeze: bool = False,
    threshold: str | None = None,
    profile: Path | None = None,
) -> Server:
    port = free_port()
    stats = workdir / f"{label}-gc.json"
    argv = [sys.executable, str(HERE / "serve_pats.py"), "--port", str(port)]
    argv += ["--gc-stats", str(stats)]
    if freeze:
        argv.append("--gc-freeze")
    if threshold:
        argv += ["--gc-threshold", threshold]
    if profile is not None:
        argv += ["--profile", str(profile)]
    proc = start(label, argv, port, workdir, pats_env(emulator))
    return Server(label, proc, stats)


# --------------------------------------------------------------------------------------------
# Clients


class ClientPool:
    """Client processes, each holding an equal share of the viewers."""

    def __init__(self, processes: int, impl: str, cpus: frozenset[int] | None = None) -> None:
        context = multiprocessing.get_context("fork")
        self.pipes: list[Connection] = []
        self.procs: list[multiprocessing.process.BaseProcess] = []
        self._groups = 0
        for _ in range(processes):
            mine, theirs = context.Pipe()
            proc = context.Process(target=client_main, args=(theirs, impl, cpus), daemon=True)
            proc.start()
            self.pipes.append(mine)
            self.procs.append(proc)

    def _ask(self, command: tuple[Any, ...]) -> list[dict[str, Any]]:
        for pipe in self.pipes:
            pipe.send(command)
        return [pipe.recv() for pipe in self.pipes]

    def connect(
        self, port: int, paths: Sequence[str], timeout: float = 120.0, *, deflate: bool = False
    ) -> tuple[str, int]:
        """Open one viewer per path, spread over the processes; returns the group and count."""
        self._groups += 1
        name = f"g{self._groups}"
        shares: list[list[str]] = [[] for _ in self.pipes]
        for index, path in enumerate(paths):
            shares[index % len(shares)].append(path)
        for pipe, share in zip(self.pipes, shares, strict=True):
            pipe.send(("connect", name, HOST, port, share, timeout, deflate))
        answers = [pipe.recv() for pipe in self.pipes]
        return name, sum(int(answer["opened"]) for answer in answers)

    def close(self, name: str) -> None:
        self._ask(("close", name))

    def window(self, name: str, first: int, end: int) -> dict[str, Any]:
        """One group's tweets created in seconds [first, end), over all processes."""
        answers = self._ask(("stats", name, first, end))
        latency: Counter[int] = Counter()
        for answer in answers:
            latency.update({int(k): v for k, v in answer["latency"].items()})
        keys = (
            *("tweets", "received", "frames", "skipped", "connected", "closed_by_server"),
            "errors",
            *("wire_bytes", "payload_bytes"),
        )
        total = {key: sum(answer[key] for answer in answers) for key in keys}
        return {**total, "latency": latency}

    def cpu(self) -> float:
        """CPU seconds used by all client processes so far."""
        return sum(self.cpus())

    def cpus(self) -> list[float]:
        """CPU seconds used by each client process so far."""
        return [float(answer["cpu"]) for answer in self._ask(("stats", "", 0, 0))]

    def shutdown(self) -> None:
        with contextlib.suppress(OSError, EOFError):
            self._ask(("quit",))
        for proc in self.procs:
            proc.join(5)
            if proc.is_alive():
                proc.terminate()


# --------------------------------------------------------------------------------------------
# Measuring


@dataclass
class Step:
    server: str
    rate: float
    clients: int
    seconds: int
    offered: int
    expected: int
    delivered: int
    frames: int
    skipped: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    server_cpu: float
    client_cpu: float
    server_waited: float
    rss_kib: int
    host_busy: float | None = None
    gc: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def delivered_share(self) -> float:
        return self.delivered / self.expected if self.expected else 0.0

    @property
    def tweets_per_s(self) -> float:
        return self.delivered / self.seconds

    @property
    def frames_per_s(self) -> float:
        return self.frames / self.seconds

    @property
    def cpu_per_1000(self) -> float | None:
        return self.server_cpu / self.delivered * 1000 if self.delivered else None

    def as_json(self) -> dict[str, Any]:
        return {
            "server": self.server,
            "rate": self.rate,
            "clients": self.clients,
            "seconds": self.seconds,
            "offered_tweets": self.offered,
            "expected_deliveries": self.expected,
            "delivered": self.delivered,
            "delivered_share": round(self.delivered_share, 4),
            "tweets_delivered_per_s": round(self.tweets_per_s, 1),
            "frames_per_s": round(self.frames_per_s, 1),
            "latency_ms": {"p50": self.p50_ms, "p95": self.p95_ms, "p99": self.p99_ms},
            "server_cpu_seconds": round(self.server_cpu, 3),
            "server_cpu_per_1000_deliveries": (
                None if self.cpu_per_1000 is None else round(self.cpu_per_1000, 5)
            ),
            "client_cpu_seconds": round(self.client_cpu, 3),
            "server_run_queue_seconds": round(self.server_waited, 3),
            "server_rss_kib": self.rss_kib,
            "host_cpu_busy_share": None if self.host_busy is None else round(self.host_busy, 3),
            "skipped_frames_reported": self.skipped,
            "drops": self.expected - self.delivered,
            "gc": self.gc,
            **self.extra,
        }


def gc_delta(before: dict[str, Any] | None, after: dict[str, Any] | None) -> dict[str, Any] | None:
    if before is None or after is None:
        return None
    return {
        "collections": [
            a - b for a, b in zip(after["collections"], before["collections"], strict=True)
        ],
        "pause_ms": round((sum(after["pause_seconds"]) - sum(before["pause_seconds"])) * 1000, 2),
        "max_pause_ms_so_far": round(after["max_pause_seconds"] * 1000, 2),
        "threshold": after["threshold"],
        "frozen": after["frozen"],
    }


def filter_queued(metrics: dict[str, float]) -> float:
    return sum(
        value
        for name, value in metrics.items()
        if name.startswith(("pats_frames_delivered_total", "pats_frames_skipped_total"))
        and 'kind="filter"' in name
    )


@dataclass
class Arm:
    """A server under test and the group of viewers connected to it."""

    server: Server
    group: str
    clients: int


def measure(
    arms: Sequence[Arm],
    emulator: Emulator,
    pool: ClientPool,
    *,
    rate: float,
    filter_rate: float = 0.0,
    seconds: int,
    settle: float,
    drain: float,
    expected_from_metrics: bool = False,
) -> list[Step]:
    """One window for every arm at once: `seconds` whole seconds after `settle`, read after a
    `drain`. Arms side by side get the same tweets at the same moments, and the same noise."""
    emulator.set_rate(rate, filter_rate)
    time.sleep(settle)
    first = int(time.time()) + 1
    end = first + seconds
    time.sleep(max(0.0, first - time.time()))
    wanted = expected_from_metrics
    before = [
        (a.server.proc.cpu(), a.server.gc(), _metrics(a, wanted), a.server.proc.waited())
        for a in arms
    ]
    client0 = pool.cpus()
    host0 = host_cpu_times()
    time.sleep(max(0.0, end - time.time()))
    host_busy = host_busy_share(host0, host_cpu_times())
    after = [
        (
            a.server.proc.cpu(),
            a.server.gc(),
            _metrics(a, wanted),
            a.server.proc.waited(),
            a.server.proc.rss(),
        )
        for a in arms
    ]
    client_cpus = [b - a for a, b in zip(client0, pool.cpus(), strict=True)]
    client_cpu = sum(client_cpus)
    time.sleep(drain)
    offered = emulator.generated(first * 1000, end * 1000)
    steps = []
    for arm, (cpu0, gc0, metrics0, wait0), (cpu1, gc1, metrics1, wait1, rss) in zip(
        arms, before, after, strict=True
    ):
        window = pool.window(arm.group, first, end)
        connected = int(window["connected"])
        if expected_from_metrics:
            expected = round(filter_queued(metrics1) - filter_queued(metrics0))
        else:
            expected = offered * connected
        latency: Counter[int] = window["latency"]
        steps.append(
            Step(
                server=arm.server.label,
                rate=rate,
                clients=connected,
                seconds=seconds,
                offered=offered,
                expected=expected,
                delivered=int(window["tweets"]),
                frames=int(window["frames"]),
                skipped=int(window["skipped"]),
                p50_ms=percentile(latency, 0.50),
                p95_ms=percentile(latency, 0.95),
                p99_ms=percentile(latency, 0.99),
                server_cpu=cpu1 - cpu0,
                client_cpu=client_cpu,
                server_waited=wait1 - wait0,
                rss_kib=rss,
                host_busy=host_busy,
                gc=gc_delta(gc0, gc1),
                extra={
                    "client_busiest_share": round(max(client_cpus) / seconds, 3),
                    "received": window["received"],
                    "closed_by_server": window["closed_by_server"],
                    "wire_bytes": window["wire_bytes"],
                    "payload_bytes": window["payload_bytes"],
                },
            )
        )
    return steps


def _metrics(arm: Arm, wanted: bool) -> dict[str, float]:
    return arm.server.metrics() if wanted else {}


def connect_viewers(
    pool: ClientPool, server: Server, paths: Sequence[str], *, deflate: bool = False
) -> tuple[Arm, int, int]:
    """Connect; returns the arm, and the server RSS before and after."""
    time.sleep(0.5)
    before = server.proc.rss()
    name, opened = pool.connect(server.port, paths, deflate=deflate)
    time.sleep(2.0)  # let the hello frames and the upstream connection settle
    after = server.proc.rss()
    if opened < len(paths):
        print(f"  ! {server.label}: only {opened:,} of {len(paths):,} viewers connected")
    return Arm(server, name, opened), before, after


# --------------------------------------------------------------------------------------------
# Printing


def fmt(value: float | None, spec: str = ",.0f", suffix: str = "") -> str:
    return "—" if value is None else f"{value:{spec}}{suffix}"


def ratio(value: float | None, base: float | None) -> str:
    if value is None or base is None or base == 0:
        return "—"
    return f"{value / base:.2f}x"


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]
    print("  ".join(f"{h:>{w}}" for h, w in zip(headers, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(f"{c:>{w}}" for c, w in zip(row, widths, strict=True)))
    print()


def step_rows(steps: Sequence[Step]) -> list[list[str]]:
    return [
        [
            s.server,
            fmt(s.rate, ",.1f"),
            fmt(s.offered / s.seconds, ",.1f"),
            f"{s.clients:,}",
            fmt(s.tweets_per_s),
            fmt(s.frames_per_s),
            fmt(s.delivered_share * 100, ".1f", "%"),
            fmt(s.p50_ms),
            fmt(s.p95_ms),
            fmt(s.p99_ms),
            fmt(s.cpu_per_1000, ".3f"),
            fmt(s.server_cpu / s.seconds * 100, ".0f", "%"),
            fmt(s.server_waited / s.seconds * 100, ".0f", "%"),
            fmt(s.client_cpu / s.seconds * 100, ".0f", "%"),
            fmt(None if s.host_busy is None else s.host_busy * 100, ".0f", "%"),
            f"{s.skipped:,}",
            f"{s.expected - s.delivered:,}",
        ]
        for s in steps
    ]


STEP_HEADERS = (
    "server",
    "rate/s",
    "offered/s",
    "clients",
    "delivered/s",
    "frames/s",
    "delivered",
    "p50 ms",
    "p95 ms",
    "p99 ms",
    "cpu s/1k",
    "srv cpu",
    "srv wait",
    "cli cpu",
    "host busy",
    "skipped",
    "drops",
)


def verdict(ok: bool | None) -> str:
    return "SKIP" if ok is None else ("PASS" if ok else "MISS")


# --------------------------------------------------------------------------------------------
# Scenarios


@dataclass
class Run:
    args: argparse.Namespace
    workdir: Path
    emulator: Emulator
    pool: ClientPool
    results: dict[str, Any] = field(default_factory=dict)
    targets: list[dict[str, Any]] = field(default_factory=list)

    @property
    def seconds(self) -> int:
        return int(self.args.seconds)

    def target(self, name: str, ok: bool | None, figure: str) -> None:
        self.targets.append({"target": name, "result": verdict(ok), "figure": figure})
        print(f"  [{verdict(ok)}] {name}: {figure}")

    def step(self, arms: Sequence[Arm], rate: float, **kw: Any) -> list[Step]:
        quiesce(self, arms)
        results = measure(
            arms,
            self.emulator,
            self.pool,
            rate=rate,
            seconds=kw.pop("seconds", self.seconds),
            settle=kw.pop("settle", self.args.settle),
            drain=kw.pop("drain", self.args.drain),
            **kw,
        )
        print_table(STEP_HEADERS, step_rows(results))
        return results


def quiesce(run: Run, arms: Sequence[Arm]) -> None:
    """Stop the tweets and wait until no arm receives anything: every backlog has drained, so
    a step never inherits the queues of the one before."""
    run.emulator.set_rate(0)
    deadline = time.monotonic() + QUIESCE_TIMEOUT
    while time.monotonic() < deadline:
        time.sleep(1.0)
        second = int(time.time()) - 1
        if all(run.pool.window(a.group, second, second + 1)["frames"] == 0 for a in arms):
            return
    print(f"  ! still receiving {QUIESCE_TIMEOUT:.0f}s after the tweets stopped")


def saturate(run: Run, arms: Sequence[Arm]) -> tuple[list[float | None], list[list[Step]]]:
    """Raise the rate by SATURATION_FACTOR until every arm delivers under 90 %.

    An arm's capacity is the highest rate at which it still delivered 90 % (None if it never
    did). All arms stay connected and fed until the last one fails, so they share the noise.
    """
    searched: list[list[Step]] = []
    capacity: list[float | None] = [None] * len(arms)
    failed = [False] * len(arms)
    rate = SATURATION_START
    while rate <= SATURATION_MAX and not all(failed):
        steps = run.step(arms, rate, seconds=max(3, run.seconds // 2))
        searched.append(steps)
        for index, step in enumerate(steps):
            if step.delivered_share < DELIVERED_TARGET:
                failed[index] = True
            elif not failed[index]:
                capacity[index] = rate
        rate = round(rate * SATURATION_FACTOR, 1)
    run.emulator.set_rate(0)
    time.sleep(run.args.drain)
    return capacity, searched


def scenario_sample(run: Run, *, steps: bool, capacity: bool) -> None:
    """1,000 sample viewers on each server side by side at 5, 20, 50 tweets/s; saturation."""
    clients = run.args.clients
    paths = ["/ws"] * clients
    servers: list[Server] = []
    out: dict[str, Any] = {}
    try:
        servers.append(start_baseline(run.emulator, run.workdir))
        servers.append(start_pats(run.emulator, run.workdir))
        arms: list[Arm] = []
        rss: dict[str, Any] = {}
        for server in servers:
            print(f"-- {server.label}: {clients:,} sample viewers")
            arm, before, after = connect_viewers(run.pool, server, paths)
            arms.append(arm)
            rss[server.label] = {
                "connected": arm.clients,
                "rss_kib_before": before,
                "rss_kib_after": after,
            }
        out["rss"] = rss
        if steps:
            rows = [run.step(arms, rate) for rate in run.args.rates]
            report_steps(run, rows, clients, "side by side")
            out["steps"] = [[s.as_json() for s in row] for row in rows]
        if capacity:
            found, searched = saturate(run, arms)
            b_cap, p_cap = found
            print(
                f"Capacity (highest rate with >=90% delivered), {clients:,} viewers each: "
                f"pats-trio {fmt(p_cap, '.1f')}/s, baseline {fmt(b_cap, '.1f')}/s: "
                f"{ratio(p_cap, b_cap)}"
            )
            peaks = [max(row[i].tweets_per_s for row in searched) for i in range(len(arms))]
            print(
                f"Peak delivered tweets/s during the search: pats-trio {peaks[1]:,.0f}, "
                f"baseline {peaks[0]:,.0f}: {ratio(peaks[1], peaks[0])}"
            )
            out["capacity"] = {
                "baseline": b_cap,
                "pats-trio": p_cap,
                "peak_delivered_per_s": {"baseline": peaks[0], "pats-trio": peaks[1]},
                "search": [[s.as_json() for s in row] for row in searched],
            }
            run.target(
                f"capacity >= 1.5x baseline at {clients:,} sample viewers",
                None if p_cap is None or b_cap is None else p_cap >= 1.5 * b_cap,
                f"{fmt(p_cap, '.1f')} vs {fmt(b_cap, '.1f')} tweets/s = {ratio(p_cap, b_cap)}",
            )
    finally:
        run.emulator.set_rate(0)
        for server in servers:
            server.stop()
    if steps:
        alone = measure_alone(run, paths)
        report_steps(run, alone, clients, "each alone")
        out["alone"] = [[s.as_json() for s in row] for row in alone]
    run.results["sample"] = out


def measure_alone(run: Run, paths: Sequence[str]) -> list[list[Step]]:
    """The sample steps again with each server by itself, freshly started: side by side, the
    two servers and the viewers share two cores; alone, a server has about one, as in the
    issue's probe. Returns a row per rate: baseline, pats-trio."""
    alone: list[list[Step]] = [[] for _ in run.args.rates]
    for starter in (start_baseline, start_pats):
        server = starter(run.emulator, run.workdir)
        try:
            print(f"-- {server.label} alone: {len(paths):,} sample viewers")
            arm, _, _ = connect_viewers(run.pool, server, paths)
            for row, rate in zip(alone, run.args.rates, strict=True):
                row.extend(run.step([arm], rate))
            run.pool.close(arm.group)
        finally:
            run.emulator.set_rate(0)
            server.stop()
    return alone


def report_steps(run: Run, rows: Sequence[Sequence[Step]], clients: int, how: str) -> None:
    if how == "side by side":
        print(f"Sample stream, {clients:,} viewers each, side by side: pats-trio / baseline")
    else:
        print(f"Sample stream, {clients:,} viewers, each server alone: pats-trio / baseline")
    table = []
    for b, p in rows:
        table.append(
            [
                fmt(p.rate, ",.0f"),
                f"{p.delivered_share * 100:.1f}% / {b.delivered_share * 100:.1f}%",
                ratio(p.tweets_per_s, b.tweets_per_s),
                ratio(p.frames_per_s, b.frames_per_s),
                f"{fmt(p.p50_ms)} / {fmt(b.p50_ms)}",
                f"{fmt(p.p99_ms)} / {fmt(b.p99_ms)}",
                ratio(p.p99_ms, b.p99_ms),
                ratio(p.cpu_per_1000, b.cpu_per_1000),
                f"{p.server_waited / p.seconds:.0%} / {b.server_waited / b.seconds:.0%}",
            ]
        )
    print_table(
        (
            "rate/s",
            "delivered p / b",
            "delivered/s",
            "frames/s",
            "p50 ms p / b",
            "p99 ms p / b",
            "p99",
            "cpu/1k",
            "srv wait p / b",
        ),
        table,
    )
    for b, p in rows:
        versus = f"baseline {b.delivered_share * 100:.1f}%, p99 {fmt(b.p99_ms)} ms"
        if p.rate == 50:
            run.target(
                f"50/s x {p.clients:,}, {how}: >=90% delivered, p99 <= 1 s",
                p.delivered_share >= 0.9 and (p.p99_ms or math.inf) <= 1000,
                f"{p.delivered_share * 100:.1f}%, p99 {fmt(p.p99_ms)} ms ({versus})",
            )
        if p.rate == 5:
            run.target(
                f"5/s x {p.clients:,}, {how}: 100% delivered, p99 <= 200 ms",
                p.delivered == p.expected and (p.p99_ms or math.inf) <= 200,
                f"{p.delivered_share * 100:.2f}%, p99 {fmt(p.p99_ms)} ms ({versus})",
            )


def scenario_filter(run: Run) -> None:
    """1,000 viewers over 400 distinct filters, the filter stream at 50 tweets/s."""
    clients = run.args.clients
    phrases = make_phrases(random.Random(run.args.seed), FILTER_PHRASES)
    paths = [f"/ws?filter={quote(phrases[i % len(phrases)].text)}" for i in range(clients)]
    server = start_pats(run.emulator, run.workdir)
    rate = run.args.filter_scenario_rate
    try:
        print(f"-- {server.label}: {clients:,} viewers, {len(phrases)} distinct filters")
        arm, _, _ = connect_viewers(run.pool, server, paths)
        union = wait_for_union(run, min(len(phrases), clients))
        (step,) = run.step([arm], rate, filter_rate=rate, expected_from_metrics=True)
        run.pool.close(arm.group)
    finally:
        run.emulator.set_rate(0)
        server.stop()
    run.results["filter"] = {"phrases": len(phrases), "union": union, "step": step.as_json()}
    run.target(
        f"filters at {rate:.0f}/s x {arm.clients:,}: >=90% delivered, p99 <= 1 s",
        step.delivered_share >= 0.9 and (step.p99_ms or math.inf) <= 1000,
        f"{step.delivered_share * 100:.1f}% of {step.expected:,} routed, p99 {fmt(step.p99_ms)} ms",
    )


def wait_for_union(run: Run, phrases: int, timeout: float = 60.0) -> int:
    """Until the emulator has one open filter stream carrying the whole union."""
    deadline = time.monotonic() + timeout
    carried = 0
    while time.monotonic() < deadline:
        open_filters = [
            r for r in run.emulator.connections() if r["open"] and r["kind"] == "filter"
        ]
        carried = max((len(r["track"].split(",")) for r in open_filters), default=0)
        if carried >= phrases and len(open_filters) == 1:
            break
        time.sleep(0.5)
    print(f"  upstream filter stream carries {carried} phrases")
    time.sleep(1.0)
    return carried


def scenario_idle(run: Run) -> None:
    """5,000 idle viewers: server RSS per viewer, one server at a time."""
    clients = run.args.idle_clients
    run.emulator.set_rate(0)
    out: dict[str, Any] = {}
    for starter in (start_baseline, start_pats):
        server = starter(run.emulator, run.workdir)
        try:
            print(f"-- {server.label}: {clients:,} idle viewers")
            arm, before, _ = connect_viewers(run.pool, server, ["/ws"] * clients)
            time.sleep(2.0)
            after = server.proc.rss()
            per = (after - before) / arm.clients if arm.clients else None
            out[server.label] = {
                "connected": arm.clients,
                "rss_kib_before": before,
                "rss_kib_after": after,
                "rss_kib_per_client": None if per is None else round(per, 2),
            }
            print(
                f"  RSS {before / 1024:.1f} MiB -> {after / 1024:.1f} MiB, "
                f"{fmt(per, '.1f')} KiB per viewer"
            )
            run.pool.close(arm.group)
        finally:
            server.stop()
    p = out["pats-trio"]["rss_kib_per_client"]
    b = out["baseline"]["rss_kib_per_client"]
    print(f"RSS per idle viewer: pats-trio / baseline = {ratio(p, b)}")
    run.target(
        "RSS per idle client <= 32 KiB",
        None if p is None else p <= 32,
        f"{fmt(p, '.1f')} KiB (baseline {fmt(b, '.1f')} KiB, {ratio(p, b)})",
    )
    run.results["idle"] = out


def sample_skipped(server: Server) -> float:
    metrics = server.metrics()
    return sum(v for k, v in metrics.items() if k.startswith("pats_frames_skipped_total"))


DEFLATE_RATES = (5.0, 20.0)


def scenario_deflate(run: Run) -> None:
    """What browsers cost: every browser offers permessage-deflate and hypercorn always accepts
    it, so each frame is compressed once per viewer. The same pats-trio server and sample
    viewers, without the offer, with it, and without it again (to bracket the noise). Memory
    per viewer is `bench_deflate_memory.py`'s: here each round would reuse what the last freed."""
    clients = run.args.clients
    server = start_pats(run.emulator, run.workdir)
    rounds: list[tuple[str, list[Step]]] = []
    try:
        for label, deflate in (("plain", False), ("deflate", True), ("plain again", False)):
            print(f"-- pats-trio: {clients:,} sample viewers, {label}")
            arm, _, _ = connect_viewers(run.pool, server, ["/ws"] * clients, deflate=deflate)
            steps = [step for rate in DEFLATE_RATES for step in run.step([arm], rate)]
            run.pool.close(arm.group)
            rounds.append((label, steps))
    finally:
        run.emulator.set_rate(0)
        server.stop()
    table = []
    for index, rate in enumerate(DEFLATE_RATES):
        plain = [rounds[0][1][index], rounds[2][1][index]]
        deflated = rounds[1][1][index]
        costs = [s.cpu_per_1000 for s in plain if s.cpu_per_1000 is not None]
        base = sum(costs) / len(costs) if costs else None
        table.append(
            [
                fmt(rate, ",.0f"),
                " / ".join(fmt(s.cpu_per_1000, ".3f") for s in (plain[0], deflated, plain[1])),
                ratio(deflated.cpu_per_1000, base),
                " / ".join(fmt(s.p99_ms) for s in (plain[0], deflated, plain[1])),
                " / ".join(f"{s.delivered_share:.0%}" for s in (plain[0], deflated, plain[1])),
            ]
        )
    print("permessage-deflate: plain / deflate / plain again, same server and viewers")
    print_table(
        ("rate/s", "cpu s/1k", "deflate vs plain", "p99 ms", "delivered"),
        table,
    )
    run.results["deflate"] = [
        {"viewers": label, "steps": [step.as_json() for step in steps]} for label, steps in rounds
    ]


SEED_CONTESTANTS = ("pats-trio", "seed", "floor")
CONTESTANT_SCRIPTS = {"seed": "seed_server.py", "floor": "floor_server.py"}


def parse_cpus(text: str) -> frozenset[int]:
    """taskset's list form: "1", "0,2", "2-3"."""
    cpus: set[int] = set()
    for part in text.split(","):
        first, _, last = part.partition("-")
        cpus.update(range(int(first), int(last or first) + 1))
    return frozenset(cpus)


def start_contestant(name: str, emulator: Emulator, workdir: Path) -> Server:
    """pats-trio as `pats-trio serve` runs it, the seed's stack, or the floor."""
    if name == "pats-trio":
        return start_pats(emulator, workdir)
    port = free_port()
    argv = [sys.executable, str(HERE / CONTESTANT_SCRIPTS[name]), "--port", str(port)]
    argv += ["--upstream", emulator.stream_url]
    return Server(name, start(name, argv, port, workdir))


def received_per_s(step: Step) -> float | None:
    """Tweets received per second of the window, however old: what a server that fell behind
    still pushed out (its late tweets don't count as delivered)."""
    received = step.extra.get("received")
    return None if received is None else received / step.seconds


def cpu_per_received(step: Step) -> float | None:
    """Server CPU seconds per 1,000 tweets received however late: a server that fell behind
    delivers nothing in time, yet what it did send cost this much."""
    received = step.extra.get("received")
    return step.server_cpu / received * 1000 if received else None


def wire_per_tweet(step: Step) -> float | None:
    wire = step.extra.get("wire_bytes")
    return wire / step.delivered if wire and step.delivered else None


def wire_share(step: Step) -> float | None:
    """Bytes on the wire over the same frames' payloads as read (inflated): 1.0 uncompressed."""
    wire, payload = step.extra.get("wire_bytes"), step.extra.get("payload_bytes")
    return wire / payload if wire and payload else None


def scenario_seed(run: Run) -> None:
    """pats-trio against the seed's stack (`seed_server.py`) and the floor (`floor_server.py`),
    each alone in turn, never two at once: browser-like viewers (offering permessage-deflate)
    and viewers that don't, at the usual load and in overload (`--seed-rates`)."""
    clients = run.args.clients
    rates: list[float] = run.args.seed_rates
    rounds: dict[tuple[str, str], list[Step]] = {}
    rss: dict[tuple[str, str], float] = {}
    kinds: list[str] = run.args.seed_viewers
    for kind in kinds:
        deflate = kind == "deflate"
        for name in SEED_CONTESTANTS:
            print(f"-- {name}, alone: {clients:,} sample viewers, {kind}")
            server = start_contestant(name, run.emulator, run.workdir)
            try:
                arm, before, after = connect_viewers(
                    run.pool, server, ["/ws"] * clients, deflate=deflate
                )
                rss[kind, name] = (after - before) / max(arm.clients, 1)
                rounds[kind, name] = [run.step([arm], rate)[0] for rate in rates]
                run.pool.close(arm.group)
            finally:
                run.emulator.set_rate(0)
                server.stop()
    for kind in kinds:
        print(f"{kind} viewers, each server alone (wire = bytes on the wire / payload bytes)")
        rows = []
        for index, rate in enumerate(rates):
            for name in SEED_CONTESTANTS:
                step = rounds[kind, name][index]
                rows.append(
                    [
                        name,
                        fmt(rate, ",.0f"),
                        fmt(step.tweets_per_s),
                        fmt(step.delivered_share * 100, ".1f", "%"),
                        fmt(received_per_s(step)),
                        fmt(step.p50_ms),
                        fmt(step.p99_ms),
                        fmt(step.cpu_per_1000, ".4f"),
                        fmt(cpu_per_received(step), ".4f"),
                        fmt(step.server_cpu / step.seconds * 100, ".0f", "%"),
                        fmt(step.client_cpu / step.seconds * 100, ".0f", "%"),
                        fmt(step.extra["client_busiest_share"] * 100, ".0f", "%"),
                        fmt(None if step.host_busy is None else step.host_busy * 100, ".0f", "%"),
                        fmt(wire_per_tweet(step), ",.0f"),
                        fmt(wire_share(step), ".2f"),
                        fmt(rss[kind, name], ".1f"),
                    ]
                )
        print_table(
            (
                "server",
                "rate/s",
                "delivered/s",
                "delivered",
                "received/s",
                "p50 ms",
                "p99 ms",
                "cpu s/1k",
                "cpu s/1k rcvd",
                "srv cpu",
                "cli cpu",
                "busiest cli",
                "host busy",
                "wire B/tweet",
                "wire",
                "KiB/viewer",
            ),
            rows,
        )
    usual, overload = 0, len(rates) - 1

    def cpu(kind: str, name: str) -> float | None:
        return rounds[kind, name][usual].cpu_per_1000

    def over(a: float | None, b: float | None) -> float | None:
        return a / b if a is not None and b else None

    if "deflate" in kinds:
        deflate_cpu = over(cpu("deflate", "pats-trio"), cpu("deflate", "seed"))
        run.target(
            f"deflate viewers at {rates[usual]:.0f}/s: cpu per delivery <= 0.6x the seed's",
            None if deflate_cpu is None else deflate_cpu <= 0.6,
            f"{fmt(deflate_cpu, '.2f')}x",
        )
        share = wire_share(rounds["deflate", "pats-trio"][usual])
        run.target(
            "deflate viewers: bytes on the wire <= 0.6x uncompressed",
            None if share is None else share <= 0.6,
            f"{fmt(share, '.2f')}x ({fmt(wire_per_tweet(rounds['deflate', 'pats-trio'][usual]))} B"
            " per tweet)",
        )
        idle = rss["deflate", "pats-trio"]
        run.target(
            "deflate viewers: RSS per viewer after connect <= 40 KiB",
            idle <= 40,
            f"{idle:.1f} KiB (plain {fmt(rss.get(('plain', 'pats-trio')), '.1f')}, seed deflate "
            f"{rss['deflate', 'seed']:.1f})",
        )
    if "plain" in kinds:
        plain_cpu = over(cpu("plain", "pats-trio"), cpu("plain", "seed"))
        run.target(
            f"plain viewers at {rates[usual]:.0f}/s: cpu per delivery <= 1.0x the seed's",
            None if plain_cpu is None else plain_cpu <= 1.0,
            f"{fmt(plain_cpu, '.2f')}x",
        )
    for kind in kinds:
        ours, seeds = rounds[kind, "pats-trio"][overload], rounds[kind, "seed"][overload]
        # A seed that fell so far behind that none of the window's tweets came in time has
        # delivered nothing: any delivery at all is then infinitely many times that.
        gain = over(ours.tweets_per_s, seeds.tweets_per_s)
        if gain is None and ours.delivered and not seeds.delivered:
            gain = math.inf
        pushed = over(received_per_s(ours), received_per_s(seeds))
        spent = over(cpu_per_received(ours), cpu_per_received(seeds))
        run.target(
            f"{kind} viewers at {rates[overload]:.0f}/s: >= 3x the seed's tweets/s delivered",
            None if gain is None else gain >= 3,
            f"{fmt(gain, '.2f')}x ({ours.tweets_per_s:,.0f} vs {seeds.tweets_per_s:,.0f}); "
            f"received however late {fmt(pushed, '.2f')}x; p99 {fmt(ours.p99_ms)} vs "
            f"{fmt(seeds.p99_ms)} ms; cpu per tweet received {fmt(spent, '.2f')}x; viewers' "
            f"processes {ours.client_cpu / ours.seconds * 100:.0f} % (busiest "
            f"{ours.extra['client_busiest_share'] * 100:.0f} %) vs "
            f"{seeds.client_cpu / seeds.seconds * 100:.0f} %",
        )
        floor = over(cpu(kind, "pats-trio"), cpu(kind, "floor"))
        run.target(
            f"{kind} viewers at {rates[usual]:.0f}/s: cpu per delivery <= 5x the floor's",
            None if floor is None else floor <= 5,
            f"{fmt(floor, '.2f')}x",
        )
    run.results["seed"] = [
        {
            "viewers": kind,
            "server": name,
            "rss_kib_per_viewer_after_connect": round(rss[kind, name], 1),
            "steps": [step.as_json() for step in steps],
        }
        for (kind, name), steps in rounds.items()
    ]


def scenario_slow(run: Run) -> None:
    """200 readers; the same with one viewer that never reads; the readers alone again."""
    clients = run.args.slow_readers
    rate = run.args.slow_rate
    server = start_pats(run.emulator, run.workdir)
    try:
        print(f"-- {server.label}: {clients} readers at {rate:.0f}/s, then one more that stalls")
        arm, _, _ = connect_viewers(run.pool, server, ["/ws"] * clients)
        (first,) = run.step([arm], rate)
        rss_before, skipped_before = server.proc.rss(), sample_skipped(server)
        stalled = slow_socket(HOST, server.port, "/ws")
        try:
            (stalling,) = run.step([arm], rate, seconds=run.args.slow_seconds)
            rss_after, skipped_after = server.proc.rss(), sample_skipped(server)
        finally:
            stalled.close()
        (again,) = run.step([arm], rate)
        run.pool.close(arm.group)
    finally:
        run.emulator.set_rate(0)
        server.stop()
    growth = rss_after - rss_before
    worst_alone = max(first.p99_ms or math.inf, again.p99_ms or math.inf)
    ok = (
        (stalling.p99_ms or math.inf) <= worst_alone * 1.25 + 20
        and stalling.delivered_share >= min(first.delivered_share, again.delivered_share) - 0.01
        and growth < 32 * 1024
    )
    run.target(
        "a stalled viewer costs the others nothing measurable",
        ok,
        f"others' p99 {fmt(first.p99_ms)} / {fmt(stalling.p99_ms)} / {fmt(again.p99_ms)} ms "
        f"(alone / stalled one / alone), delivered {stalling.delivered_share * 100:.1f}%, "
        f"server RSS {growth / 1024:+.1f} MiB, {skipped_after - skipped_before:,.0f} frames "
        "skipped for the stalled viewer",
    )
    run.results["slow"] = {
        "alone": first.as_json(),
        "with_stalled_viewer": stalling.as_json(),
        "alone_again": again.as_json(),
        "rss_kib_growth_while_stalled": growth,
        "server_skipped_while_stalled": skipped_after - skipped_before,
    }


def scenario_gc(run: Run) -> None:
    """pats-trio as shipped (higher gc thresholds), with CPython's defaults, and with
    gc.freeze() too, side by side."""
    clients = run.args.gc_clients
    servers: list[Server] = []
    rows: list[list[Step]] = []
    try:
        for label, freeze, threshold in GC_VARIANTS:
            servers.append(
                start_pats(
                    run.emulator, run.workdir, label=label, freeze=freeze, threshold=threshold
                )
            )
        arms = []
        for server in servers:
            print(f"-- {server.label}: {clients:,} sample viewers")
            arms.append(connect_viewers(run.pool, server, ["/ws"] * clients)[0])
        rows = [run.step(arms, rate) for rate in run.args.gc_rates]
    finally:
        run.emulator.set_rate(0)
        for server in servers:
            server.stop()
    for row in rows:
        shipped = row[0]
        print(
            f"at {shipped.rate:.0f}/s, against pats-trio as shipped (gc threshold {GC_THRESHOLD}):"
        )
        for step in row:
            print(
                f"  {step.server}: delivered {step.delivered_share * 100:.1f}%, "
                f"p99 {fmt(step.p99_ms)} ms ({ratio(step.p99_ms, shipped.p99_ms)}), "
                f"cpu/1k {ratio(step.cpu_per_1000, shipped.cpu_per_1000)}, "
                f"RSS {step.rss_kib / 1024:.0f} MiB"
            )
            if step.gc:
                print(
                    f"    collections per generation {step.gc['collections']} in "
                    f"{step.seconds}s, {step.gc['pause_ms']} ms paused "
                    f"({step.gc['pause_ms'] / step.seconds / 10:.1f}% of the time), longest "
                    f"pause so far {step.gc['max_pause_ms_so_far']} ms"
                )
    run.results["gc"] = {
        "variants": [
            {"label": label, "freeze": freeze, "threshold": threshold}
            for label, freeze, threshold in GC_VARIANTS
        ],
        "steps": [[s.as_json() for s in row] for row in rows],
    }


def scenario_profile(run: Run) -> None:
    """pats-trio under cProfile at 50/s: where the server's time goes (not a figure)."""
    import pstats

    clients = run.args.clients
    rate = run.args.gc_rates[-1]
    path = run.workdir / "pats.pstats"
    server = start_pats(run.emulator, run.workdir, label="pats-trio+profile", profile=path)
    try:
        print(f"-- {server.label}: {clients:,} sample viewers at {rate:.0f}/s under cProfile")
        arm, _, _ = connect_viewers(run.pool, server, ["/ws"] * clients)
        (step,) = run.step([arm], rate)
        run.pool.close(arm.group)
    finally:
        run.emulator.set_rate(0)
        server.stop()
    stats = pstats.Stats(str(path))
    total = stats.total_tt  # type: ignore[attr-defined]
    rows: list[dict[str, Any]] = []
    for (filename, line, function), entry in stats.stats.items():  # type: ignore[attr-defined]
        calls, _, tottime, cumtime, _ = entry
        where = "/".join(Path(filename).parts[-2:])
        rows.append(
            {
                "function": f"{where}:{line}({function})",
                "calls": calls,
                "tottime": round(tottime, 3),
                "cumtime": round(cumtime, 3),
            }
        )
    rows.sort(key=lambda row: row["tottime"], reverse=True)
    print(f"Top {PROFILE_TOP} by own time, of {total:.1f}s profiled:")
    print_table(
        ("own s", "share", "cum s", "calls", "function"),
        [
            [
                f"{r['tottime']:.2f}",
                f"{r['tottime'] / total * 100:.1f}%",
                f"{r['cumtime']:.2f}",
                f"{r['calls']:,}",
                r["function"][-70:],
            ]
            for r in rows[:PROFILE_TOP]
        ],
    )
    run.results["profile"] = {"step": step.as_json(), "top": rows[:PROFILE_TOP]}


# The redis scenario: what a deployment of workers sharing one upstream through Redis costs, every
# process counted, against one process alone.

REDIS_SETUPS: tuple[tuple[str, int], ...] = (
    ("one process", 0),
    ("1 worker + redis", 1),
    ("2 workers + redis", 2),
)
"""(a), (b), (c): label and Redis workers (0: no Redis, `pats-trio serve` alone)."""
REDIS_OVERHEAD_RATE = 200.0
"""The per-tweet step: one viewer per worker, so what is measured is what a tweet costs each
process whoever watches (read, publish, XREAD, decode, route), not its deliveries."""
REDIS_READY_TIMEOUT = 30.0
REDIS_COMPARABLE = 0.99
"""Below this share delivered in either setup, a ratio of CPU per delivery is not a result."""


@dataclass
class Deployment:
    """One setup's processes: the workers (the first one alone without Redis) and redis-server."""

    label: str
    workers: list[Server]
    redis: Proc | None = None

    def stop(self) -> None:
        for server in self.workers:
            server.stop()
        if self.redis is not None:
            self.redis.stop()


def start_redis_server(workdir: Path, name: str) -> Proc | None:
    """A private redis-server on a free loopback port, nothing saved; None if there is none."""
    binary = shutil.which("redis-server")
    if binary is None:
        return None
    port = free_port()
    argv = [binary, "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no"]
    return start(name, argv, port, workdir)


def readyz(server: Server) -> dict[str, Any]:
    with contextlib.suppress(httpx.HTTPError, ValueError):
        body = httpx.get(f"http://{HOST}:{server.port}/readyz", timeout=5).json()
        if isinstance(body, dict):
            return body
    return {}


def start_deployment(run: Run, label: str, workers: int) -> Deployment:
    """`serve_pats.py` (as `pats-trio serve` runs the app) once without Redis, or `workers`
    times with this setup's own redis-server, each worker on its own port so the viewers split
    exactly; returns once one worker owns the upstream and every one reads the stream."""
    deployment = Deployment(label, [])
    try:
        extra: dict[str, str] = {}
        if workers:
            deployment.redis = start_redis_server(run.workdir, f"redis-{workers}")
            if deployment.redis is None:
                raise RuntimeError("no redis-server on PATH")
            extra["REDIS_URL"] = f"redis://{HOST}:{deployment.redis.port}/0"
        for index in range(max(workers, 1)):
            port = free_port()
            name = f"{label.replace(' ', '-')}-w{index}"
            argv = [sys.executable, str(HERE / "serve_pats.py"), "--port", str(port)]
            env = pats_env(run.emulator, extra)
            deployment.workers.append(Server(name, start(name, argv, port, run.workdir, env)))
        if workers:
            deadline = time.monotonic() + REDIS_READY_TIMEOUT
            while time.monotonic() < deadline:
                states = [readyz(server) for server in deployment.workers]
                brokers = [state.get("broker", {}) for state in states]
                if all(state.get("ready") for state in states) and any(
                    broker.get("owner") for broker in brokers
                ):
                    break
                time.sleep(0.5)
            else:
                raise RuntimeError(f"{label}: no worker owned the upstream after the timeout")
    except BaseException:
        deployment.stop()
        raise
    return deployment


def owner_index(deployment: Deployment) -> int | None:
    """Which worker holds the upstream lease now (/readyz), if the deployment uses Redis."""
    for index, server in enumerate(deployment.workers):
        if readyz(server).get("broker", {}).get("owner"):
            return index
    return None


@dataclass
class DeploymentStep:
    """One window over a whole deployment: every process's CPU, the viewers' deliveries."""

    setup: str
    rate: float
    seconds: int
    offered: int
    clients: int
    delivered: int
    expected: int
    p50_ms: float | None
    p99_ms: float | None
    cpu: dict[str, float]
    """CPU seconds (user + system, /proc) in the window, per process: the workers by name
    (the owner's marked), redis-server, the emulator."""
    waited: dict[str, float]
    """Seconds each process was runnable but waiting for a CPU (other load's mark)."""
    client_busy: list[float]
    """Each viewer process's CPU share of one core in the window."""
    host_busy: float | None
    per_worker: list[dict[str, Any]]

    @property
    def deployment_cpu(self) -> float:
        """The workers and redis-server: the emulator stands in for the upstream, not ours."""
        return sum(v for k, v in self.cpu.items() if k != "emulator")

    @property
    def cpu_per_1000(self) -> float | None:
        return self.deployment_cpu / self.delivered * 1000 if self.delivered else None

    @property
    def delivered_share(self) -> float:
        return self.delivered / self.expected if self.expected else 0.0

    @property
    def worst_wait(self) -> float:
        """The longest any worker waited for a CPU, as a share of the window: other load."""
        waits = [v for k, v in self.waited.items() if k.startswith("worker")]
        return max(waits, default=0.0) / self.seconds

    def as_json(self) -> dict[str, Any]:
        return {
            "setup": self.setup,
            "rate": self.rate,
            "seconds": self.seconds,
            "offered_tweets": self.offered,
            "clients": self.clients,
            "delivered": self.delivered,
            "expected_deliveries": self.expected,
            "delivered_share": round(self.delivered_share, 4),
            "latency_ms": {"p50": self.p50_ms, "p99": self.p99_ms},
            "cpu_seconds": {k: round(v, 3) for k, v in self.cpu.items()},
            "run_queue_seconds": {k: round(v, 3) for k, v in self.waited.items()},
            "deployment_cpu_seconds": round(self.deployment_cpu, 3),
            "deployment_cpu_per_1000_deliveries": (
                None if self.cpu_per_1000 is None else round(self.cpu_per_1000, 5)
            ),
            "client_process_busy": [round(b, 3) for b in self.client_busy],
            "host_cpu_busy_share": None if self.host_busy is None else round(self.host_busy, 3),
            "per_worker": self.per_worker,
        }


def deployment_procs(run: Run, deployment: Deployment) -> dict[str, Proc]:
    owner = owner_index(deployment)
    procs: dict[str, Proc] = {}
    for index, server in enumerate(deployment.workers):
        role = " (owner)" if index == owner else ""
        procs[f"worker {index}{role}"] = server.proc
    if deployment.redis is not None:
        procs["redis-server"] = deployment.redis
    procs["emulator"] = run.emulator.proc
    return procs


def measure_deployment(
    run: Run, deployment: Deployment, arms: Sequence[Arm], rate: float
) -> DeploymentStep:
    """As `measure`, over every process of the deployment and each viewer process."""
    quiesce(run, arms)
    run.emulator.set_rate(rate)
    time.sleep(run.args.settle)
    procs = deployment_procs(run, deployment)
    clients = [proc.pid for proc in run.pool.procs if proc.pid is not None]
    first = int(time.time()) + 1
    end = first + run.seconds
    time.sleep(max(0.0, first - time.time()))
    cpu0 = {name: proc.cpu() for name, proc in procs.items()}
    wait0 = {name: proc.waited() for name, proc in procs.items()}
    client0 = [cpu_seconds(pid) for pid in clients]
    host0 = host_cpu_times()
    time.sleep(max(0.0, end - time.time()))
    host_busy = host_busy_share(host0, host_cpu_times())
    cpu = {name: proc.cpu() - cpu0[name] for name, proc in procs.items()}
    waited = {name: proc.waited() - wait0[name] for name, proc in procs.items()}
    busy = [(cpu_seconds(pid) - c0) / run.seconds for pid, c0 in zip(clients, client0, strict=True)]
    time.sleep(run.args.drain)
    offered = run.emulator.generated(first * 1000, end * 1000)
    latency: Counter[int] = Counter()
    per_worker: list[dict[str, Any]] = []
    for arm in arms:
        window = run.pool.window(arm.group, first, end)
        latency.update(window["latency"])
        connected = int(window["connected"])
        per_worker.append(
            {
                "worker": arm.server.label,
                "clients": connected,
                "delivered": int(window["tweets"]),
                "expected": offered * connected,
                "frames": int(window["frames"]),
                "p99_ms": percentile(window["latency"], 0.99),
            }
        )
    return DeploymentStep(
        setup=deployment.label,
        rate=rate,
        seconds=run.seconds,
        offered=offered,
        clients=sum(w["clients"] for w in per_worker),
        delivered=sum(w["delivered"] for w in per_worker),
        expected=sum(w["expected"] for w in per_worker),
        p50_ms=percentile(latency, 0.50),
        p99_ms=percentile(latency, 0.99),
        cpu=cpu,
        waited=waited,
        client_busy=busy,
        host_busy=host_busy,
        per_worker=per_worker,
    )


def run_setup(run: Run, label: str, workers: int) -> list[DeploymentStep]:
    """One setup, alone: its viewers at each rate, then one viewer per worker (per-tweet costs)."""
    clients = run.args.clients
    deployment = start_deployment(run, label, workers)
    steps: list[DeploymentStep] = []
    try:
        shares = len(deployment.workers)
        print(f"-- {label}: {clients:,} sample viewers over {shares} worker(s)")
        arms = [
            connect_viewers(run.pool, server, ["/ws"] * (clients // shares))[0]
            for server in deployment.workers
        ]
        for rate in run.args.redis_rates:
            steps.append(measure_deployment(run, deployment, arms, rate))
            print_deployment_step(steps[-1])
        for arm in arms:
            run.pool.close(arm.group)
        arms = [connect_viewers(run.pool, server, ["/ws"])[0] for server in deployment.workers]
        steps.append(measure_deployment(run, deployment, arms, REDIS_OVERHEAD_RATE))
        print_deployment_step(steps[-1])
        for arm in arms:
            run.pool.close(arm.group)
    finally:
        run.emulator.set_rate(0)
        deployment.stop()
    return steps


def print_deployment_step(step: DeploymentStep) -> None:
    rows = [
        [
            name,
            fmt(seconds, ".3f"),
            fmt(seconds / step.seconds * 100, ".1f", "%"),
            fmt(step.waited[name] / step.seconds * 100, ".0f", "%"),
        ]
        for name, seconds in step.cpu.items()
    ]
    print(
        f"  {step.setup} at {step.rate:.0f}/s: {step.clients:,} viewers, delivered "
        f"{step.delivered_share * 100:.1f}%, p50 {fmt(step.p50_ms)} ms, p99 {fmt(step.p99_ms)} "
        f"ms, deployment {fmt(step.cpu_per_1000, '.4f')} CPU s per 1k deliveries; viewer "
        f"processes {' / '.join(f'{b * 100:.0f}%' for b in step.client_busy)} busy, host "
        f"{fmt(None if step.host_busy is None else step.host_busy * 100, '.0f', '%')}"
    )
    print_table(("process", "cpu s", "of a core", "waited"), rows)


def scenario_redis(run: Run) -> None:
    """Every process of a Redis deployment against one process, each setup alone in turn:
    (a) one process, (b) one worker with Redis, (c) two workers with Redis, the same stream
    and viewers (split evenly over the workers), `--redis-rounds` times over."""
    if run.args.redis_url == "off":
        print("-- redis: skipped (--redis-url off)")
        run.results["redis"] = {"skipped": "--redis-url off"}
        return
    if shutil.which("redis-server") is None:
        reason = "no redis-server on PATH"
        print(f"-- redis: skipped ({reason})")
        run.results["redis"] = {"skipped": reason}
        run.target("2 workers + redis: CPU per delivery <= 1.2x one process", None, reason)
        return
    rounds: list[dict[str, list[DeploymentStep]]] = []
    for number in range(run.args.redis_rounds):
        print(f"-- redis round {number + 1} of {run.args.redis_rounds}")
        rounds.append({label: run_setup(run, label, workers) for label, workers in REDIS_SETUPS})
    report_redis(run, rounds)


def report_redis(run: Run, rounds: Sequence[dict[str, list[DeploymentStep]]]) -> None:
    rates = [*run.args.redis_rates, REDIS_OVERHEAD_RATE]
    base, one, two = (label for label, _ in REDIS_SETUPS)
    table = []
    worst: dict[str, float] = {}
    incomparable: dict[str, str] = {}
    for number, found in enumerate(rounds, 1):
        for index, rate in enumerate(rates):
            if rate == REDIS_OVERHEAD_RATE:
                continue
            a, b, c = (found[label][index] for label in (base, one, two))
            for step, versus in ((b, one), (c, two)):
                if step.cpu_per_1000 is not None and a.cpu_per_1000:
                    key = f"{versus} at {rate:.0f}/s"
                    worst[key] = max(worst.get(key, 0.0), step.cpu_per_1000 / a.cpu_per_1000)
                    # Batching makes a delivery cheaper the later it is: a setup that fell
                    # behind (other load starved it) looks cheap, so its figure says nothing.
                    short = min(a.delivered_share, step.delivered_share)
                    if short < REDIS_COMPARABLE:
                        incomparable[key] = (
                            f"not comparable in round {number}: delivered "
                            f"{a.delivered_share:.1%} vs {step.delivered_share:.1%}"
                        )
            table.append(
                [
                    str(number),
                    fmt(rate, ".0f"),
                    " / ".join(fmt(s.cpu_per_1000, ".4f") for s in (a, b, c)),
                    ratio(b.cpu_per_1000, a.cpu_per_1000),
                    ratio(c.cpu_per_1000, a.cpu_per_1000),
                    " / ".join(fmt(s.delivered_share * 100, ".1f", "%") for s in (a, b, c)),
                    " / ".join(fmt(s.p99_ms) for s in (a, b, c)),
                    " / ".join(fmt(s.worst_wait * 100, ".0f", "%") for s in (a, b, c)),
                    " / ".join(
                        fmt(sum(s.client_busy) / max(len(s.client_busy), 1) * 100, ".0f", "%")
                        for s in (a, b, c)
                    ),
                ]
            )
    print("Deployment CPU (workers + redis-server) per 1,000 deliveries: (a) / (b) / (c)")
    print_table(
        (
            "round",
            "rate/s",
            "cpu s/1k a / b / c",
            "b / a",
            "c / a",
            "delivered",
            "p99 ms",
            "worker waited",
            "viewer procs busy",
        ),
        table,
    )
    costs = redis_unit_costs(rounds)
    print("Per-tweet costs at one viewer per worker, ms of CPU per tweet (median of rounds):")
    print_table(("cost", "ms per tweet"), [[k, fmt(v, ".3f")] for k, v in costs.items()])
    for key, value in worst.items():
        if key.startswith(two):
            run.target(
                f"{key}: deployment CPU per delivery <= 1.2x one process (worst round)",
                None if key in incomparable else value <= 1.2,
                f"{value:.2f}x" + (f" ({incomparable[key]})" if key in incomparable else ""),
            )
    run.results["redis"] = {
        "rounds": [
            {label: [s.as_json() for s in steps] for label, steps in found.items()}
            for found in rounds
        ],
        "worst_ratio_to_one_process": {k: round(v, 3) for k, v in worst.items()},
        "per_tweet_ms": costs,
    }


def redis_unit_costs(rounds: Sequence[dict[str, list[DeploymentStep]]]) -> dict[str, float]:
    """From the one-viewer-per-worker steps: what one tweet costs each kind of process."""
    samples: dict[str, list[float]] = {}

    def add(name: str, seconds: float, step: DeploymentStep) -> None:
        if step.offered:
            samples.setdefault(name, []).append(seconds / step.offered * 1000)

    for found in rounds:
        a, b, c = (found[label][-1] for label, _ in REDIS_SETUPS)
        add("one process (upstream, route)", a.cpu["worker 0"], a)
        add("emulator, per tweet generated", a.cpu["emulator"], a)
        for step, setup in ((b, "1 worker"), (c, "2 workers")):
            for name, seconds in step.cpu.items():
                if name.startswith("worker"):
                    role = "owner" if "owner" in name else "subscriber"
                    add(f"{setup}: {role} (read, decode, route)", seconds, step)
            add(f"{setup}: redis-server", step.cpu.get("redis-server", 0.0), step)
    return {k: round(sorted(v)[len(v) // 2], 4) for k, v in samples.items()}


# --------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="short steps, fewer viewers")
    parser.add_argument(
        "--scenario",
        action="append",
        choices=SCENARIOS + EXTRA_SCENARIOS,
        help=f"run only these (repeatable); default all: {', '.join(SCENARIOS)}",
    )
    parser.add_argument("--seconds", type=int, help="seconds per measured step (10; quick 4)")
    parser.add_argument(
        "--clients", type=int, help="viewers in the main scenarios (1000; quick 300)"
    )
    parser.add_argument("--idle-clients", type=int, help="idle viewers (5000; quick 1000)")
    parser.add_argument("--client-procs", type=int, default=2, help="client processes (2)")
    parser.add_argument("--client-impl", choices=("raw", "trio-websocket"), default="raw")
    parser.add_argument(
        "--rates", type=float, nargs="+", default=[5.0, 20.0, 50.0], help="sample steps"
    )
    parser.add_argument(
        "--redis-url",
        default="auto",
        choices=("auto", "off"),
        help='the redis scenario: "auto" (a redis-server of its own per setup) or "off"',
    )
    parser.add_argument(
        "--redis-rates",
        type=float,
        nargs="+",
        default=[5.0, 50.0],
        help="the redis scenario's rates (5 50)",
    )
    parser.add_argument(
        "--redis-rounds", type=int, default=1, help="the redis scenario's setups, n times (1)"
    )
    parser.add_argument(
        "--pin-server", metavar="CPUS", help="run every server under `taskset -c CPUS`"
    )
    parser.add_argument(
        "--pin-clients", metavar="CPUS", help="pin the client processes to CPUS (e.g. 1 or 2,3)"
    )
    parser.add_argument(
        "--seed-rates",
        type=float,
        nargs="+",
        default=[5.0, 50.0, 200.0],
        help="the seed scenario's rates: the usual load first, overload last (5 50 200)",
    )
    parser.add_argument(
        "--seed-viewers",
        choices=("deflate", "plain"),
        nargs="+",
        default=["deflate", "plain"],
        help="the seed scenario's viewers: offering permessage-deflate, not (both)",
    )
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--no-json", action="store_true")
    args = parser.parse_args(argv)
    args.seconds = args.seconds or (4 if args.quick else 10)
    args.clients = args.clients or (300 if args.quick else 1000)
    args.idle_clients = args.idle_clients or (1000 if args.quick else 5000)
    args.settle = 1.0 if args.quick else 2.0
    args.drain = 2.0 if args.quick else 3.0
    args.filter_scenario_rate = 50.0
    args.slow_readers = 200
    args.slow_rate = 50.0
    args.slow_seconds = args.seconds * 2
    args.gc_rates = [5.0, 20.0, 50.0]
    args.gc_clients = 150 if args.quick else 300
    args.scenarios = args.scenario or list(SCENARIOS)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    global SERVER_CPUS
    SERVER_CPUS = args.pin_server
    limit = raise_fd_limit()
    stamp = datetime.now(UTC)
    print(
        f"pats-trio fan-out benchmark, {'quick' if args.quick else 'full'} run: "
        f"{', '.join(args.scenarios)}; {args.seconds}s steps, {args.client_procs} client "
        f"processes ({args.client_impl}), open files {limit:,}"
    )
    print(f"Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs\n")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="pats-bench-") as scratch:
        workdir = Path(scratch)
        emulator = Emulator(workdir, args.seed)
        client_cpus = parse_cpus(args.pin_clients) if args.pin_clients else None
        pool = ClientPool(args.client_procs, args.client_impl, client_cpus)
        run = Run(args, workdir, emulator, pool)
        table: dict[str, Callable[[], None]] = {
            "filter": lambda: scenario_filter(run),
            "idle": lambda: scenario_idle(run),
            "slow": lambda: scenario_slow(run),
            "gc": lambda: scenario_gc(run),
            "redis": lambda: scenario_redis(run),
            "deflate": lambda: scenario_deflate(run),
            "seed": lambda: scenario_seed(run),
            "profile": lambda: scenario_profile(run),
        }
        try:
            want = set(args.scenarios)
            if want & {"sample", "capacity"}:
                table["sample"] = lambda: scenario_sample(
                    run, steps="sample" in want, capacity="capacity" in want
                )
            for name in SCENARIOS + EXTRA_SCENARIOS:
                if name in want and name in table:
                    try:
                        table[name]()
                    except Exception as error:  # one broken scenario must not lose the rest
                        print(f"!! scenario {name} failed: {error!r}")
                        run.results[name] = {"error": repr(error)}
        finally:
            pool.shutdown()
            emulator.close()
    elapsed = time.monotonic() - started
    print("Targets:")
    for t in run.targets:
        print(f"  [{t['result']}] {t['target']}: {t['figure']}")
    print(f"\n{elapsed:.0f}s in all")
    if not args.no_json:
        args.out.mkdir(parents=True, exist_ok=True)
        path = args.out / f"{stamp:%Y%m%dT%H%M%SZ}-fanout.json"
        document = {
            "benchmark": "fanout",
            "started": stamp.isoformat(),
            "seconds": round(elapsed, 1),
            "machine": {
                "python": platform.python_version(),
                "platform": platform.platform(),
                "cpus": os.cpu_count(),
            },
            "options": {
                k: v for k, v in vars(args).items() if isinstance(v, int | float | str | list)
            },
            "targets": run.targets,
            "results": run.results,
        }
        path.write_text(json.dumps(document, indent=1, default=str) + "\n")
        print(f"wrote {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
