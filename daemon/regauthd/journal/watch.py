"""The daemon's journal watch: an auth failure in the log -> re-check, probe, one verdict alert.

:class:`JournalWatch` is the component the daemon runs (:mod:`regauthd.service.app` builds and
wires it). It joins two halves: :class:`~regauthd.journal.reader.JournalReader`, the thread that
follows the journal and hands each auth failure to the loop, and
:class:`~regauthd.journal.verdicts.Verdicts`, which turns failures into verdict alerts on the
loop thread (re-check, probe, wait for the probe's result or a timer).

Life: :meth:`JournalWatch.start` starts the thread only when the journal is enabled in the
settings (disabled: no thread, no descriptor, no wake-up); :meth:`JournalWatch.stop` returns
within milliseconds and raises every alert still waiting for a probe with what is known.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, tzinfo

import structlog

from regauthd.alerts.alerter import RaiseAlert
from regauthd.alerts.catalogue import AlertKind
from regauthd.dockerconfig.report import FixReport
from regauthd.journal.backend import FollowOptions
from regauthd.journal.reader import JournalReader, Post
from regauthd.journal.recognize import PatternError, Recognizer
from regauthd.journal.recognize import compile_patterns as _compile_patterns
from regauthd.journal.verdicts import CallLater, Prober, Recheck, Verdicts
from regauthd.probe.result import ProbeResult
from regauthd.probe.schedule import ProbeKey
from regauthd.settings import JournalSettings, Settings


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


class JournalWatch:
    """Follows the journal in a thread and alerts each auth failure once, with its verdict.

    A :class:`regauthd.service.component.Component`. Construct and call every method on the
    daemon's loop thread. ``prober``: the probe scheduler while probes are enabled (its results
    come back through :meth:`probe_result`); ``recheck``: how the watched configs are repaired on
    demand (the daemon's own re-check). ``options`` replaces the follower options derived from
    the settings (tests point it at journal files); ``verdict_timeout`` replaces
    ``[journal] verdict_timeout``.
    """

    name = "journal"

    def __init__(
        self,
        settings: Settings,
        *,
        post: Post,
        call_later: CallLater,
        alert: RaiseAlert,
        recheck: Recheck,
        prober: Prober | None = None,
        options: FollowOptions | None = None,
        verdict_timeout: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
        tz: tzinfo | None = None,
    ) -> None:
        self._settings = settings
        self._post = post
        self._alert = alert
        self._options_override = options
        self._verdicts = Verdicts(
            settings,
            alert=alert,
            recheck=recheck,
            prober=prober,
            call_later=call_later,
            verdict_timeout=(
                settings.journal.verdict_timeout if verdict_timeout is None else verdict_timeout
            ),
            clock=clock,
            wall=wall,
            tz=tz,
        )
        self._reader: JournalReader | None = None

    # -- life ----------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._reader is not None and self._reader.running

    def start(self) -> None:
        """Start following (a thread) when ``[journal] enabled``; otherwise do nothing at all."""
        if not self._settings.journal.enabled or self._reader is not None:
            return
        try:
            options = self._options_override or follow_options(self._settings.journal)
        except PatternError as exc:
            self._unavailable(str(exc))
            return
        self._reader = JournalReader(
            options,
            self._settings.state_dir,
            post=self._post,
            on_failure=self._verdicts.on_failure,
            unavailable=self._unavailable,
        )
        self._reader.start()
        structlog.get_logger("regauthd").info(
            "journal.following",
            units=list(options.units),
            backend=options.backend,
            log_files=[str(f) for f in options.log_files],
        )

    def stop(self, timeout: float = 0.5) -> None:
        """Stop the thread (the follower saves its cursor), then raise every alert still
        waiting for a probe with what is known. Returns within ``timeout`` seconds."""
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.stop(timeout)
        self._verdicts.flush()

    def reload(self, settings: Settings) -> None:
        """New settings (SIGHUP): restart the follower only when ``[journal]`` changed; the
        cursor carries over, so nothing is read twice."""
        old = self._settings
        self._settings = settings
        self._verdicts.reload(settings)
        if settings.journal == old.journal and settings.state_dir == old.state_dir:
            return
        self.stop()
        self.start()

    def status(self) -> str | None:
        """A few words for the daemon's STATUS= line."""
        if not self.running:
            return None
        return f"journal: {self.failures_seen} auth failure(s), {self.alerts_raised} alert(s)"

    # -- what the daemon and the probes tell it (loop thread) --------------------------------

    def on_repair(self, path: str, report: FixReport) -> None:
        """The daemon looked at a write to the config ``path`` and repaired it (``report``)."""
        self._verdicts.record_fix(report)

    def record_fix(self, report: FixReport, at: datetime | None = None) -> None:
        """Remember a repair, so that a failure logged just after it is explained by it."""
        self._verdicts.record_fix(report, at)

    def probe_result(self, key: ProbeKey, result: ProbeResult) -> None:
        """A probe finished: decide at once the verdicts that waited for it."""
        self._verdicts.probe_result(key, result)

    @property
    def failures_seen(self) -> int:
        return self._verdicts.failures_seen

    @property
    def alerts_raised(self) -> int:
        return self._verdicts.alerts_raised

    def _unavailable(self, reason: str) -> None:
        self._alert(AlertKind.JOURNAL_UNAVAILABLE, "journal", reason=reason)


__all__ = ["JournalWatch", "follow_options"]
