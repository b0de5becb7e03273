"""What a fix did to one config (:class:`FixReport`), and how it is shown: text for people, a
redacted diff, JSON objects for machines.

Pure: the report is data, every rendering a function of it (printing is the command's job).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from regauthd.dockerconfig.findings import Finding
from regauthd.dockerconfig.jsontext import ConfigFileError, ConfigSaveError, parse, render
from regauthd.dockerconfig.keys import HUB_CANONICAL
from regauthd.dockerconfig.normalize import Change
from regauthd.redact import redact_config
from regauthd.terminal import printable

if TYPE_CHECKING:
    from pathlib import Path


@dataclass(frozen=True, slots=True)
class ReportedConflict:
    """A :class:`regauthd.dockerconfig.normalize.Conflict` plus where the losing credential can
    be found again."""

    canonical: str
    winner: str
    loser: str
    reason: str
    backup: Path | None


@dataclass(frozen=True, slots=True, kw_only=True)
class FixReport:
    """What :func:`regauthd.dockerconfig.fixer.fix_file` did and found for one file."""

    path: Path
    written: bool = False
    changes: tuple[Change, ...] = ()
    conflicts: tuple[ReportedConflict, ...] = ()
    findings: tuple[Finding, ...] = ()
    before: bytes | None = field(default=None, repr=False)
    after: bytes | None = field(default=None, repr=False)
    backup: Path | None = None
    retries: int = 0
    error: ConfigFileError | None = None

    @property
    def changed(self) -> bool:
        return bool(self.changes or self.conflicts)

    @property
    def clean(self) -> bool:
        """Nothing is left that breaks a client (warnings may remain)."""
        return self.error is None and not any(f.severity == "error" for f in self.findings)


def status_of(report: FixReport, *, dry_run: bool) -> str:
    if isinstance(report.error, ConfigSaveError):
        return "not_saved"
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
        old = parse(report.before, report.path)
        new = parse(report.after, report.path)
    except ConfigFileError:
        return ""
    a = render(redact_config(old)).decode().splitlines(keepends=True)
    b = render(redact_config(new)).decode().splitlines(keepends=True)
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
    status = status_of(report, dry_run=dry_run)
    if status == "clean" and report.findings:
        status = "works, with warnings"  # `clean` only when nothing is printed under it
    lines = [f"{printable(report.path)}: {status.replace('_', ' ')}"]
    if report.error is not None:
        label = "not saved" if isinstance(report.error, ConfigSaveError) else "refused"
        lines.append(f"  {label}: {printable(report.error.reason)}")
    would = "would be " if dry_run else ""
    for c in report.changes:
        lines.append(f"  {would}{printable(c.describe())}")
    for k in report.conflicts:
        where = f"; the removed one is in backup {k.backup}" if k.backup else ""
        lines.append(
            printable(
                f"  conflict for {k.canonical!r}: {k.winner!r} and {k.loser!r} held different "
                f"credentials; kept {k.winner!r} ({k.reason}){where}"
            )
        )
    lines.extend(f.as_text(indent="  ") for f in report.findings)
    if report.backup is not None and report.written:
        lines.append(f"  backup of the previous version: {printable(report.backup)}")
    if report.retries:
        lines.append(f"  another program wrote the file meanwhile; merged {report.retries} time(s)")
    return "\n".join(lines)


def normalized_fix(report: FixReport) -> str:
    """The advice after a repair: Docker Hub's login habit only when a Hub key was repaired."""
    advice = []
    if any(c.to_key == HUB_CANONICAL or c.section == "credHelpers" for c in report.changes):
        advice.append(
            "log in to Docker Hub with `docker login` (no argument) instead of "
            "`docker login docker.io`"
        )
    hosts = sorted({c.to_key for c in report.changes if c.to_key != HUB_CANONICAL} - {"docker.io"})
    if hosts:
        logins = ", ".join(f"`docker login {h}`" for h in hosts)
        advice.append(f"log in with the bare host name ({logins})")
    if not advice:
        return "Nothing to do."
    return "Nothing to do. To stop the writer from using the wrong key, " + "; ".join(advice) + "."


def describe_changes(report: FixReport) -> str:
    return "; ".join(f"{c.from_key} -> {c.to_key} ({c.action})" for c in report.changes)
