"""A viewer's queue: bounded, in order, one waiting taker woken by an item or the close."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from pats_trio.viewer_queue import ViewerQueue

TIMEOUT = 5


async def test_items_come_out_in_order_and_a_full_queue_refuses_without_waiting() -> None:
    with trio.fail_after(TIMEOUT):
        queue = ViewerQueue[int](3)
        for item in (1, 2, 3):
            queue.send_nowait(item)
        with pytest.raises(trio.WouldBlock):
            queue.send_nowait(4)
        assert len(queue) == 3
        assert await queue.receive() == 1
        queue.send_nowait(4)
        assert queue.drain() == [2, 3, 4]
        assert queue.drain() == []
        with pytest.raises(trio.WouldBlock):
            queue.receive_nowait()


async def test_a_waiting_taker_is_woken_by_the_first_item_and_then_by_the_close() -> None:
    with trio.fail_after(TIMEOUT):
        queue = ViewerQueue[str](4)
        got: list[str] = []
        ended = trio.Event()

        async def take() -> None:
            while True:
                try:
                    got.append(await queue.receive())
                except trio.EndOfChannel:
                    ended.set()
                    return

        async with trio.open_nursery() as nursery:
            nursery.start_soon(take)
            await trio.testing.wait_all_tasks_blocked()
            queue.send_nowait("a")
            await trio.testing.wait_all_tasks_blocked()
            assert got == ["a"]
            queue.send_nowait("b")
            queue.send_nowait("c")
            queue.close()
            await ended.wait()
        assert got == ["a", "b", "c"], "what was queued before the close is still taken"


async def test_a_closed_queue_takes_nothing_more() -> None:
    with trio.fail_after(TIMEOUT):
        queue = ViewerQueue[int](2)
        queue.send_nowait(1)
        queue.close()
        with pytest.raises(trio.ClosedResourceError):
            queue.send_nowait(2)
        assert queue.receive_nowait() == 1
        with pytest.raises(trio.EndOfChannel):
            await queue.receive()


async def test_a_cancelled_wait_leaves_the_queue_usable_and_a_second_waiter_is_refused() -> None:
    with trio.fail_after(TIMEOUT):
        queue = ViewerQueue[int](2)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(queue.receive)
            await trio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
        queue.send_nowait(7)  # nobody is woken: the cancelled taker left
        assert queue.receive_nowait() == 7

        async with trio.open_nursery() as nursery:
            nursery.start_soon(queue.receive)
            await trio.testing.wait_all_tasks_blocked()
            with pytest.raises(trio.BusyResourceError):
                await queue.receive()
            nursery.cancel_scope.cancel()


def test_a_queue_holds_at_least_one_item() -> None:
    with pytest.raises(ValueError, match="at least one"):
        ViewerQueue[int](0)
