"""The verdict rules: a logged auth failure + repairs + config sightings + probe -> reason and fix.

Pure tables: every row is one situation a person may be in, with the exact sentence the alert
carries (or the part of it that matters) and the cause field alerting rules match on.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from regauthd.dockerconfig.auth import encode_auth
from regauthd.dockerconfig.jsontext import ConfigFileError
from regauthd.dockerconfig.keys import HUB_CANONICAL
from regauthd.dockerconfig.normalize import Change
from regauthd.dockerconfig.report import FixReport, ReportedConflict
from regauthd.journal.correlate import LOOKAHEAD, LOOKBACK, Cause, correlate
from regauthd.journal.evidence import (
    ConfigSight,
    ConflictNote,
    Evidence,
    FixEvent,
    ProbeNote,
    Where,
    registry_of_key,
    sight,
)
from regauthd.journal.phrases import describe_change, headline
from regauthd.journal.recognize import AuthFailure, FailureKind
from regauthd.probe.result import ProbeResult, ProbeStatus

T = datetime(2026, 11, 30, 12, 3, 1, tzinfo=UTC)
CONFIG = "/home/ci/.docker/config.json"
HUB_RENAME = Change("rename", "auths", "docker.io", HUB_CANONICAL)
HEAD = "push to docker.io/acme/api failed at 12:03:01"


def failure(
    kind: FailureKind = FailureKind.UNAUTHORIZED,
    registry: str | None = "docker.io",
    repository: str | None = "acme/api",
    operation: str | None = "push",
    time: datetime = T,
) -> AuthFailure:
    return AuthFailure(kind, registry, repository, operation, "docker.service", time, "logged")


def fixed(
    *changes: Change,
    after: timedelta = timedelta(milliseconds=200),
    conflicts: tuple[ConflictNote, ...] = (),
    error: str | None = None,
) -> FixEvent:
    return FixEvent(CONFIG, T + after, changes, conflicts, error)


def probe(status: ProbeStatus, registry: str = "docker.io", **fields: Any) -> ProbeResult:
    return ProbeResult(registry, status, **fields)


def fresh(result: ProbeResult, **more: Any) -> Evidence:
    return Evidence(probe=result, probe_note=ProbeNote.FRESH, **more)


INLINE = ConfigSight(CONFIG, Where.INLINE, HUB_CANONICAL, username="acme")
NOTHING = ConfigSight(CONFIG, Where.NONE)

# (id, failure, evidence, cause, the exact reason)
EXACT = [
    (
        "hub-alias-normalized-after-the-failure",
        failure(),
        Evidence(fixes=(fixed(HUB_RENAME),)),
        Cause.MISPLACED_KEY,
        "credentials were stored under `docker.io`, which Docker never reads; "
        "normalized at 12:03:01.200",
    ),
    (
        "hub-alias-normalized-shortly-before (the push had read the old file)",
        failure(),
        Evidence(fixes=(fixed(HUB_RENAME, after=timedelta(seconds=-30)),)),
        Cause.MISPLACED_KEY,
        "credentials were stored under `docker.io`, which Docker never reads; "
        "normalized at 12:02:31.000",
    ),
    (
        "index.docker.io-alias",
        failure(),
        Evidence(fixes=(fixed(Change("rename", "auths", "index.docker.io", HUB_CANONICAL)),)),
        Cause.MISPLACED_KEY,
        "credentials were stored under `index.docker.io`, which Docker never reads; "
        "normalized at 12:03:01.200",
    ),
    (
        "registry-1-copied",
        failure(operation="pull", repository="library/alpine"),
        Evidence(fixes=(fixed(Change("copy", "auths", "registry-1.docker.io", HUB_CANONICAL)),)),
        Cause.MISPLACED_KEY,
        "credentials were stored only under `registry-1.docker.io`, which Docker reads only for "
        "images named `registry-1.docker.io/...`; normalized at 12:03:01.200",
    ),
    (
        "hub-website-key",
        failure(),
        Evidence(fixes=(fixed(Change("copy", "auths", "hub.docker.com", HUB_CANONICAL)),)),
        Cause.MISPLACED_KEY,
        "credentials were stored under `hub.docker.com` (the web site), which no client reads; "
        "normalized at 12:03:01.200",
    ),
    (
        "newest-credential-under-the-alias-with-conflict",
        failure(kind=FailureKind.BAD_CREDENTIALS),
        Evidence(
            fixes=(
                fixed(
                    Change("replace", "auths", "docker.io", HUB_CANONICAL),
                    conflicts=(ConflictNote(HUB_CANONICAL, "docker.io", HUB_CANONICAL),),
                ),
            )
        ),
        Cause.MISPLACED_KEY,
        "the newest credential was stored under `docker.io`, which Docker never reads, so Docker "
        "kept using the older one under `https://index.docker.io/v1/`; normalized at "
        "12:03:01.200; two spellings held different credentials: kept the one from `docker.io`, "
        "the other is in the backup",
    ),
    (
        "hub-helper-under-docker.io",
        failure(),
        Evidence(fixes=(fixed(Change("helper_alias", "credHelpers", "docker.io", HUB_CANONICAL)),)),
        Cause.MISPLACED_KEY,
        "the credential helper for Docker Hub was set under `docker.io`, which Docker never "
        "uses; normalized at 12:03:01.200",
    ),
    (
        "hub-helper-only-under-the-canonical-key (podman)",
        failure(),
        Evidence(fixes=(fixed(Change("helper_alias", "credHelpers", HUB_CANONICAL, "docker.io")),)),
        Cause.MISPLACED_KEY,
        "the credential helper for Docker Hub was set only under "
        "`https://index.docker.io/v1/`, which podman and skopeo never use; "
        "normalized at 12:03:01.200",
    ),
    (
        "empty-alias-masking-the-credential-for-podman",
        failure(operation="pull"),
        Evidence(fixes=(fixed(Change("drop_empty", "auths", "docker.io", HUB_CANONICAL)),)),
        Cause.MISPLACED_KEY,
        "an empty `docker.io` entry hid the credential from podman and skopeo; "
        "normalized at 12:03:01.200",
    ),
    (
        "other-registry-with-scheme-and-path",
        failure(registry="ghcr.io"),
        Evidence(fixes=(fixed(Change("rename", "auths", "https://ghcr.io/v2/", "ghcr.io")),)),
        Cause.MISPLACED_KEY,
        "credentials were stored under `https://ghcr.io/v2/`, which credential helpers and some "
        "clients do not match (`ghcr.io` is the key they read); normalized at 12:03:01.200",
    ),
    (
        "registry-unnamed-in-the-line: any repair explains it, with its registry",
        failure(registry=None, repository=None),
        Evidence(fixes=(fixed(HUB_RENAME),), probe_note=ProbeNote.NOT_PROBED),
        Cause.MISPLACED_KEY,
        "credentials were stored under `docker.io`, which Docker never reads (for docker.io); "
        "normalized at 12:03:01.200",
    ),
    (
        "normalized-and-the-fresh-probe-says-it-works-now",
        failure(),
        fresh(probe(ProbeStatus.OK, push_allowed=True), fixes=(fixed(HUB_RENAME),)),
        Cause.MISPLACED_KEY,
        "credentials were stored under `docker.io`, which Docker never reads; "
        "normalized at 12:03:01.200; the credential works now (probe: ok)",
    ),
    (
        "normalized-but-the-password-is-wrong-too",
        failure(),
        fresh(probe(ProbeStatus.BAD_CREDENTIALS), fixes=(fixed(HUB_RENAME),)),
        Cause.BAD_CREDENTIALS,
        "the password for docker.io is rejected (probe: bad_credentials); also, credentials were "
        "stored under `docker.io`, which Docker never reads; normalized at 12:03:01.200",
    ),
    (
        "token-without-push",
        failure(kind=FailureKind.DENIED),
        fresh(
            probe(
                ProbeStatus.PUSH_DENIED, push_allowed=False, username="acme", repository="acme/api"
            )
        ),
        Cause.DENIED,
        "the token for acme has no push on acme/api (probe: push_denied)",
    ),
    (
        "probe-ok-but-push-false",
        failure(kind=FailureKind.DENIED),
        fresh(probe(ProbeStatus.OK, push_allowed=False, repository="acme/api")),
        Cause.DENIED,
        "the credential for docker.io has no push on acme/api (probe: ok)",
    ),
    (
        "rejected-password",
        failure(kind=FailureKind.BAD_CREDENTIALS),
        fresh(probe(ProbeStatus.BAD_CREDENTIALS)),
        Cause.BAD_CREDENTIALS,
        "the password for docker.io is rejected (probe: bad_credentials)",
    ),
    (
        "rejected-password-with-user-name",
        failure(),
        fresh(probe(ProbeStatus.BAD_CREDENTIALS, username="acme")),
        Cause.BAD_CREDENTIALS,
        "the password for docker.io (user acme) is rejected (probe: bad_credentials)",
    ),
    (
        "rejected-password-by-the-last-probe",
        failure(),
        Evidence(probe=probe(ProbeStatus.BAD_CREDENTIALS), probe_note=ProbeNote.STALE),
        Cause.BAD_CREDENTIALS,
        "the password for docker.io is rejected (last probe: bad_credentials)",
    ),
    (
        "rate-limited-with-figures",
        failure(kind=FailureKind.RATE_LIMITED, operation="pull"),
        fresh(
            probe(
                ProbeStatus.RATE_LIMITED,
                rate_limit_limit=100,
                rate_limit_remaining=0,
                rate_limit_window=21600,
            )
        ),
        Cause.RATE_LIMITED,
        "rate limited: 0 of 100 pulls left per 6 h (probe: rate_limited)",
    ),
    (
        "rate-limited-then-but-not-now",
        failure(kind=FailureKind.RATE_LIMITED, operation="pull"),
        fresh(probe(ProbeStatus.OK, rate_limit_limit=100, rate_limit_remaining=87)),
        Cause.RATE_LIMITED,
        "rate limited: the registry answered `toomanyrequests`; now 87 of 100 pulls left "
        "(probe: ok)",
    ),
    (
        "rate-limited-without-probe",
        failure(kind=FailureKind.RATE_LIMITED, operation="pull"),
        Evidence(),
        Cause.RATE_LIMITED,
        "rate limited: the registry answered `toomanyrequests` (not confirmed: probes are off)",
    ),
    (
        "no-credential-in-any-watched-config",
        failure(),
        Evidence(configs=(NOTHING, ConfigSight("/root/x/config.json", Where.NONE))),
        Cause.NO_CREDENTIALS,
        "no credential for docker.io in any watched config (credentials only in root's config, "
        "or in an unwatched DOCKER_CONFIG?)",
    ),
    (
        "no-watched-config-exists",
        failure(),
        Evidence(configs=()),
        Cause.NO_CREDENTIALS,
        "no credential for docker.io in any watched config (credentials only in root's config, "
        "or in an unwatched DOCKER_CONFIG?)",
    ),
    (
        "probe-finds-no-credential",
        failure(),
        fresh(probe(ProbeStatus.NO_CREDENTIALS)),
        Cause.NO_CREDENTIALS,
        "no credential for docker.io in any watched config (probe: no_credentials; credentials "
        "only in root's config, or in an unwatched DOCKER_CONFIG?)",
    ),
    (
        "stored-credential-works: the client used another",
        failure(),
        fresh(probe(ProbeStatus.OK, push_allowed=True, repository="acme/api"), configs=(INLINE,)),
        Cause.OTHER_CREDENTIAL,
        "the stored credential for docker.io works (probe: ok, push on acme/api allowed): the "
        "failing client used another one (root's ~/.docker with sudo, or another DOCKER_CONFIG?)",
    ),
    (
        "pull-failure-and-only-push-is-denied: pulls work",
        failure(operation="pull"),
        fresh(probe(ProbeStatus.PUSH_DENIED, push_allowed=False)),
        Cause.OTHER_CREDENTIAL,
        "the stored credential for docker.io works (probe: push_denied): the failing client "
        "used another one (root's ~/.docker with sudo, or another DOCKER_CONFIG?)",
    ),
    (
        "push-right-not-probed",
        failure(kind=FailureKind.DENIED),
        fresh(probe(ProbeStatus.OK)),
        Cause.PUSH_UNCHECKED,
        "the credential for docker.io works for pulls (probe: ok); its push right on acme/api "
        "was not probed",
    ),
    (
        "probe-cannot-tell",
        failure(registry="ghcr.io"),
        fresh(probe(ProbeStatus.UNREACHABLE, "ghcr.io", detail="connection refused")),
        Cause.UNKNOWN,
        "the registry wanted credentials and accepted none it was sent (the probe could not "
        "tell (probe: unreachable: connection refused))",
    ),
    (
        "probe-too-slow",
        failure(),
        Evidence(probe_note=ProbeNote.TIMEOUT),
        Cause.UNKNOWN,
        "the registry wanted credentials and accepted none it was sent (no probe result in time)",
    ),
    (
        "line-names-no-registry",
        failure(registry=None, repository=None),
        Evidence(probe_note=ProbeNote.NOT_PROBED),
        Cause.UNKNOWN,
        "the registry wanted credentials and accepted none it was sent (the log line names no "
        "registry to probe)",
    ),
    (
        "bad-password-by-the-registry's-words",
        failure(kind=FailureKind.BAD_CREDENTIALS),
        Evidence(),
        Cause.BAD_CREDENTIALS,
        "the registry rejected the user name or password (not confirmed: probes are off)",
    ),
    (
        "denied-by-the-registry's-words, a credential is stored",
        failure(kind=FailureKind.DENIED),
        Evidence(configs=(INLINE,)),
        Cause.DENIED,
        "the registry denied access to the repository (not confirmed: probes are off); "
        f"{CONFIG} holds a credential for it under `https://index.docker.io/v1/` (the file)",
    ),
    (
        "credential-in-a-helper",
        failure(),
        Evidence(configs=(ConfigSight(CONFIG, Where.HELPER, HUB_CANONICAL, helper="pass"),)),
        Cause.UNKNOWN,
        "the registry wanted credentials and accepted none it was sent (not confirmed: probes "
        f"are off); {CONFIG} holds a credential for it under `https://index.docker.io/v1/` "
        "(helper `pass`)",
    ),
    (
        "config-cannot-be-repaired",
        failure(),
        Evidence(fixes=(fixed(error="`auth` is not valid base64"),)),
        Cause.CONFIG_UNFIXABLE,
        f"{CONFIG} cannot be repaired (`auth` is not valid base64); Docker may not read it at all",
    ),
]


@pytest.mark.parametrize(
    ("name", "fail", "evidence", "cause", "reason"), EXACT, ids=[row[0] for row in EXACT]
)
def test_verdicts(
    name: str, fail: AuthFailure, evidence: Evidence, cause: Cause, reason: str
) -> None:
    verdict = correlate(fail, evidence)
    assert (verdict.cause, verdict.reason) == (cause, reason)
    assert verdict.text == f"{verdict.headline}: {reason}"
    assert verdict.fix.endswith(".")


# (id, failure, evidence, words the fix must contain)
FIXES = [
    ("hub-habit", failure(), Evidence(fixes=(fixed(HUB_RENAME),)), ["Retry the push", "(no arg"]),
    (
        "other-registry-habit",
        failure(registry="ghcr.io"),
        Evidence(fixes=(fixed(Change("rename", "auths", "https://ghcr.io/v2/", "ghcr.io")),)),
        ["`docker login ghcr.io`"],
    ),
    (
        "relogin-hub",
        failure(),
        fresh(probe(ProbeStatus.BAD_CREDENTIALS)),
        ["Log in again: `docker login`"],
    ),
    (
        "relogin-other",
        failure(registry="ghcr.io"),
        fresh(probe(ProbeStatus.BAD_CREDENTIALS, "ghcr.io")),
        ["`docker login ghcr.io`"],
    ),
    (
        "grant-push",
        failure(),
        fresh(probe(ProbeStatus.PUSH_DENIED, username="acme", repository="acme/api")),
        ["Give acme write access to acme/api"],
    ),
    (
        "rate-limit-retry-after",
        failure(kind=FailureKind.RATE_LIMITED),
        fresh(probe(ProbeStatus.RATE_LIMITED, retry_after_s=3600.0)),
        ["mirror", "retry after 1 h"],
    ),
    ("sudo", failure(), Evidence(configs=(NOTHING,)), ["sudo docker login", "watch.paths"]),
    (
        "probe-repositories",
        failure(kind=FailureKind.DENIED),
        fresh(probe(ProbeStatus.OK)),
        ['"docker.io" = "acme/api"'],
    ),
    (
        "unfixable",
        failure(),
        Evidence(fixes=(fixed(error="bad"),)),
        ["regauthd check --docker-config /home/ci/.docker"],
    ),
    ("inspect", failure(registry="ghcr.io"), Evidence(), ["`regauthd probe ghcr.io`"]),
]


@pytest.mark.parametrize(
    ("name", "fail", "evidence", "words"), FIXES, ids=[row[0] for row in FIXES]
)
def test_fixes(name: str, fail: AuthFailure, evidence: Evidence, words: list[str]) -> None:
    fix = correlate(fail, evidence).fix
    for word in words:
        assert word in fix


# Repairs that do NOT explain the failure.
IRRELEVANT = [
    ("too-old", failure(), fixed(HUB_RENAME, after=-LOOKBACK - timedelta(seconds=1))),
    ("other-registry", failure(), fixed(Change("rename", "auths", "https://ghcr.io", "ghcr.io"))),
    (
        "duplicate-dropped",
        failure(),
        fixed(Change("drop_duplicate", "auths", "docker.io", HUB_CANONICAL)),
    ),
    (
        "hub-repair-for-a-ghcr-failure",
        failure(registry="ghcr.io"),
        fixed(HUB_RENAME),
    ),
    ("much-later", failure(), fixed(HUB_RENAME, after=LOOKAHEAD + timedelta(seconds=1))),
    ("nothing-written", failure(), fixed()),
    ("old-refusal", failure(), fixed(error="bad", after=-LOOKBACK - timedelta(minutes=1))),
]


def test_a_refused_file_is_not_blamed_when_another_config_holds_the_credential() -> None:
    evidence = Evidence(fixes=(fixed(error="bad"),), configs=(INLINE,))
    assert correlate(failure(), evidence).cause is Cause.UNKNOWN
    alone = Evidence(fixes=(fixed(error="bad"),), configs=(NOTHING,))
    assert correlate(failure(), alone).cause is Cause.CONFIG_UNFIXABLE


@pytest.mark.parametrize(("name", "fail", "event"), IRRELEVANT, ids=[row[0] for row in IRRELEVANT])
def test_repairs_that_explain_nothing(name: str, fail: AuthFailure, event: FixEvent) -> None:
    verdict = correlate(fail, Evidence(fixes=(event,)))
    assert verdict.cause is Cause.UNKNOWN
    assert "normalized" not in verdict.reason


def test_repairs_count_from_the_first_failure_of_a_burst() -> None:
    """A burst that began right after a repair is still explained by it at its tenth failure."""
    early = fixed(HUB_RENAME, after=-LOOKBACK + timedelta(seconds=1))
    late = failure(time=T + timedelta(minutes=3))
    assert correlate(late, Evidence(fixes=(early,))).cause is Cause.UNKNOWN
    burst = Evidence(fixes=(early,), failures=10, first_time=T)
    assert correlate(late, burst).cause is Cause.MISPLACED_KEY


def test_latest_refusal_is_named() -> None:
    first = FixEvent("/a/config.json", T, error="first")
    second = FixEvent("/b/config.json", T + timedelta(seconds=1), error="second")
    reason = correlate(failure(), Evidence(fixes=(first, second))).reason
    assert reason.startswith("/b/config.json cannot be repaired (second)")


# --- headlines -------------------------------------------------------------------------------
HEADLINES = [
    (failure(), 1, HEAD),
    (
        failure(operation="pull", repository="library/alpine"),
        1,
        "pull of docker.io/library/alpine failed at 12:03:01",
    ),
    (failure(operation="login", repository=None), 1, "login to docker.io failed at 12:03:01"),
    (failure(operation=None), 1, "access to docker.io/acme/api failed at 12:03:01"),
    (failure(repository=None), 1, "push to docker.io failed at 12:03:01"),
    (failure(registry=None, repository=None), 1, "a push failed at 12:03:01"),
    (failure(registry=None, repository=None, operation="pull"), 1, "a pull failed at 12:03:01"),
    (failure(registry=None, repository=None, operation="login"), 1, "a login failed at 12:03:01"),
    (
        failure(registry=None, repository=None, operation=None),
        1,
        "a registry request failed at 12:03:01",
    ),
    (
        failure(time=T + timedelta(seconds=9)),
        3,
        "push to docker.io/acme/api failed 3 times since 12:03:01",
    ),
]


@pytest.mark.parametrize(("fail", "count", "expected"), HEADLINES)
def test_headlines(fail: AuthFailure, count: int, expected: str) -> None:
    assert headline(fail, failures=count, first=T) == expected


def test_times_in_the_given_zone() -> None:
    plus_one = timezone(timedelta(hours=1))
    verdict = correlate(failure(), Evidence(fixes=(fixed(HUB_RENAME),)), tz=plus_one)
    assert verdict.text == (
        "push to docker.io/acme/api failed at 13:03:01: credentials were stored under "
        "`docker.io`, which Docker never reads; normalized at 13:03:01.200"
    )


# --- evidence from configs and reports -------------------------------------------------------
AUTH = encode_auth("acme", "s3cret-pw")
SIGHTS = [
    (
        "hub-canonical",
        {"auths": {HUB_CANONICAL: {"auth": AUTH}}},
        "docker.io",
        (Where.INLINE, HUB_CANONICAL, "acme", None),
    ),
    (
        "hub-alias-only: Docker finds nothing",
        {"auths": {"docker.io": {"auth": AUTH}}},
        "docker.io",
        (Where.NONE, None, None, None),
    ),
    (
        "registry-1-only",
        {"auths": {"registry-1.docker.io": {"auth": AUTH}}},
        "docker.io",
        (Where.NONE, None, None, None),
    ),
    (
        "hub-helper",
        {"auths": {}, "credHelpers": {HUB_CANONICAL: "pass"}},
        "docker.io",
        (Where.HELPER, HUB_CANONICAL, None, "pass"),
    ),
    (
        "hub-helper-under-alias",
        {"credHelpers": {"docker.io": "pass"}},
        "docker.io",
        (Where.NONE, None, None, None),
    ),
    (
        "creds-store",
        {"auths": {"ghcr.io": {}}, "credsStore": "pass"},
        "ghcr.io",
        (Where.HELPER, "ghcr.io", None, "pass"),
    ),
    (
        "bare-host",
        {"auths": {"ghcr.io": {"username": "bot", "password": "pw"}}},
        "ghcr.io",
        (Where.INLINE, "ghcr.io", "bot", None),
    ),
    (
        "legacy-url-key",
        {"auths": {"https://ghcr.io/v1/": {"auth": AUTH}}},
        "ghcr.io",
        (Where.INLINE, "https://ghcr.io/v1/", "acme", None),
    ),
    (
        "identity-token: no user name",
        {"auths": {"ghcr.io": {"identitytoken": "tok-123"}}},
        "ghcr.io",
        (Where.INLINE, "ghcr.io", None, None),
    ),
    (
        "invalid-auth",
        {"auths": {"ghcr.io": {"auth": "!!"}}},
        "ghcr.io",
        (Where.NONE, None, None, None),
    ),
    (
        "placeholder-without-helper",
        {"auths": {"ghcr.io": {}}},
        "ghcr.io",
        (Where.NONE, None, None, None),
    ),
    (
        "other-registry-only",
        {"auths": {"quay.io": {"auth": AUTH}}},
        "ghcr.io",
        (Where.NONE, None, None, None),
    ),
    ("no-auths", {}, "docker.io", (Where.NONE, None, None, None)),
    ("auths-not-a-table", {"auths": []}, "docker.io", (Where.NONE, None, None, None)),
]


@pytest.mark.parametrize(
    ("name", "config", "registry", "expected"), SIGHTS, ids=[row[0] for row in SIGHTS]
)
def test_sight(name: str, config: dict[str, Any], registry: str, expected: tuple[Any, ...]) -> None:
    seen = sight(CONFIG, config, registry)
    assert (seen.where, seen.key, seen.username, seen.helper) == expected
    assert "s3cret" not in repr(seen)


@pytest.mark.parametrize(
    ("key", "registry"),
    [
        (HUB_CANONICAL, "docker.io"),
        ("docker.io", "docker.io"),
        ("https://index.docker.io/v1", "docker.io"),
        ("registry-1.docker.io", "docker.io"),
        ("hub.docker.com", "docker.io"),
        ("docker.io/acme", "docker.io"),
        ("DOCKER.IO", "docker.io"),
        ("ghcr.io", "ghcr.io"),
        ("https://ghcr.io/v2/", "ghcr.io"),
        ("127.0.0.1:5000", "127.0.0.1:5000"),
        ("ghcr.io/acme", "ghcr.io"),
    ],
)
def test_registry_of_key(key: str, registry: str) -> None:
    assert registry_of_key(key) == registry


def test_fix_event_keeps_keys_not_contents() -> None:
    before = b'{"auths":{"docker.io":{"auth":"' + AUTH.encode() + b'"}}}'
    report = FixReport(
        path=Path(CONFIG),
        written=True,
        changes=(HUB_RENAME,),
        conflicts=(ReportedConflict(HUB_CANONICAL, "docker.io", HUB_CANONICAL, "newest", None),),
        before=before,
        after=before,
    )
    event = FixEvent.from_report(report, T)
    assert event == FixEvent(
        CONFIG, T, (HUB_RENAME,), (ConflictNote(HUB_CANONICAL, "docker.io", HUB_CANONICAL),)
    )
    assert event.noteworthy
    assert event.registries() == {"docker.io"}
    assert AUTH not in repr(event)


def test_fix_event_of_unwritten_and_refused_reports() -> None:
    dry = FixReport(path=Path(CONFIG), written=False, changes=(HUB_RENAME,))
    assert not FixEvent.from_report(dry, T).noteworthy
    refused = FixReport(path=Path(CONFIG), error=ConfigFileError(CONFIG, "not a regular file"))
    event = FixEvent.from_report(refused, T)
    assert (event.noteworthy, event.error) == (True, "not a regular file")
    assert not FixEvent.from_report(FixReport(path=Path(CONFIG)), T).noteworthy


@pytest.mark.parametrize("action", ["rename", "copy", "replace", "helper_alias", "drop_empty"])
def test_every_causal_change_is_described(action: str) -> None:
    section = "credHelpers" if action == "helper_alias" else "auths"
    text = describe_change(Change(action, section, "docker.io", HUB_CANONICAL))  # type: ignore[arg-type]
    assert text is not None
    assert "`docker.io`" in text


# --- every combination ------------------------------------------------------------------------
PROBES: list[ProbeResult | None] = [None] + [
    probe(status, push_allowed=push, username="acme", repository="acme/api")
    for status in ProbeStatus
    for push in (None, False, True)
]
CONFIG_SETS: list[tuple[ConfigSight, ...] | None] = [None, (), (NOTHING,), (INLINE,)]
FIX_SETS: list[tuple[FixEvent, ...]] = [(), (fixed(HUB_RENAME),), (fixed(error="broken"),)]


def test_every_combination_gives_a_sentence_and_a_fix() -> None:
    """Exhaustive over kinds x operations x registry x probe x note x repairs x configs."""
    count = 0
    for kind, op, registry, result, note, fixes, configs in itertools.product(
        FailureKind,
        ("push", "pull", "login", None),
        ("docker.io", None),
        PROBES,
        ProbeNote,
        FIX_SETS,
        CONFIG_SETS,
    ):
        fail = failure(kind=kind, operation=op, registry=registry)
        evidence = Evidence(fixes=fixes, configs=configs, probe=result, probe_note=note)
        verdict = correlate(fail, evidence)
        count += 1
        assert verdict.text.startswith(verdict.headline + ": ")
        assert verdict.reason and verdict.fix.endswith(".")
        if fixes and fixes[0].error and configs != (INLINE,):
            assert verdict.cause is Cause.CONFIG_UNFIXABLE
            continue
        if fixes and fixes[0].error:
            continue
        if result is not None and result.status is ProbeStatus.BAD_CREDENTIALS:
            assert verdict.cause is Cause.BAD_CREDENTIALS
            assert "bad_credentials" in verdict.reason
        elif result is not None and result.status is ProbeStatus.RATE_LIMITED:
            assert verdict.cause is Cause.RATE_LIMITED
        elif (
            fixes
            and (
                result is None
                or result.status
                in {
                    ProbeStatus.OK,
                    ProbeStatus.UNREACHABLE,
                    ProbeStatus.TLS_ERROR,
                    ProbeStatus.ERROR,
                }
                or (result.status is ProbeStatus.PUSH_DENIED and op != "push")
            )
            and not (result is not None and result.push_allowed is False and op == "push")
        ):
            assert verdict.cause is Cause.MISPLACED_KEY, (kind, op, registry, result, note)
            assert "`docker.io`" in verdict.reason
        if note is ProbeNote.STALE and result is not None and "probe" in verdict.reason:
            assert "last probe" in verdict.reason
    assert count > 40_000
