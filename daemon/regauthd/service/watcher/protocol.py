"""What every watcher backend promises, and the ways watching fails.

[pure] A :class:`Watcher` is used from one thread (the daemon's loop): it selects on
:meth:`Watcher.fileno` and calls :meth:`Watcher.read` when it is readable.
"""

from __future__ import annotations

import errno
from typing import Protocol

from regauthd.service.watcher.change import Change


class Watcher(Protocol):
    """Non-recursive directory watching, read in the caller's own loop."""

    backend: str
    """``"inotify"``, ``"native"`` or ``"polling"``."""

    def watch(self, directory: str, *, contents: bool) -> None:
        """Watch the entries of ``directory`` (a real path: no symlink is followed).

        ``contents=False`` reports only entries appearing and disappearing (no ``WRITTEN``), so
        a home directory's shell history writes wake nothing. Watching a watched directory
        again updates ``contents``. Raises :class:`WatchLimitError` when the kernel refuses one
        more watch, ``FileNotFoundError``/``NotADirectoryError`` when the directory is not
        there, ``PermissionError`` when it cannot be read.
        """
        ...

    def unwatch(self, directory: str) -> None:
        """Stop watching ``directory``; nothing more is reported for it (a no-op when it is not
        watched, e.g. after its ``DIR_GONE``)."""
        ...

    def fileno(self) -> int:
        """A descriptor that is readable when :meth:`read` has something to look at (it may
        still return ``[]``: ``wants`` dropped everything)."""
        ...

    def read(self) -> list[Change]:
        """What happened since the last call, in order; never blocks (``[]`` when nothing)."""
        ...

    def close(self) -> None:
        """Stop watching everything and release the descriptor and any thread."""
        ...


class WatchLimitError(OSError):
    """The kernel refused one more watch: the per-user limit is reached. Names the directory
    and the sysctl to raise."""

    def __init__(self, directory: str, sysctl: str, limit: int | None) -> None:
        current = f" (now {limit})" if limit is not None else ""
        super().__init__(
            errno.ENOSPC,
            f"cannot watch {directory}: the kernel's limit {sysctl}{current} is reached; raise"
            f" it (sysctl -w {sysctl}=524288, and in /etc/sysctl.d/ to keep it)",
        )
        self.directory = directory
        self.sysctl = sysctl
        self.limit = limit

    def __str__(self) -> str:
        return str(self.strerror)


class BackendUnavailableError(OSError):
    """The requested watch backend does not work here (inotify on macOS, a C library without
    inotify, a kernel or sandbox that refuses it)."""
