"""The directory watches in place, kept matching the daemon's :class:`WatchPlan`."""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Callable
from dataclasses import dataclass

import structlog
from watchdog.events import FileSystemEventHandler
from watchdog.observers.api import ObservedWatch

from regauthd.service.legacy_inotify import ImmediateInotifyObserver, event_filter_for
from regauthd.service.loop import Loop
from regauthd.service.watchplan import WatchPlan

log = structlog.get_logger("regauthd")


@dataclass(slots=True)
class _Watched:
    watch: ObservedWatch
    inode: tuple[int, int]
    holds_configs: bool


class WatchSet:
    """One watch per planned directory; every watch's events go to ``handler``.

    Its inotify descriptor is read by the daemon's loop (:meth:`start`), so an event reaches the
    handler on the loop thread. Loop thread only.
    """

    def __init__(self, handler: FileSystemEventHandler) -> None:
        self._handler = handler
        self._observer: ImmediateInotifyObserver | None = None
        self._watched: dict[str, _Watched] = {}
        self._dead: set[str] = set()

    def __len__(self) -> int:
        return len(self._watched)

    def start(self, loop: Loop) -> None:
        """Open the watcher and have ``loop`` read it; until then :meth:`reconcile` watches
        nothing."""
        self._observer = ImmediateInotifyObserver(self._handler)
        self._observer.start()
        loop.add_reader(self._observer.fileno(), self._observer.read_ready)

    def stop(self, loop: Loop) -> None:
        if self._observer is not None:
            loop.remove_reader(self._observer.fileno())
            self._observer.stop()
            self._observer.join(timeout=0.5)

    def died(self, directory: str) -> None:
        """The watch of ``directory`` is gone (the directory was deleted): replace it at the next
        :meth:`reconcile`."""
        # Inode numbers are reused at once (rmdir; mkdir): only this says the watch died.
        self._dead.add(directory)

    def reconcile(self, plan: WatchPlan, look_at: Callable[[str], None]) -> bool:
        """Make the scheduled watches match ``plan``; False when the file system moved under us
        (plan again). ``look_at(config)`` for each config in a directory watched anew."""
        observer = self._observer
        if observer is None:
            return True
        for directory in list(self._watched):
            current = self._watched[directory]
            if (
                directory not in plan.dirs
                or directory in self._dead
                or _inode(directory) != current.inode
                or bool(plan.dirs[directory].files) != current.holds_configs
            ):
                with contextlib.suppress(KeyError):
                    observer.unschedule(current.watch)
                del self._watched[directory]
                log.debug("watch.removed", directory=directory)
        self._dead.clear()
        stable = True
        for directory, role in plan.dirs.items():
            if directory in self._watched:
                continue
            inode = _inode(directory)
            try:
                watch = observer.schedule(
                    self._handler, directory, event_filter=event_filter_for(role)
                )
            except OSError as exc:
                if exc.errno in (errno.ENOENT, errno.ENOTDIR):
                    stable = False
                    continue
                log.warning("watch.failed", directory=directory, reason=exc.strerror)
                continue
            if inode is None or _inode(directory) != inode:
                stable = False
            if inode is None:
                observer.unschedule(watch)  # gone already: plan again
                continue
            self._watched[directory] = _Watched(watch, inode, bool(role.files))
            log.debug("watch.added", directory=directory)
            # Anything written before the watch existed is looked at once now.
            for configs in role.files.values():
                for config in configs:
                    look_at(config)
        return stable


def _inode(directory: str) -> tuple[int, int] | None:
    try:
        st = os.stat(directory)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)
