"""The Redis broker: many workers, one upstream owner per deployment, and failover.

Every worker runs the same four tasks:

* the **reader** follows one Redis stream (`<prefix>:events`) from its last id with `XREAD BLOCK`
  and routes each entry to its own hub. It has a client of its own, and it is never cancelled
  while a read is pending (a cancelled blocking read can lose its reply and wedge the
  connection), so a blip costs no entry: the next read resumes from the last id.
* the **heartbeat** writes this worker's demand (does anyone watch sample; the phrases its filter
  viewers follow) to `<prefix>:demand:<worker>` with a TTL, so a dead worker's keywords expire.
* the **census** reads the other workers' demand, so that admission counts the whole
  deployment's phrases against the upstream's limit.
* the **contender** tries to take the lease `<prefix>:owner` (see `lease.py`: one token per
  attempt, so that an attempt whose reply was lost is adopted, not left as a ghost). The worker
  that holds it runs the upstream, publishes every event (trimmed and encoded once) with
  `XADD MAXLEN ~`, and follows the union of every worker's demand. It renews the lease often; a
  renewal that fails is tried again, and once `LEASE_STOP` of the lease has passed since the
  last renewal that succeeded (before the key can expire), or the lease names another worker,
  its upstream is cancelled. A renewal that finds the lease gone (Redis came back empty) takes
  it again: the owner keeps its connections through a Redis restart. With each batch it also
  stores where the source could be resumed (`<prefix>:resume`, with a TTL), so a successor on
  a source that replays (Bluesky's Jetstream) starts there, not at the live edge. A worker that
  is not the owner watches it: an owner whose process has exited (same host) is evicted at
  once, and while an owner stops renewing, this worker's viewers are told the feed is degraded.

Fencing: never two connections of one stream at once. A new owner waits until the previous
term's connections are provably closed (`_fence`): its holder key deleted, its process exited, or
(another host) one lease more. After a Redis restart, which lost the holder key, nobody but the
owner that carries on takes the lease until any earlier term has run out. Reconnect pacing and
the backoff ladders are the deployment's (`pacing.py`), whoever owns the upstream, and so are
the counts a source keeps of what it costs (`tally.py`: X's posts read per UTC day).

Redis down or restarted: viewers keep their sockets and get a `degraded` status; every task retries
with backoff, and the reader resumes once Redis answers again.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import time
from collections.abc import Callable, Iterable
from typing import Any

import orjson
import trio
from glide import (
    Batch,
    ExpirySet,
    ExpiryType,
    GlideClient,
    GlideClientConfiguration,
    GlideError,
    InfoSection,
    Logger,
    LogLevel,
    MaxId,
    MinId,
    NodeAddress,
    ServerCredentials,
    StreamAddOptions,
    StreamReadOptions,
    TrimByMaxLen,
)

from pats_trio.broker import DeploymentStats, Sink, demands, lease
from pats_trio.broker.codec import EntryError, decode, encode
from pats_trio.broker.lease import Held, Taken, Term
from pats_trio.broker.pacing import DeploymentPacing
from pats_trio.broker.tally import DeploymentTally
from pats_trio.events import (
    STREAM_KINDS,
    Event,
    StatusEvent,
    StreamKind,
    TweetEvent,
    status_event,
)
from pats_trio.history import SCAN_SIZE
from pats_trio.matching import MAX_PHRASES
from pats_trio.redis_url import RedisTarget
from pats_trio.upstream.backoff import doubling, jittered
from pats_trio.upstream.lifecycle import SHARED_PACING, DedupWindow, RepeatedEvent
from pats_trio.upstream.source import Publish, Upstream, UpstreamFactory
from pats_trio.upstream.tally import SHARED_TALLY

LOGGER = logging.getLogger(__name__)

READ_BLOCK_MS = 1_000
READ_COUNT = 512
PUBLISH_QUEUE = 4_096
PUBLISH_BATCH = 512
DEDUP_WINDOW = 10_000
REQUEST_TIMEOUT_MS = 2_000
RETRY_MIN, RETRY_MAX = 0.5, 10.0
RETRY_JITTER = (0.75, 1.25)
"""A retry waits between these fractions of its delay, so workers do not retry in step."""
Publication = tuple[StreamKind, Event, int | None]
"""An event for the stream, and the owner's resume point once it is out (see `Upstream`)."""
RESUME_TTL_SECONDS = 60.0
"""How long a stored resume point stays usable (at least three leases): an older one would
replay a long stretch of the firehose to viewers who never saw it."""
PRIME_WAIT = 5.0
"""The longest a starting worker waits to read the stream's tail before it serves: a viewer
that arrived first got none of the recent tweets. If Redis cannot be reached, it serves degraded
as soon as the first attempt fails, and primes when Redis comes back."""

# Of the lease TTL: the key's own expiry, when the owner stops its upstream if it could not
# renew (before the key can expire, so its connections are closed first), how often it renews,
# and how often others try. With these, a dead owner's lease is gone and taken within the TTL.
LEASE_EXPIRY = 0.7
LEASE_STOP = 0.6
LEASE_RENEW = 0.15
LEASE_POLL = 0.05
LEASE_SILENT = 0.35
"""An owner whose lease has not been renewed for this long (two renewals missed) is told to
viewers as gone: they see `degraded` until a new owner (or the same one) serves again."""
UNSEEN_HOLDER_WAIT = 1.0
"""How long, past its lease, a new owner waits for a previous holder on another host to say its
connections are closed: it cannot tell a dead process from a frozen one there."""
FROZEN_HOLDER_WAIT = 30.0
"""The longest a new owner waits for a previous holder it knows is alive (a stopped process, on
this host) to close its connections, in seconds, or leases if more; then it connects anyway."""
HOLDER_POLL = 0.1
UNION_POLL = 0.25
"""How often the owner reads every worker's demand: a phrase asked for on another worker reaches
the upstream at most this much later."""
CENSUS_POLL = 1.0
"""How often a worker reads the other workers' phrases for admission. A command costs the worker
about 0.2 ms of CPU through glide's trio shim: at `UNION_POLL`, with two commands a read, the
census alone cost every worker about 0.6 % of a core with nobody watching. The owner's census
takes the union's fresher reading instead of its own."""
GATHER_SECONDS = 0.02
"""After a read that returned entries, the reader waits this long before the next one, and the
owner as long after each publish: what arrived meanwhile goes in one command and one routing
pass. A command costs about 0.2 ms of CPU, and tweets routed together reach a viewer in one
write. A tweet waits at most this long at each step; one that arrives alone does not wait. With
`READ_COUNT` and `PUBLISH_BATCH` it bounds the path at 25,600 events/s."""
TAKING_OVER = "A worker takes over the upstream"
NO_OWNER = "Waiting for the upstream owner"
OWNER_SILENT = "The worker that runs the upstream stopped answering; another takes over soon"


def client_config(target: RedisTarget, name: str) -> GlideClientConfiguration:
    credentials = (
        ServerCredentials(password=target.password, username=target.username)
        if target.password
        else None
    )
    return GlideClientConfiguration(
        [NodeAddress(target.host, target.port)],
        use_tls=target.tls,
        credentials=credentials,
        database_id=target.database,
        request_timeout=REQUEST_TIMEOUT_MS,
        client_name=name,
        # Connecting eagerly is a blocking call into glide's core: with Redis down it froze the
        # whole worker, viewers included, for the connection timeout at every attempt. Lazily,
        # the first command connects, and fails like any other, without blocking.
        lazy_connect=True,
    )


class RedisBroker:
    """One worker's side of the Redis deployment. See the module docstring for the protocol."""

    def __init__(
        self,
        target: RedisTarget,
        make_upstream: UpstreamFactory,
        *,
        worker_id: str,
        prefix: str,
        lease_seconds: float,
        heartbeat_seconds: float,
        maxlen: int,
    ) -> None:
        self._target = target
        self._make_upstream = make_upstream
        self.worker_id = worker_id
        self._prefix = prefix
        self._lease_seconds = lease_seconds
        self._heartbeat = heartbeat_seconds
        self._maxlen = maxlen
        self._local: dict[StreamKind, tuple[bool, str]] = dict.fromkeys(STREAM_KINDS, (False, ""))
        self._local_changed = RepeatedEvent()
        self._seen = DedupWindow[str](DEDUP_WINDOW)
        """Tweets seen recently: a takeover can replay a tweet that was already read."""
        self.upstream: Upstream | None = None
        self.owner = False
        self.connected = False
        self.lag_seconds = 0.0
        """How far behind the stream's newest entry the reader was at its last read."""
        self.published = 0
        self.publish_failures = 0
        self.terms_of_office = 0
        self.undecodable = 0
        self._elsewhere: frozenset[str] = frozenset()
        self._settled = trio.Event()
        """Set once the reader has primed the history, or found Redis unreachable."""
        self._counted = trio.Event()
        """Set once the census has read the other workers' phrases, or failed to."""
        self._union_read_at = -math.inf
        """When the owner's union last read every worker's demand (and with it `_elsewhere`)."""
        self._told_unreachable = False
        self._told_silent = False
        """Whether this worker's viewers were told that the owner stopped answering."""
        self._unreleased = False
        """Whether a term of ours may still be named by the lease or holder key."""

    # keys
    @property
    def events_key(self) -> str:
        return f"{self._prefix}:events"

    @property
    def owner_key(self) -> str:
        return f"{self._prefix}:owner"

    def _demand_key(self, worker_id: str) -> str:
        return f"{self._prefix}:demand:{worker_id}"

    @property
    def holder_key(self) -> str:
        return f"{self._prefix}:holder"

    @property
    def resume_key(self) -> str:
        return f"{self._prefix}:resume"

    def _status_key(self, kind: StreamKind) -> str:
        return f"{self._prefix}:status:{kind}"

    def demand(self, kind: StreamKind, *, active: bool, track: str = "") -> None:
        if self._local[kind] != (active, track):
            self._local[kind] = (active, track)
            self._local_changed.set()

    def phrases_elsewhere(self) -> frozenset[str]:
        return self._elsewhere

    def deployment_stats(self) -> DeploymentStats:
        return DeploymentStats(
            connected=self.connected,
            lag_seconds=self.lag_seconds,
            published=self.published,
            publish_failures=self.publish_failures,
            terms_of_office=self.terms_of_office,
        )

    def health(self) -> dict[str, Any]:
        return {
            "mode": "redis",
            "ready": self.connected,
            "redis": "connected" if self.connected else "unreachable",
            "worker": self.worker_id,
            "owner": self.owner,
            "lag_seconds": round(self.lag_seconds, 3),
        }

    async def run(
        self, sink: Sink, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Started once the stream's tail is in the hub's history and the other workers'
        phrases are known (or Redis is found unreachable), or after `PRIME_WAIT`.

        Resource handling: each task gets its own client, closed when the task ends. Error
        handling: Redis errors never escape; they become a `degraded` status and a retry."""
        # glide's core logs on its own, as coloured text on stdout, past LOG_FORMAT; what it
        # says about a failure reaches our log through the error it raises.
        Logger.set_logger_config(LogLevel.OFF)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._read_forever, sink)
            nursery.start_soon(self._heartbeat_forever)
            nursery.start_soon(self._contend_forever, sink)
            nursery.start_soon(self._census_forever)
            with trio.move_on_after(PRIME_WAIT):
                await self._settled.wait()
                await self._counted.wait()
            task_status.started()

    async def _client(self, name: str) -> GlideClient:
        """A client, once Redis answers; until then, retry with backoff."""
        failures = 0
        while True:
            try:
                return await GlideClient.create(
                    client_config(self._target, f"pats-{name}-{self.worker_id}")
                )
            except GlideError as exc:
                delay = doubling(RETRY_MIN, RETRY_MAX, failures)
                LOGGER.warning("redis %s client: %s; retrying in %.1fs", name, exc, delay)
            await trio.sleep(_jitter(delay))
            failures += 1

    # the reader

    async def _read_forever(self, sink: Sink) -> None:
        client = await self._client("reader")
        try:
            last_id: str | None = None
            failures = 0
            while True:
                try:
                    if last_id is None:
                        last_id = await self._prime(client, sink)
                    if not self.connected:
                        await self._restore_status(client, sink)
                        self.connected = True
                        self._told_unreachable = False
                        self._settled.set()
                        failures = 0
                    reply = await client.xread(
                        {self.events_key: last_id},
                        StreamReadOptions(block_ms=READ_BLOCK_MS, count=READ_COUNT),
                    )
                except GlideError as exc:
                    delay = doubling(RETRY_MIN, RETRY_MAX, failures)
                    self._degrade(sink, exc, delay)
                    await trio.sleep(_jitter(delay))
                    failures += 1
                    continue
                if not reply:
                    self.lag_seconds = 0.0
                    continue
                for entries in reply.values():
                    for entry_id, pairs in entries.items():
                        last_id = entry_id.decode()
                        self._deliver(sink, pairs)
                    self.lag_seconds = max(0.0, time.time() - _entry_seconds(last_id))
                await trio.sleep(GATHER_SECONDS)
        finally:
            self.connected = False
            await _close(client)

    async def _prime(self, client: GlideClient, sink: Sink) -> str:
        """Fill the hub's history from the stream's tail; return the id to read on from."""
        newest = await client.xrevrange(self.events_key, MaxId(), MinId(), count=2 * SCAN_SIZE)
        if not newest:
            return "0-0"
        for pairs in reversed(list(newest.values())):
            try:
                kind, event = decode(pairs)
            except EntryError:
                continue
            if isinstance(event, TweetEvent):
                self._seen.add(f"{kind}:{event.id_str}")
            sink.remember(kind, event)
        return next(iter(newest)).decode()

    async def _restore_status(self, client: GlideClient, sink: Sink) -> None:
        """After a start or an outage, viewers hear the upstream's state as the owner set it.

        Only as the owner that holds the lease now set it: a term that has ended may have left
        "connected" behind (its release queued in a paused Redis can run after this read)."""
        *stored, owner = await client.mget(
            [*(self._status_key(kind) for kind in STREAM_KINDS), self.owner_key]
        )
        for kind, raw in zip(STREAM_KINDS, stored, strict=True):
            event: StatusEvent | None = None
            if raw is not None and owner is not None:
                try:
                    value = orjson.loads(raw)
                    if value["term"] != owner.decode(errors="replace"):
                        raise ValueError("set by an earlier term")
                    pairs = [(name.encode(), text.encode()) for name, text in value["fields"]]
                    _, decoded = decode(pairs)
                except (
                    EntryError,
                    orjson.JSONDecodeError,
                    TypeError,
                    ValueError,
                    AttributeError,
                    KeyError,
                ):
                    decoded = None
                if isinstance(decoded, StatusEvent):
                    event = decoded
            if event is None:
                event = status_event(kind, "connecting", reason=NO_OWNER)
            sink.route(kind, event)

    def _degrade(self, sink: Sink, exc: GlideError, retry_in: float) -> None:
        self._settled.set()
        if self.connected or not self._told_unreachable:
            self._told_unreachable = True
            LOGGER.warning("redis unreachable (%s); retrying in %.1fs", exc, retry_in)
            for kind in STREAM_KINDS:
                sink.route(
                    kind,
                    status_event(
                        kind,
                        "degraded",
                        reason="The server cannot reach Redis and keeps trying",
                        retry_in=round(retry_in, 1),
                    ),
                )
        else:
            LOGGER.debug("redis still unreachable (%s); retrying in %.1fs", exc, retry_in)
        self.connected = False

    def _deliver(self, sink: Sink, pairs: Any) -> None:
        try:
            kind, event = decode(pairs)
        except EntryError as exc:
            self.undecodable += 1
            LOGGER.warning("skipping a stream entry: %s", exc)
            return
        # The same tweet may come on both streams: each kind is deduplicated on its own.
        if isinstance(event, TweetEvent) and not self._seen.first_time(f"{kind}:{event.id_str}"):
            return
        sink.route(kind, event)

    # the heartbeat

    async def _heartbeat_forever(self) -> None:
        client = await self._client("heartbeat")
        key, ttl_ms = self._demand_key(self.worker_id), int(self._heartbeat * 3 * 1000)
        try:
            while True:
                changed = self._local_changed.next_set()
                payload = orjson.dumps(
                    {kind: [active, track] for kind, (active, track) in self._local.items()}
                )
                try:
                    await client.set(key, payload, expiry=ExpirySet(ExpiryType.MILLSEC, ttl_ms))
                except GlideError as exc:
                    LOGGER.debug("heartbeat failed: %s", exc)
                with trio.move_on_after(self._heartbeat):
                    await changed.wait()
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(1.0), _quietly():
                await client.delete([key])
            await _close(client)

    # the lease and the upstream

    async def _contend_forever(self, sink: Sink) -> None:
        client = await self._client("owner")
        expiry_ms = int(self._lease_seconds * LEASE_EXPIRY * 1000)
        attempt = 0
        try:
            while True:
                if self._unreleased:
                    await self._release(client)
                attempt += 1
                term = Term(self.worker_id, attempt)
                asked_at = trio.current_time()
                try:
                    reply = await client.invoke_script(
                        lease.ACQUIRE,
                        keys=[self.owner_key, self.holder_key],
                        args=[
                            term.encode(),
                            lease.mine(self.worker_id),
                            str(expiry_ms),
                            str(expiry_ms),
                        ],
                    )
                except GlideError:
                    # It may still run when Redis answers again: the next attempt adopts it.
                    reply = None
                taken = lease.outcome(reply)
                if isinstance(taken, Taken):
                    self._told_silent = False
                    await self._hold_office(client, sink, term, asked_at, taken)
                elif isinstance(taken, Held) and await self._watch_owner(client, sink, taken):
                    continue
                await trio.sleep(self._lease_seconds * LEASE_POLL)
        finally:
            await _close(client)

    async def _watch_owner(self, client: GlideClient, sink: Sink, held: Held) -> bool:
        """Evict an owner whose process has exited (True: try again at once); tell this
        worker's viewers while the owner does not renew, and again once it does."""
        term = Term.decode(held.term)
        if term is not None and lease.gone(term):
            LOGGER.warning(
                "the upstream owner %s (pid %d) has exited: taking over", term.worker, term.pid
            )
            with _quietly():
                await client.invoke_script(
                    lease.EVICT, keys=[self.owner_key, self.holder_key], args=[held.term]
                )
                return True
            return False
        if not held.term:
            # A Redis that started empty, in its grace: no owner to be silent (a reader back
            # from the outage has told viewers it waits for one).
            return False
        silent = held.ttl < self._lease_seconds * (LEASE_EXPIRY - LEASE_SILENT)
        if silent and not self._told_silent:
            self._told_silent = True
            LOGGER.warning("the upstream owner stopped renewing its lease")
            for kind in STREAM_KINDS:
                sink.route(
                    kind,
                    status_event(
                        kind, "degraded", reason=OWNER_SILENT, retry_in=round(held.ttl, 1)
                    ),
                )
        elif not silent and self._told_silent:
            self._told_silent = False
            with _quietly():
                await self._restore_status(client, sink)
        return False

    async def _release(self, client: GlideClient) -> None:
        """Delete the lease and holder keys where they name this worker (its term is over), and
        if its term held connections, say that nobody serves now."""
        waiting = [
            orjson.dumps(encode(kind, status_event(kind, "connecting", reason=NO_OWNER))).decode()
            for kind in STREAM_KINDS
        ]
        with trio.CancelScope(shield=True), trio.move_on_after(1.0), _quietly():
            await client.invoke_script(
                lease.RELEASE,
                keys=[
                    self.owner_key,
                    self.holder_key,
                    self.events_key,
                    *(self._status_key(kind) for kind in STREAM_KINDS),
                ],
                args=[lease.mine(self.worker_id), str(self._maxlen), *waiting],
            )
            self._unreleased = False

    async def _hold_office(
        self, client: GlideClient, sink: Sink, term: Term, asked_at: float, taken: Taken
    ) -> None:
        """Run the upstream while the lease is ours; cancel it the moment that is in doubt.

        Resource handling: the upstream's connections are all closed when this returns, and
        only then are the holder and lease keys released."""
        self.terms_of_office += 1
        self._unreleased = True
        LOGGER.info("worker %s owns the upstream now", self.worker_id)
        send, receive = trio.open_memory_channel[Publication](PUBLISH_QUEUE)
        upstream: Upstream | None = None
        told: dict[StreamKind, StatusEvent] = {}
        holding = trio.Event()

        def publish(kind: StreamKind, event: Event) -> None:
            # The resume point as the event leaves the source: stored once the event is out.
            if isinstance(event, StatusEvent):
                told[kind] = event
            try:
                send.send_nowait((kind, event, upstream.resume_point() if upstream else None))
            except trio.WouldBlock:
                self.publish_failures += 1

        pacing = DeploymentPacing(client, self._prefix, fence=self._lease_seconds * LEASE_EXPIRY)

        def retaken() -> None:
            # Redis came back empty: what viewers and successors read from it, written again.
            for event_kind, event in told.items():
                publish(event_kind, event)
            pacing.lost()

        self.owner = True
        try:
            stop_after = self._lease_seconds * LEASE_STOP
            with (
                lease.holding(term),
                trio.CancelScope(deadline=asked_at + stop_after) as office,
            ):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._renew_lease, client, office, term, holding, retaken)
                    nursery.start_soon(self._publish_events, client, receive, term.encode())
                    await self._fence(client, publish, taken)
                    upstream = self._make_upstream(publish)
                    self.upstream = upstream
                    await self._resume(client, upstream)
                    if await self._hold(client, term):
                        holding.set()
                    else:
                        office.cancel()
                    nursery.start_soon(self._follow_union, client, upstream)
                    nursery.start_soon(pacing.run)
                    token = SHARED_PACING.set(pacing)
                    tally = SHARED_TALLY.set(DeploymentTally(client, self._prefix))
                    try:
                        await nursery.start(upstream.run)
                    finally:
                        SHARED_TALLY.reset(tally)
                        SHARED_PACING.reset(token)
        finally:
            self.owner = False
            LOGGER.info("worker %s no longer owns the upstream", self.worker_id)
            await self._release(client)

    async def _fence(self, client: GlideClient, publish: Publish, taken: Taken) -> None:
        """Until no earlier term can still hold an upstream connection.

        The previous holder deletes its key once its connections are closed. If it has not, it
        is dead (its process gone on this host: no socket left), frozen (alive on this host:
        wait for it, up to `FROZEN_HOLDER_WAIT`), or elsewhere (wait `UNSEEN_HOLDER_WAIT`
        leases). A Redis that started less than a lease's expiry ago may have lost the key of a
        term that is still running out: wait that out."""
        expiry = self._lease_seconds * LEASE_EXPIRY
        previous = Term.decode(taken.holder) if taken.holder else None
        if previous is not None and previous.worker == self.worker_id:
            previous = None
        if previous is None:
            if not taken.holder and taken.uptime < expiry:
                wait = expiry - taken.uptime
                LOGGER.info(
                    "redis started %.0fs ago and may have lost a running term: waiting %.1fs",
                    taken.uptime,
                    wait,
                )
                self._tell(publish, "The previous owner's term is running out", wait)
                await trio.sleep(wait)
            else:
                self._tell(publish, TAKING_OVER, 0.0)
            return
        gone = lease.gone(previous)
        if gone:
            LOGGER.info("the previous owner %s (pid %d) has exited", previous.worker, previous.pid)
            with _quietly():
                await client.invoke_script(lease.EVICT, keys=[self.holder_key], args=[taken.holder])
            self._tell(publish, TAKING_OVER, 0.0)
            return
        alive = gone is False
        limit = (
            max(FROZEN_HOLDER_WAIT, 3 * self._lease_seconds)
            if alive
            else UNSEEN_HOLDER_WAIT * self._lease_seconds
        )
        LOGGER.info(
            "waiting up to %.1fs for worker %s (pid %d) to close its upstream connections",
            limit,
            previous.worker,
            previous.pid,
        )
        self._tell(publish, "Waiting for the previous owner's connections to close", limit)
        with trio.move_on_after(limit) as waited:
            while True:
                if lease.gone(previous):
                    with _quietly():
                        await client.invoke_script(
                            lease.EVICT, keys=[self.holder_key], args=[taken.holder]
                        )
                    return
                with _quietly():
                    if await client.get(self.holder_key) != taken.holder.encode():
                        return
                await trio.sleep(HOLDER_POLL)
        if waited.cancelled_caught:
            LOGGER.warning(
                "worker %s did not say its upstream connections closed within %.1fs: "
                "connecting anyway",
                previous.worker,
                limit,
            )

    def _tell(self, publish: Publish, reason: str, retry_in: float) -> None:
        for kind in STREAM_KINDS:
            publish(
                kind, status_event(kind, "connecting", reason=reason, retry_in=round(retry_in, 1))
            )

    async def _hold(self, client: GlideClient, term: Term) -> bool:
        """Name this term as the one that may hold connections; False if the lease is gone."""
        try:
            written = await client.invoke_script(
                lease.HOLD,
                keys=[self.owner_key, self.holder_key],
                args=[term.encode(), str(lease.HOLDER_TTL_SECONDS)],
            )
        except GlideError as exc:
            LOGGER.warning("could not mark the upstream as held (%s): stepping down", exc)
            return False
        return bool(written == 1)

    async def _resume(self, client: GlideClient, upstream: Upstream) -> None:
        """Pick the source up where the last owner's published events end, if it can replay."""
        try:
            stored = await client.get(self.resume_key)
        except GlideError as exc:
            LOGGER.warning("could not read the resume point (%s): starting live", exc)
            return
        if stored is not None and stored.isdigit():
            LOGGER.info("resuming the upstream from %s", stored.decode())
            upstream.resume_from(int(stored))

    async def _renew_lease(
        self,
        client: GlideClient,
        office: trio.CancelScope,
        term: Term,
        holding: trio.Event,
        retaken: Callable[[], None],
    ) -> None:
        """Renew the lease until it names another term; `office`'s deadline does the rest.

        A renewal that fails (Redis down, restarting, paused) is tried again: the upstream runs
        on until `LEASE_STOP` after the last renewal that succeeded, which is before anyone
        else may connect. Once this term holds connections, a renewal that finds the lease and
        the holder key gone (Redis came back empty) takes the lease again: nobody else can have
        connected meanwhile (see docs/architecture.md, "Fencing through a Redis restart")."""
        expiry_ms = str(int(self._lease_seconds * LEASE_EXPIRY * 1000))
        holder_ttl = str(lease.HOLDER_TTL_SECONDS)
        failing = False
        await trio.sleep(self._lease_seconds * LEASE_RENEW)
        while True:
            asked_at = trio.current_time()
            try:
                renewed = await client.invoke_script(
                    lease.RENEW,
                    keys=[self.owner_key, self.holder_key],
                    args=[term.encode(), expiry_ms, "1" if holding.is_set() else "0", holder_ttl],
                )
            except GlideError as exc:
                if not failing:
                    failing = True
                    left = office.deadline - trio.current_time()
                    LOGGER.warning(
                        "could not renew the upstream lease (%s): trying again for %.1fs",
                        exc,
                        left,
                    )
                await trio.sleep(self._lease_seconds * LEASE_POLL)
                continue
            if renewed not in (lease.RENEWED, lease.RETAKEN):
                LOGGER.warning("the upstream lease went to another worker: stepping down")
                office.cancel()
                return
            office.deadline = asked_at + self._lease_seconds * LEASE_STOP
            if failing:
                failing = False
                LOGGER.info("the upstream lease is renewed again")
            if renewed == lease.RETAKEN:
                LOGGER.warning("redis had lost the upstream lease: this term took it again")
                retaken()
            await trio.sleep(self._lease_seconds * LEASE_RENEW)

    async def _follow_union(self, client: GlideClient, upstream: Upstream) -> None:
        """Every worker's demand, merged: the owner serves the whole deployment.

        A worker's demand that disappears with a Redis restart counts until its key would have
        expired: the restarted Redis lost every key, and its worker writes it again within a
        heartbeat; meanwhile the owner must not take its viewers for gone. A key that expired
        or was deleted (Redis has been up longer than a key lives) is gone at once."""
        seen: dict[bytes, tuple[float, dict[str, Any]]] = {}
        key_life = self._heartbeat * 3
        own = self._demand_key(self.worker_id).encode()
        while True:
            try:
                found = await demands.read(client, self._demand_key("*"))
                vanished = [key for key in seen if key not in found]
                restarted = bool(vanished) and await _uptime(client) < key_life
            except GlideError as exc:
                LOGGER.debug("could not read demand: %s", exc)
            else:
                now = trio.current_time()
                self._elsewhere = _phrases(d for key, d in found.items() if key != own)
                self._union_read_at = now
                seen.update((key, (now, wanted)) for key, wanted in found.items())
                for key in vanished:
                    if not restarted or now - seen[key][0] > key_life:
                        del seen[key]
                wanted_now = [wanted for _, wanted in seen.values()]
                sample = any(d.get("sample", [False])[0] for d in wanted_now)
                phrases = _union(d.get("filter", [False, ""]) for d in wanted_now)
                upstream.demand("sample", active=sample)
                upstream.demand("filter", active=bool(phrases), track=",".join(phrases))
            await trio.sleep(UNION_POLL)

    async def _census_forever(self) -> None:
        """Other workers' phrases, kept fresh for admission: a viewer is refused when the whole
        deployment's union would pass the limit, not only this worker's. Two workers admitting
        within one poll can still pass it together; the owner then sends the first
        `MAX_PHRASES` and logs the rest. While this worker's union reads every demand (it owns
        the upstream), the census reads nothing: the union keeps `_elsewhere` fresher."""
        client = await self._client("census")
        own = self._demand_key(self.worker_id)
        try:
            while True:
                if trio.current_time() - self._union_read_at >= CENSUS_POLL:
                    try:
                        others = await demands.read(client, self._demand_key("*"), skip=own)
                    except GlideError as exc:
                        LOGGER.debug("could not read other workers' demand: %s", exc)
                    else:
                        self._elsewhere = _phrases(others.values())
                self._counted.set()
                await trio.sleep(CENSUS_POLL)
        finally:
            await _close(client)

    async def _publish_events(
        self, client: GlideClient, receive: trio.MemoryReceiveChannel[Publication], term: str
    ) -> None:
        """Everything waiting goes out in one pipelined round trip. A reply reaches this task
        only when Trio's scheduler comes round to it, which under a busy fan-out takes tens of
        milliseconds, so one event per round trip capped a deployment at tens of tweets/s."""
        trim = StreamAddOptions(trim=TrimByMaxLen(exact=False, threshold=self._maxlen))
        resume_ttl = ExpirySet(
            ExpiryType.MILLSEC, int(max(RESUME_TTL_SECONDS, 3 * self._lease_seconds) * 1000)
        )
        async for first in receive:
            pending = [first]
            while len(pending) < PUBLISH_BATCH:
                try:
                    pending.append(receive.receive_nowait())
                except trio.WouldBlock:
                    break
            batch = Batch(is_atomic=False)
            statuses: list[tuple[StreamKind, list[tuple[str, str]]]] = []
            for kind, event, _ in pending:
                fields = encode(kind, event)
                batch.xadd(self.events_key, fields, trim)
                if isinstance(event, StatusEvent):
                    statuses.append((kind, fields))
            # After the XADDs, whose replies come first.
            for kind, fields in statuses:
                batch.set(self._status_key(kind), orjson.dumps({"term": term, "fields": fields}))
            resume_point = pending[-1][2]
            if resume_point is not None:
                batch.set(self.resume_key, str(resume_point), expiry=resume_ttl)
            try:
                replies = await client.exec(batch, raise_on_error=False)
            except GlideError as exc:
                self.publish_failures += len(pending)
                LOGGER.warning("could not publish %d events to redis: %s", len(pending), exc)
                continue
            added = replies[: len(pending)] if replies is not None else []
            failed = len(pending) - sum(not isinstance(reply, GlideError) for reply in added)
            if failed:
                LOGGER.warning("redis refused %d of %d events", failed, len(pending))
            self.publish_failures += failed
            self.published += len(pending) - failed
            await trio.sleep(GATHER_SECONDS)


def _union(filters: Iterable[Any], *, cap: int | None = MAX_PHRASES) -> list[str]:
    """The phrases of every worker's filter viewers, deduplicated, in a stable order."""
    phrases: set[str] = set()
    for entry in filters:
        if isinstance(entry, list) and len(entry) == 2 and entry[0] and isinstance(entry[1], str):
            phrases.update(p for p in entry[1].split(",") if p)
    ordered = sorted(phrases)
    if cap is not None and len(ordered) > cap:
        LOGGER.warning(
            "the workers together follow %d phrases; only %d go upstream", len(ordered), cap
        )
        return ordered[:cap]
    return ordered


def _phrases(workers: Iterable[dict[str, Any]]) -> frozenset[str]:
    """Every phrase these workers' filter viewers follow, for admission (so no cap)."""
    return frozenset(_union((d.get("filter", [False, ""]) for d in workers), cap=None))


def _entry_seconds(entry_id: str) -> float:
    return int(entry_id.split("-", 1)[0]) / 1000


async def _uptime(client: GlideClient) -> float:
    """How long Redis has been up, in seconds: a key missing from a Redis younger than the
    key's life may have been lost by a restart rather than expired."""
    info = (await client.info([InfoSection.SERVER])).decode(errors="replace")
    found = re.search(r"^uptime_in_seconds:(\d+)", info, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


async def _close(client: GlideClient) -> None:
    """Close even while being cancelled (shutdown), but never wait long for it."""
    with trio.CancelScope(shield=True), trio.move_on_after(1.0), _quietly():
        await client.close()


def _quietly() -> contextlib.suppress:
    """Best-effort clean-up on the way out: Redis may be the reason we are leaving."""
    return contextlib.suppress(GlideError)


def _jitter(delay: float) -> float:
    low, high = RETRY_JITTER
    return jittered(delay, low=low, high=high)
