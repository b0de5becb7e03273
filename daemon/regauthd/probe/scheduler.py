"""Registry probes in the daemon: the thread that probes on :mod:`regauthd.probe.schedule`'s clock.

:class:`ProbeScheduler` runs one asyncio loop in one background thread with one shared ``httpx``
client, re-reads the watched configs (credential helpers run in worker threads), probes what is
due with a shared concurrency bound, and hands the alerts and every completed result to the
daemon's loop thread through ``post``: every subscriber (:meth:`~ProbeScheduler.subscribe`) gets
each result there (the journal watch waits for them). :mod:`regauthd.service.app` builds and
wires it; :class:`~regauthd.probe.component.ProbeComponent` runs it beside the daemon. With
probes disabled no thread starts and nothing ever wakes up.

When the fixer resolved a conflict (one registry under two spellings with different
credentials), :meth:`ProbeScheduler.probe_conflict` probes both credentials, read from the backup
of the original file, and one alert says which works
(:func:`regauthd.probe.conflicts.conflict_verdict`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import os
import random
import secrets
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import structlog

from regauthd.alerts.alerter import RaiseAlert
from regauthd.dockerconfig.keys import registry_name
from regauthd.probe.client import make_client, probe
from regauthd.probe.conflicts import conflict_alert
from regauthd.probe.latest import LatestResults
from regauthd.probe.requests import ProbeRequests
from regauthd.probe.result import ProbePolicy, ProbeResult, ProbeTarget
from regauthd.probe.schedule import (
    DEFAULT_MIN_GAP_S,
    AlertDecision,
    Cadence,
    ProbeKey,
    Watched,
    begin,
    due_keys,
    expedite,
    next_wakeup,
    observe,
    settle,
    status_text,
    sync,
)
from regauthd.probe.targets import (
    RunnerFor,
    conflict_targets,
    target_fingerprint,
    watched_targets,
)
from regauthd.probe.thread import ProbeThread
from regauthd.settings import ProbeSettings

if TYPE_CHECKING:
    from regauthd.dockerconfig.report import FixReport, ReportedConflict

log = structlog.get_logger("regauthd.probewatch")


Post = Callable[[Callable[[], None]], None]
"""Run a callback on the daemon's loop thread (safe from any thread)."""

WatchedConfigs = Callable[[], Iterable[Path]]
"""The config files watched now (the daemon's current watch plan; called from a worker thread)."""

ProbeListener = Callable[[ProbeKey, ProbeResult], None]
"""Gets every completed result of a registry in a config, on the loop thread."""


def _config_name(path: Path | str) -> str:
    return os.path.normpath(str(path))


def deliver(alert: RaiseAlert, decisions: Iterable[AlertDecision]) -> None:
    """Raise ``decisions`` (loop thread)."""
    for decision in decisions:
        alert(decision.kind, decision.subject, **decision.kwargs())


def _report_crash(task: asyncio.Task[None]) -> None:
    # probe() turns everything a registry does into a result; anything reaching here is a bug
    # of ours. Only the type is logged: an unexpected exception may carry anything.
    if not task.cancelled() and task.exception() is not None:
        log.error("probe.task_crashed", error_type=type(task.exception()).__name__)


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
        self._watched_configs = watched_configs
        self._post = post
        self._alert = alert
        self._listeners: list[ProbeListener] = []
        self._clock = clock
        self._rand = rand
        self._helper_env = helper_env
        self._runner_for = helper_runner_for
        self._ca_file = ca_file
        self._min_gap = min_gap
        # Fingerprints are keyed per process: equal credentials compare equal, and nothing
        # about a secret can be learned from one.
        self._fingerprint_key = secrets.token_bytes(32)
        self._lock = threading.Lock()
        self._book: dict[ProbeKey, Watched] = {}
        self._targets: dict[ProbeKey, ProbeTarget] = {}
        """Owned by the probe thread."""
        self._latest = LatestResults()
        self._thread = ProbeThread()
        self._wake: asyncio.Event | None = None
        self._started = False
        """The configs have been read once (for the status line)."""
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
        self._listeners.append(listener)

    # -- requests (any thread) ---------------------------------------------------------------

    def probe_now(self, registries: Iterable[str] | None = None) -> None:
        """Probe these registries (any spelling; None: all) as soon as allowed."""
        names = None if registries is None else {registry_name(r) for r in registries}
        self._requests.expedite(names)
        self._wakeup()

    def config_changed(self, paths: Iterable[Path | str]) -> None:
        """A watched config was written: registries whose credential changed are probed now."""
        self._requests.read(_config_name(p) for p in paths)
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
        self._requests.check_conflict(_config_name(path), conflict)
        self._wakeup()

    # -- what is known (any thread) ----------------------------------------------------------

    def latest(self, registry: str, config: Path | str | None = None) -> ProbeResult | None:
        """The last result for ``registry`` (in ``config``, or in the first config holding it)."""
        wanted = None if config is None else _config_name(config)
        with self._lock:
            return self._latest.get(registry, wanted)

    def status_line(self) -> str:
        with self._lock:
            items = [(k.registry, s.status) for k, s in sorted(self._book.items())]
        return status_text(items, enabled=self._settings.enabled, started=self._started)

    # -- the probe thread --------------------------------------------------------------------

    def _wakeup(self) -> None:
        wake = self._wake
        if wake is not None:
            self._thread.call_soon(wake.set)

    async def _main(self) -> None:
        self._wake = asyncio.Event()
        try:
            await self._probe_forever(self._wake)
        finally:
            self._wake = None

    async def _probe_forever(self, wake: asyncio.Event) -> None:
        settings = self._settings
        cadence = dataclasses.replace(Cadence.from_settings(settings), min_gap=self._min_gap)
        policy = ProbePolicy(
            trusted_realm_hosts=frozenset(settings.trusted_realms),
            timeout_s=3 * settings.timeout,
        )
        gate = asyncio.Semaphore(settings.concurrency)
        tasks: set[asyncio.Task[None]] = set()
        with self._lock:
            self._book = settle(self._book, now=self._clock())
        # The constructor's CA file (tests) wins over the settings' one.
        ca_file = self._ca_file or (str(settings.ca_file) if settings.ca_file else None)
        async with make_client(
            ca_file=ca_file,
            insecure_hosts=settings.insecure_registries,
            request_timeout_s=settings.timeout,
        ) as client:
            try:
                while True:
                    wake.clear()
                    try:
                        await self._round(client, gate, cadence, policy, tasks)
                    except Exception as exc:
                        # A bug of ours must not end the probes for good, nor spin: try again
                        # after an interval (or when asked to). The type only, as above.
                        log.error("probe.round_crashed", error_type=type(exc).__name__)
                        wakeup: float | None = self._clock() + cadence.interval
                    else:
                        with self._lock:
                            wakeup = next_wakeup(self._book)
                    timeout = None if wakeup is None else max(0.0, wakeup - self._clock())
                    try:
                        async with asyncio.timeout(timeout):
                            await wake.wait()
                    except TimeoutError:
                        pass
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

    async def _round(
        self,
        client: httpx.AsyncClient,
        gate: asyncio.Semaphore,
        cadence: Cadence,
        policy: ProbePolicy,
        tasks: set[asyncio.Task[None]],
    ) -> None:
        asked = self._requests.take()
        full, paths, urgent = asked.read_all, set(asked.paths), asked.urgent
        with self._lock:
            now = self._clock()
            if urgent is None or urgent:
                for key, state in list(self._book.items()):
                    if urgent is None or key.registry in urgent:
                        self._book[key] = expedite(state, now=now, cadence=cadence)
            # Whatever is about to be probed is read again first: a credential changed by
            # other means (a helper updated behind our back) is probed as it is now.
            paths |= {k.config for k in due_keys(self._book, now)}
        if full or paths:
            targets, fresh = await asyncio.to_thread(self._read_targets, None if full else paths)
            self._targets.update(targets)
            seen = {k: target_fingerprint(t, self._fingerprint_key) for k, t in targets.items()}
            with self._lock:
                self._started = True
                keep = {k.config for k in self._book} - fresh
                self._book = sync(self._book, seen, now=self._clock(), keep=keep)
                for key in [k for k in self._targets if k not in self._book]:
                    del self._targets[key]
        for path, conflict in asked.conflicts:
            self._spawn(tasks, self._check_conflict(client, gate, policy, path, conflict))
        now = self._clock()
        with self._lock:
            due = due_keys(self._book, now)
            groups: dict[bytes, list[ProbeKey]] = {}
            for key in due:
                if key not in self._targets:
                    del self._book[key]  # cannot happen; never spin on a key with no target
                    continue
                groups.setdefault(self._book[key].fingerprint, []).append(key)
                self._book[key] = begin(self._book[key])
        for fingerprint, keys in groups.items():
            # Configs holding the same credential for a registry (a symlink, a copied config)
            # share one probe.
            target = self._targets[keys[0]]
            self._spawn(
                tasks, self._probe_group(client, gate, cadence, policy, target, fingerprint, keys)
            )

    def _spawn(self, tasks: set[asyncio.Task[None]], coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        task.add_done_callback(_report_crash)

    async def _probe_group(
        self,
        client: httpx.AsyncClient,
        gate: asyncio.Semaphore,
        cadence: Cadence,
        policy: ProbePolicy,
        target: ProbeTarget,
        fingerprint: bytes,
        keys: Sequence[ProbeKey],
    ) -> None:
        async with gate:
            result = await probe(client, target, policy)
        now = self._clock()
        decisions: list[AlertDecision] = []
        updated: list[ProbeKey] = []
        with self._lock:
            for key in keys:
                state = self._book.get(key)
                if state is None:
                    continue  # the config dropped the registry meanwhile
                step = observe(
                    state,
                    result,
                    key,
                    now=now,
                    cadence=cadence,
                    rand=self._rand(),
                    probed_fingerprint=fingerprint,
                )
                if state.fingerprint == fingerprint:
                    self._latest.record(key, result)
                    updated.append(key)
                self._book[key] = step.state
                decisions.extend(step.alerts)
        log.debug(
            "probe.scheduled_result",
            registry=target.registry,
            status=result.status.value,
            configs=len(keys),
        )
        # Posted even without alerts: the daemon refreshes its STATUS= line after each callback.
        self._post(lambda: self._deliver(decisions, updated, result))
        if self._wake is not None:
            self._wake.set()

    async def _check_conflict(
        self,
        client: httpx.AsyncClient,
        gate: asyncio.Semaphore,
        policy: ProbePolicy,
        path: str,
        conflict: ReportedConflict,
    ) -> None:
        kept, removed = await asyncio.to_thread(
            functools.partial(
                conflict_targets,
                conflict,
                self._settings,
                env=self._helper_env,
                runner=self._runner_for(path) if self._runner_for is not None else None,
            )
        )

        async def one(target: ProbeTarget) -> ProbeResult:
            async with gate:
                return await probe(client, target, policy)

        kept_result, removed_result = await asyncio.gather(one(kept), one(removed))
        decision = conflict_alert(
            path,
            conflict,
            (kept.credential, kept_result),
            (removed.credential, removed_result),
        )
        self._post(lambda: deliver(self._alert, [decision]))

    def _deliver(
        self, decisions: list[AlertDecision], keys: list[ProbeKey], result: ProbeResult
    ) -> None:
        """On the loop thread: raise the alerts, then hand the result to every subscriber."""
        deliver(self._alert, decisions)
        for key in keys:
            for listener in self._listeners:
                try:
                    listener(key, result)
                except Exception:
                    # A subscriber's bug must not cost the others their result, nor the loop.
                    log.exception("probe.listener_failed", registry=key.registry)

    # -- reading the configs (a worker thread) ---------------------------------------------

    def _read_targets(
        self, paths: Collection[str] | None
    ) -> tuple[dict[ProbeKey, ProbeTarget], set[str]]:
        """:func:`~regauthd.probe.targets.watched_targets` (blocking: a worker thread)."""
        with self._lock:
            known = {k.config for k in self._book}
        try:
            watched = [_config_name(p) for p in self._watched_configs()]
        except OSError as exc:
            log.warning("probe.configs_unlisted", reason=exc.strerror or str(exc))
            return {}, set()
        return watched_targets(
            watched, known, paths, self._settings, env=self._helper_env, runner_for=self._runner_for
        )
