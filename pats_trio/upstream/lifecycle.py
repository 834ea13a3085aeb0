"""The lifecycle every upstream source shares; each source is a small adapter on it.

A `Lifecycle` connects when someone watches, lingers after the last viewer leaves, reconnects
after each failure when its adapter says, within a `ConnectionBudget` if it has one, takes a
connection that stays silent for `stall` seconds for dead, and tells viewers every state
("connecting", "connected", "backoff", "error", "idle") as a `status` event. Its adapter knows
the network: how to open a connection, how to read one, and what a failure means (a `Retry`,
with its reason, class and delay, or a quiet `HandedOver`).

Demand carries a target (Twitter v1.1's track). By default a new target is only read by the
next connection: Jetstream matches keywords locally, and an X API v2 filtered stream changes
its rules in place. With `replace_after`, a new target opens a new connection once demand has
been quiet that long, and the old one is cancelled only once the new one is connected ("make
before break"); while a newer connection is on its way, the old one closing is a handover.

Where several processes take turns at running an upstream (the Redis broker's terms of office),
reconnect pacing must be the deployment's, not one process's: whoever runs a term sets
`SHARED_PACING` around `run`, and every lifecycle run in that context asks it before each attempt
and tells it each attempt, each backoff wait and its ladders' stages, so that a new link climbs on
from where the last term's left off.

Here too are the two primitives the lifecycle, its adapters and the Redis broker share:
`RepeatedEvent` and `DedupWindow`.
"""

from __future__ import annotations

import logging
import random
from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

import trio

from pats_trio.events import StreamKind, status_event
from pats_trio.upstream.backoff import Backoff, ConnectionBudget, jittered
from pats_trio.upstream.outage import OutageLog
from pats_trio.upstream.source import Publish, SourceStats

LOGGER = logging.getLogger(__name__)

DEBOUNCE_MAX_FACTOR = 5.0
"""A burst of target changes is coalesced, but a steady trickle must not postpone a new
connection forever: the quiet period ends after this many `replace_after`s at most."""

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)
TargetT = TypeVar("TargetT")
ConnT = TypeVar("ConnT")


class RepeatedEvent:
    """An event that is set again and again: "something changed, look again".

    `wait()` returns at the first `set()` after it was called. There is no checkpoint between a
    check and the `wait()` after it, so `wait_until` misses nothing. To miss nothing while
    doing something that itself waits, take `next_set()` first and wait on it after: replacing
    a `trio.Event` by hand gets this right only if the new one is made before the look.
    (trio-util's `RepeatedEvent` is the model; this is the part pats-trio uses, typed.)

    >>> import trio.testing
    >>> async def heartbeat_sees_a_change_made_while_it_writes() -> list[str]:
    ...     changed, wanted, written = RepeatedEvent(), ["sample"], []
    ...     async def heartbeat() -> None:
    ...         while True:
    ...             change = changed.next_set()
    ...             written.append(wanted[-1])
    ...             await trio.sleep(1)  # the write takes a second
    ...             with trio.move_on_after(10):
    ...                 await change.wait()
    ...     async with trio.open_nursery() as nursery:
    ...         nursery.start_soon(heartbeat)
    ...         await trio.sleep(0.5)
    ...         wanted.append("filter")
    ...         changed.set()
    ...         await trio.sleep(5)
    ...         nursery.cancel_scope.cancel()
    ...     return written
    >>> trio.run(
    ...     heartbeat_sees_a_change_made_while_it_writes,
    ...     clock=trio.testing.MockClock(autojump_threshold=0),
    ... )
    ['sample', 'filter']
    """

    def __init__(self) -> None:
        self._event = trio.Event()

    def set(self) -> None:
        """Wake everyone waiting now; later waits wait for the next `set()`."""
        self._event.set()
        self._event = trio.Event()

    def next_set(self) -> trio.Event:
        """The `trio.Event` the next `set()` sets, to wait on later."""
        return self._event

    async def wait(self) -> None:
        """Until the next `set()`."""
        await self._event.wait()

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Until `predicate()` holds, looking again at each `set()`."""
        while not predicate():
            await self._event.wait()


class DedupWindow(Generic[K]):
    """The last `size` keys added, to drop what arrives twice (a restart's overlap, a replay).

    >>> seen = DedupWindow[str](2)
    >>> [seen.first_time(key) for key in ("a", "b", "a", "c", "a")]
    [True, True, False, True, True]
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._keys: set[K] = set()
        self._order: deque[K] = deque()

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def add(self, key: K) -> None:
        """Remember `key`; the oldest key goes once there are more than `size`."""
        self._keys.add(key)
        self._order.append(key)
        if len(self._order) > self._size:
            self._keys.discard(self._order.popleft())

    def first_time(self, key: K) -> bool:
        """Remember `key`; False if it was already remembered."""
        if key in self._keys:
            return False
        self.add(key)
        return True


class SharedPacing(Protocol):
    """Reconnect pacing that outlives this process's upstream (see the module docstring).

    `stream` is the lifecycle's name: one pacing record per connection slot of the deployment.
    """

    async def delay(self, stream: str, budget: ConnectionBudget | None) -> float:
        """Seconds to wait before `stream` may connect, by the deployment's record (and within
        `budget`'s limits, if the lifecycle has one)."""

    def ladder(self, stream: str) -> Mapping[str, int]:
        """The backoff ladders' stages for `stream` as the last `delay` read them (see
        `Backoff.stages`, plus "failures": attempts in a row that failed)."""

    async def connecting(self, stream: str) -> None:
        """An attempt on `stream` starts now."""

    async def backing_off(self, stream: str, seconds: float, ladder: Mapping[str, int]) -> None:
        """`stream` waits `seconds` before its next attempt, its ladders at `ladder`: a
        successor honours the rest of the wait and climbs on from there."""

    def connected(self, stream: str) -> None:
        """`stream` connected: its ladders start again from the bottom (without waiting: the
        record is updated in the background)."""


SHARED_PACING: ContextVar[SharedPacing | None] = ContextVar("SHARED_PACING", default=None)
"""The pacing of the term of office a lifecycle runs in; read once as `Lifecycle.run` starts."""


class StreamStalledError(Exception):
    """Nothing arrived, not even a keep-alive, within the stall limit."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"no data for {seconds:.0f}s")


class Arrivals(Generic[T]):
    """What `receive` returns, one arrival at a time, each within `stall` seconds of the last
    (else `StreamStalledError`); a `StopAsyncIteration` from `receive` ends it."""

    def __init__(self, receive: Callable[[], Awaitable[T]], stall: float) -> None:
        self._receive = receive
        self._stall = stall

    def __aiter__(self) -> Arrivals[T]:
        return self

    async def __anext__(self) -> T:
        with trio.move_on_after(self._stall):
            return await self._receive()
        raise StreamStalledError(self._stall)


@dataclass(frozen=True, slots=True)
class Retry:
    """A connection failed or ended: say why, count it, and try again after `delay` seconds."""

    reason: str
    counted_as: str
    """Its class in `SourceStats.disconnects` (see `DISCONNECT_REASONS`). "fatal" needs a
    person: viewers are told "error" rather than "backoff", and the log says it at ERROR."""
    delay: float
    failover: str | None = None
    """Where an immediate retry goes, when the adapter moved to another host (for the log)."""


@dataclass(frozen=True, slots=True)
class HandedOver:
    """The upstream closed this connection because its replacement opened: no alarm, no retry."""

    detail: str


@dataclass(eq=False)
class Link(Generic[TargetT]):
    """One connection, reopened until cancelled, with its own backoff."""

    target: TargetT
    """What it asks for: fixed with `replace_after`, else the newest target at each attempt."""
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    backoff: Backoff = field(default_factory=Backoff)
    connected_at: float | None = None
    """When the current connection was established; None until it is."""
    failures: int = 0
    """Attempts in a row that failed before a connection was established."""

    def stages(self) -> dict[str, int]:
        """Its ladders' stages, for a successor (see `SharedPacing.ladder`)."""
        return {**self.backoff.stages(), "failures": self.failures}

    def resume(self, stages: Mapping[str, int]) -> None:
        """Climb on from where a predecessor's link for the same slot had got to."""
        self.backoff.resume(stages)
        self.failures = max(int(stages.get("failures", 0)), 0)

    def after_drop(self) -> float:
        """The wait after an established connection ended (see `Backoff.after_drop`)."""
        assert self.connected_at is not None
        return self.backoff.after_drop(uptime=trio.current_time() - self.connected_at)


class Adapter(Protocol[TargetT, ConnT]):
    """What a source tells its lifecycle: how to connect, read and judge a failure."""

    def open(self, target: TargetT) -> AbstractAsyncContextManager[ConnT]:
        """Connect for `target`; entered, the connection is established (else it raises)."""

    async def read(self, connection: ConnT, link: Link[TargetT]) -> None:
        """Read and publish until the connection ends (return) or fails (raise)."""

    def failure(self, exc: Exception, link: Link[TargetT]) -> Retry | HandedOver | None:
        """What `exc`, from `open` or `read`, means; None if it is no upstream failure (it is
        raised on)."""

    def details(self) -> dict[str, Any]:
        """What the "connecting" and "connected" states say besides the state (a host)."""


class Lifecycle(Generic[TargetT, ConnT]):
    """Serves the demand for one upstream connection; `demand` says what is wanted.

    Resource handling: every connection lives in a nursery opened in `run`, so cancelling `run`
    closes them all. Error handling: failures the adapter recognises never escape; they
    become `status` events and a wait. Anything else is raised.
    """

    def __init__(
        self,
        name: str,
        adapter: Adapter[TargetT, ConnT],
        *,
        publish: Publish,
        kinds: Sequence[StreamKind],
        stats: SourceStats,
        target: TargetT,
        linger: float,
        stall: float,
        replace_after: float | None = None,
        ready: Callable[[TargetT], bool] | None = None,
        budget: ConnectionBudget | None = None,
        rng: random.Random | None = None,
        log: logging.Logger = LOGGER,
    ) -> None:
        """`name` prefixes the log lines, written to `log` (the adapter's logger, so that they
        are filed under the source); status events go to each of `kinds`.

        `target` is what to ask for until demand says otherwise, and `ready(target)` whether
        it is worth a connection (default: always). With `rng`, every retry's delay is
        jittered (half kept, half random).
        """
        self.name = name
        self._adapter = adapter
        self._publish = publish
        self._kinds = tuple(kinds)
        self.stats = stats
        self._linger = linger
        self._stall = stall
        self._replace_after = replace_after
        self._ready = ready
        self._budget = budget
        self._shared: SharedPacing | None = None
        self._rng = rng
        self._log = log
        self._active = False
        self._target = target
        self._changed = RepeatedEvent()
        self._current: Link[TargetT] | None = None
        self._pending: Link[TargetT] | None = None
        self._outage = OutageLog()
        self.state = "idle"
        self.retry_in = 0.0
        """Seconds of the current backoff or error wait, as last told to viewers; else 0."""

    @property
    def serving_target(self) -> TargetT | None:
        """The target of the connection viewers are being served from, if any."""
        return self._current.target if self._current is not None else None

    def demand(self, *, active: bool, target: TargetT) -> None:
        """Say whether anyone watches, and what they need."""
        if active == self._active and target == self._target:
            return
        self._active = active
        self._target = target
        self._changed.set()

    def serves(self, link: Link[TargetT]) -> bool:
        """Whether viewers are being served from `link`."""
        return link is self._current

    def being_replaced(self, link: Link[TargetT]) -> bool:
        """Whether a newer connection is taking over from `link`.

        It is if a pending link exists (the upstream may close the old connection as soon as the
        new one reaches it, before we have read the new one's answer), or if `link` was
        superseded.
        """
        return link is not self._pending and (
            self._pending is not None or link is not self._current
        )

    def arrivals(self, receive: Callable[[], Awaitable[T]]) -> Arrivals[T]:
        """`receive`'s results, watched for a stall (see `Arrivals`)."""
        return Arrivals(receive, self._stall)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve demand forever (see the class docstring)."""
        self._shared = SHARED_PACING.get()
        task_status.started()
        while True:
            await self._changed.wait_until(self._wanted)
            await self._session()

    def _wanted(self) -> bool:
        return self._active and (self._ready is None or self._ready(self._target))

    async def _session(self) -> None:
        """One period of demand: connected until nobody has watched for `linger` seconds."""
        async with trio.open_nursery() as nursery:
            self._start_link(nursery)
            while True:
                if not self._active:
                    if not await self._still_wanted_after(self._linger):
                        self._log.info(
                            "%s: no viewers for %.1fs, disconnecting", self.name, self._linger
                        )
                        break
                elif self._retargeted():
                    await self._quiet_period()
                    if self._retargeted():
                        self._start_link(nursery)
                else:
                    await self._changed.wait()
            nursery.cancel_scope.cancel()
        self._current = self._pending = None
        self._set_state(None, "idle")

    def _retargeted(self) -> bool:
        """Whether demand wants a target no link serves, and that means a new link."""
        newest = self._pending or self._current
        return (
            self._replace_after is not None
            and self._wanted()
            and (newest is None or self._target != newest.target)
        )

    async def _still_wanted_after(self, seconds: float) -> bool:
        with trio.move_on_after(seconds):
            await self._changed.wait_until(lambda: self._active)
        return self._active

    async def _quiet_period(self) -> None:
        """Wait until demand stops changing for `replace_after` seconds (bounded), so that a
        burst of changes costs one new connection."""
        quiet_for = self._replace_after or 0.0
        cap = trio.current_time() + quiet_for * DEBOUNCE_MAX_FACTOR
        while True:
            with trio.move_on_at(min(trio.current_time() + quiet_for, cap)) as quiet:
                await self._changed.wait()
            if quiet.cancelled_caught or trio.current_time() >= cap:
                return

    def _start_link(self, nursery: trio.Nursery) -> None:
        if self._pending is not None:
            self._pending.scope.cancel()
        link = Link(self._target)
        self._pending = link
        nursery.start_soon(self._keep_connected, link)

    def _promote(self, link: Link[TargetT]) -> None:
        if link is self._pending:
            old, self._current, self._pending = self._current, link, None
            if old is not None:
                old.scope.cancel()

    def _visible(self, link: Link[TargetT] | None, state: str) -> bool:
        """Viewers hear about the connection they are served from; errors they always hear."""
        return state == "error" or link is None or link is self._current or self._current is None

    def _set_state(self, link: Link[TargetT] | None, state: str, **details: Any) -> None:
        if not self._visible(link, state):
            return
        self.state = state
        self.retry_in = (
            float(details.get("retry_in", 0.0)) if state in ("backoff", "error") else 0.0
        )
        for kind in self._kinds:
            self._publish(kind, status_event(kind, state, **details))

    async def _keep_connected(self, link: Link[TargetT]) -> None:
        with link.scope:
            first = True
            while True:
                if self._replace_after is None:
                    link.target = self._target
                await self._within_budget(link)
                if first and self._shared is not None:
                    link.resume(self._shared.ladder(self.name))
                first = False
                self._set_state(link, "connecting", **self._adapter.details())
                link.connected_at = None
                outcome: Retry | HandedOver | None
                try:
                    async with self._adapter.open(link.target) as connection:
                        self._connected(link)
                        await self._adapter.read(connection, link)
                    outcome = Retry("stream ended", "stream ended", link.after_drop())
                except Exception as exc:
                    if link.connected_at is None:
                        link.failures += 1
                    outcome = self._adapter.failure(exc, link)
                    if outcome is None:
                        raise
                if isinstance(outcome, HandedOver):
                    self._handed_over(link, outcome)
                    return
                await self._retry(link, outcome)

    def _connected(self, link: Link[TargetT]) -> None:
        link.connected_at = trio.current_time()
        link.failures = 0
        link.backoff.reset()
        if self._shared is not None:
            self._shared.connected(self.name)
        self.stats.connects += 1
        recovered = self._outage.recovered(now=link.connected_at)
        if recovered is not None:
            self._log.info("%s: %s", self.name, recovered)
        self._promote(link)
        self._set_state(link, "connected", **self._adapter.details())

    async def _retry(self, link: Link[TargetT], retry: Retry) -> None:
        self.stats.disconnects[retry.counted_as] += 1
        delay = retry.delay
        if self._rng is not None and delay > 0:
            delay = jittered(delay, self._rng)
        delay = round(delay, 3)
        # The reason once per outage, then a periodic "still unreachable": not a line per retry.
        told = self._outage.failed(retry.reason, now=trio.current_time(), kind=retry.counted_as)
        line = told or retry.reason
        level = logging.DEBUG if told is None else logging.WARNING
        if delay <= 0:
            if retry.failover is not None:
                self._log.log(level, "%s: %s, failing over to %s", self.name, line, retry.failover)
            else:
                self._log.log(min(level, logging.INFO), "%s: %s, reconnecting now", self.name, line)
            return
        if retry.counted_as == "fatal":
            level = logging.DEBUG if told is None else logging.ERROR
            self._log.log(level, "%s: %s, retrying in %.0fs", self.name, line, delay)
            self._set_state(link, "error", reason=retry.reason, retry_in=delay)
        else:
            self._log.log(level, "%s: %s, reconnecting in %.2fs", self.name, line, delay)
            self._set_state(link, "backoff", retry_in=delay, reason=retry.reason)
        if self._shared is not None:
            await self._shared.backing_off(self.name, delay, link.stages())
        await trio.sleep(delay)

    def _handed_over(self, link: Link[TargetT], handover: HandedOver) -> None:
        """The upstream closed `link` for its replacement: no alarm, no backoff, no reconnect.

        The link stops being the one viewers are served from, so that what happens to the
        replacement from now on (connected, or a failure and its backoff) is what they hear.
        """
        self._log.info(
            "%s: the old connection was closed as its replacement opened (%s)",
            self.name,
            handover.detail,
        )
        self.stats.disconnects["handover"] += 1
        if link is self._current:
            self._current = None

    async def _within_budget(self, link: Link[TargetT]) -> None:
        wait = self._budget.delay(trio.current_time()) if self._budget is not None else 0.0
        if self._shared is not None:
            wait = max(wait, await self._shared.delay(self.name, self._budget))
        if wait > 0:
            self._log.info(
                "%s: holding the next connection %.1fs to stay within budget", self.name, wait
            )
            self._set_state(link, "backoff", retry_in=wait, reason="pacing reconnects")
            await trio.sleep(wait)
        if self._budget is not None:
            self._budget.record(trio.current_time())
        if self._shared is not None:
            await self._shared.connecting(self.name)
