"""The test command leaves the host as it found it (issue 12).

``pass`` and ``docker-credential-pass`` come from the private tools folder even when the host has
them installed; ``tests/run`` installs neither (and no recommends); a process a test leaves
behind, even one that daemonised, is found by the session-end check in ``tests/conftest.py``;
rootless podman's pause process is stopped after each call.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import require_program, require_root
from tests.rigs import host
from tests.rigs.clients import Sandbox, podman_command
from tests.rigs.passhelper import HELPER, PassHelper
from tests.rigs.tools import PACKAGES, ROOT, TOOLS_DIR


def _under_tools(program: str | None) -> bool:
    return program is not None and Path(program).resolve().is_relative_to(TOOLS_DIR.resolve())


def test_the_helpers_the_tests_run_are_the_private_copies(
    pass_helper: PassHelper, tmp_path: Path
) -> None:
    box = Sandbox.create(tmp_path / "box", helpers=("pass",))
    for path in (pass_helper.env["PATH"], box.path):
        for program in ("pass", HELPER):
            found = shutil.which(program, path=path)
            assert _under_tools(found), f"{program} resolves to {found}, not under {TOOLS_DIR}"
    # A copy on the host (this machine may have one) is hidden from the clients' PATH.
    farm_only = Sandbox.create(tmp_path / "plain")
    assert shutil.which(HELPER, path=farm_only.path) is None
    assert shutil.which("pass", path=farm_only.path) is None
    # And the private helper works: it stores and reads back through the private pass.
    pass_helper.store("reg.example", "alice", "s3cret")
    assert pass_helper.get("reg.example") == ("alice", "s3cret")


def test_the_test_command_installs_no_credential_helper_and_no_recommends() -> None:
    script = (ROOT / "tests" / "run").read_text()
    match = re.search(r"DEBIAN_PACKAGES=\(([^)]*)\)", script)
    assert match is not None
    installed = set(match.group(1).split())
    assert not installed & set(PACKAGES)
    assert {"gnupg", "tree"} <= installed  # what the private pass needs, harmless on a host
    assert "--no-install-recommends" in script
    assert "python -m tests.rigs.tools" in script


def test_a_daemonised_process_is_found_as_a_leftover() -> None:
    # `sh` starts a sleeper and exits: the sleeper is an orphan, adopted by the test process.
    subprocess.run(["sh", "-c", "sleep 120 >/dev/null 2>&1 &"], check=True, timeout=10)
    deadline = time.monotonic() + 5
    found: list[int] = []
    while not found and time.monotonic() < deadline:
        found = [
            pid
            for pid, state, cmdline in host.leftover_processes()
            if cmdline == "sleep 120" and state not in {"Z", "X"}
        ]
        time.sleep(0.02)
    try:
        assert found, "the orphaned sleeper was not found below the test process"
    finally:
        for pid in found:
            os.kill(pid, 9)
            os.waitpid(pid, 0)


def test_rootless_podman_leaves_no_pause_process() -> None:
    require_root("runs podman as an unprivileged user (nobody), as a non-root run of the suite")
    require_program("podman", "podman")
    setpriv = require_program("setpriv", "util-linux")
    with _podman_get_login("rgd-rootless-") as call:
        for path in (call.root, call.state):
            _chown_tree(path, NOBODY)
        env = {**call.box.environ(call.cfg), "PATH": "/usr/bin:/bin"}
        subprocess.run(
            [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *call.argv],
            env=env,
            cwd=call.root,
            capture_output=True,
            timeout=60,
            check=False,
        )
        pause_pid = int((call.state / "tmp" / "pause.pid").read_text())
        assert _alive(pause_pid), "rootless podman left no pause process to stop"
        assert (call.state / "tmp" / "locks").is_dir()  # its locks: files in the private state
    assert not _alive(pause_pid)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pause_pid, os.WNOHANG)  # adopted by the test process: reap it


NOBODY = 65534


@dataclass(frozen=True, slots=True)
class _PodmanCall:
    root: Path
    box: Sandbox
    cfg: Path
    argv: list[str]
    state: Path
    """The call's private podman state (``--tmpdir`` is its ``tmp``)."""


@contextlib.contextmanager
def _podman_get_login(prefix: str) -> Iterator[_PodmanCall]:
    """``podman login --get-login docker.io`` ready to run, in a sandbox under a new temp root
    with an empty Docker config (not run here: the test runs it as whom it needs)."""
    with tempfile.TemporaryDirectory(prefix=prefix, dir="/tmp") as tmp:
        root = Path(tmp)
        box = Sandbox.create(root / "box")
        cfg = root / "cfg"
        cfg.mkdir()
        (cfg / "config.json").write_text("{}")
        with podman_command(["login", "--get-login", "docker.io"], box) as argv:
            state = Path(argv[argv.index("--tmpdir") + 1]).parent
            yield _PodmanCall(root, box, cfg, argv, state)


def _chown_tree(root: Path, uid: int) -> None:
    for directory, _, files in os.walk(root):
        os.chown(directory, uid, uid)
        for name in files:
            os.chown(os.path.join(directory, name), uid, uid)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in {"Z", "X"}


def test_podman_keeps_its_locks_in_the_calls_state_not_in_dev_shm() -> None:
    """Rootful podman locks in shared memory by default (``/dev/shm/libpod_lock``, kept after
    it exits); the sandbox's containers.conf makes them files in the call's own ``--tmpdir``."""
    require_root("rootful podman")
    require_program("podman", "podman")
    shm = Path("/dev/shm")
    before = {p.name: p.stat().st_ctime_ns for p in shm.glob("libpod*")}
    with _podman_get_login("rgd-shm-") as call:
        done = subprocess.run(
            call.argv,
            env=call.box.environ(call.cfg),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert "not logged in" in done.stderr, done.stderr[-500:]
        assert (call.state / "tmp" / "locks").is_dir()
    after = {p.name: p.stat().st_ctime_ns for p in shm.glob("libpod*")}
    assert after == before
