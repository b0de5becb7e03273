"""The daemon's status file, ``<state_dir>/status.json``: how the running daemon is doing, for
``regauthd status`` (and anything else that asks) to read.

Kept current from the daemon's loop: every change (a repair, an alert, a suppressed alert, a
probe result) schedules one write through :func:`regauthd.statefile.write_atomically`, at most
one a second (a burst writes once, at its end). The loop only takes a snapshot of what it
knows; listing the watched configs (a ``stat`` of each: 10,000 configs take about 0.3 s), the
JSON encoding and the fsync'd write happen on a thread of the file's own, so that a write to a
config is never queued behind them. :class:`StatusFile` is a daemon component (written at start,
and at stop before it returns), a repair listener, an alert listener and a probe listener;
``app.py`` wires it.

The file holds one JSON object::

    {"pid": 123, "started_at": "2026-12-03T10:00:00+00:00",
     "watched_configs": ["/home/u/.docker/config.json"],   # the first WATCHED_LISTED that exist
     "watched_config_count": 1,     # configs the daemon watches (the STATUS= line's count)
     "last_repair": {"path": ..., "at": ..., "changes": ["..."]} | null,
     "last_alert": {"kind": "config.normalized", "subject": ..., "at": ..., "message": ...} | null,
     "suppressed_alerts": {"config.normalized": 36},   # per alert kind, since the start: the
                                    # repeats the suppression window held back
     "probes": {"interval_s": 900.0, "results": [{"config", "registry", "status", "detail",
                "at"}]},            # only when probes run
     "journal": {"units": [...], "running": true, "failures_seen": 0, "alerts_raised": 0}}
                                    # only when the journal is followed

Times are ISO 8601 in UTC. Messages are as the alerts logged them (redacted).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from regauthd.dockerconfig.report import FixReport
from regauthd.service.loop import Loop, Timer
from regauthd.settings import Settings
from regauthd.statefile import write_atomically

if TYPE_CHECKING:
    from regauthd.alerts.catalogue import AlertKind
    from regauthd.probe.result import ProbeResult
    from regauthd.probe.schedule import ProbeKey

log = structlog.get_logger("regauthd")

STATUS_FILE = "status.json"
"""The file's name in the state directory."""
WRITE_INTERVAL_S = 1.0
"""Least time between two writes."""
WATCHED_REFRESH_S = 30.0
"""How old the listed watched configs may be."""
WATCHED_LISTED = 200
"""Watched configs named in the file (all are counted): 10,000 paths would make each write of
it ~700 KB to fsync, once a second while repairs go on, and finding which of them exist a
``stat`` of each (about 0.3 s of a thread that competes with the loop for the interpreter)."""


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class StatusFile:
    """Keeps ``<state_dir>/status.json`` current (loop thread only; see the module docstring)."""

    name = "status"

    def __init__(
        self,
        settings: Settings,
        *,
        loop: Loop,
        watched: Callable[[int], tuple[list[Path], int]],
    ) -> None:
        self._settings = settings
        self._loop = loop
        self._watched_summary = watched
        """``watched(n)``: the first ``n`` watched configs that exist, and how many are watched."""
        self._pid = os.getpid()
        self._started_at = now_iso()
        self._last_repair: dict[str, Any] | None = None
        self._last_alert: dict[str, Any] | None = None
        self._probes: dict[tuple[str, str], dict[str, Any]] | None = None
        self._journal: Callable[[], dict[str, Any]] | None = None
        self._suppressed: dict[str, int] = {}
        self._timer: Timer | None = None
        self._last_write = float("-inf")
        self._watched: list[str] = []
        self._watched_count = 0
        self._watched_set: frozenset[str] = frozenset()
        self._watched_at = float("-inf")
        self._writer = _Writer(self._render_and_write)

    @property
    def path(self) -> Path:
        return self._settings.state_dir / STATUS_FILE

    # -- what the daemon's parts tell it (loop thread) ------------------------------------------

    def track_probes(self) -> None:
        """Probes run: the file gets a ``probes`` object."""
        self._probes = {}

    def track_journal(self, describe: Callable[[], dict[str, Any]]) -> None:
        """The journal is followed: the file gets ``describe()`` as its ``journal`` object."""
        self._journal = describe

    def on_repair(self, config: str, report: FixReport) -> None:
        """A repair listener: remember the last repair that wrote a config."""
        if config not in self._watched_set and len(self._watched) < WATCHED_LISTED:
            self._watched_at = float("-inf")  # a config not named yet, with room: list again
        if not report.written:
            return
        self._last_repair = {
            "path": config,
            "at": now_iso(),
            "changes": [c.describe() for c in report.changes],
        }
        self.changed()

    def on_alert(self, event: Mapping[str, Any]) -> None:
        """An alert listener: remember the last alert that went out."""
        self._last_alert = {
            "kind": str(event.get("event", "")),
            "subject": str(event.get("subject", "")),
            "at": now_iso(),
            "message": str(event.get("message", "")),
        }
        self.changed()

    def on_suppressed(self, kind: AlertKind, subject: str) -> None:
        """A suppressed-alert listener: counted per alert kind since the daemon started."""
        self._suppressed[str(kind)] = self._suppressed.get(str(kind), 0) + 1
        self.changed()

    def on_probe(self, key: ProbeKey, result: ProbeResult) -> None:
        """A probe listener: the latest result per config and registry."""
        if self._probes is None:
            self._probes = {}
        self._probes[(key.config, key.registry)] = {
            "config": key.config,
            "registry": key.registry,
            "status": result.status.value,
            "detail": result.detail,
            "at": now_iso(),
        }
        self.changed()

    def changed(self) -> None:
        """Write soon: now if the last write is a second old, else when it will be."""
        if self._timer is not None and not self._timer.cancelled:
            return
        delay = max(0.0, self._last_write + WRITE_INTERVAL_S - self._loop.clock())
        self._timer = self._loop.call_later(delay, self._due)

    # -- as a daemon component ------------------------------------------------------------------

    def start(self) -> None:
        self.write()

    def reload(self, settings: Settings) -> None:
        self._settings = settings
        self._watched_at = float("-inf")  # new watch paths: list them again
        self.changed()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.write()
        self._writer.close()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every write asked for so far is done (tests; :meth:`stop` does)."""
        return self._writer.flush(timeout)

    def status(self) -> str | None:
        return None

    # -- the file ---------------------------------------------------------------------------------

    def _watched_now(self) -> list[str]:
        """The watched configs, listed again when :data:`WATCHED_REFRESH_S` old (the writer's
        thread; :meth:`on_repair` on the loop reads the set it leaves)."""
        now = self._loop.clock()
        if now - self._watched_at >= WATCHED_REFRESH_S:
            named, self._watched_count = self._watched_summary(WATCHED_LISTED)
            self._watched = [str(p) for p in named]
            self._watched_set = frozenset(self._watched)
            self._watched_at = now
        return self._watched

    def snapshot(self) -> dict[str, Any]:
        """The object the file holds now."""
        data = self._loop_part()
        self._add_watched(data)
        return data

    def _add_watched(self, data: dict[str, Any]) -> None:
        data["watched_configs"] = self._watched_now()
        data["watched_config_count"] = self._watched_count

    def _loop_part(self) -> dict[str, Any]:
        """All but the watched configs (loop thread: copies, so the writer owns what it gets)."""
        data: dict[str, Any] = {
            "pid": self._pid,
            "started_at": self._started_at,
            "watched_configs": None,
            "last_repair": self._last_repair,
            "last_alert": self._last_alert,
            "suppressed_alerts": dict(sorted(self._suppressed.items())),
        }
        if self._probes is not None:
            data["probes"] = {
                "interval_s": self._settings.probe.interval,
                "results": [dict(self._probes[k]) for k in sorted(self._probes)],
            }
        if self._journal is not None:
            data["journal"] = self._journal()
        return data

    def write(self) -> None:
        """Have the file written (on the writer's thread); a failure is logged there and the
        next change tries again."""
        self._last_write = self._loop.clock()
        self._writer.post((self.path, self._loop_part()))

    def _render_and_write(self, job: tuple[Path, dict[str, Any]]) -> None:
        """The writer thread's part: list the watched configs, encode, write."""
        path, data = job
        self._add_watched(data)
        encoded = json.dumps(data, ensure_ascii=False, indent=1).encode() + b"\n"
        try:
            write_atomically(path, encoded)
        except OSError as exc:
            log.warning("status.write_failed", path=str(path), reason=exc.strerror)

    def _due(self) -> None:
        self._timer = None
        self.write()


class _Writer:
    """One thread that runs ``write(job)`` for the latest job posted (older ones not yet
    started are dropped: the file only ever needs the newest state). Started at the first
    post; blocked, it costs no wake-ups."""

    def __init__(self, write: Callable[[Any], None]) -> None:
        self._write = write
        self._cond = threading.Condition()
        self._job: Any = None
        self._busy = False
        self._closing = False
        self._thread: threading.Thread | None = None

    def post(self, job: Any) -> None:
        with self._cond:
            self._job = job
            if self._thread is None or not self._thread.is_alive():
                self._closing = False
                self._thread = threading.Thread(
                    target=self._run, name="regauthd-status", daemon=True
                )
                self._thread.start()
            self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._job is not None or self._closing)
                job, self._job = self._job, None
                if job is None:
                    return  # closing, nothing left
                self._busy = True
            try:
                self._write(job)
            except Exception:
                log.exception("status.write_failed")
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def flush(self, timeout: float | None = None) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._job is None and not self._busy, timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Write what is pending, then end the thread."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)


__all__ = ["STATUS_FILE", "StatusFile"]
