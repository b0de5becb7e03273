"""``regauthd scan-journal``: list the registry auth failures logged in the journal, once.

Reads the system journal (or ``--file``/``--directory`` journal files, or plain ``--log-file``
logs where there is no journald) from ``--since`` on, and prints every auth failure found:
one JSON object per line with ``--json``, one readable line each otherwise. Exit status 0 when
none was found, 1 when some were, 2 on a usage error or when the journal cannot be read.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from regauthd.commands import EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE
from regauthd.journal.access import require_readable
from regauthd.journal.backend import DEFAULT_UNITS, FollowOptions, JournalError
from regauthd.journal.recognize import AuthFailure, PatternError, Recognizer, compile_patterns
from regauthd.journal.scan import scan

DEFAULT_SINCE = timedelta(hours=24)
_RELATIVE = re.compile(r"^-?(\d+)\s*(s|sec|m|min|h|hours?|d|days?|w|weeks?)$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class SinceError(ValueError):
    """A ``--since`` value regauthd cannot read."""


def parse_since(text: str, *, now: datetime) -> datetime:
    """``2026-11-30T12:00:00Z``, ``2026-11-30 12:00`` (UTC unless an offset is given),
    ``@1764504000`` (epoch seconds), ``1h``/``-30m``/``2d`` (that long ago), ``today``."""
    value = text.strip()
    if value == "today":
        return now.replace(hour=0, minute=0, second=0, microsecond=0)
    if value.startswith("@"):
        try:
            return datetime.fromtimestamp(float(value[1:]), UTC)
        except (ValueError, OverflowError):
            raise SinceError(f"--since {text!r}: expected @EPOCH_SECONDS") from None
    m = _RELATIVE.match(value)
    if m:
        amount, unit = int(m.group(1)), m.group(2)[0]
        return now - timedelta(seconds=amount * _UNIT_SECONDS[unit])
    iso = value[:-1] + "+00:00" if value.endswith("Z") else value
    try:
        parsed = datetime.fromisoformat(iso)
    except ValueError:
        raise SinceError(
            f"--since {text!r}: expected a time like 2026-11-30T12:00:00Z, 1h, 30m, 2d, "
            "today or @EPOCH"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--since",
        metavar="TIME",
        help="start here: 2026-11-30T12:00:00Z, 1h, 30m, 2d, today, @EPOCH (default: 24h ago)",
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
        help="processes that share a large scan (systemd backend; default: CPUs, at most 4)",
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
        since = parse_since(args.since, now=now) if args.since else now - DEFAULT_SINCE
        recognizer = Recognizer(compile_patterns(args.pattern))
    except (SinceError, PatternError) as exc:
        print(f"regauthd scan-journal: {exc}", file=sys.stderr)
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
    try:
        require_readable(options)
        for failure in scan(options, since=since, now=now, workers=max(1, args.jobs)):
            count += 1
            if args.json:
                print(json.dumps(failure.as_dict(), ensure_ascii=False), flush=False)
            else:
                print(render(failure))
    except JournalError as exc:
        print(f"regauthd scan-journal: {exc}", file=sys.stderr)
        return EXIT_USAGE
    sys.stdout.flush()
    print(
        f"regauthd scan-journal: {count} registry auth failure(s) since "
        f"{since.isoformat(timespec='seconds')}",
        file=sys.stderr,
    )
    return EXIT_PROBLEMS if count else EXIT_OK
