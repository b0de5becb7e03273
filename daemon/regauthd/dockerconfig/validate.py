"""What is wrong with a config that no renaming fixes: entries Docker refuses or ignores, and
credentials that clients would read differently. Pure, like :mod:`~regauthd.dockerconfig.normalize`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from regauthd.dockerconfig.auth import decode_auth, helper_name_for
from regauthd.dockerconfig.findings import Finding, Severity
from regauthd.dockerconfig.keys import HUB_CANONICAL, KeyInfo, KeyKind, classify

SECRET_FIELDS = ("auth", "identitytoken", "registrytoken", "username", "password")
STRING_FIELDS = (*SECRET_FIELDS, "serveraddress", "email")


def login_command(info: KeyInfo) -> str:
    """The `docker login` that writes the key Docker reads: no argument for Docker Hub."""
    return "docker login" if info.is_hub else f"docker login {info.host}"


def entry_identity(entry: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    """What makes an entry's credential what it is; empty for a placeholder."""
    return tuple((f, entry[f]) for f in SECRET_FIELDS if entry.get(f) not in (None, ""))


def conflict_findings(config: Mapping[str, Any], path: str) -> tuple[Finding, ...]:
    helpers = config.get("credHelpers")
    if not isinstance(helpers, dict):
        return ()
    hub = {
        k: v
        for k, v in helpers.items()
        if isinstance(v, str) and classify(k).kind in {KeyKind.HUB_CANONICAL, KeyKind.HUB_ALIAS}
    }
    if len(set(hub.values())) <= 1:
        return ()
    listing = ", ".join(f"{k!r}: {v!r}" for k, v in hub.items())
    return (
        Finding(
            "credhelpers_hub_disagree",
            "error",
            path,
            HUB_CANONICAL,
            f"credHelpers name different helpers for Docker Hub ({listing}); Docker uses the "
            f"one under {HUB_CANONICAL!r}, podman the one under 'docker.io'.",
            "keep one helper and set it under both 'https://index.docker.io/v1/' and 'docker.io'",
        ),
    )


def validate(config: Mapping[str, Any], *, path: str = "config.json") -> tuple[Finding, ...]:
    """Everything wrong with a parsed config that normalization cannot repair."""
    found: list[Finding] = []

    def add(code: str, severity: Severity, key: str | None, message: str, fix: str) -> None:
        found.append(Finding(code, severity, path, key, message, fix))

    auths = config.get("auths", {})
    if not isinstance(auths, dict):
        add(
            "wrong_type",
            "error",
            None,
            "`auths` is not a JSON object; Docker cannot load the file at all.",
            "make `auths` an object of registry -> entry, or remove it",
        )
        auths = {}
    store = config.get("credsStore")
    if store is not None and not isinstance(store, str):
        add(
            "wrong_type",
            "error",
            None,
            "`credsStore` is not a string; Docker cannot load the file.",
            'set it to a helper name such as "pass", or remove it',
        )
    helpers = config.get("credHelpers")
    if helpers is not None and (
        not isinstance(helpers, dict) or not all(isinstance(v, str) for v in helpers.values())
    ):
        add(
            "wrong_type",
            "error",
            None,
            "`credHelpers` is not an object of registry -> helper "
            "name strings; Docker cannot load the file.",
            "fix or remove `credHelpers`",
        )

    for key, entry in auths.items():
        info = classify(key)
        if not isinstance(entry, dict):
            add(
                "wrong_type",
                "error",
                key,
                "the entry is not a JSON object; Docker cannot load the file at all.",
                f"remove the entry for {key!r} and log in again",
            )
            continue
        bad = [f for f in STRING_FIELDS if f in entry and not isinstance(entry[f], str)]
        if bad:
            add(
                "wrong_type",
                "error",
                key,
                f"field(s) {', '.join(bad)} are not strings; Docker cannot load the file at all.",
                f"remove the entry for {key!r} and log in again",
            )
            continue
        auth = entry.get("auth")
        if isinstance(auth, str) and auth:
            try:
                decode_auth(auth)
            except ValueError as exc:
                code = {
                    "`auth` is not valid base64": "auth_not_base64",
                    "`auth` has an empty user name": "auth_empty_username",
                }.get(str(exc), "auth_no_colon")
                add(
                    code,
                    "error",
                    key,
                    f'{exc}; Docker warns "Invalid auth configuration file" and stops reading '
                    "`auths` at this entry, so it may also lose other registries' credentials "
                    "(which ones changes from run to run: Go reads the entries in random order).",
                    f"remove the entry for {key!r}, then `{login_command(info)}`",
                )
        if entry.get("password") not in (None, ""):
            add(
                "plaintext_password",
                "warning",
                key,
                "the password is stored in plain "
                "`username`/`password` fields (podman ignores them).",
                f"`{login_command(info).replace('login', 'logout')}` then `{login_command(info)}` "
                "to store it as "
                "`auth`, or configure a credential helper",
            )
        if not entry_identity(entry) and helper_name_for(config, key) is None:
            masks = " (podman even stops looking at other Hub keys)" if info.is_hub else ""
            add(
                "empty_placeholder",
                "error",
                key,
                "the entry is empty and no credential helper "
                f"is configured: no client has a credential for this registry{masks}.",
                f"`{login_command(info)}` again, or remove the empty entry",
            )
        if info.kind == KeyKind.HUB_WEBSITE:
            add(
                "hub_website_key",
                "warning",
                key,
                "hub.docker.com is Docker Hub's web site; no "
                "client reads credentials stored under it (regauthd copies them to "
                f"{HUB_CANONICAL!r}).",
                "log in with plain `docker login` (no server argument)",
            )
        if info.kind == KeyKind.INVALID:
            add(
                "invalid_key", "warning", key, "the key names no registry host.", "remove the entry"
            )
    return tuple(found)
