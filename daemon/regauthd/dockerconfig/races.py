"""Race memory: our content that sat on disk while it lacked another program's write.

Kept per config file in the state directory beside the backups (see
:class:`regauthd.dockerconfig.backups.BackupStore`), so that a later `regauthd fix` process or the
daemon finishes the merge :func:`regauthd.dockerconfig.fixer.fix_file` started.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import os
import time
import urllib.parse
from pathlib import Path

from regauthd.dockerconfig.file import MAX_CONFIG_BYTES, Snapshot
from regauthd.dockerconfig.jsontext import ConfigFileError
from regauthd.dockerconfig.merge import merge_config_bytes
from regauthd.statefile import write_atomically

EXPOSURE_TTL_S = 5.0
"""How long after a race every fix of the file merges again (see :class:`RaceMemory`)."""


class RaceMemory:
    """Our content that sat on disk while it lacked another program's write.

    When a writer renames inside our exchange, our (then stale) content is on disk until the
    merged save lands, a fraction of a millisecond. A program that read the file in that window
    and writes later would drop the entry we merged back. For :data:`EXPOSURE_TTL_S` after such a
    race, every fix of the file merges again, with our stale write as the base and the content
    that must survive as "mine". The price: an entry the user logs out of within that window of
    a race comes back.

    Kept in memory and, because each `regauthd fix` is a new process, in the state directory
    (0600, like the backups: it holds config content).
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._by_path: dict[Path, tuple[bytes, bytes, float]] = {}
        self._names: dict[Path, str] = {}  # the daemon looks on every repair: quote once

    def _file(self, real_path: Path) -> str:
        name = self._names.get(real_path)
        if name is None:
            name = self._names[real_path] = os.path.join(
                self.folder, urllib.parse.quote(str(real_path), safe="")
            )
        return name

    def _lookup(self, real_path: Path) -> tuple[bytes, bytes, float] | None:
        entry = self._by_path.get(real_path)
        if entry is None:
            try:
                fd = os.open(self._file(real_path), os.O_RDONLY)
            except OSError:
                return None  # the common case: no race on record for this file
            try:
                raw = json.loads(os.read(fd, 4 * MAX_CONFIG_BYTES))
                entry = (
                    base64.b64decode(raw["stale"]),
                    base64.b64decode(raw["pending"]),
                    time.monotonic() + float(raw["until"]) - time.time(),
                )
            except (OSError, ValueError, KeyError, TypeError):
                return None
            finally:
                os.close(fd)
            self._by_path[real_path] = entry
        if entry[2] < time.monotonic():
            self._forget(real_path)
            return None
        return entry

    def _forget(self, real_path: Path) -> None:
        self._by_path.pop(real_path, None)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._file(real_path))

    def _store(self, real_path: Path, entry: tuple[bytes, bytes, float]) -> None:
        self._by_path[real_path] = entry
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        record = {
            "stale": base64.b64encode(entry[0]).decode(),
            "pending": base64.b64encode(entry[1]).decode(),
            "until": time.time() + entry[2] - time.monotonic(),
        }
        write_atomically(self._file(real_path), json.dumps(record).encode())

    def active(self, real_path: Path) -> bool:
        return self._lookup(real_path) is not None

    def expose(self, real_path: Path, stale: bytes, pending: bytes) -> None:
        self._store(real_path, (stale, pending, time.monotonic() + EXPOSURE_TTL_S))

    def keep(self, real_path: Path, pending: bytes) -> None:
        """``pending`` now holds everything that must survive (merged, or written)."""
        entry = self._lookup(real_path)
        if entry is not None and entry[1] != pending:
            self._store(real_path, (entry[0], pending, entry[2]))

    def recover(self, current: Snapshot) -> Snapshot:
        entry = self._lookup(current.real_path)
        if entry is None or current.data == entry[1]:
            return current
        stale, pending, _ = entry
        try:
            data = merge_config_bytes(stale, pending, current.data, current.path)
        except ConfigFileError:
            return current
        return dataclasses.replace(current, data=data, on_disk=current.data)
