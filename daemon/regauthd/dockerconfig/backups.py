"""Backups: rotated 0600 copies of configs in the state directory, the way back from any fix.

A backup counts only once it is verified: written whole (short writes continued), fsync'd, read
back byte for byte, then renamed from its ``.partial`` name to ``*.json``. A failed
attempt (no space, read-only filesystem) removes its partial file and raises, and rotation only
ever counts ``*.json`` files that hold something, so a run of failures never rotates the last
good backup out.

The state directory also holds the race memory (:mod:`regauthd.dockerconfig.races`); a
:class:`BackupStore` is the handle :func:`regauthd.dockerconfig.fixer.fix_file` gets for both.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
import time
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from regauthd.dockerconfig import writeback
from regauthd.dockerconfig.file import Snapshot
from regauthd.dockerconfig.races import RaceMemory

BACKUPS_KEPT = 20
"""Backups kept per config file; older ones are removed as new ones are written."""

PARTIAL_SUFFIX = ".partial"
"""A backup being written; renamed to ``.json`` once verified."""
_STALE_PARTIAL_S = 3600.0
"""A partial file this old was left by a crash (a backup takes milliseconds): removed."""


class BackupStore:
    """Rotated 0600 copies of configs, in the state directory (never beside config.json)."""

    def __init__(self, state_dir: Path, *, keep: int = BACKUPS_KEPT) -> None:
        self.root = Path(state_dir) / "backups"
        self.keep = keep
        self.races = RaceMemory(Path(state_dir) / "races")
        self._backed_up: set[Path] = set()

    def folder_for(self, real_path: Path) -> Path:
        return self.root / urllib.parse.quote(str(real_path), safe="")

    def has_backup(self, real_path: Path) -> bool:
        return real_path in self._backed_up

    def save(self, snapshot: Snapshot, *, sync_name: bool = True) -> Path:
        """Write and verify one backup of ``snapshot.data``; its path. Raises :class:`OSError`
        (nothing left behind, no older backup removed) when it cannot be written whole.

        The content is fsync'd here. Its name (the rename from ``.partial``, and a new folder)
        is made durable by a directory fsync: here, or with ``sync_name=False`` by the caller's
        :meth:`sync_names` later, after another fsync it has to make anyway (a fix: its temp
        file's). On ext4 and XFS that fsync commits the rename too, so the directory's own
        fsync then finds nothing left to write: one journal commit less per first repair."""
        folder = self.folder_for(snapshot.real_path)
        new_folder = _make_folder(folder)
        partial, dest = _names(folder)
        try:
            fd = _create(partial)
            try:
                _write_all(fd, snapshot.data)
                os.fsync(fd)
                _verify(fd, snapshot.data, partial)
            finally:
                os.close(fd)
            os.rename(partial, dest)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(partial)
            raise
        folders = (folder, self.root) if new_folder else (folder,)
        if sync_name:
            _fsync_dirs(folders)
        else:
            # Opened now, with this process's identity: the save fsyncs them with the config
            # owner's in force (an open descriptor needs no permission), saving two identity
            # switches per repair. Added to what is pending: a second backup before the save
            # syncs them all.
            _pending_names.fds = (*getattr(_pending_names, "fds", ()), *_open_dirs(folders))
        self._backed_up.add(snapshot.real_path)
        if not new_folder:  # a new folder holds this one backup: nothing to rotate out
            self._rotate(folder)
        return dest

    def save_many(self, snapshots: Sequence[Snapshot]) -> list[Path | OSError]:
        """:meth:`save` each of ``snapshots`` (each of another file), their durability steps
        taken together: every backup written and its writeback started, then each fsync'd,
        verified and renamed, then the folders fsync'd once each. On a journaled file system
        the first fsync commits the creation of them all (256 new files: 44-49 ms this way,
        160-186 ms one by one; ext4 on a loop device, bench/README). Each result in order: the
        backup's path, or the :class:`OSError` that stopped it (nothing of it left behind, no
        older backup removed; the others count)."""
        pending: list[_Pending] = []
        failed: dict[int, OSError] = {}
        done: list[_Pending] = []
        try:
            for index, snapshot in enumerate(snapshots):
                try:
                    pending.append(self._start(snapshot, index))
                except OSError as exc:
                    failed[index] = exc
            for one in pending:
                try:
                    _finish(one)
                except OSError as exc:
                    failed[one.index] = exc
                else:
                    done.append(one)
            folders = dict.fromkeys(one.folder for one in done)
            if any(one.new_folder for one in done):
                folders[self.root] = None
            _fsync_dirs(tuple(folders))
            for one in done:
                self._backed_up.add(one.snapshot.real_path)
                if not one.new_folder:  # a new folder holds this one backup
                    # Made and counted: an old one left is removed at the next rotation.
                    with contextlib.suppress(OSError):
                        self._rotate(one.folder)
        finally:
            for one in pending:
                one.discard()
        paths = {one.index: one.dest for one in done}
        return [
            paths[index] if index in paths else failed[index] for index in range(len(snapshots))
        ]

    def _start(self, snapshot: Snapshot, index: int) -> _Pending:
        """Write one backup of :meth:`save_many` under its partial name and start its writeback."""
        folder = self.folder_for(snapshot.real_path)
        new_folder = _make_folder(folder)
        partial, dest = _names(folder)
        fd = _create(partial)
        one = _Pending(index, snapshot, folder, new_folder, partial, dest, fd)
        try:
            _write_all(fd, snapshot.data)
            writeback.start(fd)
        except BaseException:
            one.discard()
            raise
        return one

    @staticmethod
    def sync_names() -> None:
        """Make the names of this thread's last backup saved with ``sync_name=False`` durable
        (no-op when there is none). Any identity: it fsyncs descriptors opened by the save."""
        fds = getattr(_pending_names, "fds", ())
        _pending_names.fds = ()
        for fd in fds:
            try:
                with contextlib.suppress(OSError):  # the backup is whole; only its name may not be
                    os.fsync(fd)
            finally:
                os.close(fd)

    def verified(self, real_path: Path) -> list[Path]:
        """The backups of ``real_path`` that count, oldest first."""
        return _verified(self.folder_for(real_path))

    def _rotate(self, folder: Path) -> None:
        backups = _verified(folder)
        for old in backups[: max(0, len(backups) - self.keep)]:
            old.unlink(missing_ok=True)
        now = time.time()
        for partial in folder.glob(f".*{PARTIAL_SUFFIX}"):
            with contextlib.suppress(OSError):
                if now - partial.stat().st_mtime > _STALE_PARTIAL_S:
                    partial.unlink()


@dataclass(slots=True)
class _Pending:
    """One backup of :meth:`BackupStore.save_many` written, not yet fsync'd and renamed."""

    index: int
    snapshot: Snapshot
    folder: Path
    new_folder: bool
    partial: Path
    dest: Path
    fd: int
    """Open until :func:`_finish` closes it (-1 then)."""
    partial_left: bool = True
    """The partial file is there (until renamed or removed)."""

    def discard(self) -> None:
        """Close the descriptor and remove the partial file, if still there (else no-op)."""
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1
        if self.partial_left:
            with contextlib.suppress(OSError):
                os.unlink(self.partial)
            self.partial_left = False


def _finish(one: _Pending) -> None:
    """fsync, read back and rename one started backup; on failure nothing of it is left."""
    try:
        os.fsync(one.fd)
        _verify(one.fd, one.snapshot.data, one.partial)
        os.close(one.fd)
        one.fd = -1
        os.rename(one.partial, one.dest)
        one.partial_left = False
    except BaseException:
        one.discard()
        raise


def _make_folder(folder: Path) -> bool:
    """Create ``folder`` (0700) when missing; whether it was."""
    if folder.is_dir():
        return False
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    return True


def _names(folder: Path) -> tuple[Path, Path]:
    """A new backup's partial name and final name in ``folder``."""
    # One reading of the clock for the second and its fraction: two readings straddling a
    # second's end named a later backup before an earlier one (and rotation removes by name).
    now_ns = time.time_ns()
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now_ns // 1_000_000_000))
    name = f"{stamp}.{now_ns % 1_000_000_000:09d}"
    return folder / f".{name}{PARTIAL_SUFFIX}", folder / f"{name}.json"


def _create(partial: Path) -> int:
    return os.open(partial, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)


def _verified(folder: Path) -> list[Path]:
    """``*.json`` files that hold something (older versions left 0-byte files behind)."""
    out = []
    for path in sorted(folder.glob("*.json")):
        with contextlib.suppress(OSError):
            if path.stat().st_size > 0:
                out.append(path)
    return out


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:  # never loop on a device that takes nothing
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view = view[written:]


def _verify(fd: int, data: bytes, path: Path) -> None:
    """Read the backup back from the file: byte for byte what was meant (stronger than parsing
    it: a truncated or altered copy of a config never parses as the same config)."""
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(fd, 1 << 16):
        chunks.append(chunk)
        if sum(map(len, chunks)) > len(data):
            break
    if b"".join(chunks) != data:
        raise OSError(errno.EIO, "the backup read back differs from what was written", str(path))


_pending_names = threading.local()
"""``fds``: the open directories a backup saved with ``sync_name=False`` left to fsync (per
thread: the daemon's start-up pass fixes several configs at once)."""


def _open_dirs(folders: tuple[Path, ...]) -> list[int]:
    fds = []
    for folder in folders:
        with contextlib.suppress(OSError):  # the backup is whole; only its name may not be
            fds.append(os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
    return fds


def _fsync_dirs(folders: tuple[Path, ...]) -> None:
    for folder in folders:
        with contextlib.suppress(OSError):  # the backup is whole; only its name may not be
            _fsync_dir(folder)


def _fsync_dir(directory: Path) -> None:
    dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
