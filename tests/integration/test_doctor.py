"""``regauthd doctor``: the five troubleshooting steps as named checks (issue 11, item 1)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from regauthd.commands.doctor_checks import credential_helpers, root_config
from regauthd.dockerconfig.keys import HUB_CANONICAL
from tests.conftest import require_root
from tests.rigs.configs import auth
from tests.rigs.registry import RegistryFactory

STATUSES = {"ok", "warning", "problem", "not_checked", "not_applicable"}
NOBODY = 65534


def write(directory: Path, config: dict[str, Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config, indent="\t"))
    (directory / "config.json").chmod(0o600)
    return directory


def doctor(cfg: Path, *args: str, **kw: Any) -> tuple[int, list[dict[str, Any]], str]:
    env = {"PATH": os.environ["PATH"], "HOME": str(cfg.parent), "LANG": "C.UTF-8"}
    proc = subprocess.run(
        [sys.executable, "-m", "regauthd", "doctor", "--docker-config", str(cfg), "--json",
         "--timeout", "2", *args],
        capture_output=True, text=True, timeout=120, check=False, env=env, **kw,
    )  # fmt: skip
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    for row in rows:
        assert set(row) == {"check", "status", "registry", "message", "fix"}
        assert row["status"] in STATUSES
        if row["status"] in {"problem", "not_checked"}:
            assert row["fix"], row
    return proc.returncode, rows, proc.stderr


def by_check(rows: list[dict[str, Any]], check: str, registry: str | None = None) -> dict[str, Any]:
    (row,) = [r for r in rows if r["check"] == check and r["registry"] == registry]
    return row


def test_mis_keyed_hub_credential_points_at_fix(tmp_path: Path) -> None:
    cfg = write(tmp_path / "d", {"auths": {"docker.io": {"auth": auth("u", "p")}}})
    code, rows, _ = doctor(cfg, "--endpoint", "docker.io=http://127.0.0.1:9")
    assert code == 1
    keys = by_check(rows, "config_keys")
    assert keys["status"] == "problem"
    assert f"Docker looks Hub credentials up only under {HUB_CANONICAL}" in keys["message"]
    assert "regauthd fix" in keys["fix"]
    login = by_check(rows, "login", "docker.io")
    assert login["status"] == "problem"
    assert login["fix"] == "run `regauthd fix`"
    assert by_check(rows, "authentication", "docker.io")["status"] == "not_checked"
    assert by_check(rows, "config_file")["status"] == "ok"
    assert by_check(rows, "journal", "docker.io")["status"] in {"ok", "not_checked", "warning"}


def test_a_working_registry_is_ok_step_by_step(
    registry_factory: RegistryFactory, tmp_path: Path
) -> None:
    reg = registry_factory(users={"alice": "alice-pw-1"})
    cfg = write(tmp_path / "d", {"auths": {reg.host: {"auth": auth("alice", "alice-pw-1")}}})
    code, rows, _ = doctor(cfg)
    assert by_check(rows, "login", reg.host)["status"] == "ok"
    assert "logged in as user alice" in by_check(rows, "login", reg.host)["message"]
    assert by_check(rows, "connectivity", reg.host)["status"] == "ok"
    assert by_check(rows, "authentication", reg.host)["status"] == "ok"
    assert by_check(rows, "config_keys")["status"] == "ok"
    failing = [r for r in rows if r["status"] in {"problem", "not_checked"}]
    assert code == (1 if failing else 0), failing
    # Text for people: one line per check with its mark, the next step under a failing one.
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    text = subprocess.run(
        [sys.executable, "-m", "regauthd", "doctor", "--docker-config", str(cfg)],
        capture_output=True, text=True, timeout=120, check=False, env=env,
    ).stdout  # fmt: skip
    assert f"ok          authentication {reg.host}: " in text


def test_wrong_password_is_a_problem_with_the_login_step(
    registry_factory: RegistryFactory, tmp_path: Path
) -> None:
    reg = registry_factory(users={"alice": "alice-pw-1"})
    cfg = write(tmp_path / "d", {"auths": {reg.host: {"auth": auth("alice", "wrong-pw-2")}}})
    code, rows, stderr = doctor(cfg)
    assert code == 1
    row = by_check(rows, "authentication", reg.host)
    assert row["status"] == "problem"
    assert row["fix"] == f"`docker login {reg.host}` again"
    assert "wrong-pw-2" not in json.dumps(rows) + stderr


def test_one_hung_registry_does_not_hold_back_the_others(tmp_path: Path) -> None:
    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(8)  # the kernel accepts; no one ever answers
    hung_host = f"127.0.0.1:{hung.getsockname()[1]}"
    held = []  # bound but not listening: the port stays ours and connections are refused at once
    for _ in range(4):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        held.append(s)
    closed = [f"127.0.0.1:{s.getsockname()[1]}" for s in held]
    hosts = [hung_host, *closed]
    cfg = write(tmp_path / "d", {"auths": {h: {"auth": auth("u", "p")} for h in hosts}})
    try:
        code, rows, _ = doctor(cfg, "--timeout", "0.5")
    finally:
        hung.close()
        for s in held:
            s.close()
    # Lines come in the order they were known: every other registry's are all out before the
    # hung one's first verdict that needed an answer (its TLS handshake, at the timeout).
    order = [(r["check"], r["registry"]) for r in rows]
    hung_tls = order.index(("tls", hung_host))
    for host in closed:
        for check in ("tcp", "tls", "connectivity", "authentication"):
            assert order.index((check, host)) < hung_tls, (check, host, order)
        assert by_check(rows, "tcp", host)["status"] == "problem"
    assert by_check(rows, "tcp", hung_host)["status"] == "ok"
    assert by_check(rows, "tls", hung_host)["status"] == "problem"
    assert "no TLS handshake within 0.5 s" in by_check(rows, "tls", hung_host)["message"]
    assert by_check(rows, "connectivity", hung_host)["status"] == "problem"
    assert "did not answer in time" in by_check(rows, "connectivity", hung_host)["message"]
    assert code == 1


@pytest.fixture
def user_tmp() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="regauthd-test-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_unreadable_root_config_is_not_checked_never_ok(user_tmp: Path) -> None:
    require_root("to run doctor as an unprivileged user")
    home = user_tmp / "home"
    (home / ".docker").mkdir(parents=True)
    for p in (home, home / ".docker"):
        os.chown(p, NOBODY, NOBODY)
    code, rows, _ = doctor(home / ".docker", user=NOBODY, group=NOBODY, extra_groups=[], cwd=home)
    assert code == 1
    row = by_check(rows, "root_config")
    assert row["status"] == "not_checked"
    assert "--root-docker-config FILE" in row["fix"]


def test_root_config_not_applicable_when_own_credentials_serve(tmp_path: Path) -> None:
    unreadable = tmp_path / "root" / "config.json"
    unreadable.mkdir(parents=True)  # cannot be read as a config, even by root
    user = {"auths": {"ghcr.io": {"auth": auth("u", "p")}}}
    verdict = root_config(tmp_path / "c.json", user, unreadable, explicit=False)
    assert verdict.status == "not_applicable"
    verdict = root_config(tmp_path / "c.json", {"auths": {}}, unreadable, explicit=False)
    assert verdict.status == "not_checked"
    assert "--root-docker-config FILE" in str(verdict.fix)


def test_missing_credential_helper_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    (desktop,) = credential_helpers({"credsStore": "desktop"})
    assert desktop.status == "problem"
    assert "Docker Desktop" in desktop.message
    assert '"credsStore": "desktop"' in str(desktop.fix)
    helper = tmp_path / "docker-credential-pass"
    helper.write_text(
        "#!/bin/sh\necho 'pass not initialized: exit status 1: Error: password store is "
        'empty. Try "pass init".\'\nexit 1\n'
    )
    helper.chmod(0o755)
    (broken,) = credential_helpers({"credsStore": "pass"})
    assert broken.status == "problem"
    assert "pass not initialized" in broken.message
    assert "pass init" in str(broken.fix)


def test_a_helper_name_that_is_a_path_is_refused_and_not_run(tmp_path: Path) -> None:
    """Docker would run ``docker-credential-x/evil`` relative to its working directory (see
    test_helper_identity.py); doctor says why that name is wrong and runs nothing."""
    ran = tmp_path / "ran"
    evil = tmp_path / "docker-credential-x" / "evil"
    evil.parent.mkdir()
    evil.write_text(f"#!/bin/sh\ntouch {ran}\n")
    evil.chmod(0o755)
    cfg = write(tmp_path / "cfg", {"auths": {"ghcr.io": {}}, "credsStore": "x/evil"})
    code, rows, _ = doctor(cfg, cwd=tmp_path)
    row = by_check(rows, "credential_helper")
    assert code == 1
    assert row["status"] == "problem" and "'x/evil' refused" in row["message"]
    assert not ran.exists()
