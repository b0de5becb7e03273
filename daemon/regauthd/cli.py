"""The ``regauthd`` command line: a thin dispatcher over :mod:`regauthd.commands`."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Collection, Sequence
from typing import Protocol, cast

from regauthd import __version__
from regauthd.commands import EXIT_USAGE

DESCRIPTION = """\
Keeps container registry credentials working: finds and repairs Docker config files whose
credentials a client cannot find, checks with each registry that the stored credential works,
and reports the registry authentication failures your container engines logged."""

EPILOG = """\
Exit status: 0 all good, 1 problems found (or something could not be checked), 2 usage or
settings errors. `regauthd COMMAND --help` explains each command."""

# The registry of commands: name -> (module under regauthd.commands, one-line help, what the
# command's --help says). The top-level parser is built from this table alone; a command's module
# is imported only when that command is named on the command line (for its arguments and to run
# it), so `regauthd fix` and `regauthd --help` never pay for httpx, watchdog or systemd.
_COMMANDS: dict[str, tuple[str, str, str]] = {
    "check": (
        "check",
        "report every problem in Docker configs without changing them",
        "Look at your Docker config (or the ones named) and say what is wrong and why: "
        "credentials stored under a key Docker never reads, entries Docker cannot load, "
        "risky file modes, and credentials that only root has (after `sudo docker login`). "
        "Changes nothing. Exit 0 when nothing needs fixing.",
    ),
    "fix": (
        "fix",
        "repair Docker configs so every client finds the credentials",
        "Repair your Docker config (or the ones named) so the Docker CLI, buildx, podman, "
        "skopeo and crane all find the same credentials. The previous version is backed up "
        "first. With --dry-run, show the change as a diff (secrets hidden) and write nothing; "
        "the exit status is then 1 while a change is pending.",
    ),
    "doctor": (
        "doctor",
        "walk through why `unauthorized: authentication required` happens here",
        "Check, one named step at a time, everything that makes a pull or push fail with "
        "`unauthorized: authentication required`: which credential file each client reads, "
        "root's config after `sudo docker login`, key format, credential helpers, and per "
        "registry the login, connectivity, authentication, push permission, rate limit and "
        "recent failures in the journal. Each check prints a verdict and, when it fails, the "
        "next step. Changes nothing.",
    ),
    "probe": (
        "probe",
        "ask registries whether the stored credentials work and may push",
        "Ask each registry you have credentials for (or the ones named) whether the "
        "credential Docker would use logs in, whether it may push to --repository, and how "
        "much of Docker Hub's pull limit is left. Each registry's line is printed as soon as "
        "it has answered.",
    ),
    "scan-journal": (
        "scan_journal",
        "list registry auth failures your container engines logged",
        "Read the system journal (or journal files, or plain log files) and list every "
        "registry authentication failure logged by Docker, containerd, podman and CI "
        "runners, then a summary per registry. A journal that is missing or closed to this "
        "user is reported as an error, never as 'no failures'.",
    ),
    "status": (
        "status",
        "how the running daemon is doing",
        "Show what the running daemon (`regauthd run`) reports in its state directory: the "
        "configs it watches, its last repair and alert, the latest probe results and whether "
        "it follows the journal. Exit 0 when the daemon is running, 1 when it is not.",
    ),
    "service": (
        "service",
        "install, uninstall or ask about regauthd as a systemd/launchd service",
        "Install regauthd as a service (systemd system or user unit, or a launchd agent on "
        "macOS), remove exactly what was installed, or say whether it is installed and "
        "running and what it watches.",
    ),
    "run": (
        "run",
        "the daemon: keep configs repaired, probe registries, follow the journal",
        "Run in the foreground as a service: repair Docker configs the moment something "
        "writes them, probe registries on a schedule, follow the journal for auth failures "
        "and raise alerts (journald, JSON lines or a console). Reads its settings from "
        "--config; SIGHUP reloads them.",
    ),
}


class _CommandModule(Protocol):
    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def command(self, args: argparse.Namespace) -> int: ...


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on usage errors already; this only makes the message actionable."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _load(module: str) -> _CommandModule:
    return cast(_CommandModule, importlib.import_module(f"regauthd.commands.{module}"))


def selected_command(argv: Sequence[str]) -> str | None:
    """The command named in ``argv``, or None (``--help``, ``--version``, nothing, a typo).

    The top-level parser takes no option with a value, so the first word that is not an option
    is the command.
    """
    for word in argv:
        if word == "--":
            continue
        if not word.startswith("-"):
            return word if word in _COMMANDS else None
    return None


def build_parser(load: Collection[str] | None = None) -> argparse.ArgumentParser:
    """The whole parser; only the commands in ``load`` get their arguments (their modules are
    imported for that), the others only their name and help. ``None`` loads every command."""
    parser = _Parser(
        prog="regauthd",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"regauthd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name, (module, help_text, description) in _COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=description, epilog=EPILOG)
        if load is None or name in load:
            _load(module).add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else list(argv)
    command = selected_command(words)
    args = build_parser(load=() if command is None else (command,)).parse_args(words)
    mod = _load(cast(str, args._module))
    try:
        return mod.command(args)
    except KeyboardInterrupt:
        return 130
