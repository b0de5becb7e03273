"""The background thread the probes run in: one asyncio loop running one main coroutine.

:class:`ProbeThread` starts the loop in a daemon thread, lets other threads schedule callbacks
on it, and stops it by cancelling the main coroutine (in-flight probes with it), waiting at most
a given time. :class:`regauthd.probe.scheduler.ProbeScheduler` is its only user.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Coroutine
from typing import Any

import structlog

log = structlog.get_logger("regauthd.probewatch")

Main = Callable[[], Coroutine[Any, Any, None]]


class ProbeThread:
    """One asyncio loop in one background thread (thread-safe API)."""

    def __init__(self, name: str = "regauthd-probes") -> None:
        self._name = name
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._stop_requested = False
        self._lock = threading.Lock()
        self._next: Main | None = None
        """Started while a stopped thread was still ending: run when it has ended."""

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def started(self) -> bool:
        """Started and not (yet) known to have ended: a thread that outlived :meth:`stop`'s
        timeout still counts, so no second one is started beside it."""
        return self._thread is not None

    def start(self, main: Main) -> None:
        """Run ``main()`` on a new loop in a new thread (no-op while one runs). After a
        :meth:`stop` that timed out, the thread still ending is not joined by a second one:
        ``main`` starts when it has ended (a reload's new settings are not lost)."""
        with self._lock:
            if self._thread is not None:
                if self._stop_requested:
                    self._next = main
                return
            self._start(main)

    def _start(self, main: Main) -> None:
        self._stop_requested = False
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(
            target=self._thread_main, args=(loop, main), name=self._name, daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float) -> bool:
        """Cancel the main coroutine and end the thread; True when it ended within ``timeout``.
        A start waiting for a slow thread to end is dropped."""
        with self._lock:
            self._next = None
            thread, loop = self._thread, self._loop
            if thread is None or loop is None:
                return True
            self._stop_requested = True
        # RuntimeError: the loop already closed, the thread is on its way out.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._cancel)
        thread.join(timeout)
        if thread.is_alive():
            log.warning("probe.stop_slow", timeout_s=timeout)
            return False
        with self._lock:
            self._forget(thread)
        return True

    def _forget(self, thread: threading.Thread) -> None:
        """``thread`` has ended (lock held): start what waited for it."""
        if self._thread is not thread:
            return
        self._thread = None
        self._loop = None
        main, self._next = self._next, None
        if main is not None:
            self._start(main)

    def call_soon(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` on the thread's loop soon (from any thread; no-op when stopped)."""
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):  # closed: stopping
            loop.call_soon_threadsafe(callback)

    def _cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def _thread_main(self, loop: asyncio.AbstractEventLoop, main: Main) -> None:
        asyncio.set_event_loop(loop)
        try:
            if self._stop_requested:
                return
            self._task = loop.create_task(main())
            with contextlib.suppress(asyncio.CancelledError):
                loop.run_until_complete(self._task)
        except Exception:
            log.exception("probe.scheduler_crashed")
        finally:
            self._task = None
            # Worker threads (a credential helper) are not waited for: their subprocess has
            # its own timeout, and stop() must return at once.
            loop.close()
            with self._lock:
                if self._stop_requested:
                    self._forget(threading.current_thread())


__all__ = ["ProbeThread"]
