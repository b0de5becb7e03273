"""Opening a directory by an absolute path without following any symlink on the way.

``openat2(RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)`` where the kernel has it (Linux 5.6),
else one ``O_NOFOLLOW`` open per component. Both answer a descriptor, or minus an errno:
``-ELOOP`` when a symlink is on the way. Used by :mod:`regauthd.dockerconfig.configdir`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from typing import Any

_SYS_OPENAT2 = 437  # the same number on every Linux architecture
_RESOLVE_NO_SYMLINKS = 0x04
_RESOLVE_NO_MAGICLINKS = 0x02
AT_FDCWD = -100
DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)

_openat2_call: Any = None
"""The C library's ``syscall`` (None: not probed yet; False: no openat2 here)."""


def openat2(path: str, flags: int) -> int:
    """``openat2(path, flags, RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)`` (``path``
    absolute): the descriptor, or minus the errno (``-ENOSYS``: no openat2 here, see
    :func:`walk`)."""
    import ctypes  # noqa: PLC0415 - loaded only where used: never by `fix` on one's own file

    global _openat2_call  # noqa: PLW0603 - probed once
    if _openat2_call is None:
        libc = ctypes.CDLL(None, use_errno=True)  # the C library already loaded: no ldconfig run
        libc.syscall.restype = ctypes.c_long
        _openat2_call = libc.syscall
    if _openat2_call is False:
        return -errno.ENOSYS
    how = (ctypes.c_uint64 * 3)(flags, 0, _RESOLVE_NO_SYMLINKS | _RESOLVE_NO_MAGICLINKS)
    fd = int(
        _openat2_call(
            ctypes.c_long(_SYS_OPENAT2),
            ctypes.c_int(AT_FDCWD),
            ctypes.c_char_p(os.fsencode(path)),
            how,
            ctypes.c_size_t(ctypes.sizeof(how)),
        )
    )
    if fd >= 0:
        return fd
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EPERM, errno.E2BIG):
        _openat2_call = False  # an old kernel, or a sandbox that refuses it: walk instead
        return -errno.ENOSYS
    return -err


def walk(directory: str, flags: int) -> int:
    """Open ``directory`` (absolute) one ``O_NOFOLLOW`` component at a time (no openat2): the
    descriptor, or minus the errno (``-ELOOP``: a symlink on the way)."""
    try:
        fd = os.open("/", DIR_FLAGS)
    except OSError as exc:
        return -(exc.errno or errno.EIO)
    try:
        for part in directory.split("/"):
            if not part:
                continue
            try:
                child = os.open(part, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            except NotADirectoryError:
                if stat.S_ISLNK(os.lstat(part, dir_fd=fd).st_mode):
                    return -errno.ELOOP
                raise
            os.close(fd)
            fd = child
        return os.open(".", flags, dir_fd=fd)
    except OSError as exc:
        return -(exc.errno or errno.EIO)
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)
