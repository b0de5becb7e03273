"""Directories the kernel would not let the daemon watch: one alert, a gauge, a retry timer.

When the per-user watch limit (``fs.inotify.max_user_watches``) is reached, the directories
beyond it are not watched: their configs are repaired at start and at each retry, not within
milliseconds. :class:`WatchLimitRetry` raises ``watch.limit`` when directories newly go
unwatched (naming the directories and the configs in them), keeps the ``unwatched_directories``
and ``unwatched_configs`` gauges, and calls ``retry`` after a back-off
(:data:`FIRST_RETRY` doubling up to :data:`LAST_RETRY`) for as long as any stay unwatched.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import structlog

from regauthd.alerts.alerter import RaiseAlert
from regauthd.alerts.catalogue import AlertKind
from regauthd.alerts.metrics import Metrics
from regauthd.service.loop import Loop, Timer
from regauthd.service.watcher import WatchLimitError

log = structlog.get_logger("regauthd")

FIRST_RETRY = 30.0
"""Seconds before the first retry; doubled after each retry that still hits the limit..."""
LAST_RETRY = 600.0
"""...up to this."""
_NAMED = 5
"""Directories named in the alert; the rest are counted."""


class WatchLimitRetry:
    """Tells about directories left unwatched and retries them (loop thread only)."""

    def __init__(
        self, *, loop: Loop, alert: RaiseAlert, metrics: Metrics, retry: Callable[[], None]
    ) -> None:
        self._loop = loop
        self._alert = alert
        self._metrics = metrics
        self._retry = retry
        self._delay = FIRST_RETRY
        self._timer: Timer | None = None
        self._unwatched: frozenset[str] = frozenset()

    def update(self, refused: Mapping[str, WatchLimitError], configs: Iterable[str] = ()) -> None:
        """After each reconcile: ``refused`` maps each directory left unwatched to the error;
        ``configs`` are the configs in those directories (the plan's)."""
        unwatched_configs = sorted(set(configs))
        self._metrics.gauge("unwatched_directories", len(refused))
        self._metrics.gauge("unwatched_configs", len(unwatched_configs))
        before, self._unwatched = self._unwatched, frozenset(refused)
        if not refused:
            if before:
                log.info("watch.limit_cleared", directories=len(before))
            self._delay = FIRST_RETRY
            self._cancel()
            return
        if self._unwatched - before:
            error = next(iter(refused.values()))
            names = sorted(refused)
            shown = _named(names)
            self._alert(
                AlertKind.WATCH_LIMIT,
                error.sysctl,
                count=len(names),
                directories=shown,
                configs=_named(unwatched_configs),
                sysctl=error.sysctl,
                limit="unknown" if error.limit is None else error.limit,
                retry=f"{self._delay:g}s",
            )
        if self._timer is None:
            self._timer = self._loop.call_later(self._delay, self._fire)

    def close(self) -> None:
        self._cancel()

    def _fire(self) -> None:
        self._timer = None
        self._delay = min(self._delay * 2, LAST_RETRY)
        log.info("watch.limit_retry", directories=len(self._unwatched))
        self._retry()

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def _named(names: list[str]) -> str:
    """The first :data:`_NAMED` names, and how many more."""
    shown = ", ".join(names[:_NAMED]) or "none yet"
    if len(names) > _NAMED:
        shown += f" and {len(names) - _NAMED} more"
    return shown
