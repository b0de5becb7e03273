"""The rigs the probe tests stand on: the real registry in its three modes, and the token issuer.

The Docker CLI is the oracle: ``docker manifest inspect --insecure`` works only when the CLI
resolves a credential the registry accepts.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import jwt
import pytest

from tests.conftest import require_program
from tests.rigs.configs import auth
from tests.rigs.registry import RegistryFactory, push_tiny_image
from tests.rigs.tokenissuer import Grant

pytestmark = pytest.mark.integration


def write_login(cfg: Path, host: str, user: str, password: str) -> None:
    cfg.mkdir(parents=True, exist_ok=True)
    token = auth(user, password)
    (cfg / "config.json").write_text(json.dumps({"auths": {host: {"auth": token}}}))


@pytest.mark.parametrize("auth", ["htpasswd", "token"])
def test_pushed_image_is_visible_to_the_docker_cli(
    registry_factory: RegistryFactory, auth: str, tmp_path: Path
) -> None:
    require_program("docker", "docker.io")
    from tests.rigs.clients import Sandbox, docker_manifest_inspect_ok

    reg = registry_factory(users={"alice": "rig-pw-1"}, auth=auth)
    digest = push_tiny_image(reg, "team/app", "v1", "alice", "rig-pw-1")
    assert digest.startswith("sha256:")
    box = Sandbox.create(tmp_path / "box")
    good, bad = tmp_path / "good", tmp_path / "bad"
    write_login(good, reg.host, "alice", "rig-pw-1")
    write_login(bad, reg.host, "alice", "wrong-rig-pw")
    assert docker_manifest_inspect_ok(good, f"{reg.host}/team/app:v1", sandbox=box)
    assert not docker_manifest_inspect_ok(bad, f"{reg.host}/team/app:v1", sandbox=box)


def test_registry_processes_stop(tmp_path: Path) -> None:
    require_program("docker-registry", "docker-registry")
    from tests.rigs.registry import start_registry

    reg = start_registry(tmp_path, auth="none")
    assert httpx.get(f"{reg.url}/v2/").status_code == 200
    reg.stop()
    assert reg.process.poll() is not None


def test_tls_mode_serves_https_with_the_test_ca(registry_factory: RegistryFactory) -> None:
    reg = registry_factory(users={"alice": "rig-pw-2"}, tls=True)
    assert reg.ca_file is not None
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{reg.url}/v2/")
    answer = httpx.get(f"{reg.url}/v2/", verify=reg.verify(), auth=("alice", "rig-pw-2"))
    assert answer.status_code == 200


def test_issuer_grants_requested_actions_intersected_with_allowed(
    registry_factory: RegistryFactory,
) -> None:
    reg = registry_factory(auth="token", grants={"bob": Grant.pull_only("rig-pw-3")})
    issuer = reg.issuer
    assert issuer is not None
    answer = httpx.get(
        issuer.realm,
        params={"service": issuer.service, "scope": "repository:a/b:push,pull"},
        auth=("bob", "rig-pw-3"),
    )
    body = answer.json()
    claims = jwt.decode(body["token"], options={"verify_signature": False})
    assert claims["access"] == [{"type": "repository", "name": "a/b", "actions": ["pull"]}]
    assert claims["aud"] == issuer.service
    assert jwt.get_unverified_header(body["token"])["x5c"]
    refused = httpx.get(issuer.realm, params={"service": issuer.service}, auth=("bob", "nope"))
    assert refused.status_code == 401
    # The registry accepts the issuer's tokens (and refuses without one).
    assert httpx.get(f"{reg.url}/v2/").status_code == 401
    bearer = {"Authorization": f"Bearer {body['token']}"}
    assert httpx.get(f"{reg.url}/v2/", headers=bearer).status_code == 200


def test_issuer_refresh_tokens(registry_factory: RegistryFactory) -> None:
    reg = registry_factory(auth="token", users={"alice": "rig-pw-4"})
    issuer = reg.issuer
    assert issuer is not None
    first = httpx.get(
        issuer.realm,
        params={"service": issuer.service, "offline_token": "true", "client_id": "t"},
        auth=("alice", "rig-pw-4"),
    ).json()
    refresh = first["refresh_token"]
    form = {"grant_type": "refresh_token", "refresh_token": refresh, "service": issuer.service}
    assert httpx.post(issuer.realm, data=form).status_code == 200
    issuer.revoke_refresh_tokens("alice")
    denied = httpx.post(issuer.realm, data=form)
    assert (denied.status_code, denied.json()) == (400, {"error": "invalid_grant"})


def test_probe_benchmark_quick_mode_runs() -> None:
    require_program("docker-registry", "docker-registry")
    import re
    import subprocess
    import sys

    bench = Path(__file__).resolve().parents[2] / "bench" / "probe.py"
    proc = subprocess.run(
        [sys.executable, str(bench), "--quick"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "connections opened" in proc.stdout
    assert re.search(r"results not ok\s+0\n", proc.stdout)
    assert "bench-password-1" not in proc.stdout + proc.stderr
