"""Starting a file's writeback without waiting for it: ``sync_file_range(SYNC_FILE_RANGE_WRITE)``.

Used where many new files must become durable together (:meth:`regauthd.dockerconfig.backups.
BackupStore.save_many`): each file's data is sent to the disk as soon as it is written, so the
fsyncs that follow find it there, and on a journaled file system the first of them commits the
others' creation with its own. Not a durability step on its own: only fsync is. Where the call
is missing (not Linux, or a C library without it) it does nothing.
"""

from __future__ import annotations

import sys
from typing import Any

_SYNC_FILE_RANGE_WRITE = 2

_call: Any = None
"""The C library's ``sync_file_range`` (None: not looked up yet; False: not here)."""


def start(fd: int) -> None:
    """Start writing ``fd``'s dirty pages to the disk; returns at once. Errors are ignored: the
    fsync that must follow reports them."""
    global _call  # noqa: PLW0603 - looked up once
    if _call is None:
        _call = _lookup()
    if _call is not False:
        _call(fd, 0, 0, _SYNC_FILE_RANGE_WRITE)


def _lookup() -> Any:
    if not sys.platform.startswith("linux"):
        return False
    import ctypes  # noqa: PLC0415 - loaded only where used: never by `fix` on one's own file

    # The C library already loaded (no ldconfig run); the GIL is released around the call.
    fn = getattr(ctypes.CDLL(None, use_errno=True), "sync_file_range", None)
    if fn is None:
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn
