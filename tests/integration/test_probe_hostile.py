"""Hostile registries cost bounded time and memory, and no secret leaves (issue 12).

Loopback only: 127.0.0.1, and 127.0.0.2 as "another host". A hostile registry
(``tests/rigs/hostile.py``) does what the real one cannot (a gigabyte body, one byte a second,
hostile ``Location`` headers); the real registry stands for the well-behaved ones.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from regauthd.dockerconfig.auth import Credential
from regauthd.probe.client import make_client, probe, probe_many
from regauthd.probe.result import ProbePolicy, ProbeResult, ProbeStatus, ProbeTarget
from tests.conftest import require_root, unavailable
from tests.rigs.hostile import HostileRegistry, start_hostile
from tests.rigs.registry import RunningRegistry, make_test_ca, start_registry_or_skip
from tests.rigs.registry import TestCA as RigCA

pytestmark = pytest.mark.integration

USER = ("alice", "alice-pw-h0stile")
GIB = 1 << 30


@pytest.fixture(scope="module")
def test_ca(tmp_path_factory: pytest.TempPathFactory) -> RigCA:
    return make_test_ca(tmp_path_factory.mktemp("hostile-ca"))


class Recorder:
    """Every URL the probe's client was about to send, stopped before anything leaves when it
    is not loopback (so a failing test never sends a packet to a real address)."""

    def __init__(self) -> None:
        self.urls: list[httpx.URL] = []

    async def __call__(self, request: httpx.Request) -> None:
        self.urls.append(request.url)
        if request.url.host not in {"127.0.0.1", "127.0.0.2"}:
            raise httpx.ConnectError(f"test guard: {request.url.host} is not loopback")


def run(
    target: ProbeTarget,
    *,
    policy: ProbePolicy | None = None,
    ca: RigCA | None = None,
    recorder: Recorder | None = None,
) -> ProbeResult:
    async def one() -> ProbeResult:
        async with make_client(ca_file=str(ca.ca_file) if ca else None) as client:
            if recorder is not None:
                client.event_hooks["request"].append(recorder)
            return await probe(client, target, policy)

    return asyncio.run(one())


def target(reg: HostileRegistry, **kwargs: object) -> ProbeTarget:
    return ProbeTarget(reg.host, Credential(*USER), endpoint=reg.url, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def recorder_server() -> Iterator[HostileRegistry]:
    """A registry that only records: where a credential must never arrive."""
    with start_hostile(users={}) as reg:
        yield reg


# -- bounded memory --------------------------------------------------------------------------


def test_a_gigabyte_token_body_is_refused_after_64_kib() -> None:
    with start_hostile(auth="bearer", body_size=GIB) as reg:
        started = time.monotonic()
        result = run(target(reg))
        elapsed = time.monotonic() - started
        sent = reg.bytes_sent
    assert result.status is ProbeStatus.ERROR
    assert "more than 64 KiB" in result.detail
    assert elapsed < 5
    # The rest was never read: what the server got out is its socket buffers' worth, not 1 GiB.
    assert sent < 64 * 1024 * 1024


def test_a_gigabyte_error_body_is_read_only_to_the_bound() -> None:
    wrong = Credential("alice", "wrong-password")
    with start_hostile(users=dict([USER]), body_size=GIB) as reg:
        started = time.monotonic()
        result = run(ProbeTarget(reg.host, wrong, endpoint=reg.url))
        elapsed = time.monotonic() - started
        sent = reg.bytes_sent
    assert result.status is ProbeStatus.BAD_CREDENTIALS
    assert elapsed < 5
    assert sent < 64 * 1024 * 1024


# -- bounded time ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    directory = tmp_path_factory.mktemp("hostile-real-registry")
    with start_registry_or_skip(directory, users=dict([USER])) as reg:
        yield reg


def test_a_trickling_registry_holds_only_its_own_probe(real_registry: RunningRegistry) -> None:
    policy = ProbePolicy(timeout_s=3.0)
    real = ProbeTarget(real_registry.host, Credential(*USER))

    async def both() -> tuple[list[ProbeResult], ProbeResult]:
        async with make_client() as client:
            alone = await probe(client, real, policy)
            return await probe_many(client, [slow_target, real], policy=policy), alone

    with start_hostile(users=dict([USER]), trickle=True) as slow:
        slow_target = target(slow)
        started = time.monotonic()
        (slow_result, real_result), alone = asyncio.run(both())
        elapsed = time.monotonic() - started
    # The slow one ends at its deadline, not when the server is done (hours at 1 byte/s).
    assert slow_result.status is ProbeStatus.UNREACHABLE
    assert "within 3 s" in slow_result.detail
    assert 2_900 <= slow_result.latency_ms <= 4_500
    assert elapsed < 6
    # The real registry's probe, run beside it, answered at its normal speed.
    assert real_result.status is ProbeStatus.OK
    assert real_result.latency_ms < max(1_000, 5 * alone.latency_ms)


# -- no secret leaves ------------------------------------------------------------------------


def test_cleanup_delete_never_takes_credentials_to_plain_http(
    test_ca: RigCA, recorder_server: HostileRegistry
) -> None:
    elsewhere = f"http://{recorder_server.host}/v2/team/app/blobs/uploads/u1"
    with start_hostile(users=dict([USER]), tls=test_ca, upload_location=elsewhere) as reg:
        result = run(target(reg, repository="team/app"), ca=test_ca)
        seen = list(reg.requests)
    assert (result.status, result.push_allowed) == (ProbeStatus.OK, True)
    assert recorder_server.requests == []  # nothing at all went to the http:// Location
    assert [s.method for s in seen if s.method == "DELETE"] == []


def test_cleanup_delete_never_goes_to_another_port(
    test_ca: RigCA, recorder_server: HostileRegistry
) -> None:
    with start_hostile(users={}, tls=test_ca) as other_port:
        elsewhere = f"https://{other_port.host}/v2/team/app/blobs/uploads/u1"
        with start_hostile(users=dict([USER]), tls=test_ca, upload_location=elsewhere) as reg:
            result = run(target(reg, repository="team/app"), ca=test_ca)
        assert other_port.requests == []
    assert (result.status, result.push_allowed) == (ProbeStatus.OK, True)


def test_cleanup_delete_on_the_registry_itself_is_still_sent(test_ca: RigCA) -> None:
    with start_hostile(users=dict([USER]), tls=test_ca) as reg:
        result = run(target(reg, repository="team/app"), ca=test_ca)
        deletes = [s for s in reg.requests if s.method == "DELETE"]
    assert result.status is ProbeStatus.OK
    assert len(deletes) == 1
    assert deletes[0].authorized


@pytest.mark.parametrize("other_host", ["127.0.0.1", "127.0.0.2"])
def test_credentials_do_not_follow_a_redirect_to_another_port_or_host(other_host: str) -> None:
    with start_hostile(host=other_host, users={}) as other:
        with start_hostile(users=dict([USER]), redirect_authenticated=f"{other.url}/v2/") as reg:
            result = run(target(reg))
        assert other.requests == []
    assert result.status is ProbeStatus.ERROR
    assert "not followed" in result.detail
    assert USER[1] not in result.detail


@pytest.mark.parametrize(
    "location",
    [
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://metadata.google.internal/computeMetadata/v1/",
    ],
)
def test_an_anonymous_redirect_to_a_metadata_address_sends_nothing(location: str) -> None:
    recorder = Recorder()
    with start_hostile(users=dict([USER]), redirect_anonymous=location) as reg:
        result = run(target(reg), recorder=recorder)
    assert result.status is ProbeStatus.ERROR
    assert "link-local or cloud metadata" in result.detail
    assert {u.host for u in recorder.urls} == {"127.0.0.1"}


def test_a_realm_at_a_metadata_address_gets_nothing_even_when_trusted() -> None:
    recorder = Recorder()
    policy = ProbePolicy(trusted_realm_hosts=frozenset({"169.254.169.254"}))
    realm = "http://169.254.169.254/latest/api/token"
    with start_hostile(auth="bearer", realm=realm) as reg:
        result = run(target(reg), policy=policy, recorder=recorder)
    assert result.status is ProbeStatus.ERROR
    assert "link-local or cloud metadata" in result.detail
    assert {u.host for u in recorder.urls} == {"127.0.0.1"}


def test_anonymous_redirects_are_limited() -> None:
    with start_hostile(users=dict([USER]), redirect_anonymous="/v2/") as reg:
        result = run(target(reg))
        count = len(reg.requests)
    assert result.status is ProbeStatus.ERROR
    assert "too many redirects" in result.detail
    assert count == 6  # the first request and five redirects


_NAMED_METADATA_SCRIPT = """
import asyncio, json, sys
sys.path.insert(0, sys.argv[1])
from tests.integration.test_probe_hostile import Recorder, run, target
from tests.rigs.hostile import start_hostile
from regauthd.probe.result import ProbePolicy
recorder = Recorder()
policy = ProbePolicy(trusted_realm_hosts=frozenset({"innocent.regauthd-test"}))
with start_hostile(auth="bearer", realm="https://innocent.regauthd-test/token") as reg:
    result = run(target(reg), policy=policy, recorder=recorder)
print(json.dumps({"status": result.status.value, "detail": result.detail,
                  "hosts": sorted({u.host for u in recorder.urls})}))
"""


def test_a_realm_whose_name_resolves_to_a_metadata_address_gets_nothing(
    tmp_path: Path,
) -> None:
    """A name is not an address: ``innocent.regauthd-test`` resolving to 169.254.169.254 is
    refused after the lookup, before a connection, even when the settings trust that realm.
    The name resolves through a private ``/etc/hosts`` bind-mounted in a mount namespace of
    the test's own (the host's file is never touched); the recorder also stops any request
    that is not loopback."""
    require_root("a private /etc/hosts needs a mount namespace")
    unshare = shutil.which("unshare")
    if unshare is None:
        unavailable("unshare not found (Debian package: util-linux)")
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n169.254.169.254 innocent.regauthd-test\n")
    root = str(Path(__file__).resolve().parents[2])
    script = (
        f"mount --bind {hosts} /etc/hosts && exec {sys.executable} -c "
        f"'{_NAMED_METADATA_SCRIPT}' {root}"
    )
    proc = subprocess.run(
        [unshare, "--mount", "--propagation", "private", "sh", "-c", script],
        check=False, capture_output=True, text=True, timeout=60, cwd=root,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["status"] == "error"
    assert (
        "innocent.regauthd-test, which resolves to a link-local or cloud metadata"
        in (result["detail"])
    )
    assert "169.254.169.254" in result["detail"]
    assert result["hosts"] == ["127.0.0.1"]  # nothing was about to go to the realm


def test_a_key_that_is_no_address_is_refused_before_any_lookup() -> None:
    """A config key with spaces (`bad host name`) names no host: nothing is resolved or sent."""
    recorder = Recorder()
    result = run(ProbeTarget("bad host name", Credential(*USER)), recorder=recorder)
    assert result.status is ProbeStatus.ERROR
    assert "'bad host name' is not a registry address" in result.detail
    assert recorder.urls == []
