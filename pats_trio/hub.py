"""The hub: viewers subscribe here, and every upstream event is routed to their channels.

The hub never awaits a viewer. Each one has its own bounded memory channel that is fed with
`send_nowait`; a viewer that cannot keep up loses tweets (counted and reported to it as
`skipped`), and one that stays full for too long is closed. Nobody else notices.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import trio

from pats_trio import frames
from pats_trio.admission import AdmissionError
from pats_trio.broker import Broker
from pats_trio.config import Settings
from pats_trio.events import STREAM_KINDS, Event, NoticeEvent, StatusEvent, StreamKind, TweetEvent
from pats_trio.history import History
from pats_trio.matching import MAX_PHRASES, Phrase, TrackError, TrackIndex, format_track
from pats_trio.outsider_log import OutsiderLog
from pats_trio.routed import Routed, RoutedTweets
from pats_trio.shares import ShareLimits, fair_union

LOGGER = logging.getLogger(__name__)

Outgoing = frames.Frame | TweetEvent
"""What a viewer's channel carries: a frame, or a tweet, which its sender may batch with others."""

_ids = itertools.count(1)
SHOWN_AHEAD_WINDOW = 4_096
"""Tweets remembered as shown to a filter viewer from history before their filter copy came."""


@dataclass(eq=False, slots=True)
class Subscription:
    """One viewer: what it watches and the channel its frames arrive on."""

    kind: StreamKind
    track: tuple[Phrase, ...]
    messages: trio.MemoryReceiveChannel[Outgoing]
    _send: trio.MemorySendChannel[Outgoing]
    id: int = field(default_factory=lambda: next(_ids))
    skipped: int = 0
    """Frames dropped since the viewer was last told."""
    full_since: float | None = None
    going_away: bool = False
    """The server is shutting down: the viewer is closed with 1001."""
    evicted: bool = False
    """The hub gave up on this viewer for staying full too long (a flag, not an Event: there
    is one per viewer, and nothing waits on it)."""
    on_evicted: Callable[[], None] | None = None
    """Called at eviction, so the socket's owner can bound how long it still waits on it."""
    address: str = ""
    """Where the viewer connects from: phrase shares and upstream restarts are per address."""
    told_pending: str | None = None
    """The last `pending` frame it was sent, until all its phrases are asked for upstream."""

    def take_skipped(self) -> int:
        count, self.skipped = self.skipped, 0
        return count


class Hub:
    """Subscriptions, the keyword union, and routing. One per process."""

    def __init__(
        self,
        broker: Broker,
        *,
        mode: str = "demo",
        source: str = "emulator",
        queue_size: int = Settings.client_queue_size,
        slow_client_seconds: float = Settings.slow_client_seconds,
        history_size: int = Settings.history_size,
        worker_id: str = "",
        shares: ShareLimits | None = None,
    ) -> None:
        self.broker = broker
        self.worker_id = worker_id
        self.mode = mode
        self.source = source
        self._queue_size = queue_size
        self._slow_client_seconds = slow_client_seconds
        self._viewers: dict[StreamKind, set[Subscription]] = {kind: set() for kind in STREAM_KINDS}
        self._index: TrackIndex[Subscription] = TrackIndex()
        self._status: dict[StreamKind, StatusEvent | None] = dict.fromkeys(STREAM_KINDS)
        self._history = History(history_size)
        self._routed = RoutedTweets()
        self._shown_ahead: dict[str, set[Subscription]] = {}
        """Sample-stream tweets that filter viewers got as history, and who: the same tweet
        on the filter stream, which has a connection of its own, may come a moment later."""
        self._outsiders = OutsiderLog(LOGGER)
        """A peer that never reads gets itself evicted, once per socket it opens: limited."""
        self._shares = shares or ShareLimits()
        self._pacer = self._shares.pacer()
        self._paced = trio.Event()
        """Set when a change waits for the pacer, so its task looks again."""
        self._held: dict[str, Counter[str]] = {}
        """Each address's phrases, in the order it first asked, and by how many of its viewers."""
        self._pushed: tuple[Phrase, ...] = ()
        """The filter union last handed to the broker (what the upstream follows, or soon will)."""
        self._pushed_texts: frozenset[str] = frozenset()
        self._told: set[Subscription] = set()
        """Viewers told that some of their phrases are pending, until told they are not."""
        self.started = False
        """Whether `run` was ever called: the hub is built with the app, but runs only while the
        app serves."""
        self.running = False
        self.closing = False
        self.evictions = 0
        self.delivered: dict[StreamKind, int] = dict.fromkeys(STREAM_KINDS, 0)
        """Frames queued for viewers, by the viewer's stream kind."""
        self.skipped: dict[StreamKind, int] = dict.fromkeys(STREAM_KINDS, 0)
        """Frames dropped because a viewer's queue was full, by the viewer's stream kind."""

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the broker, which feeds `route`, until cancelled."""
        self.started = True
        async with trio.open_nursery() as nursery:
            await nursery.start(self.broker.run, self)
            nursery.start_soon(self._pace_upstream)
            self.running = True
            task_status.started()
            try:
                await trio.sleep_forever()
            finally:
                self.running = False

    def viewer_count(self, kind: StreamKind | None = None) -> int:
        kinds = STREAM_KINDS if kind is None else (kind,)
        return sum(len(self._viewers[k]) for k in kinds)

    def union(self) -> tuple[Phrase, ...]:
        return self._index.union()

    def upstream_state(self, kind: StreamKind) -> str:
        """The state viewers of `kind` were last told, wherever the upstream runs."""
        status = self._status[kind]
        return status.state if status is not None else "idle"

    def subscribe(self, track: tuple[Phrase, ...] = (), address: str = "") -> _Subscribing:
        """Watch the sample stream (no phrases) or the filter stream for `track`:
        ``async with hub.subscribe(track) as sub: async for frame in sub.messages: ...``

        Raises TrackError on entry, before anything is registered, if the phrases are over a
        viewer's or an address's cap or would not fit in the union even with every address at
        its fair share, and AdmissionError while the server shuts down.
        """
        return _Subscribing(self, track, address)

    def _open(self, track: tuple[Phrase, ...], address: str) -> Subscription:
        if self.closing:
            raise AdmissionError("shutting_down", "The server is shutting down.")
        send, receive = trio.open_memory_channel[Outgoing](self._queue_size)
        sub = Subscription(_kind_for(track), track, receive, send, address=address)
        try:
            self._check_shares(sub, track)
        except TrackError:
            send.close()
            receive.close()
            raise
        self._attach(sub)
        return sub

    def _close(self, sub: Subscription) -> None:
        self._detach(sub)
        sub._send.close()

    def retrack(self, sub: Subscription, track: tuple[Phrase, ...]) -> None:
        """Switch a viewer to another track in place; raises TrackError and changes nothing."""
        self._check_shares(sub, track)
        old_kind = sub.kind
        self._detach(sub, update=False)  # the union between the two tracks is never demanded
        sub.kind, sub.track = _kind_for(track), track
        self._attach(sub)
        if old_kind != sub.kind:
            self._update_demand(old_kind, sub)

    def close_all(self) -> None:
        """Shutting down: every viewer's channel ends, and nobody new is let in."""
        self.closing = True
        for kind in STREAM_KINDS:
            for sub in tuple(self._viewers[kind]):
                sub.going_away = True
                sub._send.close()

    def notify(self, sub: Subscription, frame: frames.Frame) -> None:
        """Queue a frame for one viewer, behind what it already has."""
        self._deliver(sub, frame)

    def hello(self, sub: Subscription) -> frames.Frame:
        return frames.hello(
            mode=self.mode,
            source=self.source,
            stream=sub.kind,
            track=[phrase.text for phrase in sub.track],
            worker=self.worker_id,
        )

    def _check_shares(self, sub: Subscription, track: tuple[Phrase, ...]) -> None:
        """The viewer's cap, the union, then its address's cap. The union's limit is the
        upstream's, so other workers' phrases count too (with Redis). Past it, a newcomer still
        gets in if every phrase of its own fits within a fair share (`shares.fair_union`):
        those holding more than theirs give up the excess upstream."""
        if not track:
            return
        texts = [phrase.text for phrase in track]
        if len(texts) > self._shares.per_viewer:
            raise TrackError(
                "viewer_phrase_limit",
                f"One viewer may follow at most {self._shares.per_viewer} phrases; "
                f"this filter has {len(texts)}.",
            )
        local = {phrase.text for phrase in self._index.union_with(sub, track)}
        elsewhere = self.broker.phrases_elsewhere()
        held = self._held_with(sub, texts)
        size = len(local | elsewhere)
        if size > MAX_PHRASES:
            holdings = {address: list(phrases) for address, phrases in self._held.items()}
            holdings[sub.address] = list(held)
            fair = fair_union(holdings.values(), MAX_PHRASES - len(elsewhere - local))
            left_out = [text for text in texts if text not in fair and text not in elsewhere]
            if left_out:
                raise TrackError(
                    "too_many_phrases",
                    f"All viewers together may follow at most {MAX_PHRASES} phrases, shared "
                    f"fairly among addresses; adding yours would make {size}, and "
                    f"{len(left_out)} of yours do not fit in your share. Try fewer or more "
                    "common phrases.",
                )
        if len(held) > self._shares.per_address:
            raise TrackError(
                "address_phrase_limit",
                f"Viewers from one address may follow at most {self._shares.per_address} "
                f"phrases between them; this filter would make {len(held)}.",
            )

    def _held_with(self, sub: Subscription, texts: list[str]) -> dict[str, None]:
        """The phrases `sub`'s address would hold with `texts` as `sub`'s, in order."""
        counts = Counter(self._held.get(sub.address, ()))
        if sub in self._index:
            counts.subtract(phrase.text for phrase in sub.track)
        held = dict.fromkeys(text for text, count in counts.items() if count > 0)
        held.update(dict.fromkeys(texts))
        return held

    def _attach(self, sub: Subscription) -> None:
        self._viewers[sub.kind].add(sub)
        if sub.track:
            self._index.set(sub, sub.track)
            self._held.setdefault(sub.address, Counter()).update(p.text for p in sub.track)
        self._deliver(sub, self.hello(sub))
        status = self._status[sub.kind]
        if status is not None:
            self._deliver(sub, status.frame)
        for event in self._history.recent_for(sub.track):
            self._deliver(sub, event)
            if sub.track and "filter" not in self._routed.kinds_of(event.id_str):
                self._shown_ahead.setdefault(event.id_str, set()).add(sub)
        while len(self._shown_ahead) > SHOWN_AHEAD_WINDOW:
            del self._shown_ahead[next(iter(self._shown_ahead))]
        self._update_demand(sub.kind, sub)
        if sub.kind == "filter":
            self._tell_pending(sub)

    def _detach(self, sub: Subscription, *, update: bool = True) -> None:
        self._viewers[sub.kind].discard(sub)
        sub.told_pending = None
        self._told.discard(sub)
        if sub in self._index:
            held = self._held[sub.address]
            held.subtract(p.text for p in sub.track)
            for text in [text for text, count in held.items() if count <= 0]:
                del held[text]
            if not held:
                del self._held[sub.address]
        self._index.discard(sub)
        if update:
            self._update_demand(sub.kind, sub)

    def _update_demand(self, kind: StreamKind, sub: Subscription) -> None:
        """Sample demand, and the filter's coming and going, go straight to the broker; a change
        of the filter union waits for the pacer (`shares.UpstreamPacer`), on the account of
        `sub` and its address."""
        active = bool(self._viewers[kind])
        if kind == "sample":
            self.broker.demand(kind, active=active)
            return
        now = trio.current_time()
        fair = self._fair_texts()
        if not active or not self._shares.paced or fair == self._pushed_texts:
            # Nothing to restart: no viewer left to serve (the union goes with the stop), a
            # source that changes its filter in place, or the union is unchanged.
            self._pacer.clear()
            self._push(now, fair, charge=False)
            return
        self._pacer.request(sub.address, sub.id, now)
        self._paced.set()
        due = self._pacer.due(now)
        if due is not None and due <= now:
            self._push(now, fair)

    def _fair_texts(self) -> frozenset[str]:
        """The phrases the upstream should follow for this worker's viewers now."""
        elsewhere = self.broker.phrases_elsewhere()
        everything = frozenset(phrase.text for phrase in self._index.union())
        capacity = MAX_PHRASES - len(elsewhere - everything)
        if len(everything) <= capacity:
            return everything
        return frozenset(fair_union((list(held) for held in self._held.values()), capacity))

    def _push(self, now: float, fair: frozenset[str], *, charge: bool = True) -> None:
        """Hand the filter union upstream as it is now (`fair`, from `_fair_texts`); everyone
        told `pending` hears again."""
        if charge and fair != self._pushed_texts:
            self._pacer.push(now)
        else:
            self._pacer.clear()
        if fair != self._pushed_texts:
            self._pushed = tuple(phrase for phrase in self._index.union() if phrase.text in fair)
            self._pushed_texts = fair
        self.broker.demand(
            "filter", active=bool(self._viewers["filter"]), track=format_track(self._pushed)
        )
        # Only viewers told before can need telling again, unless holders gave up phrases over
        # their share (only when the union is over the limit): then every filter viewer is looked
        # at, since a newcomer may have taken room from any of them.
        displaced = len(fair) < len(self._index)
        for sub in tuple(self._viewers["filter"] if displaced else self._told):
            self._tell_pending(sub, fair)

    async def _pace_upstream(self) -> None:
        """Push each waiting change of the filter union once the pacer lets it go."""
        while True:
            self._paced = trio.Event()
            now = trio.current_time()
            due = self._pacer.due(now)
            if due is not None and due <= now:
                self._push(now, self._fair_texts())
                continue
            with trio.move_on_at(math.inf if due is None else due):
                await self._paced.wait()

    def _tell_pending(self, sub: Subscription, fair: frozenset[str] | None = None) -> None:
        """Tell a filter viewer which of its phrases the upstream does not follow yet (and, once
        it does, that nothing is pending), so it is not shown "connected" in vain. `retry_in`
        is when the next push goes, whoever it is charged to: every push carries them all."""
        followed = self._pushed_texts | self.broker.phrases_elsewhere()
        missing = [phrase.text for phrase in sub.track if phrase.text not in followed]
        if not missing and sub.told_pending is None:
            return
        if fair is None:
            fair = self._fair_texts()
        queued = [text for text in missing if text in fair]
        retry_in = None
        if queued:
            now = trio.current_time()
            due = self._pacer.due(now)
            retry_in = max(
                0.0, (self._pacer.eta(sub.address, sub.id, now) if due is None else due) - now
            )
        frame = frames.pending(
            queued=queued,
            over_share=[text for text in missing if text not in fair],
            retry_in=retry_in,
        )
        if frame != sub.told_pending:
            self._deliver(sub, frame)
        if missing:
            sub.told_pending = frame
            self._told.add(sub)
        else:
            sub.told_pending = None
            self._told.discard(sub)

    def remember(self, kind: StreamKind, event: Event) -> None:
        """Keep history up to date; alone, for an event from before this worker started."""
        if isinstance(event, TweetEvent):
            self._history.add(kind, event)
            self._routed.add(kind, event)
        elif isinstance(event, NoticeEvent) and event.deletes is not None:
            self._forget(event.deletes)

    def _forget(self, id_str: str) -> Routed | None:
        """A deleted tweet leaves history; where it went is returned, and forgotten."""
        self._history.forget(id_str)
        return self._routed.take(id_str)

    def route(self, kind: StreamKind, event: Event) -> None:
        """Hand one upstream event to every viewer it concerns. Never blocks."""
        if isinstance(event, NoticeEvent) and event.deletes is not None:
            self._route_delete(event)
            return
        self.remember(kind, event)
        if isinstance(event, TweetEvent):
            if kind == "filter":
                # Only filter viewers have phrases, so the index holds nobody else.
                targets: set[Subscription] = self._index.subscribers_for(event.terms)
                shown = self._shown_ahead.pop(event.id_str, None)
                if shown:
                    targets = targets - shown
            else:
                targets = self._viewers["sample"]
            self._fan_out(targets, event)
        elif isinstance(event, StatusEvent):
            self._status[kind] = event
            self._fan_out(self._viewers[kind], event.frame)
        elif isinstance(event, NoticeEvent) and event.phrases is not None:
            self._fan_out(self._index.holders(event.phrases), event.frame)
        elif isinstance(event, NoticeEvent):
            self._fan_out(self._viewers[kind], event.frame)

    def _route_delete(self, notice: NoticeEvent) -> None:
        """Only to viewers who could hold the tweet: those of a kind it went out on, or whose
        phrases match it (a filter viewer's history also draws on the sample stream). The page
        starts afresh on every filter change, so current phrases are the right test."""
        assert notice.deletes is not None
        routed = self._forget(notice.deletes)
        if routed is None:
            return
        targets = self._index.subscribers_for(routed.terms)
        if "sample" in routed.kinds:
            targets |= self._viewers["sample"]
        self._fan_out(targets, notice.frame)

    def _deliver(self, sub: Subscription, item: Outgoing) -> None:
        self._fan_out((sub,), item)

    def _fan_out(self, targets: Iterable[Subscription], item: Outgoing) -> None:
        """Queue `item` for each viewer without waiting; this loop runs once per tweet per viewer.

        Nothing in it can change `targets` (a full queue evicts, but only detaching removes)."""
        delivered: dict[StreamKind, int] = self.delivered
        for sub in targets:
            if sub.evicted:
                continue
            try:
                sub._send.send_nowait(item)
            except trio.WouldBlock:
                self._full(sub)
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                continue
            else:
                sub.full_since = None
                delivered[sub.kind] += 1

    def _full(self, sub: Subscription) -> None:
        sub.skipped += 1
        self.skipped[sub.kind] += 1
        now = trio.current_time()
        if sub.full_since is None:
            sub.full_since = now
        elif now - sub.full_since >= self._slow_client_seconds:
            self._evict(sub)

    def _evict(self, sub: Subscription) -> None:
        self._outsiders.warning(
            "evicted",
            "closing viewer %d: its queue stayed full for %.0fs (%d frames skipped)",
            sub.id,
            self._slow_client_seconds,
            sub.skipped,
        )
        self.evictions += 1
        sub.evicted = True
        sub._send.close()
        if sub.on_evicted is not None:
            sub.on_evicted()


class _Subscribing:
    """`Hub.subscribe`'s context; a class, not a generator, as one lives as long as each viewer."""

    __slots__ = ("_address", "_hub", "_sub", "_track")

    def __init__(self, hub: Hub, track: tuple[Phrase, ...], address: str) -> None:
        self._hub, self._track, self._address = hub, track, address
        self._sub: Subscription | None = None

    async def __aenter__(self) -> Subscription:
        self._sub = self._hub._open(self._track, self._address)
        return self._sub

    async def __aexit__(self, *exc: object) -> None:
        if self._sub is not None:
            self._hub._close(self._sub)


def _kind_for(track: tuple[Phrase, ...]) -> StreamKind:
    return "filter" if track else "sample"
