"""The metrics as Prometheus metric families, through prometheus_client (rendered with its
``generate_latest`` from private ``CollectorRegistry`` objects: nothing lands in the global one).

The HTTP listener renders a whole registry (:func:`registry_for`) per scrape. The textfile is
rendered by a :class:`TextRenderer`, which keeps each family's lines per registry and renders
again (``generate_latest`` on that part alone) only the parts whose figures changed: one probe
result re-renders one registry's lines, so a host with 200 registries does not spend ~10 ms of
its loop thread on every write. Its output is byte for byte what ``generate_latest`` gives for
the whole (a unit test holds it to that).

Imported only when something renders (:meth:`regauthd.alerts.metrics.Metrics.render`, the HTTP
listener). The names and their meaning are listed in ``docs/design.md`` (Metrics).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.samples import Sample

from regauthd.alerts.metrics import (
    COUNTER_HELP,
    COUNTER_LABELS,
    GAUGE_HELP,
    MetricsSnapshot,
    RegistryFigures,
)

PREFIX = "regauthd_"


class _SnapshotCollector:
    """A prometheus_client collector that renders a fresh snapshot on every collection."""

    def __init__(self, snapshot: Callable[[], MetricsSnapshot]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        return families(self._snapshot())


class _FixedCollector:
    def __init__(self, metrics: Iterable[Metric]) -> None:
        self._metrics = list(metrics)

    def collect(self) -> Iterator[Metric]:
        return iter(self._metrics)


def registry_for(snapshot: Callable[[], MetricsSnapshot]) -> CollectorRegistry:
    """A private registry whose only collector renders ``snapshot()``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_SnapshotCollector(snapshot))
    return registry


def _generate(metric: Metric) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_FixedCollector([metric]))
    return generate_latest(registry)


class TextRenderer:
    """Renders snapshots in the text format, re-rendering only what changed (module docstring).

    One instance per textfile; not thread-safe (the caller serialises).
    """

    def __init__(self) -> None:
        self._headers: dict[tuple[str, str, str], bytes] = {}
        self._parts: dict[tuple[str, str], tuple[tuple[Sample, ...], bytes]] = {}
        self._registries: dict[str, tuple[RegistryFigures, list[bytes]]] = {}
        self._rest: tuple[object, list[bytes], dict[tuple[str, str], Any]] | None = None
        """The head families after build info and the report time, with what they came from."""

    def render(self, snapshot: MetricsSnapshot) -> bytes:
        out = self._render_head(snapshot)
        if snapshot.probes:
            out += self._render_registries(snapshot)
        return b"".join(out)

    def _render_registries(self, snapshot: MetricsSnapshot) -> list[bytes]:
        """The probe families: a registry whose figures did not change costs one comparison."""
        cache: dict[str, tuple[RegistryFigures, list[bytes]]] = {}
        columns: list[list[bytes]] = [[] for _ in _PROBE_FAMILIES]
        for registry in sorted(snapshot.registries):
            figures = snapshot.registries[registry]
            known = self._registries.get(registry)
            if known is None or known[0] != figures:
                parts = _probe_samples(registry, figures)
                known = (figures, [self._lines(f, tuple(f.samples)) for f in parts])
            cache[registry] = known
            for column, lines in zip(columns, known[1], strict=True):
                column.append(lines)
        self._registries = cache  # registries gone are forgotten
        out: list[bytes] = []
        for family, column in zip(_probe_families(), columns, strict=True):
            out.append(self._header(family))
            out += column
        return out

    def _render_head(self, snapshot: MetricsSnapshot) -> list[bytes]:
        """Build info and the report time every time; the counters, gauges and expiry only
        when they changed (a probe result changes none of them: one comparison of a few
        hundred numbers instead of rebuilding a few hundred samples)."""
        out: list[bytes] = []
        parts: dict[tuple[str, str], tuple[tuple[Sample, ...], bytes]] = {}
        head = _head(snapshot)
        for family in itertools.islice(head, _HEAD_ALWAYS):
            out += self._family_lines(family, parts)
        key = (snapshot.counters, snapshot.gauges, snapshot.expiry)
        if self._rest is None or self._rest[0] != key:
            rest_parts: dict[tuple[str, str], tuple[tuple[Sample, ...], bytes]] = {}
            rest: list[bytes] = []
            for family in head:
                rest += self._family_lines(family, rest_parts)
            self._rest = (key, rest, rest_parts)
        out += self._rest[1]
        parts.update(self._rest[2])
        self._parts = parts  # what no longer exists is forgotten
        return out

    def _family_lines(
        self, family: Metric, parts: dict[tuple[str, str], tuple[tuple[Sample, ...], bytes]]
    ) -> list[bytes]:
        out = [self._header(family)]
        groups: dict[str, list[Sample]] = {}
        for sample in family.samples:
            groups.setdefault(sample.labels.get("registry", ""), []).append(sample)
        for registry, samples in groups.items():
            key, signature = (family.name, registry), tuple(samples)
            part = self._parts.get(key)
            if part is None or part[0] != signature:
                part = (signature, self._lines(family, signature))
            parts[key] = part
            out.append(part[1])
        return out

    def _header(self, family: Metric) -> bytes:
        key = (family.name, family.documentation, family.type)
        header = self._headers.get(key)
        if header is None:
            header = self._headers[key] = _generate(Metric(*key))
        return header

    def _lines(self, family: Metric, samples: tuple[Sample, ...]) -> bytes:
        part = Metric(family.name, family.documentation, family.type)
        part.samples = list(samples)
        return _generate(part)[len(self._header(family)) :]


def families(s: MetricsSnapshot) -> Iterator[Metric]:
    """Every metric family of ``s``, in a stable order."""
    yield from _head(s)
    yield from _registries(s)


_HEAD_ALWAYS = 2
"""The first families of :func:`_head` (build info, the report time) are rendered every time."""


def _head(s: MetricsSnapshot) -> Iterator[Metric]:
    """Every family but the per-registry probe ones (those follow, in :func:`_registries`)."""
    info = GaugeMetricFamily(
        PREFIX + "build_info",
        "regauthd's version and Python's; always 1.",
        labels=["version", "python"],
    )
    info.add_metric([s.version, s.python], 1)
    yield info
    yield GaugeMetricFamily(
        PREFIX + "last_report_timestamp_seconds",
        "When the daemon rendered these metrics (the textfile: when it was written, at least "
        "once a minute while the daemon runs).",
        value=s.rendered_at,
    )
    yield from _counters(s)
    for name in sorted(s.gauges):
        yield GaugeMetricFamily(
            PREFIX + name, GAUGE_HELP.get(name, f"regauthd's {name}."), value=s.gauges[name]
        )
    yield _expiry(s)


def _counters(s: MetricsSnapshot) -> Iterator[Metric]:
    # Every known counter is declared from the start (an unlabelled one at 0), so rules and
    # dashboards find it before the first repair; labelled ones get series as labels appear.
    for name in sorted(set(s.counters) | set(COUNTER_HELP)):
        label = COUNTER_LABELS.get(name)
        family = CounterMetricFamily(
            PREFIX + name,
            COUNTER_HELP.get(name, f"regauthd's {name} count."),
            labels=[label] if label else None,
        )
        series = s.counters.get(name) or ({} if label else {"": 0.0})
        for value in sorted(series):
            family.add_metric([str(value)] if label else [], series[value])
        yield family


_PROBE_FAMILIES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    (
        "probe_status",
        "Watched configs whose latest probe of the registry ended in this status (a status no "
        "config is in has no series).",
        ("registry", "status"),
    ),
    (
        "push_allowed",
        "1 when every credential for the registry that was asked may push to the configured "
        "repository, 0 when one may not (no series: not asked).",
        ("registry",),
    ),
    (
        "ratelimit_remaining",
        "Pulls left in the rate-limit window (the lowest among the registry's credentials; "
        "Docker Hub's RateLimit-Remaining).",
        ("registry",),
    ),
    (
        "ratelimit_limit",
        "Pulls allowed per rate-limit window, for the credential with the fewest left (Docker "
        "Hub's RateLimit-Limit).",
        ("registry",),
    ),
    (
        "probe_last_success_timestamp_seconds",
        "When a credential for the registry last authenticated (ok or push_denied).",
        ("registry",),
    ),
)


def _probe_families() -> list[GaugeMetricFamily]:
    """The per-registry probe families, empty."""
    return [
        GaugeMetricFamily(PREFIX + name, doc, labels=list(labels))
        for name, doc, labels in _PROBE_FAMILIES
    ]


def _probe_samples(registry: str, figures: RegistryFigures) -> list[GaugeMetricFamily]:
    """The per-registry probe families holding ``registry``'s samples only."""
    families = _probe_families()
    status, push, remaining, limit, success = families
    for name, configs in sorted(figures.configs_by_status.items()):
        status.add_metric([registry, name], configs)
    if figures.push_allowed is not None:
        push.add_metric([registry], 1 if figures.push_allowed else 0)
    if figures.rate_limit_remaining is not None:
        remaining.add_metric([registry], figures.rate_limit_remaining)
    if figures.rate_limit_limit is not None:
        limit.add_metric([registry], figures.rate_limit_limit)
    if figures.last_success is not None:
        success.add_metric([registry], figures.last_success)
    return families


def _registries(s: MetricsSnapshot) -> Iterator[Metric]:
    if not s.probes:
        return
    whole = _probe_families()
    for registry in sorted(s.registries):
        for family, part in zip(
            whole, _probe_samples(registry, s.registries[registry]), strict=True
        ):
            family.samples.extend(part.samples)
    yield from whole


def _expiry(s: MetricsSnapshot) -> Metric:
    expiry = GaugeMetricFamily(
        PREFIX + "credential_expiry_timestamp_seconds",
        "When (Unix time) the first watched credential for the registry expires; no series "
        "when none has a readable expiry. Seconds left: this minus time().",
        labels=["registry"],
    )
    for registry in sorted(s.expiry):
        expiry.add_metric([registry], s.expiry[registry])
    return expiry


__all__ = ["PREFIX", "TextRenderer", "families", "registry_for"]
