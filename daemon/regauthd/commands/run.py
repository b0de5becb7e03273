"""``regauthd run``: the daemon (built by :mod:`regauthd.service.app`, see
:mod:`regauthd.service.daemon`). ``--output`` and ``--log-level`` override the settings file.

Settings come from ``--config FILE``, else the standard location (``/etc/regauthd/config.toml``
for root, ``$XDG_CONFIG_HOME/regauthd/config.toml`` otherwise), else the defaults. Invalid
settings exit with status 2 and one message naming the key, so a service manager does not
restart-loop on them (the launchd agent passes ``--settings-error-exit 0``: launchd restarts any
non-zero exit). SIGHUP reads the same file again. A state directory that cannot be created
(read-only filesystem, no permission, no space) is treated the same way: one line, that status.
Running on without it would mean repairing without backups, which regauthd never does; and
restarting cannot help until a person fixes the directory.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from regauthd.commands import EXIT_USAGE
from regauthd.dockerconfig.jsontext import os_cause
from regauthd.settings import LOG_LEVELS, OutputMode, Settings
from regauthd.settingsfile import load_settings, with_overrides
from regauthd.tomltable import SettingsError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        metavar="FILE",
        type=Path,
        help="settings file (default: /etc/regauthd/config.toml for root, "
        "$XDG_CONFIG_HOME/regauthd/config.toml otherwise; none: built-in defaults)",
    )
    parser.add_argument(
        "--docker-config",
        metavar="PATH",
        action="append",
        default=[],
        help="watch this DOCKER_CONFIG directory or config.json instead of the configured "
        "paths (repeatable)",
    )
    parser.add_argument(
        "--state-dir",
        metavar="DIR",
        type=Path,
        help="where backups and metrics go (default: /var/lib/regauthd for root, "
        "$XDG_STATE_HOME/regauthd otherwise)",
    )
    parser.add_argument(
        "--settings-error-exit",
        metavar="STATUS",
        type=int,
        default=EXIT_USAGE,
        help="exit status after a settings error (default 2; the launchd agent passes 0, which "
        "launchd's KeepAlive does not restart)",
    )
    parser.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        help="show events at this level and above (default: [daemon] log_level, else info)",
    )
    parser.add_argument(
        "--output",
        choices=[m.value for m in OutputMode],
        help="where log lines and alerts go: journald, json (one object per line), console "
        "(for people), or auto: journald under systemd, console on a terminal, else json "
        "(default: [daemon] output, else auto)",
    )


def _loader(args: argparse.Namespace) -> Settings:
    settings = load_settings(args.config)
    docker_configs = tuple(str(Path(p).absolute()) for p in args.docker_config)
    state_dir = args.state_dir.absolute() if args.state_dir else None
    return with_overrides(
        settings,
        docker_configs=docker_configs,
        state_dir=state_dir,
        output=OutputMode(args.output) if args.output else None,
        log_level=args.log_level,
    )


def command(args: argparse.Namespace) -> int:
    try:
        settings = _loader(args)
    except SettingsError as exc:
        print(f"regauthd run: settings error: {exc}", file=sys.stderr)
        return int(args.settings_error_exit)
    try:
        settings.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        print(
            f"regauthd run: the state directory {settings.state_dir} cannot be created: "
            f"{os_cause(exc)}; make it writable, or set [daemon] state_dir (or --state-dir) "
            "to a directory that is",
            file=sys.stderr,
        )
        return int(args.settings_error_exit)
    # Imported here: the daemon pulls watchdog, httpx and systemd, which `run --help` and the
    # parser (see regauthd.cli) must not.
    from regauthd.service.app import run_daemon  # noqa: PLC0415

    return run_daemon(settings, reload_settings=lambda: _loader(args))
