"""Shared fixtures and the skip policy.

On a person's laptop a test that needs root or a Debian package skips with the reason. Under CI
(``CI=true``) nothing may skip: a missing component is a failure there.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.rigs import host

# The shared rigs, as plugins: their fixtures (registry_factory, pass_helper, hub_fake,
# start_daemon) are available to every test without importing them.
pytest_plugins = [
    "tests.rigs.registry",
    "tests.rigs.passhelper",
    "tests.rigs.hubfake",
    "tests.rigs.daemon",
    "tests.rigs.users",
    "tests.rigs.tmpfs",
]

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def unavailable(reason: str) -> None:
    """Skip locally, fail under CI: the component should have been installed by tests/run."""
    if IN_CI:
        pytest.fail(f"required component missing under CI: {reason}", pytrace=False)
    pytest.skip(reason)


def require_program(name: str, package: str | None = None) -> str:
    """Path of an executable, or skip/fail saying which Debian package brings it."""
    found = shutil.which(name)
    if found is None:
        for candidate in (f"/usr/sbin/{name}", f"/lib/systemd/{name}", f"/usr/lib/systemd/{name}"):
            if os.access(candidate, os.X_OK):
                return candidate
        unavailable(f"{name} not found (Debian package: {package or name})")
        raise AssertionError("unreachable")
    return found


def require_tool(name: str) -> str:
    """Path of a test-only program in the private tools folder (:mod:`tests.rigs.tools`),
    unpacked on first use; skip/fail when it cannot be. The host's own copy is never used."""
    from tests.rigs.tools import ToolsUnavailable, tool_path, unpack

    found = tool_path(name)
    if found is None:
        try:
            unpack()
        except ToolsUnavailable as exc:
            unavailable(str(exc))
        found = tool_path(name)
    if found is None:
        unavailable(f"{name} is not among the unpacked test tools")
        raise AssertionError("unreachable")
    return found


def require_root(why: str) -> None:
    if os.geteuid() != 0:
        unavailable(f"needs root: {why}")


def require_journal_backend(backend: str) -> str:
    """``backend`` (``systemd`` or ``journalctl``) reading journal files that
    systemd-journal-remote writes, or skip/fail saying what is missing."""
    require_program("systemd-journal-remote", "systemd-journal-remote")
    if backend == "systemd":
        try:
            import systemd.journal  # noqa: F401 - only to know it is there
        except ImportError:
            unavailable("systemd-python not installed (pip install '.[journald]')")
    else:
        require_program("journalctl", "systemd")
    return backend


@pytest.fixture
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """HOME, XDG dirs and DOCKER_CONFIG inside the test's temp dir; returns the new HOME."""
    home = tmp_path / "home"
    (home / ".docker").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("DOCKER_CONFIG", str(home / ".docker"))
    monkeypatch.setenv("XDG_STATE_HOME", str(home / ".local/state"))
    # Root's default state directory is /var/lib/regauthd; systemd's variable moves it here.
    monkeypatch.setenv("STATE_DIRECTORY", str(home / ".local/state/regauthd"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    (tmp_path / "run").mkdir(mode=0o700)
    monkeypatch.delenv("DOCKER_AUTH_CONFIG", raising=False)
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    return home


HOST_STATE_DIRS = (Path("/var/lib/regauthd"), Path("/etc/regauthd"))


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.stash[_host_state_key] = {p for p in HOST_STATE_DIRS if p.exists()}
    session.config.stash[_docker_login_key] = host.docker_login_setup()
    # Orphans of the processes the tests start (a daemonised gpg-agent, podman's pause process)
    # become this process's children instead of init's, so the check below can find them.
    host.become_subreaper()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The suite must leave the host as it found it: no state or settings of the host's own, no
    process left running, the host's ``docker login`` unchanged."""
    problems = []
    before = session.config.stash.get(_host_state_key, set())
    created = [str(p) for p in HOST_STATE_DIRS if p.exists() and p not in before]
    if created:
        problems.append(f"tests created host directories they must not touch: {created}")
    from tests.rigs.users import leftover_users

    users = leftover_users()
    if users:
        problems.append(f"tests left users in the password database: {users}")
    leftovers = host.stop_leftover_processes()
    if leftovers:
        listing = "\n  ".join(f"{pid}: {cmdline}" for pid, cmdline in leftovers)
        problems.append(f"tests left processes running (now killed):\n  {listing}")
    login_before = session.config.stash.get(_docker_login_key, None)
    login_after = host.docker_login_setup()
    if login_before is not None and login_after != login_before:
        problems.append(
            f"the host's `docker login` changed: before {login_before}, after {login_after}"
        )
    if problems:
        print("\n" + "\n".join(problems))
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


_host_state_key = pytest.StashKey[set[Path]]()
_docker_login_key = pytest.StashKey[host.DockerLoginSetup]()
