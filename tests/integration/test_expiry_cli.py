"""``regauthd check`` and ``regauthd doctor`` report when each stored credential expires
(issue 10, item 1): through the CLI, with the real ``pass`` helper and a real registry."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.conftest import require_program, require_root
from tests.rigs.configs import auth
from tests.rigs.passhelper import PassHelper
from tests.rigs.registry import RegistryFactory
from tests.rigs.tokens import ecr_password, jwt_token

ECR_HOST = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"


def now() -> datetime:
    return datetime.now(UTC)


def write(directory: Path, config: dict[str, Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config, indent="\t"))
    (directory / "config.json").chmod(0o600)
    return directory / "config.json"


def regauthd(
    *args: str, secrets: list[str], env: dict[str, str] | None = None, home: Path
) -> subprocess.CompletedProcess[str]:
    environ = {"PATH": os.environ["PATH"], "HOME": str(home), "LANG": "C.UTF-8", **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-m", "regauthd", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=environ,
    )
    for secret in secrets:
        for part in (secret, secret[10:50]):
            assert part not in proc.stdout, "secret on stdout"
            assert part not in proc.stderr, "secret on stderr"
    return proc


def test_check_expired_ecr_is_a_problem_expiring_jwt_a_warning(tmp_path: Path) -> None:
    expired = ecr_password(now() - timedelta(hours=3, minutes=1))
    soon = jwt_token(now() + timedelta(minutes=40, seconds=30))
    cfg = write(
        tmp_path / "d",
        {"auths": {ECR_HOST: {"auth": auth("AWS", expired)}, "ghcr.io": {"auth": auth("u", soon)}}},
    )
    before = cfg.read_bytes()
    proc = regauthd("check", "--docker-config", str(cfg), secrets=[expired, soon], home=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"{cfg}: problems" in proc.stdout
    lines = proc.stdout.splitlines()
    (gone,) = [x for x in lines if x.startswith(f"  error [{ECR_HOST}]")]
    assert "expired 3 h 1 m ago" in gone
    assert "Amazon ECR password" in gone
    (soon_line,) = [x for x in lines if x.startswith("  warning [ghcr.io]")]
    assert "expires in 40 m" in soon_line
    assert "aws ecr get-login-password --region eu-west-1 | docker login" in proc.stdout
    assert cfg.read_bytes() == before  # check never writes

    # --json: the findings, and one object per credential.
    proc = regauthd(
        "check", "--json", "--docker-config", str(cfg), secrets=[expired, soon], home=tmp_path
    )
    assert proc.returncode == 1
    (obj,) = [json.loads(line) for line in proc.stdout.splitlines()]
    codes = {(f["code"], f["key"]) for f in obj["findings"]}
    assert codes == {("credential_expired", ECR_HOST), ("credential_expiring", "ghcr.io")}
    states = {e["key"]: (e["state"], e["source"], e["field"]) for e in obj["expiry"]}
    assert states == {
        ECR_HOST: ("expired", "ecr", "password"),
        "ghcr.io": ("expiring", "jwt exp", "password"),
    }


def test_check_with_only_valid_and_unreadable_expiries_is_clean(tmp_path: Path) -> None:
    token = jwt_token(now() + timedelta(days=2))
    cfg = write(
        tmp_path / "d",
        {
            "auths": {
                "a.azurecr.io": {
                    "auth": auth("00000000-0000-0000-0000-000000000000", ""),
                    "identitytoken": token,
                },
                "quay.io": {"auth": auth("q", "plain-password-1")},
                "registry.example": {"auth": auth("r", "dckr_pat_opaque")},
            }
        },
    )
    proc = regauthd(
        "check", "--docker-config", str(cfg), secrets=[token, "plain-password-1"], home=tmp_path
    )
    assert (proc.returncode, proc.stdout) == (0, f"{cfg}: clean\n")
    # Said once, not as a warning: on stderr, one line for the file.
    (note,) = [x for x in proc.stderr.splitlines() if "expiry" in x]
    assert "2 with no readable expiry (quay.io, registry.example" in note
    assert "nothing is guessed" in note
    assert "a.azurecr.io, expires in 1 d 23 h" in note or "expires in 2 d" in note


def test_check_asks_the_credential_helper_as_a_client_would(
    pass_helper: PassHelper, tmp_path: Path
) -> None:
    expired = ecr_password(now() - timedelta(hours=1))
    pass_helper.store(ECR_HOST, "AWS", expired)
    cfg = write(tmp_path / "d", {"auths": {ECR_HOST: {}}, "credsStore": "pass"})
    proc = regauthd(
        "check", "--json", "--docker-config", str(cfg), secrets=[expired], env=pass_helper.env,
        home=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    (obj,) = [json.loads(line) for line in proc.stdout.splitlines()]
    (item,) = obj["expiry"]
    assert (item["helper"], item["username"], item["state"]) == ("pass", "AWS", "expired")
    assert [f["code"] for f in obj["findings"]] == ["credential_expired"]
    # A helper that is not there: the expiry is said to be unread, not all good.
    # Asked once, not once per key.
    cfg = write(tmp_path / "e", {"auths": {ECR_HOST: {}, "b.io": {}}, "credsStore": "nosuchhelper"})
    proc = regauthd("check", "--json", "--docker-config", str(cfg), secrets=[], home=tmp_path)
    (obj,) = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [f["code"] for f in obj["findings"]] == ["expiry_not_read", "expiry_not_read"]
    assert [e["state"] for e in obj["expiry"]] == ["not_read", "not_read"]
    assert "is not installed" in obj["expiry"][0]["error"]
    assert f"already failed for {ECR_HOST}" in obj["expiry"][1]["error"]


def test_doctor_reports_each_credential_and_fails_on_an_expired_one(
    registry_factory: RegistryFactory, tmp_path: Path
) -> None:
    """The registry accepts the JWT as a password; only its expiry decides doctor's exit."""
    valid = jwt_token(now() + timedelta(hours=2, minutes=10, seconds=30))
    expired = jwt_token(now() - timedelta(hours=3, minutes=1))
    reg = registry_factory(users={"alice": valid, "bob": expired})

    def doctor(user: str, password: str) -> tuple[int, list[dict[str, Any]]]:
        cfg = write(tmp_path / user, {"auths": {reg.host: {"auth": auth(user, password)}}})
        proc = regauthd(
            "doctor", "--json", "--docker-config", str(cfg), "--timeout", "5",
            secrets=[valid, expired], home=tmp_path,
        )  # fmt: skip
        return proc.returncode, [json.loads(line) for line in proc.stdout.splitlines()]

    code, rows = doctor("alice", valid)
    (row,) = [r for r in rows if r["check"] == "credential_expiry"]
    assert (row["status"], row["registry"]) == ("ok", reg.host)
    assert "user alice: expires in 2 h 10 m" in row["message"]
    assert "signature is not verified" in row["message"]
    assert next(r for r in rows if r["check"] == "authentication")["status"] == "ok"
    failing = [r for r in rows if r["status"] in {"problem", "not_checked"}]
    assert code == (1 if failing else 0), failing

    code, rows = doctor("bob", expired)
    (row,) = [r for r in rows if r["check"] == "credential_expiry"]
    assert row["status"] == "problem"
    assert "user bob: expired 3 h 1 m ago" in row["message"]
    assert row["fix"] == f"log in again: `docker login {reg.host}`"
    assert code == 1

    # No readable expiry: one not_applicable line, never a warning.
    code, rows = doctor("carol", "plain-pw")
    (row,) = [r for r in rows if r["check"] == "credential_expiry"]
    assert row["status"] == "not_applicable"
    assert f"no readable expiry for {reg.host}" in row["message"]


def test_check_warns_as_early_as_the_settings_lead_time(tmp_path: Path) -> None:
    """`[expiry] lead_time` of the user's settings file is the daemon's and check's: a
    credential expiring in 2 h is no warning by default (1 h) and a warning with 3 h."""
    require_root("runs check as nobody, whose settings file is under XDG_CONFIG_HOME")
    setpriv = require_program("setpriv", "util-linux")
    token = jwt_token(now() + timedelta(hours=2))
    base = Path(tempfile.mkdtemp(prefix="regauthd-lead-", dir="/tmp"))
    try:
        base.chmod(0o755)
        cfg = write(base / "d", {"auths": {"ghcr.io": {"auth": auth("u", token)}}})
        os.chown(cfg.parent, 65534, 65534)
        os.chown(cfg, 65534, 65534)
        settings = base / "xdg" / "regauthd" / "config.toml"
        settings.parent.mkdir(parents=True)
        for directory in (base / "xdg", settings.parent):
            directory.chmod(0o755)

        def check() -> subprocess.CompletedProcess[str]:
            argv = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]
            argv += [sys.executable, "-m", "regauthd", "check", "--docker-config", str(cfg)]
            env = {"PATH": os.environ["PATH"], "HOME": str(base), "LANG": "C.UTF-8"}
            env["XDG_CONFIG_HOME"] = str(base / "xdg")
            return subprocess.run(argv, capture_output=True, text=True, env=env, check=False)

        default = check()
        assert default.returncode == 0, default.stdout + default.stderr
        assert "warning [ghcr.io]" not in default.stdout
        settings.write_text('[expiry]\nlead_time = "3h"\n')
        settings.chmod(0o644)
        early = check()
        assert early.returncode == 0, early.stdout + early.stderr
        (line,) = [x for x in early.stdout.splitlines() if x.startswith("  warning [ghcr.io]")]
        assert "expires in 1 h 59 m" in line or "expires in 2 h" in line
        assert token not in early.stdout + early.stderr
    finally:
        shutil.rmtree(base, ignore_errors=True)
