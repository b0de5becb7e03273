"""Registry probes in the daemon: when to probe, what to tell people, and the thread that probes.

Pure core (top of the module, no I/O, no clock: time is passed in). Every registry of every
watched config is one :class:`ProbeKey` with a :class:`Watched` state: last status, consecutive
failures, when it is due, the ``Retry-After`` floor, and a keyed fingerprint of the credential
(never the credential). :func:`observe` turns a :class:`~regauthd.probe.client.ProbeResult` into
the next state and the alerts to raise; alerts follow transitions only:

=====================  =====================  ==========================
before                 now                    alert
=====================  =====================  ==========================
never probed           ok                     none
never probed / ok      failing (any reason)   ``probe.failing``
failing X              failing Y (Y != X)     ``probe.failing`` (new reason)
failing X              failing X              none
anything but limited   rate_limited           ``probe.rate_limited``
failing / limited      ok                     ``probe.recovered``
=====================  =====================  ==========================

The next probe is :func:`regauthd.probe.client.next_delay` away: the interval plus jitter when
healthy, doubling per consecutive failure while failing, never before a ``Retry-After``.

Shell: :class:`ProbeScheduler` runs one asyncio loop in one background thread with one shared
``httpx`` client, re-reads the watched configs (credential helpers run in worker threads), probes
what is due with a shared concurrency bound, and hands the alerts to the daemon's loop thread
through ``post``. :class:`ProbeComponent` plugs it into :class:`regauthd.service.daemon.Daemon`.
With probes disabled no thread starts and nothing ever wakes up.

When the fixer resolved a conflict (one registry under two spellings with different
credentials), :meth:`ProbeScheduler.probe_conflict` probes both credentials, read from the backup
of the original file, and one alert says which works (:func:`conflict_verdict`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import glob
import hashlib
import os
import random
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol

import httpx
import structlog

from regauthd.alerts.catalogue import CATALOGUE
from regauthd.dockerconfig import file as dockerconfig
from regauthd.dockerconfig.file import ConfigFileError
from regauthd.dockerconfig.keys import registry_name
from regauthd.dockerconfig.stores import Credential, CredentialError, store_for
from regauthd.probe.client import (
    ProbePolicy,
    ProbeResult,
    ProbeStatus,
    ProbeTarget,
    make_client,
    next_delay,
    probe,
    targets_from_config,
)
from regauthd.redact import REDACTOR, remember_config_secrets
from regauthd.settings import ProbeSettings, Settings

if TYPE_CHECKING:
    from regauthd.dockerconfig.fixer import FixReport, ReportedConflict
    from regauthd.service.daemon import Daemon

log = structlog.get_logger("regauthd.probewatch")

FAILING_KIND: Final = "probe.failing"
RECOVERED_KIND: Final = "probe.recovered"
RATE_LIMITED_KIND: Final = "probe.rate_limited"
CONFLICT_KIND: Final = "probe.conflict"

DEFAULT_MAX_BACKOFF_S: Final = 6 * 3600.0
DEFAULT_MIN_GAP_S: Final = 10.0
"""An on-demand probe (a journal auth failure) does not re-probe a registry probed this recently:
a burst of failed pulls must not become a burst of logins against the registry."""


# ---------------------------------------------------------------------------------------------
# Pure core


@dataclass(frozen=True, slots=True, order=True)
class ProbeKey:
    """One registry as one watched config sees it (two users' ``docker.io`` are two keys)."""

    config: str
    registry: str

    @property
    def subject(self) -> str:
        """The alert subject: suppression and dedup work per config and registry."""
        return f"{self.config}#{self.registry}"


@dataclass(frozen=True, slots=True)
class Cadence:
    """How often to probe; from :class:`~regauthd.settings.ProbeSettings`."""

    interval: float
    jitter: float = 0.0
    max_backoff: float = DEFAULT_MAX_BACKOFF_S
    min_gap: float = DEFAULT_MIN_GAP_S

    @classmethod
    def from_settings(cls, settings: ProbeSettings) -> Cadence:
        return cls(
            interval=settings.interval,
            jitter=settings.jitter,
            max_backoff=max(DEFAULT_MAX_BACKOFF_S, settings.interval),
        )


@dataclass(frozen=True, slots=True)
class Watched:
    """What the scheduler knows about one :class:`ProbeKey`."""

    fingerprint: bytes = b""
    """Keyed hash of the target (credential included): a change means a new login."""
    status: ProbeStatus | None = None
    """The last status (None: never probed)."""
    failures: int = 0
    """Consecutive results that were not ``ok``."""
    due: float = 0.0
    """When the next probe should start."""
    not_before: float = 0.0
    """``Retry-After``: no probe, not even an immediate one, before this."""
    last_probed: float | None = None
    in_flight: bool = False


@dataclass(frozen=True, slots=True)
class AlertDecision:
    """One alert to raise: a catalogued kind, its subject and its fields (no secret in any)."""

    kind: str
    subject: str
    fields: tuple[tuple[str, Any], ...]

    def kwargs(self) -> dict[str, Any]:
        return dict(self.fields)


def _decision(kind: str, subject: str, **fields: Any) -> AlertDecision:
    return AlertDecision(kind, subject, tuple(fields.items()))


def _figure(value: int | None) -> str:
    return "?" if value is None else str(value)


def alerts_for(
    previous: ProbeStatus | None, result: ProbeResult, key: ProbeKey
) -> tuple[AlertDecision, ...]:
    """The alerts a status change from ``previous`` to ``result.status`` raises (see the table
    in the module docstring)."""
    status = result.status
    if status is previous:
        return ()
    if status is ProbeStatus.OK:
        if previous is None:
            return ()
        return (
            _decision(
                RECOVERED_KIND,
                key.subject,
                registry=key.registry,
                path=key.config,
                previous=previous.value,
                detail=result.detail,
            ),
        )
    if status is ProbeStatus.RATE_LIMITED:
        return (
            _decision(
                RATE_LIMITED_KIND,
                key.subject,
                registry=key.registry,
                remaining=_figure(result.rate_limit_remaining),
                limit=_figure(result.rate_limit_limit),
                path=key.config,
                reason=result.detail,
                retry_after_s=result.retry_after_s,
            ),
        )
    return (
        _decision(
            FAILING_KIND,
            key.subject,
            registry=key.registry,
            reason=result.detail,
            status=status.value,
            path=key.config,
            previous=previous.value if previous is not None else None,
            push_allowed=result.push_allowed,
            username=result.username,
        ),
    )


@dataclass(frozen=True, slots=True)
class Step:
    state: Watched
    alerts: tuple[AlertDecision, ...] = ()


def begin(state: Watched) -> Watched:
    """A probe of this key started."""
    return dataclasses.replace(state, in_flight=True)


def observe(
    state: Watched,
    result: ProbeResult,
    key: ProbeKey,
    *,
    now: float,
    cadence: Cadence,
    rand: float,
    probed_fingerprint: bytes | None = None,
) -> Step:
    """Apply one probe result: next state (when due again) and the alerts to raise.

    ``probed_fingerprint`` is the fingerprint of the target that was probed: when the credential
    changed while the probe ran (a login), the result speaks of the old credential and is
    dropped; the key stays due for the new one. ``rand`` in [0, 1) draws the jitter.
    """
    if probed_fingerprint is not None and probed_fingerprint != state.fingerprint:
        return Step(dataclasses.replace(state, in_flight=False))
    failures = 0 if result.ok else state.failures + 1
    retry = result.retry_after_s
    delay = next_delay(
        cadence.interval,
        failures,
        jitter_s=cadence.jitter,
        retry_after_s=retry,
        max_backoff_s=cadence.max_backoff,
        rand=rand,
    )
    new = dataclasses.replace(
        state,
        status=result.status,
        failures=failures,
        due=now + delay,
        not_before=now + retry if retry is not None else 0.0,
        last_probed=now,
        in_flight=False,
    )
    return Step(new, alerts_for(state.status, result, key))


def expedite(state: Watched, *, now: float, cadence: Cadence) -> Watched:
    """Probe as soon as allowed (a journal auth failure, an operator's request): not before a
    ``Retry-After``, not twice within ``cadence.min_gap``; never later than already due."""
    if state.in_flight:
        return state
    earliest = max(now, state.not_before)
    if state.last_probed is not None:
        earliest = max(earliest, state.last_probed + cadence.min_gap)
    return dataclasses.replace(state, due=min(state.due, earliest))


def recredentialed(state: Watched, fingerprint: bytes, *, now: float) -> Watched:
    """The config was read again: a changed credential (a new login) is probed at once, only a
    ``Retry-After`` holds it back. The last status is kept, so a fixed credential raises
    ``probe.recovered``."""
    if fingerprint == state.fingerprint:
        return state
    return dataclasses.replace(state, fingerprint=fingerprint, due=max(now, state.not_before))


def sync(
    book: Mapping[ProbeKey, Watched],
    seen: Mapping[ProbeKey, bytes],
    *,
    now: float,
    keep: Collection[str] = (),
) -> dict[ProbeKey, Watched]:
    """The book after reading configs found the keys ``seen``.

    New keys are due now; a changed credential is due now (:func:`recredentialed`); keys of
    configs in ``keep`` (not read this time, or unreadable) stay as they are; every other key
    that was not seen is forgotten (the registry left the config, or the config is gone).
    """
    updated: dict[ProbeKey, Watched] = {}
    for key, state in book.items():
        if key in seen:
            updated[key] = recredentialed(state, seen[key], now=now)
        elif key.config in keep:
            updated[key] = state
    for key, fingerprint in seen.items():
        if key not in updated:
            updated[key] = Watched(fingerprint=fingerprint, due=now)
    return updated


def due_keys(book: Mapping[ProbeKey, Watched], now: float) -> list[ProbeKey]:
    return sorted(k for k, s in book.items() if not s.in_flight and s.due <= now)


def next_wakeup(book: Mapping[ProbeKey, Watched]) -> float | None:
    """When the next key falls due (None: nothing to wait for; keys in flight wake us anyway)."""
    dues = [s.due for s in book.values() if not s.in_flight]
    return min(dues) if dues else None


def settle(book: Mapping[ProbeKey, Watched], *, now: float) -> dict[ProbeKey, Watched]:
    """After a restart: probes that were cut short are due again now."""
    return {
        k: dataclasses.replace(s, in_flight=False, due=min(s.due, max(now, s.not_before)))
        if s.in_flight
        else s
        for k, s in book.items()
    }


def status_text(
    statuses: Iterable[tuple[str, ProbeStatus | None]], *, enabled: bool, started: bool = True
) -> str:
    """A few words for the daemon's ``STATUS=`` line: ``probes: 3 ok, 1 bad_credentials
    (ghcr.io)``. ``started``: the configs have been read once."""
    if not enabled:
        return "probes off"
    items = list(statuses)
    if not items:
        return "probes: no registries" if started else "probes: starting"
    counts = Counter(s.value if s is not None else "pending" for _, s in items)
    order = [s.value for s in ProbeStatus] + ["pending"]
    parts = [f"{counts[name]} {name}" for name in order if counts[name]]
    failing = sorted(
        {r for r, s in items if s is not None and s is not ProbeStatus.OK},
    )
    text = "probes: " + ", ".join(parts)
    if failing:
        shown = ", ".join(failing[:3]) + (", ..." if len(failing) > 3 else "")
        text += f" ({shown})"
    return text


# -- conflicts --------------------------------------------------------------------------------

_CONFLICT_WORDS = {
    ProbeStatus.OK: "works",
    ProbeStatus.PUSH_DENIED: "works but may not push",
    ProbeStatus.BAD_CREDENTIALS: "is rejected",
    ProbeStatus.NO_CREDENTIALS: "could not be read",
}


def _conflict_word(result: ProbeResult) -> str:
    return _CONFLICT_WORDS.get(result.status, f"could not be checked ({result.status.value})")


def _possessive(credential: Credential | None) -> str:
    """Whose credential, in words (``alice's``): a user name, never the secret."""
    if credential is None:
        return "the"
    if credential.is_identity_token:
        return "the identity-token"
    return f"{credential.username}'s"


def _attributive(credential: Credential | None) -> str:
    """``the removed bob credential``."""
    if credential is None:
        return ""
    return "identity-token " if credential.is_identity_token else f"{credential.username} "


def conflict_verdict(
    canonical: str,
    kept: tuple[Credential | None, ProbeResult],
    removed: tuple[Credential | None, ProbeResult],
    *,
    backup: str,
) -> tuple[str, bool]:
    """One sentence on which of two conflicting credentials works, and whether a person must act
    (the kept one does not work). Credentials give user names only, never secrets."""
    kept_cred, kept_result = kept
    removed_cred, removed_result = removed
    registry = registry_name(canonical)
    text = (
        f"kept {_possessive(kept_cred)} credential for {registry}; it "
        f"{_conflict_word(kept_result)}; the removed {_attributive(removed_cred)}credential "
        f"{_conflict_word(removed_result)}"
    )
    kept_works = kept_result.status is ProbeStatus.OK
    removed_works = removed_result.status is ProbeStatus.OK
    act = not kept_works and kept_result.status is not ProbeStatus.RATE_LIMITED
    if act and removed_works:
        text += f"; restore the removed credential from {backup} or log in again"
    elif act:
        text += "; log in again"
    return text, act


def conflict_alert(
    path: str,
    conflict: ReportedConflict,
    kept: tuple[Credential | None, ProbeResult],
    removed: tuple[Credential | None, ProbeResult],
) -> AlertDecision:
    backup = str(conflict.backup) if conflict.backup else "none"
    verdict, act = conflict_verdict(conflict.canonical, kept, removed, backup=backup)
    return _decision(
        CONFLICT_KIND,
        f"{path}#{conflict.canonical}",
        path=path,
        canonical=conflict.canonical,
        winner=conflict.winner,
        loser=conflict.loser,
        backup=backup,
        verdict=verdict,
        kept_status=kept[1].status.value,
        removed_status=removed[1].status.value,
        action_needed=act,
    )


# ---------------------------------------------------------------------------------------------
# Shell


class AlertSink(Protocol):
    """:class:`regauthd.alerts.alerter.Alerter` or :class:`regauthd.service.daemon.Daemon`
    (loop thread only)."""

    def alert(self, kind: str, subject: str, **fields: Any) -> bool: ...


Post = Callable[[Callable[[], None]], None]


def watched_configs(settings: Settings, home: Path | None = None) -> list[Path]:
    """Every existing config file the settings watch (globs expanded, symlinks kept)."""
    found: list[Path] = []
    for pattern in settings.watch.patterns(home or Path.home()):
        for match in sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]:
            path = Path(match)
            if path.is_file() and path not in found:
                found.append(path)
    return found


def _config_name(path: Path | str) -> str:
    return os.path.normpath(str(path))


def deliver(alerter: AlertSink, decisions: Iterable[AlertDecision]) -> None:
    """Raise ``decisions`` (loop thread). A kind the catalogue lacks is logged as a warning."""
    for decision in decisions:
        if decision.kind in CATALOGUE:
            alerter.alert(decision.kind, decision.subject, **decision.kwargs())
        else:
            fields = decision.kwargs()
            message = fields.pop("verdict", None) or decision.kind
            log.warning(decision.kind, subject=decision.subject, message=message, **fields)


def _report_crash(task: asyncio.Task[None]) -> None:
    # probe() turns everything a registry does into a result; anything reaching here is a bug
    # of ours. Only the type is logged: an unexpected exception may carry anything.
    if not task.cancelled() and task.exception() is not None:
        log.error("probe.task_crashed", error_type=type(task.exception()).__name__)


class ProbeScheduler:
    """Periodic probes of every registry in the watched configs, in one background thread.

    Thread-safe API: :meth:`start`, :meth:`stop`, :meth:`reload`, :meth:`probe_now`,
    :meth:`config_changed`, :meth:`probe_conflict`, :meth:`latest`, :meth:`status_line`.
    Alerts reach ``alerter`` only through ``post`` (so on the daemon's loop thread).
    """

    def __init__(
        self,
        settings: ProbeSettings,
        config_paths: Callable[[], Iterable[Path]],
        post: Post,
        alerter: AlertSink,
        *,
        clock: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] = random.random,
        helper_env: Mapping[str, str] | None = None,
        ca_file: str | None = None,
        min_gap: float = DEFAULT_MIN_GAP_S,
    ) -> None:
        self._settings = settings
        self._config_paths = config_paths
        self._post = post
        self._alerter = alerter
        self._clock = clock
        self._rand = rand
        self._helper_env = helper_env
        self._ca_file = ca_file
        self._min_gap = min_gap
        # Fingerprints are keyed per process: equal credentials compare equal, and nothing
        # about a secret can be learned from one.
        self._fingerprint_key = secrets.token_bytes(32)
        self._lock = threading.Lock()
        self._book: dict[ProbeKey, Watched] = {}
        self._targets: dict[ProbeKey, ProbeTarget] = {}
        """Owned by the probe thread."""
        self._latest: dict[ProbeKey, ProbeResult] = {}
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._stop_requested = False
        self._started = False
        """The configs have been read once (for the status line)."""
        # Work handed over by other threads, taken by the probe thread under the lock.
        self._refresh_all = True
        self._refresh_paths: set[str] = set()
        self._expedite: set[str] | None = set()
        self._conflicts: list[tuple[str, ReportedConflict]] = []

    # -- life (any thread) -------------------------------------------------------------------

    @property
    def settings(self) -> ProbeSettings:
        return self._settings

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start the probe thread (no-op when probes are disabled or it already runs)."""
        if not self._settings.enabled or self._thread is not None:
            return
        self._stop_requested = False
        with self._lock:
            self._refresh_all = True
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(
            target=self._thread_main, args=(loop,), name="regauthd-probes", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 0.5) -> bool:
        """Cancel in-flight probes and end the thread; True when it ended within ``timeout``."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return True
        self._stop_requested = True
        # RuntimeError: the loop already closed, the thread is on its way out.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._cancel)
        thread.join(timeout)
        ended = not thread.is_alive()
        if ended:
            self._thread = None
            self._loop = None
        else:
            log.warning("probe.stop_slow", timeout_s=timeout)
        return ended

    def reload(self, settings: ProbeSettings) -> None:
        """New settings: restart the thread (and the client) when they changed. The book (last
        statuses) is kept, so a reload raises no alert by itself."""
        if settings == self._settings:
            return
        was_running = self._thread is not None
        if was_running:
            self.stop()
        self._settings = settings
        self.start()

    # -- requests (any thread) ---------------------------------------------------------------

    def probe_now(self, registries: Iterable[str] | None = None) -> None:
        """Probe these registries (any spelling; None: all) as soon as allowed."""
        names = None if registries is None else {registry_name(r) for r in registries}
        with self._lock:
            if names is None or self._expedite is None:
                self._expedite = None
            else:
                self._expedite |= names
        self._wakeup()

    def config_changed(self, paths: Iterable[Path | str]) -> None:
        """A watched config was written: registries whose credential changed are probed now."""
        with self._lock:
            self._refresh_paths.update(_config_name(p) for p in paths)
        self._wakeup()

    def probe_conflict(self, path: Path | str, conflict: ReportedConflict) -> None:
        """Probe both credentials of a conflict the fixer resolved; one alert says which works."""
        if not self.running:
            return
        with self._lock:
            self._conflicts.append((_config_name(path), conflict))
        self._wakeup()

    # -- what is known (any thread) ----------------------------------------------------------

    def latest(self, registry: str, config: Path | str | None = None) -> ProbeResult | None:
        """The last result for ``registry`` (in ``config``, or in the first config holding it)."""
        name = registry_name(registry)
        wanted = None if config is None else _config_name(config)
        with self._lock:
            for key in sorted(self._latest):
                if key.registry == name and (wanted is None or key.config == wanted):
                    return self._latest[key]
        return None

    def status_line(self) -> str:
        with self._lock:
            items = [(k.registry, s.status) for k, s in sorted(self._book.items())]
        return status_text(items, enabled=self._settings.enabled, started=self._started)

    # -- the probe thread --------------------------------------------------------------------

    def _wakeup(self) -> None:
        loop, wake = self._loop, self._wake
        if loop is None or wake is None:
            return
        with contextlib.suppress(RuntimeError):  # closed: stopping
            loop.call_soon_threadsafe(wake.set)

    def _cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def _thread_main(self, loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            self._task = loop.create_task(self._main())
            with contextlib.suppress(asyncio.CancelledError):
                loop.run_until_complete(self._task)
        except Exception:
            log.exception("probe.scheduler_crashed")
        finally:
            self._task = None
            self._wake = None
            # Worker threads (a credential helper) are not waited for: their subprocess has
            # its own timeout, and stop() must return at once.
            loop.close()

    async def _main(self) -> None:
        self._wake = asyncio.Event()
        if self._stop_requested:
            return
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
                    self._wake.clear()
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
                            await self._wake.wait()
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
        with self._lock:
            full = self._refresh_all
            paths = set(self._refresh_paths)
            self._refresh_all = False
            self._refresh_paths.clear()
            urgent = self._expedite
            self._expedite = set()
            conflicts, self._conflicts = self._conflicts, []
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
            seen = {k: self._fingerprint(t) for k, t in targets.items()}
            with self._lock:
                self._started = True
                keep = {k.config for k in self._book} - fresh
                self._book = sync(self._book, seen, now=self._clock(), keep=keep)
                for key in [k for k in self._targets if k not in self._book]:
                    del self._targets[key]
        for path, conflict in conflicts:
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
                    self._latest[key] = result
                self._book[key] = step.state
                decisions.extend(step.alerts)
        log.debug(
            "probe.scheduled_result",
            registry=target.registry,
            status=result.status.value,
            configs=len(keys),
        )
        # Posted even without alerts: the daemon refreshes its STATUS= line after each callback.
        self._post(lambda: deliver(self._alerter, decisions))
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
        kept, removed = await asyncio.to_thread(self._conflict_targets, conflict)

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
        self._post(lambda: deliver(self._alerter, [decision]))

    # -- blocking helpers (worker threads) ---------------------------------------------------

    def _fingerprint(self, target: ProbeTarget) -> bytes:
        cred = target.credential
        parts = [
            target.registry,
            target.repository or "",
            target.endpoint or "",
            str(target.insecure),
            str(target.identity_token),
            target.credential_error or "",
            cred.username if cred else "",
            cred.secret if cred else "",
        ]
        data = "\0".join(parts).encode("utf-8", "surrogatepass")
        return hashlib.blake2b(data, key=self._fingerprint_key, digest_size=16).digest()

    def _read_targets(
        self, paths: Collection[str] | None
    ) -> tuple[dict[ProbeKey, ProbeTarget], set[str]]:
        """Read the watched configs: all (``paths`` None), or ``paths`` plus watched configs not
        known yet (a user's first login). Returns the targets found and the configs they fully
        describe: those read, and those no longer watched or gone. A config that cannot be read
        is not among them, so its keys stay (a half-written file raises no false alert).

        Blocking: runs credential helpers.
        """
        settings = self._settings
        with self._lock:
            known = {k.config for k in self._book}
        try:
            watched = [_config_name(p) for p in self._config_paths()]
        except OSError as exc:
            log.warning("probe.configs_unlisted", reason=exc.strerror or str(exc))
            return {}, set()
        wanted = [p for p in watched if paths is None or p in paths or p not in known]
        fresh = (known | set(paths or ())) - set(watched)
        targets: dict[ProbeKey, ProbeTarget] = {}
        for name in wanted:
            try:
                snapshot = dockerconfig.load(name)
                config = dockerconfig.parse(snapshot.data, name)
            except ConfigFileError as exc:
                log.info("probe.config_unreadable", path=name, reason=exc.reason)
                continue
            except UnicodeDecodeError:
                log.info("probe.config_unreadable", path=name, reason="not UTF-8")
                continue
            fresh.add(name)
            remember_config_secrets(config)
            for target in targets_from_config(
                config,
                repositories=settings.repositories,
                insecure=settings.insecure_registries,
                env=self._helper_env,
            ):
                if target.credential is not None:
                    REDACTOR.remember([target.credential.secret])
                targets[ProbeKey(name, target.registry)] = target
        return targets, fresh

    def _conflict_targets(self, conflict: ReportedConflict) -> tuple[ProbeTarget, ProbeTarget]:
        """The kept and the removed credential, both read from the backup of the original file."""
        settings = self._settings
        registry = registry_name(conflict.canonical)
        insecure = registry in {registry_name(r) for r in settings.insecure_registries}
        repository = {registry_name(k): v for k, v in settings.repositories.items()}.get(registry)
        base = ProbeTarget(registry=registry, repository=repository, insecure=insecure)
        config: dict[str, Any] | None = None
        problem = "no backup of the original config was made"
        if conflict.backup is not None:
            try:
                config = dockerconfig.parse(
                    dockerconfig.load(conflict.backup).data, conflict.backup
                )
            except ConfigFileError as exc:
                problem = f"the backup cannot be read: {exc.reason}"
            except UnicodeDecodeError:
                problem = "the backup is not UTF-8"
        out: list[ProbeTarget] = []
        for key in (conflict.winner, conflict.loser):
            if config is None:
                out.append(dataclasses.replace(base, credential_error=problem, credential_key=key))
                continue
            remember_config_secrets(config)
            try:
                cred = store_for(config, key, env=self._helper_env).get(key)
            except CredentialError as exc:
                out.append(dataclasses.replace(base, credential_error=str(exc), credential_key=key))
                continue
            if cred is not None:
                REDACTOR.remember([cred.secret])
            out.append(
                dataclasses.replace(
                    base,
                    credential=cred,
                    identity_token=cred.is_identity_token if cred else False,
                    credential_key=key,
                )
            )
        return out[0], out[1]


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


__all__ = [
    "AlertDecision",
    "AlertSink",
    "Cadence",
    "ProbeComponent",
    "ProbeKey",
    "ProbeScheduler",
    "Step",
    "Watched",
    "alerts_for",
    "begin",
    "conflict_alert",
    "conflict_verdict",
    "deliver",
    "due_keys",
    "expedite",
    "next_wakeup",
    "observe",
    "recredentialed",
    "settle",
    "status_text",
    "sync",
    "watched_configs",
]
