"""When to probe each registry and what to tell people (pure: time and chance are passed in).

Every registry of every watched config is one :class:`ProbeKey` with a :class:`Watched` state:
last status, consecutive failures, when it is due, the ``Retry-After`` floor, and a keyed
fingerprint of the credential (never the credential). :func:`observe` turns a
:class:`~regauthd.probe.result.ProbeResult` into the next state and the alerts to raise; alerts
follow transitions only:

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

The next probe is :func:`next_delay` away: the interval plus jitter when healthy, doubling per
consecutive failure while failing, never before a ``Retry-After``.

When the fixer resolved a conflict (one registry under two spellings with different
credentials), both credentials are probed and one alert says which works
(:mod:`regauthd.probe.conflicts`).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from regauthd.alerts.catalogue import AlertKind
from regauthd.probe.result import ProbeResult, ProbeStatus

if TYPE_CHECKING:
    from regauthd.settings import ProbeSettings

DEFAULT_MAX_BACKOFF_S: Final = 6 * 3600.0
DEFAULT_MIN_GAP_S: Final = 10.0
"""An on-demand probe (a journal auth failure) does not re-probe a registry probed this recently:
a burst of failed pulls must not become a burst of logins against the registry."""


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

    kind: AlertKind
    subject: str
    fields: tuple[tuple[str, Any], ...]

    def kwargs(self) -> dict[str, Any]:
        return dict(self.fields)


def decision(kind: AlertKind, subject: str, **fields: Any) -> AlertDecision:
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
            decision(
                AlertKind.PROBE_RECOVERED,
                key.subject,
                registry=key.registry,
                path=key.config,
                previous=previous.value,
                detail=result.detail,
            ),
        )
    if status is ProbeStatus.RATE_LIMITED:
        return (
            decision(
                AlertKind.PROBE_RATE_LIMITED,
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
        decision(
            AlertKind.PROBE_FAILING,
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


def next_delay(
    interval_s: float,
    consecutive_failures: int = 0,
    *,
    jitter_s: float = 0.0,
    retry_after_s: float | None = None,
    max_backoff_s: float = 6 * 3600,
    rand: float,
) -> float:
    """Seconds until the next probe of one registry.

    Healthy: ``interval_s`` plus up to ``jitter_s`` at random, so fleets do not probe in step.
    Failing: the interval doubles per consecutive failure, up to ``max_backoff_s`` (never below
    the interval): a wrong password retried at full speed can get an account locked. A
    ``Retry-After`` is a floor. ``rand`` is the chance drawn for the jitter, in [0, 1).
    """
    if interval_s <= 0:
        raise ValueError("interval_s must be positive")
    if jitter_s < 0:
        raise ValueError("jitter_s must not be negative")
    failures = max(0, consecutive_failures)
    # 2**20 intervals is far past any sane cap; bounding the shift keeps the number small.
    base = interval_s * (1 << min(failures, 20))
    base = max(interval_s, min(base, max_backoff_s))
    delay = base + jitter_s * rand
    if retry_after_s is not None:
        delay = max(delay, retry_after_s)
    return delay


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
