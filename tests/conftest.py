"""Fixtures that build real servers on loopback port 0: the emulator and the app under hypercorn."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import pytest
import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from pats_trio.app import create_app
from pats_trio.config import Settings
from pats_trio.emulator import Emulator, serve_emulator
from tests.redis_server import RedisServer
from tests.support import Served


def settings_for_tests(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "linger_seconds": 0.5,
        "filter_debounce_seconds": 0.05,
        "min_reconnect_seconds": 0.0,
        "emulator_rate": 0.0,
        # Most tests count exactly the tweets they inject; history has tests of its own.
        "history_size": 0,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def make_served(
    nursery: trio.Nursery,
) -> Callable[..., Any]:
    """Start an emulator and the app reading from it; returns an async factory. `hypercorn`
    sets attributes of hypercorn's `Config` (`certfile` and `keyfile` serve it over TLS)."""

    async def start(
        emulator: Emulator | None = None,
        *,
        hypercorn: Mapping[str, Any] | None = None,
        **overrides: Any,
    ) -> Served:
        emulator = emulator or Emulator(rate=0, filter_rate=0, seed=1)
        base_url = await nursery.start(serve_emulator, emulator)
        app = create_app(settings_for_tests(twitter_stream_url=base_url, **overrides))
        config = Config()
        config.bind = ["127.0.0.1:0"]
        config.accesslog = None
        for name, value in (hypercorn or {}).items():
            setattr(config, name, value)
        binds = await nursery.start(serve, app, config)
        http_url = binds[0]
        return Served(app, emulator, http_url, "ws" + http_url.removeprefix("http") + "/ws")

    return start


@pytest.fixture
async def served(make_served: Callable[..., Any]) -> Served:
    served: Served = await make_served()
    return served


@pytest.fixture
async def redis() -> AsyncIterator[RedisServer]:
    """A redis-server of the test's own on a free loopback port, stopped after it."""
    server = RedisServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
