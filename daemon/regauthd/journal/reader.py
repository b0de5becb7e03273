"""The thread that follows the journal and hands each auth failure to the daemon's loop.

:class:`JournalReader` opens a follower (:mod:`regauthd.journal.follow`: systemd-python,
``journalctl`` or plain log files) in a background thread, sleeps in ``select`` on the journal's
descriptor and a wake-up pipe (idle, it never wakes), and hands every
:class:`~regauthd.journal.recognize.AuthFailure` to the loop with ``post``. A journal that cannot
be opened, or a follower that keeps failing soon after each start, is reported once through
``unavailable`` (on the loop thread); the retries, with a growing pause, are only logged.
:meth:`JournalReader.stop` returns within milliseconds; the follower keeps its cursor in the
state directory, so a restart resumes after the last entry handed out, with no duplicates.
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Final

import structlog

from regauthd.journal.backend import Follower, FollowOptions, JournalError
from regauthd.journal.follow import open_follower
from regauthd.journal.recognize import AuthFailure

log = structlog.get_logger("regauthd.journal")

_RETRY_MIN: Final = 1.0
_RETRY_MAX: Final = 60.0

Post = Callable[[Callable[[], None]], None]
"""Run a callback on the daemon's loop thread (safe from any thread)."""


class JournalReader:
    """Follows the journal in one thread (construct, :meth:`start` and :meth:`stop` on the
    loop thread). ``on_failure`` and ``unavailable(reason)`` run on the loop thread."""

    def __init__(
        self,
        options: FollowOptions,
        state_dir: Path,
        *,
        post: Post,
        on_failure: Callable[[AuthFailure], None],
        unavailable: Callable[[str], None],
    ) -> None:
        self._options = options
        self._state_dir = state_dir
        self._post = post
        self._on_failure = on_failure
        self._unavailable = unavailable
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._wake: tuple[int, int] | None = None
        self._inbox: deque[AuthFailure] = deque()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self._thread is not None:
            return
        self._wake = os.pipe()  # close-on-exec (PEP 446); pipe2 is Linux-only
        for fd in self._wake:
            os.set_blocking(fd, False)
        self._thread = threading.Thread(
            target=self._run, args=(self._wake[0],), name="regauthd-journal", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float) -> None:
        """End the thread (the follower saves its cursor) within ``timeout`` seconds, then hand
        what it read to ``on_failure`` at once."""
        thread = self._thread
        if thread is not None:
            self._stop.set()
            self._wakeup()
            thread.join(timeout)
            if thread.is_alive():
                log.warning("journal.stop_timeout", seconds=timeout)
        if self._wake is not None and (thread is None or not thread.is_alive()):
            for fd in self._wake:
                os.close(fd)
            self._wake = None
        self._drain()

    def _wakeup(self) -> None:
        if self._wake is not None:
            with contextlib.suppress(BlockingIOError, OSError):
                os.write(self._wake[1], b"\0")

    def _drain(self) -> None:
        while self._inbox:
            self._on_failure(self._inbox.popleft())

    def _report_unavailable(self, reason: str) -> None:
        self._post(lambda: self._unavailable(reason))

    # -- the thread ----------------------------------------------------------------------------

    def _run(self, wake: int) -> None:
        retry = _RETRY_MIN
        alerted = False
        short_lived = 0
        while not self._stop.is_set():
            try:
                follower = open_follower(self._options, self._state_dir)
            except (JournalError, OSError) as exc:
                # One alert for people; the retries are only logged.
                if not alerted:
                    self._report_unavailable(str(exc))
                    alerted = True
                log.info("journal.open_failed", reason=str(exc), retry_in=retry)
                _sleep(wake, retry)
                retry = min(retry * 2, _RETRY_MAX)
                continue
            opened = time.monotonic()
            try:
                self._follow(follower, wake)
                return
            except (JournalError, OSError, ValueError) as exc:
                # A journalctl that died, a journal file that vanished mid-read: start over
                # from the saved cursor rather than give up following. Failing again soon
                # after each start (journalctl cannot open the journal) is an outage: alert.
                lasted = time.monotonic() - opened
                short_lived = short_lived + 1 if lasted < _RETRY_MAX else 1
                if short_lived >= 2 and not alerted:
                    self._report_unavailable(str(exc))
                    alerted = True
                log.error("journal.follow_failed", reason=str(exc), retry_in=retry)
            finally:
                try:
                    follower.close()
                except (JournalError, OSError) as exc:
                    log.warning("journal.close_failed", reason=str(exc))
            _sleep(wake, retry)
            retry = min(retry * 2, _RETRY_MAX)

    def _follow(self, follower: Follower, wake: int) -> None:
        while not self._stop.is_set():
            fd = follower.fileno()
            timeout = follower.timeout()
            if timeout is None or timeout > 0:
                fds = [wake] if fd is None else [wake, fd]
                with contextlib.suppress(InterruptedError):
                    select.select(fds, [], [], timeout)
            _drain_pipe(wake)
            if self._stop.is_set():
                return
            failures = follower.process()
            if failures:
                self._inbox.extend(failures)
                self._post(self._drain)


def _sleep(wake: int, seconds: float) -> None:
    with contextlib.suppress(InterruptedError):
        select.select([wake], [], [], seconds)
    _drain_pipe(wake)


def _drain_pipe(fd: int) -> None:
    with contextlib.suppress(BlockingIOError, OSError):
        while os.read(fd, 4096):
            pass


__all__ = ["JournalReader", "Post"]
