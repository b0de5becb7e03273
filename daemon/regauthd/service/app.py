"""The composition root: the one place that builds the daemon and wires its parts together.

:func:`build` constructs, in this order:

1. the loop and the alert sinks (:class:`~regauthd.alerts.alerter.Alerter` with its
   :class:`~regauthd.alerts.metrics.Metrics`);
2. the daemon core (:class:`~regauthd.service.daemon.Daemon`: watcher, repairs, reports), and
   when ``[metrics] listen`` is set, its first hosted component, the metrics listener
   (:class:`~regauthd.service.metricsendpoint.MetricsEndpoint`: started first, stopped last);
3. the probe scheduler, when ``[probe] enabled``: it reads the configs of the daemon's current
   watch plan (``daemon.watched_configs``), re-reads a config the daemon repaired and probes the
   conflicts the repair resolved (a repair listener), and raises alerts through the daemon;
4. the journal watch, when ``[journal] enabled``: it re-checks through the daemon
   (``daemon.recheck``), records every repair (a repair listener), asks the scheduler for probes
   (``probe_now``) and gets every probe result the scheduler pushes to the loop thread, which
   decides the verdict that waited for it at once; the metrics get every probe result too
   (figures per registry, never per config);
5. the expiry watch (:class:`~regauthd.service.expirywatch.ExpiryWatch`), when ``[expiry]
   enabled``: a repair listener that reads when each watched credential expires and raises
   ``credential.expiring`` / ``credential.expired`` once each, on its own loop timers; its
   ``earliest_expiry_by_registry`` is the callback for per-registry expiry metrics;
6. the status file (:class:`~regauthd.service.status.StatusFile`): a repair, alert and probe
   listener that keeps ``<state_dir>/status.json`` current for ``regauthd status``.

Every callback is a typed callable or Protocol; no part looks another up by name or holds
another component. The daemon starts the components in that order and stops them in reverse
(journal, probes, then the watcher). Probes and the journal are imported only when enabled: an
idle daemon stays small (their imports, httpx among them, cost ~5 MiB), so enabling one in the
settings needs a restart, not just a reload.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from regauthd.alerts.alerter import Alerter
from regauthd.alerts.metrics import Metrics, RegistryProbe
from regauthd.alerts.output import configure_logging
from regauthd.service.component import SettingsLoader
from regauthd.service.daemon import Daemon
from regauthd.service.expirywatch import ExpiryWatch
from regauthd.service.loop import Loop
from regauthd.service.metricsendpoint import MetricsEndpoint
from regauthd.service.status import StatusFile
from regauthd.service.summary import ActivitySummary
from regauthd.settings import Settings

if TYPE_CHECKING:
    from regauthd.dockerconfig.report import FixReport
    from regauthd.journal.watch import JournalWatch
    from regauthd.probe.delivery import ProbeListener
    from regauthd.probe.result import ProbeResult
    from regauthd.probe.schedule import ProbeKey
    from regauthd.probe.scheduler import ProbeScheduler


@dataclass(frozen=True, slots=True)
class App:
    """The built daemon: run it with :meth:`run`. ``probes``, ``journal`` and ``expiry`` are
    None when disabled (tests look at them)."""

    daemon: Daemon
    probes: ProbeScheduler | None = None
    journal: JournalWatch | None = None
    expiry: ExpiryWatch | None = None

    def run(self) -> int:
        """Run until SIGTERM/SIGINT (blocks); the exit status."""
        return self.daemon.run()


def build(
    settings: Settings,
    *,
    reload_settings: SettingsLoader | None = None,
    configure_output: bool = True,
    probe_min_gap: float | None = None,
) -> App:
    """Build the daemon and its enabled components, wired (see the module docstring).

    ``probe_min_gap`` replaces the scheduler's least time between two on-demand probes of one
    registry (tests: 0, so a journal failure right after a probe is probed again).
    """
    loop = Loop()
    metrics = Metrics()
    alerter = Alerter(suppress_window=settings.alerts.suppress_window, metrics=metrics)
    daemon = Daemon(
        settings,
        loop=loop,
        alerter=alerter,
        reload_settings=reload_settings,
        configure_output=configure_output,
    )
    # Like probes and the journal, the listener is built only when set: a reload may move or
    # close it, opening one needs a restart.
    if settings.metrics.listen is not None:
        daemon.host(MetricsEndpoint(settings, metrics))
    probes = _probes(settings, daemon, probe_min_gap) if settings.probe.enabled else None
    if probes is not None:
        probes.subscribe(_probe_metrics(metrics))
    journal = _journal(settings, daemon, probes) if settings.journal.enabled else None
    expiry = _expiry(settings, daemon) if settings.expiry.enabled else None
    if expiry is not None:
        metrics.credential_expiry(_expiry_times(expiry))

        def expiry_read_again(config: str, report: FixReport) -> None:
            metrics.expiry_changed()
            daemon.reporter.metrics_changed()

        daemon.on_repair("expiry-metrics", expiry_read_again)  # after the expiry watch's own
    _summary(daemon)
    _status_file(daemon, probes, journal)
    return App(daemon, probes, journal, expiry)


def _expiry(settings: Settings, daemon: Daemon) -> ExpiryWatch:
    watch = ExpiryWatch(settings, loop=daemon.loop, alert=daemon.alert)
    daemon.on_repair("expiry", watch.on_repair)
    daemon.host(watch)
    return watch


def _expiry_times(watch: ExpiryWatch) -> Callable[[], dict[str, float]]:
    """Registry -> the first expiry (Unix time) among the watched credentials, for the metrics
    (read from any thread: the watch replaces its lists whole)."""

    def times() -> dict[str, float]:
        return {r: when.timestamp() for r, when in watch.earliest_expiry_by_registry().items()}

    return times


def _summary(daemon: Daemon) -> ActivitySummary:
    summary = ActivitySummary(daemon.settings, loop=daemon.loop)
    daemon.on_repair("summary", summary.on_repair)
    daemon.alerter.add_suppressed_listener(summary.on_suppressed)
    daemon.host(summary)
    return summary


def _status_file(
    daemon: Daemon, probes: ProbeScheduler | None, journal: JournalWatch | None
) -> StatusFile:
    status = StatusFile(daemon.settings, loop=daemon.loop, watched=daemon.watched_summary)
    daemon.on_repair("status", status.on_repair)
    daemon.alerter.add_listener(status.on_alert)
    daemon.alerter.add_suppressed_listener(status.on_suppressed)
    if probes is not None:
        status.track_probes()
        probes.subscribe(status.on_probe)
    if journal is not None:
        watch = journal
        status.track_journal(
            lambda: {
                "units": list(daemon.settings.journal.units),
                "running": watch.running,
                "failures_seen": watch.failures_seen,
                "alerts_raised": watch.alerts_raised,
            }
        )
    daemon.host(status)  # hosted last: started after the others, stopped (and written) first
    return status


def _probes(settings: Settings, daemon: Daemon, min_gap: float | None) -> ProbeScheduler:
    from regauthd.probe.component import ProbeComponent  # noqa: PLC0415 - see module docstring
    from regauthd.probe.schedule import DEFAULT_MIN_GAP_S  # noqa: PLC0415 - see module docstring
    from regauthd.probe.scheduler import ProbeScheduler  # noqa: PLC0415 - see module docstring

    scheduler = ProbeScheduler(
        settings.probe,
        daemon.watched_configs,
        daemon.loop.post,
        daemon.alert,
        min_gap=DEFAULT_MIN_GAP_S if min_gap is None else min_gap,
        # As each config's owner, within that user's budget; no watchdog tick: only the loop
        # thread may feed the watchdog, and probes read configs on a worker thread.
        helper_runner_for=daemon.helpers.for_probe,
    )
    daemon.on_repair("probes", scheduler.on_repair)
    daemon.host(ProbeComponent(scheduler, daemon.watched_configs))
    return scheduler


def _probe_metrics(metrics: Metrics) -> ProbeListener:
    """A probe listener that hands each result's figures to the metrics (no secret, no user)."""
    from regauthd.probe.result import ProbeStatus  # noqa: PLC0415 - see module docstring

    metrics.track_probes()
    authenticated = {ProbeStatus.OK, ProbeStatus.PUSH_DENIED}

    def record(key: ProbeKey, result: ProbeResult) -> None:
        metrics.probed(
            key.config,
            RegistryProbe(
                registry=key.registry,
                status=result.status.value,
                authenticated=result.status in authenticated,
                at=time.time(),
                push_allowed=result.push_allowed,
                rate_limit_remaining=result.rate_limit_remaining,
                rate_limit_limit=result.rate_limit_limit,
            ),
        )

    return record


def _journal(settings: Settings, daemon: Daemon, probes: ProbeScheduler | None) -> JournalWatch:
    from regauthd.journal.watch import JournalWatch  # noqa: PLC0415 - see module docstring

    watch = JournalWatch(
        settings,
        post=daemon.loop.post,
        call_later=daemon.loop.call_later,
        alert=daemon.alert,
        recheck=daemon.recheck,
        prober=probes,
    )
    daemon.on_repair("journal", watch.on_repair)
    if probes is not None:
        probes.subscribe(watch.probe_result)
    daemon.host(watch)
    return watch


SWITCH_INTERVAL_S = 0.0005


def run_daemon(settings: Settings, *, reload_settings: SettingsLoader | None = None) -> int:
    """Configure output, then build and run the daemon until it is stopped; the exit status."""
    configure_logging(settings.output, settings.log_level)
    # The loop gives up the interpreter at each system call of a repair (about fifty); when a
    # helper thread (status file, save cleanup, probes) is running Python meanwhile, taking it
    # back waits up to this interval each time: 5 ms by default, 0.5 ms here.
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    app = build(settings, reload_settings=reload_settings)
    try:
        return app.run()
    except KeyboardInterrupt:
        return 130


__all__ = ["App", "build", "run_daemon"]
