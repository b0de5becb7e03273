"""``regauthd doctor`` checks about the other clients' files: podman's and skopeo's auth files
(by containers' key rules) and whether they and the Docker config agree. Additive to
:mod:`regauthd.commands.doctor_checks`; nothing here changes a file.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
from pathlib import Path
from typing import Any

from regauthd.commands import mirrors
from regauthd.commands.doctor_checks import Verdict
from regauthd.dockerconfig import authfile
from regauthd.dockerconfig.backups import BackupStore
from regauthd.dockerconfig.findings import Finding
from regauthd.dockerconfig.fixer import fix_file
from regauthd.dockerconfig.jsontext import parse
from regauthd.dockerconfig.report import FixReport
from regauthd.probe.mirrorconf import finding


def auth_file_verdicts(docker_path: Path, docker_config: dict[str, Any] | None) -> list[Verdict]:
    """``auth_file_keys`` for each existing podman auth file, then ``clients_agree``."""
    out: list[Verdict] = []
    before: list[tuple[str, dict[str, Any]]] = []
    locations = authfile.podman_auth_files(os.environ, os.geteuid(), str(Path.home()))
    for location in locations:
        path = Path(location.path)
        if not path.is_file():
            continue
        with tempfile.TemporaryDirectory(prefix="regauthd-doctor-") as scratch:
            report = fix_file(
                path, backups=BackupStore(Path(scratch)), dry_run=True, rules=authfile.plan
            )
        verdict = _keys_verdict(path, report)
        if not location.read:
            # containers/common GetDefaultAuthFile: $DOCKER_CONFIG/config.json replaces it.
            verdict = dataclasses.replace(
                verdict,
                message=f"{verdict.message} (not read while DOCKER_CONFIG is set: podman and "
                "skopeo read $DOCKER_CONFIG/config.json first)",
            )
        out.append(verdict)
        if report.error is None and location.before_docker_config and report.before:
            before.append((str(path), parse(report.before, path)))
    if not before:
        return out
    claimed: set[str] = set()
    disagree: list[Finding] = []
    for path_text, data in before:
        mine = [r for r in authfile.registries_in(data) if r not in claimed]
        claimed.update(mine)
        disagree.extend(
            authfile.disagreement_findings(
                str(docker_path), docker_config or {}, path_text, data, registries=mine
            )
        )
    if not disagree:
        out.append(
            Verdict(
                "clients_agree",
                "ok",
                "podman/skopeo and the Docker CLI use the same credential for every registry "
                "both have one for",
            )
        )
    for problem in disagree:
        out.append(Verdict("clients_agree", "warning", problem.message, problem.fix))
    return out


def _keys_verdict(path: Path, report: FixReport) -> Verdict:
    check = "auth_file_keys"
    if report.error is not None:
        return Verdict(check, "not_checked", f"{path}: {report.error.reason}", "see the message")
    changes = report.changes
    errors = [f for f in report.findings if f.severity == "error"]
    if changes:
        reasons = "; ".join(f"{c.from_key} -> {c.to_key}: {c.reason}" for c in changes[:3])
        return Verdict(
            check,
            "problem",
            f"{path}: {len(changes)} key(s) not as `podman login` writes them ({reasons})",
            f"run `regauthd fix --auth-file {path}`",
        )
    if errors:
        first = errors[0]
        where = f" [{first.key}]" if first.key else ""
        return Verdict(check, "problem", f"{path}: {first.message}{where}", first.fix)
    return Verdict(check, "ok", f"{path}: every key is where podman and skopeo look")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """doctor's flags for the other clients' files (the mirrors' settings files)."""
    mirrors.add_arguments(parser)


def mirror_verdicts(args: argparse.Namespace) -> list[Verdict]:
    """``registry_mirrors``: each mirror dockerd or containerd pulls through, tried anonymously
    as they do. Raises :class:`regauthd.commands.mirrors.MirrorUsageError`."""
    check = "registry_mirrors"
    report = mirrors.check(args.daemon_json, args.containerd_certs, ca_file=args.ca_file)
    out = [Verdict(check, "not_checked", f.message, f.fix) for f in report.errors]
    for mirror, outcome, detail in report.results:
        found = finding(mirror, outcome, detail)
        if found is None:
            out.append(
                Verdict(
                    check, "ok", f"{mirror.url} ({mirror.engine}): anonymous pulls work ({detail})"
                )
            )
        else:
            out.append(
                Verdict(
                    check, "warning", f"{mirror.url} ({mirror.engine}): {found.message}", found.fix
                )
            )
    if not out:
        out.append(Verdict(check, "not_applicable", "no registry mirror is configured"))
    return out
