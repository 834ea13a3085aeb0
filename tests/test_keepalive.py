"""Idle kept-alive HTTP connections are closed by the server, as hypercorn's setting says.

Under quart-trio they never were: every browser tab held a descriptor for as long as it was
open, and a Ctrl-C waited out the whole grace period for it.
"""

from __future__ import annotations

import pytest
import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from pats_trio.app import create_app
from tests.conftest import settings_for_tests

KEEP_ALIVE = 0.5
TIMEOUT = 10


async def idle_after_one_request(port: int, path: str) -> float:
    """Seconds from the end of a kept-alive response until the server closes the connection."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        head = await stream.receive_some(65536)
        assert head.startswith(b"HTTP/1.1 200"), head[:80]
        answered = trio.current_time()
        while await stream.receive_some(65536):
            pass  # the rest of the body, then the server's close
        return trio.current_time() - answered


@pytest.mark.parametrize("path", ["/", "/healthz", "/readyz", "/metrics", "/static/main.js"])
async def test_an_idle_kept_alive_connection_is_closed_after_the_keep_alive_timeout(
    nursery: trio.Nursery, path: str
) -> None:
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.keep_alive_timeout = KEEP_ALIVE
    with trio.fail_after(TIMEOUT):
        binds = await nursery.start(serve, create_app(settings_for_tests()), config)
        port = int(binds[0].rsplit(":", 1)[1])
        idle = await idle_after_one_request(port, path)
    assert KEEP_ALIVE * 0.8 <= idle < KEEP_ALIVE + 2
