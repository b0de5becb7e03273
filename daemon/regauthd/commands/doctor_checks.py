"""The checks of ``regauthd doctor`` that look at files and programs on this machine: which
credential file each client uses, root's config after ``sudo docker login``, key format, and
the credential helpers. Each returns :class:`Verdict` values; nothing here changes a file.
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from regauthd.commands.doctor_verdict import FAILING, Status, Verdict
from regauthd.dockerconfig import audit, jsontext
from regauthd.dockerconfig import file as dockerconfig
from regauthd.dockerconfig.backups import BackupStore
from regauthd.dockerconfig.expiry import (
    ExpiryState,
    describe,
    judge,
    relogin_command,
    what_carried_it,
)
from regauthd.dockerconfig.fixer import fix_file
from regauthd.dockerconfig.helperprogram import helper_name_problem
from regauthd.dockerconfig.jsontext import ConfigFileError
from regauthd.dockerconfig.stored_expiry import stored_expiries
from regauthd.redact import redact_text
from regauthd.settingsfile import expiry_lead_time

HELPER_TIMEOUT_S = 10.0


def _owner(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def config_file(path: Path, explicit: bool) -> tuple[Verdict, dict[str, Any] | None]:
    """Which config.json the Docker CLI reads, why, its mode and owner; and its content."""
    if explicit:
        why = "named with --docker-config"
    elif os.environ.get("DOCKER_CONFIG"):
        why = "from $DOCKER_CONFIG"
    else:
        why = "the default, ~/.docker (no $DOCKER_CONFIG)"
    check = "config_file"
    try:
        snap = dockerconfig.load(path)
        data = jsontext.parse(snap.data, path) if snap.exists else None
    except ConfigFileError as exc:
        return Verdict(check, "problem", f"{path} ({why}): {exc.reason}", "see the message"), None
    env_note = ""
    if os.environ.get("DOCKER_AUTH_CONFIG"):
        env_note = "; $DOCKER_AUTH_CONFIG is set too, and Docker 29 reads it first"
    if data is None:
        return (
            Verdict(
                check,
                "problem",
                f"Docker reads {path} ({why}), but it does not exist: no credentials are "
                f"stored{env_note}",
                "log in: `docker login` for Docker Hub, `docker login HOST` for others",
            ),
            None,
        )
    mode = stat.S_IMODE(snap.mode)
    owner = _owner(snap.uid)
    text = f"Docker reads {path} ({why}); mode {mode:04o}, owner {owner}{env_note}"
    if snap.uid != os.geteuid():
        return (
            Verdict(
                check,
                "warning",
                f"{text}: it belongs to {owner}, not to you, so `docker login` may fail to "
                "update it",
                f"sudo chown {_owner(os.geteuid())} {path}",
            ),
            data,
        )
    if mode & 0o077:
        return Verdict(check, "warning", f"{text}: readable by others", f"chmod 600 {path}"), data
    return Verdict(check, "ok", text), data


def podman_auth_file() -> Verdict:
    """Which file podman and skopeo read first, by containers' own order
    (:func:`regauthd.dockerconfig.authfile.podman_auth_files`): ``$REGISTRY_AUTH_FILE``; else,
    with ``$DOCKER_CONFIG`` set, the Docker config itself (the runtime auth.json is then not read
    at all); else ``$XDG_RUNTIME_DIR/containers/auth.json``; then the Docker config."""
    from regauthd.dockerconfig.authfile import podman_auth_files  # noqa: PLC0415

    check = "podman_auth_file"
    explicit = os.environ.get("REGISTRY_AUTH_FILE")
    if explicit:
        exists = Path(explicit).is_file()
        return Verdict(
            check,
            "ok" if exists else "warning",
            f"podman and skopeo read $REGISTRY_AUTH_FILE ({explicit})"
            + ("" if exists else ", which does not exist"),
            None if exists else "unset REGISTRY_AUTH_FILE or log in with `podman login`",
        )
    places = podman_auth_files(os.environ, os.geteuid(), str(Path.home()))
    docker_config = os.environ.get("DOCKER_CONFIG")
    if docker_config:
        ignored = [p.path for p in places if not p.read and Path(p.path).is_file()]
        text = (
            f"podman and skopeo read $DOCKER_CONFIG/config.json ({docker_config}) first, "
            "because DOCKER_CONFIG is set"
        )
        if ignored:
            return Verdict(
                check,
                "warning",
                text + f"; {', '.join(ignored)} (written by `podman login`) is not read at all",
                "log in again with DOCKER_CONFIG set, or unset DOCKER_CONFIG for podman",
            )
        return Verdict(check, "ok", text)
    first = next((p for p in places if p.before_docker_config and Path(p.path).is_file()), None)
    if first is not None:
        return Verdict(
            check,
            "ok",
            f"podman and skopeo read {first.path} first (written by `podman login`), then the "
            "Docker config",
        )
    return Verdict(
        check,
        "not_applicable",
        f"no {places[0].path}: podman and skopeo read the Docker config (keys as Docker "
        "writes them)",
    )


def root_config(
    user_path: Path, user_data: dict[str, Any] | None, root_path: Path, explicit: bool
) -> Verdict:
    """Credentials only in root's config (`sudo docker login`), or root's config unreadable."""
    check = "root_config"
    user_has = audit.has_credentials(user_data or {})
    try:
        snap = dockerconfig.load(root_path)
        root_data = jsontext.parse(snap.data, root_path) if snap.exists else None
    except ConfigFileError as exc:
        if user_has and not explicit:
            return Verdict(
                check,
                "not_applicable",
                f"your own config holds credentials; root's ({root_path}) is not needed",
            )
        return Verdict(
            check,
            "not_checked",
            f"cannot read root's config {root_path} ({exc.reason}), so credentials stored by "
            "`sudo docker login` were not checked",
            "run `sudo regauthd doctor`, or pass a readable copy with --root-docker-config FILE",
        )
    if root_data is None:
        return Verdict(check, "not_applicable", f"no {root_path}: `sudo docker login` not used")
    if os.path.realpath(root_path) == os.path.realpath(user_path):
        return Verdict(check, "not_applicable", "your config is root's config")
    found = audit.sudo_trap_findings("your config", user_data or {}, str(root_path), root_data)
    if found:
        return Verdict(check, "problem", found[0].message, found[0].fix)
    return Verdict(check, "ok", f"{root_path} holds no credentials that only root has")


def config_keys(path: Path) -> Verdict:
    """Key format: would `regauthd fix` change something, and why; what no renaming fixes."""
    check = "config_keys"
    with tempfile.TemporaryDirectory(prefix="regauthd-doctor-") as scratch:
        report = fix_file(path, backups=BackupStore(Path(scratch)), dry_run=True)
    if report.error is not None:
        return Verdict(check, "not_checked", f"{path}: {report.error.reason}", "see the message")
    errors = [f for f in report.findings if f.severity == "error"]
    if report.changed:
        reasons = "; ".join(f"{c.from_key} -> {c.to_key}: {c.reason}" for c in report.changes[:3])
        return Verdict(
            check,
            "problem",
            f"{len(report.changes)} key(s) stored where some client never looks ({reasons})",
            "run `regauthd fix` (`regauthd fix --dry-run` shows the change first)",
        )
    if errors:
        first = errors[0]
        where = f" [{first.key}]" if first.key else ""
        return Verdict(check, "problem", f"{first.message}{where}", first.fix)
    warnings = [f for f in report.findings if f.code not in {"file_mode", "owner_mismatch"}]
    if warnings:
        return Verdict(check, "warning", warnings[0].message, warnings[0].fix)
    return Verdict(check, "ok", "every key is where the Docker CLI, podman and crane look")


def credential_helpers(config: dict[str, Any] | None) -> list[Verdict]:
    """Each helper the config names: on PATH, and answering `list` in this session."""
    if not config:
        return []
    names: dict[str, None] = {}
    store = config.get("credsStore")
    if isinstance(store, str) and store:
        names[store] = None
    helpers = config.get("credHelpers")
    if isinstance(helpers, dict):
        names.update(dict.fromkeys(v for v in helpers.values() if isinstance(v, str) and v))
    return [_helper(name) for name in names]


def _helper(name: str) -> Verdict:
    check = "credential_helper"
    program = f"docker-credential-{name}"
    refused = helper_name_problem(name)
    if refused is not None:  # never looked up: a name holding "/" is a path to a program
        return Verdict(
            check, "problem", refused, "name a helper installed as docker-credential-<name>"
        )
    found = shutil.which(program)
    if found is None:
        if name in {"desktop", "desktop.exe"}:
            return Verdict(
                check,
                "problem",
                f"`{program}` (Docker Desktop's helper) is not on PATH: Desktop was "
                "uninstalled or is not running here, and every login through it fails",
                'remove `"credsStore": "desktop"` from the Docker config, then log in again',
            )
        return Verdict(
            check,
            "problem",
            f"the config names the credential helper `{name}`, but `{program}` is not on PATH",
            f"install {program}, or remove it from the config and log in again",
        )
    try:
        proc = subprocess.run(
            [found, "list"],
            input="",
            capture_output=True,
            text=True,
            timeout=HELPER_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return Verdict(
            check,
            "problem",
            f"`{program} list` did not answer within {HELPER_TIMEOUT_S:g} s (a locked keychain, "
            "or gpg-agent waiting for a passphrase no one can type here)",
            "unlock the keychain or gpg key in this session, then try again",
        )
    if proc.returncode != 0:
        said = redact_text(" ".join(f"{proc.stdout} {proc.stderr}".split())[:300])
        hint = _helper_hint(name, said)
        return Verdict(
            check,
            "problem",
            f"`{program} list` failed (exit status {proc.returncode}): {said or 'no message'}",
            hint,
        )
    return Verdict(check, "ok", f"`{program}` ({found}) answers in this session")


def _helper_hint(name: str, said: str) -> str:
    if name == "pass" and ("not initialized" in said or "password store is empty" in said):
        return "set up pass: `gpg --gen-key`, then `pass init <your GPG key id>`"
    if name == "secretservice" and ("dbus" in said.lower() or "secret" in said.lower()):
        return "secretservice needs a desktop session (D-Bus and a keyring); use pass on servers"
    return "make the helper work in this session (unlock it), then run `regauthd doctor` again"


def credential_expiry(config: dict[str, Any] | None) -> list[Verdict]:
    """When each stored credential expires, read from the credential itself (ECR passwords, JWT
    ``exp``; helpers asked as a client would): ``expires in 2 h 10 m`` is ok, within an hour a
    warning, ``expired 3 h ago`` a problem. Credentials with no readable expiry: one line."""
    if not config:
        return []
    check = "credential_expiry"
    now = datetime.now(UTC)
    lead = timedelta(seconds=expiry_lead_time())
    out: list[Verdict] = []
    unknown: list[str] = []
    for item in stored_expiries(config):
        if item.error is not None:
            out.append(
                Verdict(
                    check,
                    "not_checked",
                    f"the credential could not be read: {item.error}",
                    "make the credential helper work in this session",
                    item.key,
                )
            )
            continue
        state = judge(item.expiry, now, lead)
        if state is ExpiryState.UNKNOWN:
            unknown.append(item.key)
            continue
        status: Status = "ok"
        if state is ExpiryState.EXPIRED:
            status = "problem"
        elif state is ExpiryState.EXPIRING:
            status = "warning"
        where = f"credential helper `{item.helper}`" if item.helper else "the config file"
        text = (
            f"user {item.username}: {describe(item.expiry, now)} (read from "
            f"{what_carried_it(item.expiry)}, stored in {where}; the signature is not verified)"
        )
        fix = f"log in again: `{relogin_command(item.key)}`" if status != "ok" else None
        out.append(Verdict(check, status, text, fix, item.key))
    if unknown:
        out.append(
            Verdict(
                check,
                "not_applicable",
                f"no readable expiry for {', '.join(unknown)}: plain passwords or tokens that "
                "carry no date (nothing is guessed)",
            )
        )
    return out


# Verdict, Status and FAILING live in doctor_verdict (pure); importing them from here still works.
__all__ = [
    "FAILING",
    "HELPER_TIMEOUT_S",
    "Status",
    "Verdict",
    "config_file",
    "config_keys",
    "credential_expiry",
    "credential_helpers",
    "podman_auth_file",
    "root_config",
]
