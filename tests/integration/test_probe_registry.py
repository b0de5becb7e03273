"""Probes against the real registry (distribution 2.8) on loopback.

Token auth with the tests' own issuer, htpasswd auth, TLS with a test CA. Users that can push,
that can only pull, wrong passwords, expired and revoked identity tokens, a realm on another host,
a registry that never answers. Every result and every log event is checked for secrets.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from regauthd.dockerconfig.auth import Credential
from regauthd.probe.client import make_client, probe, probe_many
from regauthd.probe.result import ProbePolicy, ProbeResult, ProbeStatus, ProbeTarget
from regauthd.probe.targets import targets_from_config
from tests.conftest import require_program
from tests.rigs.configs import auth
from tests.rigs.registry import RunningRegistry, start_registry, start_registry_or_skip
from tests.rigs.tokenissuer import Grant

pytestmark = pytest.mark.integration

ALICE = ("alice", "alice-pw-7Qx9")  # may push and pull
BOB = ("bob", "bob-pw-3Zk8")  # may only pull
CAROL = ("carol", "carol-pw-5Lm2")  # htpasswd user
REPO = "team/app"


def secrets_of(*pairs: tuple[str, str]) -> list[str]:
    out = []
    for user, secret in pairs:
        out += [secret, auth(user, secret)]
    return out


def assert_no_secret(text: str, secrets: list[str]) -> None:
    for secret in secrets:
        assert secret not in text


def run(
    coro_target: ProbeTarget, policy: ProbePolicy | None = None, **client: object
) -> ProbeResult:
    async def one() -> ProbeResult:
        async with make_client(**client) as c:  # type: ignore[arg-type]
            return await probe(c, coro_target, policy)

    return asyncio.run(one())


@pytest.fixture(scope="module")
def token_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    grants = {ALICE[0]: Grant.push(ALICE[1]), BOB[0]: Grant.pull_only(BOB[1])}
    directory = tmp_path_factory.mktemp("token-registry")
    with start_registry_or_skip(directory, auth="token", grants=grants) as reg:
        yield reg


@pytest.fixture(scope="module")
def basic_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    directory = tmp_path_factory.mktemp("basic-registry")
    with start_registry_or_skip(directory, users=dict([CAROL])) as reg:
        yield reg


# -- token auth ------------------------------------------------------------------------------


def test_push_capable_user_is_ok(token_registry: RunningRegistry) -> None:
    result = run(ProbeTarget(token_registry.host, Credential(*ALICE), repository=REPO))
    assert result.status is ProbeStatus.OK
    assert result.push_allowed is True
    assert f"push to {REPO} allowed" in result.detail
    assert result.username == "alice"
    assert_no_secret(repr(result) + json.dumps(result.to_dict()), secrets_of(ALICE))
    # The token was asked for exactly the scope that answers "will my push work?".
    last = token_registry.issuer.requests[-1]  # type: ignore[union-attr]
    assert (last.user, last.scopes) == ("alice", (f"repository:{REPO}:pull,push",))


def test_pull_only_user_is_push_denied(token_registry: RunningRegistry) -> None:
    result = run(ProbeTarget(token_registry.host, Credential(*BOB), repository=REPO))
    assert result.status is ProbeStatus.PUSH_DENIED
    assert result.push_allowed is False
    assert "grants [pull]" in result.detail
    assert_no_secret(result.detail, secrets_of(BOB))


def test_push_granted_on_some_repositories_only(tmp_path: Path) -> None:
    require_program("docker-registry", "docker-registry")
    grants = {"dave": Grant("dave-pw-1Aa", {"team/*": frozenset({"pull", "push"})})}
    with start_registry(tmp_path, auth="token", grants=grants) as reg:
        own = run(ProbeTarget(reg.host, Credential("dave", "dave-pw-1Aa"), repository="team/x"))
        other = run(ProbeTarget(reg.host, Credential("dave", "dave-pw-1Aa"), repository="ops/x"))
    assert (own.status, own.push_allowed) == (ProbeStatus.OK, True)
    assert (other.status, other.push_allowed) == (ProbeStatus.PUSH_DENIED, False)
    assert "grants [nothing]" in other.detail


def test_wrong_password_is_bad_credentials(token_registry: RunningRegistry) -> None:
    wrong = ("alice", "not-alices-password")
    result = run(ProbeTarget(token_registry.host, Credential(*wrong), repository=REPO))
    assert result.status is ProbeStatus.BAD_CREDENTIALS
    assert result.push_allowed is None
    assert "user 'alice'" in result.detail
    assert f"docker login {token_registry.host}" in result.detail
    assert_no_secret(repr(result), secrets_of(wrong))


def test_without_repository_push_is_not_asked(token_registry: RunningRegistry) -> None:
    result = run(ProbeTarget(token_registry.host, Credential(*BOB)))
    assert result.status is ProbeStatus.OK
    assert result.push_allowed is None


def test_identity_token_from_a_real_docker_login(
    token_registry: RunningRegistry, tmp_path: Path
) -> None:
    require_program("docker", "docker.io")
    from tests.rigs.clients import Sandbox, docker_login

    cfg = tmp_path / "docker"
    cfg.mkdir()
    docker_login(cfg, token_registry.host, *ALICE, sandbox=Sandbox.create(tmp_path / "box"))
    config = json.loads((cfg / "config.json").read_text())
    entry = config["auths"][token_registry.host]
    assert entry["identitytoken"]  # the issuer handed docker a refresh token

    (target,) = targets_from_config(config, default_repository=REPO)
    assert target.identity_token is True
    issuer = token_registry.issuer
    assert issuer is not None
    result = run(target)
    assert (result.status, result.push_allowed) == (ProbeStatus.OK, True)
    last = issuer.requests[-1]
    assert (last.method, last.grant_type, last.user) == ("POST", "refresh_token", "alice")

    issuer.revoke_refresh_tokens("alice")
    revoked = run(target)
    assert revoked.status is ProbeStatus.BAD_CREDENTIALS
    assert "identity token" in revoked.detail
    assert "expired or revoked" in revoked.detail
    assert_no_secret(repr([result, revoked]), [entry["identitytoken"], *secrets_of(ALICE)])


def test_expired_identity_token_is_bad_credentials(token_registry: RunningRegistry) -> None:
    issuer = token_registry.issuer
    assert issuer is not None
    expired = issuer.issue_refresh_token("alice", ttl=-1)
    target = ProbeTarget(
        token_registry.host, Credential("alice", expired), identity_token=True, repository=REPO
    )
    result = run(target)
    assert result.status is ProbeStatus.BAD_CREDENTIALS
    assert expired not in repr(result)


def test_expired_access_tokens_are_refused_by_the_registry(
    token_registry: RunningRegistry,
) -> None:
    issuer = token_registry.issuer
    assert issuer is not None
    saved = issuer.access_ttl
    issuer.access_ttl = -120  # the issuer's clock is wrong: tokens are born expired
    try:
        result = run(ProbeTarget(token_registry.host, Credential(*ALICE), repository=REPO))
    finally:
        issuer.access_ttl = saved
    assert result.status is ProbeStatus.ERROR
    assert "refused the token its own token service issued" in result.detail


# -- htpasswd ---------------------------------------------------------------------------------


def test_basic_auth_user_is_ok_and_may_push(basic_registry: RunningRegistry) -> None:
    result = run(ProbeTarget(basic_registry.host, Credential(*CAROL), repository=REPO))
    assert result.status is ProbeStatus.OK
    assert result.push_allowed is True  # a blob upload was opened, then cancelled
    assert "Basic" in result.detail


def test_basic_auth_wrong_password(basic_registry: RunningRegistry) -> None:
    wrong = ("carol", "nope-wrong-pw")
    result = run(ProbeTarget(basic_registry.host, Credential(*wrong), repository=REPO))
    assert result.status is ProbeStatus.BAD_CREDENTIALS
    assert_no_secret(repr(result), secrets_of(wrong))


def test_basic_auth_unknown_user(basic_registry: RunningRegistry) -> None:
    result = run(ProbeTarget(basic_registry.host, Credential("mallory", "whatever-pw")))
    assert result.status is ProbeStatus.BAD_CREDENTIALS


# -- TLS ---------------------------------------------------------------------------------------


def test_tls_registry_needs_its_ca_and_gets_no_credentials_without_it(tmp_path: Path) -> None:
    require_program("docker-registry", "docker-registry")
    with start_registry(tmp_path, auth="token", users=dict([ALICE]), tls=True) as reg:
        assert reg.url.startswith("https://")
        issuer = reg.issuer
        assert issuer is not None
        target = ProbeTarget(reg.host, Credential(*ALICE), repository=REPO)
        untrusted = run(target)
        assert untrusted.status is ProbeStatus.TLS_ERROR
        assert "--ca-file" in untrusted.detail
        assert issuer.requests == []  # the credential never left
        trusted = run(target, ca_file=str(reg.ca_file))
        assert (trusted.status, trusted.push_allowed) == (ProbeStatus.OK, True)
        assert issuer.realm.startswith("https://")


def test_tls_registry_marked_insecure_is_probed_without_verification(tmp_path: Path) -> None:
    require_program("docker-registry", "docker-registry")
    require_program("htpasswd", "apache2-utils")
    with start_registry(tmp_path, users=dict([CAROL]), tls=True) as reg:
        target = ProbeTarget(reg.host, Credential(*CAROL), insecure=True)
        result = run(target, insecure_hosts=[reg.host])
    assert result.status is ProbeStatus.OK


# -- where credentials may go ----------------------------------------------------------------


def test_realm_on_another_host_gets_no_credentials(tmp_path: Path) -> None:
    require_program("docker-registry", "docker-registry")
    # The registry names http://localhost:P/token; the probe knows it as 127.0.0.1:Q.
    with start_registry(tmp_path, auth="token", users=dict([ALICE]), realm_host="localhost") as reg:
        issuer = reg.issuer
        assert issuer is not None
        target = ProbeTarget(reg.host, Credential(*ALICE), repository=REPO)
        refused = run(target)
        assert refused.status is ProbeStatus.ERROR
        assert "another host (localhost)" in refused.detail
        assert issuer.requests == []
        trusted = run(target, ProbePolicy(trusted_realm_hosts=frozenset({"localhost"})))
        assert trusted.status is ProbeStatus.OK
        assert [r.user for r in issuer.requests] == ["alice"]


# -- registries that do not answer ----------------------------------------------------------


def test_closed_port_is_unreachable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # nothing listens on the port any more
    result = run(ProbeTarget(f"127.0.0.1:{port}", Credential(*ALICE)))
    assert result.status is ProbeStatus.UNREACHABLE
    assert "cannot connect" in result.detail


def test_stuck_registry_does_not_block_the_others(token_registry: RunningRegistry) -> None:
    # A listener that accepts connections and never says a word.
    with socket.socket() as stuck:
        stuck.bind(("127.0.0.1", 0))
        stuck.listen(16)
        stuck_host = f"127.0.0.1:{stuck.getsockname()[1]}"
        targets = [
            ProbeTarget(stuck_host, Credential(*ALICE)),
            ProbeTarget(token_registry.host, Credential(*ALICE), repository=REPO),
        ]

        async def both() -> list[ProbeResult]:
            async with make_client(request_timeout_s=0.5) as client:
                return await probe_many(
                    client, targets, concurrency=2, policy=ProbePolicy(timeout_s=1.5)
                )

        stuck_result, good = asyncio.run(both())
    assert stuck_result.status is ProbeStatus.UNREACHABLE
    assert good.status is ProbeStatus.OK


def test_probe_many_keeps_order_and_logs_no_secret(
    token_registry: RunningRegistry, basic_registry: RunningRegistry
) -> None:
    issuer = token_registry.issuer
    assert issuer is not None
    refresh = issuer.issue_refresh_token("bob")
    wrong = ("alice", "wrong-pw-for-alice")
    targets = [
        ProbeTarget(token_registry.host, Credential(*ALICE), repository=REPO),
        ProbeTarget(token_registry.host, Credential(*BOB), repository=REPO),
        ProbeTarget(token_registry.host, Credential(*wrong), repository=REPO),
        ProbeTarget(token_registry.host, Credential("bob", refresh), identity_token=True),
        ProbeTarget(basic_registry.host, Credential(*CAROL), repository=REPO),
        ProbeTarget("127.0.0.1:1", Credential(*ALICE)),
    ]

    async def all_of_them() -> list[ProbeResult]:
        async with make_client() as client:
            return await probe_many(client, targets, concurrency=3)

    with capture_logs() as events:
        results = asyncio.run(all_of_them())
    assert [r.status for r in results] == [
        ProbeStatus.OK,
        ProbeStatus.PUSH_DENIED,
        ProbeStatus.BAD_CREDENTIALS,
        ProbeStatus.OK,
        ProbeStatus.OK,
        ProbeStatus.UNREACHABLE,
    ]
    assert [e["event"] for e in events] == ["probe.finished"] * len(targets)
    everything = repr(events) + repr(results) + json.dumps([r.to_dict() for r in results])
    assert_no_secret(everything, [refresh, *secrets_of(ALICE, BOB, CAROL, wrong)])


def test_probe_many_refuses_a_zero_bound() -> None:
    async def zero() -> None:
        async with make_client() as client:
            await probe_many(client, [], concurrency=0)

    with pytest.raises(ValueError, match="concurrency"):
        asyncio.run(zero())


def test_a_bug_in_the_probe_becomes_an_error_result_without_secrets(
    basic_registry: RunningRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    import regauthd.probe.flow

    def broken(headers: object) -> object:
        raise RuntimeError(f"parser blew up near {CAROL[1]}")

    # Simulates a defect of ours (the parser is our code, not a component being mocked).
    monkeypatch.setattr(regauthd.probe.flow, "parse_challenges", broken)
    targets = [
        ProbeTarget(basic_registry.host, Credential(*CAROL)),
        ProbeTarget(basic_registry.host, Credential(*CAROL)),
    ]

    async def both() -> list[ProbeResult]:
        async with make_client() as client:
            return await probe_many(client, targets)

    with capture_logs() as events:
        results = asyncio.run(both())
    assert [r.status for r in results] == [ProbeStatus.ERROR, ProbeStatus.ERROR]
    assert "RuntimeError" in results[0].detail
    crashed = [e for e in events if e["event"] == "probe.crashed"]
    assert (
        crashed
        == [
            {
                "event": "probe.crashed",
                "log_level": "error",
                "registry": basic_registry.host,
                "error_type": "RuntimeError",
            }
        ]
        * 2
    )
    assert_no_secret(repr(events) + repr(results), secrets_of(CAROL))


def test_loopback_is_never_sent_through_a_proxy(
    basic_registry: RunningRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A "proxy" that would receive the Basic header if loopback were proxied: a listener that
    # records whether anything connected.
    with socket.socket() as proxy:
        proxy.bind(("127.0.0.2", 0))
        proxy.listen(4)
        proxy.setblocking(False)
        address = f"http://127.0.0.2:{proxy.getsockname()[1]}"
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
            monkeypatch.setenv(name, address)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        result = run(ProbeTarget(basic_registry.host, Credential(*CAROL)))
        with pytest.raises(BlockingIOError):
            proxy.accept()
    assert result.status is ProbeStatus.OK
