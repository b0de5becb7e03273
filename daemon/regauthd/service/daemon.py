"""The daemon: watch every Docker config, repair it within milliseconds, alert.

Its life in four steps (as uvicorn's ``server.py`` reads): install signal handlers -> start up
(every watch in place, one repair pass, ``READY=1``) -> main loop -> shut down (``STOPPING=1``).

Flow runs one way. Sources (file changes from the watcher, timers, the probe scheduler and the
journal follower) produce observations; the main loop, the only thread that owns state, turns
them into actions (:class:`regauthd.service.repair.Repairer`, alerts); the sinks carry them out.
Other threads only :meth:`Daemon.post` to the loop.

Its parts live beside it: :mod:`~regauthd.service.watchplan` (which directories to watch, pure),
:mod:`~regauthd.service.flapping` (writers that undo the repair, newest credentials, pure),
:mod:`~regauthd.service.repair` (one config after a write), :mod:`~regauthd.service.reporting`
(alert summaries, the metrics file, ``STATUS=`` and ``WATCHDOG=`` on timers),
:mod:`~regauthd.service.watchset` (the watches in place, through
:mod:`~regauthd.service.watcher`, read on the loop thread), :mod:`~regauthd.service.routing`
(what a change means: repair, replan, rescan; pure), :mod:`~regauthd.service.watchlimit` (the
kernel's watch limit: alert, retry), :mod:`~regauthd.service.loop`,
:mod:`~regauthd.service.sdnotify` and :mod:`~regauthd.service.signals`. This module owns the
daemon's life, acts on what the watches report (replan, repair, rescan after lost events), and
hosts the components (the probe scheduler, the journal watch) that :mod:`regauthd.service.app`
builds and wires: it starts them in order, stops them in reverse, and tells repair listeners
what each repair did.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from regauthd.alerts.alerter import Alerter
from regauthd.alerts.catalogue import CATALOGUE, AlertKind
from regauthd.alerts.output import configure_logging
from regauthd.dockerconfig import file as dockerconfig
from regauthd.dockerconfig.jsontext import os_cause
from regauthd.dockerconfig.report import FixReport
from regauthd.service.component import Component, RepairListener, SettingsLoader
from regauthd.service.fsview import LOCAL
from regauthd.service.heap import settle_heap
from regauthd.service.helpers import DaemonHelpers
from regauthd.service.loop import Loop
from regauthd.service.repair import Repairer
from regauthd.service.reporting import Reporter, log_scope
from regauthd.service.routing import Routing
from regauthd.service.sdnotify import Notifier
from regauthd.service.signals import Signals
from regauthd.service.watchlimit import WatchLimitRetry
from regauthd.service.watchplan import WatchPlan, docker_configs, plan_watches
from regauthd.service.watchset import WatchSet
from regauthd.settings import Settings
from regauthd.tomltable import SettingsError

log = structlog.get_logger("regauthd")

_MAX_REPLAN_ROUNDS = 5
PARALLEL_FROM = 16
"""Configs waiting at once from which their repairs run side by side (the start-up pass)."""


class Daemon:
    """``regauthd run``: see the module docstring. Construct, then :meth:`run` (blocks)."""

    def __init__(
        self,
        settings: Settings,
        *,
        loop: Loop,
        alerter: Alerter,
        reload_settings: SettingsLoader | None = None,
        configure_output: bool = True,
    ) -> None:
        self.settings = settings
        self._reload_settings = reload_settings
        self._configure_output = configure_output
        self.components: list[Component] = []
        self._repair_listeners: list[tuple[str, RepairListener]] = []
        self.loop = loop
        self.notifier = Notifier()
        self.alerter = alerter
        self.metrics = alerter.metrics
        self._watches = WatchSet(self._on_watch_change)
        self._plan = WatchPlan({}, ())
        self._dirty: dict[str, None] = {}
        self._replan_requested = False
        self._rescan_requested = False
        self._stopping = False
        self._exit_status = 0
        self.reporter = Reporter(
            settings,
            loop=self.loop,
            notifier=self.notifier,
            alerter=self.alerter,
            metrics=self.metrics,
            status_line=self._status_line,
        )
        self.helpers = DaemonHelpers(
            settings,
            loop=self.loop,
            alert=self.alert,
            metrics=self.metrics,
            tick=self.reporter.keepalive,
        )
        """How the credential helpers named by watched configs run (as each config's owner)."""
        self.repairer = Repairer(
            settings,
            loop=self.loop,
            alert=self.alert,
            metrics=self.metrics,
            retry=self._retry,
            helper_runner_for=self.helpers.for_repair,
        )
        self._watch_limit = WatchLimitRetry(
            loop=self.loop, alert=self.alert, metrics=self.metrics, retry=self._retry_watches
        )

    # -- hook points ---------------------------------------------------------------------------

    def host(self, component: Component) -> None:
        """Run ``component`` beside the watcher (before :meth:`run`): started after the ones
        hosted before it, stopped before them."""
        self.components.append(component)

    def on_repair(self, name: str, listener: RepairListener) -> None:
        """Tell ``listener`` (``name``: for logs) what each repair did (before :meth:`run`)."""
        self._repair_listeners.append((name, listener))

    def watched_configs(self) -> list[Path]:
        """The watched Docker config files that exist now, from the current watch plan (any
        thread: the plan is replaced whole, never changed in place)."""
        return self.watched_summary(None)[0]

    def watched_summary(self, named: int | None) -> tuple[list[Path], int]:
        """The first ``named`` (None: all) watched Docker config files that exist now, and how
        many the plan watches (any thread; one ``stat`` per config named)."""
        auth_files = self.settings.watch.auth_file_patterns(Path.home())
        found, count = docker_configs(self._plan, auth_files, LOCAL, named)
        return [Path(config) for config in found], count

    def post(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` on the daemon's loop thread (safe from any thread)."""
        self.loop.post(callback)

    def alert(self, kind: AlertKind, subject: str, **fields: Any) -> bool:
        """Raise a catalogued alert (loop thread only). Schedules the suppression summary."""
        emitted = self.alerter.alert(kind, subject, **fields)
        self.reporter.alerted()
        return emitted

    # -- life ----------------------------------------------------------------------------------

    def run(self) -> int:
        """Install signal handlers, start up, loop until SIGTERM/SIGINT, shut down."""
        hup = lambda: self.loop.post(self.reload)  # noqa: E731
        with Signals(stop=self.stop, stopping=lambda: self._stopping, hup=hup):
            try:
                self._startup()
                while not self._stopping:
                    self.loop.run_once(self._work)
            finally:
                self._shutdown()
        return self._exit_status

    def _startup(self) -> None:
        self.settings.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        log_scope(self.settings)
        self._replan()
        log.info(
            "daemon.watches_armed",
            watched_dirs=len(self._watches),
            configs=self._plan.config_count(),
            backend=self._watches.backend,
        )
        for component in self.components:
            component.start()
        self._work()
        # The start-up pass is finished (displaced files gone, directories fsync'd) before
        # READY=1. Later, finishing runs beside the next repair: a displaced file lives ~1 ms.
        dockerconfig.flush_cleanup(timeout=5.0)
        settle_heap()
        self.notifier.notify("READY=1", self._status_line())
        if self.notifier.watchdog_interval:
            self.reporter.start_watchdog(self.notifier.watchdog_interval)
        log.info(
            "daemon.ready",
            watched_dirs=len(self._watches),
            configs=self._plan.config_count(),
        )

    def _shutdown(self) -> None:
        self.notifier.notify("STOPPING=1", "STATUS=stopping")
        log.info("daemon.stopping", repairs=self.repairer.repairs)
        # Reverse order of start: what was started last may use what was started before it.
        for component in reversed(self.components):
            try:
                component.stop()
            except Exception:
                log.exception("daemon.component_stop_failed", component=component.name)
        try:
            self._watch_limit.close()
            self._watches.close(self.loop)
        except Exception:
            log.exception("daemon.component_stop_failed", component="watcher")
        dockerconfig.flush_cleanup(timeout=0.5)
        self.reporter.write_pending_metrics()
        self.notifier.close()
        self.loop.close()

    def stop(self) -> None:
        """Ask the loop to stop (thread-safe), as SIGTERM does."""
        self._stopping = True
        self.loop.post(lambda: None)

    # -- reload --------------------------------------------------------------------------------

    def reload(self) -> None:
        """SIGHUP: read the settings again; bad ones keep the current settings and alert."""
        if self._reload_settings is None:
            return
        try:
            new = self._reload_settings()
        except SettingsError as exc:
            self.alert(AlertKind.SETTINGS_RELOAD_FAILED, str(self.settings.source), reason=str(exc))
            return
        try:
            new.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            reason = f"the state directory {new.state_dir} cannot be created: {os_cause(exc)}"
            self.alert(AlertKind.SETTINGS_RELOAD_FAILED, str(self.settings.source), reason=reason)
            return
        old = self.settings
        self.settings = new
        self.reporter.reload(new)
        if self._configure_output and (new.output, new.log_level) != (old.output, old.log_level):
            configure_logging(new.output, new.log_level)
        self.alerter.suppressor.window = new.alerts.suppress_window
        self.repairer.reload(new)
        self.helpers.reload(new)
        self._replan()
        for component in self.components:
            component.reload(new)
        log.info("settings.reloaded", patterns=list(new.watch.patterns(Path.home())))
        self.reporter.status_changed()

    # -- watching ------------------------------------------------------------------------------

    def _on_watch_change(self, routing: Routing) -> None:
        """What the watches reported (loop thread, before :meth:`_work`)."""
        for config in routing.configs:
            self._dirty[config] = None
        if routing.rescan:
            self._rescan_requested = True  # in _work: never in the middle of a pass
        else:
            self._replan_requested = self._replan_requested or routing.replan

    def _rescan(self) -> None:
        """Events were lost: plan again and look at every watched config, whatever changed."""
        self._replan()
        for config in self._plan.configs:
            self._look_at(config)
        self.metrics.count("watch_overflows")
        self.alert(
            AlertKind.WATCH_OVERFLOW,
            self._watches.backend,
            backend=self._watches.backend,
            configs=len(self._plan.configs),
        )

    def _retry_watches(self) -> None:
        """The watch-limit retry timer: watch what can be now, repair what still cannot."""
        self._replan()
        for config in self._watches.refused_configs():
            self._look_at(config)
        self._work()

    def _work(self) -> None:
        """Coalesced work after each batch of posted callbacks: replan, then repair."""
        if self._rescan_requested:
            self._rescan_requested = self._replan_requested = False
            self._rescan()
        if self._replan_requested:
            self._replan_requested = False
            self._replan()
        while self._dirty:
            if len(self._dirty) >= PARALLEL_FROM:
                self._repair_together()
                continue
            config = next(iter(self._dirty))
            del self._dirty[config]
            try:
                self._repair(config)
            except Exception as exc:
                self._repair_failed(config, exc)
        self.reporter.status_changed()

    def _repair_together(self) -> None:
        """Repair every config waiting now, their file work side by side (the start-up pass,
        a rescan: thousands of configs)."""
        batch = list(self._dirty)
        self._dirty.clear()
        self.repairer.repair_all(
            batch,
            done=self._tell_repair_listeners,
            failed=self._repair_failed,
            # Each repair queues ~6 events (its temp file, the exchange, the removal): 10,000
            # configs would overflow the kernel's queue (16,384 by default) before the loop
            # reads it, and the overflow costs a rescan of every config. Read as we go.
            between=self._watches.read_pending,
        )

    def _repair_failed(self, config: str, exc: Exception) -> None:
        # The daemon outlives any one file: say so loudly, keep watching the others.
        log.error("config.repair_failed", path=config, exc_info=(type(exc), exc, exc.__traceback__))
        self.alert(
            AlertKind.CONFIG_UNFIXABLE,
            config,
            path=config,
            reason=f"regauthd failed while repairing it ({type(exc).__name__}: {exc})",
        )

    def _replan(self) -> None:
        home = Path.home()
        patterns = (
            *self.settings.watch.patterns(home),
            *self.settings.watch.auth_file_patterns(home),
        )
        plan = plan_watches(patterns, LOCAL)
        self._watches.open(self.loop, self.settings.watch)
        for _ in range(_MAX_REPLAN_ROUNDS):
            self._plan = plan
            stable = self._watches.reconcile(plan, self._look_at)
            # A directory that appeared between planning and the watch being in place sent
            # its event to nobody: plan again until the file system holds still.
            again = plan_watches(patterns, LOCAL)
            if stable and again == plan:
                break
            plan = again
        self._watch_limit.update(self._watches.refused, self._watches.refused_configs())
        settle_heap()
        self.metrics.gauge("watched_directories", len(self._watches))
        self.metrics.gauge("watched_configs", plan.config_count())
        self.metrics.keep_configs(set(plan.configs))
        self.reporter.metrics_changed()

    # -- repairing -----------------------------------------------------------------------------

    def recheck(self, registry: str | None = None) -> list[FixReport]:
        """Look at every watched config again now, even if unchanged (loop thread only).

        The journal watch calls this when an engine failed to authenticate (``registry``
        says to which; every config is checked either way). Files in a flapping pause stay
        paused. Returns what the fixer did with each file it ran on.
        """
        reports = []
        for config in self._plan.configs:
            self.repairer.look_again(config)
            report = self._repair(config)
            if report is not None:
                reports.append(report)
        return reports

    def _repair(self, config: str) -> FixReport | None:
        report = self.repairer.repair(config)
        if report is not None:
            self._tell_repair_listeners(config, report)
        return report

    def _tell_repair_listeners(self, config: str, report: FixReport) -> None:
        for name, listener in self._repair_listeners:
            try:
                listener(config, report)
            except Exception:
                log.exception("daemon.component_failed", component=name)

    def _look_at(self, config: str) -> None:
        """Repair ``config`` in the coming :meth:`_work` (once, however often it is asked)."""
        self._dirty[config] = None

    def _retry(self, config: str) -> None:
        """A flapping writer's pause ended (timer): look at its config again now."""
        self._look_at(config)
        self._work()

    def _status_line(self) -> str:
        parts = [
            f"watching {self._plan.config_count()} config(s) in {len(self._watches)} dir(s)",
            f"{self.repairer.repairs} repair(s)",
            f"{int(sum(self.metrics.value('alerts', k) for k in CATALOGUE))} alert(s)",
        ]
        for component in self.components:
            text = component.status()
            if text:
                parts.append(text)
        return "STATUS=" + "; ".join(parts)


__all__ = ["Daemon"]
