"""``regauthd check``: report every problem in Docker configs; change nothing.

Exit 0 when every config is clean (warnings may be printed), 1 when something needs `fix` or
cannot work, 2 on usage errors.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from regauthd.commands import EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE
from regauthd.commands.fix import (
    UsageError,
    add_common_arguments,
    config_paths,
    emit,
    emit_findings,
    extra_findings,
)
from regauthd.dockerconfig.fixer import BackupStore, fix_file


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser)


def command(args: argparse.Namespace) -> int:
    try:
        paths = config_paths(args.docker_config)
    except UsageError as exc:
        print(f"regauthd check: {exc}", file=sys.stderr)
        return EXIT_USAGE
    args.dry_run = True
    ok = True
    with tempfile.TemporaryDirectory(prefix="regauthd-check-") as scratch:
        backups = BackupStore(Path(scratch))  # a dry run never writes one
        for path, explicit in paths:
            result = fix_file(path, backups=backups, dry_run=True)
            ok &= result.clean and not result.changed
            emit(result, args, explicit=explicit)
    for source, findings in extra_findings([p for p, _ in paths], args.root_docker_config):
        ok &= not any(f.severity == "error" for f in findings)
        emit_findings(source, findings, args)
    return EXIT_OK if ok else EXIT_PROBLEMS
