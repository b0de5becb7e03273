"""Fleet metrics: what the daemon counts, and what it knows per registry, for Prometheus.

:class:`Metrics` holds the figures (thread-safe: the loop thread records, the HTTP listener's
thread and the textfile writer read); :mod:`regauthd.alerts.exposition` renders them with
prometheus_client (imported only when something renders, so ``regauthd fix`` never loads it).

Labels name a registry or an alert kind, never a config file: 10,000 watched configs holding a
``ghcr.io`` credential make one ``ghcr.io`` series per metric, and ``regauthd_probe_status``
COUNTS the configs in each state, with a series only for the states some config is in (a
registry whose configs all work has one status series, not eight: a fleet's Prometheus keeps
hosts x registries x states series). Every name and its meaning is in ``docs/design.md`` (Metrics).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from regauthd import __version__
from regauthd.alerts.catalogue import CATALOGUE
from regauthd.statefile import write_atomically

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from regauthd.alerts.exposition import TextRenderer

CredentialExpiry = Callable[[], Mapping[str, float]]
"""Registry name -> when (Unix time) the first of the watched credentials for it expires.

Handed in by the composition root (:mod:`regauthd.service.app`) from whatever reads expiry;
called from the loop thread and the HTTP listener's thread, so it must be thread-safe and cheap
(return what it already knows). A registry it does not name has no expiry series at all."""

COUNTER_LABELS: Mapping[str, str] = {
    "alerts": "kind",
    "alerts_suppressed": "kind",
    "conflicts": "registry",
    "repaired_keys": "registry",
}
"""The label of each labelled counter; the others (``repairs``, ``watch_overflows``) have none."""

COUNTER_HELP: Mapping[str, str] = {
    "alerts": "Alerts raised, by kind (suppressed repeats included).",
    "alerts_suppressed": "Alerts held back by the suppression window, by kind.",
    "conflicts": "Conflicting credentials for one registry resolved by a repair.",
    "repaired_keys": "Config keys a repair moved or copied, by the registry they name.",
    "repairs": "Config files rewritten by a repair.",
    "flapping_pauses": "Times a config was left alone because another writer undid the repair.",
    "watch_overflows": "Times the watcher lost events and every config was looked at again.",
    "save_failures": "Repairs the system refused to save (no space, read-only, permission).",
}
GAUGE_HELP: Mapping[str, str] = {
    "watched_configs": "Docker config paths watched (in directories that exist).",
    "watched_directories": "Directories watched.",
    "unwatched_directories": "Directories the kernel's watch limit left unwatched.",
    "unwatched_configs": "Config paths in directories the kernel's watch limit left unwatched.",
}


@dataclass(frozen=True, slots=True)
class RegistryProbe:
    """One probe result as the metrics keep it: no secret, no user name, no config path."""

    registry: str
    status: str
    """The probe status's value (``ok``, ``bad_credentials``, ``push_denied``...)."""
    authenticated: bool
    """The registry accepted the credential (``ok`` or ``push_denied``)."""
    at: float
    """Unix time of the result."""
    push_allowed: bool | None = None
    rate_limit_remaining: int | None = None
    rate_limit_limit: int | None = None


@dataclass(frozen=True, slots=True)
class RegistryFigures:
    """What the metrics say about one registry, over every watched config that names it."""

    configs_by_status: Mapping[str, int]
    """How many configs' latest probe of this registry ended in each status."""
    push_allowed: bool | None
    """False when any config's credential may not push, True when all that were asked may."""
    rate_limit_remaining: int | None
    """The lowest remaining pull count among the configs' credentials, with its limit."""
    rate_limit_limit: int | None
    last_success: float | None
    """Unix time of the last probe that authenticated, whichever config it was for."""


@dataclass(frozen=True, slots=True)
class MetricsSnapshot:
    """Everything one rendering shows (see :mod:`regauthd.alerts.exposition`)."""

    counters: Mapping[str, Mapping[str, float]]
    """Counter name -> label value ("" when unlabelled) -> value."""
    gauges: Mapping[str, float]
    probes: bool
    """Probes run: the per-registry probe families are declared (even with no series yet)."""
    registries: Mapping[str, RegistryFigures]
    expiry: Mapping[str, float]
    rendered_at: float
    version: str = __version__
    python: str = field(default_factory=lambda: ".".join(map(str, sys.version_info[:3])))


@dataclass(slots=True)
class _Latest:
    probe: RegistryProbe
    last_success: float | None


class Metrics:
    """Counters, gauges and per-registry probe figures (see the module docstring).

    :meth:`render` is the text a scrape returns; :meth:`write` replaces the textfile atomically.
    ``dirty`` says something changed since the last write.
    """

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._counters: dict[str, dict[str, float]] = {
            "alerts": dict.fromkeys(CATALOGUE, 0.0),  # a series for every kind from the start
        }
        self._gauges: dict[str, float] = {}
        self._probes = False
        self._latest: dict[str, dict[str, _Latest]] = {}
        """Registry -> config -> its latest probe."""
        self._figures: dict[str, RegistryFigures] = {}
        """Registry -> its figures, until a probe of it changes them."""
        self._expiry: CredentialExpiry | None = None
        self._registry: CollectorRegistry | None = None
        self._render_lock = threading.Lock()
        self._renderer: TextRenderer | None = None
        self.dirty = False

    # -- recording (any thread) ------------------------------------------------------------

    def count(self, name: str, kind: str = "", by: float = 1) -> None:
        """Add ``by`` to counter ``name`` (its label value ``kind``: an alert kind, a registry)."""
        with self._lock:
            series = self._counters.setdefault(name, {})
            series[kind] = series.get(kind, 0) + by
            self.dirty = True

    def gauge(self, name: str, value: float) -> None:
        with self._lock:
            if self._gauges.get(name) != value:
                self._gauges[name] = value
                self.dirty = True

    def value(self, name: str, kind: str = "") -> float:
        with self._lock:
            return self._counters.get(name, {}).get(kind, 0)

    def track_probes(self) -> None:
        """Probes run: declare the per-registry probe metrics from now on."""
        with self._lock:
            self._probes = True
            self.dirty = True

    def probed(self, config: str, probe: RegistryProbe) -> None:
        """The latest probe of ``probe.registry`` for the credential in ``config``."""
        with self._lock:
            by_config = self._latest.setdefault(probe.registry, {})
            before = by_config.get(config)
            last_success = probe.at if probe.authenticated else None
            if last_success is None and before is not None:
                last_success = before.last_success
            by_config[config] = _Latest(probe, last_success)
            self._figures.pop(probe.registry, None)
            self.dirty = True

    def keep_configs(self, configs: Collection[str]) -> None:
        """Forget the probe figures of configs no longer watched (after each replan)."""
        with self._lock:
            for registry, by_config in list(self._latest.items()):
                gone = [config for config in by_config if config not in configs]
                for config in gone:
                    del by_config[config]
                if gone:
                    self._figures.pop(registry, None)
                    self.dirty = True
                if not by_config:
                    del self._latest[registry]

    def credential_expiry(self, provider: CredentialExpiry) -> None:
        """Read credential expiry from ``provider`` at each rendering."""
        with self._lock:
            self._expiry = provider
            self.dirty = True

    def expiry_changed(self) -> None:
        """What the expiry provider knows changed (a config was read again): write soon."""
        with self._lock:
            self.dirty = True

    # -- reading -----------------------------------------------------------------------------

    def snapshot(self) -> MetricsSnapshot:
        with self._lock:
            counters = {name: dict(series) for name, series in self._counters.items()}
            gauges = dict(self._gauges)
            probes = self._probes
            for registry, by_config in self._latest.items():
                if registry not in self._figures:
                    self._figures[registry] = _figures(list(by_config.values()))
            registries = dict(self._figures)
            expiry = self._expiry
        return MetricsSnapshot(
            counters=counters,
            gauges=gauges,
            probes=probes,
            registries=registries,
            expiry=dict(expiry()) if expiry is not None else {},
            rendered_at=self._clock(),
        )

    def collector_registry(self) -> CollectorRegistry:
        """A private prometheus_client registry that renders :meth:`snapshot` (the HTTP
        listener serves it; the textfile is rendered from it)."""
        from regauthd.alerts.exposition import registry_for  # noqa: PLC0415 - lazy, see module

        with self._lock:
            if self._registry is None:
                self._registry = registry_for(self.snapshot)
            return self._registry

    def render(self) -> str:
        """The metrics in Prometheus's text format (what ``/metrics`` returns)."""
        return self.render_bytes().decode()

    def render_bytes(self) -> bytes:
        """:meth:`render`, UTF-8, re-rendering only what changed since the last call."""
        from regauthd.alerts.exposition import TextRenderer  # noqa: PLC0415 - lazy, see module

        with self._render_lock:
            if self._renderer is None:
                self._renderer = TextRenderer()
            return self._renderer.render(self.snapshot())

    def write(self, path: Path) -> None:
        """Replace ``path`` whole (:func:`regauthd.statefile.write_atomically`, world-readable
        for the node exporter). Still dirty when it fails, so the next write tries again."""
        self.dirty = False
        try:
            data = self.render_bytes()
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(path, data, mode=0o644)
        except OSError:
            self.dirty = True
            raise


def _figures(entries: list[_Latest]) -> RegistryFigures:
    by_status: dict[str, int] = {}
    for entry in entries:
        by_status[entry.probe.status] = by_status.get(entry.probe.status, 0) + 1
    pushes = [e.probe.push_allowed for e in entries if e.probe.push_allowed is not None]
    limited = [e.probe for e in entries if e.probe.rate_limit_remaining is not None]
    lowest = min(limited, key=lambda p: p.rate_limit_remaining or 0) if limited else None
    successes = [e.last_success for e in entries if e.last_success is not None]
    return RegistryFigures(
        configs_by_status=by_status,
        push_allowed=all(pushes) if pushes else None,
        rate_limit_remaining=lowest.rate_limit_remaining if lowest else None,
        rate_limit_limit=lowest.rate_limit_limit if lowest else None,
        last_success=max(successes) if successes else None,
    )


__all__ = [
    "COUNTER_HELP",
    "COUNTER_LABELS",
    "GAUGE_HELP",
    "CredentialExpiry",
    "Metrics",
    "MetricsSnapshot",
    "RegistryFigures",
    "RegistryProbe",
]
