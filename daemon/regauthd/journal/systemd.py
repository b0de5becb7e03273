"""The systemd-python follower (sd-journal through the C ``_Reader``) and its fast read path.

The fast path (:func:`read_failures`) reads only ``MESSAGE`` and the time of each matched entry;
the messages of a batch are pre-filtered together in one buffer; only entries that are failures
are visited again (by time) for their unit and ``CONTAINER_ID``; a cursor is built only when it
is saved. The default ``Reader`` converts every field of every entry: several times slower (see
``bench/journal.py``).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from regauthd.journal.backend import FollowOptions, JournalError, glob_matches, split_globs
from regauthd.journal.clocksteps import Edge, stepped_back
from regauthd.journal.cursor import CursorKeeper, from_realtime_us
from regauthd.journal.recognize import AuthFailure


def systemd_reader() -> Any:
    """systemd-python's C module, or None. Its ``_Reader`` is used directly: the Python
    ``journal.Reader`` on top adds field conversion we bypass, and imports logging, uuid, ..."""
    try:
        return importlib.import_module("systemd._reader")
    except ImportError:
        return None


class SystemdFollower:
    """The journal through systemd-python's C ``_Reader`` (sd-journal), on its inotify fd."""

    def __init__(
        self,
        options: FollowOptions,
        state_dir: Path | None,
        *,
        now: datetime | None = None,
        since: datetime | None = None,
    ) -> None:
        journal = systemd_reader()
        if journal is None:
            raise JournalError(
                "systemd-python is not installed (pip install 'regauthd[journald]'); "
                "the journalctl backend works without it"
            )
        self._journal = journal
        self._options = options
        self._cursor = CursorKeeper(state_dir, options.save_interval)
        try:
            if options.files:
                self._reader = journal._Reader(0, None, [str(f) for f in options.files], None)
            elif options.directory is not None:
                self._reader = journal._Reader(0, str(options.directory), None, None)
            else:
                self._reader = journal._Reader(journal.LOCAL_ONLY, None, None, None)
        except OSError as exc:
            files = ", ".join(str(f) for f in options.files)
            where = files or str(options.directory or "the system journal")
            raise JournalError(f"cannot open {where}: {exc.strerror or exc}") from None
        # Must come before the first read: sd_journal_get_fd sets up inotify.
        self._fd: int = self._reader.fileno()
        self._units: tuple[str, ...] = ()
        self._apply_matches()
        self._more = True  # whatever is logged already is read at the first process()
        self._current_unread = False
        self._position(now or datetime.now(UTC), since)

    def _expanded_units(self) -> tuple[str, ...]:
        plain, globs = split_globs(self._options.units)
        if globs:
            present = {
                bytes(v).decode("utf-8", "replace")
                for v in self._reader.query_unique("_SYSTEMD_UNIT")
            }
            plain += glob_matches(present, globs)
        return tuple(dict.fromkeys(plain))

    def _apply_matches(self) -> None:
        units = self._expanded_units()
        if units == self._units and units:
            return
        self._match(units)
        self._units = units

    def _match(self, units: tuple[str, ...], *also: str) -> None:
        """Match ``units`` (any of them) and every one of ``also`` (other fields: ANDed)."""
        self._reader.flush_matches()
        for unit in units:
            self._reader.add_match(f"_SYSTEMD_UNIT={unit}")
        if not units:
            # Only globs that match nothing yet: match an impossible unit rather than everything.
            self._reader.add_match("_SYSTEMD_UNIT=regauthd-no-such.service")
        for match in also:
            self._reader.add_match(match)

    def _position(self, now: datetime, since: datetime | None) -> None:
        cursor, floor = self._cursor.start(now, self._options.max_age, since)
        if cursor is None:
            self._reader.seek_realtime(int(floor.timestamp() * 1_000_000))  # microseconds
            return
        self._reader.seek_cursor(cursor)
        # After seek_cursor the next read returns that same entry when it still exists: skip it.
        # When it was vacuumed, the read lands on the first newer entry: that one is unread.
        if self._reader._next() and not self._reader.test_cursor(cursor):
            self._current_unread = True

    def fileno(self) -> int:
        return self._fd

    def timeout(self) -> float | None:
        if self._more:
            return 0.0
        waits: list[float] = []
        journal_ms = self._reader.get_timeout_ms()
        if journal_ms >= 0:
            waits.append(journal_ms / 1000)
        save_wait = self._cursor.timeout()
        if save_wait is not None:
            waits.append(save_wait)
        return min(waits) if waits else None

    def process(self) -> list[AuthFailure]:
        """Read what is there (up to ``batch`` entries); never blocks."""
        self._cursor.save_if_due()
        if self._reader.process() == self._journal.INVALIDATE:
            self._apply_matches()
        failures, self._more = read_failures(
            self._reader, self._options, current=self._current_unread
        )
        self._current_unread = False
        self._cursor.pending = self._current_cursor() or self._cursor.pending
        return failures

    def _current_cursor(self) -> str | None:
        try:
            return str(self._reader._get_cursor())
        except OSError:
            return None  # nothing read yet

    def matched_span(self) -> tuple[int, int] | None:
        """(first, last) realtime of the matched entries from the reader's position on.

        Moves the reader: for a scan that splits its range, then closes this follower.
        """
        reader = self._reader
        if not reader._next():
            return None
        first = int(reader._get_realtime())
        reader.seek_tail()
        if not reader._previous():
            return None
        return first, int(reader._get_realtime())

    def clock_stepped_back(self) -> bool:
        """Did the wall clock go back among the matched entries
        (:func:`regauthd.journal.clocksteps.stepped_back`)? Moves the reader and changes its
        matches: for a scan's probe, closed after."""
        boots: list[tuple[Edge, Edge]] = []
        for boot in self._reader.query_unique("_BOOT_ID"):
            self._match(self._units, f"_BOOT_ID={bytes(boot).decode('ascii', 'replace')}")
            self._reader.seek_head()
            if not self._reader._next():
                continue  # no matched entry in this boot
            first = (int(self._reader._get_realtime()), int(self._reader._get_monotonic()[0]))
            self._reader.seek_tail()
            if not self._reader._previous():
                continue
            last = (int(self._reader._get_realtime()), int(self._reader._get_monotonic()[0]))
            boots.append((first, last))
        return stepped_back(boots)

    def seek_realtime(self, realtime: int) -> None:
        """Read on from the first entry logged at or after ``realtime`` (microseconds)."""
        self._reader.seek_realtime(realtime)

    def read_all(self, until: int | None = None) -> Iterator[AuthFailure]:
        """Every failure from the position on, up to ``until`` (see :func:`read_failures`);
        for the one-shot scan, which keeps no cursor."""
        current, self._current_unread = self._current_unread, False
        more = True
        while more:
            failures, more = read_failures(
                self._reader, self._options, current=current, until=until
            )
            current = False
            yield from failures

    def close(self) -> None:
        if self._reader.closed:
            return
        self._cursor.save_if_due(force=True)
        self._reader.close()


def read_failures(
    reader: Any, options: FollowOptions, *, current: bool = False, until: int | None = None
) -> tuple[list[AuthFailure], bool]:
    """The fast path: up to ``options.batch`` matched entries -> failures; True if more remain.

    ``current``: the entry the reader stands on is unread; start with it. ``until``: stop at the
    first entry logged at or after this time (microseconds since the epoch).

    Uses the C-level ``_next``/``_get`` of systemd-python's ``_Reader``: ``get_next()`` would
    fetch and convert every field of every entry and build its cursor.
    """
    nxt = reader._next
    get = reader._get
    realtime = reader._get_realtime
    messages: list[bytes] = []
    times: list[int] = []
    positions: list[int] = []
    stepped = -1  # the position in this batch of the entry the reader stands on
    more = True
    for _ in range(options.batch):
        if current:
            current = False
        elif not nxt():
            more = False
            break
        stepped += 1
        when = realtime()
        if until is not None and when >= until:
            more = False
            break
        try:
            messages.append(get("MESSAGE"))
        except KeyError:
            continue
        times.append(when)
        positions.append(stepped)
    found = []
    for index in options.recognizer.candidates(messages):
        recognized = options.recognizer.find(messages[index].decode("utf-8", "replace"))
        if recognized is not None:
            found.append((index, recognized))
    if not found:
        return [], more
    # Failures are rare: go back to each one for the fields only they need (by time, else by
    # position from the end of the batch: no per-entry cursor, ~1 us each to build), then
    # return to the end of the batch.
    end = reader._get_cursor()
    failures: list[AuthFailure] = []
    for index, recognized in found:
        fields = _revisit(reader, end, stepped - positions[index], times[index], messages[index])
        if fields is None:
            continue  # container output through the journald log driver
        failures.append(recognized.at(fields, from_realtime_us(times[index])))
    reader.seek_cursor(end)
    reader._next()
    return failures, more


def _revisit(reader: Any, end: str, back: int, realtime: int, message: bytes) -> str | None:
    """The unit of the failure ``back`` matched entries before the one at cursor ``end``,
    logged at ``realtime`` with ``message``; None if it is container output
    (``CONTAINER_ID``). By its time first (a seek); where that lands elsewhere (the wall clock
    went back, and another entry was logged at that time first), by its position (a walk
    back over the batch: 300 failures in 1,000,000 entries took 1.6 s instead of 0.5)."""
    reader.seek_realtime(realtime)
    while reader._next():
        if reader._get_realtime() != realtime:
            break
        if reader._get("MESSAGE") == message:
            return _unit_here(reader)
    reader.seek_cursor(end)
    reader._next()
    if back:
        reader._previous(back)
    if reader._get_realtime() == realtime and reader._get("MESSAGE") == message:
        return _unit_here(reader)
    return "unknown"


def _unit_here(reader: Any) -> str | None:
    try:
        reader._get("CONTAINER_ID")
    except KeyError:
        pass
    else:
        return None
    try:
        return str(reader._get("_SYSTEMD_UNIT").decode("utf-8", "replace"))
    except KeyError:
        return "unknown"
