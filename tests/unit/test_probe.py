"""The probe's pure rules: where credentials may go, token claims, rate limits, back-off.

Integration tests against the real registry are in ``test_probe_registry.py``; Docker Hub's
rate limits (the one fake) in ``test_probe_hub.py``; the command line in ``test_probe_cli.py``.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from regauthd.dockerconfig.auth import Credential
from regauthd.dockerconfig.keys import registry_name
from regauthd.probe.result import (
    HUB_ENDPOINT,
    ProbePolicy,
    ProbeResult,
    ProbeStatus,
    ProbeTarget,
)
from regauthd.probe.rules import (
    can_push,
    credentials_refusal,
    decode_claims,
    granted_actions,
    is_link_local_or_metadata,
    is_loopback,
    location_refusal,
    parse_rate_limit,
    parse_retry_after,
    realm_refusal,
    redirect_refusal,
    registries_in_config,
    registry_address_problem,
    requested_scopes,
)
from regauthd.probe.schedule import next_delay
from regauthd.probe.targets import target_for, targets_from_config
from regauthd.redact import redact_text as redact


def jwt_like(claims: dict[str, Any]) -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    return f"{part({'alg': 'ES256', 'typ': 'JWT'})}.{part(claims)}.c2lnbmF0dXJl"


# -- where credentials may go ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("localhost", True),
        ("LOCALHOST", True),
        ("reg.localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("10.0.0.1", False),
        ("ghcr.io", False),
        ("localhost.example.com", False),
    ],
)
def test_is_loopback(host: str, expected: bool) -> None:
    assert is_loopback(host) is expected


@pytest.mark.parametrize(
    ("realm", "registry_url", "is_hub", "insecure", "trusted", "allowed"),
    [
        # The registry's own host, any port or path.
        ("https://ghcr.io/token", "https://ghcr.io", False, False, (), True),
        ("https://GHCR.io:8443/token", "https://ghcr.io", False, False, (), True),
        # Another host: never, unless trusted.
        ("https://evil.example/token", "https://ghcr.io", False, False, (), False),
        ("https://auth.example.com/token", "https://reg.example.com", False, False, (), False),
        (
            "https://auth.example.com/token",
            "https://reg.example.com",
            False,
            False,
            ("auth.example.com",),
            True,
        ),
        # auth.docker.io: only for Docker Hub.
        ("https://auth.docker.io/token", HUB_ENDPOINT, True, False, (), True),
        ("https://auth.docker.io/token", "https://ghcr.io", False, False, (), False),
        # Plain HTTP: loopback only, or the registry's own host when marked insecure.
        ("http://ghcr.io/token", "https://ghcr.io", False, False, (), False),
        ("http://reg.lan/token", "http://reg.lan", False, True, (), True),
        ("http://auth.lan/token", "http://reg.lan", False, True, ("auth.lan",), False),
        ("http://127.0.0.1:5001/token", "http://127.0.0.1:5000", False, False, (), True),
        # localhost and 127.0.0.1 are different names: a realm elsewhere is refused.
        ("http://localhost:5001/token", "http://127.0.0.1:5000", False, False, (), False),
        # Not http(s) at all.
        ("ftp://ghcr.io/token", "https://ghcr.io", False, False, (), False),
        ("file:///etc/passwd", "https://ghcr.io", False, False, (), False),
        ("not a url at all", "https://ghcr.io", False, False, (), False),
    ],
)
def test_realm_refusal(
    realm: str,
    registry_url: str,
    is_hub: bool,
    insecure: bool,
    trusted: tuple[str, ...],
    allowed: bool,
) -> None:
    refusal = realm_refusal(
        realm, registry_url, is_hub=is_hub, insecure=insecure, trusted_hosts=trusted
    )
    assert (refusal is None) is allowed
    if refusal is not None:
        assert "credentials not sent" in refusal or "not an http(s) URL" in refusal


@pytest.mark.parametrize(
    ("url", "insecure", "allowed"),
    [
        ("https://ghcr.io", False, True),
        ("http://ghcr.io", False, False),
        ("http://ghcr.io", True, True),
        ("http://127.0.0.1:5000", False, True),
        ("http://localhost:5000", False, True),
    ],
)
def test_credentials_refusal(url: str, insecure: bool, allowed: bool) -> None:
    assert (credentials_refusal(url, insecure=insecure) is None) is allowed


@pytest.mark.parametrize(
    ("source", "location", "method", "carries_secret", "allowed"),
    [
        # Without credentials any http(s) URL may be followed, except link-local or metadata
        # addresses (issue 12: blind requests to internal URLs).
        ("https://a.io/v2/", "https://b.io/v2/", "GET", False, True),
        ("https://a.io/v2/", "http://169.254.169.254/latest/meta-data/", "GET", False, False),
        ("https://a.io/v2/", "http://[fe80::1]/", "GET", False, False),
        ("https://a.io/v2/", "http://[::ffff:169.254.169.254]/", "GET", False, False),
        ("https://a.io/v2/", "http://metadata.google.internal/", "GET", False, False),
        ("https://a.io/v2/", "file:///etc/passwd", "GET", False, False),
        # With credentials: same scheme, host and port only (issue 12: not another port of the
        # same host), GET only.
        ("https://a.io/token", "/token2", "GET", True, True),
        ("https://a.io/token", "https://a.io:443/token", "GET", True, True),
        ("https://a.io/token", "https://a.io:444/token", "GET", True, False),
        ("https://a.io/token", "https://b.io/token", "GET", True, False),
        ("https://a.io/token", "http://a.io/token", "GET", True, False),
        ("https://a.io/token", "/token2", "POST", True, False),
        ("https://a.io/token", "//b.io/token", "GET", True, False),
    ],
)
def test_redirect_refusal(
    source: str, location: str, method: str, carries_secret: bool, allowed: bool
) -> None:
    refusal = redirect_refusal(source, location, method=method, carries_secret=carries_secret)
    assert (refusal is None) is allowed


@pytest.mark.parametrize(
    ("base", "location", "allowed"),
    [
        ("https://reg.io", "/v2/r/blobs/uploads/u1", True),
        ("https://reg.io", "https://reg.io:443/v2/r/blobs/uploads/u1", True),
        ("https://REG.io", "https://reg.io/v2/r/blobs/uploads/u1", True),
        # Never downgraded, never another port, never another host (issue 12).
        ("https://reg.io", "http://reg.io/v2/r/blobs/uploads/u1", False),
        ("https://reg.io", "https://reg.io:8443/v2/r/blobs/uploads/u1", False),
        ("https://reg.io", "https://other.io/v2/r/blobs/uploads/u1", False),
        ("https://reg.io", "//other.io/v2/r/blobs/uploads/u1", False),
        ("https://reg.io", "http://169.254.169.254/latest/", False),
        # The registry the user named is never refused for its own address.
        ("http://169.254.10.10:5000", "/v2/r/blobs/uploads/u1", True),
    ],
)
def test_location_refusal(base: str, location: str, allowed: bool) -> None:
    assert (location_refusal(base, location) is None) is allowed


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("169.254.169.254", True),
        ("169.254.0.1", True),
        ("[fe80::1]", True),
        ("::ffff:169.254.169.254", True),
        ("fd00:ec2::254", True),
        ("100.100.100.200", True),
        ("metadata.google.internal", True),
        ("METADATA.google.internal.", True),
        ("127.0.0.1", False),
        ("10.0.0.1", False),
        ("ghcr.io", False),
    ],
)
def test_link_local_or_metadata(host: str, expected: bool) -> None:
    assert is_link_local_or_metadata(host) is expected


def test_a_realm_at_a_metadata_address_is_refused() -> None:
    refusal = realm_refusal(
        "http://169.254.169.254/token",
        "https://reg.io",
        is_hub=False,
        insecure=True,
        trusted_hosts=("169.254.169.254",),
    )
    assert refusal is not None
    assert "link-local or cloud metadata" in refusal


def test_endpoints_follow_dockers_order() -> None:
    assert ProbeTarget("ghcr.io").endpoints() == ("https://ghcr.io",)
    assert ProbeTarget("127.0.0.1:5000").endpoints() == (
        "https://127.0.0.1:5000",
        "http://127.0.0.1:5000",
    )
    assert ProbeTarget("reg.lan:5000", insecure=True).endpoints() == (
        "https://reg.lan:5000",
        "http://reg.lan:5000",
    )
    assert ProbeTarget("docker.io").endpoints() == (HUB_ENDPOINT,)
    assert ProbeTarget("docker.io", endpoint="http://127.0.0.1:9/").endpoints() == (
        "http://127.0.0.1:9",
    )


# -- names -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("docker.io", "docker.io"),
        ("index.docker.io", "docker.io"),
        ("https://index.docker.io/v1/", "docker.io"),
        ("registry-1.docker.io", "docker.io"),
        ("ghcr.io", "ghcr.io"),
        ("https://ghcr.io/", "ghcr.io"),
        ("https://127.0.0.1:5000/v2/", "127.0.0.1:5000"),
    ],
)
def test_registry_name(text: str, name: str) -> None:
    assert registry_name(text) == name


def test_registries_in_config_skips_namespaced_and_merges_hub_spellings() -> None:
    config = {
        "auths": {
            "https://index.docker.io/v1/": {"auth": "eDp5"},
            "docker.io": {"auth": "eDp5"},
            "ghcr.io": {},
            "ghcr.io/acme": {"auth": "eDp5"},
            "https://quay.io": {"auth": "eDp5"},
            "": {},
        },
        "credHelpers": {"123.dkr.ecr.us-east-1.amazonaws.com": "ecr-login", "ghcr.io": "pass"},
    }
    assert registries_in_config(config) == [
        "docker.io",
        "ghcr.io",
        "quay.io",
        "123.dkr.ecr.us-east-1.amazonaws.com",
    ]
    assert registries_in_config({"auths": "nonsense"}) == []


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_target_for_reads_password_and_identity_token_entries() -> None:
    config = {
        "auths": {
            "reg.example:5000": {"auth": b64("alice:pw-1")},
            # what `docker login` writes when the token server hands out a refresh token
            "tok.example": {"auth": b64("bob:"), "identitytoken": "refresh-xyz"},
        }
    }
    plain = target_for(config, "reg.example:5000", repository="team/app")
    assert plain.credential == Credential("alice", "pw-1")
    assert (plain.identity_token, plain.credential_key, plain.repository) == (
        False,
        "reg.example:5000",
        "team/app",
    )
    token = target_for(config, "tok.example")
    assert token.credential == Credential("bob", "refresh-xyz", identity_token=True)
    assert token.identity_token is True
    missing = target_for(config, "quay.io")
    assert missing.credential is None


def test_target_for_reports_a_broken_helper_without_raising() -> None:
    config = {"auths": {"ghcr.io": {}}, "credHelpers": {"ghcr.io": "regauthd-test-missing"}}
    target = target_for(config, "ghcr.io", env={"PATH": "/nonexistent"})
    assert target.credential is None
    assert target.credential_error is not None
    assert "docker-credential-regauthd-test-missing" in target.credential_error


def test_targets_from_config_applies_repositories_insecure_and_endpoints() -> None:
    config = {"auths": {"a.example": {"auth": b64("u:p")}, "b.example": {"auth": b64("v:q")}}}
    targets = targets_from_config(
        config,
        repositories={"https://a.example/": "team/a"},
        default_repository="team/default",
        insecure=["b.example"],
        endpoints={"b.example": "http://127.0.0.1:1"},
    )
    assert [(t.registry, t.repository, t.insecure, t.endpoint) for t in targets] == [
        ("a.example", "team/a", False, None),
        ("b.example", "team/default", True, "http://127.0.0.1:1"),
    ]
    named = targets_from_config(config, registries=["c.example", "c.example", "docker.io"])
    assert [(t.registry, t.credential) for t in named] == [
        ("c.example", None),
        ("docker.io", None),
    ]


def test_requested_scopes() -> None:
    policy = ProbePolicy()
    assert requested_scopes(ProbeTarget("ghcr.io"), policy) == []
    assert requested_scopes(ProbeTarget("ghcr.io", repository="a/b"), policy) == [
        "repository:a/b:pull,push"
    ]
    assert requested_scopes(ProbeTarget("docker.io", repository="me/app"), policy) == [
        "repository:me/app:pull,push",
        "repository:ratelimitpreview/test:pull",
    ]


# -- tokens ----------------------------------------------------------------------------------


def test_decode_claims_without_verifying() -> None:
    claims = {"sub": "alice", "access": [{"type": "repository", "name": "a", "actions": []}]}
    assert decode_claims(jwt_like(claims)) == claims
    assert decode_claims("opaque-token") is None
    assert decode_claims("a.!!!.c") is None
    assert decode_claims("a." + base64.urlsafe_b64encode(b"[1]").decode() + ".c") is None


def test_granted_actions_reads_the_access_claim_as_sets() -> None:
    claims = {
        "access": [
            {"type": "repository", "name": "team/app", "actions": ["push", "pull"]},
            {"type": "repository", "name": "other", "actions": ["pull"]},
            {"type": "registry", "name": "team/app", "actions": ["*"]},
            "junk",
        ]
    }
    assert granted_actions(claims, "team/app") == {"pull", "push"}
    assert granted_actions(claims, "other") == {"pull"}
    assert granted_actions(claims, "missing") == frozenset()
    assert granted_actions({"access": []}, "team/app") == frozenset()
    assert granted_actions({"sub": "x"}, "team/app") is None
    assert granted_actions(None, "team/app") is None


@pytest.mark.parametrize(
    ("actions", "expected"),
    [({"pull"}, False), ({"pull", "push"}, True), ({"*"}, True), (set(), False)],
)
def test_can_push(actions: set[str], expected: bool) -> None:
    assert can_push(actions) is expected


# -- rate limits, Retry-After, back-off -------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("100;w=21600", (100, 21600)),
        ("76;w=21600", (76, 21600)),
        ("0;w=21600", (0, 21600)),
        ("200", (200, None)),
        (" 5 ; W = 60 ", (5, 60)),
        ("5;w=abc", (5, None)),
        ("many", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_rate_limit(value: str | None, expected: tuple[int, int | None] | None) -> None:
    assert parse_rate_limit(value) == expected


def test_parse_retry_after_seconds_and_dates() -> None:
    assert parse_retry_after("120", now=1445412450.0) == 120.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412450.0) == 30.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412500.0) == 0.0
    assert parse_retry_after("soon", now=1445412450.0) is None
    assert parse_retry_after(None, now=1445412450.0) is None


def test_next_delay_healthy_is_interval_plus_jitter() -> None:
    assert next_delay(900, 0, jitter_s=60, rand=0.0) == 900
    assert next_delay(900, 0, jitter_s=60, rand=0.5) == 930
    assert next_delay(900, 0, rand=0.99) == 900


def test_next_delay_backs_off_exponentially_up_to_the_cap() -> None:
    delays = [next_delay(60, n, max_backoff_s=1000, rand=0.0) for n in range(7)]
    assert delays == [60, 120, 240, 480, 960, 1000, 1000]
    assert next_delay(60, 10_000, max_backoff_s=1000, rand=0.0) == 1000
    # A cap below the interval never makes probes more frequent than the interval.
    assert next_delay(600, 3, max_backoff_s=10, rand=0.0) == 600


def test_next_delay_respects_retry_after_as_a_floor() -> None:
    assert next_delay(60, 0, retry_after_s=3600, rand=0.0) == 3600
    assert next_delay(60, 0, retry_after_s=5, rand=0.0) == 60


def test_next_delay_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="interval"):
        next_delay(0, 0, rand=0.0)
    with pytest.raises(ValueError, match="jitter"):
        next_delay(10, 0, jitter_s=-1, rand=0.0)


@given(
    st.floats(min_value=1, max_value=86400),
    st.integers(min_value=-3, max_value=200),
    st.floats(min_value=0, max_value=600),
    st.floats(min_value=0, max_value=0.999),
    st.one_of(st.none(), st.floats(min_value=0, max_value=86400)),
)
def test_next_delay_bounds(
    interval: float, failures: int, jitter: float, rand: float, retry_after: float | None
) -> None:
    cap = 6 * 3600
    delay = next_delay(interval, failures, jitter_s=jitter, retry_after_s=retry_after, rand=rand)
    assert delay >= interval
    assert delay <= max(interval, cap) + jitter + (retry_after or 0)
    if retry_after is not None:
        assert delay >= retry_after


# -- secrets ---------------------------------------------------------------------------------


def test_redact_replaces_every_secret_longest_first() -> None:
    text = "token abcdef and abc and abcdef-long"
    assert redact(text, ["abc", "abcdef", "abcdef-long", ""]) == (
        "token <redacted> and <redacted> and <redacted>"
    )
    # However short, a secret goes where it is a value, and never out of a word.
    assert redact("x=ab about tab", ["ab"]) == "x=<redacted> about tab"


def test_result_and_target_reprs_hold_no_secret() -> None:
    target = ProbeTarget("ghcr.io", Credential("alice", "hunter2-secret"))
    assert "hunter2-secret" not in repr(target)
    result = ProbeResult("ghcr.io", ProbeStatus.OK, detail="fine")
    assert json.loads(json.dumps(result.to_dict()))["status"] == "ok"


@pytest.mark.parametrize(
    "registry",
    ["docker.io", "ghcr.io", "127.0.0.1:5000", "[::1]:5000", "localhost:5000", "reg_1.local:443",
     "xn--bcher-kva.example"],
)  # fmt: skip
def test_registry_addresses_that_are_asked(registry: str) -> None:
    assert registry_address_problem(registry) is None


@pytest.mark.parametrize(
    "registry", ["bad host name", "reg.example\x1b[2J", "a/b", "host:port", "-lead.example", ""]
)
def test_keys_that_are_no_address_are_refused_before_any_lookup(registry: str) -> None:
    problem = registry_address_problem(registry)
    assert problem is not None and "is not a registry address" in problem
