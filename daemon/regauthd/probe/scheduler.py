"""Registry probes in the daemon: the thread that probes on :mod:`regauthd.probe.schedule`'s clock.

:class:`ProbeScheduler` runs one asyncio loop in one background thread with one shared ``httpx``
client, re-reads the watched configs (credential helpers run in worker threads), probes what is
due with a shared concurrency bound, and hands the alerts and every completed result to the
daemon's loop thread through ``post``: every subscriber (:meth:`~ProbeScheduler.subscribe`) gets
each result there (the journal watch waits for them). This module is the thread-safe face:
the thread's work is :mod:`regauthd.probe.rounds`, what it knows :mod:`regauthd.probe.book`,
the hand-over :mod:`regauthd.probe.delivery`. :mod:`regauthd.service.app` builds and wires it;
:class:`~regauthd.probe.component.ProbeComponent` runs it beside the daemon. With probes
disabled no thread starts and nothing ever wakes up.

When the fixer resolved a conflict (one registry under two spellings with different
credentials), :meth:`ProbeScheduler.probe_conflict` probes both credentials, read from the backup
of the original file, and one alert says which works
(:func:`regauthd.probe.conflicts.conflict_verdict`).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from regauthd.alerts.alerter import RaiseAlert
from regauthd.dockerconfig.keys import registry_name
from regauthd.probe.book import ProbeBook, config_name
from regauthd.probe.delivery import Delivery, Post, ProbeListener
from regauthd.probe.requests import ProbeRequests
from regauthd.probe.result import ProbeResult
from regauthd.probe.rounds import ConfigSource, ProbeRounds, WatchedConfigs
from regauthd.probe.schedule import DEFAULT_MIN_GAP_S, status_text
from regauthd.probe.targets import RunnerFor
from regauthd.probe.thread import ProbeThread
from regauthd.settings import ProbeSettings

if TYPE_CHECKING:
    from regauthd.dockerconfig.report import FixReport, ReportedConflict


class ProbeScheduler:
    """Periodic probes of every registry in the watched configs, in one background thread.

    Thread-safe API: :meth:`start`, :meth:`stop`, :meth:`reload`, :meth:`probe_now`,
    :meth:`config_changed`, :meth:`probe_conflict`, :meth:`on_repair`, :meth:`latest`,
    :meth:`status_line`. Alerts reach ``alert``, and results the subscribers (call
    :meth:`subscribe` before :meth:`start`), only through ``post`` (so on the daemon's loop
    thread).
    """

    def __init__(
        self,
        settings: ProbeSettings,
        watched_configs: WatchedConfigs,
        post: Post,
        alert: RaiseAlert,
        *,
        clock: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] = random.random,
        helper_env: Mapping[str, str] | None = None,
        helper_runner_for: RunnerFor | None = None,
        ca_file: str | None = None,
        min_gap: float = DEFAULT_MIN_GAP_S,
    ) -> None:
        self._settings = settings
        self._source = ConfigSource(watched_configs, helper_env, helper_runner_for)
        self._delivery = Delivery(post, alert)
        self._clock = clock
        self._rand = rand
        self._ca_file = ca_file
        self._min_gap = min_gap
        self._book = ProbeBook()
        """Kept across restarts (a reload raises no alert by itself)."""
        self._thread = ProbeThread()
        self._wake: asyncio.Event | None = None
        self._requests = ProbeRequests()

    # -- life (any thread) -------------------------------------------------------------------

    @property
    def settings(self) -> ProbeSettings:
        return self._settings

    @property
    def running(self) -> bool:
        return self._thread.running

    def start(self) -> None:
        """Start the probe thread (no-op when probes are disabled or it already runs)."""
        if not self._settings.enabled or self._thread.started:
            return
        self._requests.read_all()
        self._thread.start(self._main)

    def stop(self, timeout: float = 0.5) -> bool:
        """Cancel in-flight probes and end the thread; True when it ended within ``timeout``."""
        return self._thread.stop(timeout)

    def reload(self, settings: ProbeSettings) -> None:
        """New settings: restart the thread (and the client) when they changed. The book (last
        statuses) is kept, so a reload raises no alert by itself."""
        if settings == self._settings:
            return
        if self._thread.started:
            self.stop()
        self._settings = settings
        self.start()

    def subscribe(self, listener: ProbeListener) -> None:
        """Have ``listener`` get every completed result, on the loop thread (before start)."""
        self._delivery.subscribe(listener)

    # -- requests (any thread) ---------------------------------------------------------------

    def probe_now(self, registries: Iterable[str] | None = None) -> None:
        """Probe these registries (any spelling; None: all) as soon as allowed."""
        names = None if registries is None else {registry_name(r) for r in registries}
        self._requests.expedite(names)
        self._wakeup()

    def config_changed(self, paths: Iterable[Path | str]) -> None:
        """A watched config was written: registries whose credential changed are probed now."""
        self._requests.read(config_name(p) for p in paths)
        self._wakeup()

    def on_repair(self, path: Path | str, report: FixReport) -> None:
        """The daemon looked at a write to ``path`` (``report``: what the fixer did): read the
        config again, and probe both credentials of each conflict it resolved."""
        self.config_changed([path])
        for conflict in report.conflicts:
            self.probe_conflict(path, conflict)

    def probe_conflict(self, path: Path | str, conflict: ReportedConflict) -> None:
        """Probe both credentials of a conflict the fixer resolved; one alert says which works."""
        if not self.running:
            return
        self._requests.check_conflict(config_name(path), conflict)
        self._wakeup()

    # -- what is known (any thread) ----------------------------------------------------------

    def latest(self, registry: str, config: Path | str | None = None) -> ProbeResult | None:
        """The last result for ``registry`` (in ``config``, or in the first config holding it)."""
        wanted = None if config is None else config_name(config)
        return self._book.latest(registry, wanted)

    def status_line(self) -> str:
        return status_text(
            self._book.statuses(), enabled=self._settings.enabled, started=self._book.read_once
        )

    # -- the probe thread --------------------------------------------------------------------

    def _wakeup(self) -> None:
        wake = self._wake
        if wake is not None:
            self._thread.call_soon(wake.set)

    async def _main(self) -> None:
        self._wake = wake = asyncio.Event()
        try:
            rounds = ProbeRounds(
                self._settings,
                book=self._book,
                requests=self._requests,
                delivery=self._delivery,
                source=self._source,
                wake=wake,
                clock=self._clock,
                rand=self._rand,
                ca_file=self._ca_file,
                min_gap=self._min_gap,
            )
            await rounds.run()
        finally:
            self._wake = None


__all__ = ["ProbeScheduler"]
