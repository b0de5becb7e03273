"""What one probe found, as a result a person can act on (pure).

:class:`Figures` collects what the steps of :class:`regauthd.probe.flow.ProbeFlow` found (push
allowed, Hub's rate-limit figures, notes); :func:`finish` turns them into the
:class:`~regauthd.probe.result.ProbeResult` (``rate_limited`` when the pulls are used up,
``push_denied`` when a repository was asked for and push is refused, else ``ok``), and
:func:`result` makes any result with every secret the flow held redacted from its detail.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from regauthd.probe.result import ProbeResult, ProbeStatus, ProbeTarget
from regauthd.redact import redact_text


@dataclass
class Figures:
    """What the steps found so far (a result is made from them at the end)."""

    push_allowed: bool | None = None
    limit: int | None = None
    remaining: int | None = None
    window: int | None = None
    notes: list[str] = field(default_factory=list)


def login_command(target: ProbeTarget) -> str:
    return "docker login" if target.is_hub else f"docker login {target.registry}"


def refused_text(target: ProbeTarget) -> str:
    """The registry refused the credential: whose, stored where, and the login that mends it."""
    cred = target.credential
    if target.identity_token:
        who = "the stored identity token"
    else:
        who = f"user {cred.username!r}" if cred else "the credential"
    key = target.credential_key
    where = f" (stored under {key!r})" if key else ""
    return (
        f"{target.registry} refused {who}{where}: wrong password, or token expired or "
        f"revoked; run `{login_command(target)}` again"
    )


def finish(target: ProbeTarget, figures: Figures, what: str, secrets: Sequence[str]) -> ProbeResult:
    """The result once every step passed: used-up pulls and a refused push still fail it."""
    if figures.remaining is not None and figures.remaining <= 0:
        return result(
            target,
            figures,
            ProbeStatus.RATE_LIMITED,
            f"pull rate limit used up (0 of {figures.limit} left"
            f"{_window_text(figures.window)}); pulls fail until the window moves on",
            secrets,
        )
    if target.repository and figures.push_allowed is False:
        user = target.credential.username if target.credential else "anonymous"
        notes = "; ".join(figures.notes)
        return result(
            target,
            figures,
            ProbeStatus.PUSH_DENIED,
            f"{user!r} may log in to {target.registry} but not push to {target.repository}"
            f" ({notes}); use a token with write access",
            secrets,
        )
    parts = [what]
    if target.repository and figures.push_allowed:
        parts.append(f"push to {target.repository} allowed")
    if figures.remaining is not None:
        parts.append(
            f"{figures.remaining} of {figures.limit} pulls left{_window_text(figures.window)}"
        )
    parts += [n for n in figures.notes if n]
    return result(target, figures, ProbeStatus.OK, "; ".join(parts), secrets)


def result(
    target: ProbeTarget,
    figures: Figures,
    status: ProbeStatus,
    detail: str,
    secrets: Sequence[str],
    *,
    retry_after_s: float | None = None,
) -> ProbeResult:
    return ProbeResult(
        registry=target.registry,
        status=status,
        push_allowed=figures.push_allowed if target.repository else None,
        rate_limit_limit=figures.limit,
        rate_limit_remaining=figures.remaining,
        rate_limit_window=figures.window,
        detail=redact_text(" ".join(detail.split()), list(secrets)),
        retry_after_s=retry_after_s,
        username=target.credential.username if target.credential else None,
        repository=target.repository,
    )


def _window_text(window: int | None) -> str:
    if not window:
        return ""
    return f" per {window // 3600} h" if window % 3600 == 0 else f" per {window} s"
