"""A small HTTP control API for an emulator run as its own process, so tests can drive it.

Mounted under ``/_control`` only when the emulator is built with ``Emulator(control=True)``
(``pats-trio emulate --control``). The app's built-in emulator never has it.

* ``POST /_control/inject``: a JSON v1.1 status, or a JSON array of them, each sent with
  `Emulator.inject`. Answers ``{"injected": n}``.
* ``POST /_control/raw?kind=sample|filter``: the body bytes, written unframed with
  `Emulator.inject_raw` to the open streams of that kind (all without `kind`). Answers
  ``{"streams": n}``, the number of open streams it was written to.
* ``GET /_control/connections``: every `ConnectionRecord` so far, oldest first, as JSON objects
  with an ``open`` flag (and without the authorization header); ``replaced_by`` names the newer
  stream with the same credentials that ended one.
* ``GET /_control/clock``: ``{"now": seconds, "wall_ms": ms}``, the emulator's clock now: the
  one ``opened_at`` and ``closed_at`` are read on, so another process can line those up with its
  own (a soak run counts the streams open during each of its phases).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import orjson
import trio

from pats_trio.emulator.asgi import JSON, BodyTooLargeError, Receive, Send, read_body, respond

if TYPE_CHECKING:
    from pats_trio.emulator.server import ConnectionRecord, Emulator

LOGGER = logging.getLogger(__name__)

CONTROL_PREFIX = "/_control"
# A batch of a few hundred statuses fits.
MAX_CONTROL_BODY_BYTES = 4 * 1024 * 1024
STREAM_KINDS = ("sample", "filter")


class ControlError(Exception):
    """A control request the emulator cannot carry out: answered with `status` and `message`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


async def serve_control(
    emulator: Emulator, scope: Mapping[str, Any], receive: Receive, send: Send
) -> None:
    """Answer one HTTP request under ``/_control``."""
    await answer_control(_dispatch, emulator, scope, receive, send)


async def answer_control(
    dispatch: Callable[[Any, Mapping[str, Any], bytes], Any],
    emulator: Any,
    scope: Mapping[str, Any],
    receive: Receive,
    send: Send,
) -> None:
    """Read the body, dispatch, answer JSON: the same for both emulators' control APIs."""
    try:
        try:
            body = await read_body(receive, MAX_CONTROL_BODY_BYTES)
        except BodyTooLargeError:
            raise ControlError(413, f"body over {MAX_CONTROL_BODY_BYTES} bytes") from None
        result = dispatch(emulator, scope, body)
    except ControlError as error:
        await respond(send, error.status, orjson.dumps({"error": error.message}), content_type=JSON)
        return
    await respond(send, 200, orjson.dumps(result), content_type=JSON)


def control_path(scope: Mapping[str, Any], methods: Mapping[str, tuple[str, ...]]) -> str:
    """The endpoint a request names under ``/_control``, or a 404 or 405 `ControlError`:
    `methods` maps each endpoint to the methods it takes."""
    path: str = scope["path"].removeprefix(CONTROL_PREFIX)
    if path not in methods:
        raise ControlError(404, f"no control endpoint {scope['path']}")
    if scope["method"] not in methods[path]:
        raise ControlError(405, f"{scope['path']} takes {' or '.join(methods[path])}")
    return path


def json_object(body: bytes) -> dict[str, Any]:
    """A request body that must be one JSON object, or a 400 `ControlError`."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise ControlError(400, f"body is not JSON: {error}") from None
    if not isinstance(value, dict):
        raise ControlError(400, "body must be a JSON object")
    return value


ROUTES = {"/inject": ("POST",), "/raw": ("POST",), "/connections": ("GET",), "/clock": ("GET",)}


def _dispatch(emulator: Emulator, scope: Mapping[str, Any], body: bytes) -> Any:
    path = control_path(scope, ROUTES)
    if path == "/inject":
        return {"injected": _inject(emulator, body)}
    if path == "/raw":
        kind = _kind(scope["query_string"].decode("latin-1"))
        streams = len(emulator.open_connections(kind))
        emulator.inject_raw(body, kind)
        LOGGER.info("emulator control: %d raw bytes to %d streams", len(body), streams)
        return {"streams": streams}
    if path == "/clock":
        return {"now": trio.current_time(), "wall_ms": emulator.now_ms()}
    return [_record(record) for record in emulator.connections]


def _inject(emulator: Emulator, body: bytes) -> int:
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise ControlError(400, f"body is not JSON: {error}") from None
    statuses = value if isinstance(value, list) else [value]
    if not all(isinstance(status, dict) for status in statuses):
        raise ControlError(400, "body must be a status object or an array of them")
    for status in statuses:
        emulator.inject(status)
    LOGGER.info("emulator control: injected %d statuses", len(statuses))
    return len(statuses)


def _kind(query: str) -> str | None:
    values = parse_qs(query).get("kind")
    if not values:
        return None
    if values[-1] not in STREAM_KINDS:
        raise ControlError(400, "kind must be sample or filter")
    return values[-1]


def _record(record: ConnectionRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "kind": record.kind,
        "track": record.track,
        "method": record.method,
        "delimited": record.delimited,
        "status": record.status,
        "opened_at": record.opened_at,
        "closed_at": record.closed_at,
        "open": record.closed_at is None,
        "sent": record.sent,
        "skipped": record.skipped,
        "replaced_by": record.replaced_by,
    }
