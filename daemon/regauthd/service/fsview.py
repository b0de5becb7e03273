"""The real file system as :func:`regauthd.service.watchplan.plan_watches` reads it."""

from __future__ import annotations

import os
from typing import Final


class LocalFileSystem:
    """:class:`regauthd.service.watchplan.FileSystemView` over ``os`` (this host's files)."""

    def listdir(self, path: str) -> list[str]:
        return os.listdir(path)

    def isdir(self, path: str) -> bool:
        return os.path.isdir(path)

    def isfile(self, path: str) -> bool:
        return os.path.isfile(path)

    def islink(self, path: str) -> bool:
        return os.path.islink(path)

    def realpath(self, path: str) -> str:
        for _ in range(3):
            try:
                return os.path.realpath(path)
            except OSError:
                # A symlink replaced by a directory between lstat and readlink (EINVAL): a user
                # swapping it in a loop must not stop the daemon. Look again.
                continue
        return os.path.abspath(path)  # not resolved: the watch refuses a symlink (IN_DONT_FOLLOW)


LOCAL: Final = LocalFileSystem()
"""The view the daemon plans with."""
