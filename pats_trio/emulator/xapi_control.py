"""A test-only HTTP control API for the X API v2 emulator run as its own process.

Mounted under ``/_control`` only when `XEmulator.control` is set (``pats-trio emulate --x
--control``), so a test in another process can say what the project read and make the usage
endpoint fail, as an in-process test does with `XEmulator.set_usage` and `XEmulator.fail_usage`:

* ``POST /_control/usage``: ``{"count", "day"?, "project_cap"?}``: `count` posts read on UTC
  ``day`` (days since the epoch; today by default), and the project's monthly cap if given.
  Answers the usage per day, as ``GET`` does.
* ``POST /_control/usage-failure``: ``{"status", "count"?, "body"?}``: the next `count` (1)
  usage requests answer `status` with `body` (a JSON problem by default).
* ``GET /_control/usage``: ``{"days": {"YYYY-MM-DD": n}, "project_cap": n, "requests": [...]}``:
  the posts delivered per UTC day and the status of each usage request so far.

Bad input gets a 4xx status and ``{"error": message}``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pats_trio.emulator.asgi import Receive, Send
from pats_trio.emulator.control import ControlError, answer_control, control_path, json_object

if TYPE_CHECKING:
    from pats_trio.emulator.xapi import XEmulator

LOGGER = logging.getLogger(__name__)
ROUTES = {"/usage": ("GET", "POST"), "/usage-failure": ("POST",)}


async def serve_x_control(
    emulator: XEmulator, scope: Mapping[str, Any], receive: Receive, send: Send
) -> None:
    """Answer one HTTP request under ``/_control``."""
    await answer_control(_dispatch, emulator, scope, receive, send)


def _dispatch(emulator: XEmulator, scope: Mapping[str, Any], body: bytes) -> Any:
    path = control_path(scope, ROUTES)
    if scope["method"] == "GET":
        return _usage(emulator)
    spec = json_object(body)
    if path == "/usage":
        count, day, cap = spec.get("count", -1), spec.get("day"), spec.get("project_cap")
        if not all(_count(value) for value in (count, 0 if day is None else day, cap or 0)):
            raise ControlError(400, "count, day and project_cap are whole numbers, 0 or more")
        if cap is not None:
            emulator.project_cap = int(cap)
        emulator.set_usage(int(count), day=None if day is None else int(day))
        LOGGER.info("x emulator control: %d posts read on day %s", count, day or "today")
        return _usage(emulator)
    status, times, text = spec.get("status"), spec.get("count", 1), spec.get("body")
    if not (isinstance(status, int) and 100 <= status <= 599) or not _count(times):
        raise ControlError(400, "status is an HTTP status, count a whole number")
    if text is not None and not isinstance(text, str):
        raise ControlError(400, "body is a string")
    emulator.fail_usage(status, times, None if text is None else text.encode())
    return {"failing": times}


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _usage(emulator: XEmulator) -> dict[str, Any]:
    days = {
        time.strftime("%Y-%m-%d", time.gmtime(day * 86_400)): count
        for day, count in sorted(emulator.usage.items())
    }
    return {
        "days": days,
        "project_cap": emulator.project_cap,
        "requests": list(emulator.usage_requests),
    }
