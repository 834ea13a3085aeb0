"""Bluesky's Jetstream and the AppView's getProfiles as one ASGI app, served on loopback.

Routes:

* WebSocket ``/subscribe``: one JSON text frame per event, as Jetstream sends them (encoded as
  Go's encoding/json does, ``<`` as ``\\u003c``, and ``>`` and ``&`` alike). Repeated
  ``wantedCollections`` params filter commits (exact NSIDs or ``prefix.*``); identity and account
  events always pass. ``cursor`` (``time_us``) first replays the bounded history from that time.
  ``maxMessageSizeBytes`` skips the events whose JSON is longer (0, negative or absent: no
  limit), live and replayed, unless `honour_max_message_size` is off (an old or non-compliant
  server).
* ``GET /xrpc/app.bsky.actor.getProfiles?actors=...``: profile views of the synthetic authors (and
  of any set with `set_profile`), at most `MAX_ACTORS` actors a call, with ``ratelimit-*``
  headers; `rate_limit_profiles` makes it answer 429 until a time.

`generate` writes `rate` events per second (0: only injected ones): posts rewritten from
`corpus.TweetFactory` tweets (multilingual, emoji, tags, mentions and links as facets with UTF-8
byte offsets), some with a link card or a quote, plus deletes of recent posts and identity and
account events. Every stream has a bounded channel; a full one misses events, counted on its
`JetstreamConnection`.

Tests inject with `post`, `delete`, `identity`, `account`, `inject` and `inject_raw`, break
streams with `refuse_next`, `drop_streams`, `stall_streams` and `choke_on`, and observe
`connections` (each with its query, the cursor and size limit it asked for, and what it was sent),
`profile_calls` and `wait_until`. All scheduling uses trio's clock.

Built with ``control=True`` (``pats-trio emulate --jetstream --control``) it also answers the
test-only HTTP control API of `pats_trio.emulator.jetstream_control` under ``/_control``, so tests
can drive it when it runs as its own process. Never mount it anywhere but tests.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import math
import random
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any, NamedTuple, cast
from urllib.parse import parse_qs

import orjson
import trio
from hypercorn.trio import serve

from pats_trio.emulator.asgi import (
    JSON,
    Receive,
    Send,
    cancel_on_disconnect,
    hypercorn_config,
    lifespan,
    respond,
)
from pats_trio.emulator.control import CONTROL_PREFIX
from pats_trio.emulator.corpus import USERS, TweetFactory, User, avatar_uri

LOGGER = logging.getLogger(__name__)
HYPERCORN_LOGGER = logging.getLogger(__name__ + ".hypercorn")

SUBSCRIBE_PATH = "/subscribe"
GET_PROFILES_PATH = "/xrpc/app.bsky.actor.getProfiles"
POST_COLLECTION = "app.bsky.feed.post"
MAX_ACTORS = 25
HISTORY_SIZE = 10_000
STREAM_BUFFER = 1000
RECENT_POSTS = 500
RATE_LIMIT = 3000
RATE_LIMIT_WINDOW_SECONDS = 300
DELETE_SHARE = 0.03
IDENTITY_SHARE = 0.01
ACCOUNT_SHARE = 0.005
CARD_SHARE = 0.5
QUOTE_SHARE = 0.3
MAX_LAG = 1.0
SHUTDOWN_GRACE = 1.0
CLOSE_DROPPED = 1011
_TID_ALPHABET = "234567abcdefghijklmnopqrstuvwxyz"


class JetstreamURLs(NamedTuple):
    """Where `serve_jetstream` listens: the Jetstream host and the AppView base URL."""

    jetstream: str
    appview: str


@dataclass
class JetstreamConnection:
    """One `/subscribe` request, kept after it closes so tests can inspect it.

    `status` is 101 once accepted, or the HTTP status it was refused with. `sent` counts the
    events written (`replayed` of them from the history); `skipped` those missed on a full queue,
    `too_big` those left out for `max_message_size`.
    """

    id: int
    path: str
    collections: tuple[str, ...]
    cursor: int | None
    user_agent: str | None
    opened_at: float
    query: str = ""
    max_message_size: int = 0
    """``maxMessageSizeBytes`` as asked (0: no limit, as Jetstream reads a negative one)."""
    closed_at: float | None = None
    status: int = 101
    sent: int = 0
    replayed: int = 0
    skipped: int = 0
    too_big: int = 0
    """Events not sent because their JSON was longer than `max_message_size`."""


@dataclass(frozen=True)
class ProfileCall:
    """One getProfiles request: the actors it asked for and the status it got."""

    actors: tuple[str, ...]
    status: int
    at: float


class _Item(NamedTuple):
    time_us: int | None
    collection: str | None
    text: str
    size: int
    """UTF-8 bytes of `text`: what ``maxMessageSizeBytes`` is compared with."""


@dataclass(eq=False)
class _Stream:
    record: JetstreamConnection
    send_channel: trio.MemorySendChannel[_Item]
    receive_channel: trio.MemoryReceiveChannel[_Item]
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    stalled: bool = False
    dropped: bool = False

    def wants(self, collection: str | None) -> bool:
        if collection is None or not self.record.collections:
            return True
        return any(
            collection == wanted or (wanted.endswith(".*") and collection.startswith(wanted[:-1]))
            for wanted in self.record.collections
        )


_GO_ESCAPES = (
    (b"<", b"\\u003c"),
    (b">", b"\\u003e"),
    (b"&", b"\\u0026"),
    ("\u2028".encode(), b"\\u2028"),
    ("\u2029".encode(), b"\\u2029"),
)


def encode_event(event: Mapping[str, Any]) -> bytes:
    """`event` as Jetstream writes it: Go's encoding/json escapes these characters, so a record
    full of ``<`` becomes an event six times its size.

    >>> encode_event({"text": "a<b & c>d"})
    b'{"text":"a\\\\u003cb \\\\u0026 c\\\\u003ed"}'
    """
    # Each of these can only stand inside a string in orjson's output, where the escape means
    # the same character.
    encoded = orjson.dumps(event)
    for raw, escaped in _GO_ESCAPES:
        encoded = encoded.replace(raw, escaped)
    return encoded


def did_for(screen_name: str) -> str:
    """A stable did:plc for a corpus account (24 base32 characters, as real ones have)."""
    digest = hashlib.blake2b(screen_name.lower().encode(), digest_size=15).digest()
    return "did:plc:" + base64.b32encode(digest).decode().lower()


def handle_for(screen_name: str) -> str:
    return screen_name.lower().replace("_", "-").strip("-") + ".bsky.social"


def tid(time_us: int, clock_id: int = 0) -> str:
    """A record key in the TID form: 13 sortable base32 characters from time and a clock id."""
    value = ((time_us & ((1 << 53) - 1)) << 10) | (clock_id & 0x3FF)
    chars = []
    for _ in range(13):
        chars.append(_TID_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def iso_time(time_us: int) -> str:
    moment = datetime.fromtimestamp(time_us / 1_000_000, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def facet(byte_start: int, byte_end: int, feature: Mapping[str, Any]) -> dict[str, Any]:
    return {"index": {"byteStart": byte_start, "byteEnd": byte_end}, "features": [dict(feature)]}


class RichText:
    """Text built piece by piece with facets at the right UTF-8 byte offsets.

    >>> text = RichText().add("héllo ").tag("trio")
    >>> text.text, text.facets[0]["index"]
    ('héllo #trio', {'byteStart': 7, 'byteEnd': 12})
    """

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.size = 0
        self.facets: list[dict[str, Any]] = []

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def add(self, text: str) -> RichText:
        self.parts.append(text)
        self.size += len(text.encode())
        return self

    def _faceted(self, shown: str, feature: Mapping[str, Any]) -> RichText:
        start = self.size
        self.add(shown)
        self.facets.append(facet(start, self.size, feature))
        return self

    def tag(self, tag: str) -> RichText:
        return self._faceted("#" + tag, {"$type": "app.bsky.richtext.facet#tag", "tag": tag})

    def mention(self, handle: str, did: str) -> RichText:
        feature = {"$type": "app.bsky.richtext.facet#mention", "did": did}
        return self._faceted("@" + handle, feature)

    def link(self, shown: str, uri: str) -> RichText:
        return self._faceted(shown, {"$type": "app.bsky.richtext.facet#link", "uri": uri})


def _unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _rich_text(status: Mapping[str, Any]) -> RichText:
    """A corpus tweet's text rewritten the Bluesky way: links shown short, mentions as handles."""
    extended = status.get("extended_tweet") or {}
    text: str = extended.get("full_text") or status["text"]
    entities = extended.get("entities") or status.get("entities") or {}
    spans: list[tuple[int, int, str, Mapping[str, Any]]] = []
    for kind in ("hashtags", "user_mentions", "urls"):
        for entity in entities.get(kind, ()):
            start, end = entity["indices"]
            spans.append((start, end, kind, entity))
    spans.sort(key=lambda span: span[0])
    rich = RichText()
    position = 0
    for start, end, kind, entity in spans:
        if start < position:
            continue
        rich.add(_unescape(text[position:start]))
        if kind == "hashtags":
            rich.tag(entity["text"])
        elif kind == "user_mentions":
            rich.mention(handle_for(entity["screen_name"]), did_for(entity["screen_name"]))
        elif "twitter.com/" in entity["expanded_url"]:
            pass  # a link to a quoted tweet: a quote embed stands for it
        else:
            rich.link(entity["display_url"], entity["expanded_url"])
        position = end
    rich.add(_unescape(text[position:]).rstrip())
    return rich


class JetstreamEmulator:
    """Jetstream's and the AppView's state: open streams, history, profiles, and faults.

    The instance is the ASGI app; `serve_jetstream` serves it and runs `generate`.
    """

    def __init__(
        self,
        *,
        rate: float = 5.0,
        seed: int | None = None,
        history_size: int = HISTORY_SIZE,
        control: bool = False,
        honour_max_message_size: bool = True,
    ) -> None:
        if rate < 0:
            raise ValueError("rate must not be negative")
        self.rate = rate
        self.control = control
        self.factory = TweetFactory(seed)
        self._rng = random.Random(None if seed is None else f"jetstream:{seed}")
        self.history: deque[_Item] = deque(maxlen=history_size)
        self.connections: list[JetstreamConnection] = []
        self.profile_calls: list[ProfileCall] = []
        self.profiles: dict[str, dict[str, Any]] = {}
        for user in USERS:
            self._register(user)
        self.profile_latency = 0.0
        """Seconds getProfiles waits before answering (a slow AppView)."""
        self.honour_max_message_size = honour_max_message_size
        """False: send every event whatever ``maxMessageSizeBytes`` asks, as a server that
        does not know the parameter would."""
        self.sent = 0
        self._streams: dict[int, _Stream] = {}
        self._refusals: deque[int] = deque()
        self._chokes: set[int] = set()
        self._rate_limited_until = -math.inf
        self._recent: deque[tuple[str, str]] = deque(maxlen=RECENT_POSTS)
        self._last_time_us = 0
        self._wall_offset: float | None = None
        self._changed = trio.Event()

    def _register(self, user: User) -> None:
        did = did_for(user.screen_name)
        self.set_profile(
            did,
            handle_for(user.screen_name),
            user.name,
            avatar_uri(user.name, user.screen_name),
        )

    # ---- observing

    def open_connections(self) -> list[JetstreamConnection]:
        return [stream.record for stream in self._streams.values()]

    async def wait_until(self, predicate: Callable[[JetstreamEmulator], bool]) -> None:
        """Return once `predicate(self)` holds; checked after every open, close, event and call."""
        while True:
            changed = self._changed
            if predicate(self):
                return
            await changed.wait()

    def now_us(self) -> int:
        """Wall-clock microseconds that advance with trio's clock, strictly increasing."""
        if self._wall_offset is None:
            self._wall_offset = time.time() - trio.current_time()
        now = int((self._wall_offset + trio.current_time()) * 1_000_000)
        self._last_time_us = max(now, self._last_time_us + 1)
        return self._last_time_us

    # ---- profiles (the AppView)

    def set_profile(
        self,
        did: str,
        handle: str,
        display_name: str | None = None,
        avatar: str | None = None,
    ) -> None:
        """Add or change what getProfiles returns for `did`."""
        view: dict[str, Any] = {"did": did, "handle": handle}
        if display_name is not None:
            view["displayName"] = display_name
        if avatar is not None:
            view["avatar"] = avatar
        self.profiles[did] = view

    def rate_limit_profiles(self, seconds: float) -> None:
        """Answer getProfiles with 429 for `seconds` (of trio time) from now."""
        self._rate_limited_until = trio.current_time() + seconds

    # ---- injecting

    def inject(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """Stamp `event` with the next ``time_us``, keep it in the history, send it to streams."""
        stamped = {**event, "time_us": self.now_us()}
        commit = stamped.get("commit")
        collection = commit.get("collection") if isinstance(commit, Mapping) else None
        encoded = encode_event(stamped)
        item = _Item(stamped["time_us"], collection, encoded.decode(), len(encoded))
        self.history.append(item)
        for stream in list(self._streams.values()):
            if stream.wants(collection):
                self._offer(stream, item)
        self._notify()
        return stamped

    def inject_raw(self, text: str) -> None:
        """Send `text` as it is to every open stream, without keeping it: junk, for tests."""
        item = _Item(None, None, text, len(text.encode()))
        for stream in list(self._streams.values()):
            self._offer(stream, item)

    def post(
        self,
        did: str,
        text: str | RichText,
        *,
        rkey: str | None = None,
        langs: Sequence[str] = ("en",),
        embed: Mapping[str, Any] | None = None,
        tags: Sequence[str] = (),
        created_at: str | None = None,
    ) -> dict[str, Any]:
        """Inject a new post by `did`; `text` may be `RichText` to carry facets."""
        time_us = self.now_us()
        rich = text if isinstance(text, RichText) else RichText().add(text)
        record: dict[str, Any] = {
            "$type": POST_COLLECTION,
            "createdAt": created_at or iso_time(time_us),
            "langs": list(langs),
            "text": rich.text,
        }
        if rich.facets:
            record["facets"] = rich.facets
        if embed is not None:
            record["embed"] = dict(embed)
        if tags:
            record["tags"] = list(tags)
        rkey = rkey or tid(time_us, self._rng.randrange(1024))
        self._recent.append((did, rkey))
        return self.inject(
            {
                "did": did,
                "kind": "commit",
                "commit": {
                    "rev": tid(time_us),
                    "operation": "create",
                    "collection": POST_COLLECTION,
                    "rkey": rkey,
                    "record": record,
                    "cid": "bafyrei" + tid(time_us, 1) + tid(time_us, 2),
                },
            }
        )

    def delete(self, did: str, rkey: str) -> dict[str, Any]:
        time_us = self.now_us()
        commit = {
            "rev": tid(time_us),
            "operation": "delete",
            "collection": POST_COLLECTION,
            "rkey": rkey,
        }
        return self.inject({"did": did, "kind": "commit", "commit": commit})

    def identity(self, did: str, handle: str) -> dict[str, Any]:
        """An identity event; the AppView returns `handle` from now on."""
        if did in self.profiles:
            self.profiles[did] = {**self.profiles[did], "handle": handle}
        body = {"did": did, "handle": handle, "seq": len(self.history), "time": ""}
        body["time"] = iso_time(self.now_us())
        return self.inject({"did": did, "kind": "identity", "identity": body})

    def account(self, did: str, *, active: bool, status: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"active": active, "did": did, "seq": len(self.history)}
        body["time"] = iso_time(self.now_us())
        if status is not None:
            body["status"] = status
        return self.inject({"did": did, "kind": "account", "account": body})

    def refuse_next(self, count: int = 1, status: int = 503) -> None:
        """Refuse the next `count` WebSocket handshakes with this HTTP status."""
        self._refusals.extend([status] * count)

    def drop_streams(self) -> None:
        """Close every open stream at once (code 1011); queued events are lost to them."""
        for stream in list(self._streams.values()):
            self._drop(stream)
        self._notify()

    def _drop(self, stream: _Stream) -> None:
        stream.dropped = True
        stream.scope.cancel()
        self._close(stream)

    def stall_streams(self) -> None:
        """Open streams send nothing more but stay open."""
        for stream in self._streams.values():
            stream.stalled = True

    def choke_on(self, time_us: int) -> None:
        """A stream about to send the event stamped `time_us` is closed instead (code 1011), as
        by a server that fails on that one event: live, and again in every replay of it."""
        self._chokes.add(time_us)

    # ---- the event source

    async def generate(self) -> None:
        """Inject `rate` synthetic events per second, until cancelled."""
        if self.rate <= 0:
            await trio.sleep_forever()
        next_at = trio.current_time()
        while True:
            next_at = max(next_at + self._rng.expovariate(self.rate), trio.current_time() - MAX_LAG)
            await trio.sleep_until(next_at)
            if self._streams:
                self.synthetic_event()

    def synthetic_event(self) -> dict[str, Any]:
        """One plausible event: mostly posts, sometimes a delete, an identity or account event."""
        roll = self._rng.random()
        if roll < DELETE_SHARE and self._recent:
            did, rkey = self._recent[self._rng.randrange(len(self._recent))]
            return self.delete(did, rkey)
        user = self._rng.choice(USERS)
        did = did_for(user.screen_name)
        if roll < DELETE_SHARE + IDENTITY_SHARE:
            return self.identity(did, self.profiles[did]["handle"])
        if roll < DELETE_SHARE + IDENTITY_SHARE + ACCOUNT_SHARE:
            return self.account(did, active=True)
        return self.synthetic_post()

    def synthetic_post(self) -> dict[str, Any]:
        status = self.factory.next_status(self.now_us() // 1000)
        status = status.get("retweeted_status") or status
        rich = _rich_text(status)
        embed: dict[str, Any] | None = None
        links = [f for f in rich.facets if f["features"][0]["$type"].endswith("#link")]
        if status.get("quoted_status") and self._recent and self._rng.random() < QUOTE_SHARE * 3:
            did, rkey = self._recent[self._rng.randrange(len(self._recent))]
            uri = f"at://{did}/{POST_COLLECTION}/{rkey}"
            embed = {"$type": "app.bsky.embed.record", "record": {"uri": uri, "cid": "bafyrei"}}
        elif links and self._rng.random() < CARD_SHARE:
            uri = links[0]["features"][0]["uri"]
            title = uri.split("://", 1)[-1].split("/", 1)[0]
            embed = {
                "$type": "app.bsky.embed.external",
                "external": {"uri": uri, "title": title, "description": ""},
            }
        lang = status.get("lang")
        return self.post(
            did_for(status["user"]["screen_name"]),
            rich,
            langs=(lang,) if isinstance(lang, str) and lang != "und" else (),
            embed=embed,
        )

    def _offer(self, stream: _Stream, item: _Item) -> None:
        if stream.stalled:
            return
        if not self._fits(stream, item):
            return
        try:
            stream.send_channel.send_nowait(item)
        except trio.WouldBlock:
            stream.record.skipped += 1
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    def _fits(self, stream: _Stream, item: _Item) -> bool:
        """Whether `item` is within the stream's ``maxMessageSizeBytes``; counts it if not."""
        limit = stream.record.max_message_size
        if not self.honour_max_message_size or limit <= 0 or item.size <= limit:
            return True
        stream.record.too_big += 1
        return False

    def _close(self, stream: _Stream) -> bool:
        if self._streams.pop(stream.record.id, None) is None:
            return False
        stream.record.closed_at = trio.current_time()
        return True

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    # ---- ASGI

    async def __call__(self, scope: Mapping[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
        elif scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)

    async def _websocket(self, scope: Mapping[str, Any], receive: Receive, send: Send) -> None:
        if (await receive())["type"] != "websocket.connect":
            return
        query = scope["query_string"].decode("latin-1")
        params = parse_qs(query)
        raw_cursor = params.get("cursor", [""])[-1]
        raw_max_size = params.get("maxMessageSizeBytes", [""])[-1]
        max_size = _integer(raw_max_size)
        record = JetstreamConnection(
            id=len(self.connections) + 1,
            path=scope["path"],
            collections=tuple(params.get("wantedCollections", [])),
            cursor=int(raw_cursor) if raw_cursor.isdigit() else None,
            user_agent=_header(scope, b"user-agent"),
            opened_at=trio.current_time(),
            query=query,
            max_message_size=max(max_size or 0, 0),
        )
        self.connections.append(record)
        refusal: tuple[int, bytes] | None = None
        if record.path != SUBSCRIBE_PATH:
            refusal = (404, b"Not Found")
        elif raw_cursor and record.cursor is None:
            refusal = (400, b"cursor must be an integer")
        elif raw_max_size and max_size is None:
            refusal = (400, b"maxMessageSizeBytes must be an integer")
        elif self._refusals:
            refusal = (self._refusals.popleft(), b"refused by the emulator")
        if refusal is not None:
            await self._refuse(record, send, *refusal)
            return
        send_channel, receive_channel = trio.open_memory_channel[_Item](STREAM_BUFFER)
        stream = _Stream(record, send_channel, receive_channel)
        # Registered and the replay taken in one step: no event falls between the two.
        self._streams[record.id] = stream
        replay = [
            item
            for item in self.history
            if record.cursor is not None
            and item.time_us is not None
            and item.time_us >= record.cursor
            and stream.wants(item.collection)
            and self._fits(stream, item)
        ]
        self._notify()
        LOGGER.info(
            "jetstream emulator: stream %d opened (cursor=%s, %d to replay)",
            record.id,
            record.cursor,
            len(replay),
        )
        try:
            await send({"type": "websocket.accept"})
            with stream.scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(cancel_on_disconnect, receive, nursery.cancel_scope)
                    await self._write(stream, replay, send)
            if stream.dropped:
                # The client may be gone already; there is nothing left to tell it then.
                with contextlib.suppress(Exception):
                    await send({"type": "websocket.close", "code": CLOSE_DROPPED})
        finally:
            if self._close(stream):
                self._notify()
            send_channel.close()
            receive_channel.close()

    async def _write(self, stream: _Stream, replay: Iterable[_Item], send: Send) -> None:
        for item in replay:
            if stream.stalled:
                await trio.sleep_forever()
            if self._chokes_on(stream, item):
                return
            await send({"type": "websocket.send", "text": item.text})
            stream.record.sent += 1
            stream.record.replayed += 1
        while True:
            item = await stream.receive_channel.receive()
            if stream.stalled:
                await trio.sleep_forever()
            if self._chokes_on(stream, item):
                return
            await send({"type": "websocket.send", "text": item.text})
            stream.record.sent += 1
            self.sent += 1
            self._notify()

    def _chokes_on(self, stream: _Stream, item: _Item) -> bool:
        """Drop `stream` instead of sending `item` if `choke_on` named it."""
        if item.time_us is None or item.time_us not in self._chokes:
            return False
        LOGGER.info("jetstream emulator: stream %d chokes on %d", stream.record.id, item.time_us)
        self._drop(stream)
        self._notify()
        return True

    async def _refuse(
        self, record: JetstreamConnection, send: Send, status: int, body: bytes
    ) -> None:
        record.status = status
        record.closed_at = trio.current_time()
        self._notify()
        headers = [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(body))]
        await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": body})

    async def _http(self, scope: Mapping[str, Any], receive: Receive, send: Send) -> None:
        path = scope["path"]
        if self.control and (path == CONTROL_PREFIX or path.startswith(CONTROL_PREFIX + "/")):
            # Imported here: the control module builds on this one's RichText.
            from pats_trio.emulator.jetstream_control import serve_jetstream_control

            await serve_jetstream_control(self, scope, receive, send)
            return
        if path != GET_PROFILES_PATH:
            await _respond_json(
                send, 404, {"error": "MethodNotImplemented", "message": "Not Found"}
            )
            return
        if scope["method"] != "GET":
            await _respond_json(send, 405, {"error": "InvalidRequest", "message": "use GET"})
            return
        actors = tuple(parse_qs(scope["query_string"].decode("latin-1")).get("actors", []))
        now = trio.current_time()
        if self.profile_latency > 0:
            await trio.sleep(self.profile_latency)
        status = 200
        remaining = RATE_LIMIT - 1
        reset_in: float = RATE_LIMIT_WINDOW_SECONDS
        if now < self._rate_limited_until:
            status, remaining, reset_in = 429, 0, self._rate_limited_until - now
        elif not actors or len(actors) > MAX_ACTORS:
            status = 400
        self.profile_calls.append(ProfileCall(actors, status, now))
        self._notify()
        headers = [
            (b"ratelimit-limit", str(RATE_LIMIT).encode()),
            (b"ratelimit-remaining", str(remaining).encode()),
            # Epoch seconds, rounded up so that a client waiting until then is never early.
            (b"ratelimit-reset", str(math.ceil(time.time() + reset_in)).encode()),
            (b"ratelimit-policy", f"{RATE_LIMIT};w={RATE_LIMIT_WINDOW_SECONDS}".encode()),
        ]
        body: dict[str, Any]
        if status == 429:
            body = {"error": "RateLimitExceeded", "message": "Rate Limit Exceeded"}
        elif status == 400:
            body = {"error": "InvalidRequest", "message": f"1 to {MAX_ACTORS} actors, please"}
        else:
            by_handle = {view["handle"]: view for view in self.profiles.values()}
            views = [self.profiles.get(actor) or by_handle.get(actor) for actor in actors]
            body = {"profiles": [view for view in views if view is not None]}
        await _respond_json(send, status, body, headers)


def _integer(text: str) -> int | None:
    """A query parameter as Go's strconv.Atoi reads it (an optional sign, then digits)."""
    digits = text[1:] if text[:1] in ("-", "+") else text
    return int(text) if digits.isascii() and digits.isdigit() else None


def _header(scope: Mapping[str, Any], name: bytes) -> str | None:
    return next(
        (value.decode("latin-1") for key, value in scope["headers"] if key.lower() == name), None
    )


async def _respond_json(
    send: Send, status: int, body: Mapping[str, Any], headers: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    await respond(send, status, orjson.dumps(body), content_type=JSON, headers=headers)


async def serve_jetstream(
    emulator: JetstreamEmulator,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    task_status: trio.TaskStatus[JetstreamURLs] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve `emulator` (WebSocket and HTTP on one port) and run its generator, forever.

    Reports `JetstreamURLs`, such as ``("ws://127.0.0.1:43121", "http://127.0.0.1:43121")``::

        urls = await nursery.start(serve_jetstream, emulator)

    Resource handling:
        hypercorn owns the listening socket and every connection; the generator runs beside it
        in this function's nursery. Cancelling the caller's scope closes all of them.

    Error handling:
        A failure to bind (`OSError`) propagates before `task_status.started`.
    """
    config = hypercorn_config(host, port, HYPERCORN_LOGGER, SHUTDOWN_GRACE)
    async with trio.open_nursery() as nursery:
        app = cast(Any, emulator)
        binds: list[str] = await nursery.start(partial(serve, app, config, mode="asgi"))
        nursery.start_soon(emulator.generate)
        urls = JetstreamURLs("ws" + binds[0].removeprefix("http"), binds[0])
        LOGGER.info("jetstream emulator at %s (%.1f events/s)", urls.jetstream, emulator.rate)
        if emulator.control:
            LOGGER.warning("jetstream emulator: control API open at %s%s", binds[0], CONTROL_PREFIX)
        task_status.started(urls)
