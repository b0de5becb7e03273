"""The probe scheduler as a component the daemon runs (:class:`ProbeComponent`)."""

from __future__ import annotations

import structlog

from regauthd.probe.rounds import WatchedConfigs
from regauthd.probe.scheduler import ProbeScheduler
from regauthd.settings import Settings


class ProbeComponent:
    """Runs a :class:`~regauthd.probe.scheduler.ProbeScheduler` as a
    :class:`regauthd.service.component.Component`: the daemon's settings in, the probe summary out.

    ``watched_configs``: the configs watched now; after a reload they are all read again.
    """

    name = "probes"

    def __init__(self, scheduler: ProbeScheduler, watched_configs: WatchedConfigs) -> None:
        self._scheduler = scheduler
        self._watched_configs = watched_configs

    def start(self) -> None:
        self._scheduler.start()
        settings = self._scheduler.settings
        structlog.get_logger("regauthd").info(
            "probes.started",
            every=f"{settings.interval / 60:g} min",
            configs=[str(p) for p in self._watched_configs()],
        )

    def reload(self, settings: Settings) -> None:
        self._scheduler.reload(settings.probe)
        self._scheduler.config_changed(self._watched_configs())

    def stop(self) -> None:
        self._scheduler.stop()

    def status(self) -> str | None:
        if not self._scheduler.settings.enabled:
            return None
        return self._scheduler.status_line()


__all__ = ["ProbeComponent"]
