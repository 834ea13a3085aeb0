"""An X API v2 stream message mapped to the v1.1 status shape `tweets.trim` reads.

v2 sends a post as ``data`` with its author and the posts it retweets or quotes in ``includes``
(``users``, ``tweets``), linked by id. The browser renders v1.1's shape, so a post is rebuilt
as one: ``user`` from the author, ``retweeted_status`` and ``quoted_status`` from the
referenced posts, entities with ``indices`` in place of ``start``/``end``. From there it is the
same `events.tweet_event` as Twitter's: trimmed, matched and encoded once.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

_NESTING = 2
"""A retweet's original may quote a post; nothing nests deeper, as on v1.1."""


class PayloadError(ValueError):
    """A message that holds no post we can show."""


def _string(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _by_id(items: object) -> dict[str, Mapping[str, Any]]:
    if not isinstance(items, list):
        return {}
    return {
        item["id"]: item
        for item in items
        if isinstance(item, Mapping) and isinstance(item.get("id"), str)
    }


def _span(item: Mapping[str, Any]) -> list[int] | None:
    start, end = item.get("start"), item.get("end")
    if type(start) is int and type(end) is int:
        return [start, end]
    return None


def _entities(entities: object) -> dict[str, Any]:
    if not isinstance(entities, Mapping):
        return {}

    def items(kind: str) -> list[Mapping[str, Any]]:
        found = entities.get(kind)
        return [i for i in found if isinstance(i, Mapping)] if isinstance(found, list) else []

    return {
        "hashtags": [{"text": h.get("tag"), "indices": _span(h)} for h in items("hashtags")],
        "symbols": [{"text": c.get("tag"), "indices": _span(c)} for c in items("cashtags")],
        "user_mentions": [
            {
                "screen_name": m.get("username"),
                "id_str": _string(m.get("id")),
                "indices": _span(m),
            }
            for m in items("mentions")
        ],
        "urls": [
            {
                "url": u.get("url"),
                "expanded_url": _string(u.get("expanded_url")),
                "display_url": _string(u.get("display_url")),
                "unwound_url": _string(u.get("unwound_url")),
                "indices": _span(u),
            }
            for u in items("urls")
        ],
    }


def _user(user: Mapping[str, Any] | None, author_id: object) -> dict[str, Any]:
    if user is None:
        # The author was not expanded (withheld, suspended): the post is still shown, by id.
        return {"id_str": _string(author_id), "screen_name": _string(author_id)}
    return {
        "id_str": _string(user.get("id")),
        "name": _string(user.get("name")),
        "screen_name": _string(user.get("username")),
        "profile_image_url_https": _string(user.get("profile_image_url")),
        "verified": user.get("verified") is True,
    }


def timestamp_ms(created_at: object) -> int | None:
    """Milliseconds since the epoch from v2's ISO 8601 ``created_at``, None if unreadable.

    >>> timestamp_ms("2018-10-10T20:19:24.000Z")
    1539202764000
    """
    if not isinstance(created_at, str):
        return None
    try:
        moment = datetime.fromisoformat(created_at.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return int(moment.timestamp() * 1000)


def _status(
    post: Mapping[str, Any],
    users: dict[str, Mapping[str, Any]],
    posts: dict[str, Mapping[str, Any]],
    depth: int,
    fallback_ms: int | None = None,
) -> dict[str, Any]:
    """`fallback_ms` is the time of the post that references this one: a referenced post
    without its ``created_at`` is still shown, at that time."""
    id_str = _string(post.get("id"))
    if not id_str:
        raise PayloadError("post has no id")
    author_id = post.get("author_id")
    # A post over 280 characters comes cut short in `text`, whole in `note_tweet`.
    note = post.get("note_tweet")
    whole = note if isinstance(note, Mapping) and isinstance(note.get("text"), str) else post
    status: dict[str, Any] = {
        "id_str": id_str,
        "text": whole.get("text"),
        "lang": _string(post.get("lang")),
        "user": _user(users.get(author_id) if isinstance(author_id, str) else None, author_id),
        "entities": _entities(whole.get("entities")),
    }
    when = timestamp_ms(post.get("created_at"))
    when = fallback_ms if when is None else when
    if when is not None:
        status["timestamp_ms"] = when
    if depth < _NESTING:
        for reference in post.get("referenced_tweets") or ():
            if not isinstance(reference, Mapping):
                continue
            kind, ref_id = reference.get("type"), reference.get("id")
            key = {"retweeted": "retweeted_status", "quoted": "quoted_status"}.get(str(kind))
            if key is None or key in status or (depth and key == "retweeted_status"):
                continue
            referenced = posts.get(ref_id) if isinstance(ref_id, str) else None
            if referenced is not None:
                status[key] = _status(referenced, users, posts, depth + 1, when)
    return status


def to_status(message: Mapping[str, Any]) -> dict[str, Any]:
    """The v1.1-shaped status for one v2 stream message (``data`` and ``includes``)."""
    data = message.get("data")
    if not isinstance(data, Mapping):
        raise PayloadError("message has no data")
    includes = message.get("includes")
    if not isinstance(includes, Mapping):
        includes = {}
    return _status(data, _by_id(includes.get("users")), _by_id(includes.get("tweets")), 0)


def matching_rules(message: Mapping[str, Any]) -> tuple[tuple[str, str | None], ...]:
    """The ``(id, tag)`` of each rule the post matched (``matching_rules``), as X sent them."""
    rules = message.get("matching_rules")
    if not isinstance(rules, list):
        return ()
    return tuple(
        (rule["id"], _string(rule.get("tag")))
        for rule in rules
        if isinstance(rule, Mapping) and isinstance(rule.get("id"), str)
    )
