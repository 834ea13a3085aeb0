"""Trim a Twitter v1.1 status into the small payload the browser renders and the matcher reads."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)
_MAX_SAFE_INTEGER = 2**53 - 1
_MAX_MS_DIGITS = len(str(_MAX_SAFE_INTEGER))
_NESTED_BY_DEPTH: tuple[tuple[str, ...], ...] = (
    ("retweeted_status", "quoted_status"),
    ("quoted_status",),
    (),
)


class TweetShapeError(ValueError):
    """A status that cannot become a payload, so callers can count it and skip it."""


def _string(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _indices(value: object) -> list[int] | None:
    """A ``[start, end]`` pair of character offsets, or None when the input holds anything else."""
    if isinstance(value, list | tuple) and len(value) == 2:
        start, end = value
        if type(start) is int and type(end) is int and 0 <= start <= end <= _MAX_SAFE_INTEGER:
            return [start, end]
    return None


def _items(entities: Mapping[str, Any], kind: str) -> list[Mapping[str, Any]]:
    found = entities.get(kind)
    if not isinstance(found, list):
        return []
    return [item for item in found if isinstance(item, Mapping)]


def _trim_url(item: Mapping[str, Any]) -> dict[str, Any]:
    """A link as the browser shows it; X v2's ``unwound_url`` (where a shortener leads) is kept
    when there is one, because X matches keywords against it and so must the matcher."""
    url: dict[str, Any] = {
        "url": item["url"],
        "expanded_url": _string(item.get("expanded_url")),
        "display_url": _string(item.get("display_url")),
        "indices": _indices(item.get("indices")),
    }
    unwound = _string(item.get("unwound_url"))
    if unwound is not None:
        url["unwound_url"] = unwound
    return url


def _trim_entities(entities: Mapping[str, Any]) -> dict[str, Any]:
    """Keep what the browser links and the matcher reads; drop everything else."""
    trimmed: dict[str, Any] = {
        "hashtags": [
            {"text": item["text"], "indices": _indices(item.get("indices"))}
            for item in _items(entities, "hashtags")
            if isinstance(item.get("text"), str)
        ],
        "user_mentions": [
            {
                "screen_name": item["screen_name"],
                "name": _string(item.get("name")),
                "id_str": _string(item.get("id_str")),
                "indices": _indices(item.get("indices")),
            }
            for item in _items(entities, "user_mentions")
            if isinstance(item.get("screen_name"), str)
        ],
        "urls": [
            _trim_url(item) for item in _items(entities, "urls") if isinstance(item.get("url"), str)
        ],
    }
    media = [
        {
            "url": item["url"],
            "expanded_url": _string(item.get("expanded_url")),
            "display_url": _string(item.get("display_url")),
            "media_url_https": _string(item.get("media_url_https")),
            "type": _string(item.get("type")),
            "indices": _indices(item.get("indices")),
        }
        for item in _items(entities, "media")
        if isinstance(item.get("url"), str)
    ]
    if media:
        trimmed["media"] = media
    return trimmed


def _parse_created_at(created_at: str) -> int | None:
    """Milliseconds since the epoch from "Wed Oct 10 20:19:24 +0000 2018", None if malformed.

    Parsed by hand because ``strptime``'s ``%a`` and ``%b`` follow the process locale.
    """
    parts = created_at.split()
    if len(parts) != 6 or parts[1] not in _MONTHS:
        return None
    _, month, day, clock, offset, year = parts
    hms = clock.split(":")
    if len(offset) != 5 or offset[0] not in "+-" or len(hms) != 3:
        return None
    numbers = (day, year, offset[1:], *hms)
    if not all(len(number) <= 4 and number.isascii() and number.isdigit() for number in numbers):
        return None
    hour, minute, second = (int(number) for number in hms)
    sign = -1 if offset[0] == "-" else 1
    try:
        zone = timezone(sign * timedelta(hours=int(offset[1:3]), minutes=int(offset[3:5])))
        moment = datetime(
            int(year), _MONTHS.index(month) + 1, int(day), hour, minute, second, tzinfo=zone
        )
    except ValueError:
        return None
    return (moment - _EPOCH) // _ONE_MS


def _format_created_at(timestamp_ms: int) -> str:
    moment = _EPOCH + timestamp_ms * _ONE_MS
    weekday, month = _WEEKDAYS[moment.weekday()], _MONTHS[moment.month - 1]
    return f"{weekday} {month} {moment:%d %H:%M:%S} +0000 {moment.year}"


def _timestamps(status: Mapping[str, Any]) -> tuple[str, int]:
    """``created_at`` as given and ``timestamp_ms`` as an int, each derived from the other.

    ``timestamp_ms`` must be an integer JavaScript reads exactly, or it is read from ``created_at``.
    """
    created_at = _string(status.get("created_at"))
    raw_ms = status.get("timestamp_ms")
    timestamp_ms: int | None = None
    if type(raw_ms) is int:
        timestamp_ms = raw_ms
    elif isinstance(raw_ms, str) and len(raw_ms) <= _MAX_MS_DIGITS and raw_ms.isascii():
        timestamp_ms = int(raw_ms) if raw_ms.isdigit() else None
    if timestamp_ms is not None and abs(timestamp_ms) > _MAX_SAFE_INTEGER:
        timestamp_ms = None
    if timestamp_ms is None and created_at is not None:
        timestamp_ms = _parse_created_at(created_at)
    if timestamp_ms is None:
        raise TweetShapeError("status has neither timestamp_ms nor a readable created_at")
    if created_at is None:
        try:
            created_at = _format_created_at(timestamp_ms)
        except OverflowError as error:
            raise TweetShapeError(f"timestamp_ms {timestamp_ms} is out of range") from error
    return created_at, timestamp_ms


def _trim_user(user: object) -> dict[str, Any]:
    if not isinstance(user, Mapping):
        raise TweetShapeError("status has no user")
    screen_name = user.get("screen_name")
    if not isinstance(screen_name, str) or not screen_name:
        raise TweetShapeError("status has no user.screen_name")
    return {
        "id_str": _string(user.get("id_str")),
        "name": _string(user.get("name")) or screen_name,
        "screen_name": screen_name,
        "profile_image_url_https": _string(user.get("profile_image_url_https")),
        "verified": user.get("verified") is True,
    }


_HTML_ESCAPES = {"&amp;": "&", "&lt;": "<", "&gt;": ">"}


def _unescape_text(payload: dict[str, Any]) -> None:
    """Undo the v1.1 API's HTML escaping of `&`, `<` and `>`, sliding every index to match.

    Twitter counts entity indices in the escaped text, so `&amp;` before a link shifts it by four.
    The browser renders text as text nodes, so the escaped form would show literally.
    """
    text: str = payload["text"]
    if "&" not in text:
        return
    out: list[str] = []
    new_index: list[int] = []
    i = 0
    while i < len(text):
        new_index.append(len(out))
        entity = next((e for e in _HTML_ESCAPES if text.startswith(e, i)), None)
        if entity is None:
            out.append(text[i])
            i += 1
            continue
        new_index.extend([len(out)] * (len(entity) - 1))
        out.append(_HTML_ESCAPES[entity])
        i += len(entity)
    new_index.append(len(out))

    def slide(span: list[int] | None) -> list[int] | None:
        if span is None:
            return None
        return [new_index[min(max(at, 0), len(text))] for at in span]

    payload["text"] = "".join(out)
    if "display_text_range" in payload:
        payload["display_text_range"] = slide(payload["display_text_range"])
    for items in payload["entities"].values():
        for item in items:
            item["indices"] = slide(item.get("indices"))


def _trim(status: Mapping[str, Any], source: str, depth: int) -> dict[str, Any]:
    id_str = status.get("id_str")
    if not isinstance(id_str, str) or not id_str:
        raise TweetShapeError("status has no id_str")
    extended = status.get("extended_tweet")
    if not isinstance(extended, Mapping):
        extended = {}
    text = next(
        (
            candidate
            for candidate in (
                extended.get("full_text"),
                status.get("full_text"),
                status.get("text"),
            )
            if isinstance(candidate, str)
        ),
        None,
    )
    if text is None:
        raise TweetShapeError(f"status {id_str} has no text")
    created_at, timestamp_ms = _timestamps(status)
    entities = extended.get("entities")
    if not isinstance(entities, Mapping):
        entities = status.get("entities")
    payload: dict[str, Any] = {
        "id_str": id_str,
        "text": text,
        "created_at": created_at,
        "timestamp_ms": timestamp_ms,
        "lang": _string(status.get("lang")),
        "source": source,
        "user": _trim_user(status.get("user")),
        "entities": _trim_entities(entities if isinstance(entities, Mapping) else {}),
    }
    text_range = _indices(extended.get("display_text_range"))
    if text_range is None:
        text_range = _indices(status.get("display_text_range"))
    if text_range is not None:
        payload["display_text_range"] = text_range
    _unescape_text(payload)
    for key in _NESTED_BY_DEPTH[depth]:
        inner = status.get(key)
        if isinstance(inner, Mapping):
            try:
                payload[key] = _trim(inner, source, depth + 1)
            except TweetShapeError as error:
                raise TweetShapeError(f"{key}: {error}") from error
    return payload


def trim(status: Mapping[str, Any], *, source: str = "twitter") -> dict[str, Any]:
    """The browser payload for a raw v1.1 status, with its retweet and quote trimmed alike.

    A nested status never carries its own retweet and may carry a quote one level down; nothing
    nests deeper. Raises ``TweetShapeError`` when ``id_str``, ``user.screen_name``, the text, or
    both ``timestamp_ms`` and a readable ``created_at`` are missing, here or in a nested status.
    """
    return _trim(status, source, 0)
