"""The words of a verdict: when and what failed, why a repair explains it, what to do. Pure.

:func:`regauthd.journal.correlate.correlate` picks the cause; the sentences it is told in are
built here, so that every alert words the same fact the same way.
"""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo

from regauthd.dockerconfig.keys import HUB_CANONICAL, HUB_NAME, KeyKind, classify
from regauthd.dockerconfig.normalize import Change
from regauthd.journal.evidence import ProbeNote
from regauthd.journal.recognize import AuthFailure
from regauthd.probe.result import ProbeResult

# Changes that mean "the credential was where a client does not look": each explains a failure.
# `drop_duplicate` removes a copy of a credential that was already in place: it explains nothing.
_CAUSAL_ACTIONS = frozenset({"rename", "copy", "replace", "helper_alias", "drop_empty"})


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


def directory_of(path: str) -> str:
    return path.rsplit("/", 1)[0] if "/" in path else "."


def probe_label(note: ProbeNote, probe: ProbeResult) -> str:
    prefix = "last probe" if note is ProbeNote.STALE else "probe"
    return f"{prefix}: {probe.status.value}"


def push_note(probe: ProbeResult) -> str:
    if probe.push_allowed and probe.repository:
        return f", push on {probe.repository} allowed"
    return ""


def rate_text(probe: ProbeResult | None, label: str | None, *, now: bool = False) -> str:
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


def rate_fix(probe: ProbeResult | None) -> str:
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


def login_command(registry: str) -> str:
    return "docker login" if registry == HUB_NAME else f"docker login {registry}"


def no_credentials_fix(registry: str) -> str:
    return (
        f"Log in as the user that runs the failing client (`{login_command(registry)}`), or "
        "add that user's config to `watch.paths`: `sudo docker login` writes root's config, "
        "which a client run without sudo never reads."
    )


def misplaced_fix(failure: AuthFailure) -> str:
    again = f"Retry the {failure.operation}" if failure.operation else "Retry"
    if failure.registry in (None, HUB_NAME):
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


__all__ = [
    "clock",
    "clock_ms",
    "describe_change",
    "directory_of",
    "headline",
    "login_command",
    "misplaced_fix",
    "no_credentials_fix",
    "probe_label",
    "push_note",
    "rate_fix",
    "rate_text",
    "target_of",
]
