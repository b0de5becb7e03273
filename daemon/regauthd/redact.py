"""Secret-free views of configs, for diffs, reports and logs.

:func:`redact_config` gives the secret-free view of a config that reports and diffs show;
:data:`REDACTOR` keeps secrets out of every log sink (the daemon's structlog chain ends with it)
and :func:`remember_config_secrets` teaches it the secrets a config holds.
"""

from __future__ import annotations

import base64
import binascii
import copy
import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from structlog.typing import EventDict, WrappedLogger

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


# Log sinks: what the daemon logs passes REDACTOR last.

LOG_REDACTED: Final = "[redacted]"
"""What log sinks show instead of a secret (the config views above show :data:`REDACTED`)."""
_SENSITIVE_KEY = re.compile(
    r"(^auth$|pass|secret|token|authorization|credential|cookie|^x-?api-?key$)", re.IGNORECASE
)
_SECRET_PATTERNS: Final = (
    # JSON fragments of a Docker config: "auth": "...", "password": "...", "identitytoken": "..."
    (
        re.compile(
            r'("(?:auth|password|identitytoken|registrytoken|token|access_token|refresh_token)"'
            r'\s*:\s*)"(?:[^"\\]|\\.)*"',
            re.IGNORECASE,
        ),
        rf'\1"{LOG_REDACTED}"',
    ),
    (re.compile(r"\b(Basic|Bearer)\s+[A-Za-z0-9+/=._~-]{4,}"), rf"\1 {LOG_REDACTED}"),
    (
        re.compile(r"\b(password|passwd|secret|token|auth)=[^\s&,;]+", re.IGNORECASE),
        rf"\1={LOG_REDACTED}",
    ),
)
_MIN_SECRET_LENGTH: Final = 4
_MAX_REMEMBERED: Final = 256


class Redactor:
    """Keeps secrets out of every sink.

    Three guards: values under sensitive keys (``password``, ``auth``, ``*token*``...) are
    replaced; text that looks like a credential (a config's ``"auth": "..."``, ``Basic xyz``,
    ``password=...``) is masked; and every secret the daemon has seen (:meth:`remember`) is
    replaced wherever it appears, exception messages included.
    """

    def __init__(self) -> None:
        self._secrets: dict[str, None] = {}
        self._lock = threading.Lock()
        self._pattern: re.Pattern[str] | None = None

    def remember(self, secrets: Iterable[str]) -> None:
        """Add secrets to mask (the most recent ones are kept). Cheap: called on the hot path;
        the pattern is rebuilt lazily, when something is logged."""
        with self._lock:
            for secret in secrets:
                if len(secret) < _MIN_SECRET_LENGTH:
                    continue
                if secret in self._secrets:
                    self._secrets.pop(secret)
                else:
                    self._pattern = None
                self._secrets[secret] = None
            while len(self._secrets) > _MAX_REMEMBERED:
                del self._secrets[next(iter(self._secrets))]
                self._pattern = None

    def _compiled(self) -> re.Pattern[str] | None:
        with self._lock:
            if self._pattern is None and self._secrets:
                # Longest first, so a secret that contains another is masked whole.
                ordered = sorted(self._secrets, key=len, reverse=True)
                self._pattern = re.compile("|".join(re.escape(s) for s in ordered))
            return self._pattern

    def text(self, value: str) -> str:
        pattern = self._compiled()
        if pattern is not None:
            value = pattern.sub(LOG_REDACTED, value)
        for regex, replacement in _SECRET_PATTERNS:
            value = regex.sub(replacement, value)
        return value

    def value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {k: self.field(str(k), v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(v) for v in value]
        if isinstance(value, bytes):
            return self.text(value.decode("utf-8", "replace"))
        return value

    def field(self, key: str, value: Any) -> Any:
        if _SENSITIVE_KEY.search(key) and isinstance(value, str | bytes) and value:
            return LOG_REDACTED
        return self.value(value)

    def __call__(self, logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
        """structlog processor: redact every field of the event."""
        return {k: self.field(k, v) for k, v in event_dict.items()}


REDACTOR: Final = Redactor()
"""The process-wide redactor every sink uses; the daemon remembers the secrets it reads."""


def remember_config_secrets(config: Mapping[str, Any]) -> None:
    """Remember every secret a parsed Docker config holds (auth, decoded password, tokens)."""
    REDACTOR.remember(secret_values(config))
