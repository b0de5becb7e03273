"""The platform's own watcher through watchdog's public API: FSEvents on macOS, kqueue on BSD,
inotify on Linux (where ``auto`` prefers our own reader: see :mod:`.inotify`).

watchdog's threads (its observer, and per watch an emitter) only append ``(watch, event)`` to a
:class:`~regauthd.service.watcher.wakeup.WakeupQueue`; :meth:`NativeWatcher.read`, on the
caller's thread, asks ``wants`` and builds the :class:`Change` objects. An event from a watch
that was dropped or replaced meanwhile is discarded there.

Mapping (public event classes only; each watch is scheduled non-recursively with an
``event_filter``, so opened/closed_no_write/attrib/DirModified never arrive):

- created -> APPEARED; deleted -> REMOVED; moved -> REMOVED for ``src_path`` and APPEARED for
  ``dest_path`` (then WRITTEN for a file, as :mod:`.inotify` does), each only when its parent is
  the watched directory; DirDeletedEvent of the watched directory itself -> DIR_GONE (the watch
  is then unscheduled and forgotten).
- WRITTEN: ``closed`` (FileClosedEvent, Linux inotify) where the observer reports it. FSEvents
  and kqueue have no close event, so there ``modified`` counts as WRITTEN (a file being written
  can give several, and one before the writer is done: the daemon's digest check absorbs that),
  and a file ``created`` is APPEARED then WRITTEN (FSEvents folds creation and content into one
  event).

Watching a watched directory again always schedules a new watch (see :meth:`NativeWatcher.watch`).

Not reported: OVERFLOW (watchdog handles the kernel's IN_Q_OVERFLOW itself and says nothing
through its public API), and on Linux a watched directory moved away (watchdog does not ask for
IN_MOVE_SELF; its parent's watch still sees REMOVED). watchdog pairs a rename's two halves for
up to 0.5 s, so a rename can arrive that late on Linux.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import sys
from dataclasses import dataclass

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
    FileSystemMovedEvent,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver, ObservedWatch

from regauthd.service.watcher.change import Change, ChangeKind, Wants
from regauthd.service.watcher.inotify import watch_limit
from regauthd.service.watcher.protocol import WatchLimitError
from regauthd.service.watcher.wakeup import WakeupQueue

_ENTRY_EVENTS: list[type[FileSystemEvent]] = [
    FileCreatedEvent,
    DirCreatedEvent,
    FileDeletedEvent,
    DirDeletedEvent,
    FileMovedEvent,
    DirMovedEvent,
]
_STOP_TIMEOUT = 2.0


@dataclass(slots=True, eq=False)
class _Watch:
    directory: str
    contents: bool
    parents: frozenset[str]
    """The directory as given and as resolved: FSEvents reports resolved paths."""
    scheduled: ObservedWatch | None = None


class _Forwarder(FileSystemEventHandler):
    """Runs on watchdog's dispatcher thread: queues the event with the watch it came from."""

    def __init__(self, queue: WakeupQueue[tuple[_Watch, FileSystemEvent]], watch: _Watch) -> None:
        self._queue = queue
        self._watch = watch

    def dispatch(self, event: FileSystemEvent) -> None:
        self._queue.put(((self._watch, event),))


class NativeWatcher:
    """The :class:`~regauthd.service.watcher.protocol.Watcher` over watchdog: see the module."""

    backend = "native"

    def __init__(self, wants: Wants | None = None) -> None:
        self._wants = wants
        self._queue: WakeupQueue[tuple[_Watch, FileSystemEvent]] = WakeupQueue()
        self._watches: dict[str, _Watch] = {}
        self._observer: BaseObserver = Observer()
        self._observer.name = "regauthd-watch-native"
        self._observer.daemon = True
        self._observer.start()
        self._closes_report_writes = _reports_close(self._observer)
        content_event = FileClosedEvent if self._closes_report_writes else FileModifiedEvent
        self._filters = {False: _ENTRY_EVENTS, True: [*_ENTRY_EVENTS, content_event]}

    def fileno(self) -> int:
        return self._queue.fileno()

    def watch(self, directory: str, *, contents: bool) -> None:
        st = os.stat(directory, follow_symlinks=False)
        if not stat.S_ISDIR(st.st_mode):
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), directory)
        # Watching again always starts a new watch: watchdog's emitter ends itself when its
        # directory is deleted, and a directory re-created at once often gets the same inode
        # number, so nothing here could tell the old watch is dead.
        self.unwatch(directory)
        watch = _Watch(directory, contents, frozenset({directory, os.path.realpath(directory)}))
        try:
            watch.scheduled = self._observer.schedule(
                _Forwarder(self._queue, watch),
                directory,
                event_filter=_filter(self._filters[contents]),
            )
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise WatchLimitError(directory, *watch_limit()) from exc
            raise OSError(exc.errno, exc.strerror, directory) from exc
        self._watches[directory] = watch

    def unwatch(self, directory: str) -> None:
        watch = self._watches.pop(directory, None)
        if watch is not None and watch.scheduled is not None:
            with contextlib.suppress(KeyError):  # unscheduled already
                self._observer.unschedule(watch.scheduled)

    def read(self) -> list[Change]:
        changes: list[Change] = []
        for watch, event in self._queue.take():
            if self._watches.get(watch.directory) is watch:
                self._convert(watch, event, changes)
        return changes

    def close(self) -> None:
        self._observer.stop()
        if self._observer.is_alive():
            self._observer.join(timeout=_STOP_TIMEOUT)
        self._watches.clear()
        self._queue.close()

    def _convert(self, watch: _Watch, event: FileSystemEvent, changes: list[Change]) -> None:
        src = os.fsdecode(event.src_path)
        is_dir = event.is_directory
        if isinstance(event, DirDeletedEvent) and src in watch.parents:
            changes.append(Change(ChangeKind.DIR_GONE, watch.directory, "", True))
            self.unwatch(watch.directory)
        elif isinstance(event, FileSystemMovedEvent):
            self._entry(watch, ChangeKind.REMOVED, src, is_dir, changes)
            dest = os.fsdecode(event.dest_path)
            self._entry(watch, ChangeKind.APPEARED, dest, is_dir, changes, content=True)
        elif isinstance(event, FileCreatedEvent | DirCreatedEvent):
            # Without close events a new file's content may come with its creation (FSEvents
            # folds both into one event): report it as written too.
            content = not self._closes_report_writes
            self._entry(watch, ChangeKind.APPEARED, src, is_dir, changes, content=content)
        elif isinstance(event, FileDeletedEvent | DirDeletedEvent):
            self._entry(watch, ChangeKind.REMOVED, src, is_dir, changes)
        elif isinstance(event, FileClosedEvent | FileModifiedEvent) and watch.contents:
            self._entry(watch, ChangeKind.WRITTEN, src, False, changes)

    def _entry(
        self,
        watch: _Watch,
        kind: ChangeKind,
        path: str,
        is_dir: bool,
        changes: list[Change],
        *,
        content: bool = False,
    ) -> None:
        parent, name = os.path.split(path)
        if not name or parent not in watch.parents:
            return  # the other end of a move, outside this directory
        if not is_dir and self._wants is not None and not self._wants(watch.directory, name):
            return
        changes.append(Change(kind, watch.directory, name, is_dir))
        if content and watch.contents and not is_dir:
            changes.append(Change(ChangeKind.WRITTEN, watch.directory, name, False))


def _filter(events: list[type[FileSystemEvent]]) -> list[type[FileSystemEvent]]:
    """``events`` and a marker class of this watch's own, which no event is an instance of.

    watchdog identifies a watch by (path, recursive, event_filter, follow_symlink) and hands
    a queued event to the handlers of the watch EQUAL to the one it came from: without the
    marker, a watch scheduled again for a path would receive what the old one queued (its
    directory's DirDeletedEvent among them).
    """
    marker: type[FileSystemEvent] = type("_ThisWatch", (FileSystemEvent,), {})
    return [*events, marker]


def _reports_close(observer: BaseObserver) -> bool:
    """Does this observer report a file's close after writing (only watchdog's inotify)?"""
    inotify = sys.modules.get("watchdog.observers.inotify")
    observer_class = getattr(inotify, "InotifyObserver", None)
    return observer_class is not None and isinstance(observer, observer_class)
