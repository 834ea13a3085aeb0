"""Logging set-up shared by every way of starting pats-trio: one line per event, text or JSON."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import orjson

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LOG_FORMATS = ("text", "json")
QUIET_LOGGERS = {"oauthlib": logging.INFO}
"""Libraries whose DEBUG lines carry credentials: oauthlib logs the consumer key and access
token with every signature. Held above DEBUG whatever the root level, so none reaches a log."""
HYPERCORN_ERROR_LOG = "hypercorn.error"
"""hypercorn's own lines (start-up, errors in the ASGI app): shown at LOG_LEVEL, in LOG_FORMAT."""
HANDLER_NAME = "pats_trio"
"""The root handler `configure_logging` installs; it is reconfigured in place, never duplicated."""


class JsonFormatter(logging.Formatter):
    """One JSON object per line: `ts` (UTC, ISO 8601), `level`, `logger`, `message`, and `exc`
    (the formatted traceback) when the record carries an exception.

    >>> record = logging.LogRecord("pats_trio", logging.INFO, "", 0, "%d viewers", (3,), None)
    >>> record.created = 0.0
    >>> JsonFormatter().format(record)
    '{"ts":"1970-01-01T00:00:00.000Z","level":"INFO","logger":"pats_trio","message":"3 viewers"}'
    """

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(entry, default=str).decode()


def make_formatter(fmt: str = "text") -> logging.Formatter:
    """The formatter for LOG_FORMAT; raises ValueError for anything but `text` or `json`."""
    if fmt == "text":
        return logging.Formatter(FORMAT)
    if fmt == "json":
        return JsonFormatter()
    raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, got {fmt!r}")


def configure_logging(level: str, fmt: str = "text") -> None:
    """Apply LOG_LEVEL and LOG_FORMAT however the app is started.

    hypercorn configures only its own loggers, so the root logger gets one stream handler of
    ours, unless someone else (an embedding program, pytest) already configured it: then their
    handlers are left alone. Calling this again reformats our handler instead of adding another.
    """
    formatter = make_formatter(fmt)
    root = logging.getLogger()
    ours = [handler for handler in root.handlers if handler.name == HANDLER_NAME]
    if ours:
        for handler in ours:
            handler.setFormatter(formatter)
    elif not root.handlers:
        handler = logging.StreamHandler()
        handler.name = HANDLER_NAME
        handler.setFormatter(formatter)
        root.addHandler(handler)
    logging.getLogger("pats_trio").setLevel(level)
    logging.getLogger(HYPERCORN_ERROR_LOG).setLevel(level)
    for name, floor in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(floor)
