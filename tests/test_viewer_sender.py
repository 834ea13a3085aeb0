"""A viewer's sender alone, without sockets: what reaches the ASGI `send` for what was queued."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

import orjson
import trio

from pats_trio import frames
from pats_trio.events import TweetEvent
from pats_trio.hub import Outgoing, Subscription
from pats_trio.prepared_frames import SEND_PREPARED
from pats_trio.viewer import _PreparedSocket, _send_frames, _Socket

TIMEOUT = 10


def tweet(id_: int, text: str = "ünïcode ✓") -> TweetEvent:
    return TweetEvent(str(id_), frames.tweet({"id_str": str(id_), "text": text}), frozenset())


class Wire:
    """The ASGI send callable of one socket, keeping every message it was handed."""

    def __init__(self) -> None:
        self.sent: list[MutableMapping[str, Any]] = []

    async def __call__(self, message: MutableMapping[str, Any]) -> None:
        self.sent.append(message)

    def decoded(self) -> list[dict[str, Any]]:
        return [orjson.loads(m["text"] if m["text"] is not None else m["bytes"]) for m in self.sent]


def subscription() -> tuple[Subscription, trio.MemorySendChannel[Outgoing]]:
    send, receive = trio.open_memory_channel[Outgoing](64)
    return Subscription("sample", (), receive, send), send


async def test_one_tweet_at_a_time_goes_out_as_its_own_frame_encoded_once() -> None:
    with trio.fail_after(TIMEOUT):
        sub, queue = subscription()
        wire = Wire()
        one = tweet(1)
        queue.send_nowait(one)
        queue.close()
        await _send_frames(sub, _Socket(wire, binary=False))
        assert wire.sent == [{"type": "websocket.send", "text": one.frame, "bytes": None}]
        assert wire.sent[0]["text"] is one.frame, "the shared frame, not a copy"


async def test_a_backlog_goes_out_as_few_frames_as_possible_and_in_order() -> None:
    with trio.fail_after(TIMEOUT):
        sub, queue = subscription()
        wire = Wire()
        for item in (tweet(1), tweet(2), frames.delete("1"), tweet(3), tweet(4), tweet(5)):
            queue.send_nowait(item)
        sub.skipped = 7
        queue.close()
        await _send_frames(sub, _Socket(wire, binary=True))
        got = wire.decoded()
        assert [frame["type"] for frame in got] == ["tweets", "delete", "tweets", "skipped"]
        assert [t["id_str"] for t in got[0]["tweets"]] == ["1", "2"]
        assert [t["id_str"] for t in got[2]["tweets"]] == ["3", "4", "5"]
        assert got[0]["tweets"][0]["text"] == "ünïcode ✓"
        assert got[3]["count"] == 7
        assert all(m["text"] is None and isinstance(m["bytes"], bytes) for m in wire.sent)


async def test_an_evicted_viewer_is_sent_nothing_more() -> None:
    with trio.fail_after(TIMEOUT):
        sub, queue = subscription()
        wire = Wire()
        queue.send_nowait(tweet(1))
        sub.evicted = True
        await _send_frames(sub, _Socket(wire, binary=False))
        assert wire.sent == []


async def test_a_backlog_on_a_prepared_socket_goes_out_as_one_write_of_shared_frames() -> None:
    """Under hypercorn_ws: the whole queue, 200 deep, in one message, each tweet as the frame
    every viewer shares, in order, with the notices between them."""
    with trio.fail_after(TIMEOUT):
        send, receive = trio.open_memory_channel[Outgoing](256)
        sub = Subscription("sample", (), receive, send)
        wire = Wire()
        backlog: list[Outgoing] = [tweet(n) for n in range(100)]
        backlog += [frames.delete("3"), *(tweet(n) for n in range(100, 199))]
        for item in backlog:
            send.send_nowait(item)
        send.close()
        await _send_frames(sub, _PreparedSocket(wire, binary=True))
        [message] = wire.sent
        assert message["type"] == SEND_PREPARED
        assert message["binary"] is True
        assert len(message["frames"]) == len(backlog)
        for item, frame in zip(backlog, message["frames"], strict=True):
            if isinstance(item, TweetEvent):
                assert frame is item.prepared
            else:
                assert frame.payload == item.encode()
                assert not frame.shared
