"""What every journal follower backend shares: the options, the interface, the error.

The backends (:mod:`regauthd.journal.systemd`, :mod:`regauthd.journal.journalctl`,
:mod:`regauthd.journal.logfiles`) implement :class:`Follower` over :class:`FollowOptions`;
:mod:`regauthd.journal.follow` picks one and drives it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Protocol

from regauthd.journal.recognize import DEFAULT, AuthFailure, Recognizer

# fnmatch is imported where unit globs need it: `scan-journal` on the systemd-python path starts
# in about half the time, and that start is part of what bench/journal.py measures.

DEFAULT_UNITS = ("docker.service", "containerd.service")


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
    """What the daemon drives; see :mod:`regauthd.journal.follow`."""

    def fileno(self) -> int | None: ...

    def timeout(self) -> float | None: ...

    def process(self) -> list[AuthFailure]: ...

    def close(self) -> None: ...


def split_globs(units: Sequence[str]) -> tuple[list[str], list[str]]:
    """(plain unit names, shell globs such as ``actions.runner.*``), each in the given order."""
    plain = [u for u in units if not any(c in u for c in "*?[")]
    return plain, [u for u in units if u not in plain]


def glob_matches(present: set[str], globs: Sequence[str]) -> list[str]:
    import fnmatch  # noqa: PLC0415 - see the imports

    return sorted(u for u in present if any(fnmatch.fnmatchcase(u, g) for g in globs))
