"""Linux inotify(7), read in the caller's loop: one descriptor, no thread, one watch per directory.

A thin reader over the C library's ``inotify_init1``/``inotify_add_watch``/``inotify_rm_watch``
(ctypes). The descriptor is non-blocking; :meth:`InotifyWatcher.read` parses what one read
returned (another when the buffer came back full). Per event it builds nothing but the
:class:`Change` (and the entry's name), after asking ``wants``: no syscall per event.

Mapping (``contents=True`` adds IN_CLOSE_WRITE to the mask):
IN_CLOSE_WRITE -> WRITTEN; IN_MOVED_TO -> APPEARED, then WRITTEN for a file; IN_CREATE ->
APPEARED; IN_DELETE, IN_MOVED_FROM -> REMOVED; IN_DELETE_SELF, IN_MOVE_SELF, IN_UNMOUNT,
IN_IGNORED -> DIR_GONE once (the watch is forgotten); IN_Q_OVERFLOW -> OVERFLOW. A rename inside a
directory is REMOVED + APPEARED/WRITTEN, and the WRITTEN carries the name the file came from
(``source``: the IN_MOVED_FROM of the same cookie, which the kernel queues just before).

The kernel gives one watch descriptor per inode: two paths of one directory (a bind mount)
share it, and both are reported; a path watched again after its directory was replaced moves
to the new descriptor, and the old one is dropped without a DIR_GONE for the live path.

:data:`LIBRARY` names the shared object that provides the calls (``None``: the C library this
Python runs on). Pointing it at a library without them (tests use ``libm.so.6``) makes the
backend unavailable, as on a C library without inotify: ``open_watcher("auto")`` then picks
``native``.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import struct
import sys
from dataclasses import dataclass, field

from regauthd.service.watcher.change import Change, ChangeKind, Wants
from regauthd.service.watcher.protocol import BackendUnavailableError, WatchLimitError

LIBRARY: str | None = None
"""The shared object with the inotify calls; ``None`` is the running C library."""

IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_UNMOUNT = 0x00002000
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_DONT_FOLLOW = 0x02000000
IN_EXCL_UNLINK = 0x04000000
IN_MASK_ADD = 0x20000000
IN_ISDIR = 0x40000000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC

ENTRIES = IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE
"""What every watch asks for: entries appearing and disappearing."""
SELF = IN_DELETE_SELF | IN_MOVE_SELF
FLAGS = IN_ONLYDIR | IN_DONT_FOLLOW | IN_EXCL_UNLINK
GONE = IN_DELETE_SELF | IN_MOVE_SELF | IN_UNMOUNT | IN_IGNORED

_HEADER = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len; then the name
_LARGEST_EVENT = _HEADER.size + 255 + 1  # NAME_MAX and its NUL
_BUFFER_SIZE = 256 * 1024  # a burst of ~5,000 typical events in one read
_MOVES_KEPT = 1024
"""Unpaired IN_MOVED_FROM names kept (a file moved out of a watched directory has no pair)."""
_LIMIT_SYSCTLS = ("fs.inotify.max_user_watches", "user.max_inotify_watches")


def _watch_mask(contents: bool) -> int:
    return ENTRIES | SELF | FLAGS | (IN_CLOSE_WRITE if contents else 0)


@dataclass(slots=True)
class _Inode:
    """One kernel watch descriptor: the paths (one, unless bind-mounted) that reach it."""

    paths: dict[str, bool] = field(default_factory=dict)
    """Watched path -> watched for contents."""
    mask: int = 0
    """The mask the kernel holds for it."""

    def wanted_mask(self) -> int:
        return _watch_mask(any(self.paths.values()))


class _Calls:
    """The three C library calls, bound with their argument types."""

    def __init__(self) -> None:
        if not sys.platform.startswith("linux"):
            raise BackendUnavailableError(errno.ENOSYS, f"no inotify on {sys.platform}")
        try:
            libc = ctypes.CDLL(LIBRARY, use_errno=True)
            self.init1 = libc.inotify_init1
            self.add_watch = libc.inotify_add_watch
            self.rm_watch = libc.inotify_rm_watch
        except (OSError, AttributeError) as exc:
            raise BackendUnavailableError(
                errno.ENOSYS, f"the C library ({LIBRARY or 'libc'}) has no inotify: {exc}"
            ) from exc
        self.init1.argtypes = [ctypes.c_int]
        self.init1.restype = ctypes.c_int
        self.add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        self.add_watch.restype = ctypes.c_int
        self.rm_watch.argtypes = [ctypes.c_int, ctypes.c_int]
        self.rm_watch.restype = ctypes.c_int


class InotifyWatcher:
    """The :class:`~regauthd.service.watcher.protocol.Watcher` for Linux: see the module."""

    backend = "inotify"

    def __init__(self, wants: Wants | None = None) -> None:
        self._calls = _Calls()
        fd: int = self._calls.init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            code = ctypes.get_errno()
            if code in (errno.ENOSYS, errno.EPERM):  # no inotify in this kernel or sandbox
                raise BackendUnavailableError(code, f"inotify_init1: {os.strerror(code)}")
            if code == errno.EMFILE:
                raise OSError(
                    code,
                    "too many inotify instances for this user: raise fs.inotify.max_user_instances",
                )
            raise OSError(code, f"inotify_init1: {os.strerror(code)}")
        self._fd = fd
        self._wants = wants
        self._buffer = bytearray(_BUFFER_SIZE)
        self._by_wd: dict[int, _Inode] = {}
        self._wd_of: dict[str, int] = {}
        self._moved_from: dict[int, tuple[int, str]] = {}
        """Cookie -> (wd, name) of each IN_MOVED_FROM whose IN_MOVED_TO is not read yet."""

    def fileno(self) -> int:
        return self._fd

    def watch(self, directory: str, *, contents: bool) -> None:
        # IN_MASK_ADD never narrows what another path of the same inode asked for.
        wd = self._add_watch(directory, _watch_mask(contents) | IN_MASK_ADD)
        old = self._wd_of.get(directory)
        if old is not None and old != wd:
            self._detach(directory, old)  # the directory was replaced: its old watch is stale
        inode = self._by_wd.get(wd)
        if inode is None:
            inode = self._by_wd[wd] = _Inode()
        inode.mask |= _watch_mask(contents)
        inode.paths[directory] = contents
        self._wd_of[directory] = wd
        self._narrow(wd, inode, directory)

    def unwatch(self, directory: str) -> None:
        wd = self._wd_of.get(directory)
        if wd is not None:
            self._detach(directory, wd)

    def read(self) -> list[Change]:
        changes: list[Change] = []
        buffer = self._buffer
        while True:
            try:
                size = os.readv(self._fd, (buffer,))
            except BlockingIOError:
                return changes
            self._parse(buffer, size, changes)
            if size < len(buffer) - _LARGEST_EVENT:
                return changes  # drained (anything newer makes fileno readable again)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # the kernel drops every watch with it
            self._fd = -1
        self._by_wd.clear()
        self._wd_of.clear()

    def _parse(self, buffer: bytearray, size: int, changes: list[Change]) -> None:
        unpack = _HEADER.unpack_from
        by_wd = self._by_wd
        wants = self._wants
        moved_from = self._moved_from
        overflowed = False
        offset = 0
        while offset < size:
            wd, mask, cookie, length = unpack(buffer, offset)
            start = offset + 16
            offset = start + length
            inode = by_wd.get(wd)
            if inode is None:
                if mask & IN_Q_OVERFLOW and not overflowed:
                    overflowed = True
                    changes.append(Change(ChangeKind.OVERFLOW, "", "", False))
                continue  # a watch we dropped already, or the IN_IGNORED of one
            if mask & GONE:
                self._gone(wd, inode, mask, changes)
                continue
            end = buffer.find(0, start, offset)
            name = buffer[start : offset if end < 0 else end].decode("utf-8", "surrogateescape")
            is_dir = bool(mask & IN_ISDIR)
            source = ""
            if mask & IN_MOVED_FROM and cookie:
                if len(moved_from) >= _MOVES_KEPT:
                    moved_from.clear()  # halves moved out of the watched directories
                moved_from[cookie] = (wd, name)
            elif mask & IN_MOVED_TO and cookie:
                came_from = moved_from.pop(cookie, None)
                if came_from is not None and came_from[0] == wd:
                    source = came_from[1]
            for directory, contents in inode.paths.items():
                if not is_dir and wants is not None and not wants(directory, name):
                    continue
                if mask & IN_CLOSE_WRITE:
                    if contents:  # another path of this inode may be the one that asked
                        changes.append(Change(ChangeKind.WRITTEN, directory, name, False))
                elif mask & (IN_CREATE | IN_MOVED_TO):
                    changes.append(Change(ChangeKind.APPEARED, directory, name, is_dir))
                    if mask & IN_MOVED_TO and contents and not is_dir:
                        changes.append(Change(ChangeKind.WRITTEN, directory, name, False, source))
                else:
                    changes.append(Change(ChangeKind.REMOVED, directory, name, is_dir))

    def _gone(self, wd: int, inode: _Inode, mask: int, changes: list[Change]) -> None:
        del self._by_wd[wd]
        for directory in inode.paths:
            del self._wd_of[directory]
            changes.append(Change(ChangeKind.DIR_GONE, directory, "", True))
        if mask & IN_MOVE_SELF:
            # Moved, not deleted: the kernel would go on reporting it under its new name.
            self._calls.rm_watch(self._fd, wd)

    def _detach(self, directory: str, wd: int) -> None:
        del self._wd_of[directory]
        inode = self._by_wd[wd]
        del inode.paths[directory]
        if inode.paths:
            self._narrow(wd, inode, next(iter(inode.paths)))
        else:
            del self._by_wd[wd]
            # EINVAL when the kernel dropped it already (deleted directory): nothing to undo.
            self._calls.rm_watch(self._fd, wd)

    def _narrow(self, wd: int, inode: _Inode, directory: str) -> None:
        """Give the kernel the mask the inode's paths want when it holds more (contents no
        longer wanted)."""
        wanted = inode.wanted_mask()
        if inode.mask != wanted:
            with contextlib.suppress(OSError):  # gone meanwhile: its IN_IGNORED will say so
                if self._add_watch(directory, wanted) == wd:
                    inode.mask = wanted

    def _add_watch(self, directory: str, mask: int) -> int:
        wd: int = self._calls.add_watch(self._fd, os.fsencode(directory), mask)
        if wd >= 0:
            return wd
        code = ctypes.get_errno()
        if code == errno.ENOSPC:
            raise WatchLimitError(directory, *watch_limit())
        raise OSError(code, os.strerror(code), directory)


def watch_limit() -> tuple[str, int | None]:
    """The sysctl that limits this user's watches and its value: the host's, or the user
    namespace's (a container's) when that one is lower."""
    found: list[tuple[int, str]] = []
    for sysctl in _LIMIT_SYSCTLS:
        try:
            with open("/proc/sys/" + sysctl.replace(".", "/"), encoding="ascii") as value:
                found.append((int(value.read()), sysctl))
        except (OSError, ValueError):
            continue
    if not found:
        return _LIMIT_SYSCTLS[0], None
    limit, sysctl = min(found)
    return sysctl, limit
