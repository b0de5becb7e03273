"""What the daemon tells the outside between events, on timers of its loop.

Summaries of suppressed alerts when their window ends, the metrics file (at most once a second
after a change, and once a minute anyway so that its ``regauthd_last_report_timestamp_seconds``
tells a fleet's rules the daemon is alive), ``STATUS=`` when it changed (at most once a second)
and ``WATCHDOG=1`` pings.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

import structlog

from regauthd.alerts.alerter import Alerter
from regauthd.alerts.metrics import Metrics
from regauthd.service.loop import Loop, Timer
from regauthd.service.sdnotify import Notifier
from regauthd.settings import Settings

log = structlog.get_logger("regauthd")

_METRICS_FLUSH_DELAY = 1.0
METRICS_REFRESH_S = 60.0
"""The longest the metrics file goes unwritten while the daemon runs."""
_STATUS_INTERVAL = 1.0


class Reporter:
    """Schedules the daemon's reports on ``loop`` (loop thread only).

    ``status_line()`` renders the current ``STATUS=`` line.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        loop: Loop,
        notifier: Notifier,
        alerter: Alerter,
        metrics: Metrics,
        status_line: Callable[[], str],
    ) -> None:
        self._settings = settings
        self._loop = loop
        self._notifier = notifier
        self._alerter = alerter
        self._metrics = metrics
        self._status_line = status_line
        self._flush_timer: Timer | None = None
        self._metrics_timer: Timer | None = None
        self._refresh_timer: Timer | None = None
        self._status = ""
        self._status_timer: Timer | None = None
        self._watchdog: tuple[float, int] | None = None
        """(interval, loop thread) once the watchdog runs."""
        self._last_ping = 0.0

    def reload(self, settings: Settings) -> None:
        """New settings: whether and where the metrics file is written."""
        self._settings = settings

    def alerted(self) -> None:
        """An alert was raised: schedule its window's summary and the metrics file."""
        self._schedule_alert_flush()
        self._schedule_metrics()

    def metrics_changed(self) -> None:
        """Write the metrics file soon (coalesced)."""
        self._schedule_metrics()

    def write_pending_metrics(self) -> None:
        """At shutdown: write what the metrics file does not hold yet."""
        if self._metrics.dirty and self._settings.alerts.metrics:
            self._write_metrics()

    def _schedule_alert_flush(self) -> None:
        deadline = self._alerter.next_deadline()
        if deadline is None:
            return
        if self._flush_timer is not None and not self._flush_timer.cancelled:
            if self._flush_timer.when <= deadline:
                return
            self._flush_timer.cancel()

        def flush() -> None:
            self._flush_timer = None
            self._alerter.flush_due()
            self._schedule_alert_flush()
            self._schedule_metrics()

        self._flush_timer = self._loop.call_at(deadline, flush)

    def _schedule_metrics(self) -> None:
        if not self._settings.alerts.metrics or self._metrics_timer is not None:
            return

        def write() -> None:
            self._metrics_timer = None
            self._write_metrics()

        self._metrics_timer = self._loop.call_later(_METRICS_FLUSH_DELAY, write)

    def _write_metrics(self) -> None:
        if self._refresh_timer is not None:
            self._refresh_timer.cancel()
            self._refresh_timer = None
        if not self._settings.alerts.metrics:
            return
        try:
            self._metrics.write(self._settings.metrics_path)
        except OSError as exc:
            log.warning(
                "metrics.write_failed", path=str(self._settings.metrics_path), reason=exc.strerror
            )
        self._refresh_timer = self._loop.call_later(METRICS_REFRESH_S, self._refresh)

    def _refresh(self) -> None:
        self._refresh_timer = None
        self._write_metrics()

    def start_watchdog(self, interval: float) -> None:
        """Send WATCHDOG=1 every ``interval`` seconds from now on."""
        self._watchdog = (interval, threading.get_ident())
        self._last_ping = self._loop.clock()

        def ping() -> None:
            self._ping()
            self._loop.call_later(interval, ping)

        self._loop.call_later(interval, ping)

    def keepalive(self) -> None:
        """WATCHDOG=1 now if one is due, called by the loop thread while it waits for work that
        is bounded in time (a credential helper call: hard timeout, per-user budget), so a
        busy loop is not taken for a hung one. From any other thread it does nothing: only the
        loop thread may say that the loop is alive."""
        if self._watchdog is None:
            return
        interval, loop_thread = self._watchdog
        if threading.get_ident() == loop_thread and (
            self._loop.clock() - self._last_ping >= interval
        ):
            self._ping()

    def _ping(self) -> None:
        self._last_ping = self._loop.clock()
        self._notifier.notify("WATCHDOG=1")

    def status_changed(self) -> None:
        """Send STATUS= when it changed, at most once per second (bursts send one at the end)."""
        if not self._notifier.enabled or self._status_timer is not None:
            return
        line = self._status_line()
        if line == self._status:
            return
        self._status = line
        self._notifier.notify(line)

        def again() -> None:
            self._status_timer = None
            self.status_changed()

        self._status_timer = self._loop.call_later(_STATUS_INTERVAL, again)


def log_scope(settings: Settings) -> None:
    """What the daemon watches and does, one line each, so a person reading the log at start
    sees its scope."""
    patterns = settings.watch.patterns(Path.home())
    log.info(
        "daemon.starting",
        pid=os.getpid(),
        settings=str(settings.source) if settings.source else "defaults",
        patterns=list(patterns),
    )
    for pattern in patterns:
        log.info("daemon.watching", pattern=pattern)
    for pattern in settings.watch.auth_file_patterns(Path.home()):
        log.info("daemon.watching_auth_file", pattern=pattern, rules="containers")
    log.info(
        "daemon.components",
        probes="on" if settings.probe.enabled else "off",
        journal="on" if settings.journal.enabled else "off",
    )
