"""The journal watch as a component of the daemon (:class:`regauthd.service.daemon.Daemon`).

:class:`JournalComponent` builds the :class:`~regauthd.journal.watch.JournalWatch` when the daemon
starts, beside :class:`regauthd.probe.scheduler.ProbeComponent`, whose scheduler is the prober.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from regauthd.dockerconfig.backups import BackupStore
from regauthd.dockerconfig.fixer import fix_file
from regauthd.dockerconfig.report import FixReport
from regauthd.journal.backend import FollowOptions
from regauthd.journal.watch import JournalWatch, Recheck
from regauthd.probe.result import ProbeResult
from regauthd.probe.scheduler import watched_configs
from regauthd.settings import Settings

if TYPE_CHECKING:
    from regauthd.probe.component import ProbeComponent
    from regauthd.service.daemon import Daemon


class _SchedulerOf:
    """The probe component's scheduler, looked up at each use: the journal component does not
    depend on the order the daemon starts its components in, nor on probes being enabled."""

    def __init__(self, probes: ProbeComponent) -> None:
        self._probes = probes

    @property
    def running(self) -> bool:
        scheduler = self._probes.scheduler
        return scheduler is not None and scheduler.running

    def probe_now(self, registries: list[str]) -> None:
        scheduler = self._probes.scheduler
        if scheduler is not None:
            scheduler.probe_now(registries)

    def latest(self, registry: str) -> ProbeResult | None:
        scheduler = self._probes.scheduler
        return scheduler.latest(registry) if scheduler is not None else None


class JournalComponent:
    """The journal watch as a :class:`regauthd.service.daemon.Component` of the daemon.

    ``probes``: the daemon's probe component; while its scheduler runs, failures are probed.
    ``recheck``: how the watched configs are repaired on demand. Default: the daemon's own
    ``recheck(registry)`` method when it has one (its repair path: newest-wins, flap tracking,
    ``config.normalized`` alerts), else the fixer over every existing watched config. The daemon
    hands every repair it makes to :meth:`config_changed`, so that a failure logged just after
    it is explained by it.
    """

    name = "journal"

    def __init__(
        self,
        settings: Settings,
        *,
        probes: ProbeComponent | None = None,
        recheck: Recheck | None = None,
        options: FollowOptions | None = None,
    ) -> None:
        self._settings = settings
        self._probes = probes
        self._recheck = recheck
        self._options = options
        self.watch: JournalWatch | None = None

    def _fix_watched(self, registry: str | None) -> list[FixReport]:
        backups = BackupStore(self._settings.state_dir)
        return [fix_file(path, backups=backups) for path in watched_configs(self._settings)]

    def start(self, daemon: Daemon) -> None:
        # Looked up by name: the daemon's re-check hook may not exist in every version of it.
        own: Recheck | None = getattr(daemon, "recheck", None)
        self.watch = JournalWatch(
            self._settings,
            self._settings.state_dir,
            daemon.post,
            daemon,
            self._recheck or own or self._fix_watched,
            _SchedulerOf(self._probes) if self._probes is not None else None,
            options=self._options,
            verdict_timeout=self._settings.journal.verdict_timeout,
        )
        self.watch.start()

    def reload(self, settings: Settings) -> None:
        self._settings = settings
        if self.watch is not None:
            self.watch.reload(settings)

    def stop(self) -> None:
        if self.watch is not None:
            self.watch.stop()

    def status(self) -> str | None:
        return self.watch.status() if self.watch is not None else None

    def config_changed(self, path: Path | str, report: FixReport | None = None) -> None:
        """The daemon saw a write to ``path`` and repaired it with ``report`` (loop thread)."""
        if self.watch is not None and report is not None:
            self.watch.record_fix(report)


__all__ = ["JournalComponent"]
