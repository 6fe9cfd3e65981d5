"""A bounded FIFO between the connection's reader and one subscription's consumer.

Bounded in events: when it is full, :meth:`Buffer.put` waits, the reader stops reading the
socket, TCP fills up, and the gateway eventually closes the connection with 4008 (slow
consumer); the client then resumes from the last offset it queued. Nothing is ever dropped.
Markers (a reset notice) do not count against the bound and never block. Closing the buffer
lets the consumer drain what is queued, then ends it (or raises the error it was closed with).
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class Buffer(Generic[T]):
    __slots__ = ("_count", "_error", "_items", "_readable", "_writable", "closed", "maxsize")

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError("a buffer holds at least one event")
        self.maxsize = maxsize
        self._items: deque[tuple[bool, T]] = deque()  # (counted, item)
        self._count = 0
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()
        self._error: BaseException | None = None
        self.closed = False

    def __len__(self) -> int:
        """Events queued (markers excluded)."""
        return self._count

    def offer(self, item: T) -> bool:
        """Queue ``item`` if there is room; False (nothing queued) when full."""
        if self._count >= self.maxsize and not self.closed:
            return False
        self._items.append((True, item))
        self._count += 1
        self._readable.set()
        return True

    async def put(self, item: T) -> None:
        """Queue ``item``, waiting for room (a closed buffer takes it at once)."""
        while not self.offer(item):
            self._writable.clear()
            await self._writable.wait()

    def mark(self, item: T) -> None:
        """Queue a marker: it never blocks and does not count against the bound."""
        self._items.append((False, item))
        self._readable.set()

    @property
    def error(self) -> BaseException | None:
        """The error the buffer was closed with (raised by :meth:`get` once drained)."""
        return self._error

    async def get(self) -> T:
        """The next item; StopAsyncIteration (or the close error) once closed and drained."""
        items = self._items
        while not items:
            if self.closed:
                if self._error is not None:
                    raise self._error
                raise StopAsyncIteration
            self._readable.clear()
            await self._readable.wait()
        counted, item = items.popleft()
        if counted:
            self._count -= 1
            if self._count < self.maxsize:
                self._writable.set()
        return item

    def drain(self, limit: int) -> list[T]:
        """Up to ``limit`` items queued now, in order, without waiting (possibly none)."""
        items = self._items
        taken: list[T] = []
        while items and len(taken) < limit:
            counted, item = items.popleft()
            self._count -= counted
            taken.append(item)
        if taken and self._count < self.maxsize:
            self._writable.set()
        return taken

    def close(self, error: BaseException | None = None) -> None:
        if not self.closed:
            self.closed = True
            self._error = error
        self._readable.set()
        self._writable.set()
