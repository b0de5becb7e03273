"""Polling, for home directories on NFS: inotify never sees another client's write there.

ONE thread polls every watched directory each ``poll_interval`` seconds and compares what it
sees with the last snapshot (name -> inode, kind, and for a file watched for contents its size,
mtime and ctime); the differences become the same :class:`Change` kinds inotify gives:

- a new name -> APPEARED (then WRITTEN for a file, when watched for contents); a name gone ->
  REMOVED; a name that is a new inode (Docker's rename over config.json) -> APPEARED (+ WRITTEN);
  an entry that turned from file to directory or back -> REMOVED + APPEARED;
- a file with the same inode whose size/mtime/ctime changed -> WRITTEN;
- the directory gone, no longer a directory, or another inode (replaced) -> DIR_GONE once.

Cheap when nothing changes: one ``stat`` of each directory, plus one ``lstat`` of each file in
a directory watched for contents; the directory is listed again only when its own mtime/ctime
moved. Timestamps are coarse (jiffies locally, the server's clock on NFS), so a second write in
the same tick as the poll that saw the first would look unchanged: a file seen changed less
than :data:`RACY_SECONDS` before the poll is reported WRITTEN once more at the next poll (the
daemon's digest makes that a no-op), and such a directory is listed again.

Watching a directory again with another ``contents`` takes a new snapshot: changes it had not
reported yet are dropped (the daemon looks at every config of a directory whose role changed).
``wants`` is asked in :meth:`PollingWatcher.read`, on the caller's thread.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import threading
import time
from dataclasses import dataclass, field
from typing import NamedTuple

from regauthd.service.watcher.change import Change, ChangeKind, Wants
from regauthd.service.watcher.wakeup import WakeupQueue

RACY_SECONDS = 1.0
"""How close to a poll a change must be for the next poll to report the file again."""
_RACY_NS = int(RACY_SECONDS * 1e9)
_GONE_ERRNOS = frozenset({errno.ENOENT, errno.ENOTDIR, errno.ESTALE})


class _Seen(NamedTuple):
    ino: int
    is_dir: bool
    size: int = 0
    mtime_ns: int = 0
    ctime_ns: int = 0


@dataclass(frozen=True, slots=True)
class _Snapshot:
    inode: tuple[int, int]
    stamp: tuple[int, int]
    """The directory's own mtime and ctime: an entry added or removed moves them."""
    entries: dict[str, _Seen]
    relist: bool = False
    """The listing was taken in the tick of the directory's last change: list again."""
    racy: frozenset[str] = frozenset()
    """Files seen changed in the tick of the poll: report them once more."""


@dataclass(slots=True, eq=False)
class _Polled:
    directory: str
    contents: bool
    snapshot: _Snapshot
    version: int = 0


_Raw = tuple[_Polled, ChangeKind, str, bool]


@dataclass(slots=True)
class _Result:
    snapshot: _Snapshot
    changes: list[tuple[ChangeKind, str, bool]] = field(default_factory=list)


class PollingWatcher:
    """The :class:`~regauthd.service.watcher.protocol.Watcher` that polls: see the module."""

    backend = "polling"

    def __init__(self, wants: Wants | None = None, *, poll_interval: float = 2.0) -> None:
        self._wants = wants
        self._interval = poll_interval
        self._lock = threading.Lock()
        self._dirs: dict[str, _Polled] = {}
        self._gone: dict[str, _Polled] = {}
        self._queue: WakeupQueue[_Raw] = WakeupQueue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="regauthd-watch-poll", daemon=True)
        self._thread.start()

    def fileno(self) -> int:
        return self._queue.fileno()

    def watch(self, directory: str, *, contents: bool) -> None:
        snapshot = _baseline(directory, contents)
        with self._lock:
            self._gone.pop(directory, None)
            polled = self._dirs.get(directory)
            if polled is None:
                self._dirs[directory] = _Polled(directory, contents, snapshot)
            elif polled.contents != contents or polled.snapshot.inode != snapshot.inode:
                polled.contents = contents
                polled.snapshot = snapshot
                polled.version += 1  # a poll under way compared with the old snapshot

    def unwatch(self, directory: str) -> None:
        with self._lock:
            self._dirs.pop(directory, None)
            self._gone.pop(directory, None)

    def read(self) -> list[Change]:
        changes: list[Change] = []
        wants = self._wants
        for polled, kind, name, is_dir in self._queue.take():
            directory = polled.directory
            if kind is ChangeKind.DIR_GONE:
                with self._lock:
                    if self._gone.get(directory) is not polled:
                        continue  # unwatched or watched again since
                    del self._gone[directory]
            elif self._dirs.get(directory) is not polled:
                continue  # unwatched or watched again: stale
            elif not is_dir and wants is not None and not wants(directory, name):
                continue
            changes.append(Change(kind, directory, name, is_dir))
        return changes

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        with self._lock:
            self._dirs.clear()
            self._gone.clear()
        self._queue.close()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            with self._lock:
                watched = list(self._dirs.values())
            for polled in watched:
                if self._stop.is_set():
                    return
                self._poll(polled)

    def _poll(self, polled: _Polled) -> None:
        version, contents, snapshot = polled.version, polled.contents, polled.snapshot
        result = _compare(polled.directory, contents, snapshot)
        if result is not None and result.snapshot is snapshot:
            return
        with self._lock:
            if polled.version != version or self._dirs.get(polled.directory) is not polled:
                return  # watched again or dropped while we looked
            if result is None:
                del self._dirs[polled.directory]
                self._gone[polled.directory] = polled
                raw: list[_Raw] = [(polled, ChangeKind.DIR_GONE, "", True)]
            else:
                polled.snapshot = result.snapshot
                raw = [(polled, kind, name, is_dir) for kind, name, is_dir in result.changes]
        self._queue.put(raw)


def _baseline(directory: str, contents: bool) -> _Snapshot:
    st = os.stat(directory, follow_symlinks=False)
    if not stat.S_ISDIR(st.st_mode):
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), directory)
    now = time.time_ns()
    return _Snapshot(
        inode=(st.st_dev, st.st_ino),
        stamp=(st.st_mtime_ns, st.st_ctime_ns),
        entries=_list(directory, contents),
        relist=st.st_mtime_ns >= now - _RACY_NS,
    )


def _compare(directory: str, contents: bool, old: _Snapshot) -> _Result | None:
    """What changed since ``old``: None when the directory is gone; a result holding ``old``
    itself when nothing changed."""
    now = time.time_ns()
    try:
        st = os.stat(directory, follow_symlinks=False)
        if not stat.S_ISDIR(st.st_mode) or (st.st_dev, st.st_ino) != old.inode:
            return None
        stamp = (st.st_mtime_ns, st.st_ctime_ns)
        relisted = stamp != old.stamp or old.relist
        if relisted:
            entries = _list(directory, contents)
        elif contents:
            entries = _restat(directory, old.entries)
        else:
            entries = old.entries
    except OSError as exc:
        if exc.errno in _GONE_ERRNOS:
            return None
        return _Result(old)  # unreadable for now (permissions, a server hiccup): next time
    if entries is old.entries and not relisted and not old.racy:
        return _Result(old)  # the usual poll: nothing moved
    changes, changed = _differences(old, entries, contents)
    racy = frozenset(n for n in changed if entries[n].mtime_ns >= now - _RACY_NS)
    relist = relisted and stamp[0] >= now - _RACY_NS
    new = _Snapshot(old.inode, stamp, entries, relist, racy)
    return _Result(old) if not changes and new == old else _Result(new, changes)


def _differences(
    old: _Snapshot, entries: dict[str, _Seen], contents: bool
) -> tuple[list[tuple[ChangeKind, str, bool]], list[str]]:
    """The changes from ``old`` to ``entries``, and the files whose content changed."""
    changes: list[tuple[ChangeKind, str, bool]] = []
    changed: list[str] = []
    for name, seen in entries.items():
        before = old.entries.get(name)
        if before == seen:
            if name in old.racy:
                changes.append((ChangeKind.WRITTEN, name, False))
            continue
        if before is not None and before.is_dir != seen.is_dir:
            changes.append((ChangeKind.REMOVED, name, before.is_dir))
        if before is None or before.ino != seen.ino or before.is_dir != seen.is_dir:
            changes.append((ChangeKind.APPEARED, name, seen.is_dir))
        if contents and not seen.is_dir:
            changes.append((ChangeKind.WRITTEN, name, False))
            changed.append(name)
    changes.extend(
        (ChangeKind.REMOVED, name, before.is_dir)
        for name, before in old.entries.items()
        if name not in entries
    )
    return changes, changed


def _list(directory: str, contents: bool) -> dict[str, _Seen]:
    entries: dict[str, _Seen] = {}
    with os.scandir(directory) as listing:
        for entry in listing:
            with contextlib.suppress(FileNotFoundError):  # removed while we listed
                is_dir = entry.is_dir(follow_symlinks=False)
                if contents and not is_dir:
                    entries[entry.name] = _seen_file(entry.stat(follow_symlinks=False))
                else:
                    entries[entry.name] = _Seen(entry.inode(), is_dir)
    return entries


def _restat(directory: str, entries: dict[str, _Seen]) -> dict[str, _Seen]:
    """``entries`` with each file stat'ed again; the same dict when none changed."""
    fresh: dict[str, _Seen] | None = None
    for name, seen in entries.items():
        if seen.is_dir:
            continue
        try:
            now = _seen_file(os.lstat(os.path.join(directory, name)))
        except FileNotFoundError:
            now = None
        if now != seen:
            if fresh is None:
                fresh = dict(entries)
            if now is None:
                del fresh[name]
            else:
                fresh[name] = now
    return entries if fresh is None else fresh


def _seen_file(st: os.stat_result) -> _Seen:
    return _Seen(st.st_ino, False, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
