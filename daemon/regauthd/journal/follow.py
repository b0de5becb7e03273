"""Follow the journal (or plain log files) and turn registry auth failures into events.

For the daemon
--------------
A follower is a source of :class:`~regauthd.journal.recognize.AuthFailure` values with a select-loop
shape::

    options = FollowOptions(units=("docker.service", "containerd.service"), max_age=...)
    follower = open_follower(options, state_dir)      # picks systemd-python, journalctl or files
    try:
        while running:
            select([follower.fileno(), ...], [], [], follower.timeout())
            for failure in follower.process():       # never blocks
                handle(failure)                       # re-check configs, probe, alert
    finally:
        follower.close()                              # saves the cursor

or, in a thread, ``follow(follower, handle, stop_event)``, which runs that loop until the event is
set. ``fileno()`` is ``None`` for the file-tail backend (it has no descriptor to wait on): use
``timeout()`` alone then. The first ``process()`` reads what is already logged (``timeout()`` is
0 until then); ``process()`` reads at most ``options.batch`` entries per call so a burst cannot
starve the caller's other work, and ``timeout()`` is 0 while more is waiting. ``process()``
raises :class:`JournalError` when the journal can no longer be read (journalctl exited): close
the follower and open a new one; the cursor makes that seamless. ``FollowOptions`` and
``AuthFailure`` are frozen and picklable; ``AuthFailure.as_dict()`` gives the alert's fields.
Settings map onto ``FollowOptions`` one to one; extra patterns come in through
``Recognizer(compile_patterns(...))``, whose :class:`~regauthd.journal.recognize.PatternError` is a
settings error.

Guarantees
----------
- Matches only entries of the configured units (``_SYSTEMD_UNIT``; globs such as
  ``actions.runner.*`` are expanded against the journal, again when files come and go), skips
  container output that came through the journald log driver (it carries ``CONTAINER_ID``).
- The fast path (:func:`read_failures`) uses systemd-python's C ``_Reader`` directly and reads
  only ``MESSAGE`` and the time of each matched entry; the messages of a batch are pre-filtered
  together in one buffer; only entries that are failures are visited again (by time) for their
  unit and ``CONTAINER_ID``; a cursor is built only when it is saved. The default ``Reader``
  converts every field of every entry: several times slower (see ``bench/journal.py``).
- The cursor lives in ``state_dir/journal.cursor``, written atomically (temp file, fsync,
  rename), at most once a ``save_interval`` while entries flow (so also during long bursts) and
  at :meth:`close`. It is saved only after the failures read before it were handed out by
  ``process()`` (the next call or ``close()`` saves it): a crash re-reads, it never skips.
- Restart resumes after the saved cursor (that entry is not read again; if it was vacuumed, the
  first newer entry is read), but never from further back than ``max_age``; with no cursor it
  starts ``max_age`` ago.
- INVALIDATE (journal files rotated, vacuumed, appearing) is treated as "read on".

Backends: :class:`SystemdFollower` (systemd-python), :class:`JournalctlFollower`
(``journalctl --follow -o json --cursor ...`` when systemd-python is missing; same cursor file;
``--cursor`` rather than ``--after-cursor`` because the latter skips one entry blindly, losing
one when the cursor's entry was vacuumed) and :class:`LogFileFollower` (plain files such as
Docker Desktop's log or ``/var/log/messages``; survives rotation and truncation; positions kept
in ``state_dir/logtail.json``; polls every ``poll_interval``). :func:`scan` is the one-shot
reader behind ``regauthd scan-journal``; it can share a large range between forked workers.
"""

from __future__ import annotations

import importlib
import itertools
import os
import select
import time as _time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol

from regauthd.journal.logline import split_log_line
from regauthd.journal.recognize import DEFAULT, AuthFailure, Recognizer

if TYPE_CHECKING:
    import threading

# json, subprocess, shutil and fnmatch are imported where the journalctl and file backends and
# unit globs need them: `scan-journal` on the systemd-python path starts in about half the time,
# and that start is part of what bench/journal.py measures against journalctl | grep.

DEFAULT_UNITS = ("docker.service", "containerd.service")
CURSOR_FILE = "journal.cursor"
LOGTAIL_FILE = "logtail.json"


class JournalError(Exception):
    """The journal cannot be read; the message says what to install or configure."""


@dataclass(frozen=True, slots=True)
class FollowOptions:
    """What to follow. The daemon's settings map onto this one to one."""

    units: tuple[str, ...] = DEFAULT_UNITS
    """Units to match on ``_SYSTEMD_UNIT``; shell globs allowed (``actions.runner.*``)."""
    max_age: timedelta = timedelta(hours=1)
    """Never start reading further back than this (with or without a saved cursor)."""
    directory: Path | None = None
    """Read journal files from this directory instead of the system journal."""
    files: tuple[Path, ...] = ()
    """Read these journal files instead of the system journal."""
    log_files: tuple[Path, ...] = ()
    """Plain log files for hosts without journald (file-tail backend)."""
    backend: str = "auto"
    """``auto``, ``systemd``, ``journalctl`` or ``files``."""
    recognizer: Recognizer = field(default=DEFAULT)
    batch: int = 20000
    """Entries read per ``process()`` call at most."""
    save_interval: float = 1.0
    """Seconds between cursor writes while entries keep coming."""
    poll_interval: float = 1.0
    """File-tail backend only: seconds between looks at the files."""


class Follower(Protocol):
    """What the daemon drives; see the module docstring."""

    def fileno(self) -> int | None: ...

    def timeout(self) -> float | None: ...

    def process(self) -> list[AuthFailure]: ...

    def close(self) -> None: ...


# --- cursor ------------------------------------------------------------------------------------
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
        write_atomically(self.path, value + "\n")


_temp_names = itertools.count()


def write_atomically(path: Path, text: str) -> None:
    """Temp file beside ``path`` (the state directory, never a user's config dir), fsync, rename."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{next(_temp_names)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, text.encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


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


class _CursorKeeper:
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


def _from_us(us: int) -> datetime:
    return datetime.fromtimestamp(us / 1_000_000, UTC)


# --- systemd-python ----------------------------------------------------------------------------
def _systemd_reader() -> Any:
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
        journal = _systemd_reader()
        if journal is None:
            raise JournalError(
                "systemd-python is not installed (pip install 'regauthd[journald]'); "
                "the journalctl backend works without it"
            )
        self._journal = journal
        self._options = options
        self._cursor = _CursorKeeper(state_dir, options.save_interval)
        try:
            if options.files:
                self._reader = journal._Reader(0, None, [str(f) for f in options.files], None)
            elif options.directory is not None:
                self._reader = journal._Reader(0, str(options.directory), None, None)
            else:
                self._reader = journal._Reader(journal.LOCAL_ONLY, None, None, None)
        except OSError as exc:
            where = options.files or options.directory or "the system journal"
            raise JournalError(f"cannot open {where}: {exc.strerror or exc}") from None
        # Must come before the first read: sd_journal_get_fd sets up inotify.
        self._fd: int = self._reader.fileno()
        self._units: tuple[str, ...] = ()
        self._apply_matches()
        self._more = True  # whatever is logged already is read at the first process()
        self._current_unread = False
        self._position(now or datetime.now(UTC), since)

    def _expanded_units(self) -> tuple[str, ...]:
        plain, globs = _split_globs(self._options.units)
        if globs:
            present = {
                bytes(v).decode("utf-8", "replace")
                for v in self._reader.query_unique("_SYSTEMD_UNIT")
            }
            plain += _glob_matches(present, globs)
        return tuple(dict.fromkeys(plain))

    def _apply_matches(self) -> None:
        units = self._expanded_units()
        if units == self._units and units:
            return
        self._reader.flush_matches()
        for unit in units:
            self._reader.add_match(f"_SYSTEMD_UNIT={unit}")
        if not units:
            # Only globs that match nothing yet: match an impossible unit rather than everything.
            self._reader.add_match("_SYSTEMD_UNIT=regauthd-no-such.service")
        self._units = units

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
    more = True
    for _ in range(options.batch):
        if current:
            current = False
        elif not nxt():
            more = False
            break
        when = realtime()
        if until is not None and when >= until:
            more = False
            break
        try:
            messages.append(get("MESSAGE"))
        except KeyError:
            continue
        times.append(when)
    found = []
    for index in options.recognizer.candidates(messages):
        recognized = options.recognizer.find(messages[index].decode("utf-8", "replace"))
        if recognized is not None:
            found.append((index, recognized))
    if not found:
        return [], more
    # Failures are rare: go back to each one for the fields only they need, then return to the
    # end of the batch. Seeking by time needs no per-entry cursor (building one costs ~1 us).
    end = reader._get_cursor()
    failures: list[AuthFailure] = []
    for index, recognized in found:
        fields = _revisit(reader, times[index], messages[index])
        if fields is None:
            continue  # container output through the journald log driver
        failures.append(recognized.at(fields, _from_us(times[index])))
    reader.seek_cursor(end)
    reader._next()
    return failures, more


def _revisit(reader: Any, realtime: int, message: bytes) -> str | None:
    """The unit of the entry logged at ``realtime`` with ``message``; None if it is container
    output (``CONTAINER_ID``)."""
    reader.seek_realtime(realtime)
    while reader._next():
        if reader._get_realtime() != realtime:
            break
        if reader._get("MESSAGE") != message:
            continue
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
    return "unknown"


# --- journalctl subprocess ---------------------------------------------------------------------
class JournalctlFollower:
    """The same follower on ``journalctl -o json`` (hosts without systemd-python)."""

    def __init__(
        self,
        options: FollowOptions,
        state_dir: Path | None,
        *,
        now: datetime | None = None,
        since: datetime | None = None,
        follow: bool = True,
    ) -> None:
        import shutil  # noqa: PLC0415 - see the imports
        import subprocess  # noqa: PLC0415

        program = shutil.which("journalctl")
        if program is None:
            raise JournalError("journalctl is not installed: no journald on this host?")
        self._options = options
        self._cursor = _CursorKeeper(state_dir, options.save_interval)
        cursor, floor = self._cursor.start(now or datetime.now(UTC), options.max_age, since)
        source = _journalctl_source(options)
        units = _journalctl_units(program, source, options.units)
        # --merge: without it `journalctl --follow` on files shows only the newest boot in them,
        # and fails while the journal holds no entry yet. It would also add other machines'
        # journals (journal-remote's): the _MACHINE_ID match keeps to this one, as LOCAL_ONLY.
        argv = [program, *source, "-o", "json", "--no-pager", "--no-tail", "--merge"]
        argv.append("--output-fields=MESSAGE,_SYSTEMD_UNIT,CONTAINER_ID")
        if follow:
            argv.append("--follow")
        # --cursor, not --after-cursor: journalctl skips one entry blindly after the seek, so when
        # the cursor's entry was vacuumed the first newer one would be lost. We skip it ourselves.
        argv += [f"--cursor={cursor}"] if cursor else [f"--since=@{floor.timestamp():.6f}"]
        self._skip_cursor = cursor
        argv += [f"_SYSTEMD_UNIT={u}" for u in units] or ["_SYSTEMD_UNIT=regauthd-no-such.service"]
        if not source:
            argv += _this_machine()
        self._buffer = b""
        self._eof = False
        self._follow = follow
        self.proc: subprocess.Popen[bytes] = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL
        )
        self._stdout: IO[bytes] = self.proc.stdout  # type: ignore[assignment]  # PIPE given
        self._stderr: IO[bytes] = self.proc.stderr  # type: ignore[assignment]
        os.set_blocking(self._stdout.fileno(), False)

    @property
    def finished(self) -> bool:
        """True once journalctl has exited and everything it wrote was processed."""
        return self._eof

    def fileno(self) -> int:
        return self._stdout.fileno()

    def timeout(self) -> float | None:
        return self._cursor.timeout()

    def process(self) -> list[AuthFailure]:
        self._cursor.save_if_due()
        chunks: list[bytes] = []
        while True:
            try:
                chunk = os.read(self._stdout.fileno(), 1 << 20)
            except BlockingIOError:
                break
            if not chunk:
                self._eof = True
                break
            chunks.append(chunk)
            if len(chunks) >= 16:
                break
        data = self._buffer + b"".join(chunks)
        import json  # noqa: PLC0415 - see the imports

        lines = data.split(b"\n")
        self._buffer = lines.pop()
        failures: list[AuthFailure] = []
        for line in lines:
            if line:
                failure = self._entry(json.loads(line))
                if failure is not None:
                    failures.append(failure)
        if self._eof:
            self._check_exit()
        return failures

    def _entry(self, entry: dict[str, Any]) -> AuthFailure | None:
        self._cursor.pending = entry.get("__CURSOR", self._cursor.pending)
        if self._skip_cursor is not None:
            seen, self._skip_cursor = self._skip_cursor, None
            if entry.get("__CURSOR") == seen:
                return None  # read before the restart
        if "CONTAINER_ID" in entry:
            return None
        message = _json_value(entry.get("MESSAGE"))
        if message is None or not self._options.recognizer.might_match(message):
            return None
        unit = _json_value(entry.get("_SYSTEMD_UNIT")) or b"unknown"
        return self._options.recognizer.recognize(
            message.decode("utf-8", "replace"),
            unit=unit.decode("utf-8", "replace"),
            time=_from_us(int(entry["__REALTIME_TIMESTAMP"])),
        )

    def _check_exit(self) -> None:
        status = self.proc.wait()
        if status != 0 or self._follow:
            detail = self._stderr.read().decode("utf-8", "replace").strip()
            raise JournalError(f"journalctl exited with status {status}: {detail}")

    def close(self) -> None:
        import subprocess  # noqa: PLC0415 - see the imports

        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        # Only what process() handed out counts as read: the unread pipe tail is read again.
        self._cursor.save_if_due(force=True)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


def _json_value(value: Any) -> bytes | None:
    """journalctl's JSON: a string, an array of byte values (binary data), or null (too big)."""
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, list) and all(isinstance(b, int) for b in value):
        return bytes(value)
    if isinstance(value, list) and value:
        return _json_value(value[0])  # the field occurs more than once: take the first
    return None


def _this_machine() -> list[str]:
    try:
        machine = Path("/etc/machine-id").read_text(encoding="ascii").strip()
    except OSError:
        return []
    return [f"_MACHINE_ID={machine}"] if machine else []


def _journalctl_source(options: FollowOptions) -> list[str]:
    if options.files:
        return [f"--file={f}" for f in options.files]
    if options.directory is not None:
        return [f"--directory={options.directory}"]
    return []


def _journalctl_units(program: str, source: list[str], units: Sequence[str]) -> list[str]:
    plain, globs = _split_globs(units)
    if globs:
        import subprocess  # noqa: PLC0415 - see the imports

        present = subprocess.run(
            [program, *source, "--field=_SYSTEMD_UNIT"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.split()
        plain += _glob_matches(set(present), globs)
    return list(dict.fromkeys(plain))


def _split_globs(units: Sequence[str]) -> tuple[list[str], list[str]]:
    """(plain unit names, shell globs such as ``actions.runner.*``), each in the given order."""
    plain = [u for u in units if not any(c in u for c in "*?[")]
    return plain, [u for u in units if u not in plain]


def _glob_matches(present: set[str], globs: Sequence[str]) -> list[str]:
    import fnmatch  # noqa: PLC0415 - see the imports

    return sorted(u for u in present if any(fnmatch.fnmatchcase(u, g) for g in globs))


# --- plain log files ---------------------------------------------------------------------------
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

        write_atomically(self._store, json.dumps(state, sort_keys=True))
        self._dirty = False

    def close(self) -> None:
        if self._dirty:
            self._save()
        for tail in self._tails:
            if tail.handle is not None:
                tail.handle.close()
                tail.handle = None


# --- choosing and driving ----------------------------------------------------------------------
def _journalctl_present() -> bool:
    import shutil  # noqa: PLC0415 - see the imports

    return shutil.which("journalctl") is not None


def open_follower(
    options: FollowOptions, state_dir: Path | None, *, now: datetime | None = None
) -> Follower:
    """The best backend for this host, or the one ``options.backend`` names."""
    backend = options.backend
    if backend == "auto":
        if options.log_files and not _journalctl_present():
            backend = "files"
        elif _systemd_reader() is not None:
            backend = "systemd"
        elif _journalctl_present():
            backend = "journalctl"
        elif options.log_files:
            backend = "files"
        else:
            raise JournalError(
                "no journal here (neither systemd-python nor journalctl): configure log files "
                "to follow, e.g. Docker Desktop's log or /var/log/messages"
            )
    if backend == "systemd":
        return SystemdFollower(options, state_dir, now=now)
    if backend == "journalctl":
        return JournalctlFollower(options, state_dir, now=now)
    if backend == "files":
        return LogFileFollower(options, state_dir, now=now)
    raise JournalError(f"unknown journal backend {backend!r}: use auto, systemd, journalctl, files")


def follow(
    follower: Follower,
    on_failure: Callable[[AuthFailure], None],
    stop: threading.Event,
    *,
    stop_check: float = 0.5,
) -> None:
    """Run ``follower`` until ``stop`` is set, calling ``on_failure`` for each failure, in order.

    Waits on the follower's descriptor; ``stop_check`` only bounds how long a set ``stop`` goes
    unnoticed. Does not close the follower.
    """
    while not stop.is_set():
        fd = follower.fileno()
        wait = follower.timeout()
        wait = stop_check if wait is None else min(wait, stop_check)
        if fd is None:
            stop.wait(wait)
        elif wait > 0:
            select.select([fd], [], [], wait)
        for failure in follower.process():
            on_failure(failure)


def scan(
    options: FollowOptions,
    *,
    since: datetime | None = None,
    now: datetime | None = None,
    workers: int = 1,
) -> Iterator[AuthFailure]:
    """One pass over what is logged now (from ``since``, default ``max_age`` ago); no cursor.

    ``workers > 1`` (systemd-python backend only) splits the time range between that many
    forked processes, for large journals on several cores. Only for single-threaded callers
    such as the CLI: forking a threaded process (the daemon) is unsafe.
    """
    now = now or datetime.now(UTC)
    start = since or now - options.max_age
    backend = options.backend
    if backend == "auto":
        if options.log_files:
            backend = "files"
        elif _systemd_reader() is not None:
            backend = "systemd"
        else:
            backend = "journalctl"
    if backend == "systemd":
        yield from _scan_systemd(options, start, now, workers)
    elif backend == "journalctl":
        ctl = JournalctlFollower(options, None, now=now, since=start, follow=False)
        try:
            while not ctl.finished:
                select.select([ctl.fileno()], [], [])
                yield from ctl.process()
        finally:
            ctl.close()
    elif backend == "files":
        missing = [str(p) for p in options.log_files if not p.is_file()]
        if missing:
            raise JournalError(f"log file(s) not found: {', '.join(missing)}")
        files = LogFileFollower(options, None, now=now, since=start)
        try:
            yield from files.process()
        finally:
            files.close()
    else:
        raise JournalError(
            f"unknown journal backend {backend!r}: use auto, systemd, journalctl, files"
        )


def _scan_systemd(
    options: FollowOptions, start: datetime, now: datetime, workers: int
) -> Iterator[AuthFailure]:
    probe = SystemdFollower(options, None, now=now, since=start)
    span = _matched_span(probe._reader) if workers > 1 else None
    if span is None:
        try:
            yield from _read_slice(probe, None)
        finally:
            probe.close()
        return
    probe.close()  # sd-journal objects must not cross a fork
    first, last = span
    step = (last - first) // workers + 1
    cuts = [first + i * step for i in range(workers)] + [last + 1]
    slices = list(itertools.pairwise(cuts))
    children = [_fork_slice(options, now, lo, hi) for lo, hi in slices[:-1]]
    try:
        own = _slice_failures(options, now, *slices[-1])
        while children:
            pid, fd = children.pop(0)
            yield from _collect(pid, fd)
        yield from own
    finally:
        for pid, fd in children:
            os.close(fd)
            os.waitpid(pid, 0)


def _matched_span(reader: Any) -> tuple[int, int] | None:
    """(first, last) realtime of the matched entries from the reader's position on."""
    if not reader._next():
        return None
    first = int(reader._get_realtime())
    reader.seek_tail()
    if not reader._previous():
        return None
    return first, int(reader._get_realtime())


def _read_slice(follower: SystemdFollower, until: int | None) -> Iterator[AuthFailure]:
    current = follower._current_unread
    more = True
    while more:
        failures, more = read_failures(
            follower._reader, follower._options, current=current, until=until
        )
        current = False
        yield from failures


def _slice_failures(options: FollowOptions, now: datetime, lo: int, hi: int) -> list[AuthFailure]:
    follower = SystemdFollower(options, None, now=now, since=_from_us(lo))
    try:
        follower._reader.seek_realtime(lo)  # exact microseconds, not via a float
        return list(_read_slice(follower, hi))
    finally:
        follower.close()


def _fork_slice(options: FollowOptions, now: datetime, lo: int, hi: int) -> tuple[int, int]:
    import pickle  # noqa: PLC0415 - see the imports

    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            os.close(read_end)
            with os.fdopen(write_end, "wb") as out:
                out.write(pickle.dumps(_slice_failures(options, now, lo, hi)))
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    return pid, read_end


def _collect(pid: int, fd: int) -> list[AuthFailure]:
    import pickle  # noqa: PLC0415 - see the imports

    with os.fdopen(fd, "rb") as result:
        payload = result.read()
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise JournalError("a journal scan worker failed; run with one worker to see why")
    failures: list[AuthFailure] = pickle.loads(payload)  # noqa: S301 - our own child wrote it
    return failures
