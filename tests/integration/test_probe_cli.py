"""``regauthd probe`` end to end: real registry, real ``docker login``, real ``pass`` helper.

Every run's stdout and stderr are checked for the secrets involved.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from regauthd.commands.probe import UsageError, split_endpoints, split_repositories
from tests.conftest import require_program, require_tool
from tests.rigs.configs import auth
from tests.rigs.hubfake import HubFake
from tests.rigs.registry import RunningRegistry, start_registry_or_skip
from tests.rigs.tokenissuer import Grant

pytestmark = pytest.mark.integration

ALICE = ("alice", "alice-cli-pw-9Rt")
BOB = ("bob", "bob-cli-pw-2Wq")
CAROL = ("carol", "carol-cli-pw-4Hn")
REPO = "team/app"


ALL_SECRETS = [s for _, s in (ALICE, BOB, CAROL)] + [auth(*p) for p in (ALICE, BOB, CAROL)]


@pytest.fixture(scope="module")
def token_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    grants = {ALICE[0]: Grant.push(ALICE[1]), BOB[0]: Grant.pull_only(BOB[1])}
    directory = tmp_path_factory.mktemp("cli-token")
    with start_registry_or_skip(directory, auth="token", grants=grants) as reg:
        yield reg


@pytest.fixture(scope="module")
def basic_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    directory = tmp_path_factory.mktemp("cli-basic")
    with start_registry_or_skip(directory, users=dict([CAROL])) as reg:
        yield reg


class Run:
    def __init__(self, proc: subprocess.CompletedProcess[str]) -> None:
        self.code = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr

    def json_lines(self) -> list[dict[str, Any]]:
        lines = self.stdout.splitlines()
        objects = [json.loads(line) for line in lines]
        assert all(isinstance(o, dict) for o in objects)
        return objects

    def assert_no_secret(self, extra: Sequence[str] = ()) -> None:
        for secret in [*ALL_SECRETS, *extra]:
            assert secret not in self.stdout
            assert secret not in self.stderr


def regauthd_probe(
    cfg_dir: Path, *args: str, env: dict[str, str] | None = None, home: Path | None = None
) -> Run:
    base = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home or cfg_dir.parent),
        "LANG": "C.UTF-8",
    }
    base.update(env or {})
    proc = subprocess.run(
        [sys.executable, "-m", "regauthd", "probe", "--docker-config", str(cfg_dir), *args],
        capture_output=True,
        text=True,
        env=base,
        timeout=120,
        check=False,
    )
    return Run(proc)


def write_config(directory: Path, config: dict[str, Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config, indent="\t"))
    return directory


def test_all_ok_exits_zero_with_a_table(token_registry: RunningRegistry, tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "d", {"auths": {token_registry.host: {"auth": auth(*ALICE)}}})
    run = regauthd_probe(cfg, "--repository", REPO)
    assert run.code == 0, run.stderr
    header, row = run.stdout.splitlines()
    assert header.split()[:4] == ["REGISTRY", "STATUS", "PUSH", "PULLS"]
    assert row.split()[:3] == [token_registry.host, "ok", "yes"]
    run.assert_no_secret()


def test_json_is_one_object_per_registry_and_failures_exit_one(
    token_registry: RunningRegistry, basic_registry: RunningRegistry, tmp_path: Path
) -> None:
    wrong = ("carol", "carol-wrong-pw-0")
    cfg = write_config(
        tmp_path / "d",
        {
            "auths": {
                token_registry.host: {"auth": auth(*BOB)},
                basic_registry.host: {"auth": auth(*wrong)},
            }
        },
    )
    run = regauthd_probe(
        cfg, "--json", "--repository", REPO, "--registry", token_registry.host,
        "--registry", basic_registry.host, "--registry", "quay.io",
    )  # fmt: skip
    assert run.code == 1
    results = {r["registry"]: r for r in run.json_lines()}
    # Completion order (each line printed as soon as it is known), so compare as a set.
    assert set(results) == {token_registry.host, basic_registry.host, "quay.io"}
    assert results[token_registry.host]["status"] == "push_denied"
    assert results[token_registry.host]["push_allowed"] is False
    assert results[basic_registry.host]["status"] == "bad_credentials"
    assert results["quay.io"]["status"] == "no_credentials"
    assert set(results["quay.io"]) >= {
        "registry", "status", "push_allowed", "rate_limit_limit", "rate_limit_remaining",
        "rate_limit_window", "latency_ms", "detail",
    }  # fmt: skip
    run.assert_no_secret([wrong[1], auth(*wrong)])


def test_per_registry_repository_and_hub_endpoint(
    token_registry: RunningRegistry, tmp_path: Path
) -> None:
    hub = HubFake(users={"hubuser": "hub-cli-pw-1"}, remaining=3)
    try:
        cfg = write_config(
            tmp_path / "d",
            {
                "auths": {
                    "https://index.docker.io/v1/": {"auth": auth("hubuser", "hub-cli-pw-1")},
                    token_registry.host: {"auth": auth(*BOB)},
                }
            },
        )
        run = regauthd_probe(
            cfg, "--json", "--endpoint", f"docker.io={hub.url}",
            "--repository", f"{token_registry.host}/{REPO}", "--repository", "hubuser/app",
        )  # fmt: skip
    finally:
        hub.stop()
    results = {r["registry"]: r for r in run.json_lines()}
    assert results["docker.io"]["status"] == "ok"
    assert results["docker.io"]["repository"] == "hubuser/app"
    assert results["docker.io"]["rate_limit_remaining"] == 3
    assert results[token_registry.host]["repository"] == REPO
    assert results[token_registry.host]["status"] == "push_denied"
    assert run.code == 1
    run.assert_no_secret(["hub-cli-pw-1", auth("hubuser", "hub-cli-pw-1")])


def test_credentials_in_the_pass_helper(token_registry: RunningRegistry, tmp_path: Path) -> None:
    for program, package in [("docker", "docker.io"), ("gpg", "gnupg"), ("tree", "tree")]:
        require_program(program, package)
    require_tool("pass")
    require_tool("docker-credential-pass")
    from tests.rigs.clients import Sandbox, docker_login
    from tests.rigs.passhelper import start_pass

    helper = start_pass(tmp_path / "pass")
    try:
        cfg = write_config(tmp_path / "d", {"credsStore": "pass"})
        box = Sandbox.create(tmp_path / "box", helpers=("pass",), env=helper.gpg_env)
        docker_login(cfg, token_registry.host, *ALICE, sandbox=box)
        config = json.loads((cfg / "config.json").read_text())
        assert config["auths"][token_registry.host] == {}  # the secret is in pass
        stored = helper.get(token_registry.host)
        assert stored is not None
        run = regauthd_probe(cfg, "--json", "--repository", REPO, env=helper.env)
        run.assert_no_secret([stored[1]])
    finally:
        helper.stop()
    (result,) = run.json_lines()
    assert (result["status"], result["push_allowed"]) == ("ok", True)
    assert run.code == 0


def test_a_missing_helper_is_an_error_result(tmp_path: Path) -> None:
    cfg = write_config(
        tmp_path / "d",
        {"auths": {"ghcr.io": {}}, "credHelpers": {"ghcr.io": "regauthd-test-nonexistent"}},
    )
    run = regauthd_probe(cfg, "--json")
    (result,) = run.json_lines()
    assert result["status"] == "error"
    assert "docker-credential-regauthd-test-nonexistent" in result["detail"]
    assert run.code == 1


def test_nothing_to_probe_exits_one(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "d", {"auths": {}})
    run = regauthd_probe(cfg)
    assert run.code == 1
    assert run.stdout == ""
    assert "no registry has credentials" in run.stderr


def test_corrupt_config_is_a_usage_error_without_secrets(tmp_path: Path) -> None:
    cfg = tmp_path / "d"
    cfg.mkdir()
    (cfg / "config.json").write_text('{"auths": {"r.io": {"auth": "' + auth(*ALICE) + '"}},,}')
    run = regauthd_probe(cfg)
    assert run.code == 2
    assert "invalid JSON" in run.stderr
    run.assert_no_secret()


@pytest.mark.parametrize(
    "args",
    [
        ["--timeout", "0"],
        ["--concurrency", "0"],
        ["--endpoint", "docker.io"],
        ["--endpoint", "docker.io=ftp://x"],
        ["--repository", "a/b", "--repository", "c/d"],
        ["--ca-file", "/nonexistent/ca.pem"],
    ],
)
def test_usage_errors_exit_two(tmp_path: Path, args: list[str]) -> None:
    cfg = write_config(tmp_path / "d", {"auths": {"r.io": {"auth": auth(*ALICE)}}})
    run = regauthd_probe(cfg, *args)
    assert run.code == 2
    assert run.stderr.startswith("regauthd probe: ")


def test_split_repositories() -> None:
    assert split_repositories(["team/app"]) == ({}, "team/app")
    assert split_repositories(["ghcr.io/acme/api", "docker.io/me/app", "x/y"]) == (
        {"ghcr.io": "acme/api", "docker.io": "me/app"},
        "x/y",
    )
    assert split_repositories(["localhost:5000/a", "127.0.0.1:5000/b/c"]) == (
        {"localhost:5000": "a", "127.0.0.1:5000": "b/c"},
        None,
    )
    with pytest.raises(UsageError):
        split_repositories(["ghcr.io/"])
    with pytest.raises(UsageError):
        split_repositories([""])


def test_split_endpoints() -> None:
    assert split_endpoints(["docker.io=http://127.0.0.1:5/"]) == {"docker.io": "http://127.0.0.1:5"}
    assert split_endpoints(["index.docker.io=https://m"]) == {"docker.io": "https://m"}
    with pytest.raises(UsageError):
        split_endpoints(["=http://x"])


def test_registry_may_be_named_positionally(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "d", {"auths": {"r.example": {"auth": auth(*ALICE)}}})
    run = regauthd_probe(cfg, "--json", "https://quay.io/")
    (result,) = run.json_lines()
    assert (result["registry"], result["status"]) == ("quay.io", "no_credentials")
    assert "docker login quay.io" in result["detail"]
    assert run.code == 1


@pytest.mark.parametrize("output", ["--json", "table"])
def test_each_line_is_printed_as_soon_as_its_registry_answers(output: str, tmp_path: Path) -> None:
    """A hung registry does not hold back the others' lines (completion order)."""
    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(8)  # connections complete in the backlog; nothing ever answers
    host = f"127.0.0.1:{hung.getsockname()[1]}"
    cfg = write_config(tmp_path / "d", {"auths": {host: {"auth": auth(*ALICE)}}})
    argv = [
        sys.executable, "-m", "regauthd", "probe", "--docker-config", str(cfg),
        "--registry", host, "--registry", "quay.io", "--insecure-registry", host,
        "--endpoint", f"{host}=http://{host}", "--timeout", "3",
        *(["--json"] if output == "--json" else []),
    ]  # fmt: skip
    started = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        # readline, not select: a line already in the pipe's buffer would wait for the next.
        lines = [proc.stdout.readline() for _ in range(1 if output == "--json" else 2)]
        first_after = time.monotonic() - started
        rest, err = proc.communicate(timeout=60)
    finally:
        hung.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    total = time.monotonic() - started
    fast = lines[-1]
    assert "quay.io" in fast and "no_credentials" in fast
    assert first_after < total - 2, (first_after, total)
    assert host in rest.splitlines()[-1]
    assert proc.returncode == 1, err
