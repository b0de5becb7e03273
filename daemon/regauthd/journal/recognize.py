"""Which log lines are registry auth failures: pure functions over strings.

dockerd logs every line at PRIORITY 6 (logfmt on stderr), so failures are told apart by content,
never by priority. Recognized wordings (evidence: moby ``distribution/``, containerd's remotes
resolver, Docker Hub's and other registries' error bodies; see ``tests/fixtures/journal/``):

- dockerd: ``msg="Not continuing with push after error" error="unauthorized: ..."``, the older
  ``msg="Not continuing with pull after error: ..."``, ``Attempting next endpoint for push after
  error: ...``, ``Ignoring extra error returned from registry: ...``, ``login attempt to URL failed
  with status: 401 Unauthorized``;
- containerd: ``msg="trying next host" error="failed to authorize: ..." host=ghcr.io``,
  ``PullImage "REF" failed`` with ``pull access denied``, ``insufficient_scope`` or
  ``401 Unauthorized``;
- runners (gitlab-runner, GitHub Actions): ``Error response from daemon: ...`` quoted by the runner;
- Docker Hub: ``unauthorized: incorrect username or password``, ``denied: requested access to the
  resource is denied``, ``toomanyrequests: You have reached your pull rate limit``.

Look-alikes that are NOT failures (``permission denied`` on a file, AppArmor ``DENIED``, an image
called ``acme/unauthorized``, non-auth push errors) are rejected; the fixture table lists them.

:func:`recognize` turns one message into an :class:`AuthFailure` or ``None``.
:meth:`Recognizer.might_match` is a cheap bytes pre-filter the journal follower runs on every
entry; it never rejects a message the built-in rules would accept (a property test checks it).
Settings can add patterns (:func:`compile_patterns`): regexes with the named groups ``registry``,
``repository`` and ``kind``, tried before the built-in rules. Which registry and repository a line
names is read by :mod:`regauthd.journal.locate`; plain log-file lines are split into time, program
and message by :mod:`regauthd.journal.logline` before they come here.
"""

from __future__ import annotations

import enum
import re
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import accumulate, repeat
from operator import add

from regauthd.dockerconfig.keys import registry_name
from regauthd.journal.locate import locate, operation_of
from regauthd.redact import redact_text

MAX_MESSAGE_CHARS = 2000
"""Longer messages are cut: an alert quotes the line, it does not archive it."""


class FailureKind(enum.StrEnum):
    """What the registry said, from the most to the least specific reading."""

    RATE_LIMITED = "rate_limited"
    """``toomanyrequests`` / HTTP 429: not a credential problem, but it breaks pulls all the
    same."""
    BAD_CREDENTIALS = "bad_credentials"
    """The registry refused the credential itself (wrong password, expired or revoked token)."""
    DENIED = "denied"
    """Authenticated (or anonymous) but not allowed: no push or pull on that repository."""
    UNAUTHORIZED = "unauthorized"
    """The registry wanted credentials and got none it accepted."""


@dataclass(frozen=True, slots=True)
class AuthFailure:
    """One registry auth failure seen in a log line."""

    kind: FailureKind
    registry: str | None
    """Registry host as clients name it (``docker.io`` for every Docker Hub host), when known."""
    repository: str | None
    """Repository path on that registry (``library/alpine``, ``acme/api``), when known."""
    operation: str | None
    """``push``, ``pull`` or ``login`` when the line says which."""
    unit: str
    """The systemd unit (or log file label) that logged it."""
    time: datetime
    """When it was logged (timezone-aware, UTC)."""
    message: str
    """The logged line with secrets redacted, at most :data:`MAX_MESSAGE_CHARS` characters."""

    def as_dict(self) -> dict[str, str | None]:
        """Flat JSON-ready fields (the ``scan-journal --json`` line and the alert fields)."""
        return {
            "kind": self.kind.value,
            "registry": self.registry,
            "repository": self.repository,
            "operation": self.operation,
            "unit": self.unit,
            "time": self.time.astimezone(UTC).isoformat(),
            "message": self.message,
        }


class PatternError(ValueError):
    """An extra pattern from the settings cannot be used; the message names it and says why."""


@dataclass(frozen=True, slots=True)
class ExtraPattern:
    """A settings-supplied pattern; named groups ``registry``, ``repository``, ``kind`` are read."""

    regex: re.Pattern[str]
    kind: FailureKind | None = None
    """The kind when the pattern has no ``kind`` group (default: unauthorized)."""


_GROUPS = frozenset({"registry", "repository", "kind"})


def compile_patterns(specs: Iterable[str | Mapping[str, str]]) -> tuple[ExtraPattern, ...]:
    """Settings entries -> patterns. An entry is a regex, or ``{pattern = "...", kind = "..."}``.

    Raises :class:`PatternError` naming the entry for a bad regex, an unknown kind or an unknown
    named group (a typo there would otherwise silently lose the registry name).
    """
    out: list[ExtraPattern] = []
    for index, spec in enumerate(specs):
        where = f"journal pattern #{index + 1}"
        kind: FailureKind | None = None
        if isinstance(spec, str):
            source = spec
        else:
            unknown = set(spec) - {"pattern", "kind"}
            if unknown or "pattern" not in spec:
                raise PatternError(
                    f"{where}: expected a regex string or a table with `pattern` and optional "
                    f"`kind`, got keys {sorted(spec)}"
                )
            source = spec["pattern"]
            if "kind" in spec:
                try:
                    kind = FailureKind(spec["kind"])
                except ValueError:
                    choices = ", ".join(k.value for k in FailureKind)
                    raise PatternError(
                        f"{where}: kind {spec['kind']!r} is not one of {choices}"
                    ) from None
        try:
            regex = re.compile(source)
        except re.error as exc:
            raise PatternError(f"{where}: {source!r} is not a valid regex: {exc}") from None
        bad = set(regex.groupindex) - _GROUPS
        if bad:
            raise PatternError(
                f"{where}: unknown named group(s) {sorted(bad)}; use registry, repository, kind"
            )
        out.append(ExtraPattern(regex, kind))
    return tuple(out)


# --- wording rules -----------------------------------------------------------------------------
# A registry error renders as `code: message` (distribution's errcode), so the codes are matched
# only as whole tokens: after a start, blank, quote or colon (the `(?<![^...]code)` look-behind),
# followed by `:` + blank or the end. That keeps `acme/unauthorized:latest` and `permission
# denied` out. Every branch starts with a literal, the look-behinds come after it: Python's re
# then skips quickly to candidate positions (a leading look-behind or `\b` costs ~8x).
_NOT_TOKEN_CHAR = r"[^\s\"':(]"

# Rules run on the lowercased text. Each branch is a literal that must occur (a cheap `in` test)
# and, for the token-shaped codes, a regex that confirms it; most branches need no regex at all.
# (Python's re with IGNORECASE or a leading look-behind is an order of magnitude slower.)
_Branch = tuple[str, "re.Pattern[str] | None"]


def _token(code: str, follow: str) -> _Branch:
    return code, re.compile(
        rf"{re.escape(code)}(?<!{_NOT_TOKEN_CHAR}{re.escape(code)}){follow}", re.ASCII
    )


_RULES: tuple[tuple[FailureKind, tuple[_Branch, ...]], ...] = (
    (
        FailureKind.RATE_LIMITED,
        (
            _token("toomanyrequests", r"\b"),
            ("429 too many requests", None),
            ("pull rate limit", re.compile(r"reached your (?:\w+ )?pull rate limit", re.ASCII)),
        ),
    ),
    (
        FailureKind.BAD_CREDENTIALS,
        (
            ("incorrect username or password", None),
            ("http basic: access denied", None),
            ("invalid username/password", None),
            ("authorization token has expired", None),
            ("failed with status: 401 unauthorized", None),
            ("failed to fetch oauth token: ", re.compile(r"oauth token: .*?401 unauthorized")),
        ),
    ),
    (
        FailureKind.DENIED,
        (
            ("insufficient_scope", None),
            ("pull access denied", None),
            ("requested access to the resource is denied", None),
            (
                "denied:",
                re.compile(
                    rf"denied:(?<!{_NOT_TOKEN_CHAR}denied:)(?<!permission denied:)(?:\s|$)",
                    re.ASCII,
                ),
            ),
            ("403 forbidden", None),
        ),
    ),
    (
        FailureKind.UNAUTHORIZED,
        (
            _token("unauthorized", r"(?::\s|:?$|:?(?=[\"\\\n]))"),
            ("authentication required", None),
            ("no basic auth credentials", None),
            ("401 unauthorized", None),
            ("failed to authorize", None),
        ),
    ),
)

# Lines that carry the words but are about something else than a registry (lowercased).
_NOT_REGISTRY = ("health check for container", "apparmor=", "audit: type=", 'msg="calling ')

# The pre-filter: every rule above contains one of these substrings. Lowercasing bytes (ASCII)
# and str (Unicode) agree on every letter of these words, so the pre-filter stays exact.
PREFILTER_WORDS = (b"auth", b"denied", b"many", b"forbidden", b"rate limit", b"rname", b"_scope")


def rule_literals() -> tuple[str, ...]:
    """The literal of every rule branch (lowercase): a message holding none is no failure."""
    return tuple(literal for _, branches in _RULES for literal, _ in branches)


def classify_wording(text: str) -> FailureKind | None:
    """The failure kind a text's wording names, most specific first; ``None`` if none."""
    return _classify_lowered(text.lower())


def _gate_rules() -> tuple[tuple[str, tuple[tuple[int, str, re.Pattern[str] | None], ...]], ...]:
    """Each branch filed under the first pre-filter word it contains, with its rule's rank.

    Building this proves the pre-filter exact: a branch without a pre-filter word fails here,
    at import, instead of silently never matching behind the pre-filter.
    """
    gates: dict[str, list[tuple[int, str, re.Pattern[str] | None]]] = {
        w.decode(): [] for w in PREFILTER_WORDS
    }
    for rank, (_, branches) in enumerate(_RULES):
        for literal, confirm in branches:
            word = next((w for w in gates if w in literal), None)
            if word is None:
                raise AssertionError(f"rule literal {literal!r} holds no pre-filter word")
            gates[word].append((rank, literal, confirm))
    return tuple((w, tuple(b)) for w, b in gates.items())


_GATES = _gate_rules()


def _classify_lowered(low: str) -> FailureKind | None:
    best = len(_RULES)
    for word, branches in _GATES:
        if word in low:
            for rank, literal, confirm in branches:
                if rank < best and literal in low and (confirm is None or confirm.search(low)):
                    best = rank
    return _RULES[best][0] if best < len(_RULES) else None


# --- the recognizer ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Recognizer:
    """Built-in rules plus the settings' extra patterns."""

    extra: tuple[ExtraPattern, ...] = field(default=())

    def might_match(self, message: bytes) -> bool:
        """Cheap pre-filter on raw bytes: ``False`` means :meth:`recognize` surely returns None."""
        if self.extra:
            return True
        low = message.lower()
        return (
            b"auth" in low
            or b"denied" in low
            or b"many" in low
            or b"forbidden" in low
            or b"rate limit" in low
            or b"rname" in low
            or b"_scope" in low
        )

    def candidates(self, messages: Sequence[bytes]) -> list[int]:
        """Indices of the messages :meth:`might_match` accepts, found in one pass per word.

        Scanning one joined, lowercased buffer costs a third of testing message by message: the
        per-call overhead of seven ``in`` tests is gone. A word cannot span two messages: the
        separator occurs in no word, and positions map back through the offsets (a separator
        inside a message does not matter).
        """
        if self.extra:
            return list(range(len(messages)))
        if not messages:
            return []
        big = b"\n".join(messages).lower()
        # ends[i]: offset just past message i and its separator; all computed in C.
        ends = list(accumulate(map(add, map(len, messages), repeat(1))))
        found: set[int] = set()
        for word in PREFILTER_WORDS:
            at = big.find(word)
            while at != -1:
                index = bisect_right(ends, at)
                found.add(index)
                at = big.find(word, ends[index])  # one hit per message is enough
        return sorted(found)

    def recognize(self, message: str, *, unit: str, time: datetime) -> AuthFailure | None:
        """The failure a message reports, or ``None`` when it reports none."""
        found = self.find(message)
        return None if found is None else found.at(unit, time)

    def find(self, message: str) -> Recognized | None:
        """What a message says, before the caller knows which unit logged it and when.

        The journal follower asks this first and reads the unit and time only of failures.
        """
        for pattern in self.extra:
            m = pattern.regex.search(message)
            if m:
                return _from_extra(pattern, m, message)
        low = message.lower()
        kind = _classify_lowered(low)
        if kind is None:
            return None
        for marker in _NOT_REGISTRY:
            if marker in low:
                return None
        registry, repository = locate(message)
        return Recognized(kind, registry, repository, operation_of(message), _clean(message))


@dataclass(frozen=True, slots=True)
class Recognized:
    """An :class:`AuthFailure` without its unit and time."""

    kind: FailureKind
    registry: str | None
    repository: str | None
    operation: str | None
    message: str

    def at(self, unit: str, time: datetime) -> AuthFailure:
        return AuthFailure(
            self.kind, self.registry, self.repository, self.operation, unit, time, self.message
        )


def _from_extra(pattern: ExtraPattern, m: re.Match[str], message: str) -> Recognized:
    groups = m.groupdict()
    kind = pattern.kind
    kind_text = groups.get("kind")
    if kind_text:
        try:
            kind = FailureKind(kind_text.lower())
        except ValueError:
            kind = classify_wording(kind_text) or kind
    registry, repository = locate(message)
    if groups.get("registry"):
        registry = registry_name(groups["registry"])
    if groups.get("repository"):
        repository = groups["repository"]
    return Recognized(
        kind or FailureKind.UNAUTHORIZED,
        registry,
        repository,
        operation_of(message),
        _clean(message),
    )


def _clean(message: str) -> str:
    cleaned = redact_text(message.replace('\\"', '"')).strip()
    if len(cleaned) > MAX_MESSAGE_CHARS:
        cleaned = cleaned[: MAX_MESSAGE_CHARS - 1] + "…"
    return cleaned


DEFAULT = Recognizer()


def recognize(
    message: str, *, unit: str, time: datetime, extra: Sequence[ExtraPattern] = ()
) -> AuthFailure | None:
    """Shorthand for ``Recognizer(tuple(extra)).recognize(...)``."""
    return Recognizer(tuple(extra)).recognize(message, unit=unit, time=time)
