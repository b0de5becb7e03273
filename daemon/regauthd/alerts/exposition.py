"""The metrics as Prometheus metric families, through prometheus_client (rendered with its
``generate_latest`` from a private ``CollectorRegistry``: nothing lands in the global one).

Imported only when something renders (:meth:`regauthd.alerts.metrics.Metrics.render`, the HTTP
listener). The names and their meaning are listed in ``docs/design.md`` (Metrics).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from regauthd.alerts.metrics import (
    COUNTER_HELP,
    COUNTER_LABELS,
    GAUGE_HELP,
    MetricsSnapshot,
)

PREFIX = "regauthd_"


class _SnapshotCollector:
    """A prometheus_client collector that renders a fresh snapshot on every collection."""

    def __init__(self, snapshot: Callable[[], MetricsSnapshot]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        return families(self._snapshot())


def registry_for(snapshot: Callable[[], MetricsSnapshot]) -> CollectorRegistry:
    """A private registry whose only collector renders ``snapshot()``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_SnapshotCollector(snapshot))
    return registry


def families(s: MetricsSnapshot) -> Iterator[Metric]:
    """Every metric family of ``s``, in a stable order."""
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
    yield from _registries(s)


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


def _registries(s: MetricsSnapshot) -> Iterator[Metric]:
    if s.probe_statuses is not None:
        status = GaugeMetricFamily(
            PREFIX + "probe_status",
            "Watched configs whose latest probe of the registry ended in this status "
            "(every status has a series, 0 when no config is in it).",
            labels=["registry", "status"],
        )
        push = GaugeMetricFamily(
            PREFIX + "push_allowed",
            "1 when every credential for the registry that was asked may push to the "
            "configured repository, 0 when one may not (no series: not asked).",
            labels=["registry"],
        )
        remaining = GaugeMetricFamily(
            PREFIX + "ratelimit_remaining",
            "Pulls left in the rate-limit window (the lowest among the registry's "
            "credentials; Docker Hub's RateLimit-Remaining).",
            labels=["registry"],
        )
        limit = GaugeMetricFamily(
            PREFIX + "ratelimit_limit",
            "Pulls allowed per rate-limit window, for the credential with the fewest left "
            "(Docker Hub's RateLimit-Limit).",
            labels=["registry"],
        )
        success = GaugeMetricFamily(
            PREFIX + "probe_last_success_timestamp_seconds",
            "When a credential for the registry last authenticated (ok or push_denied).",
            labels=["registry"],
        )
        for registry in sorted(s.registries):
            figures = s.registries[registry]
            known = dict.fromkeys(s.probe_statuses, 0) | dict(figures.configs_by_status)
            for name in sorted(known):
                status.add_metric([registry, name], known[name])
            if figures.push_allowed is not None:
                push.add_metric([registry], 1 if figures.push_allowed else 0)
            if figures.rate_limit_remaining is not None:
                remaining.add_metric([registry], figures.rate_limit_remaining)
            if figures.rate_limit_limit is not None:
                limit.add_metric([registry], figures.rate_limit_limit)
            if figures.last_success is not None:
                success.add_metric([registry], figures.last_success)
        yield from (status, push, remaining, limit, success)
    expiry = GaugeMetricFamily(
        PREFIX + "credential_expiry_timestamp_seconds",
        "When (Unix time) the first watched credential for the registry expires; no series "
        "when none has a readable expiry. Seconds left: this minus time().",
        labels=["registry"],
    )
    for registry in sorted(s.expiry):
        expiry.add_metric([registry], s.expiry[registry])
    yield expiry


__all__ = ["PREFIX", "families", "registry_for"]
