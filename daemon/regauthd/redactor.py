"""The process-wide memory of the secrets regauthd has seen, for every log sink.

The rules are :mod:`regauthd.redact`'s; this module only remembers (thread-safe: the probe thread
remembers what helpers return while the loop thread logs) and applies them to structured events.
"""

from __future__ import annotations

import functools
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final

from regauthd.redact import REDACTED, is_sensitive_key, redact_text, secret_values, secrets_pattern

if TYPE_CHECKING:
    from structlog.typing import EventDict, WrappedLogger

_MAX_REMEMBERED: Final = 100_000
"""Secrets kept: every credential of a host with thousands of users (a few MiB)."""


@functools.lru_cache(maxsize=1024)
def _pattern_for(secrets: frozenset[str]) -> re.Pattern[str] | None:
    return secrets_pattern(secrets)


_TEXTS_KEPT: Final = 4096
"""Redacted texts kept for the next time the same text is logged."""
_PREFIX: Final = 6
_STARTS: Final = re.compile(rf"(?<!\w)(?=(.{{{_PREFIX}}}))", re.DOTALL)
"""The first :data:`_PREFIX` characters at each place a secret may start (no word character
before it)."""


def _starts(text: str) -> set[str]:
    return set(_STARTS.findall(text))


class Redactor:
    """Keeps secrets out of every sink: known secrets (:meth:`remember`) and secrets by place
    are replaced in text (exception messages included), fields under sensitive keys whole.

    Built for a daemon over thousands of configs: remembering is O(1) and never recompiles
    anything; a text is first searched for the :data:`PREFIX` characters that start a known
    secret (one set intersection, whatever the number of secrets), and only the secrets found
    there go into a (cached) pattern. A text seen again since the last new secret (an alert's
    advice, a host name) gets the answer it got then.
    """

    PREFIX: Final = _PREFIX

    def __init__(self, *, limit: int = _MAX_REMEMBERED) -> None:
        self._limit = limit
        self._secrets: OrderedDict[str, None] = OrderedDict()
        self._by_prefix: dict[str, set[str]] = {}
        self._short: set[str] = set()
        self._lock = threading.Lock()
        self._seen: dict[str, str] = {}
        """Text -> its redaction, for the secrets known now (a new dict at each new secret)."""

    def remember(self, secrets: Iterable[str]) -> None:
        """Add secrets to mask; past the limit the least recently seen are forgotten."""
        with self._lock:
            for secret in secrets:
                if not secret:
                    continue
                if secret in self._secrets:
                    self._secrets.move_to_end(secret)
                    continue
                self._seen = {}  # a text redacted before may hold this one
                self._secrets[secret] = None
                if len(secret) < self.PREFIX:
                    self._short.add(secret)
                else:
                    self._by_prefix.setdefault(secret[: self.PREFIX], set()).add(secret)
            while len(self._secrets) > self._limit:
                self._forget(self._secrets.popitem(last=False)[0])

    def _forget(self, secret: str) -> None:
        if len(secret) < self.PREFIX:
            self._short.discard(secret)
            return
        bucket = self._by_prefix.get(secret[: self.PREFIX])
        if bucket is not None:
            bucket.discard(secret)
            if not bucket:
                del self._by_prefix[secret[: self.PREFIX]]

    def _present(self, text: str) -> frozenset[str]:
        with self._lock:
            by_prefix, width = self._by_prefix, self.PREFIX
            found = {s for s in self._short if s in text}
            if len(text) >= width and by_prefix:
                # A secret is replaced only where no word character comes before it, so only
                # the PREFIX-long slices starting there can begin one: cut by one regex (in C),
                # met with the known prefixes by a set intersection (no step per character).
                for prefix in by_prefix.keys() & _starts(text):
                    found.update(s for s in by_prefix[prefix] if s in text)
            return frozenset(found)

    def text(self, value: str) -> str:
        seen = self._seen  # once: a dict replaced meanwhile only loses this answer
        done = seen.get(value)
        if done is None:
            present = self._present(value)
            done = redact_text(value, _pattern_for(present) if present else None)
            if len(seen) >= _TEXTS_KEPT:
                seen.clear()
            seen[value] = done
        return done

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
