"""``regauthd check``: report every problem in Docker configs; change nothing.

``fix``'s dry run (:func:`regauthd.commands.fix.run`) with check's own rule: exit 0 when every
config is clean (warnings may be printed), 1 when something needs `fix` or cannot work (an
expired credential among them), 2 on usage errors. It also reads when each stored credential
expires (:mod:`regauthd.dockerconfig.expiry`, helpers asked as a client would): expiring within
an hour is a warning; credentials with no readable expiry are said once, on stderr.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
from pathlib import Path

from regauthd.commands import EXIT_PROBLEMS, EXIT_USAGE, documents, fix, mirrors

CHECK = fix.Mode("check", dry_run=True, changes_are_problems=True, read_expiry=True)
BENCH_NO_EXPIRY = "REGAUTHD_BENCH_NO_EXPIRY"
"""Set to 1, check reads no expiry: only ``bench/expiry.py`` uses it, for its baseline."""


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
        mode = CHECK
        if os.environ.get(BENCH_NO_EXPIRY) == "1":
            mode = dataclasses.replace(CHECK, read_expiry=False)
        status = fix.run(args, mode, state_dir=Path(scratch))
    if status == EXIT_USAGE:
        return status
    report = mirrors.check(args.daemon_json, args.containerd_certs)
    for source, found in report.findings_by_source().items():
        fix.emit_findings(source, tuple(found), args)
        if any(f.severity == "error" for f in found):
            status = EXIT_PROBLEMS
    return status
