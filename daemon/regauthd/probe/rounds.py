"""The probe thread's work: rounds of probes until it is stopped (:class:`ProbeRounds`).

One round: take what other threads asked for (:class:`~regauthd.probe.requests.ProbeRequests`),
make the urgent registries due, read again the configs about to be probed (credential helpers
run in worker threads), start the conflict checks asked for and the probes that are due (each a
task, bounded together by ``[probe] concurrency``). Then sleep until the next probe falls due,
or until a request or a finished probe wakes the thread. Results are recorded in the
:class:`~regauthd.probe.book.ProbeBook` and handed to the loop thread by
:class:`~regauthd.probe.delivery.Delivery`. :class:`~regauthd.probe.scheduler.ProbeScheduler`
builds one each time its thread starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
from collections.abc import Callable, Collection, Coroutine, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import structlog

from regauthd.probe.book import DueProbe, ProbeBook, config_name
from regauthd.probe.client import make_client, probe
from regauthd.probe.conflicts import conflict_alert
from regauthd.probe.delivery import Delivery
from regauthd.probe.requests import ProbeRequests
from regauthd.probe.result import ProbePolicy, ProbeResult, ProbeTarget
from regauthd.probe.schedule import Cadence, ProbeKey
from regauthd.probe.targets import RunnerFor, conflict_targets, watched_targets
from regauthd.settings import ProbeSettings

if TYPE_CHECKING:
    from regauthd.dockerconfig.report import ReportedConflict

log = structlog.get_logger("regauthd.probewatch")


def _report_crash(task: asyncio.Task[None]) -> None:
    # probe() turns everything a registry does into a result; anything reaching here is a bug
    # of ours. Only the type is logged: an unexpected exception may carry anything.
    if not task.cancelled() and task.exception() is not None:
        log.error("probe.task_crashed", error_type=type(task.exception()).__name__)


WatchedConfigs = Callable[[], Iterable[Path]]
"""The config files watched now (the daemon's current watch plan; called from a worker thread)."""


@dataclasses.dataclass(frozen=True, slots=True)
class ConfigSource:
    """Where the probe thread reads credentials: the watched configs and how to run helpers."""

    watched_configs: WatchedConfigs
    helper_env: Mapping[str, str] | None = None
    runner_for: RunnerFor | None = None


class ProbeRounds:
    """Runs on the probe thread's asyncio loop (:meth:`run`); ``wake`` cuts a sleep short."""

    def __init__(
        self,
        settings: ProbeSettings,
        *,
        book: ProbeBook,
        requests: ProbeRequests,
        delivery: Delivery,
        source: ConfigSource,
        wake: asyncio.Event,
        clock: Callable[[], float],
        rand: Callable[[], float],
        ca_file: str | None,
        min_gap: float,
    ) -> None:
        self._settings = settings
        self._book = book
        self._requests = requests
        self._delivery = delivery
        self._source = source
        self._wake = wake
        self._clock = clock
        self._rand = rand
        self._cadence = dataclasses.replace(Cadence.from_settings(settings), min_gap=min_gap)
        self._policy = ProbePolicy(
            trusted_realm_hosts=frozenset(settings.trusted_realms),
            timeout_s=3 * settings.timeout,
        )
        self._gate = asyncio.Semaphore(settings.concurrency)
        self._tasks: set[asyncio.Task[None]] = set()
        # The constructor's CA file (tests) wins over the settings' one.
        self._ca_file = ca_file or (str(settings.ca_file) if settings.ca_file else None)

    async def run(self) -> None:
        """Round after round until cancelled; the probes in flight are cancelled with it."""
        self._book.settle(now=self._clock())
        async with make_client(
            ca_file=self._ca_file,
            insecure_hosts=self._settings.insecure_registries,
            request_timeout_s=self._settings.timeout,
        ) as client:
            try:
                while True:
                    self._wake.clear()
                    wakeup = await self._round_then_next_wakeup(client)
                    await self._sleep_until(wakeup)
            finally:
                for task in self._tasks:
                    task.cancel()
                await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _round_then_next_wakeup(self, client: httpx.AsyncClient) -> float | None:
        """Run one round; when to wake up for the next (None: only when woken)."""
        try:
            await self._round(client)
        except Exception as exc:
            # A bug of ours must not end the probes for good, nor spin: try again after an
            # interval (or when asked to). The type only, as in _report_crash.
            log.error("probe.round_crashed", error_type=type(exc).__name__)
            return self._clock() + self._cadence.interval
        return self._book.next_wakeup()

    async def _sleep_until(self, wakeup: float | None) -> None:
        """Until ``wakeup`` (None: no probe is due) or until woken (a request, a finished probe)."""
        timeout = None if wakeup is None else max(0.0, wakeup - self._clock())
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._wake.wait()

    async def _round(self, client: httpx.AsyncClient) -> None:
        """Take the requests, read the configs about to be probed, start what is due."""
        asked = self._requests.take()
        now = self._clock()
        self._book.expedite(asked.urgent, now=now, cadence=self._cadence)
        # Whatever is about to be probed is read again first: a credential changed by other
        # means (a helper updated behind our back) is probed as it is now.
        paths = set(asked.paths) | self._book.configs_due(now=now)
        if asked.read_all or paths:
            await self._read_configs(None if asked.read_all else paths)
        for path, conflict in asked.conflicts:
            self._spawn(self._check_conflict(client, path, conflict))
        for due in self._book.begin_due(now=self._clock()):
            self._spawn(self._probe_due(client, due))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(_report_crash)

    async def _read_configs(self, paths: Collection[str] | None) -> None:
        """Read these configs again (None: every watched one) and bring the book up to date."""
        targets, fresh = await asyncio.to_thread(self._read_targets, paths)
        self._book.update_targets(targets, fresh, now=self._clock())

    async def _probe_due(self, client: httpx.AsyncClient, due: DueProbe) -> None:
        """Probe one credential, record the result for every config holding it, push it."""
        async with self._gate:
            result = await probe(client, due.target, self._policy)
        recorded = self._book.record(
            due, result, now=self._clock(), cadence=self._cadence, rand=self._rand
        )
        log.debug(
            "probe.scheduled_result",
            registry=due.target.registry,
            status=result.status.value,
            configs=len(due.keys),
        )
        self._delivery.result(recorded.alerts, recorded.updated, result)
        self._wake.set()

    async def _check_conflict(
        self, client: httpx.AsyncClient, path: str, conflict: ReportedConflict
    ) -> None:
        """Probe both credentials of a conflict the fixer resolved; one alert says which works."""
        runner_for = self._source.runner_for
        kept, removed = await asyncio.to_thread(
            functools.partial(
                conflict_targets,
                conflict,
                self._settings,
                env=self._source.helper_env,
                runner=runner_for(path) if runner_for is not None else None,
            )
        )

        async def one(target: ProbeTarget) -> ProbeResult:
            async with self._gate:
                return await probe(client, target, self._policy)

        kept_result, removed_result = await asyncio.gather(one(kept), one(removed))
        decision = conflict_alert(
            path,
            conflict,
            (kept.credential, kept_result),
            (removed.credential, removed_result),
        )
        self._delivery.alert(decision)

    # -- reading the configs (a worker thread) ---------------------------------------------

    def _read_targets(
        self, paths: Collection[str] | None
    ) -> tuple[dict[ProbeKey, ProbeTarget], set[str]]:
        """:func:`~regauthd.probe.targets.watched_targets` (blocking: a worker thread)."""
        known = self._book.known_configs()
        try:
            watched = [config_name(p) for p in self._source.watched_configs()]
        except OSError as exc:
            log.warning("probe.configs_unlisted", reason=exc.strerror or str(exc))
            return {}, set()
        return watched_targets(
            watched,
            known,
            paths,
            self._settings,
            env=self._source.helper_env,
            runner_for=self._source.runner_for,
        )


__all__ = ["ConfigSource", "ProbeRounds", "WatchedConfigs"]
