"""The daemon's activity summary: one ``info`` line per interval, only when something happened.

Every repair is logged at ``debug`` (``config.repaired``, by :mod:`regauthd.service.repair`)
and the alert suppression window keeps repeats of the same alert quiet, so at ``info`` a busy
minute would look idle. :class:`ActivitySummary` counts both and, every
``[alerts] summary_interval`` seconds in which either happened, logs ``daemon.summary``::

    repaired 37 writes in 4 configs in the last 1m; 2 alerts suppressed

It is a daemon component (its timer), a repair listener and a suppressed-alert listener;
``app.py`` wires it. Loop thread only.
"""

from __future__ import annotations

from collections import Counter

import structlog

from regauthd.alerts.catalogue import AlertKind
from regauthd.dockerconfig.report import FixReport
from regauthd.service.loop import Loop, Timer
from regauthd.settings import Settings

log = structlog.get_logger("regauthd")


def _span(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g}h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g}m"
    return f"{seconds:g}s"


def summary_text(writes: int, configs: int, suppressed: int, interval_s: float) -> str:
    """``repaired 37 writes in 4 configs in the last 1m; 2 alerts suppressed``."""
    parts = []
    if writes:
        parts.append(
            f"repaired {writes} write{'s' * (writes != 1)} in {configs} "
            f"config{'s' * (configs != 1)} in the last {_span(interval_s)}"
        )
    else:
        parts.append(f"no repairs in the last {_span(interval_s)}")
    if suppressed:
        parts.append(f"{suppressed} alert{'s' * (suppressed != 1)} suppressed")
    return "; ".join(parts)


class ActivitySummary:
    """Counts repairs and suppressed alerts; logs one summary line per busy interval."""

    name = "summary"

    def __init__(self, settings: Settings, *, loop: Loop) -> None:
        self._interval = settings.alerts.summary_interval
        self._loop = loop
        self._writes: Counter[str] = Counter()
        self._suppressed: Counter[str] = Counter()
        self._timer: Timer | None = None

    def on_repair(self, config: str, report: FixReport) -> None:
        if report.written:
            self._writes[config] += 1

    def on_suppressed(self, kind: AlertKind, subject: str) -> None:
        self._suppressed[str(kind)] += 1

    def start(self) -> None:
        self._schedule()

    def reload(self, settings: Settings) -> None:
        if settings.alerts.summary_interval != self._interval:
            self._interval = settings.alerts.summary_interval
            self._cancel()
            self._schedule()

    def stop(self) -> None:
        # No last summary: ``daemon.stopping`` (with the repair count) is the daemon's last line.
        self._cancel()

    def status(self) -> str | None:
        return None

    def emit(self) -> None:
        """Log the summary of what happened since the last one (nothing: no line)."""
        writes, suppressed = sum(self._writes.values()), sum(self._suppressed.values())
        if not writes and not suppressed:
            return
        log.info(
            "daemon.summary",
            summary=summary_text(writes, len(self._writes), suppressed, self._interval),
            repairs=writes,
            configs=len(self._writes),
            suppressed=dict(self._suppressed),
        )
        self._writes.clear()
        self._suppressed.clear()

    def _schedule(self) -> None:
        if self._interval <= 0:
            return

        def tick() -> None:
            self._timer = None
            self.emit()
            self._schedule()

        self._timer = self._loop.call_later(self._interval, tick)

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


__all__ = ["ActivitySummary", "summary_text"]
