"""``regauthd scan-journal``: list the registry auth failures logged in the journal, once.

Reads the system journal (or ``--file``/``--directory`` journal files, or plain ``--log-file``
logs where there is no journald) from ``--since`` on, and prints every auth failure found:
one JSON object per line with ``--json``, one readable line each otherwise. Exit status 0 when
none was found, 1 when some were, 2 on a usage error or when the journal cannot be read.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from regauthd.commands import EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE
from regauthd.journal.access import require_readable
from regauthd.journal.backend import DEFAULT_UNITS, FollowOptions, JournalError
from regauthd.journal.recognize import AuthFailure, PatternError, Recognizer, compile_patterns
from regauthd.journal.scan import scan
from regauthd.journal.since import SinceError, parse_since
from regauthd.terminal import json_line, printable

DEFAULT_SINCE = timedelta(hours=24)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--since",
        metavar="TIME",
        help="start here; what journalctl --since accepts: 2026-11-30 12:00, 2026-11-30, "
        "12:00, today, yesterday, -2h, '1h 30min', '3 hours ago', @EPOCH; local time unless "
        "an offset or UTC is given (default: 24 hours ago)",
    )
    parser.add_argument(
        "--unit",
        action="append",
        metavar="U",
        help="systemd unit to read, repeatable, globs allowed "
        f"(default: {', '.join(DEFAULT_UNITS)})",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--file", action="append", type=Path, metavar="F", help="read this journal file"
    )
    source.add_argument(
        "--directory", type=Path, metavar="D", help="read the journal files in this directory"
    )
    source.add_argument(
        "--log-file",
        action="append",
        type=Path,
        metavar="F",
        help="read a plain-text log (no journald: Docker Desktop's log, /var/log/messages)",
    )
    parser.add_argument(
        "--pattern",
        action="append",
        default=[],
        metavar="REGEX",
        help="an extra failure pattern (named groups: registry, repository, kind)",
    )
    parser.add_argument(
        "--backend",
        choices=["auto", "systemd", "journalctl"],
        default="auto",
        help="how to read the journal (default: systemd-python, else journalctl)",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=min(4, os.cpu_count() or 1),
        metavar="N",
        help="processes that share a large scan (default: CPUs, at most 4)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per line")


def render(failure: AuthFailure) -> str:
    """One readable line: when, which unit, what failed where, and the (redacted) log line."""
    where = "/".join(p for p in (failure.registry, failure.repository) if p)
    what = " to ".join(p for p in (failure.operation, where) if p) or "registry access"
    when = failure.time.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    return f"{when} {failure.unit}: {what}: {failure.kind.value}: {failure.message}"


def command(args: argparse.Namespace) -> int:
    now = datetime.now(UTC)
    try:
        since = parse_since(args.since, now=now.astimezone()) if args.since else now - DEFAULT_SINCE
        recognizer = Recognizer(compile_patterns(args.pattern))
    except (SinceError, PatternError) as exc:
        print(f"regauthd scan-journal: {printable(exc)}", file=sys.stderr)
        return EXIT_USAGE
    options = FollowOptions(
        units=tuple(args.unit) if args.unit else DEFAULT_UNITS,
        directory=args.directory,
        files=tuple(args.file or ()),
        log_files=tuple(args.log_file or ()),
        backend="files" if args.log_file else args.backend,
        recognizer=recognizer,
    )
    count = 0
    summary = RegistrySummary()
    try:
        require_readable(options)
        for failure in scan(options, since=since, now=now, workers=max(1, args.jobs)):
            count += 1
            summary.add(failure)
            if args.json:
                print(json_line(failure.as_dict()), flush=False)
            else:
                print(printable(render(failure)))
    except JournalError as exc:
        print(f"regauthd scan-journal: {printable(exc)}", file=sys.stderr)
        return EXIT_USAGE
    sys.stdout.flush()
    print(
        f"regauthd scan-journal: {count} registry auth failure(s) since "
        f"{since.isoformat(timespec='seconds')}" + (":" if count else ""),
        file=sys.stderr,
    )
    for line in summary.lines():
        print(f"  {printable(line)}", file=sys.stderr)
    return EXIT_PROBLEMS if count else EXIT_OK


class RegistrySummary:
    """Failures counted per registry, by kind, with the last one's time and unit."""

    def __init__(self) -> None:
        self._kinds: dict[str, Counter[str]] = {}
        self._last: dict[str, AuthFailure] = {}

    def add(self, failure: AuthFailure) -> None:
        name = failure.registry or "unknown"  # the log line names no registry
        self._kinds.setdefault(name, Counter())[failure.kind.value] += 1
        last = self._last.get(name)
        if last is None or failure.time >= last.time:
            self._last[name] = failure

    def lines(self) -> list[str]:
        """One line per registry, the most failures first."""
        order = sorted(self._kinds, key=lambda n: (-sum(self._kinds[n].values()), n))
        width = max((len(n) for n in order), default=0)
        out = []
        for name in order:
            kinds = self._kinds[name]
            detail = ", ".join(f"{kind} {n}" for kind, n in kinds.most_common())
            last = self._last[name]
            when = last.time.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
            out.append(
                f"{name.ljust(width)}  {sum(kinds.values()):>4}  ({detail}); "
                f"last {when} UTC by {last.unit}"
            )
        return out
