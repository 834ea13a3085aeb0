"""The lifecycle of one upstream stream kind.

It connects when the first viewer arrives, lingers after the last one leaves, reconnects with
Twitter's backoff, watches for stalls, and restarts the filter connection when the keyword union
changes: the new connection is opened first and the old one is cancelled only once the new one
answers, with duplicates dropped by tweet id across the switch.

Twitter allows one standing connection per account, so it may close the old connection itself,
with a "Duplicate stream" disconnect, as the new one opens, even before we have read the new one's
answer. That is the expected end of the switch (a "handover"): the old connection is not retried
and viewers hear nothing of it.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

import trio

from pats_trio import events, frames
from pats_trio.events import Event, StreamKind
from pats_trio.upstream import protocol
from pats_trio.upstream.backoff import FATAL_RETRY_SECONDS, Backoff, ConnectionBudget, classify
from pats_trio.upstream.client import StreamHTTPError, StreamNetworkError
from pats_trio.upstream.source import SourceStats

RunnerStats = SourceStats
"""The counters' old name, still imported by the sources that are not on the lifecycle yet."""

LOGGER = logging.getLogger(__name__)

STALL_SECONDS = 90.0
DEDUP_WINDOW = 10_000
# A burst of filter changes is coalesced, but a steady trickle must not postpone a restart forever.
DEBOUNCE_MAX_FACTOR = 5.0

SAME_CREDENTIALS_ELSEWHERE = (
    "another client connected with these credentials (Twitter allows one stream per account)"
)

ConnectFn = Callable[[str], AbstractAsyncContextManager[AsyncIterator[bytes]]]
Publish = Callable[[Event], None]


class StreamStalledError(Exception):
    """No byte, not even a keep-alive, arrived within the stall limit."""


class UpstreamDisconnectError(Exception):
    """The upstream said it is closing the stream, and why."""

    def __init__(self, message: protocol.Disconnect) -> None:
        super().__init__(message.name)
        self.message = message


@dataclass(eq=False)
class _Slot:
    """One connection attempt for one track, with its own cancel scope."""

    track: str
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    last_limit: int = 0


class StreamRunner:
    """Owns every connection of one stream kind. The hub tells it what is wanted with `demand`."""

    def __init__(
        self,
        kind: StreamKind,
        connect: ConnectFn,
        publish: Publish,
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
        self._linger = linger
        self._debounce = debounce
        self._stall = stall
        self._source = source
        self._delimited = delimited
        self._budget = budget or ConnectionBudget(min_interval=0.0, max_per_window=1_000_000)
        self._active = False
        self._track = ""
        self._changed = trio.Event()
        self._current: _Slot | None = None
        self._pending: _Slot | None = None
        self._seen: set[str] = set()
        self._seen_order: deque[str] = deque()
        self.state = "idle"
        self.retry_in = 0.0
        """Seconds of the current backoff or error wait, as last told to viewers; else 0."""
        self.stats = SourceStats()

    @property
    def serving_track(self) -> str | None:
        """The track of the connection viewers are being served from, if any."""
        return self._current.track if self._current is not None else None

    def demand(self, *, active: bool, track: str = "") -> None:
        """Say whether anyone watches this stream and, for filter, the union they need."""
        if active == self._active and track == self._track:
            return
        self._active = active
        self._track = track
        self._changed.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve demand forever.

        Resource handling: every connection lives in a nursery opened here, so cancelling `run`
        closes them all. Error handling: upstream failures never escape; they become `status`
        events and a backoff.
        """
        task_status.started()
        while True:
            self._changed = trio.Event()
            if self._wanted():
                await self._session()
            else:
                await self._changed.wait()

    def _wanted(self) -> bool:
        return self._active and (self.kind == "sample" or bool(self._track))

    async def _session(self) -> None:
        async with trio.open_nursery() as nursery:
            self._start_slot(nursery, self._track)
            while True:
                self._changed = trio.Event()
                if not self._active:
                    if not await self._still_wanted_after(self._linger):
                        LOGGER.info(
                            "%s: no viewers for %.1fs, disconnecting", self.kind, self._linger
                        )
                        break
                    continue
                if self._wanted() and self._track != self._target_track():
                    await self._quiet_period()
                    if self._wanted() and self._track != self._target_track():
                        self._start_slot(nursery, self._track)
                    continue
                await self._changed.wait()
            nursery.cancel_scope.cancel()
        self._current = self._pending = None
        self._set_state(None, "idle")

    def _target_track(self) -> str | None:
        slot = self._pending or self._current
        return slot.track if slot is not None else None

    async def _still_wanted_after(self, seconds: float) -> bool:
        with trio.move_on_after(seconds):
            while not self._active:
                self._changed = trio.Event()
                await self._changed.wait()
        return self._active

    async def _quiet_period(self) -> None:
        """Wait until demand stops changing for `debounce` seconds (bounded), to coalesce bursts."""
        cap = trio.current_time() + self._debounce * DEBOUNCE_MAX_FACTOR
        while True:
            self._changed = trio.Event()
            with trio.move_on_at(min(trio.current_time() + self._debounce, cap)) as quiet:
                await self._changed.wait()
            if quiet.cancelled_caught or trio.current_time() >= cap:
                return

    def _start_slot(self, nursery: trio.Nursery, track: str) -> None:
        if self._pending is not None:
            self._pending.scope.cancel()
        slot = _Slot(track)
        self._pending = slot
        nursery.start_soon(self._run_slot, slot)

    def _promote(self, slot: _Slot) -> None:
        if slot is self._pending:
            old, self._current, self._pending = self._current, slot, None
            if old is not None:
                old.scope.cancel()

    def _visible(self, slot: _Slot | None, state: str) -> bool:
        """Viewers hear about the connection they are served from; errors they always hear."""
        return state == "error" or slot is None or slot is self._current or self._current is None

    def _set_state(self, slot: _Slot | None, state: str, **details: Any) -> None:
        if not self._visible(slot, state):
            return
        self.state = state
        self.retry_in = (
            float(details.get("retry_in", 0.0)) if state in ("backoff", "error") else 0.0
        )
        self._publish(events.status_event(self.kind, state, **details))

    async def _run_slot(self, slot: _Slot) -> None:
        backoff = Backoff()
        with slot.scope:
            while True:
                await self._within_budget(slot)
                self._set_state(slot, "connecting")
                connected_at: float | None = None
                try:
                    async with self._connect(slot.track) as chunks:
                        connected_at = trio.current_time()
                        self.stats.connects += 1
                        backoff.reset()
                        self._promote(slot)
                        LOGGER.info("%s: connected (track=%d bytes)", self.kind, len(slot.track))
                        self._set_state(slot, "connected")
                        await self._pump(slot, chunks)
                    delay = backoff.after_drop(uptime=trio.current_time() - connected_at)
                    reason = "stream ended"
                    self.stats.disconnects["stream ended"] += 1
                except UpstreamDisconnectError as exc:
                    if exc.message.replaced and self._being_replaced(slot):
                        self._handed_over(slot, exc.message)
                        return
                    reason = f"upstream disconnect: {exc.message.name} ({exc.message.reason})"
                    if exc.message.replaced:
                        reason = f"{SAME_CREDENTIALS_ELSEWHERE}; {reason}"
                    if exc.message.fatal:
                        await self._fatal(slot, reason, FATAL_RETRY_SECONDS)
                        continue
                    assert connected_at is not None
                    self.stats.disconnects["disconnect"] += 1
                    delay = backoff.after_drop(uptime=trio.current_time() - connected_at)
                except StreamStalledError:
                    assert connected_at is not None
                    delay = backoff.after_drop(uptime=trio.current_time() - connected_at)
                    reason = f"no data for {self._stall:.0f}s"
                    self.stats.disconnects["stall"] += 1
                except StreamNetworkError as exc:
                    if connected_at is None:
                        delay = backoff.after_network_error()
                    else:
                        delay = backoff.after_drop(uptime=trio.current_time() - connected_at)
                    reason = f"network error: {exc}"
                    self.stats.disconnects["network"] += 1
                except StreamHTTPError as exc:
                    verdict = classify(exc.status_code)
                    if verdict == "fatal":
                        reason = f"HTTP {exc.status_code}: {exc.reason}"
                        await self._fatal(slot, reason, backoff.after_fatal(exc.status_code))
                        continue
                    delay = backoff.after_http_error(exc.status_code)
                    reason = f"HTTP {exc.status_code}: {exc.reason}"
                    self.stats.disconnects["http"] += 1
                slot.last_limit = 0
                if delay > 0:
                    LOGGER.warning("%s: %s, reconnecting in %.2fs", self.kind, reason, delay)
                    self._set_state(slot, "backoff", retry_in=delay, reason=reason)
                    await trio.sleep(delay)
                else:
                    LOGGER.info("%s: %s, reconnecting now", self.kind, reason)

    def _being_replaced(self, slot: _Slot) -> bool:
        """Whether a newer connection of ours is taking over from `slot`.

        It is if a pending slot exists (the upstream may close the old connection as soon as the
        new one reaches it, before we have read the new one's 200), or if `slot` was superseded.
        """
        return slot is not self._pending and (
            self._pending is not None or slot is not self._current
        )

    def _handed_over(self, slot: _Slot, message: protocol.Disconnect) -> None:
        """The upstream closed `slot` for its replacement: no alarm, no backoff, no reconnect.

        The slot stops being the one viewers are served from, so that what happens to the
        replacement from now on (connected, or a failure and its backoff) is what they hear.
        """
        LOGGER.info(
            "%s: the old connection was closed as its replacement opened (%s, code %d)",
            self.kind,
            message.name,
            message.code,
        )
        self.stats.disconnects["handover"] += 1
        if slot is self._current:
            self._current = None

    async def _fatal(self, slot: _Slot, reason: str, delay: float) -> None:
        """An error that needs a person: say so, then retry slowly (a new union retries sooner)."""
        LOGGER.error("%s: %s, retrying in %.0fs", self.kind, reason, delay)
        self.stats.disconnects["fatal"] += 1
        self._set_state(slot, "error", reason=reason, retry_in=delay)
        await trio.sleep(delay)

    async def _within_budget(self, slot: _Slot) -> None:
        wait = self._budget.delay(trio.current_time())
        if wait > 0:
            LOGGER.info(
                "%s: holding the next connection %.1fs to stay within budget", self.kind, wait
            )
            self._set_state(slot, "backoff", retry_in=wait, reason="pacing reconnects")
            await trio.sleep(wait)
        self._budget.record(trio.current_time())

    async def _pump(self, slot: _Slot, chunks: AsyncIterator[bytes]) -> None:
        decoder = protocol.StreamDecoder(delimited=self._delimited)
        try:
            with trio.CancelScope(deadline=trio.current_time() + self._stall) as watch:
                async for chunk in chunks:
                    watch.deadline = trio.current_time() + self._stall
                    for message in decoder.feed(chunk):
                        self._handle(slot, message)
        finally:
            self.stats.malformed += decoder.stats.malformed
            self.stats.oversized += decoder.stats.oversized
        if watch.cancelled_caught:
            raise StreamStalledError

    def _handle(self, slot: _Slot, message: protocol.Message) -> None:
        if isinstance(message, protocol.Tweet):
            self._handle_tweet(message.status)
        elif isinstance(message, protocol.Limit):
            undelivered = message.track - slot.last_limit
            slot.last_limit = message.track
            if undelivered > 0 and slot is self._current:
                self._publish(events.NoticeEvent(frames.limit(undelivered)))
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
            notice = events.notice_for(message)
            if notice is not None:
                self._publish(notice)

    def _handle_tweet(self, status: dict[str, Any]) -> None:
        if status.get("withheld_in_countries") or (status.get("user") or {}).get(
            "withheld_in_countries"
        ):
            self.stats.withheld += 1
            return
        id_str = status.get("id_str")
        if isinstance(id_str, str):
            if id_str in self._seen:
                self.stats.duplicates += 1
                return
            self._remember(id_str)
        event = events.tweet_event(status, source=self._source)
        if event is not None:
            self.stats.tweets += 1
            self._publish(event)

    def _remember(self, id_str: str) -> None:
        self._seen.add(id_str)
        self._seen_order.append(id_str)
        if len(self._seen_order) > DEDUP_WINDOW:
            self._seen.discard(self._seen_order.popleft())
