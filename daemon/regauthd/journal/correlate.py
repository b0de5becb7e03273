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

The evidence types live in :mod:`regauthd.journal.evidence`, the sentences in
:mod:`regauthd.journal.phrases`.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, timedelta, tzinfo

from regauthd.journal.evidence import Evidence, FixEvent, ProbeNote, Where, registry_of_key
from regauthd.journal.phrases import (
    clock_ms,
    describe_change,
    directory_of,
    headline,
    login_command,
    misplaced_fix,
    no_credentials_fix,
    probe_label,
    push_note,
    rate_fix,
    rate_text,
)
from regauthd.journal.recognize import AuthFailure, FailureKind
from regauthd.probe.result import ProbeResult, ProbeStatus

LOOKBACK = timedelta(minutes=5)
"""A repair this long before a failure still explains it: the client read the file before the
repair (``docker push`` reads the credential once, at its start, and pushes can take minutes)."""

LOOKAHEAD = timedelta(hours=1)
"""A repair this long after a failure still explains it (the re-check it triggered, or, for old
entries read at start-up, the first repair pass); later ones say nothing about it."""


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
            f"`regauthd check --docker-config {directory_of(event.path)}` shows the details.",
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
            reason += f"; the credential works now ({probe_label(evidence.probe_note, probe)})"
        return Verdict(Cause.MISPLACED_KEY, head, reason, misplaced_fix(failure))

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
            no_credentials_fix(registry),
        )

    if probe is not None and _works(failure, probe):
        label = probe_label(evidence.probe_note, probe)
        if failure.kind is FailureKind.RATE_LIMITED:
            return Verdict(
                Cause.RATE_LIMITED,
                head,
                f"{rate_text(None, None)}; now {rate_text(probe, label, now=True)}",
                rate_fix(probe),
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
            f"the stored credential for {probe.registry} works ({label}{push_note(probe)}): "
            "the failing client used another one (root's ~/.docker with sudo, or another "
            "DOCKER_CONFIG?)",
            "Find the config the failing client reads (its user's ~/.docker, root's with sudo, "
            "or its DOCKER_CONFIG) and log in there, or add it to `watch.paths` so regauthd "
            "keeps it repaired.",
        )

    return _from_wording(failure, evidence, head)


def _needs_push(failure: AuthFailure) -> bool:
    return failure.operation == "push"


def _works(failure: AuthFailure, probe: ProbeResult) -> bool:
    """The probe found the credential good for what the failure needed."""
    if probe.status is ProbeStatus.OK:
        return not (_needs_push(failure) and probe.push_allowed is False)
    # No push right says nothing against a pull: the token for pull was granted.
    return probe.status is ProbeStatus.PUSH_DENIED and not _needs_push(failure)


def _probe_verdict(
    failure: AuthFailure, probe: ProbeResult, note: ProbeNote
) -> tuple[Cause, str, str] | None:
    """A probe result that explains the failure by itself: (cause, reason, fix), else None."""
    label = probe_label(note, probe)
    registry = probe.registry
    status = probe.status
    if status is ProbeStatus.BAD_CREDENTIALS:
        who = f" (user {probe.username})" if probe.username else ""
        return (
            Cause.BAD_CREDENTIALS,
            f"the password for {registry}{who} is rejected ({label})",
            f"Log in again: `{login_command(registry)}` (the stored password or token was changed, "
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
            f"token that has push scope: `{login_command(registry)}`.",
        )
    if status is ProbeStatus.NO_CREDENTIALS:
        return (
            Cause.NO_CREDENTIALS,
            f"no credential for {registry} in any watched config ({label}; credentials only in "
            "root's config, or in an unwatched DOCKER_CONFIG?)",
            no_credentials_fix(registry),
        )
    if status is ProbeStatus.RATE_LIMITED:
        return Cause.RATE_LIMITED, rate_text(probe, label), rate_fix(probe)
    return None


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
        unconfirmed = f"{probe_label(note, probe)}" + (f": {probe.detail}" if probe.detail else "")
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
            Cause.RATE_LIMITED, head, f"{rate_text(None, None)} ({unconfirmed})", rate_fix(None)
        )
    cause, words = _WORDING[failure.kind]
    reason = f"{words} ({unconfirmed})"
    stored = [c for c in evidence.configs or () if c.where is not Where.NONE]
    if registry is not None and stored:
        where = stored[0]
        held = f"helper `{where.helper}`" if where.where is Where.HELPER else "the file"
        reason += f"; {where.path} holds a credential for it under `{where.key}` ({held})"
    if cause is Cause.BAD_CREDENTIALS and registry is not None:
        fix = (
            f"Log in again: `{login_command(registry)}`; {inspect} shows whether the new one works."
        )
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
    "Verdict",
    "correlate",
]
