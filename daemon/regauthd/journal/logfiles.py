"""The file-tail follower: plain log files for hosts without journald.

Docker Desktop's log, ``/var/log/messages``: survives rotation and truncation; positions are kept
in ``state_dir/logtail.json``; polls every ``poll_interval``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from regauthd.journal.backend import FollowOptions, JournalError
from regauthd.journal.logline import split_log_line
from regauthd.journal.recognize import AuthFailure
from regauthd.statefile import write_atomically

# json is imported where this backend needs it: `scan-journal` on the systemd-python path starts
# in about half the time, and that start is part of what bench/journal.py measures.

LOGTAIL_FILE = "logtail.json"


@dataclass(slots=True)
class _Tail:
    path: Path
    handle: Any = None
    inode: tuple[int, int] | None = None
    offset: int = 0
    partial: bytes = b""


class LogFileFollower:
    """Tails plain log files (no journald: macOS, hosts without systemd).

    Rotation (the path now names a new file) finishes the old file first, then reads the new one
    from its start; truncation (the file shrank below our offset) starts over at 0. Positions are
    kept in ``state_dir/logtail.json`` so a restart resumes where it stopped.
    """

    def __init__(
        self,
        options: FollowOptions,
        state_dir: Path | None,
        *,
        now: datetime | None = None,
        since: datetime | None = None,
    ) -> None:
        if not options.log_files:
            raise JournalError("no log files configured for the file-tail backend")
        self._options = options
        self._store = state_dir / LOGTAIL_FILE if state_dir is not None else None
        self._floor = since or (now or datetime.now(UTC)) - options.max_age
        self._tails = [_Tail(p) for p in options.log_files]
        self._dirty = False
        saved = self._load()
        for tail in self._tails:
            state = saved.get(str(tail.path))
            if state is not None:
                tail.inode = (int(state["dev"]), int(state["ino"]))
                tail.offset = int(state["offset"])
            self._reopen(tail, resume=state is not None)

    def _load(self) -> dict[str, dict[str, int]]:
        if self._store is None:
            return {}
        import json  # noqa: PLC0415 - see the imports

        try:
            data = json.loads(self._store.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _reopen(self, tail: _Tail, *, resume: bool) -> None:
        try:
            handle = tail.path.open("rb")
        except OSError:
            tail.handle = None  # not there (yet): look again at the next poll
            return
        st = os.fstat(handle.fileno())
        inode = (st.st_dev, st.st_ino)
        if resume and inode == tail.inode and st.st_size >= tail.offset:
            handle.seek(tail.offset)
        else:
            tail.offset = 0
        tail.inode = inode
        tail.handle = handle
        tail.partial = b""

    def fileno(self) -> None:
        return None

    def timeout(self) -> float:
        return self._options.poll_interval

    def process(self) -> list[AuthFailure]:
        failures: list[AuthFailure] = []
        for tail in self._tails:
            failures += self._read(tail)
            self._check_rotation(tail, failures)
        if self._dirty:
            self._save()
        return failures

    def _check_rotation(self, tail: _Tail, failures: list[AuthFailure]) -> None:
        try:
            st = tail.path.stat()
        except FileNotFoundError:
            return  # rotated away, the new one not created yet: keep the old handle
        if tail.handle is None:
            self._reopen(tail, resume=False)
            failures += self._read(tail)
            return
        if (st.st_dev, st.st_ino) != tail.inode:
            failures += self._read(tail)  # the rest of the rotated file first
            tail.handle.close()
            self._reopen(tail, resume=False)
            failures += self._read(tail)
        elif st.st_size < tail.offset:
            tail.handle.seek(0)
            tail.offset = 0
            tail.partial = b""
            self._dirty = True
            failures += self._read(tail)

    def _read(self, tail: _Tail) -> list[AuthFailure]:
        if tail.handle is None:
            return []
        data = tail.handle.read()
        if not data:
            return []
        tail.offset += len(data)
        self._dirty = True
        lines = (tail.partial + data).split(b"\n")
        tail.partial = lines.pop()
        failures: list[AuthFailure] = []
        now = datetime.now(UTC)
        for raw in lines:
            if not self._options.recognizer.might_match(raw):
                continue
            when, ident, message = split_log_line(raw.decode("utf-8", "replace"), now=now)
            if when < self._floor:
                continue
            failure = self._options.recognizer.recognize(
                message, unit=ident or tail.path.name, time=when
            )
            if failure is not None:
                failures.append(failure)
        return failures

    def _save(self) -> None:
        if self._store is None:
            return
        state = {
            str(t.path): {
                "dev": t.inode[0],
                "ino": t.inode[1],
                # An unfinished last line is read again after a restart.
                "offset": t.offset - len(t.partial),
            }
            for t in self._tails
            if t.inode is not None
        }
        import json  # noqa: PLC0415 - see the imports

        self._store.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_atomically(self._store, json.dumps(state, sort_keys=True).encode())
        self._dirty = False

    def close(self) -> None:
        if self._dirty:
            self._save()
        for tail in self._tails:
            if tail.handle is not None:
                tail.handle.close()
                tail.handle = None
