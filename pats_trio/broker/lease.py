"""The upstream lease in Redis: who owns the upstream, and who may still hold its connections.

Two keys. `<prefix>:owner` is the lease, with a TTL the owner renews. `<prefix>:holder` has no
short TTL: the owner writes it before its upstream may connect and deletes it once every
connection of its term is closed, so it names whoever may still hold one. Both carry a `Term`:
the worker, its attempt number (unique per attempt, so an attempt's outcome can be told apart
from another's), and the process (host, pid, start time).

Ambiguous outcomes. A `SET NX PX` that times out on the client may still run when Redis resumes,
and then the lease belongs to a worker that thinks it failed (a "ghost"). `ACQUIRE` treats any
term of this worker's as its own: the next attempt adopts whatever an earlier one left, and
`RELEASE` deletes whatever names this worker. No lease therefore sits with a worker that does
not act on it for longer than one poll.

Redis restarts. A Redis that comes back empty has lost both keys. The owner's `RENEW` then takes
the lease again with its own term (and names itself holder again), as long as its term holds
connections and both keys are missing; meanwhile `ACQUIRE` takes no lease that Redis lost, for
anyone, until Redis has been up for the lease's expiry (the grace). An owner runs on only until
0.6 lease after its last renewal, and that renewal was made on the old Redis, before the new one
started: whoever takes the lease after the grace finds every older term ended (the argument in
full: docs/architecture.md, "Fencing").

Liveness. A process that has exited holds no socket (the kernel closed them), but a stopped one
(SIGSTOP, a debugger, a VM paused) holds them all. On the same host, in the same pid namespace,
`/proc` tells which: `gone` answers True, False, or None when it cannot tell (another host). For
a term of this very process, the process knows (`holding`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from glide import Script

SEPARATOR = "|"


def _host_identity(proc: Path = Path("/proc")) -> str:
    """This boot of this machine, and this pid namespace: where pids mean the same process."""
    try:
        boot = (proc / "sys/kernel/random/boot_id").read_text().strip()
        namespace = os.stat(proc / "self/ns/pid").st_ino
    except OSError:
        return ""
    return f"{boot}/{namespace}"


def _started(pid: int, proc: Path = Path("/proc")) -> tuple[str, str] | None:
    """A process's state letter and start time (clock ticks after boot), or None if it is gone."""
    try:
        stat = (proc / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return fields[0], fields[19]


HOST = _host_identity()
PID = os.getpid()
_own = _started(PID)
START = _own[1] if _own is not None else ""


@dataclass(frozen=True, slots=True)
class Term:
    """One attempt at the lease, and the process that made it."""

    worker: str
    attempt: int
    host: str = HOST
    pid: int = PID
    start: str = START

    def encode(self) -> str:
        return SEPARATOR.join(
            (self.worker, str(self.attempt), self.host, str(self.pid), self.start)
        )

    @classmethod
    def decode(cls, raw: bytes | str) -> Term | None:
        text = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
        parts = text.split(SEPARATOR)
        if len(parts) != 5:
            return None
        worker, attempt, host, pid, start = parts
        with contextlib.suppress(ValueError):
            return cls(worker, int(attempt), host, int(pid), start)
        return None


_HOLDING: set[Term] = set()
"""The terms of this process whose upstream may have connections open now. A process can run
several workers (the tests do): for a term of this very process, this is what `gone` reads."""


@contextlib.contextmanager
def holding(term: Term) -> Iterator[None]:
    """While `term`'s upstream may have a connection open."""
    _HOLDING.add(term)
    try:
        yield
    finally:
        _HOLDING.discard(term)


def mine(worker: str) -> str:
    """The prefix every term of `worker` starts with."""
    return worker + SEPARATOR


def gone(term: Term, proc: Path = Path("/proc")) -> bool | None:
    """Whether `term`'s process has exited (and so closed every connection it had).

    None when this process cannot tell: another host, or another pid namespace."""
    if not term.host or term.host != HOST:
        return None
    if term.pid == PID and term.start == START:
        return term not in _HOLDING
    found = _started(term.pid, proc)
    if found is None:
        return True
    state, start = found
    return state in "ZX" or (bool(term.start) and start != term.start)


ACQUIRE = Script(  # type: ignore[no-untyped-call]
    # KEYS: owner, holder. ARGV: the new term, this worker's prefix, the TTL in ms, the grace in
    # ms. Taken: {1, the holder or '', Redis's uptime in seconds}. Held: {0, the owner, its PTTL};
    # {0, '', ms of grace left} while a Redis that started empty keeps the lease for a term that
    # may still be running (its owner re-takes it with `RENEW`).
    "local current = redis.call('get', KEYS[1]) "
    "if current and string.sub(current, 1, #ARGV[2]) ~= ARGV[2] then "
    "  return {0, current, redis.call('pttl', KEYS[1])} end "
    "local info = redis.call('info', 'server') "
    "local uptime = tonumber(string.match(info, 'uptime_in_seconds:(%d+)')) or 0 "
    "local holder = redis.call('get', KEYS[2]) "
    "if not current and not holder and uptime * 1000 < tonumber(ARGV[4]) then "
    "  return {0, '', tonumber(ARGV[4]) - uptime * 1000} end "
    "redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[3]) "
    "return {1, holder or '', uptime}"
)
RENEW = Script(  # type: ignore[no-untyped-call]
    # KEYS: owner, holder. ARGV: the term, the TTL in ms, '1' if the term holds connections (it
    # may re-take a lease Redis lost), the holder key's TTL in seconds.
    # RENEWED (1), RETAKEN (2): both keys were missing (Redis came back empty); else 0. A lease
    # that expired while the holder key stayed (Redis paused) is not taken again: the renewal
    # may be running late, after its term stopped.
    "local current = redis.call('get', KEYS[1]) "
    "if current == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end "
    "if current or ARGV[3] ~= '1' or redis.call('exists', KEYS[2]) == 1 then return 0 end "
    "redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2]) "
    "redis.call('set', KEYS[2], ARGV[1], 'EX', ARGV[4]) "
    "return 2"
)
RENEWED, RETAKEN = 1, 2
HOLD = Script(  # type: ignore[no-untyped-call]
    # KEYS: owner, holder. ARGV: the term, the holder key's TTL in seconds. 1 if written.
    "if redis.call('get', KEYS[1]) ~= ARGV[1] then return 0 end "
    "redis.call('set', KEYS[2], ARGV[1], 'EX', ARGV[2]) return 1"
)
RELEASE = Script(  # type: ignore[no-untyped-call]
    # KEYS: owner, holder, the event stream, each stream kind's status key. ARGV: this worker's
    # prefix, the stream's MAXLEN, then for each status key a status entry's fields as JSON
    # pairs. Deletes whichever of owner and holder names this worker; if the holder did (this
    # worker's term held connections), deletes the stored statuses and publishes these: its
    # viewers must not go on seeing its last "connected".
    "local holder = redis.call('get', KEYS[2]) "
    "local held = holder and string.sub(holder, 1, #ARGV[1]) == ARGV[1] "
    "for i = 1, 2 do "
    "  local value = redis.call('get', KEYS[i]) "
    "  if value and string.sub(value, 1, #ARGV[1]) == ARGV[1] then redis.call('del', KEYS[i]) end "
    "end "
    "if held then "
    "  for i = 4, #KEYS do "
    "    redis.call('del', KEYS[i]) "
    "    local flat = {} "
    "    for _, pair in ipairs(cjson.decode(ARGV[i - 1])) do "
    "      table.insert(flat, pair[1]) table.insert(flat, pair[2]) end "
    "    redis.call('xadd', KEYS[3], 'MAXLEN', '~', ARGV[2], '*', unpack(flat)) "
    "  end "
    "end return 1"
)
EVICT = Script(  # type: ignore[no-untyped-call]
    # KEYS: owner, holder. ARGV: a term whose process has exited. Deletes whichever names it.
    "for _, key in ipairs(KEYS) do "
    "  if redis.call('get', key) == ARGV[1] then redis.call('del', key) end "
    "end return 1"
)
HOLDER_TTL_SECONDS = 3_600
"""The holder key outlives any term; this only keeps a dead deployment's key from staying."""


@dataclass(frozen=True, slots=True)
class Taken:
    """The lease is ours: `holder` is who may still hold connections ('' if nobody), and Redis
    has been up `uptime` seconds (a Redis that just started may have lost an older holder)."""

    holder: str
    uptime: float


@dataclass(frozen=True, slots=True)
class Held:
    """Another worker's term holds the lease, for `ttl` more seconds."""

    term: str
    ttl: float


def outcome(reply: object) -> Taken | Held | None:
    """What `ACQUIRE` answered; None for a reply of another shape."""
    if not isinstance(reply, list) or len(reply) != 3:
        return None
    flag, value, number = reply
    text = value.decode(errors="replace") if isinstance(value, bytes) else str(value)
    if not isinstance(number, int):
        return None
    if flag == 1:
        return Taken(text, float(number))
    return Held(text, number / 1000)
