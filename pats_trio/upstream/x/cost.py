"""The cost guard: posts read per UTC day, what they cost, and whether to read on.

X bills pay-per-use apps per post read (each post once per UTC day). `DailyMeter` counts the
posts the stream delivered today, in UTC, prices them, and says when the day's cap is reached and
how long until reading may resume (the next midnight UTC). All times are passed in as seconds
since the epoch, so it stays pure and a virtual clock can drive it.

The process is not the only witness of the day's reads: a restart, or another worker that took
over the upstream, read posts this process never saw. `seed` takes in such a figure (X's usage
endpoint, the deployment's count in Redis), and the meter keeps the larger: every source is a
lower bound of what X will bill, so the largest is the best estimate.
"""

from __future__ import annotations

from dataclasses import dataclass

DAY_SECONDS = 86_400


def utc_day(epoch_seconds: float) -> int:
    """The UTC day number (days since 1970-01-01) of a moment."""
    return int(epoch_seconds // DAY_SECONDS)


def until_midnight(epoch_seconds: float) -> float:
    """Seconds from a moment to the next midnight UTC.

    >>> until_midnight(DAY_SECONDS - 10.0)
    10.0
    """
    return (utc_day(epoch_seconds) + 1) * DAY_SECONDS - epoch_seconds


@dataclass
class DailyMeter:
    """Posts read on the current UTC day against `cap` (0: no cap), at `price` each.

    >>> meter = DailyMeter(cap=2, price=0.005)
    >>> meter.record(10.0), meter.record(20.0), meter.capped(30.0)
    (True, False, True)
    >>> meter.capped(DAY_SECONDS + 1.0), meter.today
    (False, 0)
    """

    cap: int
    price: float
    day: int = 0
    today: int = 0
    """Posts read on `day`."""
    total: int = 0
    """Posts read since the process started, over all days."""

    def _roll(self, now: float) -> None:
        day = utc_day(now)
        if day != self.day:
            self.day, self.today = day, 0

    def record(self, now: float) -> bool:
        """One post was read at `now`; False once it reached the cap (stop reading)."""
        self._roll(now)
        self.today += 1
        self.total += 1
        return not self.capped(now)

    def seed(self, now: float, day: int, count: int) -> bool:
        """Another witness says `count` posts were read on `day`: keep it if it is more than
        this meter counted (a figure of another day says nothing of today). True if it raised
        today's count.

        >>> meter = DailyMeter(cap=10, price=0.005)
        >>> meter.record(5.0), meter.seed(6.0, 0, 7), meter.seed(7.0, 0, 3), meter.today
        (True, True, False, 7)
        """
        self._roll(now)
        if day != self.day or count <= self.today:
            return False
        self.today = count
        return True

    def capped(self, now: float) -> bool:
        """Whether today's cap is reached at `now`."""
        self._roll(now)
        return self.cap > 0 and self.today >= self.cap

    def spend_today(self, now: float) -> float:
        """The estimated spend of today's posts, in the price's currency."""
        self._roll(now)
        return self.today * self.price

    def reason(self) -> str:
        """What viewers are told when the cap stops the stream, in plain words."""
        return (
            f"this server's daily limit of {self.cap:,} posts from X is reached "
            f"(about ${self.cap * self.price:,.2f} at ${self.price:g} a post); "
            "posts resume after midnight UTC"
        )
