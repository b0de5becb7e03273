"""What breaks a Kubernetes image pull secret, judged by the kubelet's rules; and its repair.

Pure. The kubelet (``pkg/credentialprovider/secrets/secrets.go``) uses a Secret only when its
``type`` is ``kubernetes.io/dockerconfigjson`` with a ``.dockerconfigjson`` key (a Docker config
with an ``auths`` object) or ``kubernetes.io/dockercfg`` with a ``.dockercfg`` key (the legacy
format: registry -> entry, no wrapper); any other Secret is silently skipped. A payload that
does not parse, or one ``auth`` that does not decode to ``user:password``, makes the whole
keyring fail (``json.Unmarshal`` errors out of ``MakeDockerKeyring``): every pull that lists
the Secret fails. Which key serves an image: :mod:`regauthd.dockerconfig.kubelet` (a
``docker.io`` key is fine there).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from regauthd.dockerconfig import kubelet
from regauthd.dockerconfig.findings import Finding, Severity
from regauthd.dockerconfig.secretdoc import (
    DOCKERCFG_KEY,
    DOCKERCONFIGJSON_KEY,
    KEY_FOR_TYPE,
    TYPE_FOR_KEY,
    SecretDocument,
    decode_base64,
    payload_text,
    with_payload,
)

ExpiryHook = Callable[[str, str, str, str], tuple[Finding, ...]]
"""(source, key, user name, password) -> expiry findings.

HOOK for issue 10 item 1: the pure expiry reader (``dockerconfig/expiry.py``, written by another
change) plugs in here; until it does, callers pass None and no expiry is read.
"""

_ENTRY_FIELDS = ("auth", "username", "password", "email")


@dataclass(frozen=True, slots=True)
class Verdict:
    """Findings on a document as it is, the kubelet's picks, and the repaired document."""

    findings: tuple[Finding, ...]
    picks: tuple[kubelet.ImagePick, ...]
    fixed: SecretDocument
    changes: tuple[str, ...]
    """What the repair changed, in words (empty: ``fixed`` is the document as given)."""

    @property
    def ok(self) -> bool:
        return not any(f.severity == "error" for f in self.findings)


_BREAKS_ALL = (
    "the kubelet cannot parse the Secret, so EVERY pull that lists it fails "
    "(not only this registry's)"
)


class _Judgement:
    """The findings and repairs gathered while one document is judged."""

    def __init__(self, doc: SecretDocument, source: str, expiry: ExpiryHook | None) -> None:
        self.doc = doc
        self.source = source
        self.expiry = expiry
        self.found: list[Finding] = []
        self.changes: list[str] = []
        self.usable = True
        """Does the kubelet get a keyring out of the document as it is?"""
        self.target_key = doc.data_key or DOCKERCONFIGJSON_KEY
        self.target_type = doc.secret_type
        self.payload_rewritten = False
        """The payload text itself must change (a second base64 layer came off)."""

    def add(self, code: str, severity: Severity, key: str | None, message: str, fix: str) -> None:
        self.found.append(Finding(code, severity, self.source, key, message, fix))

    def secret_shape(self, data_key: str) -> None:
        """Type and key: the kubelet skips a Secret whose type does not go with its key."""
        wanted = TYPE_FOR_KEY[data_key]
        current = self.doc.secret_type
        if current in KEY_FOR_TYPE and current != wanted:
            self.target_key = KEY_FOR_TYPE[current]
            self.usable = False
            self.add(
                "secret_wrong_key",
                "error",
                data_key,
                f"a Secret of type {current} keeps its Docker config under "
                f"{self.target_key!r}, not {data_key!r}: the API server refuses it, and the "
                "kubelet would not read it.",
                f"move the payload to {self.target_key!r} (`regauthd fix --dockerconfigjson` "
                "does, converting the format)",
            )
            self.changes.append(f"payload moved from {data_key!r} to {self.target_key!r}")
        elif current != wanted:
            self.target_type = wanted
            self.usable = False
            shown = current or "missing (so Opaque)"
            self.add(
                "secret_wrong_type",
                "error",
                None,
                f"the Secret's type is {shown}: the kubelet uses a pull secret only when its "
                f"type is {wanted} (for the {data_key!r} key) and skips this one without a "
                "word, so pulls go out without credentials.",
                f"set `type: {wanted}`; a type cannot change in place: `kubectl delete secret` "
                "it and apply the fixed document",
            )
            self.changes.append(f"type set to {wanted}")

    def payload(self, text: str) -> dict[str, Any] | None:
        """The Docker config in the payload (undoing a second base64 layer), or None."""
        config, problem = _parse_payload(text)
        if config is not None:
            return config
        twice = decode_base64(text)
        config = _parse_payload(twice)[0] if twice is not None else None
        if config is None:
            self.add(
                "payload_invalid_json",
                "error",
                self.target_key,
                f"the Docker config is not a JSON object ({problem}); {_BREAKS_ALL}.",
                "recreate the Secret with `kubectl create secret docker-registry`",
            )
            return None
        self.usable = False
        self.add(
            "double_base64",
            "error",
            self.target_key,
            "the Docker config is base64-encoded twice (the API server decodes `data` once; "
            f"what the kubelet then reads is base64, not JSON); {_BREAKS_ALL}.",
            "encode the JSON once (or put it under `stringData` as plain JSON)",
        )
        self.changes.append("payload decoded from a second base64 layer")
        self.payload_rewritten = True
        return config

    def layout(self, config: Mapping[str, Any]) -> dict[str, Any] | None:
        """registry -> entry as the target key's format wants it; None when unusable."""
        entries, needs = _entries(config, self.target_key)
        if needs == "wrap":
            self.usable = False
            self.add(
                "legacy_format",
                "error",
                self.target_key,
                "the Docker config has no `auths` object (the legacy .dockercfg format) under "
                "`.dockerconfigjson`: the kubelet finds no credential in it and pulls "
                "anonymously.",
                'wrap the registries in {"auths": {...}}',
            )
            self.changes.append('registries wrapped in an "auths" object')
        elif needs == "unwrap":
            self.usable = False
            self.add(
                "auths_under_dockercfg",
                "error",
                self.target_key,
                "the legacy `.dockercfg` format has no `auths` wrapper: the kubelet reads "
                "`auths` as a registry's name and finds no credential.",
                "take the registries out of the `auths` object (or use type "
                "kubernetes.io/dockerconfigjson with key .dockerconfigjson)",
            )
            self.changes.append('registries taken out of the "auths" object')
        elif needs == "bad":
            self.add(
                "wrong_type",
                "error",
                self.target_key,
                f"`auths` is not an object of registry -> entry; {_BREAKS_ALL}.",
                "recreate the Secret with `kubectl create secret docker-registry`",
            )
            return None
        return entries

    def entry(self, key: str, entry: Any) -> Any:
        """Judge one registry's entry; the entry as the repair leaves it."""
        problem = _entry_problem(entry)
        if problem is not None:
            self.usable = False
            self.add("wrong_type", "error", key, f"{problem}; {_BREAKS_ALL}.", _relogin(key))
            return entry
        out = entry
        auth = entry.get("auth") or ""
        user, password = entry.get("username") or "", entry.get("password") or ""
        if auth:
            try:
                user, password = kubelet.decode_auth(auth)
            except ValueError as exc:
                self.usable = False
                once = kubelet.auth_decoded_twice(auth)
                if once is None:
                    code = "auth_not_base64" if "base64" in str(exc) else "auth_no_colon"
                    self.add(code, "error", key, f"{exc}; {_BREAKS_ALL}.", _relogin(key))
                    return entry
                self.add(
                    "auth_double_base64",
                    "error",
                    key,
                    f"`auth` is base64-encoded twice; {_BREAKS_ALL}.",
                    "encode `user:password` once",
                )
                out = {**entry, "auth": once}
                self.changes.append(f"auths[{key!r}].auth decoded from a second base64 layer")
                user, password = kubelet.decode_auth(once)
        if not user and not password:
            self.add(
                "kubelet_no_credential",
                "warning",
                key,
                "the kubelet reads only `auth` or `username`/`password`; this entry gives it "
                "no credential (an identity token or a helper placeholder is not used).",
                _relogin(key),
            )
        elif self.expiry is not None:
            self.found.extend(self.expiry(self.source, key, user, password))
        if kubelet.keyring_location(key) is None:
            self.add(
                "kubelet_key_ignored",
                "warning",
                key,
                "the kubelet cannot parse this key as a registry URL and ignores the entry.",
                "use the registry's host[:port] as the key",
            )
        return out

    def repaired(self, config: Mapping[str, Any], entries: dict[str, Any]) -> SecretDocument:
        if not self.changes:
            return self.doc
        final: dict[str, Any]
        if self.target_key == DOCKERCFG_KEY:
            final = entries
        else:
            final = dict(config) if isinstance(config.get("auths"), dict) else {}
            final["auths"] = entries
        # Only the type or key changed: the payload stays byte for byte what it was.
        keep = final == config and self.doc.payload and not self.payload_rewritten
        text = self.doc.payload if keep and self.doc.payload else payload_text(final)
        return with_payload(
            self.doc,
            text,
            data_key=self.target_key,
            secret_type=self.target_type if self.target_type != self.doc.secret_type else None,
        )

    def verdict(
        self,
        keyring: Mapping[str, Any] | None,
        images: Sequence[str],
        fixed: SecretDocument | None = None,
        *,
        skipped: bool = False,
    ) -> Verdict:
        picks = kubelet.picks(keyring, images, skipped=skipped)
        for pick in picks:
            if not pick.keys:
                self.add(
                    "no_credential_for_image",
                    "error",
                    pick.image,
                    pick.problem
                    or f"no key in this Secret matches {pick.repository}: the kubelet pulls "
                    f"{pick.image} without credentials.",
                    "add an entry keyed by the image's registry host (globs such as "
                    "*.example.com work for the kubelet)",
                )
        return Verdict(tuple(self.found), picks, fixed or self.doc, tuple(self.changes))


def judge(
    doc: SecretDocument,
    *,
    source: str,
    images: Sequence[str] = (),
    expiry: ExpiryHook | None = None,
) -> Verdict:
    """Everything the kubelet would trip on, which key each image gets, and the repair."""
    j = _Judgement(doc, source, expiry)
    if doc.data_key is None:
        j.add(
            "no_pull_secret_key",
            "error",
            None,
            "the Secret has no `.dockerconfigjson` (or `.dockercfg`) key: the kubelet finds no "
            "registry credential in it.",
            "create it with `kubectl create secret docker-registry NAME --docker-server=... "
            "--docker-username=... --docker-password=...`",
        )
        return j.verdict({}, images)
    if doc.manifest is not None:
        j.secret_shape(doc.data_key)
    if doc.payload is None:
        j.add(
            "secret_data_not_base64",
            "error",
            j.target_key,
            "the value under `data` is not base64: the API server refuses the Secret.",
            "put the JSON under `stringData` instead, or base64-encode it once",
        )
        return j.verdict(None, images)
    config = j.payload(doc.payload)
    entries = j.layout(config) if config is not None else None
    if config is None or entries is None:
        return j.verdict(None, images)
    repaired = {key: j.entry(key, entry) for key, entry in entries.items()}
    fixed = j.repaired(config, repaired)
    if j.usable:
        return j.verdict(repaired, images, fixed)
    # As it is, the kubelet fails on the Secret (unparseable) or reads nothing from it.
    return j.verdict(None if not _all_parse(j.found) else {}, images, fixed, skipped=True)


def _all_parse(found: list[Finding]) -> bool:
    """True when no finding makes the kubelet's keyring fail as a whole."""
    return not any(_BREAKS_ALL in f.message for f in found)


def _parse_payload(text: str) -> tuple[dict[str, Any] | None, str]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, f"line {exc.lineno} column {exc.colno}: {exc.msg}"
    if not isinstance(value, dict):
        return None, "the top level is not an object"
    return value, ""


def _entries(config: Mapping[str, Any], key: str) -> tuple[dict[str, Any], str]:
    """(registry -> entry, what the format needs: "" ok, "wrap", "unwrap", "bad")."""
    auths = config.get("auths")
    if key == DOCKERCFG_KEY:
        if isinstance(auths, dict) and len(config) == 1:
            return dict(auths), "unwrap"
        return dict(config), ""
    if auths is None:
        legacy = {k: v for k, v in config.items() if isinstance(v, dict)}
        looks_legacy = any(any(f in v for f in _ENTRY_FIELDS) for v in legacy.values())
        return (legacy, "wrap") if looks_legacy else ({}, "")
    if not isinstance(auths, dict):
        return {}, "bad"
    return dict(auths), ""


def _entry_problem(entry: Any) -> str | None:
    if not isinstance(entry, dict):
        return "the entry is not a JSON object"
    bad = [f for f in _ENTRY_FIELDS if f in entry and not isinstance(entry[f], str)]
    if bad:
        return f"field(s) {', '.join(bad)} are not strings"
    return None


def _relogin(key: str) -> str:
    return (
        f"recreate the entry for {key!r}: `kubectl create secret docker-registry NAME "
        f"--docker-server={key} --docker-username=... --docker-password=...`"
    )
