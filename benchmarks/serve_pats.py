"""`pats-trio serve` for the benchmark, with the garbage collector watched and optionally tuned.

It builds and serves the app exactly as `pats_trio.cli.serve_command` does (settings from the
environment, one hypercorn trio worker). On top of that:

* ``--gc-stats FILE``: `gc.callbacks` count collections per generation and time each pause;
  the totals are written to FILE (JSON) twice a second while serving.
* ``--gc-freeze``: once serving has started, `gc.collect()` and `gc.freeze()`: the app, the
  imported modules and the hub move to the permanent generation, never scanned again.
* ``--gc-threshold A,B,C``: then `gc.set_threshold(A, B, C)` (Python's default is 700,10,10).
* ``--profile FILE``: cProfile around the whole run (trio runs in the main thread), written at
  exit as a pstats file. It slows the server down: never compare its other figures.

    python benchmarks/serve_pats.py --port P [--gc-freeze] [--gc-threshold A,B,C]
        [--gc-stats FILE] [--profile FILE]
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

STATS_INTERVAL = 0.5


class GcWatch:
    """Collections per generation and their pause times, from `gc.callbacks`."""

    def __init__(self) -> None:
        self.collections = [0, 0, 0]
        self.pause_seconds = [0.0, 0.0, 0.0]
        self.max_pause = 0.0
        self.collected = 0
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        pause = time.perf_counter() - self._started
        generation = int(info["generation"])
        self.collections[generation] += 1
        self.pause_seconds[generation] += pause
        self.max_pause = max(self.max_pause, pause)
        self.collected += int(info.get("collected", 0))

    def snapshot(self) -> dict[str, Any]:
        return {
            "collections": list(self.collections),
            "pause_seconds": list(self.pause_seconds),
            "max_pause_seconds": self.max_pause,
            "collected": self.collected,
            "threshold": list(gc.get_threshold()),
            "frozen": gc.get_freeze_count(),
            "time": time.time(),
        }


def _write_atomically(path: Path, data: dict[str, Any]) -> None:
    scratch = path.with_suffix(path.suffix + ".tmp")
    scratch.write_text(json.dumps(data))
    os.replace(scratch, path)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--gc-freeze", action="store_true")
    parser.add_argument("--gc-threshold", help="A,B,C for gc.set_threshold")
    parser.add_argument("--gc-stats", type=Path)
    parser.add_argument("--profile", type=Path)
    args = parser.parse_args(argv)
    thresholds = tuple(int(part) for part in (args.gc_threshold or "").split(",") if part)
    if args.gc_threshold and len(thresholds) != 3:
        parser.error("--gc-threshold takes three integers")

    from pats_trio.app import create_app
    from pats_trio.config import load_settings

    settings = load_settings(host=args.host, port=args.port)
    app = create_app(settings)
    watch = GcWatch()
    gc.callbacks.append(watch)

    async def write_stats() -> None:
        assert args.gc_stats is not None
        while True:
            _write_atomically(args.gc_stats, watch.snapshot())
            await trio.sleep(STATS_INTERVAL)

    @app.before_serving
    async def tune_gc() -> None:  # runs after the app's own start-up (the hub is running)
        if args.gc_freeze:
            gc.collect()
            gc.freeze()
        if thresholds:
            gc.set_threshold(*thresholds)
        if args.gc_stats is not None:
            app.nursery.start_soon(write_stats)

    config = Config()
    config.bind = [f"{settings.host}:{settings.port}"]
    config.accesslog = None
    config.graceful_timeout = settings.shutdown_grace_seconds
    profile = cProfile.Profile() if args.profile else None
    if profile is not None:
        profile.enable()
    try:
        trio.run(lambda: serve(app, config, shutdown_trigger=app.until_shutdown))
    finally:
        if profile is not None:
            profile.disable()
            profile.dump_stats(str(args.profile))
        if args.gc_stats is not None:
            _write_atomically(args.gc_stats, watch.snapshot())


if __name__ == "__main__":
    main()
