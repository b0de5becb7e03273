"""``WWW-Authenticate`` challenges as registries send them (pure).

RFC 7235 grammar, read leniently the way real clients do: several challenges in one header and
several headers, case-insensitive scheme and parameter names, quoted values holding commas,
spaces and backslash escapes, unquoted values that are URLs (``realm=https://host/token``), and
``token68`` credentials (``Negotiate abc==``). Nothing here raises on malformed input: a piece
that cannot be read is skipped, the rest is kept.

>>> header = 'Bearer realm="https://a/t",service="s", Basic realm="r"'
>>> [c.scheme for c in parse_challenges([header])]
['bearer', 'basic']
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TOKEN68 = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_WS = " \t"


@dataclass(frozen=True, slots=True)
class Challenge:
    """One challenge: the scheme (lower-cased), its parameters (names lower-cased), or token68."""

    scheme: str
    params: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    token68: str | None = None

    def get(self, name: str) -> str | None:
        return self.params.get(name.lower())

    @property
    def realm(self) -> str | None:
        return self.get("realm")

    @property
    def service(self) -> str | None:
        return self.get("service")

    @property
    def error(self) -> str | None:
        """Bearer ``error`` (``invalid_token``, ``insufficient_scope``), if any."""
        return self.get("error")

    @property
    def scopes(self) -> tuple[str, ...]:
        """Bearer ``scope``: space-separated scopes (registries send one per resource)."""
        value = self.get("scope")
        return tuple(value.split()) if value else ()


def _skip(text: str, i: int, chars: str) -> int:
    n = len(text)
    while i < n and text[i] in chars:
        i += 1
    return i


def _quoted(text: str, i: int) -> tuple[str, int]:
    """Read a quoted-string starting at the opening quote; returns (value, index after it)."""
    out: list[str] = []
    i += 1
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "\\" and i + 1 < n:
            out.append(text[i + 1])
            i += 2
            continue
        if ch == '"':
            return "".join(out), i + 1
        out.append(ch)
        i += 1
    return "".join(out), i  # unterminated: take what is there


def _bare_value(text: str, i: int) -> tuple[str, int]:
    # Lenient: anything up to a comma or whitespace (URLs are not RFC tokens but are sent bare).
    j = i
    n = len(text)
    while j < n and text[j] != "," and text[j] not in _WS:
        j += 1
    return text[i:j], j


def _is_param_start(text: str, i: int) -> bool:
    """``name =`` follows at ``i``."""
    m = _TOKEN.match(text, i)
    if not m:
        return False
    j = _skip(text, m.end(), _WS)
    return j < len(text) and text[j] == "="


def _token68_at(text: str, i: int) -> tuple[str, int] | None:
    """A token68 right after a scheme: it runs to the end of the challenge (a comma or the end).

    ``realm="x"`` and ``realm=x`` are not token68 (something follows the '='); ``abc==`` is.
    """
    m = _TOKEN68.match(text, i)
    if not m:
        return None
    j = _skip(text, m.end(), _WS)
    if j < len(text) and text[j] != ",":
        return None
    return m.group(), j


def parse_header(value: str) -> tuple[Challenge, ...]:
    """All challenges in one ``WWW-Authenticate`` header value, in order."""
    challenges: list[Challenge] = []
    scheme: str | None = None
    params: dict[str, str] = {}
    token68: str | None = None

    def flush() -> None:
        if scheme is not None:
            challenges.append(Challenge(scheme, MappingProxyType(dict(params)), token68))

    i = 0
    n = len(value)
    while i < n:
        i = _skip(value, i, _WS + ",")
        if i >= n:
            break
        if scheme is not None and _is_param_start(value, i):
            m = _TOKEN.match(value, i)
            if m is None:  # pragma: no cover - _is_param_start matched the same token
                break
            name = m.group().lower()
            i = _skip(value, _skip(value, m.end(), _WS) + 1, _WS)
            if i < n and value[i] == '"':
                param_value, i = _quoted(value, i)
            else:
                param_value, i = _bare_value(value, i)
            params.setdefault(name, param_value)
            continue
        m = _TOKEN.match(value, i)
        if not m:
            i += 1  # a stray character: skip it, keep reading
            continue
        if _is_param_start(value, i):
            # A parameter before any scheme: malformed; skip the pair.
            i = _skip(value, _skip(value, m.end(), _WS) + 1, _WS)
            i = _quoted(value, i)[1] if i < n and value[i] == '"' else _bare_value(value, i)[1]
            continue
        flush()
        scheme, params, token68 = m.group().lower(), {}, None
        i = _skip(value, m.end(), _WS)
        found = _token68_at(value, i) if i < n and value[i] != "," else None
        if found is not None:
            token68, i = found
    flush()
    return tuple(challenges)


def parse_challenges(headers: Iterable[str]) -> tuple[Challenge, ...]:
    """All challenges from every ``WWW-Authenticate`` header of a response, in order."""
    return tuple(c for header in headers for c in parse_header(header))


def find(challenges: Iterable[Challenge], scheme: str) -> Challenge | None:
    """The first challenge with ``scheme`` (case-insensitive), or None."""
    wanted = scheme.lower()
    return next((c for c in challenges if c.scheme == wanted), None)


def parse_scope(scope: str) -> tuple[str, str, frozenset[str]] | None:
    """``repository:team/app:push,pull`` -> ``("repository", "team/app", {"pull", "push"})``.

    The order of actions is random on the wire (registry 2.8): they are a set. The name is what
    lies between the first and the last ':' (``repository(plugin):name:pull`` keeps its class in
    the type). Returns None for anything else.
    """
    kind, sep, rest = scope.partition(":")
    name, sep2, actions = rest.rpartition(":")
    if not sep or not sep2 or not kind or not name:
        return None
    return kind, name, frozenset(a for a in actions.split(",") if a)
