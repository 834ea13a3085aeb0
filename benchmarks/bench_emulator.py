"""The streaming-API emulator for the fan-out benchmark: `pats-trio emulate` with two additions.

* The rates change at run time, so one emulator serves every step of a run and the servers'
  upstream connections stay open: ``POST /_bench/rate`` with ``{"rate": r, "filter_rate": f}``.
  A rate of 0 stops that source; the sample generator waits for a positive rate.
* It remembers the ``timestamp_ms`` of every sample tweet it generated, so the benchmark knows
  what was offered in a window: ``GET /_bench/generated?from=MS&to=MS`` answers
  ``{"count": n}`` for tweets created in [from, to).

Everything else (tweet shapes, Poisson arrivals, the control API) is `pats_trio.emulator`'s.

    python benchmarks/bench_emulator.py --port P --rate R [--filter-rate F] [--seed N]
"""

from __future__ import annotations

import argparse
import bisect
import signal
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import parse_qs

import orjson
import trio

from pats_trio.emulator import Emulator, serve_emulator
from pats_trio.emulator.asgi import Receive, Send
from pats_trio.emulator.server import MAX_LAG, _Stream
from pats_trio.logs import configure_logging

BENCH_PREFIX = "/_bench"
# At 2,000 tweets/s, the last 8 minutes.
GENERATED_MEMORY = 1_000_000


class BenchEmulator(Emulator):
    def __init__(self, *, rate: float, filter_rate: float, seed: int | None) -> None:
        # The contestants read it unsigned, side by side; on Twitter each would have its own
        # account, so none may end another's stream as a duplicate.
        super().__init__(
            rate=rate,
            filter_rate=filter_rate,
            seed=seed,
            control=True,
            one_stream_per_account=False,
        )
        self.generated: deque[int] = deque(maxlen=GENERATED_MEMORY)
        self._rate_changed = trio.Event()

    def set_rates(self, rate: float, filter_rate: float) -> None:
        if rate < 0 or filter_rate < 0:
            raise ValueError("rates must not be negative")
        self.rate, self.filter_rate = rate, filter_rate
        self._rate_changed.set()
        self._rate_changed = trio.Event()

    def generated_between(self, start_ms: int, end_ms: int) -> int:
        stamps = self.generated
        # Appended in time order; a deque bisects in O(n) access per probe, so copy once.
        ordered = list(stamps)
        return bisect.bisect_left(ordered, end_ms) - bisect.bisect_left(ordered, start_ms)

    async def generate(self) -> None:
        """Like `Emulator.generate`, but follows rate changes, and remembers what it sent."""
        next_at = trio.current_time()
        while True:
            if self.rate <= 0:
                await self._rate_changed.wait()
                next_at = trio.current_time()
                continue
            rate = self.rate
            next_at = max(next_at + self._timing.expovariate(rate), trio.current_time() - MAX_LAG)
            with trio.move_on_at(next_at) as waiting:
                await self._rate_changed.wait()
            if not waiting.cancelled_caught:  # a new rate: draw the next gap from it
                next_at = trio.current_time()
                continue
            if self._streams:
                now = self.now_ms()
                self.generated.append(now)
                self._broadcast(self.factory.next_status(now))

    async def _feed_filter(self, stream: _Stream) -> None:
        while self.filter_rate <= 0:
            await self._rate_changed.wait()
        await super()._feed_filter(stream)

    async def __call__(self, scope: Mapping[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(BENCH_PREFIX + "/"):
            await self._bench(scope, receive, send)
            return
        await super().__call__(scope, receive, send)

    async def _bench(self, scope: Mapping[str, Any], receive: Receive, send: Send) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if message["type"] != "http.request" or not message.get("more_body", False):
                break
        path = scope["path"].removeprefix(BENCH_PREFIX)
        status, answer = 200, b""
        try:
            if path == "/rate":
                rates = orjson.loads(body)
                self.set_rates(float(rates["rate"]), float(rates.get("filter_rate", rates["rate"])))
                answer = orjson.dumps({"rate": self.rate, "filter_rate": self.filter_rate})
            elif path == "/generated":
                query = parse_qs(scope["query_string"].decode("latin-1"))
                count = self.generated_between(int(query["from"][0]), int(query["to"][0]))
                answer = orjson.dumps({"count": count})
            else:
                status, answer = 404, b'{"error":"no such endpoint"}'
        except (KeyError, ValueError, TypeError, orjson.JSONDecodeError) as error:
            status, answer = 400, orjson.dumps({"error": str(error)})
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": answer, "more_body": False})


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--rate", type=float, default=5.0, help="sample tweets per second")
    parser.add_argument("--filter-rate", type=float, help="per filter stream (default: --rate)")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    emulator = BenchEmulator(
        rate=args.rate,
        filter_rate=args.rate if args.filter_rate is None else args.filter_rate,
        seed=args.seed,
    )

    async def run() -> None:
        async with trio.open_nursery() as nursery:
            base_url = await nursery.start(
                lambda task_status: serve_emulator(
                    emulator, host=args.host, port=args.port, task_status=task_status
                )
            )
            print(f"emulating the Twitter streaming API at {base_url}", flush=True)
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for _ in signals:
                    break
            nursery.cancel_scope.cancel()

    trio.run(run)


if __name__ == "__main__":
    main()
