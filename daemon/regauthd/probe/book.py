"""What the probe thread knows of each watched registry, behind one lock (:class:`ProbeBook`).

One entry per registry in a config (:class:`~regauthd.probe.schedule.ProbeKey`): its schedule
state (:class:`~regauthd.probe.schedule.Watched`: last status, when due, a keyed fingerprint of
the credential), the target to probe and the last result. Only the probe thread changes the book;
any thread reads it (the status line, :meth:`~regauthd.probe.scheduler.ProbeScheduler.latest`).
What is due, when to wake up and what a result means are :mod:`regauthd.probe.schedule`'s pure
decisions; this module applies them under the lock.
"""

from __future__ import annotations

import os
import secrets
import threading
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

from regauthd.probe.latest import LatestResults
from regauthd.probe.result import ProbeResult, ProbeStatus, ProbeTarget
from regauthd.probe.schedule import (
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
    sync,
)
from regauthd.probe.targets import target_fingerprint


def config_name(path: Path | str) -> str:
    """How the book names a config (a normalized path)."""
    return os.path.normpath(str(path))


@dataclass(frozen=True, slots=True)
class DueProbe:
    """One probe to run: configs holding the same credential for a registry (a symlink, a copied
    config) share it."""

    target: ProbeTarget
    fingerprint: bytes
    keys: tuple[ProbeKey, ...]


@dataclass(frozen=True, slots=True)
class Recorded:
    """What one probe result changed: the alerts to raise, the keys whose latest result it is."""

    alerts: tuple[AlertDecision, ...]
    updated: tuple[ProbeKey, ...]


class ProbeBook:
    """Schedule states, targets and last results of the watched registries (thread-safe)."""

    def __init__(self) -> None:
        # Fingerprints are keyed per process: equal credentials compare equal, and nothing
        # about a secret can be learned from one.
        self._fingerprint_key = secrets.token_bytes(32)
        self._lock = threading.Lock()
        self._states: dict[ProbeKey, Watched] = {}
        self._targets: dict[ProbeKey, ProbeTarget] = {}
        self._latest = LatestResults()
        self._read_once = False

    # -- what is known (any thread) ----------------------------------------------------------

    @property
    def read_once(self) -> bool:
        """The configs have been read once (for the status line)."""
        return self._read_once

    def latest(self, registry: str, config: str | None) -> ProbeResult | None:
        with self._lock:
            return self._latest.get(registry, config)

    def statuses(self) -> list[tuple[str, ProbeStatus | None]]:
        """(registry, last status) of every key, in key order."""
        with self._lock:
            return [(k.registry, s.status) for k, s in sorted(self._states.items())]

    def known_configs(self) -> set[str]:
        with self._lock:
            return {k.config for k in self._states}

    # -- what is due (the probe thread) ------------------------------------------------------

    def settle(self, *, now: float) -> None:
        """The probe thread (re)started: probes cut short are due again."""
        with self._lock:
            self._states = settle(self._states, now=now)

    def expedite(self, urgent: Collection[str] | None, *, now: float, cadence: Cadence) -> None:
        """Probe these registries (canonical names; None: every one) as soon as allowed."""
        if urgent is not None and not urgent:
            return
        with self._lock:
            for key, state in list(self._states.items()):
                if urgent is None or key.registry in urgent:
                    self._states[key] = expedite(state, now=now, cadence=cadence)

    def configs_due(self, *, now: float) -> set[str]:
        """The configs holding a registry due for a probe."""
        with self._lock:
            return {k.config for k in due_keys(self._states, now)}

    def next_wakeup(self) -> float | None:
        """When the next probe falls due (None: nothing to wait for)."""
        with self._lock:
            return next_wakeup(self._states)

    # -- changes (the probe thread) ----------------------------------------------------------

    def update_targets(
        self, targets: Mapping[ProbeKey, ProbeTarget], fresh: Collection[str], *, now: float
    ) -> None:
        """Configs were read again: ``targets`` found in them, ``fresh`` the configs read.

        New keys and changed credentials are due now; keys of configs not read this time stay;
        keys no longer found are forgotten (:func:`regauthd.probe.schedule.sync`).
        """
        seen = {k: target_fingerprint(t, self._fingerprint_key) for k, t in targets.items()}
        with self._lock:
            self._targets.update(targets)
            self._read_once = True
            keep = {k.config for k in self._states} - set(fresh)
            self._states = sync(self._states, seen, now=now, keep=keep)
            for key in [k for k in self._targets if k not in self._states]:
                del self._targets[key]

    def begin_due(self, *, now: float) -> list[DueProbe]:
        """The probes due now, one per credential, each marked in flight."""
        groups: dict[bytes, list[ProbeKey]] = {}
        with self._lock:
            for key in due_keys(self._states, now):
                if key not in self._targets:
                    del self._states[key]  # cannot happen; never spin on a key with no target
                    continue
                groups.setdefault(self._states[key].fingerprint, []).append(key)
                self._states[key] = begin(self._states[key])
            return [
                DueProbe(self._targets[keys[0]], fingerprint, tuple(keys))
                for fingerprint, keys in groups.items()
            ]

    def record(
        self,
        due: DueProbe,
        result: ProbeResult,
        *,
        now: float,
        cadence: Cadence,
        rand: Callable[[], float],
    ) -> Recorded:
        """Apply the result of ``due`` to each of its keys still watched: when each is due again,
        the alerts its change of status raises, and (when the credential did not change while
        the probe ran) its latest result."""
        alerts: list[AlertDecision] = []
        updated: list[ProbeKey] = []
        with self._lock:
            for key in due.keys:
                state = self._states.get(key)
                if state is None:
                    continue  # the config dropped the registry meanwhile
                step = observe(
                    state,
                    result,
                    key,
                    now=now,
                    cadence=cadence,
                    rand=rand(),
                    probed_fingerprint=due.fingerprint,
                )
                if state.fingerprint == due.fingerprint:
                    self._latest.record(key, result)
                    updated.append(key)
                self._states[key] = step.state
                alerts.extend(step.alerts)
        return Recorded(tuple(alerts), tuple(updated))


__all__ = ["DueProbe", "ProbeBook", "Recorded", "config_name"]
