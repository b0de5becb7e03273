"""Raising alerts: suppression of repeats, then metrics, then the configured logger.

:class:`Alerter` raises alerts of the kinds in :data:`regauthd.alerts.catalogue.CATALOGUE`;
its :class:`Suppressor` lets the same alert (kind, subject) out at most once per window and
summarizes the rest when the window ends. :class:`RaiseAlert` is how the rest of the daemon
raises one (the daemon's :meth:`~regauthd.service.daemon.Daemon.alert`, or an alerter's own).
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from regauthd.alerts.catalogue import (
    CATALOGUE,
    PRIORITY_ERR,
    PRIORITY_INFO,
    PRIORITY_NOTICE,
    PRIORITY_WARNING,
    AlertKind,
    CatalogueEntry,
    alert_event,
)
from regauthd.alerts.metrics import Metrics

# The structlog method an alert is logged with (notice has no method of its own).
_PRIORITY_METHOD = {
    PRIORITY_ERR: "error",
    PRIORITY_WARNING: "warning",
    PRIORITY_NOTICE: "info",
    PRIORITY_INFO: "info",
}


class RaiseAlert(Protocol):
    """Raise one alert of a catalogued kind (loop thread only); False when it was suppressed."""

    def __call__(self, kind: AlertKind, subject: str, **fields: Any) -> bool: ...


@dataclass(slots=True)
class _Window:
    ends: float
    suppressed: int
    last_fields: Mapping[str, Any]


class Suppressor:
    """The same alert (kind, subject) at most once per window; the window ends with a summary.

    Pure bookkeeping: the caller passes the time, so tests drive the clock.
    """

    def __init__(self, window: float) -> None:
        self.window = window
        self._open: dict[tuple[AlertKind, str], _Window] = {}
        self._deadlines: list[tuple[float, tuple[AlertKind, str]]] = []
        """(end, key) of each window once it suppressed something: a heap, so the next
        deadline costs O(log n) with 10,000 configs' windows open, not a scan of them all."""

    def admit(self, kind: AlertKind, subject: str, fields: Mapping[str, Any], now: float) -> bool:
        """True: emit this alert now. False: counted for the window's summary."""
        key = (kind, subject)
        current = self._open.get(key)
        if current is not None and now < current.ends:
            if not current.suppressed:
                heapq.heappush(self._deadlines, (current.ends, key))
            current.suppressed += 1
            current.last_fields = fields
            return False
        if self.window > 0:
            self._open[key] = _Window(now + self.window, 0, fields)
        return True

    def due(self, now: float) -> list[tuple[AlertKind, str, int, Mapping[str, Any]]]:
        """Close the windows that ended: (kind, subject, suppressed, last fields) for each that
        suppressed something."""
        summaries = []
        for key, current in list(self._open.items()):
            if now >= current.ends:
                del self._open[key]
                if current.suppressed:
                    summaries.append((key[0], key[1], current.suppressed, current.last_fields))
        return summaries

    def next_deadline(self) -> float | None:
        """When the next window with something to summarize ends (None: nothing pending)."""
        while self._deadlines:
            ends, key = self._deadlines[0]
            current = self._open.get(key)
            if current is not None and current.suppressed and current.ends == ends:
                return ends
            heapq.heappop(self._deadlines)  # that window was summarized or replaced
        return None

    def prune(self, now: float) -> None:
        """Forget ended windows that suppressed nothing (keeps memory bounded)."""
        for key, current in list(self._open.items()):
            if now >= current.ends and not current.suppressed:
                del self._open[key]


class Alerter:
    """Raises alerts from the catalogue: suppression, metrics, then the configured logger.

    Call it from one thread (the daemon's loop); the probe and journal hooks post to that loop.
    """

    def __init__(
        self,
        *,
        suppress_window: float,
        metrics: Metrics | None = None,
        logger: Any = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.suppressor = Suppressor(suppress_window)
        self.metrics = metrics or Metrics()
        self._logger = logger
        self._clock = clock
        self._listeners: list[Callable[[Mapping[str, Any]], None]] = []
        self._suppressed_listeners: list[Callable[[AlertKind, str], None]] = []

    def add_listener(self, listener: Callable[[Mapping[str, Any]], None]) -> None:
        """Have ``listener`` see every alert event that goes out (the daemon's status file)."""
        self._listeners.append(listener)

    def add_suppressed_listener(self, listener: Callable[[AlertKind, str], None]) -> None:
        """Have ``listener`` told (kind, subject) of every alert the window holds back."""
        self._suppressed_listeners.append(listener)

    @property
    def logger(self) -> Any:
        return self._logger if self._logger is not None else structlog.get_logger()

    def alert(self, kind: AlertKind, subject: str, **fields: Any) -> bool:
        """Raise one alert of a catalogued kind; False when suppressed (it is still counted)."""
        entry = CATALOGUE[kind]
        self.metrics.count("alerts", kind)
        now = self._clock()
        if not self.suppressor.admit(kind, subject, fields, now):
            self.metrics.count("alerts_suppressed", kind)
            for listener in self._suppressed_listeners:
                listener(kind, subject)
            return False
        self._emit(entry, alert_event(entry, subject, fields))
        return True

    def flush_due(self) -> None:
        """Emit the summaries of the windows that have ended."""
        now = self._clock()
        for kind, subject, suppressed, fields in self.suppressor.due(now):
            entry = CATALOGUE[kind]
            self._emit(entry, alert_event(entry, subject, fields, suppressed=suppressed))
        self.suppressor.prune(now)

    def next_deadline(self) -> float | None:
        return self.suppressor.next_deadline()

    def _emit(self, entry: CatalogueEntry, event: dict[str, Any]) -> None:
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:
                structlog.get_logger("regauthd").exception("alerts.listener_failed")
        name = event.pop("event")
        getattr(self.logger, _PRIORITY_METHOD[entry.priority])(name, **event)
