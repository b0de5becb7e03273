"""``regauthd fix``: normalize Docker configs so every client finds the credentials.

``regauthd check`` is this command's dry run with its own exit rule
(:mod:`regauthd.commands.check`): both go through :func:`run`.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pwd
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from regauthd.commands import EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE, documents
from regauthd.dockerconfig import audit, authfile, jsontext, report
from regauthd.dockerconfig import file as dockerconfig
from regauthd.dockerconfig.backups import BackupStore
from regauthd.dockerconfig.credhelper import HelperPolicy
from regauthd.dockerconfig.findings import Finding
from regauthd.dockerconfig.fixer import fix_file, read
from regauthd.dockerconfig.helperprogram import SAFE_PATH
from regauthd.dockerconfig.jsontext import ConfigFileError
from regauthd.dockerconfig.report import FixReport
from regauthd.dockerconfig.stores import HELPER_TIMEOUT_S
from regauthd.settingsfile import expiry_lead_time, resolve_state_dir
from regauthd.terminal import json_line, printable

if TYPE_CHECKING:
    from regauthd.dockerconfig.expiry import CredentialExpiry

ROOT_CONFIG = Path("/root/.docker/config.json")


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--docker-config",
        metavar="PATH",
        action="append",
        default=[],
        help="a Docker config directory (as DOCKER_CONFIG) or config.json file; repeatable "
        "(default: $DOCKER_CONFIG, else ~/.docker)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per line on stdout")
    parser.add_argument(
        "--root-docker-config",
        metavar="FILE",
        type=Path,
        default=ROOT_CONFIG,
        help="root's config, compared to catch `sudo docker login` (default: %(default)s)",
    )
    parser.add_argument(
        "--auth-file",
        metavar="PATH",
        action="append",
        default=[],
        help="a podman/skopeo auth.json, judged by containers' key rules (where docker.io IS "
        "Docker Hub's key); repeatable (default: $REGISTRY_AUTH_FILE, "
        "$XDG_RUNTIME_DIR/containers/auth.json and ~/.config/containers/auth.json, when they "
        "exist)",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser)
    parser.add_argument(
        "--dry-run", action="store_true", help="print a redacted unified diff; write nothing"
    )
    parser.add_argument(
        "--state-dir",
        metavar="DIR",
        type=Path,
        default=None,
        help="where backups go (default: /var/lib/regauthd for root, "
        "else $XDG_STATE_HOME/regauthd)",
    )
    parser.add_argument(
        "--erase-old-helper-entries",
        action="store_true",
        help="after re-keying a secret in a credential helper, erase the old URL",
    )
    documents.add_arguments(parser, fixing=True)


class UsageError(Exception):
    """A command-line value that cannot work; exit status 2."""


def config_paths(values: list[str]) -> list[tuple[Path, bool]]:
    """(config.json path, named explicitly) for each --docker-config, or the default."""
    if not values:
        return [(dockerconfig.config_path(None), False)]
    paths = []
    for value in values:
        p = dockerconfig.config_path(value)
        if not p.exists() and not p.is_symlink() and not p.parent.is_dir():
            raise UsageError(f"--docker-config {value}: no such file or directory")
        paths.append((p, True))
    return paths


def extra_findings(
    paths: list[Path], root_config: Path, *, explicit_root: bool = False
) -> list[tuple[str, tuple[Finding, ...]]]:
    """DOCKER_AUTH_CONFIG problems, and credentials that only root has (`sudo docker login`)."""
    out: list[tuple[str, tuple[Finding, ...]]] = []
    env = os.environ.get("DOCKER_AUTH_CONFIG")
    if env:
        out.append((audit.ENV_LABEL, audit.auth_env_findings(env)))
    try:
        root_data = _read(root_config)
    except ConfigFileError as exc:
        # Not being able to look is not "all clear": say so whenever root's config matters
        # (it was named, or the user's own configs hold no credential).
        if explicit_root or not any(audit.has_credentials(_read_quietly(p) or {}) for p in paths):
            out.append((str(root_config), (audit.root_unreadable_finding(exc.path, exc.reason),)))
        return out
    if root_data is None:
        return out
    candidates = list(paths)
    sudo_user = os.environ.get("SUDO_USER")
    if os.geteuid() == 0 and sudo_user and sudo_user != "root":
        try:
            home = Path(pwd.getpwnam(sudo_user).pw_dir)
            candidates.append(home / ".docker" / "config.json")
        except KeyError:
            pass
    seen: set[Path] = set()
    for p in candidates:
        real = p.resolve()
        if real == root_config.resolve() or real in seen:
            continue
        seen.add(real)
        data = _read_quietly(p)
        found = audit.sudo_trap_findings(str(p), data or {}, str(root_config), root_data)
        if found:
            out.append((str(p), found))
    return out


def _read(path: Path) -> dict[str, object] | None:
    snap = read(path)
    return jsontext.parse(snap.data, path) if snap.exists else None


def _read_quietly(path: Path) -> dict[str, object] | None:
    try:
        return _read(path)
    except ConfigFileError:
        return None


@dataclass(frozen=True, slots=True)
class Mode:
    """How one run goes: ``fix``, ``fix --dry-run`` or ``check``."""

    name: str
    """The command, as usage errors name it."""
    dry_run: bool
    changes_are_problems: bool = False
    """A config that a fix would change counts as a problem (exit 1): ``check``'s rule."""
    erase_old_helper_entries: bool = False
    read_expiry: bool = False
    """Also read when each stored credential expires (``check``): expired is an error,
    expiring within the lead time a warning."""


def command(args: argparse.Namespace) -> int:
    if documents.wanted(args):
        return documents.run(args, fixing=True)
    mode = Mode(
        "fix",
        dry_run=args.dry_run,
        changes_are_problems=args.dry_run,  # a dry run with changes pending leaves problems
        erase_old_helper_entries=args.erase_old_helper_entries,
    )
    return run(args, mode, state_dir=resolve_state_dir(args.state_dir))


def run(args: argparse.Namespace, mode: Mode, *, state_dir: Path) -> int:
    """Fix (or, in a dry run, look at) every config ``args`` names; print; the exit status."""
    try:
        paths = config_paths(args.docker_config)
    except UsageError as exc:
        print(f"regauthd {mode.name}: {printable(exc)}", file=sys.stderr)
        return EXIT_USAGE
    backups = BackupStore(state_dir)
    explicit_root = args.root_docker_config != ROOT_CONFIG
    extras = extra_findings(
        [p for p, _ in paths], args.root_docker_config, explicit_root=explicit_root
    )
    # As root, a user's config has its helpers run as that user (regauthd.dockerconfig.credhelper).
    helpers = HelperPolicy(path=os.environ.get("PATH") or SAFE_PATH, timeout=HELPER_TIMEOUT_S)
    ok = True
    for path, explicit in paths:
        result = fix_file(
            path,
            backups=backups,
            dry_run=mode.dry_run,
            erase_old_helper_entries=mode.erase_old_helper_entries,
            helper_runner=helpers.for_config(path),
        )
        expiries = None
        if mode.read_expiry:
            result, expiries = with_expiry(result)
        ok &= result.clean and not (mode.changes_are_problems and result.changed)
        more = any(source == str(path) and findings for source, findings in extras)
        emit(result, args, dry_run=mode.dry_run, explicit=explicit or more, expiries=expiries)
    ok &= _auth_files(args, mode, backups, [p for p, _ in paths])
    for source, findings in extras:
        ok &= not any(f.severity == "error" for f in findings)
        emit_findings(source, findings, args)
    return EXIT_OK if ok else EXIT_PROBLEMS


def with_expiry(result: FixReport) -> tuple[FixReport, ExpiryReading | None]:
    """``result`` with the expiry findings of the config it read, and what was read."""
    if result.before is None or result.error is not None:
        return result, None
    from regauthd.dockerconfig.expiry import expiry_findings  # noqa: PLC0415 - check only
    from regauthd.dockerconfig.stored_expiry import stored_expiries  # noqa: PLC0415

    try:
        config = jsontext.parse(result.before, result.path)
    except ConfigFileError:
        return result, None
    lead = timedelta(seconds=expiry_lead_time())
    reading = ExpiryReading(stored_expiries(config), datetime.now(UTC), lead)
    found = expiry_findings(str(result.path), reading.items, reading.now, reading.lead)
    return dataclasses.replace(result, findings=result.findings + found), reading


@dataclass(frozen=True, slots=True)
class ExpiryReading:
    """The expiries one config's credentials carry, read at ``now``."""

    items: list[CredentialExpiry]
    now: datetime
    lead: timedelta
    """``[expiry] lead_time``: how early a credential counts as expiring."""


def auth_file_paths(values: list[str]) -> list[authfile.AuthFileLocation]:
    """Each --auth-file (read before the Docker config), or podman's own ones here."""
    if values:
        return [authfile.AuthFileLocation(str(Path(v).expanduser()), True) for v in values]
    return authfile.podman_auth_files(os.environ, os.geteuid(), str(Path.home()))


def _auth_files(
    args: argparse.Namespace, mode: Mode, backups: BackupStore, configs: list[Path]
) -> bool:
    """podman's auth files by containers' rules, then where they and Docker's config disagree."""
    ok = True
    read: list[tuple[Path, dict[str, object]]] = []
    for location in auth_file_paths(args.auth_file):
        path = Path(location.path)
        if not args.auth_file and not os.path.exists(path):
            continue  # (os.path.exists: a file this user may not even look at is not theirs)
        result = fix_file(path, backups=backups, dry_run=mode.dry_run, rules=authfile.plan)
        ok &= result.clean and not (mode.changes_are_problems and result.changed)
        emit(result, args, dry_run=mode.dry_run, explicit=True)
        data = _read_quietly(path)
        if data is not None and location.before_docker_config:
            read.append((path, data))
    for config in configs:
        docker = _read_quietly(config)
        if docker is None:
            continue
        claimed: set[str] = set()
        for path, data in read:  # podman uses the first file that has the registry
            mine = [r for r in authfile.registries_in(data) if r not in claimed]
            claimed.update(mine)
            found = authfile.disagreement_findings(
                str(config), docker, str(path), data, registries=mine
            )
            if found:
                emit_findings(str(config), found, args)
    return ok


def emit(
    result: FixReport,
    args: argparse.Namespace,
    *,
    dry_run: bool,
    explicit: bool,
    expiries: ExpiryReading | None = None,
) -> None:
    if args.json:
        obj = report.as_json(result, dry_run=dry_run, with_diff=dry_run)
        if expiries is not None:
            obj["expiry"] = [i.as_dict(expiries.now) for i in expiries.items]
        _print_json_line(obj)
        return
    if result.before is None and result.error is None:
        note = "no config.json here" + ("" if explicit else " (nothing to do)")
        print(f"{printable(result.path)}: {note}", file=sys.stderr)
        return
    print(report.as_text(result, dry_run=dry_run))
    if dry_run and result.changed:
        print(report.redacted_diff(result), end="")
    if expiries is not None:
        from regauthd.dockerconfig.expiry import expiry_note  # noqa: PLC0415 - check only

        # Said once per file, on stderr: it is no finding, and `clean` stays the only word.
        said = expiry_note(expiries.items, expiries.now, expiries.lead)
        if said:
            print(f"{result.path}: {said}", file=sys.stderr)


def emit_findings(source: str, findings: tuple[Finding, ...], args: argparse.Namespace) -> None:
    if args.json:
        _print_json_line(report.findings_json(source, findings))
        return
    if not findings:
        return
    print(f"{printable(source)}:")
    for f in findings:
        print(f.as_text(indent="  "))


def _print_json_line(obj: dict[str, Any]) -> None:
    print(json_line(obj), flush=True)
