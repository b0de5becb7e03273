"""Which of two conflicting credentials works, in one alert (pure).

When the fixer resolved a conflict (one registry under two spellings with different
credentials), the scheduler probes both; :func:`conflict_verdict` says in one sentence which
works and whether a person must act, :func:`conflict_alert` makes it the ``probe.conflict``
alert. Credentials appear by user name only, never by secret.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from regauthd.alerts.catalogue import AlertKind
from regauthd.dockerconfig.auth import Credential
from regauthd.dockerconfig.keys import registry_name
from regauthd.probe.result import ProbeResult, ProbeStatus
from regauthd.probe.schedule import AlertDecision, decision

if TYPE_CHECKING:
    from regauthd.dockerconfig.report import ReportedConflict

_CONFLICT_WORDS = {
    ProbeStatus.OK: "works",
    ProbeStatus.PUSH_DENIED: "works but may not push",
    ProbeStatus.BAD_CREDENTIALS: "is rejected",
    ProbeStatus.NO_CREDENTIALS: "could not be read",
}


def _conflict_word(result: ProbeResult) -> str:
    return _CONFLICT_WORDS.get(result.status, f"could not be checked ({result.status.value})")


def _possessive(credential: Credential | None) -> str:
    """Whose credential, in words (``alice's``): a user name, never the secret."""
    if credential is None:
        return "the"
    if credential.is_identity_token:
        return "the identity-token"
    return f"{credential.username}'s"


def _attributive(credential: Credential | None) -> str:
    """``the removed bob credential``."""
    if credential is None:
        return ""
    return "identity-token " if credential.is_identity_token else f"{credential.username} "


def conflict_verdict(
    canonical: str,
    kept: tuple[Credential | None, ProbeResult],
    removed: tuple[Credential | None, ProbeResult],
    *,
    backup: str,
) -> tuple[str, bool]:
    """One sentence on which of two conflicting credentials works, and whether a person must act
    (the kept one does not work). Credentials give user names only, never secrets."""
    kept_cred, kept_result = kept
    removed_cred, removed_result = removed
    registry = registry_name(canonical)
    text = (
        f"kept {_possessive(kept_cred)} credential for {registry}; it "
        f"{_conflict_word(kept_result)}; the removed {_attributive(removed_cred)}credential "
        f"{_conflict_word(removed_result)}"
    )
    kept_works = kept_result.status is ProbeStatus.OK
    removed_works = removed_result.status is ProbeStatus.OK
    act = not kept_works and kept_result.status is not ProbeStatus.RATE_LIMITED
    if act and removed_works:
        text += f"; restore the removed credential from {backup} or log in again"
    elif act:
        text += "; log in again"
    return text, act


def conflict_alert(
    path: str,
    conflict: ReportedConflict,
    kept: tuple[Credential | None, ProbeResult],
    removed: tuple[Credential | None, ProbeResult],
) -> AlertDecision:
    backup = str(conflict.backup) if conflict.backup else "none"
    verdict, act = conflict_verdict(conflict.canonical, kept, removed, backup=backup)
    return decision(
        AlertKind.PROBE_CONFLICT,
        f"{path}#{conflict.canonical}",
        path=path,
        canonical=conflict.canonical,
        winner=conflict.winner,
        loser=conflict.loser,
        backup=backup,
        verdict=verdict,
        kept_status=kept[1].status.value,
        removed_status=removed[1].status.value,
        action_needed=act,
    )
