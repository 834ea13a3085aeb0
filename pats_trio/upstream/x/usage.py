"""X's usage endpoint, ``GET /2/usage/tweets``, read as the figures the cost guard needs. Pure.

X answers (app-only Bearer token; 50 requests a 15-minute window) with the project's posts
read this billing month (``project_usage``) against its monthly cap (``project_cap``), the days
until the cap resets (``cap_reset_day``) and, asked for with ``usage.fields``, the posts read per
UTC day by the whole project (``daily_project_usage``) and by each of its apps
(``daily_client_app_usage``). Counts come as numbers or as strings of digits; dates as
``YYYY-MM-DD`` or a timestamp at that day.

Which daily figure: the project's. An app-only token does not say which of the project's apps
it belongs to, so the app's own line cannot be picked out reliably; and what X bills is every
read of the project, so counting the project's day is the safe side: pats-trio stops early if
other apps of the project read a lot, never late.
"""

from __future__ import annotations

import calendar
import time
from dataclasses import dataclass
from typing import Any

USAGE_FIELDS = "cap_reset_day,daily_project_usage,project_cap,project_usage"
USAGE_DAYS = 2
"""Today and yesterday: enough to find today's line, whichever way X orders or dates them."""


class UsageFormatError(ValueError):
    """X's answer is not the usage object it should be."""


@dataclass(frozen=True, slots=True)
class UsageReport:
    """What X says about the project's reads; None where it said nothing."""

    today: int | None = None
    """Posts the project read on the UTC day asked about."""
    project_usage: int | None = None
    project_cap: int | None = None
    cap_reset_day: int | None = None

    @property
    def project_capped(self) -> bool:
        """Whether the project's monthly cap is reached: X delivers nothing more until it resets.

        >>> UsageReport(project_usage=10, project_cap=10).project_capped
        True
        >>> UsageReport(project_usage=10, project_cap=0).project_capped
        False
        """
        return bool(self.project_cap) and (self.project_usage or 0) >= (self.project_cap or 0)


def _count(value: Any) -> int | None:
    """A count X wrote as a number or as a string of digits.

    >>> _count("43435"), _count(7), _count(-1), _count("many"), _count(True)
    (43435, 7, None, None, None)
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def utc_day_of(date: Any) -> int | None:
    """The UTC day number of ``2024-01-15`` or ``2024-01-15T00:00:00.000Z``.

    >>> utc_day_of("1970-01-02T00:00:00.000Z"), utc_day_of("1970-01-03"), utc_day_of("soon")
    (1, 2, None)
    """
    if not isinstance(date, str):
        return None
    try:
        parsed = time.strptime(date[:10], "%Y-%m-%d")
    except ValueError:
        return None
    return calendar.timegm(parsed) // 86_400


def day_usage(entries: Any, day: int) -> int | None:
    """The posts read on `day` by a list of ``{"date", "usage"}`` lines (summed if X lists
    that day more than once), or None if it is not listed."""
    if not isinstance(entries, list):
        return None
    found = [
        _count(entry.get("usage"))
        for entry in entries
        if isinstance(entry, dict) and utc_day_of(entry.get("date")) == day
    ]
    counts = [n for n in found if n is not None]
    return sum(counts) if counts else None


def read_usage(payload: Any, day: int) -> UsageReport:
    """X's answer as a `UsageReport` for UTC `day`.

    >>> read_usage({"data": {"project_cap": "5000", "project_usage": "43",
    ...     "daily_project_usage": {"usage": [{"date": "1970-01-02", "usage": "12"}]}}}, 1)
    UsageReport(today=12, project_usage=43, project_cap=5000, cap_reset_day=None)
    """
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(data, dict):
        raise UsageFormatError("the answer has no usage data")
    daily = data.get("daily_project_usage")
    return UsageReport(
        today=day_usage(daily.get("usage") if isinstance(daily, dict) else None, day),
        project_usage=_count(data.get("project_usage")),
        project_cap=_count(data.get("project_cap")),
        cap_reset_day=_count(data.get("cap_reset_day")),
    )
