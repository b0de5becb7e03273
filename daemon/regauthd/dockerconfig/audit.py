"""Findings about a config's surroundings: file mode and owner, root's config, DOCKER_AUTH_CONFIG.

Pure functions over numbers and parsed data; the caller gathers them from disk and environment.
"""

from __future__ import annotations

import json
import stat
from collections.abc import Mapping
from typing import Any

from regauthd.dockerconfig.auth import credential_from_entry, helper_name_for
from regauthd.dockerconfig.findings import Finding
from regauthd.dockerconfig.keys import HUB_CANONICAL, KeyKind, classify
from regauthd.dockerconfig.validate import validate

ENV_LABEL = "$DOCKER_AUTH_CONFIG"


def file_findings(path: str, mode: int, uid: int, dir_uid: int | None) -> tuple[Finding, ...]:
    """Mode readable by group/others; owner different from the directory's owner."""
    found = []
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        found.append(
            Finding(
                "file_mode",
                "warning",
                path,
                None,
                f"the file is readable or writable by group or others (mode {mode:04o}); it "
                "holds registry credentials.",
                f"chmod 600 {path}",
            )
        )
    if dir_uid is not None and uid != dir_uid:
        found.append(
            Finding(
                "owner_mismatch",
                "warning",
                path,
                None,
                f"the file belongs to uid {uid} but its directory to uid {dir_uid} (often left by "
                "`sudo docker login`); the directory's owner may not be able to read or update it.",
                f"sudo chown {dir_uid} {path}",
            )
        )
    return tuple(found)


def has_credentials(config: Mapping[str, Any]) -> bool:
    """True when a client would find at least one credential (inline, or via a helper)."""
    auths = config.get("auths")
    if isinstance(auths, dict):
        for key, entry in auths.items():
            if not isinstance(entry, dict):
                continue
            if credential_from_entry(entry) is not None or helper_name_for(config, key):
                return True
    helpers = config.get("credHelpers")
    return isinstance(helpers, dict) and bool(helpers)


def sudo_trap_findings(
    user_path: str, user_config: Mapping[str, Any], root_path: str, root_config: Mapping[str, Any]
) -> tuple[Finding, ...]:
    """Credentials only in root's config: `sudo docker login` stored them out of reach."""
    if has_credentials(user_config) or not has_credentials(root_config):
        return ()
    return (
        Finding(
            "root_only_credentials",
            "error",
            user_path,
            None,
            f"this config has no credentials, but root's ({root_path}) has: `sudo docker login` "
            "stored them where a non-root `docker push` never looks.",
            "run `docker login` again without sudo (or add the user to the docker group "
            "instead of using sudo)",
        ),
    )


def root_unreadable_finding(root_path: str, reason: str) -> Finding:
    """Root's config could not be read: credentials `sudo docker login` stored were not checked."""
    return Finding(
        "root_config_unreadable",
        "error",
        root_path,
        None,
        f"not checked: root's config cannot be read ({reason}), so credentials that "
        "`sudo docker login` stored there were not compared with this user's.",
        "run `sudo regauthd check`, or pass a readable copy with `--root-docker-config FILE`",
    )


def auth_env_findings(value: str, *, label: str = ENV_LABEL) -> tuple[Finding, ...]:
    """Problems in ``DOCKER_AUTH_CONFIG``, which Docker v29 reads before config.json.

    ``label`` names the variable in findings (``--env NAME`` may name another one).
    """
    try:
        data = json.loads(value)
    except json.JSONDecodeError as exc:
        return (
            Finding(
                "env_invalid_json",
                "error",
                label,
                None,
                f"is not valid JSON (line {exc.lineno} column {exc.colno}: {exc.msg}); "
                "Docker refuses it.",
                'set it to {"auths": {...}} or unset it',
            ),
        )
    if not isinstance(data, dict):
        return (
            Finding(
                "env_wrong_type",
                "error",
                label,
                None,
                "is not a JSON object.",
                'set it to {"auths": {...}} or unset it',
            ),
        )
    found: list[Finding] = []
    unknown = sorted(set(data) - {"auths"})
    if unknown:
        found.append(
            Finding(
                "env_unknown_fields",
                "error",
                label,
                None,
                f"has field(s) {', '.join(unknown)} besides `auths`; Docker refuses unknown "
                "fields here.",
                "keep only the `auths` object",
            )
        )
    auths = data.get("auths", {})
    for key in auths if isinstance(auths, dict) else ():
        kind = classify(key).kind
        if kind in {KeyKind.HUB_ALIAS, KeyKind.HUB_WEBSITE, KeyKind.REGISTRY_ALIAS}:
            want = classify(key).canonical
            found.append(
                Finding(
                    "env_noncanonical_key",
                    "error",
                    label,
                    key,
                    f"Docker does not find credentials under {key!r} here; regauthd cannot "
                    "rewrite an environment variable.",
                    f"use the key {want!r} in DOCKER_AUTH_CONFIG"
                    + (" (Docker Hub's only key)" if want == HUB_CANONICAL else ""),
                )
            )
    for f in validate({"auths": auths}, path=label):
        if f.code != "empty_placeholder":
            found.append(f)
    return tuple(found)
