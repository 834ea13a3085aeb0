"""Garbage-collector thresholds for a long-running fan-out server.

CPython's defaults (700, 10, 10) collect the youngest generation after every 700 net container
allocations. Fanning tweets out allocates and frees short-lived containers in bursts (ASGI send
events, coroutine frames per send), so with 1,000 viewers the collector ran about a hundred
times a second and spent 15-30 % of the server's time, with pauses up to a few hundred
milliseconds that land in every viewer's latency at once (benchmarks/README.md, "gc").
Reference counting still frees all acyclic garbage at once; only cyclic garbage waits longer.
`gc.freeze()` after start-up was measured too and bought nothing more, so it is not used.
"""

from __future__ import annotations

import gc
import logging

LOGGER = logging.getLogger(__name__)

GC_THRESHOLDS = (50_000, 20, 100)


def tune_gc(thresholds: tuple[int, int, int] = GC_THRESHOLDS) -> None:
    """Raise the thresholds (process-wide; repeating it is harmless)."""
    if gc.get_threshold() != thresholds:
        gc.set_threshold(*thresholds)
        LOGGER.debug("gc thresholds set to %s", thresholds)
