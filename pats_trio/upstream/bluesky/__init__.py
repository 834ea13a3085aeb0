"""The Bluesky Jetstream source: one WebSocket serves both stream kinds, posts become tweets.

`BlueskyUpstream` is the Jetstream adapter on the shared lifecycle (`upstream/lifecycle.py`),
which keeps at most one trio-websocket connection to
``{host}/subscribe?wantedCollections=app.bsky.feed.post``. It connects when either stream kind has
viewers and lingers after the last one leaves. Filter viewers are matched locally by the hub
(every post carries its `tweet_terms`), so a keyword change never reconnects.

It keeps the last ``time_us`` it read and resumes with ``cursor = time_us - 5 s``, dropping the
replayed posts it already delivered by (did, rkey) within a bounded window. A connection that
fails, ends, or stays silent for `stall` seconds is replaced, failing over to the next host;
retries back off exponentially with jitter once every host has failed. Every state change is
published to both stream kinds as a `status` event.

It asks Jetstream to leave out events over half its message limit (``maxMessageSizeBytes``).
A server that sends one anyway, or any event that ends connection after connection at the same
point, must not stop the stream: `resume.ResumePlan` moves the resume point past it.

Authors' handles, names and avatars come from `profiles.ProfileFetcher`. A post is never held
for them: it goes out at once with what the cache has (or the DID), and a ``profile`` frame
follows when the profile arrives.

The package is the adapter (so its log lines are still `pats_trio.upstream.bluesky`'s): the
connection, where it resumes, and reading it. Beside it are what each event means for viewers
(`feed`), the pure Jetstream mapping (`jetstream`), the AppView profiles (`profiles`), the posts
to take back (`recent_posts`) and the resume plan (`resume`).
"""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlencode

import httpx
import orjson
import trio
import trio_websocket

from pats_trio.config import Settings
from pats_trio.events import STREAM_KINDS, StreamKind
from pats_trio.upstream.backoff import classify, doubling
from pats_trio.upstream.bluesky.feed import JetstreamFeed
from pats_trio.upstream.bluesky.jetstream import (
    POST_COLLECTION,
    JetstreamShapeError,
    parse_event,
)
from pats_trio.upstream.bluesky.profiles import USER_AGENT, ProfileCache
from pats_trio.upstream.bluesky.resume import Attempt, ResumePlan
from pats_trio.upstream.lifecycle import (
    HandedOver,
    Lifecycle,
    Link,
    Retry,
    StreamStalledError,
)
from pats_trio.upstream.source import Publish, SourceStats

LOGGER = logging.getLogger(__name__)

SUBSCRIBE_PATH = "/subscribe"
STALL_SECONDS = 60.0
"""The firehose never pauses this long: silence this long means the socket is dead."""
REWIND_US = 5_000_000
"""A resumed connection replays from this far before the last event read (hosts' clocks and
ordering differ a little), and the replayed posts already delivered are dropped."""
DEDUP_WINDOW = 20_000
"""Posts remembered for dropping replays; several times what the rewind replays at peak."""
CONNECT_TIMEOUT_SECONDS = 10.0
CLOSE_TIMEOUT_SECONDS = 5.0
MAX_MESSAGE_BYTES = 1024 * 1024
"""Our receive limit: trio-websocket closes the connection (1009) on a longer message."""
WANTED_MESSAGE_BYTES = MAX_MESSAGE_BYTES // 2
"""Asked of Jetstream as ``maxMessageSizeBytes``: it leaves out longer events. Jetstream counts
UTF-8 bytes, trio-websocket characters (never more than the bytes); half leaves room for any
difference in what each measures."""
LARGE_MESSAGE_BYTES = 8 * MAX_MESSAGE_BYTES
"""The limit of a connection that follows a 1009: enough to read the event (a record is at most
1 MB, and Jetstream's JSON at most six bytes a character) and skip it by its ``time_us``."""
MESSAGE_TOO_BIG = 1009
FAILURE_FIRST_SECONDS = 1.0
REJECTED_FIRST_SECONDS = 5.0
FAILURE_CAP_SECONDS = 120.0
NETWORK_ERRORS = (trio_websocket.HandshakeError, OSError, trio.BrokenResourceError)


class BlueskyUpstream:
    """The one Jetstream connection's adapter and its lifecycle. The hub says what is wanted
    with `demand`."""

    def __init__(
        self,
        publish: Publish,
        *,
        hosts: Sequence[str] = Settings.bluesky_hosts,
        appview: str = Settings.bluesky_appview,
        http: httpx.AsyncClient,
        linger: float = Settings.linger_seconds,
        stall: float = STALL_SECONDS,
        rewind_us: int = REWIND_US,
        dedup_window: int = DEDUP_WINDOW,
        profile_cache: ProfileCache | None = None,
        connect_timeout: float = CONNECT_TIMEOUT_SECONDS,
        rng: random.Random | None = None,
    ) -> None:
        if not hosts:
            raise ValueError("at least one Jetstream host is needed")
        self._publish = publish
        self._hosts = tuple(host.rstrip("/").removesuffix(SUBSCRIBE_PATH) for host in hosts)
        self._host_index = 0
        self._resume = ResumePlan(
            rewind_us=rewind_us,
            max_message_bytes=MAX_MESSAGE_BYTES,
            large_message_bytes=LARGE_MESSAGE_BYTES,
        )
        self._attempt = Attempt(None, MAX_MESSAGE_BYTES)
        """What the current connection asked for."""
        self._received = 0
        """Messages the current connection has read."""
        self._connect_timeout = connect_timeout
        self._active: dict[StreamKind, bool] = dict.fromkeys(STREAM_KINDS, False)
        self._feed = JetstreamFeed(
            publish,
            self._active,
            http=http,
            appview=appview,
            profile_cache=profile_cache,
            dedup_window=dedup_window,
        )
        self.profiles = self._feed.profiles
        self.stats = self._feed.stats
        self.cursor: int | None = None
        """The latest ``time_us`` read (or skipped); a reconnect asks for ``cursor - rewind_us``
        unless the `ResumePlan` moves past a point that failed."""
        self._lifecycle = Lifecycle[None, trio_websocket.WebSocketConnection](
            "bluesky",
            self,
            publish=publish,
            kinds=STREAM_KINDS,
            stats=self.stats,
            target=None,
            linger=linger,
            stall=stall,
            rng=rng or random.Random(),
            log=LOGGER,
        )

    @property
    def host(self) -> str:
        """The host the next (or current) connection uses."""
        return self._hosts[self._host_index]

    @property
    def state(self) -> dict[StreamKind, str]:
        """The state viewers of each kind were last told: one connection, one state."""
        return dict.fromkeys(STREAM_KINDS, self._lifecycle.state)

    def state_of(self, kind: StreamKind) -> str:
        return self._lifecycle.state

    def retry_in_of(self, kind: StreamKind) -> float:
        return self._lifecycle.retry_in

    def stats_of(self, kind: StreamKind) -> SourceStats:
        """One connection serves both kinds, so both report the same counters."""
        return self.stats

    def resume_point(self) -> int | None:
        """The ``time_us`` of the latest event read."""
        return self.cursor

    def resume_from(self, point: int) -> None:
        """Jetstream replays from a cursor, so a new owner loses none of the takeover's gap; the
        rewind replays a few seconds already published, which readers drop by id."""
        if self.cursor is None:
            self.cursor = point

    def demand(self, kind: StreamKind, *, active: bool, track: str = "") -> None:
        """Say whether anyone watches `kind`. `track` is ignored: filters are matched locally."""
        self._active[kind] = active
        self._lifecycle.demand(active=any(self._active.values()), target=None)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve demand forever.

        Resource handling: the profile fetcher and the lifecycle's connection live in nurseries
        opened here, so cancelling `run` closes them all. Error handling: upstream failures
        never escape; they become `status` events and a backoff.
        """
        async with trio.open_nursery() as nursery:
            await nursery.start(self.profiles.run)
            await nursery.start(self._lifecycle.run)
            task_status.started()

    def subscribe_url(self, host: str, cursor: int | None) -> str:
        """The `/subscribe` URL for `host`: posts no longer than we want, from `cursor` if any."""
        query: list[tuple[str, str | int]] = [
            ("wantedCollections", POST_COLLECTION),
            ("maxMessageSizeBytes", WANTED_MESSAGE_BYTES),
        ]
        if cursor is not None:
            query.append(("cursor", cursor))
        return f"{host}{SUBSCRIBE_PATH}?{urlencode(query)}"

    def _next_host(self) -> None:
        self._host_index = (self._host_index + 1) % len(self._hosts)

    # the adapter

    def details(self) -> dict[str, Any]:
        return {"host": self.host}

    @asynccontextmanager
    async def open(self, target: None) -> AsyncIterator[trio_websocket.WebSocketConnection]:
        """Connect to the current host, resuming where the `ResumePlan` says."""
        self._attempt = self._resume.next_attempt(self.cursor)
        self._received = 0
        async with trio_websocket.open_websocket_url(
            self.subscribe_url(self.host, self._attempt.cursor),
            extra_headers=[(b"user-agent", USER_AGENT.encode())],
            max_message_size=self._attempt.max_message_bytes,
            connect_timeout=self._connect_timeout,
            disconnect_timeout=CLOSE_TIMEOUT_SECONDS,
        ) as ws:
            try:
                yield ws
            finally:
                if ws.closed is not None:
                    # trio-websocket (0.12) leaves the TCP stream open once the WebSocket has
                    # closed (its aclose returns at once), and a server still writing a message
                    # we refused then waits on it until garbage collection.
                    await trio.aclose_forcefully(ws._stream)

    async def read(self, ws: trio_websocket.WebSocketConnection, link: Link[None]) -> None:
        LOGGER.info(
            "bluesky: connected to %s (cursor=%s, last read %s)",
            self.host,
            self._attempt.cursor,
            self.cursor,
        )
        async for message in self._lifecycle.arrivals(ws.get_message):
            self._received += 1
            if len(message) > MAX_MESSAGE_BYTES:
                self._skip_oversized(message)
            else:
                self._handle(message)

    def failure(self, exc: Exception, link: Link[None]) -> Retry | HandedOver | None:
        """Why the connection failed; an established one resumes where the `ResumePlan` says,
        and one that failed to open fails over to the next host, backing off once all have."""
        too_big = False
        if isinstance(exc, StreamStalledError):
            reason, counted_as = str(exc), "stall"
            # A silent host is likely the problem: try the next one.
            self._next_host()
        elif isinstance(exc, trio_websocket.ConnectionClosed):
            reason, counted_as = f"connection closed ({_close_reason(exc)})", "stream ended"
            too_big = exc.reason is not None and exc.reason.code == MESSAGE_TOO_BIG
        elif isinstance(exc, trio_websocket.ConnectionRejected):
            reason = f"HTTP {exc.status_code} from {self.host}"
            counted_as = "fatal" if classify(exc.status_code) == "fatal" else "http"
        elif isinstance(exc, NETWORK_ERRORS):
            reason, counted_as = f"network error: {type(exc).__name__}", "network"
            if exc.__cause__ is not None:
                reason += f" ({exc.__cause__})"
        else:
            return None
        if link.connected_at is not None:
            self._log_skip(reason, too_big=too_big)
            return Retry(reason, counted_as, link.after_drop())
        self._next_host()
        if link.failures < len(self._hosts):
            return Retry(reason, counted_as, 0.0, failover=self.host)
        first = REJECTED_FIRST_SECONDS if "HTTP" in reason else FAILURE_FIRST_SECONDS
        rounds = link.failures - len(self._hosts)
        return Retry(reason, counted_as, doubling(first, FAILURE_CAP_SECONDS, rounds))

    def _log_skip(self, reason: str, *, too_big: bool) -> None:
        """Tell the `ResumePlan` an established connection ended; say so if it steps blindly."""
        skip = self._resume.ended(self.cursor, received=self._received > 0, too_big=too_big)
        if skip is not None:
            LOGGER.warning(
                "bluesky: %d connections in a row ended at time_us=%d (%s): skipped "
                "what follows it, up to time_us=%d (%.1f ms), which cannot be read; "
                "any post in there is lost",
                skip.repeats + 1,
                skip.stuck_at,
                reason,
                skip.resume_at,
                (skip.resume_at - skip.stuck_at) / 1000,
            )

    def _skip_oversized(self, message: str | bytes) -> None:
        """Drop an event over our limit, read only by a connection with the larger limit that
        follows a 1009, and move the cursor to it so that no resume point comes before it."""
        self.stats.oversized += 1
        try:
            event = orjson.loads(message)
        except orjson.JSONDecodeError:
            event = None
        time_us = event.get("time_us") if isinstance(event, dict) else None
        if type(time_us) is not int:
            LOGGER.warning(
                "bluesky: skipped a message of %d characters (over our limit of %d), "
                "which is not a Jetstream event",
                len(message),
                MAX_MESSAGE_BYTES,
            )
            return
        if self.cursor is None or time_us > self.cursor:
            self.cursor = time_us
        LOGGER.warning(
            "bluesky: skipped an event of %d characters at time_us=%d (%s by %s): it is over "
            "our limit of %d, and the server sent it although we asked for at most %d",
            len(message),
            time_us,
            event.get("kind"),
            event.get("did"),
            MAX_MESSAGE_BYTES,
            WANTED_MESSAGE_BYTES,
        )

    def _handle(self, message: str | bytes) -> None:
        try:
            event = parse_event(orjson.loads(message))
        except (orjson.JSONDecodeError, JetstreamShapeError) as exc:
            self.stats.malformed += 1
            LOGGER.debug("bluesky: skipping a malformed event: %s", exc)
            return
        if self.cursor is None or event.time_us > self.cursor:
            self.cursor = event.time_us
        self._feed.handle(event)


def _close_reason(exc: trio_websocket.ConnectionClosed) -> str:
    reason = exc.reason
    if reason is None:
        return "no close frame"
    return f"code {reason.code}" + (f": {reason.reason[:100]}" if reason.reason else "")
