"""Fair shares of what every viewer shares upstream: the phrase budget and the filter restarts.

Pure: values in, values out, all times passed in. The hub holds one `UpstreamPacer` and calls
`fair_union` over its viewers' phrases, grouped by address.

**Phrases.** The upstream follows at most `MAX_PHRASES` (400) phrases for everyone. `fair_union`
shares them out max-min fairly among addresses: a round takes one more phrase from each
address in turn, so an address holding few phrases always gets them all, and only the
addresses holding most lose some when the budget runs out. A newcomer is therefore refused only
when its phrases would not fit even so (every address already at or under its share); a hog's
phrases beyond its share are kept for routing but left out upstream, and its viewers are told.

**Filter restarts.** Twitter's v1.1 filter stream restarts on every change of the union, within
a budget for the whole account (`PATS_MAX_CONNECTS_PER_5MIN`). `UpstreamPacer` decides when the
hub hands a changed union upstream: each address has a small bucket of restarts (`ADDRESS_BURST`,
refilled at `PATS_MAX_RESTARTS_PER_ADDRESS_5MIN`) and each viewer a smaller one inside it, refilled
half as fast; repeat changers share half the account's budget and the other half is kept for
first changes, so a newcomer never waits on the budget;
when several addresses wait, the one charged least recently goes first. Every restart carries
the whole union as it is then, so a change that waits rides along with the next one, whoever
pays for it: churn is coalesced, never lost, and never costs more than its share.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from pats_trio.config import Settings

K = TypeVar("K", bound=Hashable)

ADDRESS_BURST = 6
"""Restarts the viewers of one address may cause back to back."""
VIEWER_BURST = 3
"""Restarts one viewer may cause back to back (a page opened, then a filter corrected twice)."""
VIEWER_SLOWER = 2
"""A viewer's bucket refills this many times slower than its address's, so that one viewer
churning leaves the rest of its address's restarts to the others there (a NAT, an office)."""
WINDOW_SECONDS = 300.0
"""The window of `PATS_MAX_CONNECTS_PER_5MIN` (upstream/backoff.py's, which the hub may not
import)."""


@dataclass(frozen=True)
class ShareLimits:
    """The hub's fair-share settings; defaults are the settings' own."""

    per_viewer: int = Settings.max_phrases_per_viewer
    per_address: int = Settings.max_phrases_per_address
    min_interval: float = Settings.min_reconnect_seconds
    max_per_window: int = Settings.max_connects_per_5min
    address_interval: float = WINDOW_SECONDS / Settings.max_restarts_per_address_5min
    group: float = Settings.filter_debounce_seconds
    """Pushes this close to one another become one restart (the upstream's debounce)."""
    paced: bool = True
    """False for a source that changes its filter without reconnecting (Jetstream matches
    keywords here): every change goes upstream at once."""

    @classmethod
    def from_settings(cls, settings: Settings) -> ShareLimits:
        return cls(
            paced=settings.source != "bluesky",
            per_viewer=settings.max_phrases_per_viewer,
            per_address=settings.max_phrases_per_address,
            min_interval=settings.min_reconnect_seconds,
            max_per_window=settings.max_connects_per_5min,
            address_interval=WINDOW_SECONDS / settings.max_restarts_per_address_5min,
            group=settings.filter_debounce_seconds,
        )

    def pacer(self) -> UpstreamPacer:
        return UpstreamPacer(
            min_interval=self.min_interval,
            max_per_window=self.max_per_window,
            address_interval=self.address_interval,
            group=self.group,
        )


def fair_union(holdings: Iterable[Sequence[str]], capacity: int) -> set[str]:
    """The phrases to follow when each holder (an address) wants its `holdings`, in its own
    order: all of them if they fit in `capacity`, else a max-min fair share for each holder.

    >>> sorted(fair_union([["a", "b", "c", "d"], ["x"], ["y", "a"]], 4))
    ['a', 'b', 'x', 'y']
    """
    wanted = [holding for holding in holdings if holding]
    everything = set().union(*wanted) if wanted else set()
    if len(everything) <= capacity:
        return everything
    chosen: dict[str, None] = {}
    queues = [iter(holding) for holding in wanted]
    while queues and len(chosen) < capacity:
        still: list[Iterable[str]] = []
        for queue in queues:
            if len(chosen) >= capacity:
                break
            for phrase in queue:
                if phrase not in chosen:  # one another holder asked for costs nobody a turn
                    chosen[phrase] = None
                    still.append(queue)
                    break
        queues = still  # type: ignore[assignment]
    return set(chosen)


@dataclass
class _Bucket:
    tokens: float
    at: float


class UpstreamPacer:
    """When the union may next go upstream, and on whose account.

    `request(address, viewer, now)` says a change by that viewer waits; `due(now)` is when the
    next push may happen (None when nothing waits); `push(now)` charges the change that goes
    first and clears every waiting one, since the push carries them all; `eta(address, viewer,
    now)` is when a change of theirs goes at the latest.

    The rules, so that the account's connection budget (`max_per_window` in five minutes, each
    `min_interval` apart) is never spent by a few and a newcomer never waits on it:

    * each address has `ADDRESS_BURST` restarts, refilled one per `address_interval`, and each
      viewer `VIEWER_BURST`, refilled `VIEWER_SLOWER` times slower: a change needs both;
    * pushes are `min_interval` apart, except that within `group` seconds of a push further
      ones join it (the upstream's own debounce makes them one restart);
    * addresses that already caused a restart in the window share half the budget between
      them; the other half is kept for an address's first change in the window (a newcomer);
    * when several wait, the address charged least recently goes first.

    >>> pacer = UpstreamPacer(min_interval=5.0, max_per_window=20, address_interval=60.0, group=1.0)
    >>> pacer.request("hog", 1, 0.0); pacer.due(0.0)
    0.0
    >>> pacer.push(0.0)
    ('hog', 1)
    >>> pacer.request("hog", 1, 20.0); pacer.request("newcomer", 2, 20.0); pacer.push(20.0)
    ('newcomer', 2)
    """

    def __init__(
        self,
        *,
        min_interval: float,
        max_per_window: int,
        address_interval: float,
        group: float,
        window: float = WINDOW_SECONDS,
    ) -> None:
        self.min_interval = min_interval
        self.max_per_window = max_per_window
        self.group = group
        self.window = window
        self._addresses: _Buckets[str] = _Buckets(ADDRESS_BURST, address_interval)
        self._viewers: _Buckets[int] = _Buckets(VIEWER_BURST, address_interval * VIEWER_SLOWER)
        self._charged_at: dict[str, float] = {}
        self._waiting: dict[tuple[str, int], float] = {}
        self._pushes: deque[float] = deque()
        self._group_until = float("-inf")

    def request(self, address: str, viewer: int, now: float) -> None:
        self._waiting.setdefault((address, viewer), now)

    def clear(self) -> None:
        """Nothing needs pushing after all (the change was undone): nobody is charged."""
        self._waiting.clear()

    def due(self, now: float) -> float | None:
        if not self._waiting:
            return None
        return min(self._ready_at(address, viewer, now) for address, viewer in self._waiting)

    def eta(self, address: str, viewer: int, now: float) -> float:
        return self._ready_at(address, viewer, now)

    def push(self, now: float) -> tuple[str, int] | None:
        """The push happens now: whose change it is charged to (None if none was due)."""
        ready = [key for key in self._waiting if self._ready_at(*key, now) <= now]
        if not ready:
            return None
        address, viewer = min(
            ready, key=lambda key: (self._charged_at.get(key[0], float("-inf")), key)
        )
        self._addresses.take(address, now)
        self._viewers.take(viewer, now)
        self._charged_at[address] = now
        if now >= self._group_until:
            self._pushes.append(now)
            self._group_until = now + self.group
        self._waiting.clear()
        self._forget(now)
        return address, viewer

    def _ready_at(self, address: str, viewer: int, now: float) -> float:
        at = max(now, self._addresses.refilled_at(address, now))
        at = max(at, self._viewers.refilled_at(viewer, now))
        if at < self._group_until:
            return at
        if self._pushes:
            at = max(at, self._pushes[-1] + self.min_interval)
        first_in_window = self._charged_at.get(address, float("-inf")) <= at - self.window
        cap = max(1, self.max_per_window if first_in_window else self.max_per_window // 2)
        recent = [t for t in self._pushes if t > at - self.window]
        if len(recent) >= cap:
            at = max(at, recent[len(recent) - cap] + self.window)
        return at

    def _forget(self, now: float) -> None:
        """Bounded memory: pushes out of the window, and buckets as good as new."""
        while self._pushes and self._pushes[0] <= now - self.window:
            self._pushes.popleft()
        for address in [a for a, at in self._charged_at.items() if at <= now - self.window]:
            del self._charged_at[address]
        self._addresses.forget_full(now)
        self._viewers.forget_full(now)


class _Buckets(Generic[K]):
    """A token bucket per key: `burst` tokens, one back every `interval`."""

    def __init__(self, burst: int, interval: float) -> None:
        self.burst = burst
        self.interval = interval
        self._buckets: dict[K, _Bucket] = {}

    def tokens(self, key: K, now: float) -> float:
        bucket = self._buckets.get(key)
        if bucket is None:
            return float(self.burst)
        return min(float(self.burst), bucket.tokens + (now - bucket.at) / self.interval)

    def refilled_at(self, key: K, now: float) -> float:
        """When `key` has a whole token (now, if it has one)."""
        tokens = self.tokens(key, now)
        return now if tokens >= 1 else now + (1 - tokens) * self.interval

    def take(self, key: K, now: float) -> None:
        self._buckets[key] = _Bucket(self.tokens(key, now) - 1, now)

    def forget_full(self, now: float) -> None:
        for key in [k for k in self._buckets if self.tokens(k, now) >= self.burst]:
            del self._buckets[key]
