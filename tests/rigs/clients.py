"""Run the real Docker CLI, skopeo and podman against a config directory, fully isolated.

Every call runs the program with an environment built from scratch: ``DOCKER_CONFIG`` is the
directory under test, ``HOME``, ``XDG_RUNTIME_DIR`` and ``XDG_CONFIG_HOME`` live in a sandbox
directory, and ``PATH`` is a symlink farm of the machine's programs minus every
``docker-credential-*`` and ``pass``. Without that, docker picks a credential store by itself when
``auths`` is empty, and skopeo/podman read ``$XDG_RUNTIME_DIR/containers/auth.json`` first.
A test that wants a helper asks for it by name (``helpers=("pass",)``) or puts its own helper
scripts in ``helper_dirs``.

Usage::

    from tests.rigs.clients import Sandbox, docker_login, docker_hub_banner_user

    sandbox = Sandbox.create(tmp_path / "clients")  # optional: else one per call
    docker_login(cfg_dir, reg.host, "alice", "s3cret", sandbox=sandbox)
    assert docker_hub_banner_user(cfg_dir, sandbox=sandbox) == "alice"

Oracles (each needs no engine and no network):

- :func:`docker_hub_banner_user` / :func:`docker_login_banner_user`: the user name the CLI finds
  for Docker Hub / a host (``docker login </dev/null`` prints it, then fails). They run on a
  scratch copy of the config, because that call may rewrite config.json.
- :func:`docker_manifest_inspect_ok`: whether the CLI resolves working credentials for a
  registry (True), resolves none or wrong ones (False); anything else raises.
- :func:`skopeo_get_login` / :func:`podman_get_login`: the user name containers/image resolves
  (podman's rootless pause process, when not root, is stopped after each call).

Secrets go to the programs on stdin only, never on a command line, and no helper here puts a
password into an exception message.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import regauthd
from tests.rigs.tools import is_tool, tool_path

CLIENT_TIMEOUT_S = 60.0
_SYSTEM_BIN_DIRS = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
_BANNER = re.compile(r"Authenticating with existing credentials\.\.\. \[Username: ([^\]]*)\]")
# What `docker manifest inspect` says when it found no credential, or the registry refused the
# one it found (distribution's client reports a 401 on the manifest as "no such manifest").
_MANIFEST_AUTH_FAILURES = ("no basic auth credentials", "unauthorized", "no such manifest")
_NOT_LOGGED_IN = "not logged into"


class ClientError(RuntimeError):
    """A client program failed in a way its oracle does not expect (the message has its output)."""


@dataclass(frozen=True, slots=True)
class ClientResult:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def _is_hidden_program(name: str) -> bool:
    return name.startswith("docker-credential-") or name == "pass"


_FARM: list[Path] = []


def _clean_bin_farm() -> Path:
    """A directory of symlinks to every system program except credential helpers and ``pass``.

    Built once per test process (about a thousand symlinks) and removed at exit.
    """
    if _FARM:
        return _FARM[0]
    farm = Path(tempfile.mkdtemp(prefix="regauthd-cleanpath-"))
    atexit.register(shutil.rmtree, farm, True)
    for directory in _SYSTEM_BIN_DIRS:
        try:
            entries = list(os.scandir(directory))
        except OSError:
            continue
        for entry in entries:
            target = farm / entry.name
            if _is_hidden_program(entry.name) or target.exists() or target.is_symlink():
                continue
            if entry.is_file() and os.access(entry.path, os.X_OK):
                target.symlink_to(entry.path)
    _FARM.append(farm)
    return farm


@dataclass(frozen=True, slots=True)
class Sandbox:
    """Private HOME, XDG_RUNTIME_DIR, XDG_CONFIG_HOME and PATH for the client programs.

    ``helpers`` are names of ``docker-credential-<name>`` programs the clients may see (``"pass"``
    also brings the ``pass`` program it calls; both from the private tools folder,
    :mod:`tests.rigs.tools`, never the host's copy). ``helper_dirs``
    are extra directories put first on PATH (a test's own helper scripts). ``env`` is added to
    every client's environment (e.g. ``GNUPGHOME`` and ``PASSWORD_STORE_DIR`` for pass).
    """

    root: Path
    helpers: tuple[str, ...] = ()
    helper_dirs: tuple[Path, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def create(
        cls,
        root: Path,
        *,
        helpers: Sequence[str] = (),
        helper_dirs: Sequence[Path] = (),
        env: Mapping[str, str] | None = None,
    ) -> Sandbox:
        sandbox = cls(root, tuple(helpers), tuple(helper_dirs), dict(env or {}))
        for sub in ("home", "config"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        sandbox.containers_conf.parent.mkdir(exist_ok=True)
        # podman's locks as files in its private --tmpdir (removed after each call), not in
        # /dev/shm/libpod_lock and /dev/shm/libpod_rootless_lock_UID, which outlive the suite.
        sandbox.containers_conf.write_text('[engine]\nlock_type = "file"\n')
        sandbox.runtime_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        helper_bin = root / "helper-bin"
        helper_bin.mkdir(exist_ok=True)
        for name in sandbox.helpers:
            programs = [f"docker-credential-{name}"] + (["pass"] if name == "pass" else [])
            for program in programs:
                # Test-only helpers come from the private tools folder, never from the host.
                found = tool_path(program) if is_tool(program) else _find_system_program(program)
                if found is None:
                    raise ClientError(f"{program} is not installed: cannot offer it to clients")
                link = helper_bin / program
                if not link.is_symlink():
                    link.symlink_to(found)
        return sandbox

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def runtime_dir(self) -> Path:
        return self.root / "run"

    @property
    def containers_conf(self) -> Path:
        """The only containers.conf podman reads (``CONTAINERS_CONF``), rootful or not."""
        return self.root / "config" / "containers" / "containers.conf"

    @property
    def path(self) -> str:
        dirs = [*self.helper_dirs, self.root / "helper-bin", _clean_bin_farm()]
        return os.pathsep.join(str(d) for d in dirs)

    def environ(self, cfg_dir: Path) -> dict[str, str]:
        """The whole environment a client runs with (nothing inherited from the test process)."""
        env = {
            "PATH": self.path,
            "HOME": str(self.home),
            "DOCKER_CONFIG": str(cfg_dir),
            "XDG_RUNTIME_DIR": str(self.runtime_dir),
            "XDG_CONFIG_HOME": str(self.root / "config"),
            "CONTAINERS_CONF": str(self.containers_conf),
            "LANG": "C.UTF-8",
            # Docker CLI: no "What's next" hints, no update checks.
            "DOCKER_CLI_HINTS": "false",
        }
        env.update(self.env)
        return env

    @staticmethod
    def podman_flags(state: Path) -> list[str]:
        """Rootful podman with storage, runroot, tmp and network config all in ``state``."""
        return [
            "--root",
            str(state / "root"),
            "--runroot",
            str(state / "run"),
            "--tmpdir",
            str(state / "tmp"),
            "--storage-driver",
            "vfs",
            "--network-config-dir",
            str(state / "net"),
            "--events-backend",
            "none",
        ]


def _find_system_program(name: str) -> str | None:
    for directory in _SYSTEM_BIN_DIRS:
        candidate = Path(directory) / name
        if os.access(candidate, os.X_OK):
            return str(candidate)
    return None


@contextmanager
def _sandbox_or_temporary(sandbox: Sandbox | None) -> Iterator[Sandbox]:
    if sandbox is not None:
        yield sandbox
        return
    with tempfile.TemporaryDirectory(prefix="regauthd-clients-") as tmp:
        yield Sandbox.create(Path(tmp))


def run_client(
    argv: Sequence[str],
    cfg_dir: Path,
    *,
    sandbox: Sandbox | None = None,
    stdin: str = "",
    timeout: float = CLIENT_TIMEOUT_S,
) -> ClientResult:
    """Run a client program (found on the sandbox PATH) with ``DOCKER_CONFIG=cfg_dir``."""
    with _sandbox_or_temporary(sandbox) as box:
        env = box.environ(Path(cfg_dir))
        program = shutil.which(argv[0], path=env["PATH"])
        if program is None:
            raise ClientError(f"{argv[0]} is not on the sandbox PATH")
        proc = subprocess.run(
            [program, *argv[1:]],
            input=stdin,
            capture_output=True,
            text=True,
            env=env,
            cwd=box.root,
            timeout=timeout,
            check=False,
        )
    return ClientResult(proc.returncode, proc.stdout, proc.stderr)


# ---------------------------------------------------------------------------------------------
# Docker CLI


def docker_login(
    cfg_dir: Path,
    registry: str,
    user: str,
    password: str,
    *,
    sandbox: Sandbox | None = None,
) -> ClientResult:
    """``docker login REGISTRY -u USER --password-stdin``; :class:`ClientError` on failure."""
    result = run_client(
        ["docker", "login", registry, "-u", user, "--password-stdin"],
        cfg_dir,
        sandbox=sandbox,
        stdin=password,
    )
    if result.returncode != 0 or "Login Succeeded" not in result.stdout:
        raise ClientError(
            f"docker login {registry} -u {user} failed (exit {result.returncode}): "
            f"{_redact(result.output, password)}"
        )
    return result


def docker_login_banner_user(
    cfg_dir: Path, host: str | None, *, sandbox: Sandbox | None = None
) -> str | None:
    """The user name ``docker login [HOST] </dev/null`` finds, or None when it finds none.

    Runs on a scratch copy of ``cfg_dir/config.json`` (this call may rewrite the file).
    """
    with tempfile.TemporaryDirectory(prefix="regauthd-banner-") as scratch:
        scratch_dir = Path(scratch)
        source = Path(cfg_dir) / "config.json"
        if source.exists():
            # Contents only: a symlinked config.json is read through its link.
            shutil.copyfile(source, scratch_dir / "config.json")
            (scratch_dir / "config.json").chmod(0o600)
        argv = ["docker", "login"] + ([host] if host else [])
        result = run_client(argv, scratch_dir, sandbox=sandbox)
    match = _BANNER.search(result.output)
    if match:
        return match.group(1)
    if "Cannot perform an interactive login" in result.output or "Username" in result.output:
        return None
    raise ClientError(
        f"`docker login {host or ''} </dev/null` gave an unexpected answer "
        f"(exit {result.returncode}): {result.output[-2000:]}"
    )


def docker_hub_banner_user(cfg_dir: Path, *, sandbox: Sandbox | None = None) -> str | None:
    """The Docker Hub user name the CLI finds (``docker login </dev/null``), or None."""
    return docker_login_banner_user(cfg_dir, None, sandbox=sandbox)


def docker_manifest_inspect(
    cfg_dir: Path, ref: str, *, sandbox: Sandbox | None = None
) -> ClientResult:
    """``docker manifest inspect --insecure REF`` as it ran (no interpretation)."""
    return run_client(
        ["docker", "manifest", "inspect", "--insecure", ref], cfg_dir, sandbox=sandbox
    )


def docker_manifest_inspect_ok(cfg_dir: Path, ref: str, *, sandbox: Sandbox | None = None) -> bool:
    """True when the CLI resolved credentials the registry accepts and read REF's manifest.

    False when it resolved no credential, or the registry refused the one it sent. Any other
    failure (registry down, bad reference) raises :class:`ClientError`, so a test built on this
    oracle cannot pass for the wrong reason. REF must exist in the registry.
    """
    result = docker_manifest_inspect(cfg_dir, ref, sandbox=sandbox)
    if result.returncode == 0:
        return True
    if any(marker in result.output for marker in _MANIFEST_AUTH_FAILURES):
        return False
    raise ClientError(
        f"docker manifest inspect {ref} failed for a reason other than credentials "
        f"(exit {result.returncode}): {result.output[-2000:]}"
    )


# ---------------------------------------------------------------------------------------------
# containers/image: skopeo and podman


def _get_login(result: ClientResult, what: str) -> str | None:
    if result.returncode == 0:
        return result.stdout.strip()
    if _NOT_LOGGED_IN in result.output:
        return None
    raise ClientError(f"{what} failed (exit {result.returncode}): {result.output[-2000:]}")


def skopeo_get_login(cfg_dir: Path, registry: str, *, sandbox: Sandbox | None = None) -> str | None:
    """The user name ``skopeo login --get-login REGISTRY`` resolves, or None when not logged in."""
    result = run_client(["skopeo", "login", "--get-login", registry], cfg_dir, sandbox=sandbox)
    return _get_login(result, f"skopeo login --get-login {registry}")


@contextmanager
def podman_command(argv: Sequence[str], box: Sandbox) -> Iterator[list[str]]:
    """``podman <private state flags> ARGV`` for one call; the state is removed after it."""
    # podman refuses a runroot longer than 50 characters (pytest's tmp_path is longer) and
    # records the runroot in the storage's database, so storage and runroot go together into a
    # short private directory per call, removed after it (login needs no image storage).
    # Run as non-root, podman keeps a pause process (catatonit) holding its user namespace, its
    # pid in the call's tmpdir: it would outlive the call and the suite, so it is stopped here.
    with tempfile.TemporaryDirectory(prefix="rgd-podman-", dir="/tmp") as state:
        try:
            yield ["podman", *box.podman_flags(Path(state)), *argv]
        finally:
            stop_podman_pause(Path(state))


def stop_podman_pause(state: Path) -> int | None:
    """Stop the rootless pause process of the podman calls that used ``state``; its pid or None.

    Only the process named in ``state/tmp/pause.pid`` and only while it is still a pause process
    (``catatonit -P`` or podman's own ``podman pause``), so a reused pid is never hit.
    """
    try:
        pid = int((state / "tmp" / "pause.pid").read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return None
    name = Path(cmdline[0].decode(errors="replace")).name
    if not name.startswith(("catatonit", "podman")):
        return None
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        return None
    wait_gone(pid)
    return pid


def wait_gone(pid: int, timeout: float = 5.0) -> bool:
    """Wait until ``pid`` has exited (a zombie counts as exited); False on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return True
        if stat.rsplit(")", 1)[1].split()[0] in {"Z", "X"}:
            return True
        time.sleep(0.01)
    return False


def podman_get_login(cfg_dir: Path, registry: str, *, sandbox: Sandbox | None = None) -> str | None:
    """The user name ``podman login --get-login REGISTRY`` resolves, or None when not logged in."""
    with (
        _sandbox_or_temporary(sandbox) as box,
        podman_command(["login", "--get-login", registry], box) as argv,
    ):
        result = run_client(argv, cfg_dir, sandbox=box)
    return _get_login(result, f"podman login --get-login {registry}")


def podman_login(
    cfg_dir: Path,
    registry: str,
    user: str,
    password: str,
    *,
    sandbox: Sandbox | None = None,
) -> ClientResult:
    """``podman login`` into ``cfg_dir/config.json`` (``--authfile``), plain HTTP allowed."""
    with _sandbox_or_temporary(sandbox) as box:
        argv = [
            "login",
            "--tls-verify=false",
            "--authfile",
            str(Path(cfg_dir) / "config.json"),
            "-u",
            user,
            "--password-stdin",
            registry,
        ]
        with podman_command(argv, box) as podman_argv:
            result = run_client(podman_argv, cfg_dir, sandbox=box, stdin=password)
    if result.returncode != 0:
        raise ClientError(
            f"podman login {registry} -u {user} failed (exit {result.returncode}): "
            f"{_redact(result.output, password)}"
        )
    return result


def _redact(text: str, secret: str) -> str:
    return text.replace(secret, "<redacted>") if secret else text


# ---------------------------------------------------------------------------------------------
# regauthd itself, run like a user would: a subprocess with the same isolated environment


@dataclass(frozen=True, slots=True)
class FixRun:
    """One ``regauthd fix --json`` run: exit status and the JSON objects it printed."""

    returncode: int
    records: tuple[dict[str, Any], ...]
    stdout: str
    stderr: str

    def report_for(self, config_file: Path) -> dict[str, Any]:
        """The record about one config file (matched by path, as given on the command line)."""
        for record in self.records:
            if "path" in record and Path(record["path"]) == config_file:
                return record
        raise AssertionError(f"no report for {config_file} in: {self.stdout[-2000:]}")


def regauthd_fix(
    cfg_dir: Path,
    state_dir: Path,
    *extra_args: str,
    sandbox: Sandbox | None = None,
    timeout: float = CLIENT_TIMEOUT_S,
) -> FixRun:
    """``python -m regauthd fix --docker-config CFG --state-dir STATE --json [extra...]``.

    Runs with the sandbox's environment (so the helpers the clients see are the ones regauthd
    sees) and with root's own config pointed at a path that does not exist, so the machine's
    ``/root/.docker`` can never change a test's outcome.
    """
    with _sandbox_or_temporary(sandbox) as box:
        argv = [
            sys.executable,
            "-m",
            "regauthd",
            "fix",
            "--docker-config",
            str(cfg_dir),
            "--state-dir",
            str(state_dir),
            "--root-docker-config",
            str(box.root / "no-root-config.json"),
            "--json",
            *extra_args,
        ]
        env = box.environ(Path(cfg_dir))
        # The regauthd the tests import is the one that runs (a checkout, not some other install).
        env["PYTHONPATH"] = str(Path(regauthd.__file__).resolve().parent.parent)
        proc = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            env=env,
            cwd=box.root,
            timeout=timeout,
            check=False,
        )
    records = []
    for line in proc.stdout.splitlines():
        parsed = json.loads(line)  # every stdout line of --json is one JSON object
        if not isinstance(parsed, dict):
            raise AssertionError(f"regauthd fix --json printed a non-object line: {line!r}")
        records.append(parsed)
    return FixRun(proc.returncode, tuple(records), proc.stdout, proc.stderr)
