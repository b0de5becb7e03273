"""Where an installation's files go and which service-manager commands it takes (pure).

:func:`plan` turns the choices (manager, scope) and the facts about the machine (the user's home,
uid, the regauthd command) into a :class:`Layout`: the files ``install`` writes, the directories
it makes, and the commands that start, stop and query the service. ``--root DIR`` puts every path
under ``DIR`` (:meth:`Layout.rerooted`), as ``systemctl --root`` does; the commands keep the
paths as the target machine sees them.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import PurePosixPath

from regauthd.install import launchd
from regauthd.install.units import UNIT_NAME, Scope, render_systemd_unit


class Manager(enum.Enum):
    SYSTEMD = "systemd"
    LAUNCHD = "launchd"


@dataclass(frozen=True, slots=True)
class Command:
    argv: tuple[str, ...]
    may_fail: bool = False
    """True for a step whose failure is expected (``bootout`` of a job that is not loaded)."""

    def __str__(self) -> str:
        return " ".join(self.argv)


@dataclass(frozen=True, slots=True)
class ServiceFile:
    path: PurePosixPath
    content: bytes
    mode: int = 0o644
    keep: bool = False
    """Settings: written only when absent, never overwritten, removed only by ``--purge``."""


@dataclass(frozen=True, slots=True)
class Layout:
    manager: Manager
    scope: Scope
    service_file: ServiceFile
    """The unit or the plist."""
    settings: ServiceFile
    state_dir: PurePosixPath
    log_dir: PurePosixPath | None = None
    """launchd's StandardOutPath/StandardErrorPath directory (systemd logs to the journal)."""
    start: tuple[Command, ...] = ()
    """After writing the files: load, enable and (re)start."""
    enable_only: tuple[Command, ...] = ()
    """After writing the files with ``--no-start``."""
    stop: tuple[Command, ...] = ()
    """Before removing the files: stop and disable."""
    after_remove: tuple[Command, ...] = ()
    status: Command | None = None
    notes: tuple[str, ...] = field(default=())
    """What else the person has to do (``loginctl enable-linger``)."""

    @property
    def description(self) -> str:
        return f"{self.manager.value}, {self.scope.value}"

    def rerooted(self, root: PurePosixPath) -> Layout:
        """The same layout with every path under ``root`` (commands unchanged)."""
        return replace(
            self,
            service_file=replace(self.service_file, path=reroot(self.service_file.path, root)),
            settings=replace(self.settings, path=reroot(self.settings.path, root)),
            state_dir=reroot(self.state_dir, root),
            log_dir=None if self.log_dir is None else reroot(self.log_dir, root),
        )


def reroot(path: PurePosixPath, root: PurePosixPath) -> PurePosixPath:
    return root / path.relative_to("/")


@dataclass(frozen=True, slots=True)
class Machine:
    """What the layout depends on: who installs, for whom, and the regauthd command."""

    exec_start: tuple[str, ...]
    """The regauthd command (absolute program path first), without ``run``."""
    home: PurePosixPath
    config_home: PurePosixPath
    """``$XDG_CONFIG_HOME`` (``~/.config``): where systemd user units live."""
    uid: int
    user: str
    settings_file: PurePosixPath
    state_dir: PurePosixPath
    settings_example: bytes


def plan(manager: Manager, scope: Scope, machine: Machine) -> Layout:
    """The files and commands of installing regauthd for ``scope`` under ``manager``."""
    settings = ServiceFile(machine.settings_file, machine.settings_example, 0o644, keep=True)
    if manager is Manager.LAUNCHD:
        if scope is Scope.SYSTEM:
            raise ValueError("launchd: only a user agent (--user) is supported")
        return _launchd(machine, settings)
    return _systemd(scope, machine, settings)


def _systemd(scope: Scope, machine: Machine, settings: ServiceFile) -> Layout:
    unit = render_systemd_unit((*machine.exec_start, "run"), scope).encode()
    if scope is Scope.SYSTEM:
        path = PurePosixPath("/etc/systemd/system") / UNIT_NAME
        systemctl: tuple[str, ...] = ("systemctl",)
        notes: tuple[str, ...] = ()
    else:
        path = machine.config_home / "systemd" / "user" / UNIT_NAME
        systemctl = ("systemctl", "--user")
        notes = (
            f"to keep it running while {machine.user} is not logged in (a CI runner's account): "
            f"loginctl enable-linger {machine.user}",
        )
    reload = Command((*systemctl, "daemon-reload"))
    return Layout(
        manager=Manager.SYSTEMD,
        scope=scope,
        service_file=ServiceFile(path, unit),
        settings=settings,
        state_dir=machine.state_dir,
        start=(
            reload,
            Command((*systemctl, "enable", UNIT_NAME)),
            Command((*systemctl, "restart", UNIT_NAME)),
        ),
        enable_only=(reload, Command((*systemctl, "enable", UNIT_NAME))),
        stop=(Command((*systemctl, "disable", "--now", UNIT_NAME), may_fail=True),),
        after_remove=(reload,),
        status=Command((*systemctl, "is-active", UNIT_NAME), may_fail=True),
        notes=notes,
    )


def _launchd(machine: Machine, settings: ServiceFile) -> Layout:
    path = machine.home / "Library" / "LaunchAgents" / launchd.plist_name()
    domain = f"gui/{machine.uid}"
    service = f"{domain}/{launchd.LABEL}"
    bootout = Command(("launchctl", "bootout", service), may_fail=True)
    return Layout(
        manager=Manager.LAUNCHD,
        scope=Scope.USER,
        service_file=ServiceFile(path, launchd.render_plist(machine.exec_start, machine.home)),
        settings=settings,
        state_dir=machine.state_dir,
        log_dir=launchd.log_dir(machine.home),
        # bootstrap refuses a loaded job: bootout first, so a second install loads the new plist.
        start=(bootout, Command(("launchctl", "bootstrap", domain, str(path)))),
        enable_only=(),
        stop=(bootout,),
        status=Command(("launchctl", "print", service), may_fail=True),
    )


def commands_text(commands: Sequence[Command]) -> list[str]:
    return [str(c) for c in commands]


__all__ = ["Command", "Layout", "Machine", "Manager", "ServiceFile", "commands_text", "plan"]
