"""Registry mirrors for ``check`` and ``doctor``: read the engines' files, try an anonymous pull.

dockerd's ``/etc/docker/daemon.json`` (``registry-mirrors``, ``insecure-registries``) and
containerd's ``/etc/containerd/certs.d/*/hosts.toml``; the rules are in
:mod:`regauthd.probe.mirrorconf`, the requests in :mod:`regauthd.probe.mirror` (imported only
when a mirror is configured: ``check`` without mirrors loads no HTTP client).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

from regauthd.dockerconfig import file as safefile
from regauthd.dockerconfig.findings import Finding
from regauthd.dockerconfig.jsontext import ConfigFileError
from regauthd.probe.mirrorconf import (
    Mirror,
    MirrorConfigError,
    Outcome,
    finding,
    mirrors_from_daemon_json,
    mirrors_from_hosts_toml,
)

DAEMON_JSON = Path("/etc/docker/daemon.json")
CONTAINERD_CERTS = Path("/etc/containerd/certs.d")


class MirrorUsageError(Exception):
    """A file named on the command line does not exist."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--daemon-json",
        metavar="PATH",
        type=Path,
        default=DAEMON_JSON,
        help="dockerd's settings, whose registry-mirrors are tried anonymously as dockerd "
        "does (default: %(default)s, when it exists)",
    )
    parser.add_argument(
        "--containerd-certs",
        metavar="DIR",
        type=Path,
        default=CONTAINERD_CERTS,
        help="containerd's certs.d directory; each */hosts.toml's pull mirrors are tried "
        "(default: %(default)s, when it exists)",
    )


@dataclass(slots=True)
class MirrorReport:
    """What was configured and what each mirror answered."""

    results: list[tuple[Mirror, Outcome, str]] = field(default_factory=list)
    errors: list[Finding] = field(default_factory=list)

    def findings_by_source(self) -> dict[str, list[Finding]]:
        out: dict[str, list[Finding]] = {}
        for f in self.errors:
            out.setdefault(f.path, []).append(f)
        for mirror, outcome, detail in self.results:
            found = finding(mirror, outcome, detail)
            if found is not None:
                out.setdefault(found.path, []).append(found)
        return out


def configured(daemon_json: Path, certs: Path) -> tuple[list[Mirror], list[Finding]]:
    """Every configured mirror, and the files that could not be read (as errors)."""
    if daemon_json != DAEMON_JSON and not daemon_json.exists():
        raise MirrorUsageError(f"--daemon-json {daemon_json}: no such file")
    if certs != CONTAINERD_CERTS and not certs.is_dir():
        raise MirrorUsageError(f"--containerd-certs {certs}: no such directory")
    mirrors: list[Mirror] = []
    errors: list[Finding] = []
    files: list[tuple[Path, str | None]] = [(daemon_json, None)]
    if certs.is_dir():
        files += [(d / "hosts.toml", d.name) for d in sorted(certs.iterdir()) if d.is_dir()]
    for path, registry in files:
        try:
            snap = safefile.load(path)
            if not snap.exists:
                continue
            text = snap.data.decode("utf-8", errors="replace")
            if registry is None:
                mirrors += mirrors_from_daemon_json(text, str(path))
            else:
                mirrors += mirrors_from_hosts_toml(text, str(path), registry)
        except (ConfigFileError, MirrorConfigError) as exc:
            errors.append(
                Finding(
                    "mirror_config_unreadable",
                    "error",
                    str(path),
                    None,
                    f"not checked: {exc}",
                    "fix the file (the engine cannot use it either)",
                )
            )
    return mirrors, errors


def check(daemon_json: Path, certs: Path, *, ca_file: str | None = None) -> MirrorReport:
    """Read the engines' files and try each mirror anonymously. Raises MirrorUsageError."""
    mirrors, errors = configured(daemon_json, certs)
    report = MirrorReport(errors=errors)
    if mirrors:
        import asyncio  # noqa: PLC0415 - only when a mirror is configured

        from regauthd.probe.mirror import check_mirrors  # noqa: PLC0415 (httpx only if needed)

        report.results = asyncio.run(check_mirrors(mirrors, ca_file=ca_file))
    return report
