"""Log lines that an outsider can cause: each value cut short, and few lines a minute per kind.

A refused Origin header was logged verbatim with no limit, so one client wrote 73 MB of log in
ten seconds. Every line a request can trigger goes through here instead: the values it quotes are
shortened and escaped (no line breaks forged into the log), and past `PER_MINUTE` lines of one
kind the rest are only counted, and the count is told with the next line that is let through.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import trio

PER_MINUTE = 10
WINDOW_SECONDS = 60.0
MAX_VALUE_CHARS = 120


def quoted(value: object, limit: int = MAX_VALUE_CHARS) -> str:
    """`value` as an escaped literal of at most about `limit` characters."""
    text = str(value)
    if len(text) > limit:
        return repr(text[:limit]) + f"... ({len(text)} chars)"
    return repr(text)


@dataclass
class _Window:
    start: float
    logged: int = 0
    held: int = 0


class OutsiderLog:
    """A logger's outsider-caused lines, limited per kind (a fixed word the code names, never a
    value from the request)."""

    def __init__(self, logger: logging.Logger, *, per_minute: int = PER_MINUTE) -> None:
        self._logger = logger
        self._per_minute = per_minute
        self._windows: dict[str, _Window] = {}

    def warning(self, kind: str, message: str, *values: object) -> None:
        """Log `message % values` unless `kind` has had its lines this minute; text values are
        quoted with `quoted` (so `message` has `%s` for them), numbers go in as they are."""
        now = trio.current_time()
        window = self._windows.get(kind)
        if window is None or not 0 <= now - window.start < WINDOW_SECONDS:
            held = window.held if window is not None else 0
            window = self._windows[kind] = _Window(now)
            if held:
                message += f" ({held} more like this in the last minute were not logged)"
        if window.logged >= self._per_minute:
            window.held += 1
            return
        window.logged += 1
        self._logger.warning(
            message, *(quoted(value) if isinstance(value, str) else value for value in values)
        )
