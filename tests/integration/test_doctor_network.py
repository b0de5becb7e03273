"""``regauthd doctor``'s dns, tcp, tls and proxy checks (issue 11, item 1: connectivity), against
real sockets on loopback: the registry rig with TLS (trustme CA), TLS servers with expired and
nearly expired certificates, a closed port, a port that accepts and never answers.

DNS: ``localhost`` resolves through /etc/hosts (no packet leaves the machine); a name that does
not resolve is the resolver's own failure (``socket.gaierror``) injected at the resolver
boundary of :func:`regauthd.probe.connectivity.examine`, because a real lookup of an unknown
name may leave loopback.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import trustme

from regauthd.commands.doctor_network import network_verdicts
from regauthd.commands.doctor_verdict import Verdict
from regauthd.probe.client import tls_context
from regauthd.probe.connectivity import examine, trust_stores
from regauthd.probe.result import ProbeTarget
from tests.rigs.configs import auth
from tests.rigs.registry import RegistryFactory

NO_PROXY_ENV = {"HTTPS_PROXY": "", "HTTP_PROXY": "", "ALL_PROXY": "", "NO_PROXY": ""}


@pytest.fixture(autouse=True)
def _no_proxy_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in NO_PROXY_ENV:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


def checks(target: ProbeTarget, **kw: Any) -> dict[str, Verdict]:
    async def run() -> dict[str, Verdict]:
        ca_file = kw.pop("ca_file")
        trust = trust_stores(ca_file, tls_context(ca_file))
        report = await examine(target, trust=trust, timeout_s=kw.pop("timeout_s", 2.0), **kw)
        return {v.check: v for v in network_verdicts(report, time.time())}

    return asyncio.run(run())


def cert_files(
    tmp_path: Path, *, days_left: float, names: tuple[str, ...] = ("127.0.0.1", "localhost")
) -> tuple[Path, Path]:
    """A CA file and a server PEM (key + chain) whose certificate ends in ``days_left`` days."""
    ca = trustme.CA()
    now = dt.datetime.now(dt.UTC)
    leaf = ca.issue_cert(
        *names,
        not_before=now - dt.timedelta(days=30),
        not_after=now + dt.timedelta(days=days_left),
    )
    ca_file, server = tmp_path / f"ca-{days_left}.pem", tmp_path / f"server-{days_left}.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    leaf.private_key_and_cert_chain_pem.write_to_path(str(server))
    return ca_file, server


@contextmanager
def tls_server(server_pem: Path) -> Iterator[int]:
    """A TLS server on 127.0.0.1 that completes handshakes and closes; yields its port."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(server_pem))
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            conn.settimeout(2)
            try:
                with context.wrap_socket(conn, server_side=True):
                    pass
            except (OSError, ssl.SSLError):
                conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def test_rig_registry_tls_names_the_ca_that_verified_it(
    registry_factory: RegistryFactory,
) -> None:
    reg = registry_factory(users={"alice": "pw"}, tls=True)
    target = ProbeTarget(registry=reg.host)
    system = checks(target, ca_file=None)
    assert system["tls"].status == "problem"
    assert "not trusted by the system CA store" in system["tls"].message
    assert "--ca-file" in (system["tls"].fix or "")
    assert system["tcp"].status == "ok"
    assert system["dns"].status == "not_applicable"  # an address: nothing to resolve
    assert system["proxy"].status == "not_applicable"
    with_ca = checks(target, ca_file=str(reg.ca_file))
    assert with_ca["tls"].status == "ok"
    assert f"certificate verified by --ca-file {reg.ca_file}" in with_ca["tls"].message


def test_localhost_resolves_and_plain_http_is_not_applicable(
    registry_factory: RegistryFactory,
) -> None:
    reg = registry_factory(users={"alice": "pw"})  # plain HTTP
    found = checks(ProbeTarget(registry=f"localhost:{reg.port}"), ca_file=None)
    assert found["dns"].status == "ok"
    assert "localhost resolves to" in found["dns"].message
    assert "127.0.0.1" in found["dns"].message or "::1" in found["dns"].message
    assert found["tcp"].status == "ok"
    assert found["tls"].status == "not_applicable"
    assert "speaks plain HTTP" in found["tls"].message


def test_expired_and_nearly_expired_certificates(tmp_path: Path) -> None:
    ca_file, soon = cert_files(tmp_path, days_left=5)
    with tls_server(soon) as port:
        found = checks(ProbeTarget(registry=f"127.0.0.1:{port}"), ca_file=str(ca_file))
    assert found["tls"].status == "warning"
    assert "expires in 5 day(s)" in found["tls"].message
    assert "renew" in (found["tls"].fix or "")

    ca_file, gone = cert_files(tmp_path, days_left=-1)
    with tls_server(gone) as port:
        found = checks(ProbeTarget(registry=f"127.0.0.1:{port}"), ca_file=str(ca_file))
    assert found["tls"].status == "problem"
    assert "the certificate has expired" in found["tls"].message

    ca_file, fine = cert_files(tmp_path, days_left=40)
    with tls_server(fine) as port:
        found = checks(ProbeTarget(registry=f"127.0.0.1:{port}"), ca_file=str(ca_file))
    assert found["tls"].status == "ok"


def test_hostname_mismatch(tmp_path: Path) -> None:
    ca_file, other = cert_files(tmp_path, days_left=40, names=("registry.other.test",))
    with tls_server(other) as port:
        found = checks(ProbeTarget(registry=f"127.0.0.1:{port}"), ca_file=str(ca_file))
    assert found["tls"].status == "problem"
    assert "the certificate is not for 127.0.0.1" in found["tls"].message
    with tls_server(other) as port:
        insecure = checks(
            ProbeTarget(registry=f"127.0.0.1:{port}", insecure=True), ca_file=str(ca_file)
        )
    assert insecure["tls"].status == "warning"
    assert "marked insecure" in insecure["tls"].message


def test_closed_port_is_a_tcp_problem() -> None:
    held = socket.socket()  # bound, not listening: the port stays ours and refuses
    held.bind(("127.0.0.2", 0))
    try:
        target = ProbeTarget(registry=f"127.0.0.2:{held.getsockname()[1]}")
        found = checks(target, ca_file=None)
    finally:
        held.close()
    assert found["tcp"].status == "problem"
    assert "Connection refused" in found["tcp"].message
    assert "listens on port" in (found["tcp"].fix or "")
    assert found["tls"].status == "not_checked"


def test_name_that_does_not_resolve() -> None:
    async def no_such_name(host: str, port: int) -> list[str]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    found = checks(ProbeTarget(registry="registry.example.invalid"), ca_file=None,
                   resolve=no_such_name)  # fmt: skip
    assert found["dns"].status == "problem"
    assert "registry.example.invalid does not resolve (Name or service not known)" in (
        found["dns"].message
    )
    assert found["tcp"].status == "not_checked"
    assert found["tls"].status == "not_checked"


def test_hung_port_is_a_tls_problem_at_the_timeout() -> None:
    hung = socket.create_server(("127.0.0.1", 0))  # accepts (backlog), never answers
    try:
        found = checks(ProbeTarget(registry=f"127.0.0.1:{hung.getsockname()[1]}"),
                       ca_file=None, timeout_s=0.5)  # fmt: skip
    finally:
        hung.close()
    assert found["tcp"].status == "ok"
    assert found["tls"].status == "problem"
    assert "no TLS handshake within 0.5 s" in found["tls"].message


class RecordingProxy:
    """A loopback HTTP proxy that records the CONNECT lines it gets and refuses them (502)."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(2)
                try:
                    head = conn.recv(4096).decode(errors="replace")
                    self.lines.append(head.split("\r\n", 1)[0])
                    conn.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
                except OSError:
                    pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.listener.close()


def _doctor(cfg: Path, env: dict[str, str]) -> list[dict[str, Any]]:
    base = {"PATH": os.environ["PATH"], "HOME": str(cfg.parent), "LANG": "C.UTF-8"}
    proc = subprocess.run(
        [sys.executable, "-m", "regauthd", "doctor", "--docker-config", str(cfg), "--json",
         "--timeout", "2"],
        capture_output=True, text=True, timeout=60, check=False, env=base | env,
    )  # fmt: skip
    return [json.loads(line) for line in proc.stdout.splitlines()]


def test_proxy_variables_as_the_client_applies_them(tmp_path: Path) -> None:
    held = socket.socket()
    held.bind(("127.0.0.2", 0))
    host = f"127.0.0.2:{held.getsockname()[1]}"
    cfg = tmp_path / "d"
    cfg.mkdir()
    (cfg / "config.json").write_text(json.dumps({"auths": {host: {"auth": auth("u", "p")}}}))
    proxy = RecordingProxy()
    try:
        # The proxy's password is never printed (the URL is shown without its user info).
        through = _doctor(cfg, {"https_proxy": f"http://u:pr0xy-s3cret@127.0.0.1:{proxy.port}"})
        asked = list(proxy.lines)
        exempt = _doctor(
            cfg, {"HTTPS_PROXY": f"http://127.0.0.1:{proxy.port}", "NO_PROXY": "127.0.0.2"}
        )
        asked_exempt = proxy.lines[len(asked) :]
    finally:
        proxy.close()
        held.close()

    def row(rows: list[dict[str, Any]], check: str) -> dict[str, Any]:
        (found,) = [r for r in rows if r["check"] == check and r["registry"] == host]
        return found

    assert "pr0xy-s3cret" not in json.dumps(through)
    assert row(through, "proxy")["status"] == "ok"
    assert row(through, "proxy")["message"].startswith(
        f"https_proxy applies: requests go through the proxy http://127.0.0.1:{proxy.port}"
    )
    assert f"connected to the proxy http://127.0.0.1:{proxy.port}" in row(through, "tcp")["message"]
    assert row(through, "tls")["status"] == "not_applicable"
    # The probe really went through it: what the doctor said is what the client did.
    assert f"CONNECT {host} HTTP/1.1" in asked
    assert row(exempt, "proxy")["message"] == (
        "HTTPS_PROXY is set, but NO_PROXY entry 127.0.0.2 exempts this registry: connected directly"
    )
    assert row(exempt, "tcp")["status"] == "problem"  # nothing listens there
    assert asked_exempt == []
