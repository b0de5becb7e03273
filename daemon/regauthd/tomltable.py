"""One TOML table being read, with errors that name the file, the key and the form wanted.

Pure: :class:`TomlTable` wraps the mapping ``tomllib`` returned; every typed getter records the
key as used, so :meth:`TomlTable.check_unknown` can refuse misspelt settings.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
DURATION_FORM = 'a duration like "250ms", "30s", "5m", "1h", "1d" or a number of seconds'
ADDRESS_FORM = 'an IP address and port, like "127.0.0.1:9464" or "[::1]:9464"'


class SettingsError(Exception):
    """The settings file cannot be used. The message names the file, the key and the form wanted."""


def parse_duration(value: object) -> float:
    """Seconds from ``"250ms"``, ``"30s"``, ``"5m"``, ``"1h"``, ``"1d"`` or a number.

    Raises :class:`ValueError` (with no key: the caller adds it).
    """
    if isinstance(value, bool):
        raise ValueError(DURATION_FORM)
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        match = _DURATION.match(value)
        if match is None:
            raise ValueError(DURATION_FORM)
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    else:
        raise ValueError(DURATION_FORM)
    if seconds < 0:
        raise ValueError(DURATION_FORM)
    return seconds


class TomlTable:
    """One TOML table being read: typed getters that raise :class:`SettingsError` naming the key."""

    def __init__(self, data: Mapping[str, Any], name: str, source: str) -> None:
        self._data = data
        self._name = name
        self._source = source
        self._used: set[str] = set()

    def _key(self, key: str) -> str:
        return f"{self._name}.{key}" if self._name else key

    def error(self, key: str, expected: str, value: object = None) -> SettingsError:
        shown = "" if value is None else f" (got {value!r})"
        return SettingsError(
            f"{self._source}: `{self._key(key)}` must be {expected}{shown}; fix or remove that line"
        )

    def raw(self, key: str) -> Any:
        self._used.add(key)
        return self._data.get(key)

    def boolean(self, key: str, default: bool) -> bool:
        value = self.raw(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.error(key, "true or false", value)
        return value

    def integer(self, key: str, default: int, *, minimum: int) -> int:
        value = self.raw(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.error(key, f"a whole number >= {minimum}", value)
        return value

    def duration(self, key: str, default: float, *, positive: bool = False) -> float:
        value = self.raw(key)
        if value is None:
            return default
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            raise self.error(key, str(exc), value) from None
        if positive and seconds == 0:
            raise self.error(key, f"a non-zero duration ({DURATION_FORM})", value)
        return seconds

    def string(self, key: str, default: str, *, choices: tuple[str, ...] = ()) -> str:
        value = self.raw(key)
        if value is None:
            return default
        if not isinstance(value, str) or (choices and value not in choices):
            expected = "one of " + ", ".join(f'"{c}"' for c in choices) if choices else "a string"
            raise self.error(key, expected, value)
        return value

    def strings(self, key: str, default: tuple[str, ...]) -> tuple[str, ...]:
        value = self.raw(key)
        if value is None:
            return default
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise self.error(key, 'a list of non-empty strings, like ["a", "b"]', value)
        return tuple(value)

    def path(self, key: str) -> Path | None:
        value = self.raw(key)
        if value is None or value == "":
            return None
        if not isinstance(value, str) or not value.startswith(("/", "~")):
            raise self.error(key, 'an absolute path ("/..." or "~/...")', value)
        return Path(value).expanduser() if value.startswith("~") else Path(value)

    def address(self, key: str) -> tuple[str, int] | None:
        """``"IP:PORT"`` (IPv6 in brackets) -> ``(ip, port)``; empty or absent: None. Names are
        refused: what a socket binds to is exactly what the file says, with no lookup."""
        value = self.raw(key)
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            raise self.error(key, ADDRESS_FORM, value)
        host, _, port = value.rpartition(":")
        bracketed = host.startswith("[") and host.endswith("]")
        try:
            ip = ipaddress.ip_address(host[1:-1] if bracketed else host)
        except ValueError:
            raise self.error(key, ADDRESS_FORM, value) from None
        if bracketed != (ip.version == 6) or not port.isdigit() or not 0 < int(port) < 65536:
            raise self.error(key, ADDRESS_FORM + ", port 1-65535", value)
        return str(ip), int(port)

    def string_map(self, key: str) -> dict[str, str]:
        value = self.raw(key)
        if value is None:
            return {}
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and v for k, v in value.items()
        ):
            raise self.error(key, 'a table of strings, like { "ghcr.io" = "acme/ci" }', value)
        return dict(value)

    def table(self, key: str) -> TomlTable:
        value = self.raw(key)
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise self.error(key, f"a table ([{self._key(key)}])", value)
        return TomlTable(value, self._key(key), self._source)

    def check_unknown(self) -> None:
        unknown = sorted(set(self._data) - self._used)
        if unknown:
            where = f"[{self._name}]" if self._name else "the top level"
            raise SettingsError(
                f"{self._source}: unknown setting `{self._key(unknown[0])}` in {where}; "
                "see config.example.toml for the valid names"
            )
