"""Registry mirrors (dockerd's daemon.json, containerd's hosts.toml) tried anonymously, as the
engines try them, against real registries standing in as mirrors (no dockerd runs here):

- an open registry (no auth): anonymous pulls work;
- a token-auth registry whose token service grants anonymous requests nothing: refused;
- a token-auth registry that grants anonymous pulls: works;
- an htpasswd registry: Basic demanded, which dockerd never answers for a mirror;
- a closed port: unreachable.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import require_program
from tests.rigs.registry import RunningRegistry, free_port, start_registry
from tests.rigs.tokenissuer import Grant

pytestmark = pytest.mark.integration


@dataclass(frozen=True, slots=True)
class Mirrors:
    open: RunningRegistry
    refusing: RunningRegistry
    anonymous: RunningRegistry
    basic: RunningRegistry
    closed: str

    def urls(self) -> dict[str, str]:
        return {
            "open": self.open.url,
            "refusing": self.refusing.url,
            "anonymous": self.anonymous.url,
            "basic": self.basic.url,
            "closed": f"http://127.0.0.1:{self.closed}",
        }


@pytest.fixture(scope="module")
def mirrors(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mirrors]:
    require_program("docker-registry", "docker-registry")
    require_program("htpasswd", "apache2-utils")
    tmp = tmp_path_factory.mktemp("mirrors")
    started: list[RunningRegistry] = []
    try:
        for kwargs in (
            {"auth": "none"},
            {"auth": "token", "users": {"ci": "ci-Pa55"}},
            {"auth": "token", "grants": {"": Grant("", {"*": frozenset({"pull"})})}},
            {"auth": "htpasswd", "users": {"ci": "ci-Pa55"}},
        ):
            started.append(start_registry(tmp, **kwargs))
        yield Mirrors(*started, closed=str(free_port()))
    finally:
        for reg in started:
            reg.stop()


def check(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    docker = tmp_path / "docker"
    docker.mkdir(exist_ok=True)
    return subprocess.run(
        [sys.executable, "-m", "regauthd", "check", "--docker-config", str(docker),
         "--root-docker-config", str(tmp_path / "no-root.json"), *args],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def by_mirror(stdout: str) -> dict[str, list[dict[str, str]]]:
    out: dict[str, list[dict[str, str]]] = {}
    for record in map(json.loads, stdout.splitlines()):
        for f in record.get("findings", []):
            out.setdefault(f["key"], []).append(f)
    return out


def test_dockerd_mirrors_that_refuse_anonymous_pulls_are_named(
    mirrors: Mirrors, tmp_path: Path
) -> None:
    urls = mirrors.urls()
    daemon_json = tmp_path / "daemon.json"
    insecure = [u.removeprefix("http://") for u in urls.values()]
    daemon_json.write_text(
        json.dumps({"registry-mirrors": list(urls.values()), "insecure-registries": insecure})
    )

    proc = check(tmp_path, "--daemon-json", str(daemon_json), "--json",
                 "--containerd-certs", str(tmp_path))  # fmt: skip

    assert proc.returncode == 0, proc.stdout + proc.stderr  # warnings: pulls still work via Hub
    found = by_mirror(proc.stdout)
    assert urls["open"] not in found and urls["anonymous"] not in found
    (refusing,) = found[urls["refusing"]]
    assert refusing["code"] == "mirror_refuses_anonymous"
    assert "refuses an anonymous pull of library/alpine" in refusing["message"]
    assert "moby#30880" in refusing["message"]
    (basic,) = found[urls["basic"]]
    assert basic["code"] == "mirror_refuses_anonymous"
    assert "demands HTTP Basic credentials" in basic["message"]
    (closed,) = found[urls["closed"]]
    assert closed["code"] == "mirror_unreachable"
    assert all(f["path"] == str(daemon_json) for fs in found.values() for f in fs)


def test_containerd_hosts_toml_mirrors_are_tried_too(mirrors: Mirrors, tmp_path: Path) -> None:
    certs = tmp_path / "certs.d"
    (certs / "docker.io").mkdir(parents=True)
    (certs / "docker.io" / "hosts.toml").write_text(
        'server = "https://registry-1.docker.io"\n'
        f'[host."{mirrors.refusing.url}"]\n  capabilities = ["pull", "resolve"]\n'
        f'[host."{mirrors.open.url}"]\n  capabilities = ["pull", "resolve"]\n'
        f'[host."{mirrors.basic.url}"]\n  capabilities = ["push"]\n'  # not a pull mirror
    )
    proc = check(tmp_path, "--containerd-certs", str(certs), "--json",
                 "--daemon-json", str(tmp_path / "none.json"))  # fmt: skip
    assert proc.returncode == 2 and "--daemon-json" in proc.stderr  # a named file must exist
    (tmp_path / "empty.json").write_text("{}")

    proc = check(tmp_path, "--containerd-certs", str(certs), "--json",
                 "--daemon-json", str(tmp_path / "empty.json"))  # fmt: skip

    found = by_mirror(proc.stdout)
    assert list(found) == [mirrors.refusing.url]
    assert (
        "containerd goes on to the next host, and at last to docker.io"
        in (found[mirrors.refusing.url][0]["message"])
    )


def test_a_daemon_json_dockerd_cannot_read_is_a_problem(tmp_path: Path) -> None:
    daemon_json = tmp_path / "daemon.json"
    daemon_json.write_text('{"registry-mirrors": ["https://m.example"],}')
    proc = check(tmp_path, "--daemon-json", str(daemon_json), "--containerd-certs", str(tmp_path))
    assert proc.returncode == 1
    assert "invalid JSON" in proc.stdout and "dockerd refuses to start" in proc.stdout


def test_doctor_reports_each_mirror(mirrors: Mirrors, tmp_path: Path) -> None:
    daemon_json = tmp_path / "daemon.json"
    daemon_json.write_text(json.dumps({"registry-mirrors": [mirrors.open.url, mirrors.basic.url]}))
    docker = tmp_path / "docker"
    docker.mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "regauthd", "doctor", "--docker-config", str(docker), "--json",
         "--root-docker-config", str(tmp_path / "no-root.json"), "--daemon-json",
         str(daemon_json), "--containerd-certs", str(tmp_path), "--registry", mirrors.open.host,
         "--insecure-registry", mirrors.open.host, "--timeout", "5"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    verdicts = [v for v in map(json.loads, proc.stdout.splitlines())]
    mirror_lines = [v for v in verdicts if v["check"] == "registry_mirrors"]
    assert [v["status"] for v in mirror_lines] == ["ok", "warning"], proc.stdout
    assert "demands HTTP Basic credentials" in mirror_lines[1]["message"]
