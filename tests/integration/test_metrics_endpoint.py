"""`[metrics] listen` in process: prometheus_client's server on loopback, moved by a reload and
closed by stop (the daemon-level test is tests/e2e/test_daemon_metrics_e2e.py)."""

from __future__ import annotations

import socket
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from regauthd.alerts.metrics import Metrics
from regauthd.service.metricsendpoint import MetricsEndpoint
from regauthd.settings import MetricsSettings, Settings, WatchSettings
from tests.rigs.registry import free_port


def settings(listen: tuple[str, int] | None) -> Settings:
    return Settings(
        watch=WatchSettings(paths=()),
        state_dir=Path("/nonexistent"),
        metrics=MetricsSettings(listen=listen),
    )


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return True
    return False


def test_serves_fresh_figures_moves_on_reload_and_closes_on_stop() -> None:
    metrics = Metrics()
    first, second = free_port(), free_port()
    endpoint = MetricsEndpoint(settings(("127.0.0.1", first)), metrics)
    endpoint.start()
    try:
        assert endpoint.address == ("127.0.0.1", first)
        assert scrape(first)["regauthd_repairs_total"] == 0
        metrics.count("repairs")
        assert scrape(first)["regauthd_repairs_total"] == 1  # each scrape renders anew
        endpoint.reload(settings(("127.0.0.1", second)))
        assert refused(first)
        assert scrape(second)["regauthd_repairs_total"] == 1
        endpoint.reload(settings(None))
        assert refused(second) and endpoint.address is None
        endpoint.reload(settings(("127.0.0.1", first)))
        assert scrape(first)["regauthd_repairs_total"] == 1
    finally:
        endpoint.stop()
    assert refused(first)
    endpoint.stop()  # twice is harmless
