"""The ``regauthd`` command line: a thin dispatcher over :mod:`regauthd.commands`."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Protocol, cast

from regauthd import __version__
from regauthd.commands import EXIT_USAGE

# name -> (module under regauthd.commands, one-line help). Modules are imported only when their
# command runs, so `regauthd fix` never pays for httpx or systemd imports.
_COMMANDS: dict[str, tuple[str, str]] = {
    "fix": ("fix", "normalize Docker configs so every client finds the credentials"),
    "check": ("check", "report every problem in Docker configs without changing them"),
    "probe": ("probe", "ask registries whether the stored credentials authenticate and can push"),
    "scan-journal": ("scan_journal", "list registry auth failures logged in the journal"),
    "run": ("run", "the daemon: watch configs, repair them, probe, follow the journal, alert"),
    "service": ("service", "install, uninstall or ask about regauthd as a systemd/launchd service"),
}


class _CommandModule(Protocol):
    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def command(self, args: argparse.Namespace) -> int: ...


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on usage errors already; this only makes the message actionable."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _load(module: str) -> _CommandModule | None:
    try:
        return cast(_CommandModule, importlib.import_module(f"regauthd.commands.{module}"))
    except ModuleNotFoundError as exc:
        if exc.name == f"regauthd.commands.{module}":
            return None  # command not built yet in this version
        raise


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="regauthd", description=__doc__)
    parser.add_argument("--version", action="version", version=f"regauthd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name, (module, help_text) in _COMMANDS.items():
        mod = _load(module)
        if mod is None:
            continue
        p = sub.add_parser(name, help=help_text, description=help_text)
        mod.add_arguments(p)
        p.set_defaults(_module=mod)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    mod = cast(_CommandModule, args._module)
    try:
        return mod.command(args)
    except KeyboardInterrupt:
        return 130
