"""The deployment's reconnect pacing, kept in Redis so that it outlives every term of office.

A new owner builds a fresh upstream, whose own `ConnectionBudget` and backoff start empty: with
Redis restarted 15 times, that gave 15 connections of each stream in 36 s against a 5 s minimum.
So each connection slot (a lifecycle's name) has a record, `<prefix>:pacing:<stream>`: the
attempts of the last window, the end of the backoff wait in progress, all in Redis's clock
(`TIME`) so that workers on several hosts agree, and how far up each backoff ladder the slot
is (a successor's first failure climbs on from there, not from the bottom). Every owner's
lifecycles ask it before each attempt (`SharedPacing`).

A Redis that restarted has lost the record. A term that carries on through the restart (it
took its lease again, see `lease.RENEW`) writes back the record as it last knew it (`lost`).
Otherwise the previous term ended at most `fence` seconds (the lease's expiry) after the old
Redis died, so the record is taken to hold an attempt at the new Redis's start plus `fence`:
the first connection comes no sooner than the minimum interval after that.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
import trio
from glide import (
    ConditionalChange,
    ExpirySet,
    ExpiryType,
    GlideClient,
    GlideError,
    Script,
)

from pats_trio.upstream.backoff import RECONNECT_WINDOW_SECONDS, ConnectionBudget
from pats_trio.upstream.lifecycle import RepeatedEvent

LOGGER = logging.getLogger(__name__)

RECORD_TTL_SECONDS = 900
"""Past three five-minute windows of no attempt, a record says nothing any more."""
MAX_ATTEMPTS = 200
RETRY_SECONDS = 0.2
"""Between tries of a pacing call that failed: without its answer no connection may start (and
if Redis stays away, the lease is lost and the term ends anyway)."""

_READ = Script(  # type: ignore[no-untyped-call]
    # KEYS: the record. {now in ms, Redis's uptime in seconds, the record or ''}.
    "local t = redis.call('time') "
    "local info = redis.call('info', 'server') "
    "local uptime = tonumber(string.match(info, 'uptime_in_seconds:(%d+)')) or 0 "
    "return {t[1] * 1000 + math.floor(t[2] / 1000), uptime, redis.call('get', KEYS[1]) or ''}"
)
_UPDATE = Script(  # type: ignore[no-untyped-call]
    # KEYS: the record. ARGV: 'connect', 'wait' or 'ladder', the wait in ms, the window in ms,
    # TTL, cap, the ladder (JSON) or ''. Returns the record as written.
    "local t = redis.call('time') "
    "local now = t[1] * 1000 + math.floor(t[2] / 1000) "
    "local raw = redis.call('get', KEYS[1]) "
    "local record = raw and cjson.decode(raw) or {} "
    "local kept = {} "
    "for _, at in ipairs(record['attempts'] or {}) do "
    "  if at > now - tonumber(ARGV[3]) then table.insert(kept, at) end end "
    "if ARGV[1] == 'connect' then table.insert(kept, now) end "
    "while #kept > tonumber(ARGV[5]) do table.remove(kept, 1) end "
    "local held = record['not_before'] or 0 "
    "if ARGV[1] == 'wait' then held = math.max(held, now + tonumber(ARGV[2])) end "
    "local ladder = record['ladder'] or {} "
    "if ARGV[6] ~= '' then ladder = cjson.decode(ARGV[6]) end "
    "local encoded = cjson.encode({attempts = kept, not_before = held, ladder = ladder}) "
    "redis.call('set', KEYS[1], encoded, 'EX', ARGV[4]) "
    "return encoded"
)


def wait_for_turn(
    now: float,
    attempts: Sequence[float],
    not_before: float,
    budget: ConnectionBudget | None,
) -> float:
    """Seconds from `now` until an attempt keeps the backoff in progress and `budget`'s limits.

    >>> budget = ConnectionBudget(min_interval=5.0, max_per_window=20)
    >>> wait_for_turn(100.0, [97.0], 0.0, budget), wait_for_turn(100.0, [90.0], 104.0, budget)
    (2.0, 4.0)
    >>> wait_for_turn(100.0, [99.0], 0.0, None)
    0.0
    """
    wait = max(not_before - now, 0.0)
    if budget is not None:
        deployment = ConnectionBudget(
            min_interval=budget.min_interval,
            max_per_window=budget.max_per_window,
            window=budget.window,
        )
        for at in sorted(attempts):
            deployment.record(at)
        wait = max(wait, deployment.delay(now))
    return wait


def _ladder(value: Any) -> dict[str, int]:
    """A record's ladder stages, whatever shape it came in (cjson writes `{}` and `[]` alike)."""
    if not isinstance(value, dict):
        return {}
    return {str(k): int(v) for k, v in value.items() if isinstance(v, int | float)}


def lost_record(now: float, uptime: float, fence: float) -> list[float]:
    """The attempt to assume when Redis has no record: the latest an earlier term could have
    made one, `fence` seconds after this Redis started (a budget forgets it after its window).

    >>> lost_record(100.0, 2.0, 7.0)
    [105.0]
    """
    return [now - uptime + fence]


class DeploymentPacing:
    """`SharedPacing` for one term of office, through the owner's Redis client."""

    def __init__(self, client: GlideClient, prefix: str, *, fence: float) -> None:
        self._client = client
        self._prefix = prefix
        self._fence = fence
        self._known: dict[str, bytes] = {}
        """Each stream's record as this term last read or wrote it, for `lost`."""
        self._ladders: dict[str, Mapping[str, int]] = {}
        self._reset: set[str] = set()
        self._restore: set[str] = set()
        self._work = RepeatedEvent()

    def key(self, stream: str) -> str:
        return f"{self._prefix}:pacing:{stream}"

    def ladder(self, stream: str) -> Mapping[str, int]:
        return self._ladders.get(stream, {})

    def connected(self, stream: str) -> None:
        self._ladders[stream] = {}
        self._reset.add(stream)
        self._work.set()

    def lost(self) -> None:
        """Redis came back empty and this term carries on: put back the records it knows."""
        self._restore.update(self._known)
        self._work.set()

    async def run(self) -> None:
        """Write each ladder reset (`connected`) and each lost record (`lost`) in the
        background: a connection that has just opened must not wait for Redis before it reads,
        nor a lease renewal for the records."""
        while True:
            await self._work.wait_until(lambda: bool(self._reset or self._restore))
            if self._restore:
                stream = self._restore.pop()
                with contextlib.suppress(GlideError):
                    await self._client.set(
                        self.key(stream),
                        self._known[stream],
                        conditional_set=ConditionalChange.ONLY_IF_DOES_NOT_EXIST,
                        expiry=ExpirySet(ExpiryType.SEC, RECORD_TTL_SECONDS),
                    )
            else:
                await self._update(self._reset.pop(), "ladder", 0.0, {})

    async def delay(self, stream: str, budget: ConnectionBudget | None) -> float:
        reply = await self._call(_READ, stream, [])
        assert isinstance(reply, list)
        now_ms, uptime, raw = reply
        now = int(now_ms) / 1000
        attempts: list[float] = []
        not_before = 0.0
        ladder: Mapping[str, int] = {}
        if raw:
            self._known[stream] = bytes(raw)
            try:
                record = orjson.loads(raw)
                attempts = [at / 1000 for at in record.get("attempts", [])]
                not_before = float(record.get("not_before", 0)) / 1000
                ladder = _ladder(record.get("ladder"))
            except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):
                LOGGER.warning("ignoring an unreadable pacing record for %s", stream)
        else:
            attempts = lost_record(now, float(uptime), self._fence)
        self._ladders[stream] = ladder
        wait = wait_for_turn(now, attempts, not_before, budget)
        if wait > 0:
            LOGGER.info("%s: the deployment's pacing holds the next attempt %.1fs", stream, wait)
        return wait

    async def connecting(self, stream: str) -> None:
        await self._update(stream, "connect", 0.0, None)

    async def backing_off(self, stream: str, seconds: float, ladder: Mapping[str, int]) -> None:
        self._ladders[stream] = dict(ladder)
        self._reset.discard(stream)  # the ladder climbed again since it was reset
        await self._update(stream, "wait", seconds, ladder)

    async def _update(
        self, stream: str, what: str, seconds: float, ladder: Mapping[str, int] | None
    ) -> None:
        args = [what, str(int(seconds * 1000)), str(int(RECONNECT_WINDOW_SECONDS * 1000))]
        encoded = "" if ladder is None else orjson.dumps(dict(ladder)).decode()
        written = await self._call(
            _UPDATE, stream, [*args, str(RECORD_TTL_SECONDS), str(MAX_ATTEMPTS), encoded]
        )
        if isinstance(written, bytes | str):
            self._known[stream] = written.encode() if isinstance(written, str) else written

    async def _call(self, script: Script, stream: str, args: list[str]) -> object:
        while True:
            try:
                return await self._client.invoke_script(script, keys=[self.key(stream)], args=args)
            except GlideError as exc:
                LOGGER.warning("the pacing record for %s: %s; trying again", stream, exc)
            await trio.sleep(RETRY_SECONDS)
