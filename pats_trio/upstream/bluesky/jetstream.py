"""Bluesky Jetstream events as values: parse one event, and map a post to the tweet payload.

Pure: no I/O, no clock. `parse_event` turns one decoded Jetstream JSON object into a `Post`,
`Delete`, `Identity`, `Account` or `Ignored`, or raises `JetstreamShapeError`, so the caller
counts it and skips it. `post_payload` builds the same payload `pats_trio.tweets.trim` makes for
a tweet (same keys, plus `url`), so the page renders it and `matching.tweet_terms` matches it.

Entity `indices` are code-point offsets into `text`, as Twitter's were and as the page expects
(it indexes `Array.from(text)`). Bluesky facets count UTF-8 bytes; `_char_offsets` converts.

    >>> event = {"did": "did:plc:abc", "time_us": 1_700_000_000_000_000, "kind": "commit",
    ...          "commit": {"operation": "create", "collection": "app.bsky.feed.post",
    ...                     "rkey": "3kabc", "record": {"text": "héllo #trio",
    ...                     "createdAt": "2023-11-14T22:13:20Z", "facets": [{"index":
    ...                     {"byteStart": 7, "byteEnd": 12}, "features": [{"$type":
    ...                     "app.bsky.richtext.facet#tag", "tag": "trio"}]}]}}}
    >>> post = parse_event(event)
    >>> payload = post_payload(post)
    >>> payload["id_str"], payload["entities"]["hashtags"]
    ('at://did:plc:abc/app.bsky.feed.post/3kabc', [{'text': 'trio', 'indices': [6, 11]}])
    >>> payload["created_at"]
    'Tue Nov 14 22:13:20 +0000 2023'
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

POST_COLLECTION = "app.bsky.feed.post"
SOURCE = "bluesky"
WEB_APP = "https://bsky.app"
IMAGE_CDN = "https://cdn.bsky.app/img/feed_thumbnail/plain"
VIDEO_CDN = "https://video.bsky.app/watch"

FACET_TAG = "app.bsky.richtext.facet#tag"
FACET_LINK = "app.bsky.richtext.facet#link"
FACET_MENTION = "app.bsky.richtext.facet#mention"
EMBED_EXTERNAL = "app.bsky.embed.external"
EMBED_IMAGES = "app.bsky.embed.images"
EMBED_GALLERY = "app.bsky.embed.gallery"
"""Posts of more than four images (up to 20 `#image` items, each with a required `alt`)."""
EMBED_VIDEO = "app.bsky.embed.video"
EMBED_RECORD = "app.bsky.embed.record"
EMBED_RECORD_WITH_MEDIA = "app.bsky.embed.recordWithMedia"

MAX_TEXT_BYTES = 64 * 1024
"""Bluesky allows 3000 bytes; anything far past that is junk, not a post to render."""
MAX_FACETS = 256
MAX_IMAGES = 4
"""Images a card shows; a gallery's others are counted in the payload's `more_media`."""
MAX_GALLERY_ITEMS = 20
"""The lexicon's own ceiling for a gallery; a longer list is not a valid record."""
MAX_TITLE_CHARS = 300
DISPLAY_URL_CHARS = 25
_MAX_SAFE_INTEGER = 2**53 - 1
# A post's createdAt is set by the client; a time far from the event's is shown as the event's.
_MIN_YEAR, _MAX_YEAR = 1970, 9999

_DID = re.compile(r"did:[a-z]+:[A-Za-z0-9._:%-]{1,2000}")
_RKEY = re.compile(r"[A-Za-z0-9._:~-]{1,512}")
_HANDLE = re.compile(r"[A-Za-z0-9.-]{1,253}")
_CID = re.compile(r"[A-Za-z0-9]{8,128}")
_AT_URI = re.compile(r"at://(did:[a-z]+:[A-Za-z0-9._:%-]+)/([A-Za-z0-9.]+)/([A-Za-z0-9._:~-]+)")

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


class JetstreamShapeError(ValueError):
    """An event that cannot be read, so callers can count it and skip it."""


@dataclass(frozen=True, slots=True)
class Profile:
    """What the page shows of an author; from the AppView, or just the DID when not known yet."""

    did: str
    handle: str | None = None
    name: str | None = None
    avatar: str | None = None


@dataclass(frozen=True, slots=True)
class Post:
    """A new post (`commit` / `create` in `app.bsky.feed.post`)."""

    did: str
    rkey: str
    time_us: int
    record: Mapping[str, Any]

    @property
    def id_str(self) -> str:
        return post_id(self.did, self.rkey)


@dataclass(frozen=True, slots=True)
class Delete:
    """A post was deleted; the page removes it by `id_str`."""

    did: str
    rkey: str
    time_us: int

    @property
    def id_str(self) -> str:
        return post_id(self.did, self.rkey)


@dataclass(frozen=True, slots=True)
class Identity:
    """An account's handle or DID document changed: a cached profile is stale."""

    did: str
    handle: str | None
    time_us: int


@dataclass(frozen=True, slots=True)
class Account:
    """An account's hosting status changed (`active` false: deactivated, suspended, deleted)."""

    did: str
    active: bool
    status: str | None
    time_us: int


@dataclass(frozen=True, slots=True)
class Ignored:
    """A well-formed event we do not show (another collection, a record update, a new kind)."""

    time_us: int
    reason: str


JetstreamEvent = Post | Delete | Identity | Account | Ignored


def post_id(did: str, rkey: str) -> str:
    """The post's AT URI: unique across authors (an rkey is unique only per author) and stable."""
    return f"at://{did}/{POST_COLLECTION}/{rkey}"


def post_url(did: str, rkey: str, handle: str | None = None) -> str:
    """The post on the Bluesky web app."""
    return f"{WEB_APP}/profile/{handle or did}/post/{rkey}"


def _string(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _did(value: object, what: str) -> str:
    if not isinstance(value, str) or not _DID.fullmatch(value):
        raise JetstreamShapeError(f"{what} is not a DID")
    return value


def _time_us(event: Mapping[str, Any]) -> int:
    value = event.get("time_us")
    if type(value) is not int or not 0 < value <= _MAX_SAFE_INTEGER * 1000:
        raise JetstreamShapeError("event has no usable time_us")
    return value


def parse_event(event: object) -> JetstreamEvent:
    """Classify one decoded Jetstream event; raises `JetstreamShapeError` when it is malformed."""
    if not isinstance(event, Mapping):
        raise JetstreamShapeError("event is not an object")
    time_us = _time_us(event)
    kind = event.get("kind")
    if kind == "commit":
        return _commit(event, time_us)
    if kind == "identity":
        identity = event.get("identity")
        if not isinstance(identity, Mapping):
            raise JetstreamShapeError("identity event has no identity")
        did = _did(identity.get("did", event.get("did")), "identity.did")
        handle = _string(identity.get("handle"))
        return Identity(did, handle if handle and _HANDLE.fullmatch(handle) else None, time_us)
    if kind == "account":
        account = event.get("account")
        if not isinstance(account, Mapping) or not isinstance(account.get("active"), bool):
            raise JetstreamShapeError("account event has no account.active")
        did = _did(account.get("did", event.get("did")), "account.did")
        return Account(did, account["active"], _string(account.get("status")), time_us)
    return Ignored(time_us, f"kind {kind!r}")


def _commit(event: Mapping[str, Any], time_us: int) -> JetstreamEvent:
    commit = event.get("commit")
    if not isinstance(commit, Mapping):
        raise JetstreamShapeError("commit event has no commit")
    collection = commit.get("collection")
    operation = commit.get("operation")
    if collection != POST_COLLECTION:
        return Ignored(time_us, f"collection {collection!r}")
    did = _did(event.get("did"), "did")
    rkey = commit.get("rkey")
    if not isinstance(rkey, str) or not _RKEY.fullmatch(rkey) or rkey in (".", ".."):
        raise JetstreamShapeError("commit has no valid rkey")
    if operation == "delete":
        return Delete(did, rkey, time_us)
    if operation != "create":
        # Posts are immutable in the app; an update would show the same post twice.
        return Ignored(time_us, f"operation {operation!r}")
    record = commit.get("record")
    if not isinstance(record, Mapping):
        raise JetstreamShapeError(f"post {rkey} has no record")
    text = record.get("text")
    if not isinstance(text, str):
        raise JetstreamShapeError(f"post {rkey} has no text")
    if len(text) > MAX_TEXT_BYTES:
        raise JetstreamShapeError(f"post {rkey} text is {len(text)} characters")
    return Post(did, rkey, time_us, record)


# ---- the payload


def twitter_time(moment: datetime) -> str:
    """ "Wed Oct 10 20:19:24 +0000 2018", without `strftime`, whose names follow the locale."""
    moment = moment.astimezone(UTC)
    weekday, month = _WEEKDAYS[moment.weekday()], _MONTHS[moment.month - 1]
    return f"{weekday} {month} {moment:%d %H:%M:%S} +0000 {moment.year:04d}"


def _created_at(record: Mapping[str, Any], time_us: int) -> str:
    """`createdAt` in Twitter's format; the event time when it is missing or unreadable."""
    raw = _string(record.get("createdAt"))
    moment: datetime | None = None
    if raw is not None and len(raw) <= 64:
        try:
            moment = datetime.fromisoformat(raw)
        except ValueError:
            moment = None
    if moment is not None and moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    if moment is None or not _MIN_YEAR < moment.year < _MAX_YEAR:
        moment = datetime.fromtimestamp(time_us / 1_000_000, UTC)
    return twitter_time(moment)


def _char_offsets(text: str) -> dict[int, int]:
    """UTF-8 byte offset -> code-point offset, for every offset that starts a character."""
    offsets: dict[int, int] = {}
    position = 0
    for index, char in enumerate(text):
        offsets[position] = index
        code = ord(char)
        position += 1 if code < 0x80 else 2 if code < 0x800 else 3 if code < 0x10000 else 4
    offsets[position] = len(text)
    return offsets


def display_url(url: str) -> str:
    """What Twitter showed for a link: no scheme, no `www.`, cut with an ellipsis."""
    shown = url.split("://", 1)[-1].removeprefix("www.")
    if len(shown) > DISPLAY_URL_CHARS:
        shown = shown[: DISPLAY_URL_CHARS - 1] + "…"
    return shown


def _web_url(uri: str) -> str | None:
    """A link the browser can open: http(s) as is, an `at://` post as its bsky.app page."""
    if uri.startswith(("https://", "http://")):
        return uri
    found = _AT_URI.fullmatch(uri)
    if found is not None and found.group(2) == POST_COLLECTION:
        return post_url(found.group(1), found.group(3))
    return None


def _facet_entities(text: str, facets: object, entities: dict[str, list[dict[str, Any]]]) -> None:
    """Links, mentions and tags from facets; a facet with a bad range is left out, not fatal."""
    if not isinstance(facets, list):
        return
    offsets = _char_offsets(text)
    for facet in facets[:MAX_FACETS]:
        if not isinstance(facet, Mapping):
            continue
        index, features = facet.get("index"), facet.get("features")
        if not isinstance(index, Mapping) or not isinstance(features, list):
            continue
        byte_start, byte_end = index.get("byteStart"), index.get("byteEnd")
        if type(byte_start) is not int or type(byte_end) is not int:
            continue
        start, end = offsets.get(byte_start), offsets.get(byte_end)
        if start is None or end is None or start >= end:
            continue
        shown = text[start:end]
        for feature in features:
            if isinstance(feature, Mapping):
                _feature_entity(feature, shown, [start, end], entities)


def _feature_entity(
    feature: Mapping[str, Any],
    shown: str,
    indices: list[int],
    entities: dict[str, list[dict[str, Any]]],
) -> None:
    kind = feature.get("$type")
    if kind == FACET_TAG:
        tag = _string(feature.get("tag"))
        if tag:
            entities["hashtags"].append({"text": tag.removeprefix("#"), "indices": indices})
    elif kind == FACET_LINK:
        uri = _string(feature.get("uri"))
        link = _web_url(uri) if uri else None
        if link:
            entities["urls"].append(
                {"url": link, "expanded_url": link, "display_url": shown, "indices": indices}
            )
    elif kind == FACET_MENTION:
        did = _string(feature.get("did"))
        if did and _DID.fullmatch(did):
            handle = shown.removeprefix("@")
            entities["user_mentions"].append(
                {
                    "screen_name": handle if handle and _HANDLE.fullmatch(handle) else did,
                    "name": None,
                    "id_str": did,
                    "indices": indices,
                }
            )


def _blob_cid(blob: object) -> str | None:
    """The CID of a blob, in the current (`ref.$link`) or the legacy (`cid`) form."""
    if not isinstance(blob, Mapping):
        return None
    ref = blob.get("ref")
    cid = _string(ref.get("$link")) if isinstance(ref, Mapping) else _string(blob.get("cid"))
    return cid if cid and _CID.fullmatch(cid) else None


def _embed_entities(
    post: Post, link: str, embed: object, entities: dict[str, list[dict[str, Any]]]
) -> int:
    """Link cards and quotes become unplaced url entities (matched, not inlined); images, gallery
    items and video thumbnails become media, which the page shows below the text. Returns how
    many images there were beyond the ones kept."""
    if not isinstance(embed, Mapping):
        return 0
    kind = embed.get("$type")
    if kind == EMBED_RECORD_WITH_MEDIA:
        more = _embed_entities(post, link, embed.get("media"), entities)
        record = embed.get("record")
        if isinstance(record, Mapping):
            _embed_entities(post, link, {"$type": EMBED_RECORD, **record}, entities)
        return more
    if kind == EMBED_EXTERNAL:
        external = embed.get("external")
        uri = _string(external.get("uri")) if isinstance(external, Mapping) else None
        url = _web_url(uri) if uri else None
        if url and all(item["expanded_url"] != url for item in entities["urls"]):
            title = _string(external.get("title")) if isinstance(external, Mapping) else None
            entities["urls"].append(
                {
                    "url": url,
                    "expanded_url": url,
                    "display_url": display_url(url),
                    "indices": None,
                    "title": title[:MAX_TITLE_CHARS] if title else None,
                }
            )
    elif kind == EMBED_RECORD:
        record = embed.get("record")
        uri = _string(record.get("uri")) if isinstance(record, Mapping) else None
        url = _web_url(uri) if uri and uri.startswith("at://") else None
        if url and all(item["expanded_url"] != url for item in entities["urls"]):
            entities["urls"].append(
                {"url": url, "expanded_url": url, "display_url": display_url(url), "indices": None}
            )
    elif kind in (EMBED_IMAGES, EMBED_GALLERY):
        items = embed.get("images" if kind == EMBED_IMAGES else "items")
        photos = [
            (cid, image.get("alt"))
            for image in (items[:MAX_GALLERY_ITEMS] if isinstance(items, list) else ())
            if isinstance(image, Mapping) and (cid := _blob_cid(image.get("image")))
        ]
        for cid, alt in photos[:MAX_IMAGES]:
            entities.setdefault("media", []).append(
                _media(link, f"{IMAGE_CDN}/{post.did}/{cid}@jpeg", "photo", alt)
            )
        return max(len(photos) - MAX_IMAGES, 0)
    elif kind == EMBED_VIDEO:
        cid = _blob_cid(embed.get("video"))
        if cid:
            thumbnail = f"{VIDEO_CDN}/{post.did}/{cid}/thumbnail.jpg"
            entities.setdefault("media", []).append(
                _media(link, thumbnail, "video", embed.get("alt"))
            )
    return 0


def _media(link: str, src: str, kind: str, alt: object) -> dict[str, Any]:
    return {
        "url": link,
        "expanded_url": link,
        "display_url": None,
        "media_url_https": src,
        "type": kind,
        "indices": None,
        "ext_alt_text": _string(alt),
    }


def post_payload(post: Post, author: Profile | None = None) -> dict[str, Any]:
    """The browser payload for a post, shaped like `tweets.trim` output, plus `url`.

    Without an `author` profile (not fetched yet) the DID stands in for handle and name; the
    page is told the real ones later in a `profile` frame.
    """
    record = post.record
    text: str = record["text"]
    handle = author.handle if author is not None else None
    entities: dict[str, list[dict[str, Any]]] = {"hashtags": [], "user_mentions": [], "urls": []}
    _facet_entities(text, record.get("facets"), entities)
    tags = record.get("tags")
    known = {item["text"].lower() for item in entities["hashtags"]}
    for tag in tags[:MAX_FACETS] if isinstance(tags, list) else ():
        if isinstance(tag, str) and tag.strip("#") and tag.strip("#").lower() not in known:
            known.add(tag.strip("#").lower())
            entities["hashtags"].append({"text": tag.strip("#"), "indices": None})
    link = post_url(post.did, post.rkey, handle)
    more_media = _embed_entities(post, link, record.get("embed"), entities)
    langs = record.get("langs")
    lang = langs[0] if isinstance(langs, list) and langs and isinstance(langs[0], str) else None
    screen_name = handle or post.did
    payload: dict[str, Any] = {
        "id_str": post.id_str,
        "text": text,
        "created_at": _created_at(record, post.time_us),
        "timestamp_ms": post.time_us // 1000,
        "lang": lang,
        "source": SOURCE,
        "url": link,
        "user": {
            "id_str": post.did,
            "name": (author.name if author is not None else None) or screen_name,
            "screen_name": screen_name,
            "profile_image_url_https": author.avatar if author is not None else None,
            "verified": False,
        },
        "entities": entities,
    }
    if more_media:
        payload["more_media"] = more_media
    return payload


def profile_from_appview(view: object) -> Profile:
    """A profile from one `app.bsky.actor.defs#profileViewDetailed` of `getProfiles`.

    An invalid handle (the AppView says ``handle.invalid``) is dropped, so the DID is shown.
    The avatar must be an https URL or a data: image, the only sources the page loads.
    """
    if not isinstance(view, Mapping):
        raise JetstreamShapeError("profile is not an object")
    did = _did(view.get("did"), "profile.did")
    handle = _string(view.get("handle"))
    if not handle or handle == "handle.invalid" or not _HANDLE.fullmatch(handle):
        handle = None
    name = _string(view.get("displayName"))
    avatar = _string(view.get("avatar"))
    if avatar is not None and not avatar.startswith(("https://", "data:image/")):
        avatar = None
    return Profile(did, handle, name.strip()[:MAX_TITLE_CHARS] if name else None, avatar)
