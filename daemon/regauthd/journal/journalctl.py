"""The journalctl follower: ``journalctl -o export`` in a subprocess (hosts without
systemd-python).

Same cursor file as the systemd-python follower. ``--cursor`` rather than ``--after-cursor``,
because the latter skips one entry blindly, losing one when the cursor's entry was vacuumed.

journalctl filters in C: ``--grep`` (PCRE2 on MESSAGE, with ``--case-sensitive=false``) keeps
only the entries whose message holds one of the rules' phrases (:data:`GREP_BRANCHES`), so only
those are formatted (``-o export``: ``-o json`` costs journalctl ~25 us more per entry), piped
and parsed here; every kept entry still goes through
:meth:`~regauthd.journal.recognize.Recognizer.might_match` and the rules, so the failures found
are exactly the unfiltered ones. A journalctl built without PCRE2 (or one that refuses the
pattern) is asked once (:func:`grep_accepted`) and then read unfiltered. With extra patterns from
the settings (Python regexes) nothing is filtered. The cursor then moves only on kept entries: a
restart reads again from the last one kept, and finds the same. A one-shot scan
(:mod:`regauthd.journal.scan`) may run several followers over slices of the time range
(``since_us``/``until_us``), side by side.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING

from regauthd.journal.backend import FollowOptions, JournalError, glob_matches, split_globs
from regauthd.journal.cursor import CursorKeeper, from_realtime_us, to_realtime_us
from regauthd.journal.exportstream import ExportEntry, split_entries
from regauthd.journal.recognize import AuthFailure, Recognizer

if TYPE_CHECKING:
    import subprocess

# subprocess and shutil are imported where this backend needs them: `scan-journal` on the
# systemd-python path starts in about half the time, and that start is part of what
# bench/journal.py measures against journalctl | grep.


def journalctl_present() -> bool:
    """Whether ``journalctl`` is on the PATH."""
    import shutil  # noqa: PLC0415 - see the imports

    return shutil.which("journalctl") is not None


_REFUSAL_WORDS = ("pattern", "pcre", "grep")
"""What journalctl says when it cannot --grep: "Compiled without pattern matching support",
"PCRE2 support is not installed", "Bad pattern ...", "unrecognized option '--grep'"."""
_grep_verdicts: dict[tuple[str, str], bool] = {}


_TOKEN_CHAR = r"""[^\s"':(]"""
"""What may not stand right before a registry error code (``recognize._NOT_TOKEN_CHAR``)."""

_KELVIN = "\u212a"

GREP_BRANCHES = (
    rf"q(?:uests(?<=429 too many requests|toomanyrequests)(?<!{_TOKEN_CHAR}toomanyrequests)"
    r"|uired(?<=authentication required))",
    r"word(?<=incorrect username or password|invalid username/password)",
    r"b(?:idden(?<=403 forbidden)|asic auth credentials(?<=no basic auth credentials))",
    # journalctl matches bytes: the Kelvin sign (lowered: k) is three of them, hence the twins.
    f"xpired(?<=authorization token has expired|authorization to{_KELVIN}en has expired)",
    r"_scope(?<=insufficient_scope)",
    rf"denied(?::(?<!{_TOKEN_CHAR}denied:)|(?<=pull access denied|http basic: access denied"
    r"|requested access to the resource is denied))",
    rf"h(?:oriz(?:ed(?<=unauthorized)(?<!{_TOKEN_CHAR}unauthorized)|e(?<=failed to authorize))"
    # The rule's own context, `reached your (?:\\w+ )?pull rate limit`, with any word.
    r"|(?<=reach)ed your (?:[^ ]+ )?pull rate limit)",
)
"""The rules' phrases (:func:`~regauthd.journal.recognize.rule_literals`) for PCRE2, grouped by
the letter each is matched from: one that is rare in log lines (``q``, ``w``, ``b``, ``x``,
``_``) or at least rarer than the phrase's first one (``d``, ``h``), the look-behinds then
checking the whole phrase; the error codes only where the rules take them (not after a letter,
digit, ``/``, ``-``...: so ``acme/unauthorized`` is left out). A phrase that holds another one
is left to it (``401 unauthorized`` is an ``unauthorized`` after a blank), and so is one whose
rule also wants another's (``failed to fetch oauth token:`` wants ``401 unauthorized``).

Without JIT, PCRE2 enters its matcher at every position holding a possible first letter and
tries the branches that start with it. For 10,000 docker.service messages of
``bench/journal.py`` (callgrind, ``-o export``): journalctl runs 158 M instructions with a
pattern that never starts (``zzzqqq``), 221 M with this one, 455 M with the words
``auth|access denied|...|_scope`` (which hand over 11,389 entries where this hands over 300);
``journalctl -u docker.service -o cat`` runs 298 M. A test writes every phrase, in every case
the rules accept, after every character the error codes may follow, into a journal and checks
that journalctl keeps it."""


def grep_pattern(recognizer: Recognizer) -> str | None:
    """The PCRE2 pattern for ``journalctl --grep --case-sensitive=false``: any of
    :data:`GREP_BRANCHES`.

    ``None`` when the settings add patterns: they can match any message. A message the rules
    accept holds a rule's phrase in its lowercased text (after a character that is no token
    character, for the error codes): case-insensitive matching folds every ASCII letter as
    ``str.lower()`` does. journalctl's PCRE2 matches bytes, not characters (no ``PCRE2_UTF``):
    of the non-ASCII characters only the Kelvin sign and dotted I lower to ASCII letters; the
    Kelvin sign is written out where a phrase has a ``k``, dotted I lowers to two characters
    and cannot complete a phrase. No character lowers to a blank, quote, colon or parenthesis.
    So the kept entries are a superset of the failures.
    """
    if recognizer.extra:
        return None
    return "|".join(GREP_BRANCHES)


def grep_accepted(program: str, pattern: str) -> bool:
    """Whether this journalctl runs ``--grep=pattern``; asked once per program and pattern.

    journalctl compiles the pattern before it opens any journal, so a source that cannot be
    opened (``/dev/null``) answers in a few milliseconds: refused with words about the pattern,
    PCRE2 or the option, or accepted (any other complaint).
    """
    key = (program, pattern)
    if key not in _grep_verdicts:
        import subprocess  # noqa: PLC0415 - see the imports

        argv = [program, f"--grep={pattern}", "--case-sensitive=false", "--lines=0"]
        proc = subprocess.run(
            [*argv, "--quiet", "--no-pager", "--file=/dev/null"],
            capture_output=True,
            text=True,
            check=False,
            stdin=subprocess.DEVNULL,
            timeout=30,
        )
        said = proc.stderr.lower()
        _grep_verdicts[key] = proc.returncode == 0 or not any(w in said for w in _REFUSAL_WORDS)
    return _grep_verdicts[key]


def journalctl_query(options: FollowOptions) -> tuple[str, list[str]]:
    """journalctl's path, and the arguments that pick the entries to read: the journal (files,
    directory or the system's), the units' matches, this machine."""
    import shutil  # noqa: PLC0415 - see the imports

    program = shutil.which("journalctl")
    if program is None:
        raise JournalError("journalctl is not installed: no journald on this host?")
    source = journalctl_source(options)
    units = _journalctl_units(program, source, options.units)
    selection = [*source, *(f"_SYSTEMD_UNIT={u}" for u in units)]
    if not units:
        selection.append("_SYSTEMD_UNIT=regauthd-no-such.service")
    if not source:
        selection += _this_machine()
    return program, selection


def matched_span(query: tuple[str, list[str]], since: datetime) -> tuple[int, int] | None:
    """The realtime (us) of the first and the last entry the query selects from ``since`` on,
    or None when there is none; two short journalctl runs side by side (~10 ms)."""
    import subprocess  # noqa: PLC0415 - see the imports

    program, selection = query
    argv = [program, "-o", "export", "--output-fields=_BOOT_ID", "--no-pager", "--merge"]
    runs = [
        subprocess.Popen(
            [*argv, *extra, *selection],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )
        # journalctl has no "first N" (and --since overrides --lines): read the head and stop.
        for extra in ([f"--since={realtime_arg(since)}"], ["--lines=1"])
    ]
    times: list[int] = []
    for proc in runs:
        entry = first_entry(proc)
        if entry is not None and b"__REALTIME_TIMESTAMP" in entry:
            times.append(int(entry[b"__REALTIME_TIMESTAMP"]))
    if len(times) != 2 or times[0] > times[1]:
        return None
    return times[0], times[1]


def first_entry(proc: subprocess.Popen[bytes]) -> ExportEntry | None:
    """The first entry a ``journalctl -o export`` run writes (None: none); the run is stopped
    once it is read (journalctl has no "first N")."""
    stdout: IO[bytes] = proc.stdout  # type: ignore[assignment]  # PIPE given
    data = b""
    while b"\n\n" not in data:
        chunk = os.read(stdout.fileno(), 1 << 16)
        if not chunk:
            break
        data += chunk
    stdout.close()
    proc.terminate()
    proc.wait()
    entries, _ = split_entries(data)
    return entries[0] if entries else None


class JournalctlFollower:
    """The same follower on ``journalctl -o export`` (hosts without systemd-python).

    ``since_us`` and ``until_us`` (both inclusive) read one slice of a one-shot scan; ``query``
    is :func:`journalctl_query`'s answer, when the caller has it already.
    """

    def __init__(
        self,
        options: FollowOptions,
        state_dir: Path | None,
        *,
        now: datetime | None = None,
        since: datetime | None = None,
        follow: bool = True,
        grep: bool = True,
        since_us: int | None = None,
        until_us: int | None = None,
        query: tuple[str, list[str]] | None = None,
    ) -> None:
        import subprocess  # noqa: PLC0415 - see the imports

        program, selection = query or journalctl_query(options)
        self._options = options
        self._cursor = CursorKeeper(state_dir, options.save_interval)
        cursor, floor = self._cursor.start(now or datetime.now(UTC), options.max_age, since)
        # --merge: without it `journalctl --follow` on files shows only the newest boot in them,
        # and fails while the journal holds no entry yet. It would also add other machines'
        # journals (journal-remote's): the _MACHINE_ID match keeps to this one, as LOCAL_ONLY.
        argv = [program, "-o", "export", "--no-pager", "--no-tail", "--merge"]
        argv.append("--output-fields=MESSAGE,_SYSTEMD_UNIT,CONTAINER_ID")
        if follow:
            argv.append("--follow")
        # --cursor, not --after-cursor: journalctl skips one entry blindly after the seek, so when
        # the cursor's entry was vacuumed the first newer one would be lost. We skip it ourselves.
        if cursor:
            argv.append(f"--cursor={cursor}")
        else:
            argv.append(f"--since={realtime_arg(since_us if since_us is not None else floor)}")
        if until_us is not None:
            argv.append(f"--until={realtime_arg(until_us)}")  # inclusive
        self._skip_cursor = cursor
        argv += selection
        pattern = grep_pattern(options.recognizer) if grep else None
        self.grep: str | None = None
        """The ``--grep`` pattern journalctl filters with, or None: every entry is read."""
        if pattern is not None and grep_accepted(program, pattern):
            argv += [f"--grep={pattern}", "--case-sensitive=false"]
            self.grep = pattern
        self._buffer = b""
        self.entries_read = 0
        """How many entries journalctl handed over (all of them without ``--grep``)."""
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
        data = self._buffer + b"".join(chunks) if self._buffer else b"".join(chunks)
        entries, used = split_entries(data)
        self._buffer = data[used:]
        failures: list[AuthFailure] = []
        self.entries_read += len(entries)
        for entry in entries:
            failure = self._entry(entry)
            if failure is not None:
                failures.append(failure)
        if self._eof:
            self._check_exit()
        return failures

    def _entry(self, entry: ExportEntry) -> AuthFailure | None:
        cursor = entry.get(b"__CURSOR")
        if cursor is not None:
            self._cursor.pending = cursor.decode("ascii", "replace")
        if self._skip_cursor is not None:
            seen, self._skip_cursor = self._skip_cursor, None
            if self._cursor.pending == seen:
                return None  # read before the restart
        if b"CONTAINER_ID" in entry:
            return None
        message = entry.get(b"MESSAGE")
        if message is None or not self._options.recognizer.might_match(message):
            return None
        found = self._options.recognizer.find(message.decode("utf-8", "replace"))
        if found is None:
            return None  # the unit and the time are read for failures only
        unit = entry.get(b"_SYSTEMD_UNIT") or b"unknown"
        when = from_realtime_us(int(entry[b"__REALTIME_TIMESTAMP"]))
        return found.at(unit.decode("utf-8", "replace"), when)

    def _check_exit(self) -> None:
        status = self.proc.wait()
        if status != 0 or self._follow:
            detail = self._stderr.read().decode("utf-8", "replace").strip()
            # With --grep, journalctl exits 1, saying nothing, when no entry matched.
            if status == 1 and self.grep is not None and not self._follow and not detail:
                return
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


def realtime_arg(when: datetime | int) -> str:
    """``@SECONDS.MICROSECONDS`` for ``--since``/``--until``, exact to the microsecond (an int
    is microseconds since the epoch; a float would round some of them)."""
    us = when if isinstance(when, int) else to_realtime_us(when)
    return f"@{us // 1_000_000}.{us % 1_000_000:06d}"


def _this_machine() -> list[str]:
    try:
        machine = Path("/etc/machine-id").read_text(encoding="ascii").strip()
    except OSError:
        return []
    return [f"_MACHINE_ID={machine}"] if machine else []


def journalctl_source(options: FollowOptions) -> list[str]:
    """The arguments that name the journal to read (none: the system's)."""
    if options.files:
        return [f"--file={f}" for f in options.files]
    if options.directory is not None:
        return [f"--directory={options.directory}"]
    return []


def _journalctl_units(program: str, source: list[str], units: Sequence[str]) -> list[str]:
    plain, globs = split_globs(units)
    if globs:
        import subprocess  # noqa: PLC0415 - see the imports

        present = subprocess.run(
            [program, *source, "--field=_SYSTEMD_UNIT"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.split()
        plain += glob_matches(set(present), globs)
    return list(dict.fromkeys(plain))
