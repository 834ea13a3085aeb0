"""Posts as the X API v2 emulator serves them and as X's matcher reads them.

`to_v2` writes a v1.1 status as the filtered stream sends a post: ``data`` and ``includes``
(authors, retweeted and quoted posts), a long post cut short in ``text`` and whole in
``note_tweet``, links with their ``unwound_url``. `select_fields` then keeps what one
connection asked for: ``note_tweet`` and ``entities`` only with ``tweet.fields`` naming them,
as X does. A referenced post X could not hydrate is left out of ``includes`` and reported in
the message's ``errors`` (`to_v2`'s `unavailable`), as X reports a partial error.

`view_of` is what X's matcher reads of the same post, whatever the connection asked for:
the whole text (a long post's note, a retweet's original, and the quoted post, which the
filtered stream matches too), every link's ``url``, ``expanded_url`` and ``unwound_url``
(PowerTrack's keyword "will match on both URLs and unwound URLs within a Tweet"), the
hashtags, mentions and cashtags, the author, the user replied to, the language and the kind
of post. Text is split into tokens as X documents keyword matching: lowered, and cut at
punctuation, symbols and separators, each emoji a token of its own.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

NOTE_AFTER = 280
"""X's post length: a longer one's whole text is its ``note_tweet``."""
_NESTING = 2
_VARIATION_SELECTORS = range(0xFE00, 0xFE10)
_NOT_FOUND = "https://api.twitter.com/2/problems/resource-not-found"


def x_tokens(text: str) -> tuple[str, ...]:
    """Text as X's keyword matching sees it.

    >>> x_tokens("I like Coca-Cola 🍕! https://t.co/x")
    ('i', 'like', 'coca', 'cola', '🍕', 'https', 't', 'co', 'x')
    """
    tokens: list[str] = []
    word: list[str] = []
    for char in text.lower():
        category = unicodedata.category(char)
        if (
            char.isalnum()
            or char == "_"
            or (category[0] == "M" and ord(char) not in _VARIATION_SELECTORS)
        ):
            word.append(char)
            continue
        if word:
            tokens.append("".join(word))
            word = []
        if category == "So":
            tokens.append(char)
    if word:
        tokens.append("".join(word))
    return tuple(tokens)


def _holds(sequence: tuple[str, ...], tokens: tuple[str, ...]) -> bool:
    size = len(tokens)
    return any(sequence[i : i + size] == tokens for i in range(len(sequence) - size + 1))


@dataclass(frozen=True, slots=True)
class PostView:
    """What X's matcher reads of one post (see the module's docstring)."""

    id: str
    bodies: tuple[tuple[str, ...], ...]
    urls: tuple[tuple[str, ...], ...] = ()
    """The tokens of every link's ``url``, ``expanded_url`` and ``unwound_url``."""
    links: tuple[tuple[str, ...], ...] = ()
    """The tokens of every link's ``url`` and ``expanded_url`` (what ``url:`` matches)."""
    hashtags: frozenset[str] = frozenset()
    mentions: frozenset[str] = frozenset()
    cashtags: frozenset[str] = frozenset()
    author: frozenset[str] = frozenset()
    """The author's username (lowered) and id."""
    reply_to: frozenset[str] = frozenset()
    retweet_of: frozenset[str] = frozenset()
    lang: str | None = None
    kinds: frozenset[str] = field(default_factory=frozenset)
    """``is:`` and ``has:`` values that hold: ``retweet``, ``links``, ..."""

    def holds(self, tokens: tuple[str, ...]) -> bool:
        """Whether these tokens stand in this order, next to each other, in the text or a link."""
        return bool(tokens) and any(_holds(seq, tokens) for seq in (*self.bodies, *self.urls))


def _who(user: Mapping[str, Any] | None, name_key: str, id_key: str) -> frozenset[str]:
    if not user:
        return frozenset()
    found = {str(user.get(name_key) or "").lower(), str(user.get(id_key) or "")}
    return frozenset(found - {""})


def _link_fields(entities: Mapping[str, Any], names: Iterable[str]) -> list[tuple[str, ...]]:
    names = tuple(names)
    return [
        x_tokens(link[name])
        for kind in ("urls", "media")
        for link in entities.get(kind) or ()
        for name in names
        if isinstance(link.get(name), str)
    ]


def view_of(status: Mapping[str, Any], depth: int = 0) -> PostView:
    """What X matches of a v1.1 status, with its retweeted and quoted posts."""
    extended = status.get("extended_tweet") or {}
    text = extended.get("full_text") or status.get("text") or ""
    entities = extended.get("entities") or status.get("entities") or {}
    nested = [
        view_of(inner, depth + 1)
        for key in ("retweeted_status", "quoted_status")
        if depth < _NESTING and isinstance(inner := status.get(key), Mapping)
    ]
    kinds = {
        "retweet": isinstance(status.get("retweeted_status"), Mapping),
        "quote": isinstance(status.get("quoted_status"), Mapping),
        "reply": bool(status.get("in_reply_to_status_id_str")),
        "verified": bool((status.get("user") or {}).get("verified")),
        "links": bool(entities.get("urls") or entities.get("media")),
        "hashtags": bool(entities.get("hashtags")),
        "mentions": bool(entities.get("user_mentions")),
        "cashtags": bool(entities.get("symbols")),
        "media": bool(entities.get("media")),
        "images": any(m.get("type") == "photo" for m in entities.get("media") or ()),
    }

    def names(kind: str, key: str) -> frozenset[str]:
        return frozenset(str(item.get(key, "")).lower() for item in entities.get(kind) or ())

    retweeted = status.get("retweeted_status")
    return PostView(
        id=str(status.get("id_str", "")),
        bodies=(x_tokens(text), *(body for view in nested for body in view.bodies)),
        urls=(
            *_link_fields(entities, ("url", "expanded_url", "unwound_url")),
            *(url for view in nested for url in view.urls),
        ),
        links=(
            *_link_fields(entities, ("url", "expanded_url")),
            *(url for view in nested for url in view.links),
        ),
        hashtags=names("hashtags", "text").union(*(v.hashtags for v in nested)),
        mentions=names("user_mentions", "screen_name").union(*(v.mentions for v in nested)),
        cashtags=names("symbols", "text").union(*(v.cashtags for v in nested)),
        author=_who(status.get("user"), "screen_name", "id_str"),
        reply_to=_who(status, "in_reply_to_screen_name", "in_reply_to_user_id_str"),
        retweet_of=_who(
            retweeted.get("user") if isinstance(retweeted, Mapping) else None,
            "screen_name",
            "id_str",
        ),
        lang=status.get("lang") if isinstance(status.get("lang"), str) else None,
        kinds=frozenset(kind for kind, holds in kinds.items() if holds),
    )


# ---- v1.1 statuses as v2 posts


def _iso(ms: int) -> str:
    moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def _span(item: Mapping[str, Any]) -> dict[str, int]:
    start, end = item.get("indices") or (0, 0)
    return {"start": start, "end": end}


def _v2_url(url: Mapping[str, Any]) -> dict[str, Any]:
    """A link; ``unwound_url`` (where a shortener leads) is read from a field of the same name
    on the v1.1 entity, which v1.1 never had, so that tests can give one."""
    link = {
        **_span(url),
        "url": url["url"],
        "expanded_url": url.get("expanded_url"),
        "display_url": url.get("display_url"),
    }
    if isinstance(url.get("unwound_url"), str):
        link["unwound_url"] = url["unwound_url"]
    return link


def _v2_entities(entities: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    hashtags = [{**_span(h), "tag": h["text"]} for h in entities.get("hashtags", ())]
    cashtags = [{**_span(c), "tag": c["text"]} for c in entities.get("symbols", ())]
    mentions = [
        {**_span(m), "username": m["screen_name"], "id": m.get("id_str")}
        for m in entities.get("user_mentions", ())
    ]
    urls = [_v2_url(u) for u in entities.get("urls", ())]
    for key, items in (
        ("hashtags", hashtags),
        ("cashtags", cashtags),
        ("mentions", mentions),
        ("urls", urls),
    ):
        if items:
            out[key] = items
    return out


def _v2_post(
    status: Mapping[str, Any], users: dict[str, Any], posts: dict[str, Any]
) -> dict[str, Any]:
    extended = status.get("extended_tweet") or {}
    user = status["user"]
    users[user["id_str"]] = {
        "id": user["id_str"],
        "name": user.get("name"),
        "username": user["screen_name"],
        "profile_image_url": user.get("profile_image_url_https"),
        "verified": bool(user.get("verified")),
    }
    full_text = extended.get("full_text") or status["text"]
    post: dict[str, Any] = {
        "id": status["id_str"],
        "text": full_text,
        "author_id": user["id_str"],
        "created_at": _iso(int(status["timestamp_ms"])),
        "lang": status.get("lang"),
        "edit_history_tweet_ids": [status["id_str"]],
    }
    if status.get("in_reply_to_user_id_str"):
        post["in_reply_to_user_id"] = status["in_reply_to_user_id_str"]
    entities = _v2_entities(extended.get("entities") or status.get("entities") or {})
    if entities:
        post["entities"] = entities
    if len(full_text) > NOTE_AFTER:
        # As X sends a long post: cut short in `text`, whole (with its entities) in `note_tweet`.
        post["note_tweet"] = {"text": full_text, "entities": entities}
        post["text"] = full_text[: NOTE_AFTER - 1] + "…"
        post["entities"] = {
            kind: [e for e in items if e["end"] < NOTE_AFTER] for kind, items in entities.items()
        }
    references = []
    for key, kind in (("retweeted_status", "retweeted"), ("quoted_status", "quoted")):
        inner = status.get(key)
        if isinstance(inner, Mapping):
            inner = {**inner, "timestamp_ms": inner.get("timestamp_ms") or status["timestamp_ms"]}
            posts[inner["id_str"]] = _v2_post(inner, users, posts)
            references.append({"type": kind, "id": inner["id_str"]})
    if references:
        post["referenced_tweets"] = references
    return post


def to_v2(status: Mapping[str, Any], unavailable: Iterable[str] = ()) -> dict[str, Any]:
    """A v1.1 status as the filtered stream sends a post: ``data`` and ``includes``. The
    referenced posts whose ids are `unavailable` are missing from ``includes`` and named in
    ``errors``, as X reports a post it could not hydrate (withheld, deleted, protected)."""
    users: dict[str, Any] = {}
    posts: dict[str, Any] = {}
    data = _v2_post(status, users, posts)
    missing = [post_id for post_id in unavailable if posts.pop(post_id, None) is not None]
    includes: dict[str, Any] = {"users": list(users.values())}
    if posts:
        includes["tweets"] = list(posts.values())
    message: dict[str, Any] = {"data": data, "includes": includes}
    if missing:
        # ResourceNotFoundProblem in X's OpenAPI spec: type, title, detail, resource_type,
        # resource_id, parameter, value.
        message["errors"] = [
            {
                "value": post_id,
                "detail": f"Could not find tweet with referenced_tweets.id: [{post_id}].",
                "title": "Not Found Error",
                "resource_type": "tweet",
                "parameter": "referenced_tweets.id",
                "resource_id": post_id,
                "type": _NOT_FOUND,
            }
            for post_id in missing
        ]
    return message


def _fields(post: Mapping[str, Any], fields: frozenset[str]) -> dict[str, Any]:
    return {
        key: value
        for key, value in post.items()
        if key not in ("note_tweet", "entities") or key in fields
    }


def select_fields(message: Mapping[str, Any], fields: frozenset[str]) -> dict[str, Any]:
    """The message as a connection that asked for these ``tweet.fields`` gets it: without
    ``note_tweet`` or ``entities`` unless named (the other fields the emulator always sends)."""
    if {"note_tweet", "entities"} <= fields:
        return dict(message)
    out = {**message, "data": _fields(message["data"], fields)}
    includes = message.get("includes") or {}
    if "tweets" in includes:
        out["includes"] = {
            **includes,
            "tweets": [_fields(post, fields) for post in includes["tweets"]],
        }
    return out
