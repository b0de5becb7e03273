"""``regauthd service install|uninstall|status``: regauthd as a systemd or launchd service.

``install`` writes the unit (``/etc/systemd/system/regauthd.service`` with ``--system``,
``$XDG_CONFIG_HOME/systemd/user/regauthd.service`` with ``--user``) or the launchd agent
(``~/Library/LaunchAgents/io.github.regauthd.plist``) running the regauthd it is run from, the
settings file from ``config.example.toml`` when there is none, and starts the service. ``--root
DIR`` writes under DIR and starts nothing; ``--dry-run`` prints the files and commands; when the
service manager is not running (a container) the files are written and the commands printed.
``--system`` refuses (exit 2) code a non-root user could change: root would run it.

``uninstall`` stops the service and removes what install wrote; settings, state and backups stay
unless ``--purge``. ``status`` says where it is installed, whether it runs, and what the daemon's
status file (``<state_dir>/status.json``) says it watches, repaired and alerted last. Exit status:
0 running, 1 installed but not running or not installed (the output says which), 2 usage.
"""

from __future__ import annotations

import argparse
import importlib.resources
import json
import os
import pwd
import sys
from dataclasses import replace
from pathlib import Path, PurePosixPath
from typing import Any

from regauthd.commands import EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE
from regauthd.install import apply, executable
from regauthd.install.layout import (
    Command,
    Layout,
    Machine,
    Manager,
    commands_text,
    plan,
    reroot,
)
from regauthd.install.units import Scope
from regauthd.settings import Environment, Settings, default_settings_file, default_state_dir
from regauthd.settingsfile import default_settings, parse_settings
from regauthd.tomltable import SettingsError

STATUS_FILE = "status.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", parser_class=type(parser))
    sub.required = True
    install = sub.add_parser("install", help="install and start regauthd as a service")
    _common(install)
    install.add_argument("--dry-run", action="store_true", help="print the files and commands")
    install.add_argument("--no-start", action="store_true", help="write and enable, do not start")
    uninstall = sub.add_parser("uninstall", help="stop the service and remove what install wrote")
    _common(uninstall)
    uninstall.add_argument(
        "--purge", action="store_true", help="also remove the settings, state and backups"
    )
    status = sub.add_parser("status", help="is it installed, is it running, what does it watch")
    _common(status)
    status.add_argument("--json", action="store_true", help="one JSON object on stdout")


def _common(parser: argparse.ArgumentParser) -> None:
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "--system",
        dest="scope",
        action="store_const",
        const=Scope.SYSTEM,
        help="root's service for every user's config (default as root)",
    )
    scope.add_argument(
        "--user",
        dest="scope",
        action="store_const",
        const=Scope.USER,
        help="a service for your own account (default otherwise)",
    )
    parser.add_argument(
        "--manager",
        choices=[m.value for m in Manager],
        help="service manager (default: launchd on macOS, systemd elsewhere)",
    )
    parser.add_argument(
        "--root", metavar="DIR", type=Path, help="write every file under DIR; start nothing"
    )


def command(args: argparse.Namespace) -> int:
    manager = Manager(args.manager) if args.manager else _default_manager()
    scope: Scope = args.scope or (Scope.SYSTEM if os.geteuid() == 0 else Scope.USER)
    if manager is Manager.LAUNCHD and scope is Scope.SYSTEM:
        if args.scope is not None:
            return _usage("launchd: only a user agent is supported; use --user")
        scope = Scope.USER
    root = PurePosixPath(args.root.absolute()) if args.root else None
    if scope is Scope.SYSTEM and root is None and args.action != "status" and os.geteuid() != 0:
        return _usage(
            f"{args.action} --system needs root: sudo {_program()} service {args.action} "
            "--system (or --user: a service for your own account)"
        )
    try:
        exec_start = executable.running_command(sys.argv[0], sys.executable)
    except executable.NoExecutable as exc:
        return _usage(str(exc))
    if args.action == "install" and scope is Scope.SYSTEM:
        reasons = executable.writable_by_others(executable.code_paths(exec_start, sys.executable))
        if reasons:
            return _usage(executable.refusal(reasons))
    environment = _environment(scope)
    layout = plan(manager, scope, _machine(environment, exec_start))
    settings = _installed_settings(layout, environment, root)
    layout = replace(layout, state_dir=PurePosixPath(settings.state_dir))
    if root is not None:
        layout = layout.rerooted(root)
    if args.action == "install":
        return _install(layout, root, dry_run=args.dry_run, start=not args.no_start)
    if args.action == "uninstall":
        return _uninstall(layout, root, purge=args.purge)
    patterns = settings.watch.patterns(environment.home)
    return _status(layout, root, patterns, as_json=args.json)


def _usage(message: str) -> int:
    print(f"regauthd service: {message}", file=sys.stderr)
    return EXIT_USAGE


def _program() -> str:
    return os.path.abspath(sys.argv[0]) if Path(sys.argv[0]).name == "regauthd" else "regauthd"


def _default_manager() -> Manager:
    return Manager.LAUNCHD if sys.platform == "darwin" else Manager.SYSTEMD


def _environment(scope: Scope) -> Environment:
    """This process's environment with the defaults of ``scope`` whoever asks: root's for the
    system service, a user's otherwise (systemd's ``$STATE_DIRECTORY`` of a caller ignored)."""
    current = Environment.current()
    euid = 0 if scope is Scope.SYSTEM else (current.euid or _NOT_ROOT)
    env = {k: v for k, v in current.env.items() if k != "STATE_DIRECTORY"}
    return Environment(euid=euid, home=current.home, env=env)


_NOT_ROOT = 65534
"""Any uid but 0: root installing a ``--user`` service gets a user's defaults."""


def _machine(environment: Environment, exec_start: tuple[str, ...]) -> Machine:
    uid = os.getuid()
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = str(uid)
    example = importlib.resources.files("regauthd.install").joinpath("config.example.toml")
    return Machine(
        exec_start=exec_start,
        home=PurePosixPath(environment.home),
        config_home=PurePosixPath(environment.xdg("XDG_CONFIG_HOME", ".config")),
        uid=uid,
        user=user,
        settings_file=PurePosixPath(default_settings_file(environment)),
        state_dir=PurePosixPath(default_state_dir(environment)),
        settings_example=example.read_bytes(),
    )


def _installed_settings(
    layout: Layout, environment: Environment, root: PurePosixPath | None
) -> Settings:
    """The settings the service will run with (the installed file's, else the defaults): they
    name its state directory (status file, ``--purge``) and the patterns it watches."""
    path = Path(layout.settings.path if root is None else reroot(layout.settings.path, root))
    try:
        return parse_settings(path.read_text(encoding="utf-8"), environment, source=path)
    except (OSError, UnicodeDecodeError, SettingsError):
        return default_settings(environment)


# -- install ---------------------------------------------------------------------------------


def _install(layout: Layout, root: PurePosixPath | None, *, dry_run: bool, start: bool) -> int:
    commands = layout.start if start else layout.enable_only
    if dry_run:
        _print_dry_run(layout, commands)
        return EXIT_OK
    try:
        changes = apply.write_files(layout)
    except OSError as exc:
        print(
            f"regauthd service install: cannot write {exc.filename}: {exc.strerror}",
            file=sys.stderr,
        )
        return EXIT_PROBLEMS
    print(f"regauthd service ({layout.description}):")
    for change in changes:
        print(f"  {change}")
    if root is not None:
        print(f"nothing started (--root {root}); on that machine run:")
        _print_commands(commands)
        if layout.manager is Manager.SYSTEMD and layout.scope is Scope.SYSTEM:
            print(f"  (or, offline: systemctl --root={root} enable regauthd.service)")
    elif commands:
        absent = apply.manager_absent(layout.manager, layout.scope)
        if absent:
            print(f"{absent}: nothing started; where it runs, start it with:")
            _print_commands(commands)
        else:
            done, failed = apply.run_commands(commands)
            for outcome in done:
                print(f"  ran: {outcome.command}")
            if failed is not None:
                print(
                    f"failed: {failed.command} (exit {failed.returncode}): {failed.output}",
                    file=sys.stderr,
                )
                return EXIT_PROBLEMS
    for note in layout.notes:
        print(f"note: {note}")
    return EXIT_OK


def _print_dry_run(layout: Layout, commands: tuple[Command, ...]) -> None:
    for file in (layout.service_file, layout.settings):
        when = " (only if absent; never overwritten)" if file.keep else ""
        print(f"--- would write {file.path} (mode {file.mode:04o}){when}")
        print(file.content.decode(), end="" if file.content.endswith(b"\n") else "\n")
    if layout.log_dir is not None:
        print(f"--- would create the directory {layout.log_dir}")
    if commands:
        print("--- would run:")
        _print_commands(commands)


def _print_commands(commands: tuple[Command, ...]) -> None:
    for line in commands_text(commands):
        print(f"  {line}")


# -- uninstall -------------------------------------------------------------------------------


def _uninstall(layout: Layout, root: PurePosixPath | None, *, purge: bool) -> int:
    installed = Path(layout.service_file.path).exists()
    ask = installed and root is None and not apply.manager_absent(layout.manager, layout.scope)
    print(f"regauthd service ({layout.description}):")
    if ask:
        done, _ = apply.run_commands(layout.stop)  # stopping what is not running may fail
        for outcome in done:
            print(f"  ran: {outcome.command}")
    try:
        changes = apply.remove_files(layout, purge=purge, stop_at=root)
    except OSError as exc:
        print(
            f"regauthd service uninstall: cannot remove {exc.filename}: {exc.strerror}",
            file=sys.stderr,
        )
        return EXIT_PROBLEMS
    if ask:
        apply.run_commands(layout.after_remove)
    if not installed:
        print(f"  was not installed ({layout.service_file.path} absent)")
    for change in changes:
        if change.what != "absent":
            print(f"  {change}")
    if not purge and Path(layout.settings.path).exists():
        print(f"  kept: {layout.settings.path} (settings; --purge removes them and the state)")
    return EXIT_OK


# -- status ----------------------------------------------------------------------------------


def _status(
    layout: Layout, root: PurePosixPath | None, patterns: tuple[str, ...], *, as_json: bool
) -> int:
    unit = layout.service_file.path
    installed = Path(unit).exists()
    running, how = _running(layout, root, installed)
    state = _state_file(PurePosixPath(layout.state_dir) / STATUS_FILE)
    report: dict[str, Any] = {
        "manager": layout.manager.value,
        "scope": layout.scope.value,
        "installed": installed,
        "service_file": str(unit),
        "settings_file": str(layout.settings.path),
        "patterns": list(patterns),
        "running": running,
        "running_reason": how,
        "status_file": str(PurePosixPath(layout.state_dir) / STATUS_FILE),
        "status": state.get("status"),
        "status_error": state.get("error"),
    }
    if as_json:
        print(json.dumps(report, sort_keys=True))
    else:
        _print_status(report)
    return EXIT_OK if running else EXIT_PROBLEMS


def _running(layout: Layout, root: PurePosixPath | None, installed: bool) -> tuple[bool, str]:
    if not installed:
        return False, "not installed"
    if root is not None:
        return False, f"installed under --root {root}: not asked"
    absent = apply.manager_absent(layout.manager, layout.scope)
    if absent or layout.status is None:
        return False, f"installed but not running: {absent}"
    outcome = apply.run(layout.status)
    if layout.manager is Manager.LAUNCHD:
        up = outcome.returncode == 0 and "state = running" in outcome.output
    else:
        up = outcome.returncode == 0
    word = outcome.output.splitlines()[0] if outcome.output else f"exit {outcome.returncode}"
    state = "running" if up else "installed but not running"
    return up, f"{state} ({layout.status}: {word})"


def _state_file(path: PurePosixPath) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_bytes())
    except FileNotFoundError:
        return {"error": "absent (the daemon writes it while it runs)"}
    except (OSError, ValueError) as exc:
        return {"error": f"unreadable: {exc}"}
    if not isinstance(data, dict):
        return {"error": "not a JSON object"}
    return {"status": data}


def _print_status(report: dict[str, Any]) -> None:
    where = report["service_file"] if report["installed"] else "not installed"
    print(f"regauthd service ({report['manager']}, {report['scope']}): {where}")
    print(f"  running: {'yes' if report['running'] else 'no'}: {report['running_reason']}")
    print(f"  settings: {report['settings_file']}")
    print("  configured to watch:")
    for pattern in report["patterns"]:
        print(f"    {pattern}")
    status = report["status"]
    if status is None:
        print(f"  status file {report['status_file']}: {report['status_error']}")
        return
    print(f"  status file {report['status_file']}:")
    print(f"    pid {status.get('pid')}, started {status.get('started_at')}")
    watched = status.get("watched_configs") or []
    print(f"    watched configs: {len(watched)}")
    for config in watched:
        print(f"      {config}")
    for key in ("last_repair", "last_alert"):
        value = status.get(key)
        shown = "none" if value is None else json.dumps(value, sort_keys=True)
        print(f"    {key.replace('_', ' ')}: {shown}")
