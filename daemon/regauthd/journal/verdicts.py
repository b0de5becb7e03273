"""From an auth failure to one verdict alert, on the daemon's loop thread.

:class:`Verdicts` gets each :class:`~regauthd.journal.recognize.AuthFailure` the follower thread
(:mod:`regauthd.journal.reader`) hands over, and:

1. re-checks (repairs) the watched configs at once through ``recheck``;
2. asks for a probe of the registry at once (``prober.probe_now([registry])``) when probes run;
3. raises ONE ``journal.auth_failure`` alert when the probe's new result is pushed to
   :meth:`Verdicts.probe_result` (or when a loop timer says ``verdict_timeout`` passed, with what
   is known), whose ``reason`` is the verdict of :func:`regauthd.journal.correlate.correlate` and
   whose ``fix`` says what to do (its fields: :func:`regauthd.journal.alert.alert_fields`).

Failures for the same registry and kind that arrive while the verdict is pending are folded into
it (``failures=N``); those that arrive later within the alert window go to the alerter, whose
suppressor counts them and ends the window with one summary ("suppressed N more"), the last
verdict (with the running count) attached. Repairs the daemon made meanwhile
(:meth:`Verdicts.record_fix`) let a failure logged just after one be explained by it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from pathlib import Path
from typing import Final, Protocol

import structlog

from regauthd.alerts.alerter import RaiseAlert
from regauthd.alerts.catalogue import AlertKind
from regauthd.dockerconfig import jsontext
from regauthd.dockerconfig.backups import BackupStore
from regauthd.dockerconfig.fixer import fix_file
from regauthd.dockerconfig.jsontext import ConfigFileError
from regauthd.dockerconfig.report import FixReport
from regauthd.journal.alert import alert_fields, subject_of
from regauthd.journal.correlate import LOOKBACK
from regauthd.journal.evidence import ConfigSight, Evidence, FixEvent, ProbeNote, sight
from regauthd.journal.recognize import AuthFailure, FailureKind
from regauthd.probe.latest import LatestResults
from regauthd.probe.result import ProbeResult
from regauthd.probe.schedule import ProbeKey
from regauthd.settings import Settings

log = structlog.get_logger("regauthd.journal")

_HISTORY_MAX: Final = 64
_SAME_FIX: Final = timedelta(seconds=2)
_COMPANION: Final = timedelta(seconds=2)
"""dockerd logs a refused push twice: ``Attempting next endpoint ...`` naming the registry,
then ``Not continuing with push after error`` naming none. A line without a registry this soon
after a named one of the same unit, operation and kind is that second line: one failure."""


class Prober(Protocol):
    """The probe scheduler (:class:`regauthd.probe.scheduler.ProbeScheduler`), as verdicts use it.

    ``running``: False while probes are off (then no probe is asked for or waited on).
    ``probe_now`` starts a probe of those registries soon, without waiting for it; its results
    come back through :meth:`Verdicts.probe_result`.
    """

    @property
    def running(self) -> bool: ...

    def probe_now(self, registries: list[str]) -> object: ...


class Cancellable(Protocol):
    def cancel(self) -> None: ...


CallLater = Callable[[float, Callable[[], None]], Cancellable]
"""Run a callback on the loop thread after a delay (the daemon loop's ``call_later``)."""

Recheck = Callable[[str | None], Sequence[FixReport]]
"""Repair every watched config now and return the reports (loop thread). The argument is the
failing registry (None when the log line named none); the reports of ALL watched configs are
wanted, not only those that changed: they also tell whether any config holds a credential."""


def recheck_files(paths: Sequence[Path], backups: BackupStore) -> Recheck:
    """A :data:`Recheck` that runs the fixer over fixed config paths (outside the daemon, whose
    own re-check also keeps its watch state and raises ``config.normalized``)."""

    def recheck(registry: str | None) -> list[FixReport]:
        return [fix_file(path, backups=backups) for path in paths]

    return recheck


@dataclass(slots=True)
class _Pending:
    """A verdict waiting for the probe."""

    failure: AuthFailure
    first_time: datetime
    count: int
    configs: tuple[ConfigSight, ...] | None
    before: ProbeResult | None
    timer: Cancellable | None = None


@dataclass(slots=True)
class _Window:
    """An alert went out for (registry, kind): repeats until ``until`` are counted, not probed."""

    until: float
    first_time: datetime
    count: int


_Key = tuple[str | None, FailureKind]


class Verdicts:
    """Alerts each auth failure once, with its verdict. Loop thread only."""

    def __init__(
        self,
        settings: Settings,
        *,
        alert: RaiseAlert,
        recheck: Recheck,
        prober: Prober | None,
        call_later: CallLater,
        verdict_timeout: float,
        clock: Callable[[], float],
        wall: Callable[[], datetime],
        tz: tzinfo | None,
    ) -> None:
        self._settings = settings
        self._alert = alert
        self._recheck = recheck
        self._prober = prober
        self._call_later = call_later
        self._verdict_timeout = verdict_timeout
        self._clock = clock
        self._wall = wall
        # None: the host's local time (what journalctl shows), following DST changes.
        self._tz = tz
        self._results = LatestResults()
        self._pending: dict[_Key, _Pending] = {}
        self._windows: dict[_Key, _Window] = {}
        self._history: deque[FixEvent] = deque(maxlen=_HISTORY_MAX)
        self._named: dict[tuple[str, str | None, FailureKind], datetime] = {}
        self.failures_seen = 0
        self.alerts_raised = 0

    def reload(self, settings: Settings) -> None:
        """New settings (SIGHUP): the alert window and, when it changed, the verdict timeout."""
        if settings.journal.verdict_timeout != self._settings.journal.verdict_timeout:
            self._verdict_timeout = settings.journal.verdict_timeout
        self._settings = settings

    def record_fix(self, report: FixReport, at: datetime | None = None) -> None:
        """The daemon repaired a config: remember it, so that a failure logged just after (by a
        client that had read the file before the repair) is explained."""
        event = FixEvent.from_report(report, at or self._wall())
        if not event.noteworthy:
            return
        for known in self._history:
            if (
                known.path == event.path
                and (known.changes, known.conflicts, known.error)
                == (event.changes, event.conflicts, event.error)
                and abs(known.at - event.at) <= _SAME_FIX
            ):
                return
        self._history.append(event)

    def probe_result(self, key: ProbeKey, result: ProbeResult) -> None:
        """A probe finished (pushed by the probe scheduler): decide the verdicts it was for."""
        self._results.record(key, result)
        for pending in list(self._pending):
            self._decide(pending, force=False)

    def flush(self) -> None:
        """Raise every alert still waiting for a probe, with what is known (at stop)."""
        for key in list(self._pending):
            self._decide(key, force=True)

    def on_failure(self, failure: AuthFailure) -> None:
        """One auth failure the follower read."""
        same = (failure.unit, failure.operation, failure.kind)
        if failure.registry is not None:
            self._named[same] = failure.time
        else:
            named = self._named.get(same)
            if named is not None and timedelta(0) <= failure.time - named <= _COMPANION:
                return  # the closing line of a failure already counted
        self.failures_seen += 1
        key: _Key = (failure.registry, failure.kind)
        now = self._clock()
        pending = self._pending.get(key)
        if pending is not None:
            pending.count += 1
            pending.failure = failure
            return
        window = self._windows.get(key)
        if window is not None and now < window.until:
            # A repeat within the alert window: re-check (cheap), no new probe; the alerter
            # counts it for the window's summary, which then carries this verdict and count.
            window.count += 1
            configs = self._recheck_now(failure.registry)
            latest = self._latest(failure.registry)
            note = self._note(failure.registry, ProbeNote.STALE if latest else ProbeNote.TIMEOUT)
            self._raise(
                key,
                failure,
                Evidence(
                    fixes=tuple(self._history),
                    configs=configs,
                    probe=latest,
                    probe_note=note,
                    failures=window.count,
                    first_time=window.first_time,
                ),
            )
            return
        configs = self._recheck_now(failure.registry)
        if self._prober is None or failure.registry is None or not self._probing():
            note = self._note(failure.registry, ProbeNote.OFF)
            self._raise(
                key,
                failure,
                Evidence(fixes=tuple(self._history), configs=configs, probe_note=note),
            )
            return
        before = self._latest(failure.registry)
        try:
            self._prober.probe_now([failure.registry])
        except Exception as exc:  # the scheduler's failure must not cost the alert
            log.error("journal.probe_failed", error=type(exc).__name__, reason=str(exc))
            note = ProbeNote.TIMEOUT
            self._raise(
                key,
                failure,
                Evidence(fixes=tuple(self._history), configs=configs, probe_note=note),
            )
            return
        waiting = _Pending(failure, failure.time, 1, configs, before)
        self._pending[key] = waiting
        waiting.timer = self._call_later(
            self._verdict_timeout, lambda: self._timed_out(key, waiting)
        )

    def _probing(self) -> bool:
        try:
            return self._prober is not None and self._prober.running
        except Exception as exc:  # the scheduler's failure must not cost the alert
            log.error("journal.probe_failed", error=type(exc).__name__, reason=str(exc))
            return False

    def _note(self, registry: str | None, otherwise: ProbeNote) -> ProbeNote:
        if registry is None:
            return ProbeNote.NOT_PROBED
        if not self._probing():
            return ProbeNote.OFF
        return otherwise

    def _latest(self, registry: str | None) -> ProbeResult | None:
        if self._prober is None or registry is None or not self._probing():
            return None
        return self._results.get(registry)

    def _timed_out(self, key: _Key, waiting: _Pending) -> None:
        if self._pending.get(key) is waiting:
            self._decide(key, force=True)

    def _decide(self, key: _Key, *, force: bool) -> None:
        pending = self._pending[key]
        latest = self._latest(pending.failure.registry)
        # Every probe yields a new result object: identity says "probed again" even when the
        # result (status, latency) happens to equal the previous one.
        fresh = latest is not None and latest is not pending.before
        if not fresh and not force:
            return
        del self._pending[key]
        if pending.timer is not None:
            pending.timer.cancel()
        if fresh:
            note = ProbeNote.FRESH
        else:
            note = ProbeNote.STALE if latest is not None else ProbeNote.TIMEOUT
        evidence = Evidence(
            fixes=tuple(self._history),
            configs=pending.configs,
            probe=latest,
            probe_note=note,
            failures=pending.count,
            first_time=pending.first_time,
        )
        self._raise(key, pending.failure, evidence)

    def _raise(self, key: _Key, failure: AuthFailure, evidence: Evidence) -> None:
        fields = alert_fields(failure, evidence, tz=self._tz)
        emitted = self._alert(AlertKind.JOURNAL_AUTH_FAILURE, subject_of(failure), **fields)
        if emitted:
            self.alerts_raised += 1
        window = self._settings.alerts.suppress_window
        if window > 0 and (emitted or key not in self._windows):
            # Suppressed without a window of ours (the alerter's outlived a reload): open one
            # anyway, so the repeats are counted rather than each probed again.
            self._windows[key] = _Window(
                self._clock() + window,
                evidence.first_time or failure.time,
                evidence.failures,
            )
        self._prune(self._clock())

    def _prune(self, now: float) -> None:
        for key, window in list(self._windows.items()):
            if now >= window.until:
                del self._windows[key]
        horizon = self._wall() - 2 * LOOKBACK
        while self._history and self._history[0].at < horizon:
            self._history.popleft()

    def _recheck_now(self, registry: str | None) -> tuple[ConfigSight, ...] | None:
        """Repair the watched configs now; what each holds for ``registry`` afterwards."""
        try:
            reports = self._recheck(registry)
        except Exception as exc:  # the daemon must survive a failed re-check
            log.error("journal.recheck_failed", error=type(exc).__name__, reason=str(exc))
            return None
        at = self._wall()
        sights: list[ConfigSight] = []
        for report in reports:
            # A refused file is remembered as a fix event (the verdict may name it), not sighted.
            self.record_fix(report, at)
            if report.error is not None or report.after is None or registry is None:
                continue  # refused, or not there (yet): it holds nothing Docker could use
            try:
                config = jsontext.parse(report.after, report.path)
            except ConfigFileError:
                continue
            sights.append(sight(str(report.path), config, registry))
        return tuple(sights) if registry is not None else None


__all__ = ["CallLater", "Cancellable", "Prober", "Recheck", "Verdicts", "recheck_files"]
