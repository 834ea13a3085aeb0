"""The seed's stack, written here from its description: the asyncio original pats-trio replaced.

The seed (PATS, "Python asyncio Twitter Search") was a Starlette app under uvicorn: one Twitter
client reads the sample stream and puts every tweet on an asyncio queue per subscriber, and each
viewer's WebSocket endpoint waits on its queue and relays every tweet with `send_json`, one
message per tweet per viewer, encoded again for each. Here it runs with uvicorn's fastest
options (uvloop, httptools, the `websockets` implementation) and uvicorn's defaults otherwise,
so a viewer that offers permessage-deflate gets it, with context takeover, compressed per viewer.

Kept from pats-trio so that the two carry the same bytes: each tweet is trimmed once with
`pats_trio.tweets.trim` into the same `{"type":"tweet","tweet":...}` object (the seed sent its
own trimmed dict). One change the seed did not have: each queue holds at most 256 tweets, as
pats-trio's and the baseline's do, and a full queue drops the tweet and tells the viewer with a
`skipped` frame, so that an overloaded run stays bounded in memory and comparable.

    python benchmarks/seed_server.py --port P --upstream http://127.0.0.1:E/1.1
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from pats_trio.tweets import TweetShapeError, trim

LOGGER = logging.getLogger("seed")
QUEUE_SIZE = 256
RECONNECT_SECONDS = 0.5


@dataclass(eq=False)
class Subscriber:
    queue: asyncio.Queue[dict[str, Any]]
    skipped: int = 0


@dataclass
class TwitterClient:
    """The one upstream reader: every tweet goes to every subscriber's queue."""

    upstream: str
    subscribers: set[Subscriber] = field(default_factory=set)

    def subscribe(self) -> Subscriber:
        subscriber = Subscriber(asyncio.Queue(QUEUE_SIZE))
        self.subscribers.add(subscriber)
        return subscriber

    def publish(self, message: dict[str, Any]) -> None:
        for subscriber in self.subscribers:
            try:
                subscriber.queue.put_nowait(message)
            except asyncio.QueueFull:
                subscriber.skipped += 1

    async def follow(self) -> None:
        url = self.upstream.rstrip("/") + "/statuses/sample.json"
        async with httpx.AsyncClient(timeout=httpx.Timeout(10.0, read=None)) as http:
            while True:
                try:
                    async with http.stream("GET", url) as response:
                        response.raise_for_status()
                        async for line in response.aiter_lines():
                            if line.strip():
                                self._line(line)
                except httpx.HTTPError as error:
                    LOGGER.warning("upstream: %s; reconnecting", error)
                await asyncio.sleep(RECONNECT_SECONDS)

    def _line(self, line: str) -> None:
        try:
            status = json.loads(line)
            if isinstance(status, dict) and "id_str" in status:
                self.publish({"type": "tweet", "tweet": trim(status, source="emulator")})
        except (json.JSONDecodeError, TweetShapeError) as error:
            LOGGER.warning("skipping a message: %s", error)


def make_app(upstream: str) -> Starlette:
    client = TwitterClient(upstream)

    async def stream(websocket: WebSocket) -> None:
        await websocket.accept()
        subscriber = client.subscribe()
        try:
            while True:
                message = await subscriber.queue.get()
                await websocket.send_json(message)
                if subscriber.skipped:
                    count, subscriber.skipped = subscriber.skipped, 0
                    await websocket.send_json({"type": "skipped", "count": count})
        except WebSocketDisconnect:
            pass
        finally:
            client.subscribers.discard(subscriber)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        reader = asyncio.create_task(client.follow())
        yield
        reader.cancel()

    return Starlette(routes=[WebSocketRoute("/ws", stream)], lifespan=lifespan)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="the emulator's base URL, …/1.1")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    uvicorn.run(
        make_app(args.upstream),
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        ws="websockets",
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
