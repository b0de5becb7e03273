"""The probe scheduler as a component of the daemon (:class:`ProbeComponent`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from regauthd.probe.schedule import DEFAULT_MIN_GAP_S
from regauthd.probe.scheduler import ProbeScheduler, watched_configs
from regauthd.settings import Settings

if TYPE_CHECKING:
    from regauthd.dockerconfig.report import FixReport
    from regauthd.service.daemon import Daemon


class ProbeComponent:
    """The probe scheduler as a :class:`regauthd.service.daemon.Component` of the daemon."""

    name = "probes"

    def __init__(
        self,
        settings: Settings,
        *,
        ca_file: str | None = None,
        min_gap: float = DEFAULT_MIN_GAP_S,
    ) -> None:
        self._settings = settings
        self._ca_file = ca_file
        self._min_gap = min_gap
        self.scheduler: ProbeScheduler | None = None

    def start(self, daemon: Daemon) -> None:
        self.scheduler = ProbeScheduler(
            self._settings.probe,
            config_paths=lambda: watched_configs(self._settings),
            post=daemon.post,
            alerter=daemon,
            ca_file=self._ca_file,
            min_gap=self._min_gap,
        )
        self.scheduler.start()

    def reload(self, settings: Settings) -> None:
        self._settings = settings
        if self.scheduler is not None:
            self.scheduler.reload(settings.probe)
            self.scheduler.config_changed(watched_configs(settings))

    def stop(self) -> None:
        if self.scheduler is not None:
            self.scheduler.stop()

    def status(self) -> str | None:
        if self.scheduler is None or not self._settings.probe.enabled:
            return None
        return self.scheduler.status_line()

    def config_changed(self, path: Path | str, report: FixReport | None = None) -> None:
        """The daemon saw a write to ``path`` (and repaired it with ``report``)."""
        if self.scheduler is None:
            return
        self.scheduler.config_changed([path])
        if report is not None:
            for conflict in report.conflicts:
                self.scheduler.probe_conflict(path, conflict)

    def auth_failure(self, registry: str) -> None:
        """The journal showed an engine failing to authenticate to ``registry``."""
        if self.scheduler is not None:
            self.scheduler.probe_now([registry])
