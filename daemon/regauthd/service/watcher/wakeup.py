"""A queue that hands items from a watcher's own thread to the loop that selects on it.

Items wait in a deque; a self-pipe (``os.pipe``, non-blocking at both ends: portable, no
``pipe2``) holds one byte while any wait, so :meth:`WakeupQueue.fileno` is readable exactly
then. One write per batch, not per item.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import deque
from collections.abc import Iterable
from typing import Generic, TypeVar

T = TypeVar("T")


class WakeupQueue(Generic[T]):
    """Producers :meth:`put` from any thread; one consumer selects on :meth:`fileno` and
    :meth:`take`s everything."""

    def __init__(self) -> None:
        self._items: deque[T] = deque()
        self._lock = threading.Lock()
        self._read_fd, self._write_fd = os.pipe()  # close-on-exec (PEP 446)
        os.set_blocking(self._read_fd, False)
        os.set_blocking(self._write_fd, False)
        self._signalled = False
        self._closed = False

    def fileno(self) -> int:
        return self._read_fd

    def put(self, items: Iterable[T]) -> None:
        with self._lock:
            if self._closed:
                return  # a producer finishing after close: its descriptor may be reused
            before = len(self._items)
            self._items.extend(items)
            if len(self._items) > before and not self._signalled:
                self._signalled = True
                with contextlib.suppress(BlockingIOError):  # full: readable already
                    os.write(self._write_fd, b"\0")

    def take(self) -> list[T]:
        with self._lock:
            if self._signalled:
                self._signalled = False
                with contextlib.suppress(BlockingIOError):
                    os.read(self._read_fd, 64)
            items = list(self._items)
            self._items.clear()
        return items

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                os.close(self._read_fd)
                os.close(self._write_fd)
            self._items.clear()
