"""Carrying a :class:`~regauthd.install.layout.Layout` out: files, directories, service manager.

Files are written whole (:func:`regauthd.statefile.write_atomically`) and only when their content
differs, so a second ``install`` changes nothing. The settings file is written only when absent.
Uninstalling removes the service file, the directories install made that are now empty, and,
with ``purge``, the settings, the state directory (backups, status) and launchd's logs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from regauthd.install.layout import Command, Layout, Manager, ServiceFile
from regauthd.install.units import Scope
from regauthd.statefile import write_atomically


def manager_absent(manager: Manager, scope: Scope) -> str:
    """Why ``manager`` cannot be asked to start anything here ("" when it can)."""
    if manager is Manager.LAUNCHD:
        if sys.platform != "darwin" or shutil.which("launchctl") is None:
            return "launchd is not running here (not macOS)"
        return ""
    if shutil.which("systemctl") is None:
        return "systemctl is not installed"
    if not os.path.isdir("/run/systemd/system"):
        return "systemd is not running here (no /run/systemd/system: a container?)"
    if scope is Scope.USER:
        runtime = os.environ.get("XDG_RUNTIME_DIR", f"/run/user/{os.getuid()}")
        if not os.path.exists(os.path.join(runtime, "systemd")):
            return f"no systemd user manager is running for this user ({runtime}/systemd)"
    return ""


@dataclass(frozen=True, slots=True)
class Change:
    path: PurePosixPath
    what: str
    """``written``, ``unchanged``, ``kept`` (settings already there), ``removed``, ``absent``."""

    def __str__(self) -> str:
        return f"{self.what}: {self.path}"


def write_files(layout: Layout) -> list[Change]:
    """Write the service file and (when absent) the settings; make the log directory."""
    changes = [_write(layout.service_file), _write(layout.settings)]
    if layout.log_dir is not None:
        log_dir = Path(layout.log_dir)
        existed = log_dir.is_dir()
        log_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        changes.append(Change(layout.log_dir, "unchanged" if existed else "written"))
    return changes


def _write(file: ServiceFile) -> Change:
    path = Path(file.path)
    try:
        current = path.read_bytes()
    except FileNotFoundError:
        current = None
    if current is not None and file.keep:
        return Change(file.path, "kept")
    if current == file.content and (path.stat().st_mode & 0o7777) == file.mode:
        return Change(file.path, "unchanged")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    write_atomically(path, file.content, mode=file.mode)
    return Change(file.path, "written")


def remove_files(layout: Layout, *, purge: bool, stop_at: PurePosixPath | None) -> list[Change]:
    """Remove what :func:`write_files` wrote (the settings and state only with ``purge``), and
    the directories above them that are left empty up to ``stop_at`` (``--root``; without it
    only regauthd's own directories go, never the service manager's)."""
    changes = [_remove(layout.service_file.path)]
    service_dir = layout.service_file.path.parent
    _prune(service_dir, stop_at or service_dir)
    if layout.log_dir is not None:
        changes.append(_remove_dir(layout.log_dir, purge=purge))
        _prune(layout.log_dir.parent, stop_at or layout.log_dir.parent)
    if purge:
        changes.append(_remove(layout.settings.path))
        _prune(layout.settings.path.parent, stop_at or layout.settings.path.parent.parent)
        changes.append(_remove_dir(layout.state_dir, purge=True))
        _prune(layout.state_dir.parent, stop_at or layout.state_dir.parent)
    return changes


def _remove(path: PurePosixPath) -> Change:
    try:
        Path(path).unlink()
    except FileNotFoundError:
        return Change(path, "absent")
    return Change(path, "removed")


def _remove_dir(path: PurePosixPath, *, purge: bool) -> Change:
    directory = Path(path)
    if not directory.is_dir():
        return Change(path, "absent")
    if purge:
        shutil.rmtree(directory)
        return Change(path, "removed")
    try:
        directory.rmdir()
    except OSError:
        return Change(path, "kept")  # not empty: logs stay unless --purge
    return Change(path, "removed")


def _prune(directory: PurePosixPath, stop_at: PurePosixPath) -> None:
    """Remove ``directory`` and its parents while they are empty, below ``stop_at``."""
    while directory != stop_at and directory.is_relative_to(stop_at):
        try:
            Path(directory).rmdir()
        except OSError:
            return
        directory = directory.parent


@dataclass(frozen=True, slots=True)
class Outcome:
    command: Command
    returncode: int
    output: str


def run_commands(commands: Sequence[Command]) -> tuple[list[Outcome], Outcome | None]:
    """Run ``commands`` in order; stop at the first failure that is not allowed to fail."""
    done: list[Outcome] = []
    for command in commands:
        outcome = run(command)
        done.append(outcome)
        if outcome.returncode != 0 and not command.may_fail:
            return done, outcome
    return done, None


def run(command: Command) -> Outcome:
    try:
        proc = subprocess.run(
            command.argv, capture_output=True, text=True, timeout=120, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Outcome(command, 127, str(exc))
    return Outcome(command, proc.returncode, (proc.stdout + proc.stderr).strip())


__all__ = ["Change", "Outcome", "manager_absent", "remove_files", "run", "run_commands"]
