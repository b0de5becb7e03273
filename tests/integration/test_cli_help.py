"""The command line as a newcomer meets it: `--help` in plain words, the README's command list
complete, `run`'s output and level switches (issue 11, item 5)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from regauthd.cli import _COMMANDS, build_parser, main
from regauthd.commands import run as run_command
from regauthd.settings import OutputMode
from regauthd.settingsfile import with_overrides
from regauthd.tomltable import SettingsError

README = Path(__file__).resolve().parents[2] / "README.md"


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def test_help_is_plain_language(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    top = capsys.readouterr().out
    for name, parser in [("regauthd", None), *_subparsers().items()]:
        text = top if parser is None else parser.format_help()
        assert ":mod:" not in text and "``" not in text and ":func:" not in text, name
    assert "Keeps container registry credentials working" in top
    assert "Exit status: 0 all good" in top


def test_readme_lists_every_command_and_option() -> None:
    block = README.read_text().split("## Commands", 1)[1].split("```")[1]
    for name, parser in _subparsers().items():
        assert re.search(rf"^regauthd {re.escape(name)}\b", block, re.MULTILINE), name
        line = block.split(f"regauthd {name}", 1)[1].split("\nregauthd ", 1)[0]
        for action in parser._actions:
            for flag in action.option_strings:
                if flag.startswith("--") and flag != "--help":
                    assert flag in line, f"README lacks {name} {flag}"
    assert set(_subparsers()) == set(_COMMANDS)


def test_run_takes_output_and_log_level(tmp_path: Path) -> None:
    settings_file = tmp_path / "config.toml"
    settings_file.write_text('[daemon]\noutput = "journald"\nlog_level = "warning"\n')
    parser = argparse.ArgumentParser()
    run_command.add_arguments(parser)
    loaded = run_command._loader(parser.parse_args(["--config", str(settings_file)]))
    assert (loaded.output, loaded.log_level) == (OutputMode.JOURNALD, "warning")
    args = parser.parse_args(
        ["--config", str(settings_file), "--output", "json", "--log-level", "debug"]
    )
    loaded = run_command._loader(args)
    assert (loaded.output, loaded.log_level) == (OutputMode.JSON, "debug")
    with pytest.raises(SystemExit):
        parser.parse_args(["--output", "xml"])
    with pytest.raises(SettingsError):
        with_overrides(loaded, log_level="loud")
