"""The fan-out baseline: a bare trio-websocket broadcast server on the same upstream.

It reads the emulator's sample stream over HTTP with httpx, trims and encodes each tweet once
exactly as pats-trio does (`pats_trio.events.tweet_event`), and hands that one string to every
connected viewer's bounded channel without waiting (a full channel drops the tweet and counts
it). Each viewer has one task that sends its channel's frames, one WebSocket message per tweet,
and a ``{"type":"skipped","count":n}`` frame after a drop, like pats-trio. No page, no
filters, no admission control, no batching: what is left is the cost of fanning out.

    python benchmarks/baseline_server.py --port P --upstream http://127.0.0.1:E/1.1
"""

from __future__ import annotations

import argparse
import logging
import signal
from collections.abc import Sequence
from dataclasses import dataclass, field

import httpx
import orjson
import trio
from trio_websocket import ConnectionClosed, WebSocketRequest, serve_websocket

from pats_trio import frames
from pats_trio.events import tweet_event

LOGGER = logging.getLogger("baseline")
QUEUE_SIZE = 256
RECONNECT_SECONDS = 0.5


@dataclass(eq=False)
class Viewer:
    send: trio.MemorySendChannel[str]
    skipped: int = 0


@dataclass
class Broadcaster:
    queue_size: int = QUEUE_SIZE
    viewers: set[Viewer] = field(default_factory=set)
    tweets: int = 0
    drops: int = 0

    def publish(self, frame: str) -> None:
        self.tweets += 1
        for viewer in self.viewers:
            try:
                viewer.send.send_nowait(frame)
            except trio.WouldBlock:
                viewer.skipped += 1
                self.drops += 1

    async def serve_viewer(self, request: WebSocketRequest) -> None:
        ws = await request.accept()
        send, receive = trio.open_memory_channel[str](self.queue_size)
        viewer = Viewer(send)
        self.viewers.add(viewer)
        try:
            async with receive:
                async for frame in receive:
                    await ws.send_message(frame)
                    if viewer.skipped:
                        count, viewer.skipped = viewer.skipped, 0
                        await ws.send_message(frames.skipped(count))
        except ConnectionClosed:
            pass
        finally:
            self.viewers.discard(viewer)
            send.close()

    async def follow(self, upstream: str) -> None:
        """Read the sample stream forever, reconnecting when it ends."""
        async with httpx.AsyncClient(timeout=httpx.Timeout(10.0, read=None)) as http:
            while True:
                try:
                    url = upstream.rstrip("/") + "/statuses/sample.json"
                    async with http.stream("GET", url) as response:
                        response.raise_for_status()
                        async for line in response.aiter_lines():
                            if not line.strip():
                                continue
                            status = orjson.loads(line)
                            if not isinstance(status, dict) or "id_str" not in status:
                                continue
                            event = tweet_event(status, source="emulator")
                            if event is not None:
                                self.publish(event.frame)
                except (httpx.HTTPError, orjson.JSONDecodeError) as error:
                    LOGGER.warning("upstream: %s; reconnecting", error)
                await trio.sleep(RECONNECT_SECONDS)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="the emulator's base URL, …/1.1")
    parser.add_argument("--queue-size", type=int, default=QUEUE_SIZE)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    broadcaster = Broadcaster(args.queue_size)

    async def run() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(broadcaster.follow, args.upstream)
            await nursery.start(
                lambda task_status: serve_websocket(
                    broadcaster.serve_viewer,
                    args.host,
                    args.port,
                    None,
                    handler_nursery=nursery,
                    task_status=task_status,
                )
            )
            print(f"baseline serving on ws://{args.host}:{args.port}/", flush=True)
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for _ in signals:
                    break
            nursery.cancel_scope.cancel()

    trio.run(run)


if __name__ == "__main__":
    main()
