"""One Twitter v1.1 stream kind: the shared lifecycle, with Twitter's connection and messages.

The lifecycle (`upstream/lifecycle.py`) connects, lingers, backs off and watches for stalls.
What is Twitter's is here: the stream's messages, its reconnect ladders (`Backoff`), and the
filter restart when the keyword union changes: the new connection is opened first and the old
one is cancelled only once the new one answers, with duplicates dropped by tweet id across the
switch.

Twitter allows one standing connection per account, so it may close the old connection itself,
with a "Duplicate stream" disconnect, as the new one opens, even before we have read the new one's
answer. That is the expected end of the switch (a "handover"): the old connection is not retried
and viewers hear nothing of it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import trio

from pats_trio import events, frames
from pats_trio.events import Event, NoticeEvent, StreamKind
from pats_trio.upstream.backoff import ConnectionBudget, classify
from pats_trio.upstream.lifecycle import (
    DedupWindow,
    HandedOver,
    Lifecycle,
    Link,
    Retry,
    StreamStalledError,
)
from pats_trio.upstream.source import SourceStats
from pats_trio.upstream.twitter import protocol
from pats_trio.upstream.twitter.client import StreamHTTPError, StreamNetworkError

LOGGER = logging.getLogger(__name__)

STALL_SECONDS = 90.0
DEDUP_WINDOW = 10_000

SAME_CREDENTIALS_ELSEWHERE = (
    "another client connected with these credentials (Twitter allows one stream per account)"
)

ConnectFn = Callable[[str], AbstractAsyncContextManager[AsyncIterator[bytes]]]


class UpstreamDisconnectError(Exception):
    """The upstream said it is closing the stream, and why."""

    def __init__(self, message: protocol.Disconnect) -> None:
        super().__init__(message.name)
        self.message = message


def notice_for(message: protocol.Message) -> NoticeEvent | None:
    """Control messages that viewers see; the rest are handled by the runner or ignored."""
    if isinstance(message, protocol.Delete | protocol.StatusWithheld):
        return NoticeEvent(frames.delete(message.id_str), deletes=message.id_str)
    return None


class StreamRunner:
    """One stream kind's adapter and its lifecycle. The hub says what is wanted with `demand`;
    `publish` takes this kind's events."""

    def __init__(
        self,
        kind: StreamKind,
        connect: ConnectFn,
        publish: Callable[[Event], None],
        *,
        linger: float,
        debounce: float,
        stall: float = STALL_SECONDS,
        source: str = "twitter",
        delimited: bool = False,
        budget: ConnectionBudget | None = None,
    ) -> None:
        self.kind = kind
        self._connect = connect
        self._publish = publish
        self._source = source
        self._delimited = delimited
        self._seen = DedupWindow[str](DEDUP_WINDOW)
        self.stats = SourceStats()
        self._lifecycle = Lifecycle[str, AsyncIterator[bytes]](
            kind,
            self,
            publish=lambda _kind, event: publish(event),
            kinds=(kind,),
            stats=self.stats,
            target="",
            linger=linger,
            stall=stall,
            replace_after=debounce,
            ready=None if kind == "sample" else bool,
            budget=budget,
            log=LOGGER,
        )

    @property
    def state(self) -> str:
        return self._lifecycle.state

    @property
    def retry_in(self) -> float:
        """Seconds of the current backoff or error wait, as last told to viewers; else 0."""
        return self._lifecycle.retry_in

    @property
    def serving_track(self) -> str | None:
        """The track of the connection viewers are being served from, if any."""
        return self._lifecycle.serving_target

    def demand(self, *, active: bool, track: str = "") -> None:
        """Say whether anyone watches this stream and, for filter, the union they need."""
        self._lifecycle.demand(active=active, target=track)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve demand forever (see `Lifecycle`)."""
        await self._lifecycle.run(task_status=task_status)

    # the adapter

    def open(self, track: str) -> AbstractAsyncContextManager[AsyncIterator[bytes]]:
        return self._connect(track)

    def details(self) -> dict[str, Any]:
        return {}

    async def read(self, chunks: AsyncIterator[bytes], link: Link[str]) -> None:
        LOGGER.info("%s: connected (track=%d bytes)", self.kind, len(link.target))
        decoder = protocol.StreamDecoder(delimited=self._delimited)
        last_limit = 0
        try:
            async for chunk in self._lifecycle.arrivals(chunks.__anext__):
                for message in decoder.feed(chunk):
                    if isinstance(message, protocol.Limit):
                        undelivered, last_limit = message.track - last_limit, message.track
                        if undelivered > 0 and self._lifecycle.serves(link):
                            self._publish(NoticeEvent(frames.limit(undelivered)))
                    else:
                        self._handle(message)
        finally:
            self.stats.malformed += decoder.stats.malformed
            self.stats.oversized += decoder.stats.oversized

    def failure(self, exc: Exception, link: Link[str]) -> Retry | HandedOver | None:
        backoff = link.backoff
        if isinstance(exc, StreamStalledError):
            return Retry(str(exc), "stall", link.after_drop())
        if isinstance(exc, UpstreamDisconnectError):
            message = exc.message
            if message.replaced and self._lifecycle.being_replaced(link):
                return HandedOver(f"{message.name}, code {message.code}")
            reason = f"upstream disconnect: {message.name} ({message.reason})"
            if message.replaced:
                reason = f"{SAME_CREDENTIALS_ELSEWHERE}; {reason}"
            if message.fatal:
                return Retry(reason, "fatal", backoff.after_fatal())
            return Retry(reason, "disconnect", link.after_drop())
        if isinstance(exc, StreamNetworkError):
            dropped = link.connected_at is not None
            delay = link.after_drop() if dropped else backoff.after_network_error()
            return Retry(f"network error: {exc}", "network", delay)
        if isinstance(exc, StreamHTTPError):
            reason = f"HTTP {exc.status_code}: {exc.reason}"
            if classify(exc.status_code) == "fatal":
                return Retry(reason, "fatal", backoff.after_fatal(exc.status_code))
            return Retry(reason, "http", backoff.after_http_error(exc.status_code))
        return None

    def _handle(self, message: protocol.Message) -> None:
        if isinstance(message, protocol.Tweet):
            self._handle_tweet(message.status)
        elif isinstance(message, protocol.Disconnect):
            raise UpstreamDisconnectError(message)
        elif isinstance(message, protocol.UserWithheld):
            self.stats.withheld += 1
            LOGGER.info(
                "%s: user %s withheld in %s",
                self.kind,
                message.user_id_str,
                ",".join(message.withheld_in_countries),
            )
        elif isinstance(message, protocol.Unknown):
            self.stats.unknown += 1
        elif isinstance(message, protocol.StallWarning):
            self.stats.stall_warnings += 1
            LOGGER.warning(
                "%s: stall warning %s (%s%% full)", self.kind, message.code, message.percent_full
            )
        else:
            notice = notice_for(message)
            if notice is not None:
                self._publish(notice)

    def _handle_tweet(self, status: dict[str, Any]) -> None:
        if status.get("withheld_in_countries") or (status.get("user") or {}).get(
            "withheld_in_countries"
        ):
            self.stats.withheld += 1
            return
        id_str = status.get("id_str")
        if isinstance(id_str, str) and not self._seen.first_time(id_str):
            self.stats.duplicates += 1
            return
        event = events.tweet_event(status, source=self._source)
        if event is not None:
            self.stats.tweets += 1
            self._publish(event)
