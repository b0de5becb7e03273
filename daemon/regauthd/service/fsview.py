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
        return os.path.realpath(path)


LOCAL: Final = LocalFileSystem()
"""The view the daemon plans with."""
