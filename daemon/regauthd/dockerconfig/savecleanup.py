"""Finishing saves off the hot path: unlink the displaced file, fsync the directory.

Each job holds its own duplicate of the config directory's descriptor (the save's shared lock
goes with it, see :func:`regauthd.dockerconfig.configdir.lock_for_save`), so the unlink and the
fsync happen in the directory the save used, whatever happens to its path meanwhile.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading

from regauthd.dockerconfig import fsidentity

_COALESCE_S = 0.002


class SaveCleaner:
    """Runs the end of deferred saves on one background thread.

    The daemon hands these to one background thread so that the next event is not queued behind
    them. Jobs arriving within :data:`_COALESCE_S` of each other share one directory fsync per
    directory (a burst of logins costs one journal commit, not one per login, and the cleanup's
    commit does not contend with the next repair's). :meth:`flush` waits for all of them. A
    blocked thread costs no wake-ups when idle.
    """

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[tuple[int, str] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._pending = 0
        self._idle = threading.Condition(self._lock)

    def submit(self, dir_fd: int, tmp: str) -> None:
        """Unlink ``tmp`` in the directory ``dir_fd`` and fsync it; ``dir_fd`` is closed then."""
        with self._lock:
            self._pending += 1
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="regauthd-save-cleanup", daemon=True
                )
                self._thread.start()
        self._queue.put((dir_fd, tmp))

    def _run(self) -> None:
        # Started by the first save that defers, which acts as that config's owner: this thread
        # would keep that identity and fail to unlink in every other user's directory. Root may
        # unlink here: the entry is our temp name, in a directory its owner (who could remove
        # any entry of it) was checked to own, reached by descriptor.
        fsidentity.reset_thread()
        while True:
            job = self._queue.get()
            if job is None:
                return
            batch = [job]
            with contextlib.suppress(queue.Empty):
                while len(batch) < 64:
                    more = self._queue.get(timeout=_COALESCE_S)
                    if more is None:
                        self._queue.put(None)
                        break
                    batch.append(more)
            try:
                synced: set[tuple[int, int]] = set()
                for dir_fd, tmp in batch:
                    with contextlib.suppress(OSError):
                        finish(dir_fd, tmp, synced)
            finally:
                for dir_fd, _ in batch:
                    os.close(dir_fd)
                with self._lock:
                    self._pending -= len(batch)
                    self._idle.notify_all()

    def flush(self, timeout: float | None = None) -> bool:
        with self._lock:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)


def finish(dir_fd: int, tmp: str, synced: set[tuple[int, int]] | None = None) -> None:
    """Unlink the displaced file ``tmp`` and fsync the directory (once per directory in
    ``synced``)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp, dir_fd=dir_fd)
    if synced is not None:
        st = os.fstat(dir_fd)
        if (st.st_dev, st.st_ino) in synced:
            return
        synced.add((st.st_dev, st.st_ino))
    os.fsync(dir_fd)
