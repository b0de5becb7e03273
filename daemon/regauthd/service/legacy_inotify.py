"""The inotify watcher the daemon uses today: watchdog's inotify emitter, minus the half-second
move pairing and three thread hops.

It overrides private watchdog names (the move grouper, the emitter's watch group, ``InotifyFD``'s
descriptor), so it is tied to the watchdog versions it was written for; it is kept here, apart,
until a watcher on public APIs replaces it. :data:`EVENT_FILTER`, :data:`STRUCTURE_FILTER` and
:func:`event_filter_for` say which watchdog events a watched directory needs.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers.api import BaseObserver
from watchdog.observers.inotify import InotifyFullEmitter, InotifyWatchGroup
from watchdog.observers.inotify_c import InotifyFD
from watchdog.observers.inotify_move_event_grouper import (
    InotifyMoveEventGrouper,
    PathedInotifyEvent,
)

from regauthd.service.watchplan import DirWatch


class _DirectGrouper(InotifyMoveEventGrouper):
    """Hands every event on at once, on the inotify reader thread.

    watchdog's grouper holds each IN_MOVED_FROM for 0.5 s waiting for its IN_MOVED_TO, and its
    reader sleeps the whole delay even when the pair came together: a rename (every ``docker
    login``) then reaches the handler 0.5 s late whenever the emitter thread saw the
    IN_MOVED_FROM first. We need only destinations, so nothing is paired or held: an
    IN_MOVED_TO arrives as a move with no source. Skipping the queue also skips two thread
    hops (emitter, dispatcher) that each cost a GIL hand-over while the loop is rewriting.
    """

    def __init__(self, sink: Callable[[PathedInotifyEvent], None]) -> None:
        super().__init__()
        self._sink = sink

    def put_event(self, event: PathedInotifyEvent) -> None:
        self._sink(event)


@dataclass
class _DirectWatchGroup(InotifyWatchGroup):
    sink: Callable[[PathedInotifyEvent], None] | None = None

    def __post_init__(self) -> None:
        if self.sink is not None:
            self._move_event_grouper = _DirectGrouper(self.sink)
        super().__post_init__()


class _DirectEmitter(InotifyFullEmitter):
    """Builds watchdog events on the reader thread and gives them straight to the handler.

    Its own thread only waits on the (always empty) grouper queue until it is stopped.
    """

    def __init__(self, *args: Any, handler: FileSystemEventHandler, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._handler = handler

    def on_thread_start(self) -> None:
        self._inotify = _DirectWatchGroup(
            self._inotify_fd,
            os.fsencode(self.watch.path),
            is_recursive=self.watch.is_recursive,
            event_mask=self.get_event_mask_from_filter(),
            follow_symlink=self.watch.follow_symlink,
            sink=self._deliver,
        )

    def _deliver(self, event: PathedInotifyEvent) -> None:
        wants = getattr(self._handler, "wants", None)
        if not event.ev.is_directory and wants is not None and not wants(event.path):
            # Temp files (Docker's, ours) and unrelated files: ~10 of every 11 events of a
            # `docker login` plus our repair. Dropped before watchdog builds an event object.
            return
        if event.ev.is_delete_self:
            # watchdog would stop this emitter here, under the watch group's lock that the
            # reader thread holds now (a deadlock); the loop unschedules the watch instead.
            self._handler.dispatch(DirDeletedEvent(self.watch.path))
            return
        self.build_and_queue_event(event, full_events=True)

    def queue_event(self, event: FileSystemEvent) -> None:
        if self._event_filter is None or isinstance(event, tuple(self._event_filter)):
            self._handler.dispatch(event)


class ImmediateInotifyObserver(BaseObserver):
    """A watchdog inotify observer whose events reach ``handler`` as soon as the kernel reports
    them (see :class:`_DirectGrouper`), on the thread that calls :meth:`read_ready`.

    watchdog's ``InotifyFD`` normally reads in a thread of its own; here it is not started:
    the daemon's loop selects on :meth:`fileno` and reads when it is readable, so an event
    reaches the repair with no thread hand-over at all. ``schedule(handler, path, ...)`` places
    a watch as usual; every watch's events go to the handler given here.
    """

    def __init__(self, handler: FileSystemEventHandler) -> None:
        self._inotify_fd = InotifyFD()
        super().__init__(_DirectEmitter, inotify_fd=self._inotify_fd, handler=handler)

    def fileno(self) -> int:
        return int(self._inotify_fd._inotify_fd)

    def read_ready(self) -> None:
        """Read and dispatch what the kernel has (call only when :meth:`fileno` is readable)."""
        for event in self._inotify_fd.read_events():
            self._inotify_fd.handle_event(event)

    def on_thread_stop(self) -> None:
        super().on_thread_stop()
        self._inotify_fd.close()
        with contextlib.suppress(OSError):
            self._inotify_fd._close_resources()  # no reader thread will do it


# Only what can change a config or the plan: no opened/closed_no_write (our own reads would
# wake us), no modified (a half-written file; its close_write follows).
EVENT_FILTER: list[type[FileSystemEvent]] = [
    FileClosedEvent,
    FileMovedEvent,
    DirMovedEvent,
    FileCreatedEvent,
    DirCreatedEvent,
    FileDeletedEvent,
    DirDeletedEvent,
]
"""Events of a directory that holds a watched config."""

STRUCTURE_FILTER: list[type[FileSystemEvent]] = [
    e for e in EVENT_FILTER if e is not FileClosedEvent
]
"""Events of a directory watched only for a name to appear (a home without .docker yet): no
close_write, so saving any other file there (shell history, editors) wakes nothing."""


def event_filter_for(role: DirWatch) -> list[type[FileSystemEvent]]:
    return EVENT_FILTER if role.files else STRUCTURE_FILTER
