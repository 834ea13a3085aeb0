"""Random inbound WebSocket messages: the server answers each with a clear error or obeys it,
never crashes, never harms another viewer, and leaves no task behind."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import orjson
import trio
from hypothesis import given, settings
from hypothesis import strategies as st
from trio_websocket import open_websocket_url

from tests.support import Served, Viewer, status

TIMEOUT = 120
IDS = itertools.count(777_000)
KNOWN_ERRORS = {
    "bad_message",
    "message_too_large",
    "empty_phrase",
    "phrase_too_long",
    "too_many_phrases",
    "filter_too_long",
    "too_many_changes",
}

messages = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=300),
    st.builds(
        lambda track: orjson.dumps({"type": "filter", "track": track}).decode(),
        st.text(max_size=120),
    ),
    st.builds(
        lambda value: orjson.dumps({"type": "filter", "track": value}).decode(),
        # JSON numbers as orjson writes them: 64-bit integers.
        st.one_of(
            st.integers(-(2**63), 2**64 - 1),
            st.none(),
            st.lists(st.text(max_size=5), max_size=3),
        ),
    ),
    st.builds(lambda n: "x" * n, st.integers(5000, 9000)),
)


def task_count() -> int:
    """Tasks of the server under test alive in this run (the emulator, upstream, is not counted)."""
    root = trio.lowlevel.current_root_task()
    assert root is not None
    count, stack = 0, [root]
    while stack:
        task = stack.pop()
        count += not task.name.startswith("pats_trio.emulator")
        for nursery in task.child_nurseries:
            stack.extend(nursery.child_tasks)
    return count


async def answered_harmlessly(served: Served, bystander: Viewer, batch: list[str | bytes]) -> None:
    """Send one batch from a fresh viewer and check what a person would notice."""
    async with open_websocket_url(served.ws_url) as ws:
        viewer = Viewer(ws)
        await viewer.next_of("hello")
        for message in batch:
            await ws.send_message(message)
        # A marker after the batch: every message before it has been answered by then.
        await ws.send_message('{"type":"filter","track":"zzmarker"}')
        while True:
            frame = await viewer.next_frame()
            if frame["type"] == "error":
                assert frame["code"] in KNOWN_ERRORS, frame
                assert frame["message"]
            if frame["type"] == "hello" and frame["track"] == ["zzmarker"]:
                break
    tweet = status("python after the storm", next(IDS))
    await served.emulator.wait_until(lambda emu: len(emu.open_connections("filter")) == 1)
    served.emulator.inject(tweet)
    assert [t["id_str"] for t in await bystander.tweets(1)] == [tweet["id_str"]]
    with trio.move_on_after(2):
        while served.app.worker.hub.viewer_count() > 1:  # noqa: ASYNC110 - the hub has no event for it
            await trio.sleep(0.01)
    assert served.app.worker.hub.viewer_count() == 1, "the fuzzing viewer is gone"


async def settled(served: Served) -> None:
    """Only the bystander's filter connection is open, so restarts are not counted as leaks."""
    await served.emulator.wait_until(
        lambda emu: [c.track for c in emu.open_connections()] == ["python"]
    )


async def test_random_messages_get_clear_answers_and_harm_nobody(
    make_served: Callable[..., Any],
) -> None:
    served: Served = await make_served(filter_changes_per_minute=10_000)
    async with open_websocket_url(served.ws_url + "?filter=python") as ws_bystander:
        bystander = Viewer(ws_bystander)
        await bystander.next_of("hello")

        # Hypothesis drives from a worker thread, so it can shrink a failure, while every
        # example runs in this trio run against the one live server.
        @settings(max_examples=40, deadline=None, database=None)
        @given(batch=st.lists(messages, min_size=1, max_size=4))
        def check(batch: list[str | bytes]) -> None:
            trio.from_thread.run(answered_harmlessly, served, bystander, batch)

        with trio.fail_after(TIMEOUT):
            await settled(served)
            baseline = task_count()
            await trio.to_thread.run_sync(check)
            await settled(served)
            # Forty viewers came and went: a task leaked per viewer would show here.
            with trio.move_on_after(5):
                while task_count() > baseline:  # noqa: ASYNC110 - the task tree has no event
                    await trio.sleep(0.05)
            assert task_count() <= baseline, "no task outlives its viewer"
