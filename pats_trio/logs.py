"""Logging set-up shared by every way of starting pats-trio: one line per event."""

from __future__ import annotations

import logging

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: str) -> None:
    """Apply LOG_LEVEL however the app is started; hypercorn configures only its own loggers."""
    if not logging.getLogger().handlers:
        logging.basicConfig(format=FORMAT)
    logging.getLogger("pats_trio").setLevel(level)
