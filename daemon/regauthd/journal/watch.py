"""The daemon's journal watch: an auth failure in the log -> re-check, probe, one verdict alert.

A background thread runs the follower (:mod:`regauthd.journal.follow`: systemd-python,
``journalctl`` or plain log files) and hands every :class:`~regauthd.journal.recognize.AuthFailure`
to the daemon's loop with ``post``. Everything else happens on the loop thread, which owns
the state:

1. the watched configs are re-checked (repaired) at once through ``recheck``;
2. the registry is probed at once (``prober.probe_now([registry])``) when probes are on;
3. when the probe's new result arrives (or after ``verdict_timeout`` with what is known), ONE
   ``journal.auth_failure`` alert is raised whose ``reason`` is the verdict of
   :func:`regauthd.journal.correlate.correlate` and whose ``fix`` says what to do (its fields:
   :func:`regauthd.journal.alert.alert_fields`).

Failures for the same registry and kind that arrive while the verdict is pending are folded into
it (``failures=N``); those that arrive later within the alert window go to the alerter, whose
suppressor counts them and ends the window with one summary ("suppressed N more"), the last
verdict (with the running count) attached.

Life: :meth:`JournalWatch.start` starts the thread only when the journal is enabled in the
settings (disabled: no thread, no descriptor, no wake-up). The thread sleeps in ``select`` on the
journal's descriptor and a wake-up pipe: idle, it never wakes; :meth:`JournalWatch.stop` returns
within milliseconds. The follower keeps its cursor in the state directory, so a restart resumes
after the last entry handed out, with no duplicates.

:class:`regauthd.journal.component.JournalComponent` plugs the watch into the daemon.
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any, Final, Protocol

import structlog

from regauthd.alerts.catalogue import AlertKind
from regauthd.dockerconfig import jsontext
from regauthd.dockerconfig.backups import BackupStore
from regauthd.dockerconfig.fixer import fix_file
from regauthd.dockerconfig.jsontext import ConfigFileError
from regauthd.dockerconfig.report import FixReport
from regauthd.journal.alert import alert_fields, subject_of
from regauthd.journal.backend import Follower, FollowOptions, JournalError
from regauthd.journal.correlate import LOOKBACK
from regauthd.journal.evidence import ConfigSight, Evidence, FixEvent, ProbeNote, sight
from regauthd.journal.follow import open_follower
from regauthd.journal.recognize import AuthFailure, FailureKind, PatternError, Recognizer
from regauthd.journal.recognize import compile_patterns as _compile_patterns
from regauthd.probe.result import ProbeResult
from regauthd.settings import JournalSettings, Settings

log = structlog.get_logger("regauthd.journal")

VERDICT_TIMEOUT: Final = 5.0
"""Seconds an alert waits for the probe's new result before it goes out with what is known."""

PROBE_POLL: Final = 0.05
"""While a verdict waits for a probe, how often the loop looks for the result (only then)."""

_RETRY_MIN: Final = 1.0
_RETRY_MAX: Final = 60.0
_HISTORY_MAX: Final = 64
_SAME_FIX: Final = timedelta(seconds=2)
_COMPANION: Final = timedelta(seconds=2)
"""dockerd logs a refused push twice: ``Attempting next endpoint ...`` naming the registry,
then ``Not continuing with push after error`` naming none. A line without a registry this soon
after a named one of the same unit, operation and kind is that second line: one failure."""


class AlertSink(Protocol):
    """Raises catalogued alerts on the loop thread: ``Daemon`` (which also schedules the
    suppression summary) or a bare :class:`regauthd.alerts.alerter.Alerter`."""

    def alert(self, kind: AlertKind, subject: str, **fields: Any) -> bool: ...


class Prober(Protocol):
    """The probe scheduler (:class:`regauthd.probe.scheduler.ProbeScheduler`), as the journal watch
    uses it.

    ``running``: False while probes are off (then no probe is asked for or waited on).
    ``probe_now`` starts a probe of those registries soon, without waiting for it; ``latest``
    returns the newest completed result for a registry (a new probe yields a new object).
    """

    @property
    def running(self) -> bool: ...

    def probe_now(self, registries: list[str]) -> object: ...

    def latest(self, registry: str) -> ProbeResult | None: ...


Recheck = Callable[[str | None], Sequence[FixReport]]
"""Repair every watched config now and return the reports (loop thread). The argument is the
failing registry (None when the log line named none); the reports of ALL watched configs are
wanted, not only those that changed: they also tell whether any config holds a credential."""

Post = Callable[[Callable[[], None]], None]


def follow_options(journal: JournalSettings) -> FollowOptions:
    """The follower's options from the ``[journal]`` settings.

    Raises :class:`PatternError` when an extra pattern cannot be used (the message names it).
    """
    return FollowOptions(
        units=journal.units,
        max_age=timedelta(seconds=journal.max_age),
        log_files=journal.log_files,
        directory=journal.directory,
        backend=journal.backend,
        recognizer=Recognizer(_compile_patterns(journal.extra_patterns)),
    )


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
    deadline: float


@dataclass(slots=True)
class _Window:
    """An alert went out for (registry, kind): repeats until ``until`` are counted, not probed."""

    until: float
    first_time: datetime
    count: int


_Key = tuple[str | None, FailureKind]


class JournalWatch:
    """Follows the journal in a thread and alerts each auth failure once, with its verdict.

    Construct and call every method on the daemon's loop thread; only ``post`` is called from
    the watch's own thread. ``options`` replaces the follower options derived from the settings
    (tests point it at journal files).
    """

    name = "journal"

    def __init__(
        self,
        settings: Settings,
        state_dir: Path,
        post: Post,
        alerter: AlertSink,
        recheck: Recheck,
        prober: Prober | None = None,
        *,
        options: FollowOptions | None = None,
        verdict_timeout: float = VERDICT_TIMEOUT,
        probe_poll: float = PROBE_POLL,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
        tz: tzinfo | None = None,
    ) -> None:
        self._settings = settings
        self._state_dir = state_dir
        self._post = post
        self._alerter = alerter
        self._recheck = recheck
        self._prober = prober
        self._options_override = options
        self._verdict_timeout = verdict_timeout
        self._probe_poll = probe_poll
        self._clock = clock
        self._wall = wall
        # None: the host's local time (what journalctl shows), following DST changes.
        self._tz = tz
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._wake: tuple[int, int] | None = None
        self._inbox: deque[AuthFailure] = deque()
        self._polling = False
        self._pending: dict[_Key, _Pending] = {}
        self._windows: dict[_Key, _Window] = {}
        self._history: deque[FixEvent] = deque(maxlen=_HISTORY_MAX)
        self._named: dict[tuple[str, str | None, FailureKind], datetime] = {}
        self.failures_seen = 0
        self.alerts_raised = 0

    # -- life ----------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start following (a thread) when ``[journal] enabled``; otherwise do nothing at all."""
        if not self._settings.journal.enabled or self._thread is not None:
            return
        try:
            options = self._options_override or follow_options(self._settings.journal)
        except PatternError as exc:
            self._alerter.alert(AlertKind.JOURNAL_UNAVAILABLE, "journal", reason=str(exc))
            return
        # A fresh event per thread: a thread that outlived stop()'s timeout still sees its own.
        self._stop = threading.Event()
        self._wake = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._thread = threading.Thread(
            target=self._run,
            args=(options, self._wake[0], self._stop),
            name="regauthd-journal",
            daemon=True,
        )
        self._thread.start()

    def stop(self, timeout: float = 0.5) -> None:
        """Stop the thread (the follower saves its cursor), then raise every alert still
        waiting for a probe with what is known. Returns within ``timeout`` seconds."""
        thread = self._thread
        if thread is not None:
            self._stop.set()
            self._wakeup()
            thread.join(timeout)
            if thread.is_alive():
                log.warning("journal.stop_timeout", seconds=timeout)
            self._thread = None
        if self._wake is not None and (thread is None or not thread.is_alive()):
            for fd in self._wake:
                os.close(fd)
            self._wake = None
        self._drain()
        for key in list(self._pending):
            self._decide(key, force=True)
        self._polling = False

    def reload(self, settings: Settings) -> None:
        """New settings (SIGHUP): restart the follower only when ``[journal]`` changed; the
        cursor carries over, so nothing is read twice."""
        old = self._settings
        self._settings = settings
        if settings.journal.verdict_timeout != old.journal.verdict_timeout:
            self._verdict_timeout = settings.journal.verdict_timeout
        if settings.journal == old.journal and settings.state_dir == old.state_dir:
            return
        self._state_dir = settings.state_dir
        self.stop()
        self.start()

    def status(self) -> str | None:
        """A few words for the daemon's STATUS= line."""
        if not self.running:
            return None
        return f"journal: {self.failures_seen} auth failure(s), {self.alerts_raised} alert(s)"

    def record_fix(self, report: FixReport, at: datetime | None = None) -> None:
        """The daemon repaired a config (loop thread): remember it, so that a failure logged
        just after (by a client that had read the file before the repair) is explained."""
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

    # -- the thread ----------------------------------------------------------------------------

    def _wakeup(self) -> None:
        if self._wake is not None:
            with contextlib.suppress(BlockingIOError, OSError):
                os.write(self._wake[1], b"\0")

    def _unavailable(self, reason: str) -> None:
        def raise_alert() -> None:
            self._alerter.alert(AlertKind.JOURNAL_UNAVAILABLE, "journal", reason=reason)

        self._post(raise_alert)

    def _run(self, options: FollowOptions, wake: int, stop: threading.Event) -> None:
        retry = _RETRY_MIN
        alerted = False
        short_lived = 0
        while not stop.is_set():
            try:
                follower = open_follower(options, self._state_dir)
            except (JournalError, OSError) as exc:
                # One alert for people; the retries are only logged.
                if not alerted:
                    self._unavailable(str(exc))
                    alerted = True
                log.info("journal.open_failed", reason=str(exc), retry_in=retry)
                self._sleep(wake, retry)
                retry = min(retry * 2, _RETRY_MAX)
                continue
            opened = time.monotonic()
            try:
                self._follow(follower, wake, stop)
                return
            except (JournalError, OSError, ValueError) as exc:
                # A journalctl that died, a journal file that vanished mid-read: start over
                # from the saved cursor rather than give up following. Failing again soon
                # after each start (journalctl cannot open the journal) is an outage: alert.
                lasted = time.monotonic() - opened
                short_lived = short_lived + 1 if lasted < _RETRY_MAX else 1
                if short_lived >= 2 and not alerted:
                    self._unavailable(str(exc))
                    alerted = True
                log.error("journal.follow_failed", reason=str(exc), retry_in=retry)
            finally:
                try:
                    follower.close()
                except (JournalError, OSError) as exc:
                    log.warning("journal.close_failed", reason=str(exc))
            self._sleep(wake, retry)
            retry = min(retry * 2, _RETRY_MAX)

    def _sleep(self, wake: int, seconds: float) -> None:
        with contextlib.suppress(InterruptedError):
            select.select([wake], [], [], seconds)
        _drain_pipe(wake)

    def _follow(self, follower: Follower, wake: int, stop: threading.Event) -> None:
        next_poll = 0.0
        while not stop.is_set():
            fd = follower.fileno()
            timeout = follower.timeout()
            if self._polling:
                until_poll = max(0.0, next_poll - time.monotonic())
                timeout = until_poll if timeout is None else min(timeout, until_poll)
            if timeout is None or timeout > 0:
                fds = [wake] if fd is None else [wake, fd]
                with contextlib.suppress(InterruptedError):
                    select.select(fds, [], [], timeout)
            _drain_pipe(wake)
            if stop.is_set():
                return
            failures = follower.process()
            if failures:
                self._inbox.extend(failures)
                self._post(self._drain)
            if self._polling and time.monotonic() >= next_poll:
                next_poll = time.monotonic() + self._probe_poll
                self._post(self._check_pending)

    # -- the loop thread -----------------------------------------------------------------------

    def _drain(self) -> None:
        while self._inbox:
            self._on_failure(self._inbox.popleft())

    def _on_failure(self, failure: AuthFailure) -> None:
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
        try:
            before = self._prober.latest(failure.registry)
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
        self._pending[key] = _Pending(
            failure, failure.time, 1, configs, before, now + self._verdict_timeout
        )
        if not self._polling:
            self._polling = True
            self._wakeup()

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
        try:
            return self._prober.latest(registry)
        except Exception as exc:  # the scheduler's failure must not cost the alert
            log.error("journal.probe_failed", error=type(exc).__name__, reason=str(exc))
            return None

    def _check_pending(self) -> None:
        for key in list(self._pending):
            self._decide(key, force=False)
        if not self._pending:
            self._polling = False

    def _decide(self, key: _Key, *, force: bool) -> None:
        pending = self._pending[key]
        latest = self._latest(pending.failure.registry)
        # Every probe stores a new result object: identity says "probed again" even when the
        # result (status, latency) happens to equal the previous one.
        fresh = latest is not None and latest is not pending.before
        if not fresh and not force and self._clock() < pending.deadline:
            return
        del self._pending[key]
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
        emitted = self._alerter.alert(AlertKind.JOURNAL_AUTH_FAILURE, subject_of(failure), **fields)
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


def _drain_pipe(fd: int) -> None:
    with contextlib.suppress(BlockingIOError, OSError):
        while os.read(fd, 4096):
            pass


__all__ = [
    "PROBE_POLL",
    "VERDICT_TIMEOUT",
    "AlertSink",
    "JournalWatch",
    "Prober",
    "Recheck",
    "follow_options",
    "recheck_files",
]
