"""Two workers on PATS_SOURCE=x share one X stream and one rule set through a real redis-server."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from trio_websocket import open_websocket_url

from pats_trio.app import PatsApp, create_app
from pats_trio.emulator.xapi import XEmulator, serve_xapi
from tests.conftest import settings_for_tests
from tests.redis_server import RedisServer
from tests.support import Viewer, status

TIMEOUT = 30
TOKEN = "scaling-test-token-0123456789"


@dataclass
class Worker:
    app: PatsApp
    ws_url: str
    scope: trio.CancelScope

    @property
    def owner(self) -> bool:
        return self.app.worker.hub.broker.owner


async def _serve(app: PatsApp, *, task_status: trio.TaskStatus[Worker]) -> None:
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(serve, app, config)
            ws_url = "ws" + binds[0].removeprefix("http") + "/ws"
            task_status.started(Worker(app, ws_url, scope))


async def start_x_worker(
    nursery: trio.Nursery,
    api_url: str,
    redis: RedisServer,
    name: str,
    *,
    token: str = TOKEN,
    **settings: object,
) -> Worker:
    """One worker of an X deployment on `redis`, with a lease short enough for takeover tests."""
    config = settings_for_tests(
        source_setting="x",
        x_api_url=api_url,
        x_bearer_token=token,
        redis_url=redis.url,
        redis_lease_seconds=2.0,
        redis_heartbeat_seconds=0.2,
        **settings,
    )
    worker: Worker = await nursery.start(_serve, create_app(config, worker_id=name))
    return worker


async def wait_for(predicate: Callable[[], bool]) -> None:
    """Ownership changes inside the broker, which wakes no one: poll it."""
    while True:
        if predicate():
            return
        await trio.sleep(0.02)


def carried(emulator: XEmulator) -> list[str]:
    return sorted(p for rule in emulator.rules.values() for p in rule.value.split(" OR "))


def most_open_at_once(emulator: XEmulator) -> int:
    moments = []
    for record in emulator.connections:
        if record.status == 200:
            moments.append((record.opened_at, 1))
            moments.append((record.closed_at if record.closed_at is not None else 1e18, -1))
    open_now = most = 0
    for _, step in sorted(moments, key=lambda m: (m[0], m[1])):
        open_now += step
        most = max(most, open_now)
    return most


async def test_two_workers_keep_one_stream_and_one_rule_set_through_a_takeover(
    nursery: trio.Nursery, redis: RedisServer
) -> None:
    emulator = XEmulator(rate=0, filter_rate=0, seed=11, token=TOKEN)
    emulator.reject_terms = {"forbidden"}
    api_url = await nursery.start(serve_xapi, emulator)

    with trio.fail_after(TIMEOUT):
        first, second = [
            await start_x_worker(nursery, api_url, redis, name, redis_prefix="xtest")
            for name in ("x1", "x2")
        ]
        async with (
            open_websocket_url(first.ws_url + "?filter=python") as ws_python,
            open_websocket_url(second.ws_url + "?filter=trio") as ws_trio,
            open_websocket_url(second.ws_url + "?filter=forbidden") as ws_bad,
        ):
            python, trio_viewer, bad = Viewer(ws_python), Viewer(ws_trio), Viewer(ws_bad)
            # The refusal travels through Redis to the worker whose viewer asked.
            assert (await bad.next_of("error"))["code"] == "x_rule_rejected"
            await emulator.wait_until(lambda e: carried(e) == ["python", "trio"])
            await emulator.wait_until(lambda e: len(e.open_connections()) == 1)
            await wait_for(lambda: [w.owner for w in (first, second)].count(True) == 1)
            emulator.inject(status("python and more", 1))
            emulator.inject(status("trio nurseries", 2))
            assert [t["id_str"] for t in await python.tweets(1)] == ["1"]
            assert [t["id_str"] for t in await trio_viewer.tweets(1)] == ["2"]
            assert not any(f["type"] == "error" for f in python.frames + trio_viewer.frames)

        owner, other = (first, second) if first.owner else (second, first)
        async with open_websocket_url(other.ws_url + "?filter=golang") as ws_go:
            golang = Viewer(ws_go)
            await golang.next_of("hello")
            owner.scope.cancel()
            await wait_for(lambda: other.owner)
            await emulator.wait_until(lambda e: carried(e) == ["golang"])
            await emulator.wait_until(lambda e: len(e.open_connections()) == 1)
            emulator.inject(status("golang 2.0", 3))
            assert [t["id_str"] for t in await golang.tweets(1)] == ["3"]
    assert most_open_at_once(emulator) == 1, "one stream for the deployment, at every instant"
    assert all(rule.tag == "pats-trio" for rule in emulator.rules.values())
