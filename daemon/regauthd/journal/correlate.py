"""Why did that push fail? A logged auth failure + what the configs and the probes say -> a verdict.

Pure: no disk, no network, no clock. The journal watch (:mod:`regauthd.journal.watch`) gathers the
evidence when a failure is logged (a re-check of the watched configs, the repairs made shortly
before, a probe of the registry) and :func:`correlate` turns it into the sentence the alert
carries and the fix a person can act on::

    push to docker.io/acme/api failed at 12:03:01: credentials were stored under `docker.io`,
    which Docker never reads; normalized at 12:03:01.200

The evidence is weighed in this order (the first that explains the failure is the cause):

1. a watched config that cannot be repaired (Docker may ignore the whole file), unless another
   watched config holds the registry's credential;
2. a fresh probe that still fails (rejected password, no push right, no credential, rate limit):
   that is what breaks the next attempt too, whatever was repaired;
3. a repair of a key Docker does not read, made for that registry shortly before the failure
   (:data:`LOOKBACK`) or after it (the re-check; :data:`LOOKAHEAD`): explained, and fixed;
4. no watched config holds a credential for the registry;
5. the probe says the stored credential works: the failing client used another one;
6. otherwise the registry's own wording, marked as not confirmed.

Nothing here ever holds a secret: fix events keep keys and actions, config sightings keep the
key and the user name, probe results hold none by contract.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from regauthd.dockerconfig.fixer import FixReport
from regauthd.dockerconfig.keys import (
    HUB_CANONICAL,
    HUB_NAME,
    KeyKind,
    auths_key_for_registry,
    classify,
    registry_name,
)
from regauthd.dockerconfig.normalize import Change
from regauthd.dockerconfig.stores import credential_from_entry, helper_name_for
from regauthd.journal.recognize import AuthFailure, FailureKind
from regauthd.probe.result import ProbeResult, ProbeStatus

LOOKBACK = timedelta(minutes=5)
"""A repair this long before a failure still explains it: the client read the file before the
repair (``docker push`` reads the credential once, at its start, and pushes can take minutes)."""

LOOKAHEAD = timedelta(hours=1)
"""A repair this long after a failure still explains it (the re-check it triggered, or, for old
entries read at start-up, the first repair pass); later ones say nothing about it."""

HUB = HUB_NAME

# Hosts that are Docker Hub whatever the spelling; a namespaced key such as `docker.io/acme`
# is a Hub credential too (podman's repository-scoped one).

# Changes that mean "the credential was where a client does not look": each explains a failure.
# `drop_duplicate` removes a copy of a credential that was already in place: it explains nothing.
_CAUSAL_ACTIONS = frozenset({"rename", "copy", "replace", "helper_alias", "drop_empty"})


class Cause(enum.StrEnum):
    """What the verdict blames; a stable field (``REGAUTHD_CAUSE``) for log-based alerting."""

    MISPLACED_KEY = "misplaced_key"
    """The credential was under a key the client never reads; regauthd has moved it."""
    CONFIG_UNFIXABLE = "config_unfixable"
    """A watched config is broken in a way regauthd may not repair by itself."""
    BAD_CREDENTIALS = "bad_credentials"
    """The registry rejects the stored password or token."""
    DENIED = "denied"
    """The credential works but has no right to that repository (no push, or no pull)."""
    NO_CREDENTIALS = "no_credentials"
    """No watched config holds a credential for the registry."""
    RATE_LIMITED = "rate_limited"
    """The registry throttles this host (Docker Hub's pull limit)."""
    OTHER_CREDENTIAL = "other_credential"
    """The stored credential works: the failing client used another config."""
    PUSH_UNCHECKED = "push_unchecked"
    """The credential works for pulls; push rights were not probed (no repository configured)."""
    UNKNOWN = "unknown"
    """Nothing gathered explains it; the registry's own words are all there is."""


class ProbeNote(enum.StrEnum):
    """Where the probe evidence came from, or why there is none."""

    FRESH = "fresh"
    """The probe ran after the failure was seen."""
    STALE = "stale"
    """No new result in time: this is the last result from before the failure."""
    TIMEOUT = "timeout"
    """The probe did not answer in time and there is no earlier result."""
    OFF = "off"
    """Probes are not enabled."""
    NOT_PROBED = "not_probed"
    """The failure does not name its registry: nothing to probe."""


# ---------------------------------------------------------------------------------------------
# Evidence


def registry_of_key(key: str) -> str:
    """The registry an ``auths``/``credHelpers`` key is for, as failures name it (Hub: docker.io).

    >>> registry_of_key("https://index.docker.io/v1/"), registry_of_key("https://ghcr.io/v2/")
    ('docker.io', 'ghcr.io')
    """
    # Unlike a probe target, credentials under hub.docker.com are (misplaced) Hub credentials.
    return HUB if classify(key).kind is KeyKind.HUB_WEBSITE else registry_name(key)


@dataclass(frozen=True, slots=True)
class ConflictNote:
    """A conflict a repair resolved (no secrets: keys only)."""

    canonical: str
    winner: str
    loser: str


@dataclass(frozen=True, slots=True)
class FixEvent:
    """One repair (or refusal) of a watched config, and when it happened."""

    path: str
    at: datetime
    changes: tuple[Change, ...] = ()
    conflicts: tuple[ConflictNote, ...] = ()
    error: str | None = None
    """Why the file was refused (it is left as it is), when it was."""

    @classmethod
    def from_report(cls, report: FixReport, at: datetime) -> FixEvent:
        """Keep what a verdict needs from a :class:`FixReport`: keys and actions, no contents."""
        return cls(
            path=str(report.path),
            at=at,
            changes=tuple(report.changes) if report.written else (),
            conflicts=tuple(ConflictNote(c.canonical, c.winner, c.loser) for c in report.conflicts),
            error=report.error.reason if report.error is not None else None,
        )

    @property
    def noteworthy(self) -> bool:
        """Worth remembering: something was changed, or the file was refused."""
        return bool(self.changes or self.conflicts or self.error)

    def registries(self) -> frozenset[str]:
        """Every registry a change or conflict of this repair touched."""
        found = {registry_of_key(c.to_key) for c in self.changes}
        found |= {registry_of_key(c.from_key) for c in self.changes}
        found |= {registry_of_key(c.canonical) for c in self.conflicts}
        return frozenset(found)


class Where(enum.StrEnum):
    """Where a config keeps the credential Docker would use for a registry."""

    INLINE = "inline"
    """In config.json itself (``auth``, or ``username``/``password``, or an identity token)."""
    HELPER = "helper"
    """In a credential helper (``credHelpers``/``credsStore``); not asked whether it has one."""
    NONE = "none"


@dataclass(frozen=True, slots=True)
class ConfigSight:
    """What one watched config holds for the failing registry, as the Docker CLI looks it up."""

    path: str
    where: Where
    key: str | None = None
    """The key Docker finds it under."""
    username: str | None = None
    helper: str | None = None


def sight(path: str, config: Mapping[str, Any], registry: str) -> ConfigSight:
    """Where ``config`` keeps the credential Docker uses for ``registry`` (Docker CLI's rules:
    ``credHelpers[key]``, then ``credsStore``, then ``auths[key]``, then for other registries
    than Docker Hub the legacy host-name match). Reads no helper: a helper counts as "maybe"."""
    key = auths_key_for_registry(registry)
    helper = helper_name_for(config, key)
    if helper is not None:
        return ConfigSight(path, Where.HELPER, key, helper=helper)
    auths = config.get("auths")
    if not isinstance(auths, Mapping):
        return ConfigSight(path, Where.NONE)
    candidates = [key]
    if key != HUB_CANONICAL:
        candidates += [k for k in auths if k != key and _hostname(k) == key]
    for candidate in candidates:
        entry = auths.get(candidate)
        if isinstance(entry, Mapping):
            credential = credential_from_entry(entry)
            if credential is not None:
                user = None if credential.is_identity_token else credential.username
                return ConfigSight(path, Where.INLINE, candidate, username=user)
    return ConfigSight(path, Where.NONE)


def _hostname(key: str) -> str:
    # docker/cli credentials.ConvertToHostname: strip `scheme://`, cut at the first `/`.
    rest = key.split("://", 1)[1] if "://" in key else key
    return rest.split("/", 1)[0]


@dataclass(frozen=True, slots=True)
class Evidence:
    """Everything gathered about one failure (or a burst of them for one registry and kind)."""

    fixes: tuple[FixEvent, ...] = ()
    """Recent repairs of watched configs (any registry; :func:`correlate` picks the relevant)."""
    configs: tuple[ConfigSight, ...] | None = None
    """What each watched config holds for the registry after the re-check (None: unknown)."""
    probe: ProbeResult | None = None
    probe_note: ProbeNote = ProbeNote.OFF
    failures: int = 1
    """How many failures this verdict stands for."""
    first_time: datetime | None = None
    """When the first of them was logged (the failure given is the latest)."""


# ---------------------------------------------------------------------------------------------
# Verdict


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the alert says: ``headline: reason``, and the fix."""

    cause: Cause
    headline: str
    """``push to docker.io/acme/api failed at 12:03:01``."""
    reason: str
    """``credentials were stored under `docker.io`, which Docker never reads; normalized at ...``"""
    fix: str

    @property
    def text(self) -> str:
        return f"{self.headline}: {self.reason}"


def clock(when: datetime, tz: tzinfo | None = UTC) -> str:
    """``12:03:01``: when a failure was logged, as people compare it with their CI log."""
    return when.astimezone(tz).strftime("%H:%M:%S")


def clock_ms(when: datetime, tz: tzinfo | None = UTC) -> str:
    """``12:03:01.200``: repairs take milliseconds, so their time is shown to the millisecond."""
    return when.astimezone(tz).strftime("%H:%M:%S.%f")[:-3]


def target_of(failure: AuthFailure) -> str | None:
    """``docker.io/acme/api``, ``docker.io``, or None when the line named neither."""
    if failure.registry and failure.repository:
        return f"{failure.registry}/{failure.repository}"
    return failure.registry or failure.repository


def headline(
    failure: AuthFailure,
    *,
    failures: int = 1,
    first: datetime | None = None,
    tz: tzinfo | None = UTC,
) -> str:
    """``push to docker.io/acme/api failed at 12:03:01`` (or ``... failed 3 times since ...``)."""
    target = target_of(failure)
    op = failure.operation
    if op == "push":
        what = f"push to {target}" if target else "a push"
    elif op == "pull":
        what = f"pull of {target}" if target else "a pull"
    elif op == "login":
        what = f"login to {failure.registry or target}" if target else "a login"
    else:
        what = f"access to {target}" if target else "a registry request"
    if failures > 1:
        return f"{what} failed {failures} times since {clock(first or failure.time, tz)}"
    return f"{what} failed at {clock(failure.time, tz)}"


def correlate(
    failure: AuthFailure,
    evidence: Evidence,
    *,
    tz: tzinfo | None = UTC,
    lookback: timedelta = LOOKBACK,
) -> Verdict:
    """The verdict for ``failure`` given ``evidence``; see the module docstring for the order."""
    head = headline(failure, failures=evidence.failures, first=evidence.first_time, tz=tz)
    registry = failure.registry
    since = (evidence.first_time or failure.time) - lookback
    until = failure.time + LOOKAHEAD
    recent = [f for f in evidence.fixes if since <= f.at <= until]

    refused = [f for f in recent if f.error is not None]
    held = [c for c in evidence.configs or () if c.where is not Where.NONE]
    # A refused file explains the failure unless another watched config holds the credential
    # (the refused one may belong to another user than the failing client).
    if refused and not held:
        event = refused[-1]
        return Verdict(
            Cause.CONFIG_UNFIXABLE,
            head,
            f"{event.path} cannot be repaired ({event.error}); Docker may not read it at all",
            f"Repair {event.path} by hand or log in again so that Docker rewrites it; "
            f"`regauthd check --docker-config {_directory(event.path)}` shows the details.",
        )

    misplaced = _misplacements(recent, registry, tz)
    probe = evidence.probe
    probed = _probe_verdict(failure, probe, evidence.probe_note) if probe is not None else None
    if probed is not None:
        cause, reason, fix = probed
        if misplaced:
            reason = f"{reason}; also, {misplaced}"
        return Verdict(cause, head, reason, fix)

    if misplaced:
        reason = misplaced
        if probe is not None and _works(failure, probe):
            reason += f"; the credential works now ({_label(evidence.probe_note, probe)})"
        return Verdict(Cause.MISPLACED_KEY, head, reason, _misplaced_fix(failure))

    if (
        registry is not None
        and evidence.configs is not None
        and all(c.where is Where.NONE for c in evidence.configs)
    ):
        return Verdict(
            Cause.NO_CREDENTIALS,
            head,
            f"no credential for {registry} in any watched config "
            f"(credentials only in root's config, or in an unwatched DOCKER_CONFIG?)",
            _no_credentials_fix(registry),
        )

    if probe is not None and _works(failure, probe):
        label = _label(evidence.probe_note, probe)
        if failure.kind is FailureKind.RATE_LIMITED:
            return Verdict(
                Cause.RATE_LIMITED,
                head,
                f"{_rate_text(None, None)}; now {_rate_text(probe, label, now=True)}",
                _rate_fix(probe),
            )
        if _needs_push(failure) and probe.push_allowed is None:
            repo = failure.repository or "REPOSITORY"
            return Verdict(
                Cause.PUSH_UNCHECKED,
                head,
                f"the credential for {probe.registry} works for pulls ({label}); its push right "
                f"on {repo} was not probed",
                f'Name the repository in the settings (`[probe.repositories]` "{probe.registry}" '
                f'= "{repo}") so push rights are probed; check the token\'s scopes meanwhile.',
            )
        return Verdict(
            Cause.OTHER_CREDENTIAL,
            head,
            f"the stored credential for {probe.registry} works ({label}{_push_note(probe)}): "
            "the failing client used another one (root's ~/.docker with sudo, or another "
            "DOCKER_CONFIG?)",
            "Find the config the failing client reads (its user's ~/.docker, root's with sudo, "
            "or its DOCKER_CONFIG) and log in there, or add it to `watch.paths` so regauthd "
            "keeps it repaired.",
        )

    return _from_wording(failure, evidence, head)


# --- the parts -----------------------------------------------------------------------------


def _directory(path: str) -> str:
    return path.rsplit("/", 1)[0] if "/" in path else "."


def _needs_push(failure: AuthFailure) -> bool:
    return failure.operation == "push"


def _works(failure: AuthFailure, probe: ProbeResult) -> bool:
    """The probe found the credential good for what the failure needed."""
    if probe.status is ProbeStatus.OK:
        return not (_needs_push(failure) and probe.push_allowed is False)
    # No push right says nothing against a pull: the token for pull was granted.
    return probe.status is ProbeStatus.PUSH_DENIED and not _needs_push(failure)


def _label(note: ProbeNote, probe: ProbeResult) -> str:
    prefix = "last probe" if note is ProbeNote.STALE else "probe"
    return f"{prefix}: {probe.status.value}"


def _push_note(probe: ProbeResult) -> str:
    if probe.push_allowed and probe.repository:
        return f", push on {probe.repository} allowed"
    return ""


def _probe_verdict(
    failure: AuthFailure, probe: ProbeResult, note: ProbeNote
) -> tuple[Cause, str, str] | None:
    """A probe result that explains the failure by itself: (cause, reason, fix), else None."""
    label = _label(note, probe)
    registry = probe.registry
    status = probe.status
    if status is ProbeStatus.BAD_CREDENTIALS:
        who = f" (user {probe.username})" if probe.username else ""
        return (
            Cause.BAD_CREDENTIALS,
            f"the password for {registry}{who} is rejected ({label})",
            f"Log in again: `{_login(registry)}` (the stored password or token was changed, "
            "has expired or was revoked).",
        )
    no_push = status is ProbeStatus.PUSH_DENIED or (
        status is ProbeStatus.OK and probe.push_allowed is False
    )
    if no_push and _needs_push(failure):
        repo = probe.repository or failure.repository or "the repository"
        holder = (
            f"the token for {probe.username}"
            if probe.username
            else (f"the credential for {registry}")
        )
        return (
            Cause.DENIED,
            f"{holder} has no push on {repo} ({label})",
            f"Give {probe.username or 'that account'} write access to {repo}, or log in with a "
            f"token that has push scope: `{_login(registry)}`.",
        )
    if status is ProbeStatus.NO_CREDENTIALS:
        return (
            Cause.NO_CREDENTIALS,
            f"no credential for {registry} in any watched config ({label}; credentials only in "
            "root's config, or in an unwatched DOCKER_CONFIG?)",
            _no_credentials_fix(registry),
        )
    if status is ProbeStatus.RATE_LIMITED:
        return Cause.RATE_LIMITED, _rate_text(probe, label), _rate_fix(probe)
    return None


def _rate_text(probe: ProbeResult | None, label: str | None, *, now: bool = False) -> str:
    """``rate limited: 0 of 100 pulls left per 6 h (probe: rate_limited)``; with ``now`` only
    the figures (the probe found the limit not reached any more)."""
    if probe is not None and probe.rate_limit_remaining is not None:
        of = f" of {probe.rate_limit_limit}" if probe.rate_limit_limit is not None else ""
        window = f" per {_duration(probe.rate_limit_window)}" if probe.rate_limit_window else ""
        figures = f"{probe.rate_limit_remaining}{of} pulls left{window}"
        text = figures if now else f"rate limited: {figures}"
    elif now:
        text = "not rate limited"
    else:
        text = "rate limited: the registry answered `toomanyrequests`"
    return f"{text} ({label})" if label else text


def _rate_fix(probe: ProbeResult | None) -> str:
    wait = ""
    if probe is not None and probe.retry_after_s:
        wait = f" (the registry says: retry after {_duration(int(probe.retry_after_s))})"
    return (
        "Log in (authenticated pulls get a higher limit), pull through a mirror, or wait for "
        f"the window to reset{wait}."
    )


def _duration(seconds: int) -> str:
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    if seconds % 60 == 0:
        return f"{seconds // 60} min"
    return f"{seconds} s"


def _login(registry: str) -> str:
    return "docker login" if registry == HUB else f"docker login {registry}"


def _no_credentials_fix(registry: str) -> str:
    return (
        f"Log in as the user that runs the failing client (`{_login(registry)}`), or add that "
        "user's config to `watch.paths`: `sudo docker login` writes root's config, which a "
        "client run without sudo never reads."
    )


def _misplaced_fix(failure: AuthFailure) -> str:
    again = f"Retry the {failure.operation}" if failure.operation else "Retry"
    if failure.registry in (None, HUB):
        habit = (
            "log in to Docker Hub with `docker login` (no argument) rather than "
            "`docker login docker.io` or a hand-written key"
        )
    else:
        habit = f"log in with `docker login {failure.registry}` (the bare host name)"
    return f"{again}: the credential is now where clients read it. To keep it that way, {habit}."


def describe_change(change: Change) -> str | None:
    """Why a repaired key broke a client, in words; None for a change that explains nothing."""
    if change.action not in _CAUSAL_ACTIONS:
        return None
    source = change.from_key
    if change.section == "credHelpers":
        if change.to_key == HUB_CANONICAL:
            return (
                f"the credential helper for Docker Hub was set under `{source}`, which Docker "
                "never uses"
            )
        return (
            f"the credential helper for Docker Hub was set only under `{source}`, which podman "
            "and skopeo never use"
        )
    kind = classify(source).kind
    if change.action == "drop_empty":
        return f"an empty `{source}` entry hid the credential from podman and skopeo"
    if change.action == "replace":
        return (
            f"the newest credential was stored under `{source}`, which Docker never reads, "
            f"so Docker kept using the older one under `{change.to_key}`"
        )
    if kind is KeyKind.HUB_REGISTRY:
        return (
            f"credentials were stored only under `{source}`, which Docker reads only for images "
            f"named `{source}/...`"
        )
    if kind is KeyKind.HUB_WEBSITE:
        return f"credentials were stored under `{source}` (the web site), which no client reads"
    if kind is KeyKind.HUB_ALIAS:
        return f"credentials were stored under `{source}`, which Docker never reads"
    return (
        f"credentials were stored under `{source}`, which credential helpers and some clients "
        f"do not match (`{change.to_key}` is the key they read)"
    )


def _misplacements(fixes: Sequence[FixEvent], registry: str | None, tz: tzinfo | None) -> str:
    """The repairs that explain a failure at ``registry`` (any registry when unknown), in words."""
    parts: list[str] = []
    for event in fixes:
        if registry is not None and registry not in event.registries():
            continue
        said: list[str] = []
        for change in event.changes:
            if registry is not None and registry_of_key(change.to_key) != registry:
                continue
            text = describe_change(change)
            if text is not None and text not in said:
                said.append(text)
        if not said:
            continue
        text = "; ".join(said)
        if registry is None:
            text += f" (for {', '.join(sorted(event.registries()))})"
        text += f"; normalized at {clock_ms(event.at, tz)}"
        for conflict in event.conflicts:
            if registry is None or registry_of_key(conflict.canonical) == registry:
                text += (
                    f"; two spellings held different credentials: kept the one from "
                    f"`{conflict.winner}`, the other is in the backup"
                )
        if text not in parts:
            parts.append(text)
    return "; ".join(parts)


_WORDING = {
    FailureKind.BAD_CREDENTIALS: (
        Cause.BAD_CREDENTIALS,
        "the registry rejected the user name or password",
    ),
    FailureKind.DENIED: (Cause.DENIED, "the registry denied access to the repository"),
    FailureKind.UNAUTHORIZED: (
        Cause.UNKNOWN,
        "the registry wanted credentials and accepted none it was sent",
    ),
}


def _from_wording(failure: AuthFailure, evidence: Evidence, head: str) -> Verdict:
    """Only the registry's words: say so, and say what the probe could (not) add."""
    registry = failure.registry
    note = evidence.probe_note
    probe = evidence.probe
    if probe is not None:
        unconfirmed = f"{_label(note, probe)}" + (f": {probe.detail}" if probe.detail else "")
        unconfirmed = f"the probe could not tell ({unconfirmed})"
    elif note is ProbeNote.TIMEOUT:
        unconfirmed = "no probe result in time"
    elif note is ProbeNote.NOT_PROBED:
        unconfirmed = "the log line names no registry to probe"
    else:
        unconfirmed = "not confirmed: probes are off"
    inspect = f"`regauthd probe {registry}`" if registry else "`regauthd probe`"
    if failure.kind is FailureKind.RATE_LIMITED:
        return Verdict(
            Cause.RATE_LIMITED, head, f"{_rate_text(None, None)} ({unconfirmed})", _rate_fix(None)
        )
    cause, words = _WORDING[failure.kind]
    reason = f"{words} ({unconfirmed})"
    stored = [c for c in evidence.configs or () if c.where is not Where.NONE]
    if registry is not None and stored:
        where = stored[0]
        held = f"helper `{where.helper}`" if where.where is Where.HELPER else "the file"
        reason += f"; {where.path} holds a credential for it under `{where.key}` ({held})"
    if cause is Cause.BAD_CREDENTIALS and registry is not None:
        fix = f"Log in again: `{_login(registry)}`; {inspect} shows whether the new one works."
    elif cause is Cause.DENIED:
        fix = (
            "Check the account's rights on that repository (and that it exists); "
            f"{inspect} tells whether the stored credential may push."
        )
    else:
        fix = (
            f"Run {inspect} to see whether the stored credential works, and check which "
            "config the failing client reads."
        )
    return Verdict(cause, head, reason, fix)


__all__ = [
    "LOOKAHEAD",
    "LOOKBACK",
    "Cause",
    "ConfigSight",
    "ConflictNote",
    "Evidence",
    "FixEvent",
    "ProbeNote",
    "Verdict",
    "Where",
    "clock",
    "clock_ms",
    "correlate",
    "describe_change",
    "headline",
    "registry_of_key",
    "sight",
    "target_of",
]
