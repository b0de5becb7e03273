"""The one way regauthd writes its own state files: whole, durable, and never through a link.

Journal cursors, race memory, the metrics textfile and the daemon's status file all go through
:func:`write_atomically`: a temp file with a random name is created next to the target with
``O_EXCL | O_NOFOLLOW`` (a planted symlink or file is never written through), written in full,
given its mode, fsync'd, renamed over the target relative to the directory's descriptor, and
the directory is fsync'd. A reader sees the old content or the new, never a half-written file;
after a crash at any step the old file is whole. On failure the temp file is removed and the
error is raised, so the caller keeps its data dirty and tries again later.

(Docker configs are NOT written here: :mod:`regauthd.dockerconfig.file` keeps their owner, mode
and symlinks and merges racing writers.)
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def write_atomically(path: Path | str, data: bytes, *, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` (see the module docstring). Raises :class:`OSError`."""
    directory, name = os.path.split(os.fspath(path))
    dir_fd = os.open(directory or ".", _DIR_FLAGS)
    try:
        temp = f".{name}.{os.urandom(6).hex()}.tmp"
        fd = os.open(temp, _TEMP_FLAGS, mode, dir_fd=dir_fd)
        try:
            try:
                _write_all(fd, data)
                os.fchmod(fd, mode)  # the umask must not decide who may read it
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp, dir_fd=dir_fd)
            raise
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


__all__ = ["write_atomically"]
