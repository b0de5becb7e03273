"""`regauthd check|fix --dockerconfigjson` and `--env` as a person or a CI step runs them.

The kubelet's rules themselves are tested in tests/unit/test_kubelet.py and
tests/unit/test_pullsecret.py; here: input forms (file, stdin), output forms, exit codes, and
that no secret leaves except inside the corrected document `fix` prints.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

PASSWORD = "kube-Pa55-do-not-leak"
AUTH = base64.b64encode(f"robot:{PASSWORD}".encode()).decode()
SECRETS = (PASSWORD, AUTH)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def run(
    *args: str,
    stdin: bytes | None = None,
    env: dict[str, str] | None = None,
    document: bool = False,
) -> subprocess.CompletedProcess[bytes]:
    proc = subprocess.run(
        [sys.executable, "-m", "regauthd", *args],
        input=stdin,
        capture_output=True,
        timeout=30,
        env={**os.environ, **(env or {})},
        check=False,
    )
    for secret in SECRETS:
        assert secret.encode() not in proc.stderr, "secret on stderr"
        if not document:
            assert secret.encode() not in proc.stdout, "secret on stdout"
    return proc


def opaque_secret(tmp_path: Path) -> Path:
    """A Secret as people write it by hand: type left out, legacy format, Docker Hub key."""
    manifest = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "regcred"},
        "data": {".dockerconfigjson": b64(json.dumps({"docker.io": {"auth": AUTH}}))},
    }
    path = tmp_path / "regcred.yaml"
    path.write_text(yaml.safe_dump(manifest, sort_keys=False))
    return path


def test_check_names_each_problem_and_exits_1(tmp_path: Path) -> None:
    path = opaque_secret(tmp_path)
    before = path.read_bytes()
    proc = run("check", "--dockerconfigjson", str(path), "--image", "alpine")
    assert proc.returncode == 1
    out = proc.stdout.decode()
    assert "regcred.yaml (Secret regcred): problems" in out
    assert "type is missing (so Opaque)" in out
    assert "no `auths` object" in out
    assert "the Secret gives the kubelet no credential: it pulls alpine anonymously" in out
    assert path.read_bytes() == before


def test_fix_prints_the_corrected_secret_which_then_checks_clean(tmp_path: Path) -> None:
    path = opaque_secret(tmp_path)
    before = path.read_bytes()
    proc = run("fix", "--dockerconfigjson", str(path), "--image", "alpine", document=True)
    assert proc.returncode == 0, proc.stderr
    assert path.read_bytes() == before, "fix on a document writes nothing"
    fixed = yaml.safe_load(proc.stdout)
    assert fixed["kind"] == "Secret" and fixed["type"] == "kubernetes.io/dockerconfigjson"
    payload = json.loads(base64.b64decode(fixed["data"][".dockerconfigjson"]))
    assert payload == {"auths": {"docker.io": {"auth": AUTH}}}
    assert b"changed: type set to kubernetes.io/dockerconfigjson" in proc.stderr
    # The corrected document, piped back in: nothing left, and the kubelet finds Hub's key.
    again = run("check", "--dockerconfigjson", "-", "--image", "alpine", stdin=proc.stdout)
    assert again.returncode == 0, again.stdout
    assert b"the kubelet uses 'docker.io'" in again.stdout


def test_kubectl_json_on_stdin_with_json_output(tmp_path: Path) -> None:
    kubectl = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "pull", "namespace": "ci", "uid": "u-1"},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {
            ".dockerconfigjson": b64(json.dumps({"auths": {"*.example.com": {"auth": AUTH}}}))
        },
    }
    stdin = json.dumps(kubectl, indent=4).encode()
    proc = run(
        "check",
        "--dockerconfigjson",
        "-",
        "--json",
        "--image",
        "reg.example.com/app",
        "--image",
        "ghcr.io/org/app",
        stdin=stdin,
    )
    assert proc.returncode == 1
    (obj,) = [json.loads(line) for line in proc.stdout.splitlines()]
    assert obj["path"] == "<stdin> (Secret pull)"
    assert [f["code"] for f in obj["findings"]] == ["no_credential_for_image"]
    assert obj["images"][0]["keys"] == ["*.example.com"]
    assert obj["images"][1]["keys"] == []
    # Nothing to fix: fix gives back the input byte for byte.
    fixed = run("fix", "--dockerconfigjson", "-", stdin=stdin, document=True)
    assert fixed.returncode == 0 and fixed.stdout == stdin


def test_a_clean_raw_dockerconfigjson_exits_0(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"auths": {"https://index.docker.io/v1/": {"auth": AUTH}}}))
    proc = run("check", "--dockerconfigjson", str(path), "--image", "bob/app")
    assert proc.returncode == 0, proc.stdout
    assert b"the kubelet uses 'https://index.docker.io/v1/'" in proc.stdout


def test_what_is_no_pull_secret_exits_1_and_a_missing_file_2(tmp_path: Path) -> None:
    (tmp_path / "cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\ndata: {a: b}\n")
    proc = run("check", "--dockerconfigjson", str(tmp_path / "cm.yaml"))
    assert proc.returncode == 1
    assert b"is not a pull secret: is a ConfigMap" in proc.stdout
    proc = run("check", "--dockerconfigjson", str(tmp_path / "absent.json"))
    assert proc.returncode == 2
    assert b"no such file" in proc.stderr
    assert run("check", "--image", "alpine").returncode == 2
    assert run("fix", "--env", "REGAUTHD_TEST_UNSET_VARIABLE").returncode == 2


def test_env_docker_auth_config_uses_docker_rules() -> None:
    value = json.dumps({"auths": {"docker.io": {"auth": AUTH}}})
    env = {"DOCKER_AUTH_CONFIG": value}
    proc = run("check", "--env", "DOCKER_AUTH_CONFIG", env=env)
    assert proc.returncode == 1
    assert b"$DOCKER_AUTH_CONFIG:" in proc.stdout
    assert b"Docker does not find credentials under 'docker.io'" in proc.stdout
    proc = run("fix", "--env", "DOCKER_AUTH_CONFIG", env=env, document=True)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"auths": {"https://index.docker.io/v1/": {"auth": AUTH}}}
    assert b"renamed to 'https://index.docker.io/v1/'" in proc.stderr


def test_an_expired_ecr_password_in_a_pull_secret_is_a_problem(tmp_path: Path) -> None:
    """The kubelet pulls with whatever the Secret holds: an ECR password past its
    ``expiration`` (12 h after `aws ecr get-login-password`) fails every pull (issue 10)."""
    from datetime import UTC, datetime, timedelta

    from tests.rigs.tokens import ecr_password

    host = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
    stale = ecr_password(datetime.now(UTC) - timedelta(hours=3))
    fresh = ecr_password(datetime.now(UTC) + timedelta(hours=11))
    for password, code in ((stale, 1), (fresh, 0)):
        auth = b64(f"AWS:{password}")
        payload = json.dumps({"auths": {host: {"auth": auth}}})
        manifest = {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "kubernetes.io/dockerconfigjson",
            "metadata": {"name": "ecr"},
            "data": {".dockerconfigjson": b64(payload)},
        }
        path = tmp_path / "ecr.json"
        path.write_text(json.dumps(manifest))
        proc = run("check", "--dockerconfigjson", str(path))
        out = proc.stdout.decode() + proc.stderr.decode()
        assert proc.returncode == code, out
        assert password not in out and auth not in out
        if code:
            assert "expired 3 h ago" in out
            assert "aws ecr get-login-password --region eu-west-1" in out
