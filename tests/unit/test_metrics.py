"""The fleet metrics (regauthd.alerts.metrics, .exposition): what a Prometheus user reads.

Every rendering is read back with prometheus_client's own parser, as a scraper would.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from regauthd import __version__
from regauthd.alerts.catalogue import CATALOGUE
from regauthd.alerts.metrics import Metrics, RegistryProbe
from regauthd.probe.result import ProbeResult, ProbeStatus
from regauthd.probe.schedule import ProbeKey
from regauthd.service.app import _probe_metrics
from tests.rigs.configs import auth

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]

NOW = 1_800_000_000.0


def samples(text: str) -> Samples:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def series(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {labels: value for (n, labels), value in samples(text).items() if n == name}


def probe(registry: str, status: str, **figures: object) -> RegistryProbe:
    return RegistryProbe(
        registry=registry,
        status=status,
        authenticated=status in {"ok", "push_denied"},
        at=figures.pop("at", NOW),  # type: ignore[arg-type]
        **figures,  # type: ignore[arg-type]
    )


def tracking() -> Metrics:
    metrics = Metrics(clock=lambda: NOW)
    metrics.track_probes()
    return metrics


def test_ten_thousand_configs_make_one_series_per_registry_and_status() -> None:
    metrics = tracking()
    for i in range(10_000):
        state = "bad_credentials" if i % 100 == 0 else "ok"
        metrics.probed(f"/home/u{i}/.docker/config.json", probe("ghcr.io", state))
    text = metrics.render()
    status = series(text, "regauthd_probe_status")
    # one series per status some config is in, counting configs; no config path anywhere
    assert status == {
        (("registry", "ghcr.io"), ("status", "ok")): 9_900,
        (("registry", "ghcr.io"), ("status", "bad_credentials")): 100,
    }
    assert "/home/" not in text
    assert len(text.splitlines()) < 200


def test_push_rate_limit_and_last_success_are_per_registry() -> None:
    metrics = tracking()
    metrics.probed("/a", probe("docker.io", "ok", rate_limit_remaining=80, rate_limit_limit=100))
    metrics.probed("/b", probe("docker.io", "ok", rate_limit_remaining=7, rate_limit_limit=200))
    metrics.probed("/a", probe("ghcr.io", "ok", push_allowed=True, at=NOW - 60))
    metrics.probed("/b", probe("ghcr.io", "push_denied", push_allowed=False, at=NOW - 30))
    metrics.probed("/a", probe("quay.io", "ok", at=NOW - 90))
    metrics.probed("/a", probe("quay.io", "bad_credentials"))  # failing now
    text = metrics.render()
    # the credential with the fewest pulls left, with its own limit
    assert series(text, "regauthd_ratelimit_remaining") == {(("registry", "docker.io"),): 7}
    assert series(text, "regauthd_ratelimit_limit") == {(("registry", "docker.io"),): 200}
    # one config that may not push makes the registry's push 0; not asked: no series
    assert series(text, "regauthd_push_allowed") == {(("registry", "ghcr.io"),): 0}
    last = series(text, "regauthd_probe_last_success_timestamp_seconds")
    assert last[(("registry", "ghcr.io"),)] == NOW - 30  # push_denied authenticated
    assert last[(("registry", "quay.io"),)] == NOW - 90  # kept while it fails
    status = series(text, "regauthd_probe_status")
    assert status[(("registry", "quay.io"), ("status", "bad_credentials"))] == 1
    assert (("registry", "quay.io"), ("status", "ok")) not in status


def test_configs_no_longer_watched_are_forgotten() -> None:
    metrics = tracking()
    metrics.probed("/a", probe("ghcr.io", "bad_credentials"))
    metrics.probed("/b", probe("ghcr.io", "ok"))
    metrics.probed("/b", probe("quay.io", "ok"))
    metrics.keep_configs({"/b"})
    status = series(metrics.render(), "regauthd_probe_status")
    assert status == {
        (("registry", "ghcr.io"), ("status", "ok")): 1,
        (("registry", "quay.io"), ("status", "ok")): 1,
    }
    metrics.keep_configs(set())
    assert series(metrics.render(), "regauthd_probe_status") == {}


def test_expiry_comes_only_from_a_provider_and_is_read_at_each_rendering() -> None:
    metrics = tracking()
    name = "regauthd_credential_expiry_timestamp_seconds"
    assert series(metrics.render(), name) == {}  # no provider: no series, nothing guessed
    expiry = {"123.dkr.ecr.eu-west-1.amazonaws.com": NOW + 3600}
    metrics.credential_expiry(lambda: expiry)
    assert series(metrics.render(), name) == {
        (("registry", "123.dkr.ecr.eu-west-1.amazonaws.com"),): NOW + 3600
    }
    expiry["ghcr.io"] = NOW + 60
    assert len(series(metrics.render(), name)) == 2


def test_counters_build_info_and_report_time() -> None:
    metrics = Metrics(clock=lambda: NOW)
    text = metrics.render()
    # declared before anything happened: every alert kind and the unlabelled counters at 0
    alerts = series(text, "regauthd_alerts_total")
    assert {labels[0][1] for labels in alerts} == set(CATALOGUE)
    assert series(text, "regauthd_repairs_total") == {(): 0}
    assert "# TYPE regauthd_conflicts_total counter" in text
    assert series(text, "regauthd_conflicts_total") == {}
    metrics.count("conflicts", "docker.io")
    metrics.count("alerts", "some.future_kind")  # a kind added later just appears
    text = metrics.render()
    assert series(text, "regauthd_conflicts_total") == {(("registry", "docker.io"),): 1}
    assert series(text, "regauthd_alerts_total")[(("kind", "some.future_kind"),)] == 1
    info = series(text, "regauthd_build_info")
    ((labels, value),) = info.items()
    assert dict(labels)["version"] == __version__ and value == 1
    assert series(text, "regauthd_last_report_timestamp_seconds") == {(): NOW}
    # probes off: no per-registry probe families at all
    assert "regauthd_probe_status" not in text


def test_probe_results_reach_the_metrics_without_secrets_or_users() -> None:
    metrics = Metrics(clock=lambda: NOW)
    record = _probe_metrics(metrics)
    password = "metrics-secret-pw-7Qx"
    result = ProbeResult(
        registry="ghcr.io",
        status=ProbeStatus.BAD_CREDENTIALS,
        detail=f"ghcr.io refused alice:{password} ({auth('alice', password)})",
        username="alice",
        repository="acme/ci",
    )
    record(ProbeKey("/home/alice/.docker/config.json", "ghcr.io"), result)
    text = metrics.render()
    status = series(text, "regauthd_probe_status")
    assert status[(("registry", "ghcr.io"), ("status", "bad_credentials"))] == 1
    for secret in (password, auth("alice", password), "alice", "acme/ci", "/home/"):
        assert secret not in text


def test_the_textfile_is_never_seen_half_written(tmp_path: Path) -> None:
    """A reader looping on the file while it is rewritten sees whole files only."""
    metrics = tracking()
    for i in range(200):
        metrics.probed("/a", probe(f"registry-{i}.example", "ok", rate_limit_remaining=i))
    target = tmp_path / "regauthd.prom"
    metrics.write(target)
    whole = len(target.read_bytes())
    stop = threading.Event()
    reads: list[int] = []
    torn: list[int] = []

    def reader() -> None:
        while not stop.is_set():
            data = target.read_bytes()
            reads.append(len(data))
            if len(data) != whole or not data.endswith(b"\n"):
                torn.append(len(data))

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for _ in range(150):
            metrics.write(target)
    finally:
        stop.set()
        thread.join()
    assert reads and torn == []
    assert len(series(target.read_text(), "regauthd_probe_status")) == 200
    assert sorted(p.name for p in tmp_path.iterdir()) == ["regauthd.prom"]  # no temp left


def test_regauthd_fix_does_not_import_prometheus_client(tmp_path: Path) -> None:
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    (cfg / "config.json").write_text(json.dumps({"auths": {"docker.io": {"auth": auth("a", "b")}}}))
    code = (
        "import sys\nfrom regauthd.cli import main\n"
        f"try:\n    main(['fix', '--docker-config', {str(cfg)!r}, '--state-dir', "
        f"{str(tmp_path / 'state')!r}])\nexcept SystemExit:\n    pass\n"
        "print('prometheus_client' in sys.modules)"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert run.stdout.splitlines()[-1] == "False", run.stderr
    assert "https://index.docker.io/v1/" in (cfg / "config.json").read_text()  # it did fix


def test_the_textfile_is_what_generate_latest_renders_for_the_whole() -> None:
    """The textfile re-renders only changed parts; the result is byte for byte prometheus_client's
    rendering of the whole registry (what the HTTP listener serves), change after change."""
    metrics = tracking()
    whole = metrics.collector_registry()
    for i in range(30):
        metrics.probed("/a", probe(f"r{i}.example", "ok", rate_limit_remaining=i))
    metrics.count("alerts", "probe.failing")
    assert metrics.render_bytes() == generate_latest(whole)
    metrics.probed("/b", probe("r7.example", "push_denied", push_allowed=False))
    metrics.count("conflicts", "r3.example")
    metrics.keep_configs({"/b"})
    metrics.credential_expiry(lambda: {"r7.example": NOW + 5})
    assert metrics.render_bytes() == generate_latest(whole)
    assert metrics.render_bytes() == generate_latest(whole)  # unchanged: all reused
