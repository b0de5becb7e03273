"""Where a journal follower resumes: the cursor file, kept atomically in the state directory.

The cursor lives in ``state_dir/journal.cursor``, written atomically (temp file, fsync, rename,
directory fsync) by :class:`CursorStore`. :class:`CursorKeeper` decides when: at most once a
``save_interval`` while entries flow, and at close; only a cursor whose failures were handed out
is saved, so a crash re-reads, it never skips. :func:`start_point` drops a cursor older than
``max_age``.
"""

from __future__ import annotations

import time as _time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from regauthd.statefile import write_atomically

CURSOR_FILE = "journal.cursor"


class CursorStore:
    """One text value in the state directory, replaced atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> str | None:
        try:
            text = self.path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        return text or None

    def save(self, value: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_atomically(self.path, (value + "\n").encode())


def cursor_realtime(cursor: str) -> datetime | None:
    """The wall-clock time encoded in a journal cursor (its ``t=`` field), if any."""
    for part in cursor.split(";"):
        if part.startswith("t="):
            try:
                return datetime.fromtimestamp(int(part[2:], 16) / 1_000_000, UTC)
            except ValueError:
                return None
    return None


def start_point(
    cursor: str | None, now: datetime, max_age: timedelta
) -> tuple[str | None, datetime]:
    """(cursor to resume after, or None; the time to start from when there is no usable cursor).

    A cursor older than ``max_age`` is dropped: an hours-old failure is no longer actionable.
    """
    floor = now - max_age
    if cursor is not None:
        when = cursor_realtime(cursor)
        if when is not None and when >= floor:
            return cursor, floor
    return None, floor


class CursorKeeper:
    """Where a journal follower resumes, and when the cursor it has read up to is saved.

    ``pending`` is the cursor of the last entry handed out; :meth:`save_if_due` writes it at
    most once a ``save_interval`` (and at once with ``force``), so a crash re-reads, never skips.
    """

    def __init__(self, state_dir: Path | None, save_interval: float) -> None:
        self._store = CursorStore(state_dir / CURSOR_FILE) if state_dir is not None else None
        self._save_interval = save_interval
        self.saved: str | None = None
        self.pending: str | None = None
        self._last_save = _time.monotonic()

    def start(
        self, now: datetime, max_age: timedelta, since: datetime | None
    ) -> tuple[str | None, datetime]:
        """(the saved cursor to resume after, or None; the time to start from without one).

        ``since`` overrides the saved cursor.
        """
        saved = self._store.load() if self._store is not None else None
        cursor, floor = start_point(saved, now, max_age)
        if since is not None:
            cursor, floor = None, since
        self.saved = cursor
        return cursor, floor

    def timeout(self) -> float | None:
        """Seconds until an unsaved cursor is due to be saved; None when nothing waits."""
        if self.pending is None or self.pending == self.saved:
            return None
        return max(0.0, self._last_save + self._save_interval - _time.monotonic())

    def save_if_due(self, *, force: bool = False) -> None:
        cursor = self.pending
        if self._store is None or cursor is None or cursor == self.saved:
            return
        now = _time.monotonic()
        if force or now - self._last_save >= self._save_interval:
            self._store.save(cursor)
            self.saved = cursor
            self._last_save = now


def from_realtime_us(us: int) -> datetime:
    """A journal timestamp (microseconds since the epoch) as an aware UTC datetime."""
    return datetime.fromtimestamp(us / 1_000_000, UTC)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_realtime_us(when: datetime) -> int:
    """An aware datetime as a journal timestamp (microseconds since the epoch), exactly."""
    return (when - _EPOCH) // timedelta(microseconds=1)
