"""podman's auth.json by containers' own key rules, proven with the real skopeo and podman.

Each rule in ``dockerconfig/authfile.py`` is asked of the real programs first (so a test can
fail), then ``regauthd check|fix --auth-file`` is run and the programs are asked again:
``skopeo login --get-login`` and ``podman login --get-login`` name the user they would send,
``docker login </dev/null`` the one the Docker CLI would. In an auth.json ``docker.io`` IS the
Hub key: regauthd must leave it there (Docker's rule would move it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import require_program
from tests.rigs.clients import (
    Sandbox,
    docker_hub_banner_user,
    podman_get_login,
    podman_login,
    skopeo_get_login,
)
from tests.rigs.configs import auth
from tests.rigs.registry import RunningRegistry, start_registry

pytestmark = pytest.mark.integration

USER = "podmanuser"
SECRET = "Podman-s3cret-Pa55"
DOCKER_USER = "dockeruser"
DOCKER_SECRET = "Docker-s3cret-Pa55"
SECRETS = (SECRET, DOCKER_SECRET, auth(USER, SECRET), auth(DOCKER_USER, DOCKER_SECRET))


@dataclass(frozen=True, slots=True)
class Setup:
    sandbox: Sandbox
    cfg_dir: Path
    """The Docker config directory (DOCKER_CONFIG for the clients)."""
    tmp: Path

    @property
    def auth_file(self) -> Path:
        """Where podman and skopeo look first: $XDG_RUNTIME_DIR/containers/auth.json."""
        return self.sandbox.runtime_dir / "containers" / "auth.json"

    def write_auth_file(self, auths: dict[str, object]) -> None:
        self.auth_file.parent.mkdir(mode=0o700, exist_ok=True)
        self.auth_file.write_text(json.dumps({"auths": auths}, indent="\t"))
        self.auth_file.chmod(0o600)

    def regauthd(self, *args: str) -> subprocess.CompletedProcess[str]:
        """regauthd with the clients' environment: it finds the auth file by itself."""
        env = {**self.sandbox.environ(self.cfg_dir), "PYTHONPATH": os.pathsep.join(sys.path)}
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "regauthd",
                *args,
                "--root-docker-config",
                str(self.tmp / "no-root-config.json"),
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
        for secret in SECRETS:
            assert secret not in proc.stdout + proc.stderr, "a secret was printed"
        return proc


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    require_program("skopeo", "skopeo")
    require_program("podman", "podman")
    # DOCKER_CONFIG unset (empty): with it set, podman and skopeo read the Docker config FIRST
    # and never the runtime auth.json (see the test at the end).
    sandbox = Sandbox.create(tmp_path / "clients", env={"DOCKER_CONFIG": ""})
    cfg_dir = sandbox.home / ".docker"
    cfg_dir.mkdir()
    yield Setup(sandbox, cfg_dir, tmp_path)


# key in auth.json, registry asked, does skopeo find it as written
KEYS = [
    ("https://index.docker.io/v1/", "docker.io", True),  # Docker's Hub key: podman's fallback
    ("hub.docker.com", "docker.io", False),
    ("https://reg.example.test:5000/v2/", "reg.example.test:5000", True),
    ("reg.example.test:5000/v2/", "reg.example.test:5000", False),
    ("HTTPS://reg.example.test:5000", "reg.example.test:5000", False),
]


@pytest.mark.parametrize(("key", "registry", "found"), KEYS)
def test_fix_puts_each_key_where_podman_login_writes_it(
    setup: Setup, key: str, registry: str, found: bool
) -> None:
    box = setup.sandbox
    setup.write_auth_file({key: {"auth": auth(USER, SECRET)}})
    assert skopeo_get_login(setup.cfg_dir, registry, sandbox=box) == (USER if found else None)

    proc = setup.regauthd(
        "fix", "--docker-config", str(setup.cfg_dir), "--state-dir", str(setup.tmp / "state")
    )

    assert proc.returncode == 0, proc.stdout + proc.stderr
    auths = json.loads(setup.auth_file.read_text())["auths"]
    assert registry in auths, auths  # docker.io stays docker.io: podman's Hub key
    assert skopeo_get_login(setup.cfg_dir, registry, sandbox=box) == USER
    again = setup.regauthd("check", "--docker-config", str(setup.cfg_dir))
    assert again.returncode == 0, again.stdout


def test_podman_reads_docker_io_and_regauthd_leaves_it(setup: Setup) -> None:
    setup.write_auth_file({"docker.io": {"auth": auth(USER, SECRET)}})
    before = setup.auth_file.read_bytes()
    assert podman_get_login(setup.cfg_dir, "docker.io", sandbox=setup.sandbox) == USER

    proc = setup.regauthd("check", "--docker-config", str(setup.cfg_dir))

    assert proc.returncode == 0, proc.stdout
    assert f"{setup.auth_file}: clean" in proc.stdout
    assert setup.auth_file.read_bytes() == before


def test_what_podman_login_writes_is_clean(setup: Setup, tmp_path: Path) -> None:
    require_program("docker-registry", "docker-registry")
    require_program("htpasswd", "apache2-utils")
    reg: RunningRegistry = start_registry(tmp_path / "registry", users={USER: SECRET})
    try:
        login_dir = tmp_path / "login"
        login_dir.mkdir()
        podman_login(login_dir, reg.host, USER, SECRET, sandbox=setup.sandbox)
    finally:
        reg.stop()
    written = login_dir / "config.json"  # podman --authfile: containers' format and keys
    assert list(json.loads(written.read_text())["auths"]) == [reg.host]

    proc = setup.regauthd(
        "check", "--docker-config", str(setup.cfg_dir), "--auth-file", str(written)
    )

    assert proc.returncode == 0, proc.stdout
    assert f"{written}: clean" in proc.stdout


def test_docker_and_podman_holding_different_hub_logins_is_reported(setup: Setup) -> None:
    box = setup.sandbox
    (setup.cfg_dir / "config.json").write_text(
        json.dumps(
            {"auths": {"https://index.docker.io/v1/": {"auth": auth(DOCKER_USER, DOCKER_SECRET)}}}
        )
    )
    (setup.cfg_dir / "config.json").chmod(0o600)
    setup.write_auth_file({"docker.io": {"auth": auth(USER, SECRET)}})
    # The real clients: each silently uses its own file.
    assert docker_hub_banner_user(setup.cfg_dir, sandbox=box) == DOCKER_USER
    assert skopeo_get_login(setup.cfg_dir, "docker.io", sandbox=box) == USER

    proc = setup.regauthd("check", "--docker-config", str(setup.cfg_dir), "--json")

    records = [json.loads(line) for line in proc.stdout.splitlines()]
    findings = [f for r in records for f in r.get("findings", [])]
    (disagree,) = [f for f in findings if f["code"] == "clients_disagree"]
    assert disagree["severity"] == "warning"
    assert str(setup.auth_file) in disagree["message"]
    assert f"user '{USER}' there, '{DOCKER_USER}' here" in disagree["message"]
    assert proc.returncode == 0  # a warning: both may be meant


def test_a_password_field_podman_ignores_is_a_problem(setup: Setup) -> None:
    setup.write_auth_file({"reg.example.test": {"username": USER, "password": SECRET}})
    assert skopeo_get_login(setup.cfg_dir, "reg.example.test", sandbox=setup.sandbox) is None

    proc = setup.regauthd("check", "--docker-config", str(setup.cfg_dir))

    assert proc.returncode == 1
    assert "podman and skopeo read only `auth`" in proc.stdout


def test_with_docker_config_set_podman_reads_the_docker_config_first(tmp_path: Path) -> None:
    """containers/common GetDefaultAuthFile: $DOCKER_CONFIG/config.json replaces the runtime
    auth.json, so the two files cannot disagree for podman: nothing is reported."""
    require_program("skopeo", "skopeo")
    box = Sandbox.create(tmp_path / "clients")  # DOCKER_CONFIG set, as in CI jobs
    setup = Setup(box, tmp_path / "docker", tmp_path)
    setup.cfg_dir.mkdir()
    (setup.cfg_dir / "config.json").write_text(
        json.dumps(
            {"auths": {"https://index.docker.io/v1/": {"auth": auth(DOCKER_USER, DOCKER_SECRET)}}}
        )
    )
    (setup.cfg_dir / "config.json").chmod(0o600)
    setup.write_auth_file({"docker.io": {"auth": auth(USER, SECRET)}})
    assert skopeo_get_login(setup.cfg_dir, "docker.io", sandbox=box) == DOCKER_USER

    proc = setup.regauthd("check", "--docker-config", str(setup.cfg_dir))

    assert proc.returncode == 0, proc.stdout
    assert "clients_disagree" not in proc.stdout and "podman and skopeo use" not in proc.stdout
    assert f"{setup.auth_file}: clean" in proc.stdout  # still checked: `podman login` writes it

    # doctor says the same as skopeo did above: the runtime auth.json is not read at all.
    proc = setup.regauthd(
        "doctor", "--docker-config", str(setup.cfg_dir), "--json",
        "--registry", "127.0.0.1:9", "--timeout", "2",
    )  # fmt: skip
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    (podman,) = [r for r in rows if r["check"] == "podman_auth_file"]
    assert podman["status"] == "warning", podman
    assert "read $DOCKER_CONFIG/config.json" in podman["message"]
    assert f"{setup.auth_file} (written by `podman login`) is not read at all" in podman["message"]


def test_doctor_names_the_auth_file_and_the_disagreement(setup: Setup) -> None:
    (setup.cfg_dir / "config.json").write_text(
        json.dumps(
            {"auths": {"https://index.docker.io/v1/": {"auth": auth(DOCKER_USER, DOCKER_SECRET)}}}
        )
    )
    (setup.cfg_dir / "config.json").chmod(0o600)
    setup.write_auth_file(
        {
            "docker.io": {"auth": auth(USER, SECRET)},
            "https://reg.example.test/v2/": {"auth": auth(USER, SECRET)},
        }
    )

    # --registry: a closed loopback port, so no probe leaves the machine.
    proc = setup.regauthd(
        "doctor",
        "--docker-config",
        str(setup.cfg_dir),
        "--json",
        "--registry",
        "127.0.0.1:9",
        "--timeout",
        "2",
    )

    verdicts = {(v["check"], v["status"]): v for v in map(json.loads, proc.stdout.splitlines())}
    keys = verdicts[("auth_file_keys", "problem")]
    assert "https://reg.example.test/v2/ -> reg.example.test" in keys["message"]
    agree = verdicts[("clients_agree", "warning")]
    assert f"user '{USER}' there, '{DOCKER_USER}' here" in agree["message"]
