"""`regauthd fix` and `regauthd check` as a person or a CI step runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from regauthd.dockerconfig.keys import HUB_CANONICAL
from tests.rigs.configs import auth

PASSWORD = "Pa55w0rd-do-not-leak"
TOKEN = "identity-token-do-not-leak"
AUTH = auth("alice", PASSWORD)
SECRETS = (PASSWORD, AUTH, TOKEN)


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "regauthd", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        check=False,
    )
    for secret in SECRETS:
        assert secret not in proc.stdout, "secret on stdout"
        assert secret not in proc.stderr, "secret on stderr"
    return proc


def json_lines(stdout: str) -> list[dict[str, object]]:
    lines = stdout.splitlines()
    objects = [json.loads(line) for line in lines]
    assert all(isinstance(o, dict) for o in objects)
    return objects


@pytest.fixture
def cfg(isolated_env: Path) -> Path:
    return isolated_env / ".docker"


def write(cfg: Path, config: dict[str, object]) -> bytes:
    data = json.dumps(config, indent="\t").encode()
    (cfg / "config.json").write_bytes(data)
    (cfg / "config.json").chmod(0o600)
    return data


def test_fix_renames_hub_alias_and_reports_json(cfg: Path, tmp_path: Path) -> None:
    write(cfg, {"auths": {"docker.io": {"auth": AUTH}, "ghcr.io": {"identitytoken": TOKEN}}})
    proc = run("fix", "--docker-config", str(cfg), "--state-dir", str(tmp_path / "s"), "--json")
    assert proc.returncode == 0, proc.stderr
    (report,) = json_lines(proc.stdout)
    assert report["status"] == "fixed"
    assert report["changes"] == [
        {"action": "rename", "section": "auths", "from": "docker.io", "to": HUB_CANONICAL}
    ]
    backup = Path(str(report["backup"]))
    assert backup.is_relative_to(tmp_path / "s")
    assert AUTH in backup.read_text()  # the backup is the way back: it holds the original
    config = json.loads((cfg / "config.json").read_text())
    assert config["auths"] == {HUB_CANONICAL: {"auth": AUTH}, "ghcr.io": {"identitytoken": TOKEN}}
    assert sorted(p.name for p in cfg.iterdir()) == ["config.json"]
    again = run("fix", "--docker-config", str(cfg), "--state-dir", str(tmp_path / "s"), "--json")
    assert json_lines(again.stdout)[0]["status"] == "clean"
    assert again.returncode == 0


def test_default_location_is_docker_config_env(cfg: Path) -> None:
    write(cfg, {"auths": {"index.docker.io": {"auth": AUTH}}})
    proc = run("fix")
    assert proc.returncode == 0, proc.stderr
    assert HUB_CANONICAL in json.loads((cfg / "config.json").read_text())["auths"]
    state = Path(os.environ["XDG_STATE_HOME"]) / "regauthd" / "backups"
    assert any(state.iterdir())


def test_dry_run_prints_a_redacted_diff_and_writes_nothing(cfg: Path, tmp_path: Path) -> None:
    data = write(cfg, {"auths": {"https://docker.io": {"auth": AUTH}}})
    before = (cfg / "config.json").stat()
    proc = run("fix", "--dry-run", "--state-dir", str(tmp_path / "s"))
    assert proc.returncode == 1  # changes pending (issue 11: a dry run never exits 0 then)
    assert '-\t\t"https://docker.io": {' in proc.stdout
    assert f'+\t\t"{HUB_CANONICAL}": {{' in proc.stdout
    assert "<redacted auth for user alice>" in proc.stdout
    assert (cfg / "config.json").read_bytes() == data
    assert (cfg / "config.json").stat().st_mtime_ns == before.st_mtime_ns
    assert not (tmp_path / "s").exists()


def test_dry_run_json_carries_the_diff(cfg: Path) -> None:
    write(cfg, {"auths": {"docker.io": {"auth": AUTH}}})
    proc = run("fix", "--dry-run", "--json")
    (report,) = json_lines(proc.stdout)
    assert report["status"] == "would_fix"
    assert "redacted" in str(report["diff"])


def test_unfixable_problems_exit_1_and_the_rest_is_still_fixed(cfg: Path) -> None:
    write(cfg, {"auths": {"docker.io": {"auth": AUTH}, "quay.io": {"auth": "!!notbase64"}}})
    proc = run("fix", "--json")
    assert proc.returncode == 1
    (report,) = json_lines(proc.stdout)
    assert report["status"] == "fixed_with_problems"
    codes = [f["code"] for f in report["findings"]]  # type: ignore[union-attr,index]
    assert codes == ["auth_not_base64"]
    assert HUB_CANONICAL in json.loads((cfg / "config.json").read_text())["auths"]


def test_invalid_json_is_refused_with_its_position_and_left_alone(cfg: Path) -> None:
    data = b'{"auths": {"docker.io": {"auth": "' + AUTH.encode() + b'"}}'
    (cfg / "config.json").write_bytes(data)
    proc = run("fix")
    assert proc.returncode == 1
    assert "line 1 column" in proc.stdout and "invalid JSON" in proc.stdout
    assert (cfg / "config.json").read_bytes() == data


def test_fifo_is_refused_without_blocking(cfg: Path) -> None:
    os.mkfifo(cfg / "config.json")
    proc = run("fix", "--json")  # run() has a timeout: a blocking open would fail the test
    assert proc.returncode == 1
    (report,) = json_lines(proc.stdout)
    assert report["status"] == "refused"
    assert "FIFO" in str(report["error"])


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    proc = run("fix", "--docker-config", str(tmp_path / "no" / "such" / "dir"))
    assert proc.returncode == 2
    assert "no such file or directory" in proc.stderr
    assert run("fix", "--no-such-option").returncode == 2
    assert run().returncode == 2


def test_missing_default_config_is_nothing_to_do(cfg: Path) -> None:
    proc = run("fix")
    assert proc.returncode == 0
    assert "nothing to do" in proc.stderr


def test_several_configs_one_json_line_each(cfg: Path, tmp_path: Path) -> None:
    write(cfg, {"auths": {"docker.io": {"auth": AUTH}}})
    other = tmp_path / "other"
    other.mkdir()
    write(other, {"auths": {"https://myreg:5000/v2/": {"auth": AUTH}}})
    proc = run(
        "fix", "--docker-config", str(cfg), "--docker-config", str(other / "config.json"), "--json"
    )
    assert proc.returncode == 0
    reports = json_lines(proc.stdout)
    assert [r["status"] for r in reports] == ["fixed", "fixed"]
    assert "myreg:5000" in json.loads((other / "config.json").read_text())["auths"]


def test_check_reports_and_changes_nothing(cfg: Path) -> None:
    data = write(cfg, {"auths": {"docker.io": {"auth": AUTH}, "x.io": {}}})
    (cfg / "config.json").chmod(0o644)
    proc = run("check", "--json")
    assert proc.returncode == 1
    (report,) = json_lines(proc.stdout)
    assert report["status"] == "would_fix_with_problems"
    codes = {f["code"] for f in report["findings"]}  # type: ignore[union-attr]
    assert codes == {"empty_placeholder", "file_mode"}
    assert (cfg / "config.json").read_bytes() == data
    write(cfg, {"auths": {HUB_CANONICAL: {"auth": AUTH}}})
    assert run("check").returncode == 0


def test_docker_auth_config_problems_are_reported(cfg: Path) -> None:
    env = dict(os.environ)
    env["DOCKER_AUTH_CONFIG"] = json.dumps({"auths": {"docker.io": {"auth": AUTH}}, "x": 1})
    proc = run("check", "--json", env=env)
    assert proc.returncode == 1
    lines = json_lines(proc.stdout)
    env_report = next(r for r in lines if r["path"] == "$DOCKER_AUTH_CONFIG")
    codes = {f["code"] for f in env_report["findings"]}  # type: ignore[union-attr]
    assert codes == {"env_unknown_fields", "env_noncanonical_key"}
    env["DOCKER_AUTH_CONFIG"] = '{"auths": {"' + AUTH
    proc = run("check", env=env)
    assert "is not valid JSON" in proc.stdout


def test_credentials_only_in_roots_config_are_reported(cfg: Path, tmp_path: Path) -> None:
    root_cfg = tmp_path / "root-config.json"
    root_cfg.write_text(json.dumps({"auths": {HUB_CANONICAL: {"auth": AUTH}}}))
    write(cfg, {"auths": {}})
    proc = run("check", "--root-docker-config", str(root_cfg))
    assert proc.returncode == 1
    assert "sudo docker login" in proc.stdout
    write(cfg, {"auths": {"ghcr.io": {"auth": AUTH}}})
    assert run("check", "--root-docker-config", str(root_cfg)).returncode == 0


def test_conflicting_spellings_keep_canonical_and_back_up_the_other(
    cfg: Path, tmp_path: Path
) -> None:
    other = auth("bob", f"{PASSWORD}x")
    write(cfg, {"auths": {HUB_CANONICAL: {"auth": AUTH}, "docker.io": {"auth": other}}})
    proc = run("fix", "--json", "--state-dir", str(tmp_path / "s"))
    assert proc.returncode == 0
    assert other not in proc.stdout
    (report,) = json_lines(proc.stdout)
    (conflict,) = report["conflicts"]  # type: ignore[misc]
    assert conflict["kept"] == HUB_CANONICAL and conflict["removed"] == "docker.io"
    assert other in Path(conflict["backup"]).read_text()
    text = run("fix", "--dry-run").stdout
    assert "conflict for" not in text  # resolved once, stays resolved


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "regauthd"
    proc = subprocess.run([str(script), "--version"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0
    assert proc.stdout.startswith("regauthd ")
