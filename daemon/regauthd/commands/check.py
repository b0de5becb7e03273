"""``regauthd check``: report every problem in Docker configs; change nothing.

``fix``'s dry run (:func:`regauthd.commands.fix.run`) with check's own rule: exit 0 when every
config is clean (warnings may be printed), 1 when something needs `fix` or cannot work, 2 on
usage errors.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from regauthd.commands import EXIT_PROBLEMS, EXIT_USAGE, documents, fix, mirrors

CHECK = fix.Mode("check", dry_run=True, changes_are_problems=True)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    fix.add_common_arguments(parser)
    documents.add_arguments(parser, fixing=False)
    mirrors.add_arguments(parser)


def command(args: argparse.Namespace) -> int:
    if documents.wanted(args):
        return documents.run(args, fixing=False)
    # A dry run writes no backup; an empty scratch state directory also keeps check from
    # reading (or expiring) the race memory of `fix` and the daemon.
    try:
        mirrors.configured(args.daemon_json, args.containerd_certs)  # usage errors first
    except mirrors.MirrorUsageError as exc:
        print(f"regauthd check: {exc}", file=sys.stderr)
        return EXIT_USAGE
    with tempfile.TemporaryDirectory(prefix="regauthd-check-") as scratch:
        status = fix.run(args, CHECK, state_dir=Path(scratch))
    if status == EXIT_USAGE:
        return status
    report = mirrors.check(args.daemon_json, args.containerd_certs)
    for source, found in report.findings_by_source().items():
        fix.emit_findings(source, tuple(found), args)
        if any(f.severity == "error" for f in found):
            status = EXIT_PROBLEMS
    return status
