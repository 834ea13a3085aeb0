"""One viewer's bounded queue: the hub puts without waiting, the viewer's sender takes.

`trio.open_memory_channel` does this job for any number of senders and receivers, and pays for
that on every item: the hub puts each tweet into every viewer's queue, so under load that
bookkeeping (a clone count, a task table, a peak-use statistic) ran more than 100,000 times a
second and took a sixth of py-spy's samples of the server (1,000 viewers at 150 tweets/s).
A viewer has one producer (the hub, which never awaits) and one consumer (its sender task), so
a deque with a bound and one parked task does it. The method names and exceptions are the memory
channel's, so the code around it reads the same.

Error handling: `send_nowait` raises `trio.WouldBlock` when the queue is full and
`trio.ClosedResourceError` once it is closed; `receive` and `receive_nowait` raise
`trio.EndOfChannel` once it is closed and empty, and `trio.BusyResourceError` if a second task
waits while one already does.
"""

from __future__ import annotations

from collections import deque
from typing import Generic, TypeVar

import trio

T = TypeVar("T")


class ViewerQueue(Generic[T]):
    """Holds at most `capacity` items, in order; at most one task waits on it."""

    __slots__ = ("_capacity", "_closed", "_items", "_waiter")

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("a viewer's queue holds at least one item")
        self._capacity = capacity
        self._items: deque[T] = deque()
        self._waiter: trio.lowlevel.Task | None = None
        self._closed = False

    def __len__(self) -> int:
        return len(self._items)

    def send_nowait(self, item: T) -> None:
        """Queue `item`, and wake the waiting task if there is one."""
        if self._closed:
            raise trio.ClosedResourceError
        if len(self._items) >= self._capacity:
            raise trio.WouldBlock
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            trio.lowlevel.reschedule(waiter)

    def close(self) -> None:
        """No more items: the taker gets what is queued, then `trio.EndOfChannel`."""
        self._closed = True
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            trio.lowlevel.reschedule(waiter)

    def receive_nowait(self) -> T:
        if self._items:
            return self._items.popleft()
        if self._closed:
            raise trio.EndOfChannel
        raise trio.WouldBlock

    def drain(self) -> list[T]:
        """Everything queued now, oldest first; empty if nothing is."""
        items = list(self._items)
        self._items.clear()
        return items

    async def receive(self) -> T:
        """The oldest item, waiting for one if none is queued. A checkpoint either way."""
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            item = self.receive_nowait()
        except trio.WouldBlock:
            pass
        else:
            await trio.lowlevel.cancel_shielded_checkpoint()
            return item
        if self._waiter is not None:
            raise trio.BusyResourceError("another task is already waiting on this queue")
        self._waiter = trio.lowlevel.current_task()

        def abort(_: trio.lowlevel.RaiseCancelT) -> trio.lowlevel.Abort:
            self._waiter = None
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)
        return self.receive_nowait()  # woken by an item or the close: never WouldBlock
