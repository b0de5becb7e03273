"""Backups: rotated 0600 copies of configs in the state directory, the way back from any fix.

The state directory also holds the race memory (:mod:`regauthd.dockerconfig.races`); a
:class:`BackupStore` is the handle :func:`regauthd.dockerconfig.fixer.fix_file` gets for both.
"""

from __future__ import annotations

import os
import time
import urllib.parse
from pathlib import Path

from regauthd.dockerconfig.file import Snapshot
from regauthd.dockerconfig.races import RaceMemory

BACKUPS_KEPT = 20
"""Backups kept per config file; older ones are removed as new ones are written."""


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

    def save(self, snapshot: Snapshot) -> Path:
        folder = self.folder_for(snapshot.real_path)
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        dest = folder / f"{stamp}.{time.time_ns() % 1_000_000_000:09d}.json"
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, snapshot.data)
            os.fsync(fd)
        finally:
            os.close(fd)
        self._backed_up.add(snapshot.real_path)
        self._rotate(folder)
        return dest

    def _rotate(self, folder: Path) -> None:
        backups = sorted(folder.glob("*.json"))
        for old in backups[: max(0, len(backups) - self.keep)]:
            old.unlink(missing_ok=True)
