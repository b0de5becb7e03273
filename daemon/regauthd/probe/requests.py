"""What other threads ask of the probe thread, collected until its next round.

The daemon's loop thread and the journal watch ask for configs to be read again, registries to
be probed soon and conflicts to be checked; :class:`ProbeRequests` collects the asks (thread-safe)
and the probe thread takes them all at once at the start of each round (:meth:`take`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from regauthd.dockerconfig.report import ReportedConflict


@dataclass(frozen=True, slots=True)
class Requests:
    """Everything asked since the last round."""

    read_all: bool
    """Read every watched config again (the first round, a restart)."""
    paths: frozenset[str]
    """Configs (normalized paths) to read again."""
    urgent: frozenset[str] | None
    """Registries to probe as soon as allowed (None: every registry)."""
    conflicts: tuple[tuple[str, ReportedConflict], ...]
    """(config, conflict) pairs whose two credentials are to be probed."""


class ProbeRequests:
    """Collects requests from any thread; the probe thread takes them with :meth:`take`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._read_all = True
        self._paths: set[str] = set()
        self._urgent: set[str] | None = set()
        self._conflicts: list[tuple[str, ReportedConflict]] = []

    def read_all(self) -> None:
        with self._lock:
            self._read_all = True

    def read(self, paths: Iterable[str]) -> None:
        with self._lock:
            self._paths.update(paths)

    def expedite(self, registries: Iterable[str] | None) -> None:
        """Probe these registries (canonical names; None: all) as soon as allowed."""
        with self._lock:
            if registries is None or self._urgent is None:
                self._urgent = None
            else:
                self._urgent.update(registries)

    def check_conflict(self, path: str, conflict: ReportedConflict) -> None:
        with self._lock:
            self._conflicts.append((path, conflict))

    def take(self) -> Requests:
        """Everything asked so far; the next call starts empty."""
        with self._lock:
            taken = Requests(
                read_all=self._read_all,
                paths=frozenset(self._paths),
                urgent=None if self._urgent is None else frozenset(self._urgent),
                conflicts=tuple(self._conflicts),
            )
            self._read_all = False
            self._paths = set()
            self._urgent = set()
            self._conflicts = []
        return taken


__all__ = ["ProbeRequests", "Requests"]
