"""Scale-out as people run it: hypercorn worker processes, a real redis-server, and the emulator
as its own process (`pats-trio emulate --control`), all on loopback.

The emulator's connection log is the referee: at most one sample and one filter connection at any
moment (a filter restart briefly overlaps the old track with the new one, never the same track).
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import AsyncIterator, Iterable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, open_websocket_url

from tests.redis_server import RedisServer
from tests.support import Viewer, free_port, hypercorn_argv, pats_trio_argv, status

STARTUP_TIMEOUT = 40.0
TEST_TIMEOUT = 90.0
LEASE_SECONDS = 3.0


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TWITTER_", "PATS_", "REDIS"))}
    return env | extra


def hypercorn_workers_argv(workers: int, port: int) -> list[str]:
    """hypercorn's own multi-worker mode, serving the app on a loopback port."""
    return hypercorn_argv(port, "--workers", str(workers))


@dataclass
class Emulated:
    """The emulator process: its API base URL and its control API."""

    base_url: str
    control_url: str

    async def inject(self, *tweets: dict[str, Any]) -> None:
        async with httpx.AsyncClient() as client:
            reply = await client.post(self.control_url + "/inject", content=orjson.dumps(tweets))
            reply.raise_for_status()

    async def connections(self) -> list[dict[str, Any]]:
        async with httpx.AsyncClient() as client:
            reply = await client.get(self.control_url + "/connections")
            reply.raise_for_status()
            records: list[dict[str, Any]] = reply.json()
            return records

    async def wait_for_open(self, kind: str, track: str | None = None) -> dict[str, Any]:
        while True:
            for record in await self.connections():
                if not (record["kind"] == kind and record["open"] and record["status"] == 200):
                    continue
                if track is None or sorted(record["track"].split(",")) == sorted(track.split(",")):
                    return record
            await trio.sleep(0.05)


@dataclass
class Cluster:
    """Everything a scale-out test runs, torn down in reverse order."""

    nursery: trio.Nursery
    tmp_path: Path
    redis: RedisServer
    emulator: Emulated | None = None
    processes: list[trio.Process] = field(default_factory=list)

    async def _run(self, argv: list[str], env: dict[str, str]) -> trio.Process:
        """A child in a session of its own, so that `stop` can kill its workers too."""
        process: trio.Process = await self.nursery.start(
            partial(
                trio.run_process,
                argv,
                env=env,
                cwd=self.tmp_path,
                check=False,
                start_new_session=True,
            )
        )
        self.processes.append(process)
        return process

    async def start_emulator(self) -> Emulated:
        port = free_port()
        await self._run(
            pats_trio_argv("emulate", "--port", str(port), "--rate", "0", "--control"),
            clean_env(),
        )
        base = f"http://127.0.0.1:{port}"
        await wait_until_answering(base + "/_control/connections")
        self.emulator = Emulated(base + "/1.1", base + "/_control")
        return self.emulator

    def _server_env(self, prefix: str, **extra: str) -> dict[str, str]:
        """The settings every server of a test shares; without `start_emulator`, `extra` says
        where the source is."""
        if self.emulator is not None:
            extra = {"TWITTER_STREAM_URL": self.emulator.base_url, **extra}
        return clean_env(
            **extra,
            REDIS_URL=self.redis.url,
            PATS_REDIS_PREFIX=prefix,
            PATS_REDIS_LEASE_SECONDS=str(LEASE_SECONDS),
            PATS_REDIS_HEARTBEAT_SECONDS="0.5",
            PATS_LINGER_SECONDS="1",
            PATS_FILTER_DEBOUNCE_SECONDS="0.1",
            PATS_MIN_RECONNECT_SECONDS="0",
            PATS_HISTORY="0",
            PATS_SHUTDOWN_GRACE_SECONDS="5",
        )

    async def start_server(self, workers: int, prefix: str, **env: str) -> str:
        """`hypercorn --workers N` on its own port; returns the base URL."""
        port = free_port()
        await self._run(hypercorn_workers_argv(workers, port), self._server_env(prefix, **env))
        url = f"http://127.0.0.1:{port}"
        await wait_until_answering(url + "/healthz")
        return url

    async def start_supervisor(self, workers: int, prefix: str) -> tuple[str, trio.Process]:
        """`pats-trio serve --workers N` on its own port; returns the base URL and the process."""
        port = free_port()
        argv = pats_trio_argv("serve", "--port", str(port), "--workers", str(workers))
        supervisor = await self._run(argv, self._server_env(prefix))
        url = f"http://127.0.0.1:{port}"
        await wait_until_answering(url + "/healthz")
        return url, supervisor

    def stop(self) -> None:
        for process in reversed(self.processes):
            kill_group(process)


def kill_group(process: trio.Process) -> None:
    """The process and its workers: it was started in a session of its own, so they share its
    group, even once it has exited. Killing only hypercorn's master would leave its workers
    running, reparented to init."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


async def wait_until_answering(url: str) -> None:
    with trio.fail_after(STARTUP_TIMEOUT):
        async with httpx.AsyncClient() as client:
            while True:
                try:
                    if (await client.get(url)).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await trio.sleep(0.1)


@asynccontextmanager
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    redis = RedisServer()
    await redis.start()
    try:
        async with trio.open_nursery() as nursery:
            running = Cluster(nursery, tmp_path, redis)
            try:
                yield running
            finally:
                running.stop()
    finally:
        await redis.stop()


async def worker_pids(url: str, count: int) -> dict[str, int]:
    """Ask /readyz until `count` different workers answered: worker id -> pid."""
    found: dict[str, int] = {}
    async with httpx.AsyncClient() as client:
        while len(found) < count:
            body = (await client.get(url + "/readyz", headers={"Connection": "close"})).json()
            found[body["worker"]] = body["pid"]
    return found


async def viewers_on_every_worker(
    stack: AsyncExitStack, url: str, workers: int, query: str = ""
) -> dict[str, Viewer]:
    """Open sockets until every worker serves one of them; keep one per worker."""
    ws_url = "ws" + url.removeprefix("http") + "/ws" + query
    kept: dict[str, Viewer] = {}
    while len(kept) < workers:
        ws: WebSocketConnection = await stack.enter_async_context(open_websocket_url(ws_url))
        viewer = Viewer(ws)
        worker = (await viewer.next_of("hello"))["worker"]
        if worker in kept:
            await ws.aclose()
        else:
            kept[worker] = viewer
    return kept


def max_open_at_once(records: Iterable[dict[str, Any]], *, same_track: bool = False) -> int:
    """The most served connections open at one moment (of one track at a time if `same_track`)."""
    served = [r for r in records if r["status"] == 200]
    groups: dict[str, list[dict[str, Any]]] = {}
    for record in served:
        groups.setdefault(record["track"] if same_track else "", []).append(record)
    most = 0
    for group in groups.values():
        edges = []
        for record in group:
            edges.append((record["opened_at"], 1))
            closed = record["closed_at"]
            edges.append((closed if closed is not None else float("inf"), -1))
        current = 0
        for _, step in sorted(edges):
            current += step
            most = max(most, current)
    return most


async def wait_for_tweets(viewer: Viewer, ids: list[str]) -> None:
    got = await viewer.tweets(len(ids))
    assert [t["id_str"] for t in got] == ids


async def assert_nothing_more(viewers: Iterable[Viewer], seconds: float = 0.5) -> None:
    for viewer in viewers:
        with trio.move_on_after(seconds):
            extra = await viewer.tweets(1)
            pytest.fail(f"a duplicate or stray tweet arrived: {extra}")


@pytest.mark.parametrize("workers", [2, 3])
async def test_workers_behind_one_port_share_one_upstream_and_one_keyword_union(
    workers: int, tmp_path: Path
) -> None:
    with trio.fail_after(TEST_TIMEOUT):
        async with cluster(tmp_path) as running, AsyncExitStack() as stack:
            emulator = await running.start_emulator()
            url = await running.start_server(workers, prefix=f"port{workers}")
            sample = await viewers_on_every_worker(stack, url, workers)
            python = await viewers_on_every_worker(stack, url, workers, "?filter=python")
            await emulator.wait_for_open("sample")
            await emulator.wait_for_open("filter", "python")

            owner = await wait_for_owner(running.redis, f"port{workers}")
            elsewhere = next(worker for worker in python if worker != owner)
            # A new keyword on a worker that does not own the upstream reaches the owner.
            ws_url = "ws" + url.removeprefix("http") + "/ws?filter=trio"
            trio_viewer: Viewer | None = None
            while trio_viewer is None:
                ws = await stack.enter_async_context(open_websocket_url(ws_url))
                candidate = Viewer(ws)
                if (await candidate.next_of("hello"))["worker"] == elsewhere:
                    trio_viewer = candidate
                else:
                    await ws.aclose()
            await emulator.wait_for_open("filter", "python,trio")
            # Readers of every worker follow the stream: give the switch a moment to settle.
            await trio.sleep(0.5)

            await emulator.inject(
                status("a plain sample tweet", 700),
                status("python tip of the day", 701),
                status("trio nurseries explained", 702),
            )
            for viewer in sample.values():
                await wait_for_tweets(viewer, ["700", "701", "702"])
            for viewer in python.values():
                await wait_for_tweets(viewer, ["701"])
            await wait_for_tweets(trio_viewer, ["702"])
            await assert_nothing_more([*sample.values(), *python.values(), trio_viewer])

            records = await emulator.connections()
            samples = [r for r in records if r["kind"] == "sample"]
            filters = [r for r in records if r["kind"] == "filter"]
            assert max_open_at_once(samples) == 1
            assert max_open_at_once(filters, same_track=True) == 1
            assert max_open_at_once(filters) <= 2


async def test_sigkill_of_the_owner_hands_the_upstream_to_another_server(tmp_path: Path) -> None:
    """Two servers (two machines, say) on one Redis; the owner's worker is killed outright."""
    with trio.fail_after(TEST_TIMEOUT):
        async with cluster(tmp_path) as running, AsyncExitStack() as stack:
            emulator = await running.start_emulator()
            first = await running.start_server(1, prefix="kill")
            await wait_for_owner(running.redis, "kill")
            second = await running.start_server(1, prefix="kill")
            [owner_pid] = (await worker_pids(first, 1)).values()

            survivor = Viewer(
                await stack.enter_async_context(open_websocket_url(_ws(second) + "?filter=rust"))
            )
            await survivor.next_of("hello")
            doomed = Viewer(
                await stack.enter_async_context(open_websocket_url(_ws(first) + "?filter=gopher"))
            )
            await doomed.next_of("hello")
            await emulator.wait_for_open("filter", "gopher,rust")
            await trio.sleep(0.3)
            await emulator.inject(status("rust before", 800))
            await wait_for_tweets(survivor, ["800"])

            os.kill(owner_pid, signal.SIGKILL)
            killed_at = trio.current_time()
            # The dead worker's keyword expires with its heartbeat, and the new owner connects.
            record = await emulator.wait_for_open("filter", "rust")
            took = trio.current_time() - killed_at
            assert took < LEASE_SECONDS, f"the takeover took {took:.1f}s"
            await trio.sleep(0.3)
            await emulator.inject(status("rust after", 801))
            await wait_for_tweets(survivor, ["801"])
            await assert_nothing_more([survivor])
            assert record["open"]
            filters = [r for r in await emulator.connections() if r["kind"] == "filter"]
            assert max_open_at_once(filters, same_track=True) == 1


async def test_a_redis_restart_is_survived_by_every_worker(tmp_path: Path) -> None:
    with trio.fail_after(TEST_TIMEOUT):
        async with cluster(tmp_path) as running, AsyncExitStack() as stack:
            emulator = await running.start_emulator()
            url = await running.start_server(2, prefix="restart")
            viewers = await viewers_on_every_worker(stack, url, 2)
            await emulator.wait_for_open("sample")
            await trio.sleep(0.3)
            await emulator.inject(status("before", 900))
            for viewer in viewers.values():
                await wait_for_tweets(viewer, ["900"])

            await running.redis.stop()
            for viewer in viewers.values():
                while (await viewer.next_of("status"))["state"] != "degraded":
                    pass
            await running.redis.start()
            # A new owner (maybe the old one) connects again once it holds the lease.
            await wait_for_owner(running.redis, "restart")
            await emulator.wait_for_open("sample")
            for viewer in viewers.values():
                while (await viewer.next_of("status"))["state"] != "connected":
                    pass
            await emulator.inject(status("after", 901))
            for viewer in viewers.values():
                await wait_for_tweets(viewer, ["901"])
            # Same sockets throughout, and the same worker processes.
            assert all(process.returncode is None for process in running.processes)


async def wait_for_owner(redis: RedisServer, prefix: str) -> str:
    """The worker id of the lease's holder, once there is one."""
    while True:
        owner = await redis.cli("GET", f"{prefix}:owner")
        if owner:
            return owner.split("|", 1)[0]
        await trio.sleep(0.05)


def _ws(url: str) -> str:
    return "ws" + url.removeprefix("http") + "/ws"


async def test_several_workers_without_redis_log_a_warning_that_says_why(tmp_path: Path) -> None:
    port = free_port()
    argv = hypercorn_workers_argv(2, port)
    log = tmp_path / "server.log"
    with trio.fail_after(TEST_TIMEOUT), log.open("wb") as sink:
        async with trio.open_nursery() as nursery:
            process: trio.Process = await nursery.start(
                partial(
                    trio.run_process,
                    argv,
                    env=clean_env(PATS_EMULATOR_RATE="0"),
                    cwd=tmp_path,
                    stdout=sink,
                    stderr=sink,
                    check=False,
                    start_new_session=True,
                )
            )
            try:
                await wait_until_answering(f"http://127.0.0.1:{port}/healthz")
                while True:
                    if b"REDIS_URL is not set" in log.read_bytes():
                        break
                    await trio.sleep(0.1)
            finally:
                kill_group(process)
    text = log.read_text()
    assert "one of 2 workers" in text
    assert "breaks the one-connection-per-account rule" in text


async def test_serve_workers_replaces_a_sigkilled_owner_and_closes_viewers_with_1001(
    tmp_path: Path,
) -> None:
    """`pats-trio serve --workers 3`: one port, the owner killed outright, then SIGTERM."""
    with trio.fail_after(TEST_TIMEOUT):
        async with cluster(tmp_path) as running, AsyncExitStack() as stack:
            emulator = await running.start_emulator()
            url, supervisor = await running.start_supervisor(3, prefix="sup")
            pids = await worker_pids(url, 3)
            viewers = await viewers_on_every_worker(stack, url, 3)
            await emulator.wait_for_open("sample")
            owner = await wait_for_owner(running.redis, "sup")
            await trio.sleep(0.3)
            await emulator.inject(status("before", 1100))
            for viewer in viewers.values():
                await wait_for_tweets(viewer, ["1100"])

            os.kill(pids[owner], signal.SIGKILL)
            killed_at = trio.current_time()
            survivors = {worker: v for worker, v in viewers.items() if worker != owner}
            # A survivor takes the lease and connects upstream within the TTL.
            while True:
                if await wait_for_owner(running.redis, "sup") != owner:
                    break
                await trio.sleep(0.05)
            await emulator.wait_for_open("sample")
            assert trio.current_time() - killed_at < LEASE_SECONDS
            await trio.sleep(0.3)
            await emulator.inject(status("after", 1101))
            for viewer in survivors.values():
                await wait_for_tweets(viewer, ["1101"])
            await assert_nothing_more(survivors.values())
            # The supervisor replaced the dead worker: three workers answer again.
            replaced = await worker_pids(url, 3)
            assert owner not in replaced
            assert len(set(replaced.values()) - set(pids.values())) == 1

            supervisor.send_signal(signal.SIGTERM)
            for viewer in survivors.values():
                with pytest.raises(ConnectionClosed) as closed:
                    await viewer.read_until_closed()
                assert closed.value.reason is not None
                assert closed.value.reason.code == 1001
            with trio.fail_after(15):
                await supervisor.wait()
            assert supervisor.returncode == 0


async def gone(pid: int) -> None:
    """Until the process has exited (a zombie waiting for init to reap it counts as exited)."""
    while True:
        try:
            stat = await trio.Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return
        if stat[stat.rindex(")") + 2] in "ZX":
            return
        await trio.sleep(0.1)


async def test_workers_close_their_viewers_and_exit_when_the_supervisor_is_sigkilled(
    tmp_path: Path,
) -> None:
    """A SIGKILLed supervisor cannot stop its workers: they must not serve on unsupervised."""
    with trio.fail_after(TEST_TIMEOUT):
        async with cluster(tmp_path) as running, AsyncExitStack() as stack:
            await running.start_emulator()
            url, supervisor = await running.start_supervisor(2, prefix="orphans")
            pids = await worker_pids(url, 2)
            viewers = await viewers_on_every_worker(stack, url, 2)

            supervisor.kill()
            for viewer in viewers.values():
                with pytest.raises(ConnectionClosed) as closed:
                    await viewer.read_until_closed()
                assert closed.value.reason is not None
                assert closed.value.reason.code == 1001
            for pid in pids.values():
                await gone(pid)
