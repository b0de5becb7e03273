"""Rendering fix/check results for people (text, redacted diffs) and machines (JSON lines)."""

from __future__ import annotations

import difflib
import json
from typing import Any

from regauthd.dockerconfig import file as dockerconfig
from regauthd.dockerconfig.file import ConfigFileError
from regauthd.dockerconfig.findings import Finding
from regauthd.dockerconfig.fixer import FixReport
from regauthd.redact import redact_config


def status_of(report: FixReport, *, dry_run: bool) -> str:
    if report.error is not None:
        return "refused"
    status = ("would_fix" if dry_run else "fixed") if report.changed else "clean"
    if not report.clean:
        status = "problems" if status == "clean" else f"{status}_with_problems"
    return status


def redacted_diff(report: FixReport) -> str:
    """A unified diff of the change with every secret replaced (user names stay)."""
    if report.before is None or report.after is None:
        return ""
    try:
        old = dockerconfig.parse(report.before, report.path)
        new = dockerconfig.parse(report.after, report.path)
    except ConfigFileError:
        return ""
    a = dockerconfig.render(redact_config(old)).decode().splitlines(keepends=True)
    b = dockerconfig.render(redact_config(new)).decode().splitlines(keepends=True)
    if a and not a[-1].endswith("\n"):
        a[-1] += "\n"
    if b and not b[-1].endswith("\n"):
        b[-1] += "\n"
    return "".join(difflib.unified_diff(a, b, f"{report.path} (current)", f"{report.path} (fixed)"))


def as_json(report: FixReport, *, dry_run: bool, with_diff: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "path": str(report.path),
        "status": status_of(report, dry_run=dry_run),
        "written": report.written,
        "dry_run": dry_run,
        "changes": [
            {"action": c.action, "section": c.section, "from": c.from_key, "to": c.to_key}
            for c in report.changes
        ],
        "conflicts": [
            {
                "canonical": c.canonical,
                "kept": c.winner,
                "removed": c.loser,
                "reason": c.reason,
                "backup": str(c.backup) if c.backup else None,
            }
            for c in report.conflicts
        ],
        "findings": [f.as_dict() for f in report.findings],
        "backup": str(report.backup) if report.backup else None,
        "retries": report.retries,
        "error": str(report.error) if report.error else None,
    }
    if with_diff:
        out["diff"] = redacted_diff(report)
    return out


def findings_json(source: str, findings: tuple[Finding, ...]) -> dict[str, Any]:
    return {
        "path": source,
        "status": "problems" if any(f.severity == "error" for f in findings) else "clean",
        "findings": [f.as_dict() for f in findings],
    }


def as_text(report: FixReport, *, dry_run: bool) -> str:
    lines = [f"{report.path}: {status_of(report, dry_run=dry_run).replace('_', ' ')}"]
    if report.error is not None:
        lines.append(f"  refused: {report.error.reason}")
    would = "would be " if dry_run else ""
    for c in report.changes:
        lines.append(f"  {would}{c.describe()}")
    for k in report.conflicts:
        where = f"; the removed one is in backup {k.backup}" if k.backup else ""
        lines.append(
            f"  conflict for {k.canonical!r}: {k.winner!r} and {k.loser!r} held different "
            f"credentials; kept {k.winner!r} ({k.reason}){where}"
        )
    for f in report.findings:
        where = f" [{f.key}]" if f.key is not None else ""
        lines.append(f"  {f.severity}{where}: {f.message}\n    fix: {f.fix}")
    if report.backup is not None and report.written:
        lines.append(f"  backup of the previous version: {report.backup}")
    if report.retries:
        lines.append(f"  another program wrote the file meanwhile; merged {report.retries} time(s)")
    return "\n".join(lines)


def print_json_line(obj: dict[str, Any]) -> None:
    print(json.dumps(obj, ensure_ascii=False, separators=(",", ":")), flush=True)
