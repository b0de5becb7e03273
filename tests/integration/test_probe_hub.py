"""Docker Hub's rate limits and 429s, against the one fake server (``tests/rigs/hubfake.py``).

The real registry cannot send ``ratelimit-*`` headers or ``429 toomanyrequests``; everything else
(tokens, push, credentials) is tested against the real registry in ``test_probe_registry.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from regauthd.dockerconfig.auth import Credential
from regauthd.probe.client import make_client, probe
from regauthd.probe.result import ProbePolicy, ProbeResult, ProbeStatus, ProbeTarget
from tests.rigs.hubfake import HubFake

HUB_USER = ("hubuser", "hub-pass-1")


@pytest.fixture
def hub() -> Iterator[HubFake]:
    fake = HubFake(users=dict([HUB_USER]), limit=100, remaining=76)
    try:
        yield fake
    finally:
        fake.stop()


def run(hub: HubFake, credential: Credential | None, repository: str | None = None) -> ProbeResult:
    target = ProbeTarget("docker.io", credential, repository=repository, endpoint=hub.url)

    async def one() -> ProbeResult:
        async with make_client() as client:
            return await probe(client, target, ProbePolicy())

    return asyncio.run(one())


def test_remaining_pulls_are_reported(hub: HubFake) -> None:
    result = run(hub, Credential(*HUB_USER), repository="hubuser/app")
    assert result.status is ProbeStatus.OK
    assert (result.rate_limit_limit, result.rate_limit_remaining, result.rate_limit_window) == (
        100,
        76,
        21600,
    )
    assert result.push_allowed is True
    assert "76 of 100 pulls left per 6 h" in result.detail
    # The rate-limit check used Hub's documented image, with a HEAD (which spends no pull).
    assert ("HEAD", "/v2/ratelimitpreview/test/manifests/latest", None) in hub.requests


def test_pushing_outside_ones_namespace_is_denied(hub: HubFake) -> None:
    result = run(hub, Credential(*HUB_USER), repository="library/alpine")
    assert result.status is ProbeStatus.PUSH_DENIED
    assert result.push_allowed is False
    assert result.rate_limit_remaining == 76


def test_unlimited_account_has_no_figures(hub: HubFake) -> None:
    hub.limit = None
    result = run(hub, Credential(*HUB_USER))
    assert result.status is ProbeStatus.OK
    assert result.rate_limit_limit is None
    assert result.rate_limit_remaining is None
    assert "no pull rate limit" in result.detail


def test_exhausted_limit_is_rate_limited(hub: HubFake) -> None:
    hub.remaining = 0
    result = run(hub, Credential(*HUB_USER))
    assert result.status is ProbeStatus.RATE_LIMITED
    assert result.rate_limit_remaining == 0
    assert "0 of 100 left" in result.detail


def test_429_on_the_manifest_with_retry_after(hub: HubFake) -> None:
    hub.rate_limited = True
    hub.retry_after = 3600
    result = run(hub, Credential(*HUB_USER), repository="hubuser/app")
    assert result.status is ProbeStatus.RATE_LIMITED
    assert result.retry_after_s == 3600
    assert result.rate_limit_remaining == 0
    assert "429" in result.detail


def test_429_from_the_token_service(hub: HubFake) -> None:
    hub.token_status = 429
    hub.retry_after = 60
    result = run(hub, Credential(*HUB_USER))
    assert result.status is ProbeStatus.RATE_LIMITED
    assert result.retry_after_s == 60
    assert "too many failed login attempts" in result.detail


def test_wrong_password_on_hub(hub: HubFake) -> None:
    result = run(hub, Credential("hubuser", "wrong-hub-pw"))
    assert result.status is ProbeStatus.BAD_CREDENTIALS
    assert "`docker login` again" in result.detail
    assert "wrong-hub-pw" not in repr(result)


def test_no_credentials_still_shows_the_anonymous_limit(hub: HubFake) -> None:
    hub.remaining = 9
    result = run(hub, None)
    assert result.status is ProbeStatus.NO_CREDENTIALS
    assert result.rate_limit_remaining == 9
    assert "docker login" in result.detail


def test_token_service_error_is_an_error(hub: HubFake) -> None:
    hub.token_status = 503
    result = run(hub, Credential(*HUB_USER))
    assert result.status is ProbeStatus.ERROR
    assert "HTTP 503" in result.detail
