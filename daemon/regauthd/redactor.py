"""The process-wide memory of the secrets regauthd has seen, for every log sink.

The rules are :mod:`regauthd.redact`'s; this module only remembers (thread-safe: the probe thread
remembers what helpers return while the loop thread logs) and applies them to structured events.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final

from regauthd.redact import REDACTED, is_sensitive_key, redact_text, secret_values, secrets_pattern

if TYPE_CHECKING:
    from structlog.typing import EventDict, WrappedLogger

_MAX_REMEMBERED: Final = 256


class Redactor:
    """Keeps secrets out of every sink: known secrets (:meth:`remember`) and secrets by place
    are replaced in text (exception messages included), fields under sensitive keys whole."""

    def __init__(self) -> None:
        self._secrets: dict[str, None] = {}
        self._lock = threading.Lock()
        self._pattern: re.Pattern[str] | None = None

    def remember(self, secrets: Iterable[str]) -> None:
        """Add secrets to mask (the most recent ones are kept). Cheap: called on the hot path;
        the pattern is rebuilt lazily, when something is logged."""
        with self._lock:
            for secret in secrets:
                if not secret:
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
                self._pattern = secrets_pattern(self._secrets)
            return self._pattern

    def text(self, value: str) -> str:
        return redact_text(value, self._compiled())

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
        if is_sensitive_key(key) and isinstance(value, str | bytes) and value:
            return REDACTED
        return self.value(value)

    def __call__(self, logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
        """structlog processor: redact every field of the event."""
        return {k: self.field(k, v) for k, v in event_dict.items()}


REDACTOR: Final = Redactor()
"""The process-wide redactor every sink uses; the daemon remembers the secrets it reads."""


def remember_config_secrets(config: Mapping[str, Any]) -> None:
    """Remember every secret a parsed Docker config holds (auth, decoded password, tokens)."""
    REDACTOR.remember(secret_values(config))
