"""Lines an outsider can cause are short, escaped and few, however hard the outsider pushes."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
import trio
import trio.testing
from trio_websocket import ConnectionRejected, open_websocket_url

from pats_trio.outsider_log import PER_MINUTE, OutsiderLog, quoted
from tests.support import Served

TIMEOUT = 30


def test_a_long_value_is_cut_and_a_line_break_cannot_forge_a_log_line() -> None:
    assert quoted("short") == "'short'"
    long = quoted("x" * 5000 + "\nFAKE 'ERROR' line")
    assert len(long) < 200
    assert long.endswith("... (5018 chars)")
    assert "\n" not in quoted("a\nb")
    assert "\\n" in quoted("a\nb")


async def test_a_flood_of_one_kind_logs_a_few_lines_a_minute_then_says_how_many_were_held(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    with trio.fail_after(300):
        log = OutsiderLog(logging.getLogger("test.outsiders"))
        for n in range(1000):
            log.warning("origin", "refused %s", f"https://evil{n}.example")
        for n in range(3):
            log.warning("evicted", "closing viewer %d", n)
        lines = [r.getMessage() for r in caplog.records]
        assert len(lines) == PER_MINUTE + 3
        assert lines[0] == "refused 'https://evil0.example'"
        await trio.sleep(60)
        log.warning("origin", "refused %s", "https://again.example")
        assert caplog.records[-1].getMessage() == (
            "refused 'https://again.example' "
            f"({1000 - PER_MINUTE} more like this in the last minute were not logged)"
        )


async def test_refused_origins_do_not_flood_the_servers_log(
    make_served: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    served: Served = await make_served(allowed_origins=frozenset({"https://pats.example.org"}))
    origin = b"http://evil.example/" + b"A" * 8000
    with trio.fail_after(TIMEOUT):
        for _ in range(3 * PER_MINUTE):
            with pytest.raises(ConnectionRejected):
                async with open_websocket_url(served.ws_url, extra_headers=[(b"Origin", origin)]):
                    pass
    refused = [r.getMessage() for r in caplog.records if "foreign origin" in r.getMessage()]
    assert len(refused) == PER_MINUTE
    assert all(len(line) < 250 for line in refused)
