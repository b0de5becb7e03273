"""Which credential helper runs, as whom, and for how long (regauthd.dockerconfig.credhelper).

The Docker CLI is the oracle for what a helper name means; unprivileged users are real
(:mod:`tests.rigs.users`); helpers are small scripts in private root-owned directories.
"""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from regauthd.dockerconfig.credhelper import HelperPolicy, HelperRunner
from regauthd.dockerconfig.helperbudget import HelperBudget
from regauthd.dockerconfig.helperprogram import HelperRunError, helper_name_problem
from regauthd.dockerconfig.stores import CredentialHelperError, HelperStore
from regauthd.probe.targets import config_targets
from regauthd.settings import ProbeSettings
from tests.conftest import require_program, require_root, require_tool
from tests.rigs.configs import auth
from tests.rigs.tools import TOOLS_BIN
from tests.rigs.users import UserFactory, reachable_tmpdir

SECRET = "identity-test-secret-4Rt"


def _script(directory: Path, name: str, body: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"docker-credential-{name}"
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A root-owned 0755 directory other users can reach (pytest keeps /tmp/pytest-of-root
    0700, and every pytest session run as root sets it again)."""
    with reachable_tmpdir("rgd-helpers-") as directory:
        yield directory


def _reachable(directory: Path) -> Path:
    directory.mkdir(mode=0o755)
    directory.chmod(0o755)
    return directory


# -- names ---------------------------------------------------------------------------------------


def test_docker_cli_runs_a_helper_name_with_a_slash_as_a_path_and_regauthd_refuses_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Go's exec.Command takes "docker-credential-x/evil" as a path relative to the working
    directory, not a program on PATH: the real CLI runs it (``docker logout`` erases through
    the store). regauthd refuses the name and runs nothing."""
    docker = require_program("docker", "docker.io")
    work = tmp_path / "work"
    ran = tmp_path / "ran"
    (work / "docker-credential-x").mkdir(parents=True)
    evil = work / "docker-credential-x" / "evil"
    evil.write_text(f'#!/bin/sh\necho "$1" >> {ran}\n')
    evil.chmod(0o755)
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    (cfg / "config.json").write_text(
        json.dumps({"credsStore": "x/evil", "auths": {"127.0.0.1:1": {}}})
    )
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path), "DOCKER_CONFIG": str(cfg)}
    proc = subprocess.run(
        [docker, "logout", "127.0.0.1:1"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "erase" in ran.read_text()  # the CLI ran ./docker-credential-x/evil
    ran.unlink()

    monkeypatch.chdir(work)
    store = HelperStore("x/evil", env={"PATH": str(work)})
    with pytest.raises(CredentialHelperError) as caught:
        store.erase("127.0.0.1:1")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("credential helper name 'x/evil' refused")
    assert not ran.exists()


@pytest.mark.parametrize(
    "name", ["../x", "/bin/sh", "x/evil", "..", ".", "a b", "pass\x00", "x;id", "", "ünï"]
)
def test_names_that_are_not_plain_helper_names_are_refused(name: str) -> None:
    problem = helper_name_problem(name)
    assert problem is not None and "refused" in problem and "\n" not in problem
    assert "\x00" not in problem


@pytest.mark.parametrize("name", ["pass", "ecr-login", "desktop.exe", "gcloud", "osxkeychain"])
def test_real_helper_names_are_accepted(name: str) -> None:
    assert helper_name_problem(name) is None


# -- as root: only root's programs ------------------------------------------------------------


def test_as_root_a_helper_another_user_can_change_is_refused(
    tmp_path: Path, test_users: UserFactory, shared_dir: Path
) -> None:
    require_root("the root-only rule applies to root")
    alice = test_users.create()
    ran = tmp_path / "ran"
    body = f'touch {ran}\necho \'{{"Username":"u","Secret":"s"}}\'\n'
    owned = _script(_reachable(shared_dir / "owned"), "mine", body)
    os.chown(owned, alice.uid, alice.gid)
    open_dir = _reachable(shared_dir / "open")
    open_dir.chmod(0o777)  # anyone may swap the program in it
    _script(open_dir, "swap", body)
    for name, path in (("mine", owned.parent), ("swap", open_dir)):
        runner = HelperRunner(path=str(path))
        with pytest.raises(HelperRunError, match="can be changed by another user than root"):
            runner.run(name, "get", "ghcr.io")
    assert not ran.exists()


def test_a_users_helper_runs_as_that_user_with_her_environment_only(
    tmp_path: Path, test_users: UserFactory, monkeypatch: pytest.MonkeyPatch, shared_dir: Path
) -> None:
    require_root("switching to another user needs root")
    alice = test_users.create()
    config = alice.write(".docker/config.json", b"{}")
    helpers = _reachable(shared_dir / "helpers")
    _script(helpers, "whoami", 'echo "$(id -u) $(id -g) $(id -G) $(pwd)"\nenv | sort\n')
    monkeypatch.setenv("GNUPGHOME", "/root/.gnupg")
    monkeypatch.setenv("PASSWORD_STORE_DIR", "/root/.password-store")
    runner = HelperPolicy(path=f"{helpers}:/usr/bin:/bin").for_config(config)
    user = runner.resolve()
    assert user is not None and user.name == alice.name
    code, out, _ = runner.run("whoami", "get", "ghcr.io")
    assert code == 0
    first, *env_lines = out.splitlines()
    assert first == f"{alice.uid} {alice.gid} {alice.gid} {alice.home}"
    env = dict(line.split("=", 1) for line in env_lines if "=" in line)
    assert env["HOME"] == str(alice.home)
    assert env["USER"] == env["LOGNAME"] == alice.name
    assert env["PATH"] == f"{helpers}:/usr/bin:/bin"
    assert "GNUPGHOME" not in env and "PASSWORD_STORE_DIR" not in env
    assert set(env) <= {"HOME", "USER", "LOGNAME", "PATH", "LANG", "XDG_RUNTIME_DIR", "PWD",
                        "SHLVL", "_", "OLDPWD"}  # fmt: skip
    # Root's own config: root's identity, the same fixed PATH.
    root_runner = HelperPolicy(path=str(helpers)).for_config(tmp_path / "config.json")
    assert root_runner.resolve() is None and root_runner.path == str(helpers)


# -- time ----------------------------------------------------------------------------------------


def test_the_budget_tells_once_and_frees_up_after_the_window() -> None:
    now = [0.0]
    told: list[tuple[str, float]] = []
    budget = HelperBudget(
        3.0, window=60.0, clock=lambda: now[0], on_exhausted=lambda u, s: told.append((u, s))
    )
    budget.spend("alice", 2.0)
    assert budget.remaining("alice") == 1.0 and told == []
    budget.spend("alice", 1.5)
    budget.spend("alice", 1.0)
    assert budget.remaining("alice") < 0
    assert told == [("alice", 3.5)]  # once, however much more is spent
    assert budget.remaining("bob") == 3.0  # another user is not charged
    now[0] = 61.0
    assert budget.remaining("alice") == 3.0
    budget.spend("alice", 5.0)
    assert [u for u, _ in told] == ["alice", "alice"]  # a new episode tells again


def test_an_exhausted_budget_runs_nothing_and_says_why(tmp_path: Path) -> None:
    ran = tmp_path / "ran"
    helpers = tmp_path / "helpers"
    _script(helpers, "count", f"touch {ran}\n")
    budget = HelperBudget(1.0)
    budget.spend(pwd.getpwuid(os.geteuid()).pw_name, 2.0)  # this process's user
    store = HelperStore("count", runner=HelperRunner(env={"PATH": str(helpers)}, budget=budget))
    with pytest.raises(CredentialHelperError, match=r"not run: credential helpers of user .* took"):
        store.get("ghcr.io")
    assert not ran.exists()


# -- probes: one bad config does not spoil the others ------------------------------------------


def test_a_bad_helper_name_gives_that_configs_registries_a_problem_and_others_are_read(
    tmp_path: Path,
) -> None:
    good, bad = tmp_path / "good" / "config.json", tmp_path / "bad" / "config.json"
    good.parent.mkdir()
    bad.parent.mkdir()
    good.write_text(json.dumps({"auths": {"ghcr.io": {"auth": auth("ci", SECRET)}}}))
    bad.write_text(json.dumps({"auths": {"quay.io": {}}, "credsStore": "../../bin/sh"}))
    targets, read = config_targets(
        [str(bad), str(good)], ProbeSettings(), runner_for=HelperPolicy().for_config
    )
    assert read == {str(good), str(bad)}
    by_config = {k.config: t for k, t in targets.items()}
    assert by_config[str(good)].credential is not None
    assert by_config[str(good)].credential.secret == SECRET
    problem = by_config[str(bad)].credential_error
    assert problem is not None and "'../../bin/sh' refused" in problem


def test_root_running_fix_on_a_users_config_rekeys_inside_her_own_pass_store(
    tmp_path: Path, test_users: UserFactory
) -> None:
    """``sudo regauthd fix --docker-config ~alice/.docker``: her helper runs as her, so her
    own store is the one re-keyed; root's environment (its GNUPGHOME) plays no part."""
    require_root("runs fix as root over another user's config")
    require_program("gpg", "gnupg")
    require_tool("pass")
    require_tool("docker-credential-pass")
    alice = test_users.create()
    alice.init_pass()
    legacy = "https://ghcr.io/v1/"
    alice.pass_store(legacy, "ci", SECRET)
    cfg = alice.write(
        ".docker/config.json", json.dumps({"auths": {legacy: {}}, "credsStore": "pass"}).encode()
    )
    env = {
        "PATH": f"{TOOLS_BIN}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "GNUPGHOME": str(tmp_path / "root-gnupg"),
        "LANG": "C.UTF-8",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "regauthd", "fix", "--docker-config", str(cfg.parent),
         "--state-dir", str(tmp_path / "state")],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert list(json.loads(cfg.read_bytes())["auths"]) == ["ghcr.io"]
    assert alice.pass_get("ghcr.io") == ("ci", SECRET)
    assert not (tmp_path / "root-gnupg").exists()
    assert not (tmp_path / ".password-store").exists()
    assert SECRET not in proc.stdout + proc.stderr
