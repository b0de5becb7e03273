"""The fleet metrics of a real `regauthd run`: the textfile and `[metrics] listen`, checked with
Prometheus's own `promtool` and prometheus_client's parser, against the shipped alert rules and
Grafana dashboard.

The daemon probes Debian's ``docker-registry`` (token auth, the tests' token issuer) for three
watched configs holding three credentials for the same registry: one that may push, one that
may only pull, one with a wrong password. ``promtool`` comes from Debian's ``prometheus``
package, unpacked into the tests' private tools folder (:mod:`tests.rigs.tools`).
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import require_program, require_tool
from tests.rigs.configs import auth, wait_until
from tests.rigs.daemon import Daemon
from tests.rigs.registry import RunningRegistry, free_port, start_registry
from tests.rigs.tokenissuer import Grant

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "docs" / "prometheus" / "regauthd.rules.yml"
RULES_TEST = ROOT / "tests" / "fixtures" / "prometheus" / "regauthd.rules.test.yml"
DASHBOARD = ROOT / "docs" / "grafana" / "regauthd.json"
REPOSITORY = "team/app"
PASSWORDS = {"pusher": "metrics-push-pw-3Jq", "puller": "metrics-pull-pw-8Lm"}
WRONG_PASSWORD = "metrics-wrong-pw-5Vz"
METRIC = re.compile(r"\bregauthd_[a-z_]+\b")


def promtool(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_tool("promtool"), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def write_config(directory: Path, host: str, user: str, password: str) -> Path:
    directory.mkdir(parents=True)
    (directory / "config.json").write_text(
        json.dumps({"auths": {host: {"auth": auth(user, password)}}})
    )
    return directory


def settings(reg: RunningRegistry, listen: str) -> str:
    return f"""
[daemon]
output = "json"
[alerts]
suppress_window = 0
[metrics]
listen = "{listen}"
[probe]
enabled = true
interval = "1s"
jitter = 0
timeout = "5s"
[probe.repositories]
"{reg.host}" = "{REPOSITORY}"
"""


def declared(text: str) -> set[str]:
    """Every metric name the exposition declares (``# TYPE``) or has a sample of."""
    names = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}
    for family in text_string_to_metric_families(text):
        names |= {family.name} | {sample.name for sample in family.samples}
    return names


def named_in_rules_and_dashboard() -> set[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    exprs += [v["definition"] for v in dashboard["templating"]["list"] if "definition" in v]
    assert exprs and all(METRIC.search(e) for e in exprs)  # every panel shows regauthd's
    return set(METRIC.findall(RULES.read_text())) | {m for e in exprs for m in METRIC.findall(e)}


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[list[Any]]:
    require_program("docker-registry", "docker-registry")
    started: list[Any] = []
    yield started
    for thing in reversed(started):
        thing.stop()


def test_shipped_rules_pass_promtool_check_and_their_unit_tests() -> None:
    checked = promtool("check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 6 rules found" in checked.stdout
    # Each alert fires on a failing fleet's series and stays quiet on a healthy one.
    tested = promtool("test", "rules", str(RULES_TEST))
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_daemon_textfile_and_http_endpoint_hold_the_registry_figures(
    tmp_path: Path, rig: list[Any]
) -> None:
    grants = {
        "pusher": Grant.push(PASSWORDS["pusher"]),
        "puller": Grant.pull_only(PASSWORDS["puller"]),
    }
    reg = start_registry(tmp_path, users=PASSWORDS, auth="token", grants=grants)
    rig.append(reg)
    configs = [
        write_config(tmp_path / "pusher", reg.host, "pusher", PASSWORDS["pusher"]),
        write_config(tmp_path / "puller", reg.host, "puller", PASSWORDS["puller"]),
        write_config(tmp_path / "wrong", reg.host, "pusher", WRONG_PASSWORD),
    ]
    port = free_port()
    daemon = Daemon(tmp_path, settings=settings(reg, f"127.0.0.1:{port}"), docker_configs=configs)
    rig.append(daemon)
    daemon.wait_ready()
    textfile = daemon.state / "regauthd.prom"
    status = f'regauthd_probe_status{{registry="{reg.host}",status="%s"}} 1.0\n'

    def probed() -> bool:
        text = textfile.read_text() if textfile.exists() else ""
        return all(status % s in text for s in ("ok", "push_denied", "bad_credentials"))

    wait_until(probed, f"the three probe results in {textfile}: {daemon.out.read_text()[-2000:]}")
    text = textfile.read_text()

    # Prometheus's own linter accepts the file node_exporter would read.
    checked = promtool("check", "metrics", stdin=text)
    assert checked.returncode == 0, checked.stdout + checked.stderr

    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    registry = (("registry", reg.host),)
    assert samples[("regauthd_push_allowed", registry)] == 0  # the pull-only credential
    assert samples[("regauthd_probe_last_success_timestamp_seconds", registry)] > 0
    assert samples[("regauthd_watched_configs", ())] == 3
    assert ("regauthd_credential_expiry_timestamp_seconds", registry) not in samples
    assert any(n == "regauthd_build_info" for n, _ in samples)
    # Every metric the shipped rules and dashboard use is there for Prometheus to find.
    missing = named_in_rules_and_dashboard() - declared(text)
    assert missing == set()

    # The same metrics over HTTP on the loopback address of `[metrics] listen`.
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        served = response.read().decode()
    assert status % "bad_credentials" in served
    assert declared(served) == declared(text)
    (listening,) = daemon.named("metrics.listening")
    assert listening["url"] == f"http://127.0.0.1:{port}/metrics"

    daemon.stop()
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass  # the listener closed with the daemon
    for output in (textfile.read_text(), served, daemon.out.read_text(), daemon.err.read_text()):
        for secret in (*PASSWORDS.values(), WRONG_PASSWORD, auth("pusher", WRONG_PASSWORD)):
            assert secret not in output


def test_a_listen_address_in_use_is_logged_and_the_textfile_still_written(
    tmp_path: Path,
) -> None:
    (tmp_path / "cfg").mkdir()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        daemon = Daemon(
            tmp_path,
            settings=f'[daemon]\noutput = "json"\n[metrics]\nlisten = "127.0.0.1:{port}"\n',
            docker_configs=[tmp_path / "cfg"],
        )
        try:
            daemon.wait_ready()
            (failed,) = daemon.wait_event("metrics.listen_failed")
            assert failed["address"] == f"127.0.0.1:{port}"
            assert failed["reason"] == "Address already in use"
            textfile = daemon.state / "regauthd.prom"
            wait_until(textfile.exists, "the textfile")
            assert "regauthd_watched_configs 1.0\n" in textfile.read_text()
        finally:
            daemon.stop()
