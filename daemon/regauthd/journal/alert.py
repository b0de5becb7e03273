"""The journal's alerts: the subject a failure is alerted under, and its fields. Pure.

One ``journal.auth_failure`` alert per failure (or burst of them) carries the verdict of
:func:`regauthd.journal.correlate.correlate`; ``journal.unavailable`` says the journal cannot be
read (their kinds: :class:`regauthd.alerts.catalogue.AlertKind`).
"""

from __future__ import annotations

from datetime import UTC, tzinfo

from regauthd.journal.correlate import correlate
from regauthd.journal.evidence import Evidence
from regauthd.journal.recognize import AuthFailure


def subject_of(failure: AuthFailure) -> str:
    """The alert subject: one suppression window per registry and failure kind."""
    return f"{failure.registry or 'unknown'}#{failure.kind.value}"


def alert_fields(
    failure: AuthFailure, evidence: Evidence, *, tz: tzinfo | None = UTC
) -> dict[str, str | int]:
    """The ``journal.auth_failure`` alert's fields (flat; no secret: the line is redacted)."""
    verdict = correlate(failure, evidence, tz=tz)
    fields: dict[str, str | int] = {
        "unit": failure.unit,
        "registry": failure.registry or "a registry",
        "reason": verdict.text,
        "fix": verdict.fix,
        "cause": verdict.cause.value,
        "failure_kind": failure.kind.value,
        "failures": evidence.failures,
        "failed_at": failure.time.astimezone(UTC).isoformat(),
        "line": failure.message,
    }
    if failure.repository:
        fields["repository"] = failure.repository
    if failure.operation:
        fields["operation"] = failure.operation
    if evidence.probe is not None:
        fields["probe"] = evidence.probe.status.value
    return fields


__all__ = ["alert_fields", "subject_of"]
