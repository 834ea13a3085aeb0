"""How long to wait before reconnecting, as pure values: the caller waits.

`doubling` and `jitter` are the delay and its randomness for every retry in the project (the
sources, the Redis broker's clients, `tail`). `Backoff` is Twitter's reconnect policy as a pure
object, and `ConnectionBudget` paces connection attempts whatever caused them.

Backoff's ladders follow Twitter's "Connecting to a streaming endpoint" guide: network errors
back off linearly, HTTP errors exponentially, rate limiting (420, 429) exponentially from a
minute, and the first reconnect after an established stream drops is immediate. Each ladder
climbs on its own and all of them restart at `reset()`, which the caller makes when a
connection answers HTTP 200.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Mapping
from typing import Literal

NETWORK_ERROR_STEP_SECONDS = 0.25
NETWORK_ERROR_CAP_SECONDS = 16.0
HTTP_ERROR_FIRST_SECONDS = 5.0
HTTP_ERROR_CAP_SECONDS = 320.0
RATE_LIMITED_FIRST_SECONDS = 60.0
RATE_LIMITED_CAP_SECONDS = 960.0
"""Twitter gives no cap for 420; 16 minutes is a rate-limit window, after which a retry is fair."""
FATAL_RETRY_SECONDS = 300.0
"""Errors that need a person are still retried, slowly, so a fixed config recovers by itself."""
STABLE_CONNECTION_SECONDS = 30.0
"""A connection that dropped sooner than this earns no immediate reconnect (see `after_drop`)."""

RATE_LIMITED_STATUSES = frozenset({420, 429})
FATAL_STATUSES = frozenset({401, 403, 404, 406, 413, 416})
"""Bad credentials (401), no access (403), a wrong URL (404), or parameters the server refuses
(406 unacceptable, 413 too long, 416 range): retrying sooner changes nothing."""

_MAX_DOUBLINGS = 32
"""Past this a doubled delay is far above any cap; it only keeps `2.0 ** n` finite."""

StatusClass = Literal["ok", "rate_limited", "fatal", "http_error"]


def classify(status: int) -> StatusClass:
    """Which reconnect ladder an HTTP status belongs to."""
    if status == 200:
        return "ok"
    if status in RATE_LIMITED_STATUSES:
        return "rate_limited"
    if status in FATAL_STATUSES:
        return "fatal"
    return "http_error"


def doubling(first: float, cap: float, step: int) -> float:
    """`first`, doubled `step` times (0 for the first retry), and never above `cap`.

    >>> [doubling(1.0, 30.0, step) for step in range(7)]
    [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    """
    return min(first * 2.0 ** min(max(step, 0), _MAX_DOUBLINGS), cap)


def jitter(delay: float, draw: float, *, low: float = 0.5, high: float = 1.0) -> float:
    """`delay` moved to a point between `low` and `high` times itself, where `draw` in [0, 1]
    says which: clients that failed together then do not come back in step. By default half
    the delay is kept and half is random.

    >>> jitter(8.0, 0.0), jitter(8.0, 1.0), jitter(8.0, 0.5, low=0.75, high=1.25)
    (4.0, 8.0, 8.0)
    """
    return delay * (low + (high - low) * min(max(draw, 0.0), 1.0))


def jittered(
    delay: float, rng: random.Random | None = None, *, low: float = 0.5, high: float = 1.0
) -> float:
    """`jitter` with a fresh draw from `rng` (the module's generator if None)."""
    draw = rng.random() if rng is not None else random.random()
    return jitter(delay, draw, low=low, high=high)


class Backoff:
    """The delays for one connection slot; use one instance per independent connection.

    >>> backoff = Backoff()
    >>> [backoff.after_network_error() for _ in range(3)]
    [0.25, 0.5, 0.75]
    >>> backoff.reset()
    >>> backoff.after_drop(), backoff.after_drop()
    (0.0, 0.25)
    """

    classify = staticmethod(classify)

    def __init__(self) -> None:
        self._network_failures = 0
        self._http_failures = 0
        self._rate_limited_failures = 0
        self._immediate_drop_allowed = True
        self._short_drops = 0

    def reset(self) -> None:
        """The server answered HTTP 200: every ladder starts again from the bottom."""
        self._network_failures = 0
        self._http_failures = 0
        self._rate_limited_failures = 0
        self._immediate_drop_allowed = True

    def stages(self) -> dict[str, int]:
        """How far up each ladder this backoff is: what a successor resumes from (`resume`).

        >>> backoff = Backoff()
        >>> _ = backoff.after_http_error(503), backoff.after_http_error(503)
        >>> successor = Backoff()
        >>> successor.resume(backoff.stages())
        >>> successor.after_http_error(503)
        20.0
        """
        return {
            "network": self._network_failures,
            "http": self._http_failures,
            "rate_limited": self._rate_limited_failures,
            "short_drops": self._short_drops,
        }

    def resume(self, stages: Mapping[str, int]) -> None:
        """Start where another process's backoff for the same connection slot had got to."""
        self._network_failures = max(int(stages.get("network", 0)), 0)
        self._http_failures = max(int(stages.get("http", 0)), 0)
        self._rate_limited_failures = max(int(stages.get("rate_limited", 0)), 0)
        self._short_drops = max(int(stages.get("short_drops", 0)), 0)

    def after_drop(self, *, uptime: float | None = None) -> float:
        """An established stream ended or stalled: reconnect at once the first time.

        A further drop without a `reset()` in between climbs the network-error ladder. When the
        caller passes `uptime` (seconds the stream was connected) and it is under
        `STABLE_CONNECTION_SECONDS`, the drop climbs a separate ladder that `reset()` does not
        clear, so a server that accepts and at once closes is not reconnected to in a tight loop.
        """
        if uptime is not None and uptime < STABLE_CONNECTION_SECONDS:
            self._short_drops += 1
            self._immediate_drop_allowed = False
            return min(NETWORK_ERROR_STEP_SECONDS * self._short_drops, NETWORK_ERROR_CAP_SECONDS)
        self._short_drops = 0
        if self._immediate_drop_allowed:
            self._immediate_drop_allowed = False
            return 0.0
        return self.after_network_error()

    def after_network_error(self) -> float:
        """Connect or read failed below HTTP: 0.25 s more each time, up to 16 s."""
        self._network_failures += 1
        return min(NETWORK_ERROR_STEP_SECONDS * self._network_failures, NETWORK_ERROR_CAP_SECONDS)

    def after_http_error(self, status: int) -> float:
        """A non-200 answer worth retrying: 5 s doubling to 320 s; for 420/429, 60 s to 960 s."""
        if status in RATE_LIMITED_STATUSES:
            self._rate_limited_failures += 1
            return doubling(
                RATE_LIMITED_FIRST_SECONDS,
                RATE_LIMITED_CAP_SECONDS,
                self._rate_limited_failures - 1,
            )
        self._http_failures += 1
        return doubling(HTTP_ERROR_FIRST_SECONDS, HTTP_ERROR_CAP_SECONDS, self._http_failures - 1)

    def after_fatal(self, status: int | None = None) -> float:
        """An error that needs a person: a slow, fixed retry, whatever the cause.

        The same for an HTTP answer in `FATAL_STATUSES` (its `status` may be given; it changes
        nothing) and for a fatal message on an open stream, which has none. The other ladders
        are left where they were.
        """
        return FATAL_RETRY_SECONDS


RECONNECT_WINDOW_SECONDS = 300.0
"""Twitter judged excessive reconnects over minutes; we cap attempts per five-minute window."""


class ConnectionBudget:
    """How soon the next connection attempt may start, whatever caused it.

    Filter changes come from viewers, not from errors, so no backoff ladder covers them: a busy
    page could otherwise reconnect every few seconds and get the account rate-limited. All times
    are passed in, so this stays pure.

    >>> budget = ConnectionBudget(min_interval=5.0, max_per_window=2)
    >>> budget.record(0.0); budget.delay(1.0)
    4.0
    >>> budget.record(6.0); budget.delay(7.0)
    293.0
    """

    def __init__(
        self,
        *,
        min_interval: float,
        max_per_window: int,
        window: float = RECONNECT_WINDOW_SECONDS,
    ) -> None:
        if max_per_window < 1:
            raise ValueError("max_per_window must be at least 1")
        self.min_interval = min_interval
        self.max_per_window = max_per_window
        self.window = window
        self._attempts: deque[float] = deque()

    def delay(self, now: float) -> float:
        """Seconds to wait from `now` before an attempt is within budget (0 if it is)."""
        while self._attempts and self._attempts[0] <= now - self.window:
            self._attempts.popleft()
        wait = 0.0
        if self._attempts:
            wait = self._attempts[-1] + self.min_interval - now
        if len(self._attempts) >= self.max_per_window:
            wait = max(wait, self._attempts[0] + self.window - now)
        return max(wait, 0.0)

    def record(self, now: float) -> None:
        """An attempt starts now."""
        self._attempts.append(now)
