"""Keeping secrets out of everything regauthd prints, logs or alerts: redaction's one home.

One marker, :data:`REDACTED` (``<redacted>``), everywhere. A config diff names the user of an
``auth`` value instead (``<redacted auth for user NAME>``), as the README shows.

The rule is *whole values only*: a secret is replaced where it stands as a value, never inside
an ordinary word, however short it is (with password ``pass``, "wrong password" stays readable):

- a known secret (one regauthd read from a config or a helper, :meth:`Redactor.remember`) is
  replaced wherever no letter, digit or underscore touches it: a whole JSON string (``"pass"``),
  a value after ``=`` or ``:`` (``password=pass``, ``user:pass``), a header value
  (``Basic pass``), the user info of a URL (``https://user:pass@host``), a word of its own;
- with no secret known, values that are secrets by their place are replaced: under a sensitive
  key (``"password": "…"``, ``token=…``), after ``Basic``/``Bearer``, URL user info, and JWTs;
- structured fields (log events, alert fields) under a sensitive key are replaced whole;
- a config shown to a person (:func:`redact_config`: reports, dry-run diffs) keeps only the
  string values known to be safe (user names, helper names, formats); every other string value,
  including fields regauthd does not know (``HttpHeaders``, proxy URLs), is replaced.

The rules here are pure; :mod:`regauthd.redactor` holds the process-wide memory of the secrets
seen (:data:`~regauthd.redactor.REDACTOR`), which every log sink passes last.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Final

REDACTED: Final = "<redacted>"

# A secret stands as a value where no letter, digit or underscore touches it: "pass" in
# "password" or "bypass" is never a value, whatever the secret; "pass" in `"pass"`, `pw=pass`,
# `user:pass@`, `Basic pass` or "wrong pass." is.
_NOT_IN_A_WORD: Final = (r"(?<!\w)", r"(?!\w)")

_SENSITIVE_KEY: Final = re.compile(
    r"(^auth$|pass|secret|token|authorization|credential|cookie|^x-?api-?key$)", re.IGNORECASE
)
_KEYS: Final = (
    r"access_token|refresh_token|identitytoken|registrytoken|token|password|passwd|secret|auth"
)
_BY_PLACE: Final = (
    # (pattern, replacement, strings one of which every match holds: a text holding none of
    # them is not searched with the pattern at all)
    # "password": "…", also with escaped quotes (JSON quoted inside a log line)
    (
        re.compile(rf"(\\?\"(?:{_KEYS})\\?\"\s*:\s*\\?\")(?:[^\"\\]|\\[^\"])+", re.IGNORECASE),
        rf"\1{REDACTED}",
        ('"',),
    ),
    # header values as clients write them, long enough that "no basic auth credentials" stays
    (
        re.compile(r"\b(Bearer|Basic|BEARER|BASIC)\s+[A-Za-z0-9._~+/=-]{8,}"),
        rf"\1 {REDACTED}",
        ("Bearer", "Basic", "BEARER", "BASIC"),
    ),
    (re.compile(r"(://)[^\s@\"/]*(?::[^\s@\"]*)?@"), rf"\1{REDACTED}@", ("://",)),
    # No word boundary before the key: `db_password=`, `xpassword=` hide a value as well.
    (re.compile(rf"({_KEYS})=[^&\s\"\\,;}}]+", re.IGNORECASE), rf"\1={REDACTED}", ("=",)),
    (re.compile(r"\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]*)?"), REDACTED, ("eyJ",)),
)

_ANY_NEEDLE: Final = re.compile("|".join(re.escape(n) for _, _, ns in _BY_PLACE for n in ns))


def secrets_pattern(secrets: Iterable[str]) -> re.Pattern[str] | None:
    """One regex finding each of ``secrets`` wherever it stands as a whole value (None: none)."""
    ordered = sorted({s for s in secrets if s}, key=len, reverse=True)  # longest first
    if not ordered:
        return None
    before, after = _NOT_IN_A_WORD
    return re.compile(f"{before}(?:{'|'.join(re.escape(s) for s in ordered)}){after}")


def redact_text(text: str, secrets: Iterable[str] | re.Pattern[str] | None = None) -> str:
    """``text`` with ``secrets`` (strings, or a :func:`secrets_pattern`) and every value that is
    a secret by its place replaced by :data:`REDACTED`."""
    pattern = secrets if isinstance(secrets, re.Pattern) or secrets is None else None
    if secrets is not None and not isinstance(secrets, re.Pattern):
        pattern = secrets_pattern(secrets)
    if pattern is not None:
        text = pattern.sub(REDACTED, text)
    if _ANY_NEEDLE.search(text) is None:
        return text  # most texts (paths, names, sentences): none of the patterns can match
    for regex, replacement, needles in _BY_PLACE:
        if any(needle in text for needle in needles):
            text = regex.sub(replacement, text)
    return text


def is_sensitive_key(key: str) -> bool:
    """Is a field of this name a secret whatever it holds (``password``, ``auth``, ``*token*``)?"""
    return _SENSITIVE_KEY.search(key) is not None


# --- configs shown to people -------------------------------------------------------------------
_SAFE_FIELDS: Final = frozenset(
    {
        "username",
        "email",
        "serveraddress",
        "credsStore",
        "currentContext",
        "detachKeys",
        "cliPluginsExtraDirs",
    }
)
"""Fields whose string values are never secret. ``credHelpers`` values (helper names) and every
``*Format`` field are safe too; everything else is shown as :data:`REDACTED`."""


def _is_safe_field(name: str, parent: str | None) -> bool:
    return name in _SAFE_FIELDS or parent == "credHelpers" or name.endswith("Format")


def _auth_user(value: str) -> str | None:
    try:
        raw = base64.b64decode(value, validate=True).decode("utf-8", errors="replace")
    except (binascii.Error, ValueError):
        return None
    user, sep, _ = raw.partition(":")
    return user if sep and user else None


def _redacted_string(name: str, value: str) -> str:
    if not value:
        return value
    if name == "auth":
        user = _auth_user(value)
        return f"<redacted auth for user {user}>" if user else f"{REDACTED} (malformed)"
    return REDACTED


def redact_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a config with every string value outside the safe fields redacted.

    Keys stay (they name registries), and so do user names and helper names: they are not
    secret and tell a person which credential is which.
    """

    def walk(node: Any, name: str, parent: str | None) -> Any:
        if isinstance(node, Mapping):
            return {k: walk(v, str(k), name) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v, name, parent) for v in node]
        if isinstance(node, str) and not _is_safe_field(name, parent):
            return _redacted_string(name, node)
        return node

    return {k: walk(v, str(k), None) for k, v in config.items()}


def secret_values(config: Mapping[str, Any]) -> Iterator[str]:
    """Every secret string in a config (raw and decoded ``auth``), for the redactor's memory."""

    def walk(node: Any, name: str, parent: str | None) -> Iterator[str]:
        if isinstance(node, Mapping):
            for k, v in node.items():
                yield from walk(v, str(k), name)
        elif isinstance(node, list):
            for v in node:
                yield from walk(v, name, parent)
        elif isinstance(node, str) and node and is_sensitive_key(name):
            yield node
            if name == "auth":
                try:
                    raw = base64.b64decode(node, validate=True).decode("utf-8", "replace")
                except (binascii.Error, ValueError):
                    return
                password = raw.partition(":")[2]
                if password:
                    yield password

    yield from walk(config, "", None)
