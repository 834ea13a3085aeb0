"""Takeovers between worker processes, as they fail in production: the owner SIGKILLed or frozen
(SIGSTOP), while the emulators publish a numbered sequence that a viewer on another server reads.

The emulators' connection records are the referee: never two connections of one stream open at
once (the Twitter emulator ends the older stream of an account with a code 2 "duplicate stream"
as Twitter does, and records it as `replaced_by`), and every number arrives exactly once where
the source can replay (Jetstream).
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio
from trio_websocket import ConnectionClosed, open_websocket_url

from pats_trio.emulator.jetstream import JetstreamEmulator, JetstreamURLs, did_for, serve_jetstream
from tests.support import Viewer, status
from tests.test_scaling import (
    LEASE_SECONDS,
    TEST_TIMEOUT,
    Cluster,
    Emulated,
    _ws,
    cluster,
    max_open_at_once,
    wait_for_owner,
    worker_pids,
)

TICK = 0.05
"""The emulators publish one numbered post every TICK seconds (20 a second)."""


@dataclass
class Recorder:
    """Reads a viewer's frames in the background: statuses with the test's time, tweet texts."""

    viewer: Viewer
    statuses: list[tuple[float, str]] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)

    async def run(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                self._record(await self.viewer.next_frame())

    def _record(self, frame: dict[str, Any]) -> None:
        if frame["type"] == "status":
            self.statuses.append((trio.current_time(), frame["state"]))
        elif frame["type"] == "tweet":
            self.texts.append(frame["tweet"]["text"])
        elif frame["type"] == "tweets":
            self.texts.extend(tweet["text"] for tweet in frame["tweets"])

    def state(self) -> str | None:
        return self.statuses[-1][1] if self.statuses else None

    def states_after(self, moment: float) -> list[str]:
        return [state for at, state in self.statuses if at > moment]


async def until(predicate: Callable[[], bool]) -> None:
    while True:
        if predicate():
            return
        await trio.sleep(0.02)


async def new_open(emulator: Emulated, kind: str, known: set[int]) -> dict[str, Any]:
    """The first served connection of `kind` not among `known` ids, once it is open."""
    while True:
        for record in await emulator.connections():
            fresh = record["id"] not in known and record["status"] == 200
            if fresh and record["kind"] == kind and record["open"]:
                return record
        await trio.sleep(0.02)


async def owner_and_survivor(
    running: Cluster, stack: AsyncExitStack, prefix: str, **env: str
) -> tuple[int, Recorder]:
    """Two one-worker servers sharing a Redis: the first owns the upstream (its pid is
    returned), and a recording viewer watches from the second."""
    first = await running.start_server(1, prefix=prefix, **env)
    await wait_for_owner(running.redis, prefix)
    second = await running.start_server(1, prefix=prefix, **env)
    [owner_pid] = (await worker_pids(first, 1)).values()
    survivor = Recorder(Viewer(await stack.enter_async_context(open_websocket_url(_ws(second)))))
    await survivor.viewer.next_of("hello")
    running.nursery.start_soon(survivor.run)
    return owner_pid, survivor


async def inject_numbered(emulator: Emulated, sent: list[int], first: int) -> None:
    """One numbered tweet every TICK, until cancelled."""
    number = first
    while True:
        await emulator.inject(status(f"tick {number}", number))
        sent.append(number)
        number += 1
        await trio.sleep(TICK)


async def test_a_sigkilled_owner_is_replaced_at_once_and_viewers_are_told(
    tmp_path: Path,
) -> None:
    """Viewers of the other workers saw "connected" for the 6.5 s the deployment had no
    upstream after its owner was killed, and lost ~130 tweets each. On one host, a worker sees
    the owner's process is gone and takes over at its next poll, and tells viewers meanwhile."""
    with trio.fail_after(TEST_TIMEOUT):
        async with cluster(tmp_path) as running, AsyncExitStack() as stack:
            emulator = await running.start_emulator()
            owner_pid, survivor = await owner_and_survivor(running, stack, "killed")
            await emulator.wait_for_open("sample")
            await until(lambda: survivor.state() == "connected")
            before = {record["id"] for record in await emulator.connections()}

            sent: list[int] = []
            async with trio.open_nursery() as injecting:
                injecting.start_soon(inject_numbered, emulator, sent, 10_000)
                await trio.sleep(1.0)
                os.kill(owner_pid, signal.SIGKILL)
                killed_at = trio.current_time()
                await new_open(emulator, "sample", before)
                gap = trio.current_time() - killed_at
                await trio.sleep(1.5)
                injecting.cancel_scope.cancel()
            await trio.sleep(0.5)
            got = [int(text.split()[1]) for text in survivor.texts if text.startswith("tick")]
            lost = sorted(set(sent) - set(got))
            told = survivor.states_after(killed_at)
            records = [r for r in await emulator.connections() if r["kind"] == "sample"]
    print(f"takeover after SIGKILL: {gap:.2f}s, {len(lost)} of {len(sent)} tweets lost, {told}")
    assert gap < 0.3 * LEASE_SECONDS, f"the new owner connected {gap:.2f}s after the kill"
    assert told[0] != "connected", f"viewers were not told of the takeover: {told}"
    assert told[-1] == "connected"
    assert len(got) == len(set(got)), "a tweet arrived twice"
    assert len(lost) <= (gap + 0.5) / TICK
    assert max_open_at_once(records) == 1
    assert not [r for r in records if r["replaced_by"] is not None]


async def test_a_frozen_owner_keeps_the_stream_until_it_has_closed_it(tmp_path: Path) -> None:
    """A worker frozen with SIGSTOP keeps its upstream sockets open: the kernel answers for it.
    A successor that connected once the lease expired had two of each stream open (8.4 s of a
    15 s freeze), a duplicate stream to Twitter. It must wait until the frozen worker, thawed,
    has closed its own; meanwhile viewers are told the feed is degraded."""
    freeze = 2 * LEASE_SECONDS
    with trio.fail_after(TEST_TIMEOUT):
        async with cluster(tmp_path) as running, AsyncExitStack() as stack:
            emulator = await running.start_emulator()
            owner_pid, survivor = await owner_and_survivor(running, stack, "frozen")
            await emulator.wait_for_open("sample")
            await until(lambda: survivor.state() == "connected")
            before = {record["id"] for record in await emulator.connections()}

            os.kill(owner_pid, signal.SIGSTOP)
            stopped_at = trio.current_time()
            try:
                with trio.move_on_after(freeze):
                    await until(lambda: survivor.state() not in (None, "connected"))
                told_after = trio.current_time() - stopped_at
                await trio.sleep_until(stopped_at + freeze)
            finally:
                os.kill(owner_pid, signal.SIGCONT)
            await new_open(emulator, "sample", before)
            took = trio.current_time() - stopped_at
            await until(lambda: survivor.state() == "connected")
            await trio.sleep(0.3)
            await emulator.inject(status("after the thaw", 1_400))
            await until(lambda: "after the thaw" in survivor.texts)
            records = [r for r in await emulator.connections() if r["kind"] == "sample"]
    print(f"SIGSTOP {freeze:.0f}s: told after {told_after:.2f}s, new stream after {took:.2f}s")
    assert not [r for r in records if r["replaced_by"] is not None], "a duplicate stream"
    assert max_open_at_once(records) == 1
    assert took >= freeze
    assert told_after < 0.6 * LEASE_SECONDS, f"viewers were told after {told_after:.2f}s"


async def test_a_bluesky_takeover_loses_no_post(tmp_path: Path) -> None:
    """Jetstream replays from a cursor, and the owner stores it in Redis with every batch: a
    viewer on another server gets every post exactly once while the owner is SIGKILLed."""
    posts = 100
    jetstream = JetstreamEmulator(rate=0, seed=21)
    with trio.fail_after(TEST_TIMEOUT):
        async with trio.open_nursery() as emulators:
            urls: JetstreamURLs = await emulators.start(serve_jetstream, jetstream)
            env = {
                "PATS_SOURCE": "bluesky",
                "PATS_BLUESKY_HOSTS": urls.jetstream,
                "PATS_BLUESKY_APPVIEW": urls.appview,
            }
            async with cluster(tmp_path) as running, AsyncExitStack() as stack:
                owner_pid, survivor = await owner_and_survivor(running, stack, "sky", **env)
                await jetstream.wait_until(lambda e: len(e.open_connections()) == 1)
                await until(lambda: survivor.state() == "connected")

                for number in range(posts):
                    jetstream.post(did_for(f"poster{number % 7}"), f"post {number}")
                    if number == posts // 3:
                        os.kill(owner_pid, signal.SIGKILL)
                    await trio.sleep(TICK)
                with trio.move_on_after(10):
                    await until(lambda: len(survivor.texts) >= posts)
                await trio.sleep(0.5)
            emulators.cancel_scope.cancel()
    got = [int(text.split()[1]) for text in survivor.texts]
    assert sorted(got) == list(range(posts)), f"lost {sorted(set(range(posts)) - set(got))}"
    assert len(jetstream.connections) == 2
