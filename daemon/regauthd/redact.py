"""Secret-free views of configs, for diffs, reports and logs."""

from __future__ import annotations

import base64
import binascii
import copy
from collections.abc import Iterator, Mapping
from typing import Any

REDACTED = "<redacted>"
_SECRET_WORDS = ("auth", "password", "token", "secret")


def _is_secret_field(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in _SECRET_WORDS)


def _auth_user(value: str) -> str | None:
    try:
        raw = base64.b64decode(value, validate=True).decode("utf-8", errors="replace")
    except (binascii.Error, ValueError):
        return None
    user, sep, _ = raw.partition(":")
    return user if sep and user else None


def redact_value(field: str, value: Any) -> Any:
    if not isinstance(value, str) or not value:
        return value
    if field == "auth":
        user = _auth_user(value)
        return f"<redacted auth for user {user}>" if user else f"{REDACTED} (malformed)"
    return REDACTED


def redact_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy with every secret-looking field (in entries and at the top) redacted.

    User names stay: they are not secret and tell a person which credential is which.
    """
    out: dict[str, Any] = copy.deepcopy(dict(config))

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            return {
                k: (redact_value(k, v) if _is_secret_field(k) and isinstance(v, str) else walk(v))
                for k, v in node.items()
            }
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return {k: walk(v) if k != "credsStore" else v for k, v in out.items()}


def secret_values(config: Mapping[str, Any]) -> Iterator[str]:
    """Every secret string in a config (raw and decoded), for leak guards and tests."""

    def walk(node: Any) -> Iterator[str]:
        if isinstance(node, dict):
            for k, v in node.items():
                if isinstance(v, str) and _is_secret_field(k) and v:
                    yield v
                    if k == "auth":
                        try:
                            raw = base64.b64decode(v, validate=True).decode("utf-8", "replace")
                        except (binascii.Error, ValueError):
                            continue
                        password = raw.partition(":")[2]
                        if password:
                            yield password
                else:
                    yield from walk(v)
        elif isinstance(node, list):
            for v in node:
                yield from walk(v)

    yield from walk(dict(config))
