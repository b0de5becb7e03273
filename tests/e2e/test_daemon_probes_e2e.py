"""`regauthd run` with probes on, end to end: the real daemon against the real registry.

The daemon runs as a subprocess (JSON lines on stdout) and probes Debian's ``docker-registry``
(token auth with the tests' own token issuer; TLS with a test CA) every second. The registry
side changes the password; the daemon raises one ``probe.failing``; a new ``docker login``
makes it probe at once and raise one ``probe.recovered``. Waits are for expected lines (with a
deadline), never for fixed times.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from regauthd.alerts.catalogue import CATALOGUE
from tests.conftest import require_program
from tests.rigs.clients import docker_login
from tests.rigs.configs import auth, wait_until
from tests.rigs.daemon import Daemon
from tests.rigs.registry import RunningRegistry, start_registry
from tests.rigs.tokenissuer import Grant

USER = "alice"
OLD_PASSWORD = "probe-e2e-old-pw-4Kd"
NEW_PASSWORD = "probe-e2e-new-pw-9Zt"
REPOSITORY = "team/app"


def write_config(cfg: Path, host: str, user: str, password: str) -> None:
    data = {"auths": {host: {"auth": auth(user, password)}}}
    (cfg / "config.json").write_text(json.dumps(data, indent="\t"))


def settings(reg: RunningRegistry, extra: str = "") -> str:
    return f"""
[daemon]
output = "json"
log_level = "debug"
[alerts]
suppress_window = 0
[probe]
enabled = true
interval = "1s"
jitter = 0
timeout = "5s"
{extra}
[probe.repositories]
"{reg.host}" = "{REPOSITORY}"
"""


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[list[Any]]:
    """Everything started here (registries, daemons), stopped by PID at teardown."""
    require_program("docker-registry", "docker-registry")
    started: list[Any] = []
    yield started
    for thing in reversed(started):
        thing.stop()


def start(tmp_path: Path, text: str, cfg: Path, rig: list[Any]) -> Daemon:
    tmp_path.mkdir(exist_ok=True)
    daemon = Daemon(tmp_path, settings=text, docker_configs=[cfg])
    rig.append(daemon)
    daemon.wait_ready()
    return daemon


def results(daemon: Daemon, status: str) -> list[dict[str, Any]]:
    return [e for e in daemon.named("probe.scheduled_result") if e["status"] == status]


def wait_results(daemon: Daemon, status: str, count: int = 1) -> None:
    wait_until(
        lambda: len(results(daemon, status)) >= count,
        f"{count} probe result(s) {status}: {daemon.out.read_text()[-2000:]}",
    )


def everything(daemon: Daemon) -> str:
    return daemon.out.read_text() + daemon.err.read_text()


def test_password_change_alerts_once_and_a_new_login_recovers_at_once(
    tmp_path: Path, rig: list[Any]
) -> None:
    require_program("docker", "docker.io")
    reg = start_registry(tmp_path, users={USER: OLD_PASSWORD}, auth="token")
    rig.append(reg)
    assert reg.issuer is not None
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    write_config(cfg, reg.host, USER, OLD_PASSWORD)
    daemon = start(tmp_path, settings(reg), cfg, rig)

    # A working credential, probed twice: no alert.
    wait_results(daemon, "ok", 2)
    assert daemon.named("probe.failing") == []

    # The password is changed on the registry's side: the stored credential stops working.
    reg.issuer.grants[USER] = Grant.push(NEW_PASSWORD)
    (failing,) = daemon.wait_event("probe.failing")
    assert failing["message_id"] == CATALOGUE["probe.failing"].message_id.hex
    assert (failing["registry"], failing["status"]) == (reg.host, "bad_credentials")
    assert failing["reason"]
    assert failing["message"] == (
        f"{reg.host}: probe failed (bad_credentials): {failing['reason']}"
    )
    assert failing["path"] == str(cfg / "config.json")
    # Probed again while failing (back-off): still one alert.
    wait_results(daemon, "bad_credentials", 2)
    assert len(daemon.named("probe.failing")) == 1

    # `docker login` with the new password rewrites config.json: probed again, recovered.
    docker_login(cfg, reg.host, USER, NEW_PASSWORD)
    (recovered,) = daemon.wait_event("probe.recovered")
    assert recovered["message_id"] == CATALOGUE["probe.recovered"].message_id.hex
    assert (recovered["registry"], recovered["previous"]) == (reg.host, "bad_credentials")
    assert recovered["message"] == f"{reg.host}: the stored credential works again"
    assert len(daemon.named("probe.failing")) == 1
    assert len(daemon.named("probe.recovered")) == 1

    stored = json.loads((cfg / "config.json").read_text())["auths"][reg.host]
    secrets = [OLD_PASSWORD, NEW_PASSWORD, auth(USER, OLD_PASSWORD), auth(USER, NEW_PASSWORD)]
    secrets += [v for k, v in stored.items() if k in {"auth", "identitytoken"} and v]
    daemon.stop()
    output = everything(daemon)
    for secret in secrets:
        assert secret not in output


def test_ca_file_setting_is_used_for_registry_tls(tmp_path: Path, rig: list[Any]) -> None:
    """``[probe] ca_file`` is how a company CA is trusted: with it the TLS registry's
    certificate verifies; without it the probe fails and says why, not that the credential
    is bad."""
    reg = start_registry(tmp_path, users={USER: OLD_PASSWORD}, auth="htpasswd", tls=True)
    rig.append(reg)
    assert reg.ca_file is not None
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    write_config(cfg, reg.host, USER, OLD_PASSWORD)

    without = start(tmp_path / "without", settings(reg), cfg, rig)
    (failing,) = without.wait_event("probe.failing")
    assert failing["status"] == "tls_error"
    assert failing["message"].startswith(f"{reg.host}: probe failed (tls_error): ")
    assert "does not work" not in failing["message"]
    without.stop()

    with_ca = start(tmp_path / "with", settings(reg, f'ca_file = "{reg.ca_file}"'), cfg, rig)
    wait_results(with_ca, "ok", 2)
    assert with_ca.named("probe.failing") == []
    for daemon in (without, with_ca):
        output = everything(daemon)
        assert OLD_PASSWORD not in output
        assert auth(USER, OLD_PASSWORD) not in output
