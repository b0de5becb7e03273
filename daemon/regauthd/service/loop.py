"""The daemon's single-threaded loop: timers, callbacks posted from other threads, fd readers."""

from __future__ import annotations

import contextlib
import heapq
import itertools
import os
import select
import time
from collections import deque
from collections.abc import Callable


class Timer:
    """A callback scheduled on the loop; :meth:`cancel` it any time before it runs."""

    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Loop:
    """Single-threaded loop: timers and callbacks posted from other threads (and from signal
    handlers). It sleeps in ``select`` with no timeout when no timer is due: an idle daemon
    never wakes up."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        # os.pipe (close-on-exec, PEP 446) made non-blocking: pipe2 is Linux-only.
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)
        self._posted: deque[Callable[[], None]] = deque()
        self._timers: list[tuple[float, int, Timer]] = []
        self._seq = itertools.count()
        self._readers: dict[int, Callable[[], None]] = {}
        self.stopped = False

    def add_reader(self, fd: int, callback: Callable[[], None]) -> None:
        """Call ``callback`` on the loop thread whenever ``fd`` is readable (loop thread only)."""
        self._readers[fd] = callback

    def remove_reader(self, fd: int) -> None:
        self._readers.pop(fd, None)

    def post(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` on the loop thread soon. Safe from any thread and signal handler."""
        self._posted.append(callback)
        with contextlib.suppress(BlockingIOError):
            os.write(self._write, b"\0")

    def call_at(self, when: float, callback: Callable[[], None]) -> Timer:
        """Only from the loop thread (others: post a callback that calls this)."""
        timer = Timer(when, callback)
        heapq.heappush(self._timers, (when, next(self._seq), timer))
        return timer

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        return self.call_at(self.clock() + delay, callback)

    def _timeout(self) -> float | None:
        while self._timers and self._timers[0][2].cancelled:
            heapq.heappop(self._timers)
        if not self._timers:
            return None
        return max(0.0, self._timers[0][0] - self.clock())

    def run_once(self, idle: Callable[[], None]) -> None:
        """Wait for work, run posted callbacks, then ``idle`` (coalesced work), then due timers."""
        ready: list[int] = []
        with contextlib.suppress(InterruptedError):
            ready, _, _ = select.select(
                [self._read, *self._readers], [], [], 0 if self._posted else self._timeout()
            )
        for fd in ready:
            reader = self._readers.get(fd)
            if reader is not None:
                reader()
        with contextlib.suppress(BlockingIOError):
            while os.read(self._read, 4096):
                pass
        while self._posted:
            self._posted.popleft()()
        idle()
        now = self.clock()
        while self._timers and (self._timers[0][0] <= now or self._timers[0][2].cancelled):
            _, _, timer = heapq.heappop(self._timers)
            if not timer.cancelled:
                timer.callback()

    def close(self) -> None:
        os.close(self._read)
        os.close(self._write)
