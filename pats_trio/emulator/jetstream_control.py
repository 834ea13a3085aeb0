"""A test-only HTTP control API for the Jetstream + AppView emulator run as its own process.

Mounted under ``/_control`` on the emulator's own port only when it is built with
``JetstreamEmulator(control=True)`` (``pats-trio emulate --jetstream --control``), so a browser
test in another process can post exactly what it wants and see what the server asked for.

* ``POST /_control/post``: ``{"did", "text", "rkey"?, "tags"?, "facets"?, "langs"?, "embed"?}``
  becomes `JetstreamEmulator.post`; answers the stamped event (``time_us``, ``commit.rkey``).
* ``POST /_control/delete``: ``{"did", "rkey"}``; answers the stamped delete event.
* ``POST /_control/profile``: ``{"did", "handle", "name"?, "avatar"?}``: what getProfiles returns
  for that DID from now on; answers ``{"profile": view}``.
* ``POST /_control/identity``: ``{"did", "handle"}``; answers the stamped identity event.
* ``POST /_control/profile-latency``: ``{"seconds"}``: how long getProfiles waits before it
  answers, so a test can see a post before its author's profile.
* ``GET /_control/connections``: every `/subscribe` request so far, oldest first, with an
  ``open`` flag, its ``query``, the ``cursor`` and ``max_message_size`` it asked for, and the
  events it was sent and not sent (``too_big``).
* ``GET /_control/clock``: ``{"now": seconds}``, the emulator's clock now, the one ``opened_at``
  and ``closed_at`` are read on.

Bad input gets a 4xx status and ``{"error": message}``.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

import trio

from pats_trio.emulator.asgi import Receive, Send
from pats_trio.emulator.control import ControlError, answer_control, control_path, json_object
from pats_trio.emulator.jetstream import JetstreamConnection, JetstreamEmulator, RichText

LOGGER = logging.getLogger(__name__)

# The shapes Jetstream consumers accept (see `pats_trio.upstream.bluesky.jetstream`): anything else
# would only be dropped by the server as malformed, which is never what a test means.
_DID = re.compile(r"did:[a-z]+:[A-Za-z0-9._:%-]{1,2000}")
_RKEY = re.compile(r"[A-Za-z0-9._:~-]{1,512}")
MAX_PROFILE_LATENCY_SECONDS = 60.0

Handler = Callable[[JetstreamEmulator, Mapping[str, Any]], Any]


async def serve_jetstream_control(
    emulator: JetstreamEmulator, scope: Mapping[str, Any], receive: Receive, send: Send
) -> None:
    """Answer one HTTP request under ``/_control``."""
    await answer_control(_dispatch, emulator, scope, receive, send)


def _dispatch(emulator: JetstreamEmulator, scope: Mapping[str, Any], body: bytes) -> Any:
    path = control_path(scope, {name: (method,) for name, (method, _) in ROUTES.items()})
    method, handler = ROUTES[path]
    if method == "GET":
        return handler(emulator, {})
    return handler(emulator, json_object(body))


def _fields(
    body: Mapping[str, Any], required: tuple[str, ...], optional: tuple[str, ...] = ()
) -> None:
    """Refuse missing and unknown fields: a typo must not pass silently."""
    missing = [name for name in required if name not in body]
    if missing:
        raise ControlError(400, f"missing field(s): {', '.join(missing)}")
    unknown = sorted(set(body) - set(required) - set(optional))
    if unknown:
        raise ControlError(400, f"unknown field(s): {', '.join(unknown)}")


def _string(body: Mapping[str, Any], name: str, pattern: re.Pattern[str] | None = None) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise ControlError(400, f"{name} must be a non-empty string")
    if pattern is not None and (not pattern.fullmatch(value) or value in (".", "..")):
        raise ControlError(422, f"{name} is not valid: {value[:100]!r}")
    return value


def _optional_string(body: Mapping[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise ControlError(400, f"{name} must be a string or null")
    return value


def _strings(body: Mapping[str, Any], name: str) -> list[str]:
    value = body.get(name, [])
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ControlError(400, f"{name} must be an array of strings")
    return value


def _facets(body: Mapping[str, Any], text: str) -> list[dict[str, Any]]:
    """Facets as Jetstream carries them, their UTF-8 byte ranges checked against `text`."""
    value = body.get("facets", [])
    if not isinstance(value, list):
        raise ControlError(400, "facets must be an array")
    size = len(text.encode())
    for number, item in enumerate(value):
        index = item.get("index") if isinstance(item, dict) else None
        start = index.get("byteStart") if isinstance(index, dict) else None
        end = index.get("byteEnd") if isinstance(index, dict) else None
        if type(start) is not int or type(end) is not int or not 0 <= start <= end <= size:
            raise ControlError(
                422, f"facets[{number}].index must hold byteStart <= byteEnd within the text"
            )
        if not isinstance(item.get("features"), list):
            raise ControlError(400, f"facets[{number}].features must be an array")
    return value


def _post(emulator: JetstreamEmulator, body: Mapping[str, Any]) -> dict[str, Any]:
    _fields(body, ("did", "text"), ("rkey", "tags", "facets", "langs", "embed"))
    did = _string(body, "did", _DID)
    text = body.get("text")
    if not isinstance(text, str):
        raise ControlError(400, "text must be a string")
    rkey = _string(body, "rkey", _RKEY) if "rkey" in body else None
    rich = RichText().add(text)
    rich.facets = _facets(body, text)
    embed = body.get("embed")
    if embed is not None and not isinstance(embed, dict):
        raise ControlError(400, "embed must be an object")
    langs = _strings(body, "langs") if "langs" in body else ["en"]
    event = emulator.post(
        did, rich, rkey=rkey, langs=langs, embed=embed, tags=_strings(body, "tags")
    )
    LOGGER.info("jetstream control: post %s by %s", event["commit"]["rkey"], did)
    return event


def _delete(emulator: JetstreamEmulator, body: Mapping[str, Any]) -> dict[str, Any]:
    _fields(body, ("did", "rkey"))
    event = emulator.delete(_string(body, "did", _DID), _string(body, "rkey", _RKEY))
    LOGGER.info("jetstream control: delete %s", event["commit"]["rkey"])
    return event


def _profile(emulator: JetstreamEmulator, body: Mapping[str, Any]) -> dict[str, Any]:
    _fields(body, ("did", "handle"), ("name", "avatar"))
    did = _string(body, "did", _DID)
    emulator.set_profile(
        did,
        _string(body, "handle"),
        _optional_string(body, "name"),
        _optional_string(body, "avatar"),
    )
    LOGGER.info("jetstream control: profile of %s set", did)
    return {"profile": emulator.profiles[did]}


def _identity(emulator: JetstreamEmulator, body: Mapping[str, Any]) -> dict[str, Any]:
    _fields(body, ("did", "handle"))
    return emulator.identity(_string(body, "did", _DID), _string(body, "handle"))


def _profile_latency(emulator: JetstreamEmulator, body: Mapping[str, Any]) -> dict[str, Any]:
    _fields(body, ("seconds",))
    seconds = body["seconds"]
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, int | float)
        or not math.isfinite(seconds)
        or not 0 <= seconds <= MAX_PROFILE_LATENCY_SECONDS
    ):
        raise ControlError(400, f"seconds must be a number from 0 to {MAX_PROFILE_LATENCY_SECONDS}")
    emulator.profile_latency = float(seconds)
    return {"seconds": emulator.profile_latency}


def _connections(emulator: JetstreamEmulator, _: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [_record(record) for record in emulator.connections]


def _record(record: JetstreamConnection) -> dict[str, Any]:
    return {
        "id": record.id,
        "path": record.path,
        "query": record.query,
        "collections": list(record.collections),
        "cursor": record.cursor,
        "max_message_size": record.max_message_size,
        "user_agent": record.user_agent,
        "status": record.status,
        "opened_at": record.opened_at,
        "closed_at": record.closed_at,
        "open": record.status == 101 and record.closed_at is None,
        "sent": record.sent,
        "replayed": record.replayed,
        "skipped": record.skipped,
        "too_big": record.too_big,
    }


def _clock(emulator: JetstreamEmulator, _: Mapping[str, Any]) -> dict[str, float]:
    return {"now": trio.current_time()}


ROUTES: dict[str, tuple[str, Handler]] = {
    "/post": ("POST", _post),
    "/delete": ("POST", _delete),
    "/profile": ("POST", _profile),
    "/identity": ("POST", _identity),
    "/profile-latency": ("POST", _profile_latency),
    "/connections": ("GET", _connections),
    "/clock": ("GET", _clock),
}
