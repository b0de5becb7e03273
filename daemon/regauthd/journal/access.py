"""Whether this user can read the journal at all, checked before a scan.

sd-journal and journalctl both answer an unreadable or absent journal with nothing at all, which
a scan would report as "no failures". :func:`require_readable` turns those cases into a
:class:`~regauthd.journal.backend.JournalError` that says what is missing and what to do.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from regauthd.journal.backend import FollowOptions, JournalError

SYSTEM_JOURNAL_DIRS = (Path("/var/log/journal"), Path("/run/log/journal"))
"""Where journald keeps the system journal: persistent, then volatile."""

_GROUPS_HINT = "run it with sudo, or add the user to the systemd-journal (or adm) group"


def require_readable(
    options: FollowOptions, *, system_dirs: Iterable[Path] = SYSTEM_JOURNAL_DIRS
) -> None:
    """Raise :class:`JournalError` when the journal ``options`` name is missing or unreadable."""
    if options.log_files:
        return  # plain log files: the files backend checks them itself
    if options.files:
        for f in options.files:
            if not f.is_file():
                raise JournalError(f"cannot open journal file {f}: no such file")
            if not os.access(f, os.R_OK):
                raise JournalError(
                    f"cannot read journal file {f}: permission denied; {_GROUPS_HINT}"
                )
        return
    if options.directory is not None:
        _require_files([options.directory], f"the journal directory {options.directory}")
        return
    dirs = [d for d in system_dirs if d.is_dir()]
    _require_files(dirs, "the system journal", system=True)


def _require_files(dirs: list[Path], what: str, *, system: bool = False) -> None:
    if not dirs or not all(d.is_dir() for d in dirs):
        missing = ", ".join(str(d) for d in dirs) or " or ".join(
            str(d) for d in SYSTEM_JOURNAL_DIRS
        )
        raise JournalError(
            f"cannot open {what}: no journal at {missing}"
            + (
                "; journald is not running here or keeps no journal (on a host without journald "
                "read the engine's log with --log-file)"
                if system
                else ""
            )
        )
    files: list[Path] = []
    closed: list[str] = []
    for d in dirs:
        for root, _, names in os.walk(d, onerror=lambda exc: closed.append(str(exc.filename))):
            files.extend(Path(root, n) for n in names if ".journal" in n)
    if not files:
        where = ", ".join(str(d) for d in dirs)
        if closed:
            raise JournalError(
                f"cannot read {what}: {closed[0]} is not open to this user (uid {os.geteuid()}); "
                f"{_GROUPS_HINT}"
            )
        raise JournalError(
            f"cannot open {what}: {where} holds no journal files"
            + (" (is journald running and keeping a journal here?)" if system else "")
        )
    wanted = [f for f in files if f.name.startswith("system")] if system else files
    wanted = wanted or files
    if not any(os.access(f, os.R_OK) for f in wanted):
        uid = os.geteuid()
        raise JournalError(
            f"cannot read {what}: its files ({wanted[0]} and others) are not readable by this "
            f"user (uid {uid}), so the engines' auth failures cannot be seen; {_GROUPS_HINT}"
        )
