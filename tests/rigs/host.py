"""What the suite must leave as it found it on the host: its processes, its ``docker login``.

- :func:`become_subreaper` makes the test process the reaper of its descendants' orphans
  (``PR_SET_CHILD_SUBREAPER``): a program that daemonises (gpg-agent, rootless podman's pause
  process) stays below the test process in the process tree instead of moving under init.
- :func:`leftover_processes` walks ``/proc`` for processes whose parent chain leads to this one;
  :func:`stop_leftover_processes` kills them (after naming them) and reaps the dead.
- :func:`docker_login_setup` is what the host's own ``docker login`` would use: the config file it
  reads and the credential store it would pick (Docker CLI's ``DetectDefaultStore`` on Linux:
  ``pass`` when both ``pass`` and ``docker-credential-pass`` are on PATH, else ``secretservice``
  when its helper is). ``conftest.py`` compares it before and after the session.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import os
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path

_PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    """Adopt orphaned descendants (Linux); False where that is not possible."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of a process, or None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    return fields[0], int(fields[1])


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()[:300] or "?"


def leftover_processes(root: int | None = None) -> list[tuple[int, str, str]]:
    """(pid, state, command line) of every descendant of ``root`` (this process by default)."""
    root = os.getpid() if root is None else root
    parents: dict[int, tuple[str, int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            found = _stat(int(entry))
            if found is not None:
                parents[int(entry)] = found
    found_pids = []
    for pid in parents:
        seen = set()
        current = pid
        while current in parents and current not in seen and current > 1:
            seen.add(current)
            current = parents[current][1]
            if current == root:
                found_pids.append(pid)
                break
    return [(pid, parents[pid][0], _cmdline(pid)) for pid in sorted(found_pids)]


def stop_leftover_processes() -> list[tuple[int, str]]:
    """Kill the descendants still running (returned: pid and command line); reap the dead."""
    alive = []
    for pid, state, cmdline in leftover_processes():
        if state in {"Z", "X"}:
            continue
        alive.append((pid, cmdline))
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(
        state not in {"Z", "X"} for _, state, _ in leftover_processes()
    ):
        time.sleep(0.01)
    _reap()
    return alive


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


@dataclass(frozen=True, slots=True)
class DockerLoginSetup:
    config_digest: str
    creds_store: str

    def __str__(self) -> str:
        return f"credential store {self.creds_store!r}, config.json sha256 {self.config_digest}"


def docker_login_setup(environ: dict[str, str] | None = None) -> DockerLoginSetup:
    env = dict(os.environ if environ is None else environ)
    config_dir = env.get("DOCKER_CONFIG") or os.path.join(env.get("HOME", "/root"), ".docker")
    try:
        content = (Path(config_dir) / "config.json").read_bytes()
    except OSError:
        content = b""
    store = ""
    try:
        parsed = json.loads(content) if content else {}
        if isinstance(parsed, dict) and isinstance(parsed.get("credsStore"), str):
            store = parsed["credsStore"]
    except ValueError:
        pass
    if not store:
        path = env.get("PATH", os.defpath)
        default = "pass" if shutil.which("pass", path=path) else "secretservice"
        if shutil.which(f"docker-credential-{default}", path=path):
            store = default
    return DockerLoginSetup(hashlib.sha256(content).hexdigest()[:16], store or "none (file)")
