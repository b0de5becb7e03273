"""Repairing one watched config after a write, and remembering enough to do it well.

:class:`Repairer` skips our own writes coming back (a digest of what was last seen), holds back a
writer that keeps undoing the repair (:class:`regauthd.service.flapping.FlapTracker`, then a
timer that tries again), tells the fixer which Docker Hub spelling is newest, and raises the
``config.*`` alerts. It runs on the daemon's loop thread only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from regauthd.alerts.alerter import RaiseAlert
from regauthd.alerts.catalogue import AlertKind
from regauthd.alerts.metrics import Metrics
from regauthd.dockerconfig import authfile, normalize
from regauthd.dockerconfig import file as dockerconfig
from regauthd.dockerconfig.backups import BackupStore
from regauthd.dockerconfig.configdir import file_to_replace
from regauthd.dockerconfig.credhelper import HelperRunner
from regauthd.dockerconfig.fixer import Planner, first_backup_due, fix_file, read
from regauthd.dockerconfig.jsontext import ConfigFileError, ConfigSaveError, parse
from regauthd.dockerconfig.keys import registry_name
from regauthd.dockerconfig.report import FixReport, describe_changes, normalized_fix
from regauthd.redactor import remember_config_secrets
from regauthd.service.flapping import (
    FlapTracker,
    HubFingerprints,
    digest,
    hub_fingerprints,
    newest_hub_keys,
)
from regauthd.service.loop import Loop, Timer
from regauthd.service.watchplan import follows_containers_rules
from regauthd.settings import Settings

log = structlog.get_logger("regauthd")

SAVE_FIRST_RETRY = 5.0
"""Seconds before looking again at a config whose repair could not be saved (no space,
read-only filesystem, permission); doubled after each failure..."""
SAVE_LAST_RETRY = 300.0
"""...up to this, for as long as saving fails."""
REPAIR_THREADS = 2
"""Threads for :meth:`Repairer.repair_all`: while one waits for the disk (fsync, creating
files), the other runs. More only queue for the interpreter lock: 3,000 fixes took 1.96 s on 2
threads and 2.69 s on 4 on tmpfs, 4.19 s and 4.57 s on a journal-less ext4 disk, 3.92 s and
3.62 s on a journaled ext4 (in memory); 8 threads were slower on all three."""
REPAIR_CHUNK = 256
"""Configs read, then fixed together, at a time (what is held at once stays small)."""


@dataclass(slots=True)
class _FileState:
    last_seen: bytes | None = None
    """Digest of the content last looked at (after our write: what we wrote). Seeing it again
    is our own write coming back, or a second event for one write: nothing to do, no loop."""
    last_hub: HubFingerprints | None = None
    """The Hub entries of the content last seen or written: tell which keys a new write added."""
    save_retry: float = 0.0
    """The pause before the next retry of a repair that could not be saved (0: none due)."""


class Repairer:
    """Looks at watched configs after writes and repairs them (loop thread only).

    ``alert`` raises the ``config.*`` alerts, ``metrics`` counts repairs and pauses, and
    ``retry(config)`` is called when a writer's pause ends, to look at that config again.
    ``helper_runner_for(config)`` runs the credential helpers ``config`` names (as its owner).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        loop: Loop,
        alert: RaiseAlert,
        metrics: Metrics,
        retry: Callable[[str], None],
        helper_runner_for: Callable[[str], HelperRunner] | None = None,
    ) -> None:
        self._settings = settings
        self._auth_files = settings.watch.auth_file_patterns(Path.home())
        self._loop = loop
        self._alert = alert
        self._metrics = metrics
        self._retry = retry
        self._runner_for = helper_runner_for
        self.flaps = FlapTracker(settings.flapping)
        self._files: dict[str, _FileState] = {}
        self._backups = BackupStore(settings.state_dir)
        self._resume_timers: dict[str, Timer] = {}
        self.repairs = 0
        """Rewrites so far."""

    def reload(self, settings: Settings) -> None:
        """New settings (SIGHUP): flapping limits, and backups in a new state directory."""
        self.flaps.settings = settings.flapping
        if settings.state_dir != self._settings.state_dir:
            settings.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._backups = BackupStore(settings.state_dir)
        self._settings = settings
        self._auth_files = settings.watch.auth_file_patterns(Path.home())

    def look_again(self, config: str) -> None:
        """Forget what ``config`` last held, so the next :meth:`repair` runs even if unchanged."""
        state = self._files.get(str(file_to_replace(Path(config))))
        if state is not None:
            state.last_seen = None

    def repair(self, config: str) -> FixReport | None:
        """Look at ``config`` after a write; returns what the fixer did (None: it did not run,
        because nothing changed, the file is gone or its writer is paused)."""
        job = self._prepare(config)
        if job is None:
            return None
        report = self._fix(job)
        self._account(job, report)
        return report

    def repair_all(
        self,
        configs: list[str],
        *,
        done: Callable[[str, FixReport], None],
        failed: Callable[[str, Exception], None],
        between: Callable[[], None],
    ) -> None:
        """:meth:`repair_many` over ``configs`` on :data:`REPAIR_THREADS` threads that end
        with the call, :data:`REPAIR_CHUNK` at a time; ``done`` gets each report, ``failed``
        each exception, ``between()`` is called after each chunk (loop thread)."""
        with ThreadPoolExecutor(REPAIR_THREADS, thread_name_prefix="regauthd-repair") as pool:
            for start in range(0, len(configs), REPAIR_CHUNK):
                for config, result in self.repair_many(configs[start : start + REPAIR_CHUNK], pool):
                    if isinstance(result, Exception):
                        failed(config, result)
                    elif result is not None:
                        done(config, result)
                between()

    def repair_many(
        self, configs: Iterable[str], pool: Executor
    ) -> Iterator[tuple[str, FixReport | Exception | None]]:
        """:meth:`repair` each of ``configs``, the file work of several at once on ``pool``'s
        threads (the start-up pass over thousands of configs: their fsyncs overlap, and the
        file system commits them together). Deciding what to do and accounting for it (flapping,
        alerts, listeners) stay on the calling loop thread, in order. A config whose credential
        helpers may run is fixed on the calling thread, after the others (its helpers' budget
        and alerts belong to the loop). Yields each config with its report, None (not run) or
        the exception its repair raised."""
        prepared: list[_Job] = []
        for config in configs:
            try:
                job = self._prepare(config)
            except Exception as exc:
                yield config, exc
                continue
            if job is None:
                yield config, None
                continue
            prepared.append(job)
        self._back_up_first([job for job in prepared if job.parallel], pool)
        # The loop works only while the workers do not: a loop thread beside them waits for the
        # GIL after each system call. So every config is read before the first is handed out
        # (reading 2,000 configs took 5 s beside the workers), and accounting (alerts, status)
        # starts once every fix of the chunk is done (10,000 configs: an alert took 0.83 ms
        # beside the workers, 0.28 ms after them; READY 24.5 s -> 21.8 s).
        jobs: list[tuple[_Job, Future[FixReport] | None]] = [
            (job, pool.submit(self._fix, job) if job.parallel else None) for job in prepared
        ]
        wait([future for _, future in jobs if future is not None])
        for job, future in sorted(jobs, key=lambda pair: pair[1] is None):
            try:
                report = future.result() if future is not None else self._fix(job)
                self._account(job, report)
            except Exception as exc:
                yield job.config, exc
                continue
            yield job.config, report

    def _back_up_first(self, jobs: list[_Job], pool: Executor) -> None:
        """Make the first backups the fixes of ``jobs`` would start with, together
        (:meth:`BackupStore.save_many`: one journal commit for them all, not one each). One
        that fails is left to its fix, which tries again and reports what stops it."""
        due = {
            job.real: job.snapshot
            for job in jobs
            if job.snapshot is not None
            and first_backup_due(
                job.snapshot, backups=self._backups, prefer=job.prefer, rules=job.rules
            )
        }
        if len(due) > 1:
            snapshots = list(due.values())
            # One share per thread: each waits for the disk while the other runs.
            shares = [snapshots[i::REPAIR_THREADS] for i in range(REPAIR_THREADS)]
            futures = [pool.submit(self._backups.save_many, share) for share in shares if share]
            for future in futures:
                if future.exception() is not None:  # not an OSError: those are per backup
                    error = type(future.exception()).__name__  # its text may quote the config
                    log.warning("config.batch_backup_failed", error=error)

    def _prepare(self, config: str) -> _Job | None:
        """Read ``config`` and decide (loop thread): None when there is nothing to fix."""
        real = str(file_to_replace(Path(config)))
        now = self._loop.clock()
        state = self._files.get(real)
        if state is None:
            state = self._files[real] = _FileState()
            # First look since start (or since it was gone): temp files a killed save left
            # beside it hold credentials; remove ours.
            dockerconfig.remove_stale_temps(config)
        # dockerconfig.load never blocks (a FIFO named config.json must not hang the daemon)
        # and its snapshot is handed to the fixer, which then does not read the file again.
        snapshot: dockerconfig.Snapshot | None
        try:
            snapshot = read(Path(config))
            data = snapshot.data
        except ConfigFileError:
            snapshot, data = None, b""
        if snapshot is not None and not snapshot.exists:
            self._files.pop(real, None)
            return None
        seen = digest(data)
        if seen == state.last_seen:
            log.debug("config.unchanged", path=config)
            return None
        state.last_seen = seen
        current = _parse_json(data)
        if current is not None:
            remember_config_secrets(current)
        verdict = self.flaps.observe(real, seen, now)
        if verdict.action == "paused":
            log.debug("config.paused", path=config)
            return None
        if verdict.action == "pause":
            self._alert(
                AlertKind.CONFIG_FLAPPING,
                config,
                path=config,
                undos=verdict.undos,
                window=f"{self._settings.flapping.window:g}s",
                backoff=f"{verdict.backoff:g}s",
            )
            self._metrics.count("flapping_pauses")
            self._schedule_resume(real, config, verdict.backoff)
            return None
        containers = follows_containers_rules(config, self._auth_files)
        prefer: tuple[str, ...] = ()
        if current is not None and not containers:
            prefer = newest_hub_keys(state.last_hub, current)
        return _Job(
            config=config,
            real=real,
            state=state,
            snapshot=snapshot,
            current=current,
            now=now,
            prefer=prefer,
            rules=authfile.plan if containers else normalize.plan,
            helper_runner=self._runner_for(config) if self._runner_for is not None else None,
            parallel=current is not None and not _names_helpers(current),
        )

    def _fix(self, job: _Job) -> FixReport:
        """The file work (any thread: touches only this config's file, its backup and its race
        memory)."""
        return fix_file(
            Path(job.config),
            backups=self._backups,
            prefer=job.prefer,
            defer_cleanup=True,
            snapshot=job.snapshot,
            helper_runner=job.helper_runner,
            rules=job.rules,
        )

    def _account(self, job: _Job, report: FixReport) -> None:
        config, real, state, current, now = job.config, job.real, job.state, job.current, job.now
        if isinstance(report.error, ConfigSaveError):
            self._save_failed(config, real, state, report.error)
            state.last_hub = hub_fingerprints(current)
            return
        state.save_retry = 0.0
        if report.error is not None:
            self._alert(AlertKind.CONFIG_UNFIXABLE, config, path=config, reason=report.error.reason)
            state.last_hub = hub_fingerprints(current)
            return
        if report.written and report.after is not None:
            state.last_seen = digest(report.after)
            state.last_hub = hub_fingerprints(_parse_json(report.after))
            if report.before is not None:
                self.flaps.replaced(real, digest(report.before), now)
            self.repairs += 1
            self._metrics.count("repairs")
            for change in report.changes:
                self._metrics.count("repaired_keys", registry_name(change.to_key))
            for conflict in report.conflicts:
                self._metrics.count("conflicts", registry_name(conflict.canonical))
            # Every repair, even one whose alert the suppression window holds back.
            log.debug("config.repaired", path=config, changes=describe_changes(report))
            self._alert(
                AlertKind.CONFIG_NORMALIZED,
                config,
                path=config,
                changes=describe_changes(report),
                fix=normalized_fix(report),
            )
            for conflict in report.conflicts:
                self._alert(
                    AlertKind.CONFIG_CONFLICT,
                    f"{config}#{conflict.canonical}",
                    path=config,
                    canonical=conflict.canonical,
                    winner=conflict.winner,
                    loser=conflict.loser,
                    backup=str(conflict.backup) if conflict.backup else "none",
                )
        else:
            state.last_hub = hub_fingerprints(current)

    def _save_failed(
        self, config: str, real: str, state: _FileState, error: ConfigSaveError
    ) -> None:
        """Alert, then look again after a pause that doubles up to :data:`SAVE_LAST_RETRY`."""
        delay = min(state.save_retry * 2, SAVE_LAST_RETRY) if state.save_retry else SAVE_FIRST_RETRY
        state.save_retry = delay
        self._metrics.count("save_failures")
        self._alert(
            AlertKind.CONFIG_SAVE_FAILED,
            config,
            path=config,
            reason=error.reason,
            retry=f"{delay:g}s",
            last_retry=f"{SAVE_LAST_RETRY:g}s",
        )
        old = self._resume_timers.pop(real, None)
        if old is not None:
            old.cancel()

        def retry() -> None:
            self._resume_timers.pop(real, None)
            again = self._files.get(real)
            if again is not None:
                again.last_seen = None  # the same content must be tried again
            log.info("config.save_retry", path=config)
            self._retry(config)

        self._resume_timers[real] = self._loop.call_later(delay, retry)

    def _schedule_resume(self, real: str, config: str, delay: float) -> None:
        old = self._resume_timers.pop(real, None)
        if old is not None:
            old.cancel()

        def resume() -> None:
            self._resume_timers.pop(real, None)
            self.flaps.resume(real, self._loop.clock())
            state = self._files.get(real)
            if state is not None:
                state.last_seen = None  # look at the writer's content again
            log.info("config.flapping_retry", path=config)
            self._retry(config)

        self._resume_timers[real] = self._loop.call_later(delay, resume)


@dataclass(frozen=True, slots=True)
class _Job:
    """One config to fix, as :meth:`Repairer._prepare` decided."""

    config: str
    real: str
    state: _FileState
    snapshot: dockerconfig.Snapshot | None
    current: dict[str, Any] | None
    now: float
    prefer: tuple[str, ...]
    rules: Planner
    helper_runner: HelperRunner | None
    parallel: bool
    """May be fixed on another thread: it names no credential helper."""


def _names_helpers(config: dict[str, Any]) -> bool:
    return bool(config.get("credsStore") or config.get("credHelpers"))


def _parse_json(data: bytes) -> dict[str, Any] | None:
    # jsontext.parse, not json.loads: deep nesting and huge numbers are refusals, not crashes.
    try:
        return parse(data)
    except ConfigFileError:
        return None
