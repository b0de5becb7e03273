"""Every command imports only what it runs (issue 9, item 3): the parser imports the module of
the one command named, and `fix`, `check` and `--help` never load httpx, watchdog, systemd or
structlog. Proven on the whole process: it lists, at exit, every module it imported."""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from regauthd.cli import _COMMANDS, build_parser, selected_command

# What a config repair has no use for: the HTTP client, the watcher, journald, the daemon's
# logging stack (structlog pulls rich's pretty printer and asyncio).
HEAVY = ("httpx", "watchdog", "systemd", "structlog", "rich", "asyncio", "regauthd.service")
# What no command's --help may need (structlog is allowed where the command module uses it).
NEVER_FOR_HELP = ("httpx", "watchdog", "systemd", "regauthd.service.app")


# `python -m regauthd ARGS` that prints, at exit, every module the process holds. (`-X importtime`
# would miss the command modules: importlib.import_module bypasses its instrumentation.)
_PROBE = (
    "import atexit, json, runpy, sys\n"
    "atexit.register(lambda: print('MODULES', json.dumps(sorted(sys.modules)), file=sys.stderr))\n"
    "runpy.run_module('regauthd', run_name='__main__', alter_sys=True)\n"
)


def _imported(argv: list[str], home: Path) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    env = {**os.environ, "HOME": str(home), "DOCKER_CONFIG": str(home / ".docker")}
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    line = next(x for x in proc.stderr.splitlines() if x.startswith("MODULES "))
    return proc, set(json.loads(line.removeprefix("MODULES ")))


def _top(names: set[str], prefixes: tuple[str, ...]) -> list[str]:
    return sorted(n for n in names if any(n == p or n.startswith(p + ".") for p in prefixes))


@pytest.fixture
def clean_config(tmp_path: Path) -> Path:
    config = tmp_path / ".docker" / "config.json"
    config.parent.mkdir(mode=0o700)
    config.write_text(json.dumps({"auths": {"ghcr.io": {"auth": "dTpw"}}}, indent="\t") + "\n")
    config.chmod(0o600)
    return config


@pytest.mark.parametrize("command", ["fix", "check"])
def test_fix_and_check_import_nothing_heavy(command: str, clean_config: Path) -> None:
    before = clean_config.read_bytes()
    home = clean_config.parents[1]
    proc, names = _imported([command, "--docker-config", str(clean_config)], home)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "regauthd.commands.fix" in names  # the measurement sees our imports at all
    assert _top(names, HEAVY) == []
    assert clean_config.read_bytes() == before


def test_top_level_help_imports_no_command(tmp_path: Path) -> None:
    proc, names = _imported(["--help"], tmp_path)
    assert proc.returncode == 0
    assert "regauthd.cli" in names
    assert _top(names, ("regauthd.commands",)) == ["regauthd.commands"]
    assert _top(names, HEAVY) == []
    for name in _COMMANDS:  # the list still names and explains every command
        assert re.search(rf"^    {name}\s", proc.stdout, re.MULTILINE), name


@pytest.mark.parametrize("command", sorted(_COMMANDS))
def test_each_commands_help_shows_its_arguments_and_imports_only_its_module(
    command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    proc, names = _imported([command, "--help"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    # the same help as the parser with every command loaded: arguments and plain words
    (action,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    assert proc.stdout == action.choices[command].format_help()
    assert f"usage: regauthd {command} [-h] [-" in proc.stdout or command == "service"
    own = f"regauthd.commands.{_COMMANDS[command][0]}"
    others = {f"regauthd.commands.{m}" for m, _, _ in _COMMANDS.values()} - {own}
    assert own in names
    assert _top(names, NEVER_FOR_HELP) == []
    # a command module may share others' argument definitions (doctor: probe's network options
    # and fix's root config), never load the whole registry
    assert len(others & names) <= 2, sorted(others & names)


def test_the_command_word_is_the_first_non_option() -> None:
    assert selected_command(["fix", "--dry-run"]) == "fix"
    assert selected_command(["--version"]) is None
    assert selected_command(["-h", "scan-journal"]) == "scan-journal"
    assert selected_command(["fxi"]) is None
    assert selected_command([]) is None
