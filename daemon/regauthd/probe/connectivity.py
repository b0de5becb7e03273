"""How a registry is reached, step by step: the name resolves, TCP connects, TLS verifies,
and which proxy the probe's client would use (for ``regauthd doctor``).

:func:`examine` looks at a target's first endpoint the way the probe's client reaches it
(:func:`regauthd.probe.client.make_client`): through the proxy :mod:`regauthd.probe.proxyrules`
picks, else directly. Each step has the caller's timeout; nothing is sent but a TLS handshake
(no HTTP request, no credential). It returns facts; the verdicts are made from them in
:mod:`regauthd.commands.doctor_network`.

TLS is verified first against the system's CA store, then, when that fails and a ``ca_file``
was given, against that file alone, so the answer says which of the two vouched for the
certificate.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import socket
import ssl
import time
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from regauthd.probe.proxyrules import ProxyChoice, choose_proxy
from regauthd.probe.result import ProbeTarget
from regauthd.probe.transport import short
from regauthd.probe.url import parse_url

Resolver = Callable[[str, int], Awaitable[list[str]]]
"""``(host, port) -> addresses``; raises :class:`OSError` (``socket.gaierror``) on failure."""

TlsOutcome = Literal[
    "verified", "expired", "hostname_mismatch", "untrusted", "plain_http", "failed", "timeout"
]
# OpenSSL's X509_V_ERR_CERT_HAS_EXPIRED, X509_V_ERR_HOSTNAME_MISMATCH and _IP_ADDRESS_MISMATCH.
_CERT_HAS_EXPIRED = 10
_NAME_MISMATCH = frozenset({62, 64})
_MAX_ADDRESSES = 3


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where the client connects first for a registry."""

    url: str
    scheme: str
    host: str
    """Lower case, IPv6 without brackets."""
    port: int
    plain_http_allowed: bool
    """An ``http://`` endpoint follows (loopback or insecure registries, as Docker does)."""
    insecure: bool


@dataclass(frozen=True, slots=True)
class DnsFact:
    host: str
    addresses: tuple[str, ...] = ()
    error: str | None = None
    literal: bool = False
    """``host`` is an address: nothing to resolve."""


@dataclass(frozen=True, slots=True)
class TcpFact:
    host: str
    port: int
    address: str | None = None
    """The address that accepted; None when none did."""
    error: str | None = None
    ms: int = 0


@dataclass(frozen=True, slots=True)
class TlsFact:
    outcome: TlsOutcome
    verified_by: Literal["system", "ca_file"] | None = None
    not_after: float | None = None
    """The certificate's expiry (seconds since the epoch), when it was verified."""
    detail: str = ""


@dataclass(frozen=True, slots=True)
class ConnectivityReport:
    registry: str
    endpoint: Endpoint
    proxy: ProxyChoice
    dns: DnsFact
    tcp: TcpFact | None
    """None when DNS failed."""
    tls: TlsFact | None
    """None when TLS does not apply (plain ``http://``, through a proxy, or no TCP)."""
    ca_file: str | None
    timeout_s: float


def endpoint_of(target: ProbeTarget) -> Endpoint:
    endpoints = target.endpoints()
    url = parse_url(endpoints[0])
    port = url.port or (443 if url.scheme == "https" else 80)
    return Endpoint(
        url=endpoints[0],
        scheme=url.scheme,
        host=url.host.strip("[]").lower(),
        port=port,
        plain_http_allowed=any(e.startswith("http://") for e in endpoints[1:]),
        insecure=target.insecure,
    )


async def system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _is_address(host: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
    except OSError:
        return False
    return True


async def _resolve(host: str, port: int, resolve: Resolver, timeout_s: float) -> DnsFact:
    if _is_address(host):
        return DnsFact(host, (host,), literal=True)
    try:
        async with asyncio.timeout(timeout_s):
            addresses = await resolve(host, port)
    except TimeoutError:
        return DnsFact(host, error=f"no answer within {timeout_s:g} s")
    except OSError as exc:
        return DnsFact(host, error=short(exc.strerror or str(exc)))
    if not addresses:
        return DnsFact(host, error="no address")
    return DnsFact(host, tuple(addresses))


def _reason(exc: OSError) -> str:
    """The system's words for a socket error (asyncio's own text repeats the address)."""
    if exc.errno:
        return os.strerror(exc.errno)
    return short(exc.strerror or type(exc).__name__)


async def _connect(dns: DnsFact, port: int, timeout_s: float) -> TcpFact:
    errors: list[str] = []
    for address in dns.addresses[:_MAX_ADDRESSES]:
        started = time.monotonic()
        try:
            async with asyncio.timeout(timeout_s):
                _, writer = await asyncio.open_connection(address, port)
        except TimeoutError:
            errors.append(f"{address}: no answer within {timeout_s:g} s")
            continue
        except OSError as exc:
            errors.append(f"{address}: {_reason(exc)}")
            continue
        ms = round((time.monotonic() - started) * 1000)
        writer.close()
        return TcpFact(dns.host, port, address, ms=ms)
    if len(errors) == 1 and dns.literal:
        errors = [errors[0].partition(": ")[2]]
    return TcpFact(dns.host, port, error="; ".join(errors) or "no address to connect to")


async def _handshake(
    address: str, endpoint: Endpoint, context: ssl.SSLContext, timeout_s: float
) -> dict[str, object]:
    async with asyncio.timeout(timeout_s):
        _, writer = await asyncio.open_connection(
            address, endpoint.port, ssl=context, server_hostname=endpoint.host
        )
    try:
        cert = writer.get_extra_info("peercert") or {}
    finally:
        writer.close()
    return dict(cert)


@dataclass(frozen=True, slots=True)
class TrustStores:
    """What a handshake is verified with: ``ca_file`` alone (cheap to load), then the probes'
    own context (the system store plus ``ca_file``; costly to make, so shared with the probes'
    client). A certificate the first accepts was vouched for by ``--ca-file``; one only the
    second accepts, by the system store."""

    combined: ssl.SSLContext
    ca_file: ssl.SSLContext | None = None
    ca_path: str | None = None

    def attempts(self) -> list[tuple[Literal["system", "ca_file"], ssl.SSLContext]]:
        found: list[tuple[Literal["system", "ca_file"], ssl.SSLContext]] = []
        if self.ca_file is not None:
            found.append(("ca_file", self.ca_file))
        found.append(("system", self.combined))
        return found


def trust_stores(ca_file: str | None, combined: ssl.SSLContext) -> TrustStores:
    """``combined`` is :func:`regauthd.probe.client.tls_context` for the same ``ca_file``."""
    alone = ssl.create_default_context(cafile=ca_file) if ca_file else None
    return TrustStores(combined, alone, ca_file)


async def _tls(address: str, endpoint: Endpoint, trust: TrustStores, timeout_s: float) -> TlsFact:
    failure = TlsFact("failed")
    for source, context in trust.attempts():
        try:
            cert = await _handshake(address, endpoint, context, timeout_s)
        except TimeoutError:
            return TlsFact("timeout", detail=f"no TLS handshake within {timeout_s:g} s")
        except ssl.SSLCertVerificationError as exc:
            message = exc.verify_message or str(exc.reason)
            if exc.verify_code == _CERT_HAS_EXPIRED:
                failure = TlsFact("expired", detail=message)
            elif exc.verify_code in _NAME_MISMATCH:
                failure = TlsFact("hostname_mismatch", detail=message)
            elif failure.outcome == "failed":  # the chain's own fault found first says more
                failure = TlsFact("untrusted", detail=message)
            continue
        except ssl.SSLError as exc:
            return TlsFact("plain_http", detail=short(str(exc.reason or exc)))
        except OSError as exc:
            return TlsFact("failed", detail=_reason(exc))
        not_after = cert.get("notAfter")
        expiry = ssl.cert_time_to_seconds(not_after) if isinstance(not_after, str) else None
        return TlsFact("verified", verified_by=source, not_after=expiry)
    return failure


def _proxy_endpoint(proxy: str) -> tuple[str, int]:
    url = parse_url(proxy)
    return url.host.strip("[]").lower(), url.port or (443 if url.scheme == "https" else 80)


def variable_name(lower: str) -> str:
    """The environment variable as it is spelled here: ``https_proxy`` wins over
    ``HTTPS_PROXY`` (as in ``urllib.request.getproxies``)."""
    return lower if os.environ.get(lower) else lower.upper()


async def examine(
    target: ProbeTarget,
    *,
    trust: TrustStores,
    timeout_s: float,
    resolve: Resolver = system_resolver,
    proxies: dict[str, str] | None = None,
) -> ConnectivityReport:
    """DNS, TCP and TLS for ``target``'s first endpoint, each bounded by ``timeout_s``.

    Through a proxy, DNS and TCP are the proxy's (the proxy resolves the registry) and TLS is
    left to the probe (it runs inside the proxy's tunnel).
    """
    endpoint = endpoint_of(target)
    if proxies is None:
        proxies = urllib.request.getproxies()
    proxy = choose_proxy(proxies, endpoint.scheme, endpoint.host, endpoint.port)
    if proxy.variable is not None:
        proxy = dataclasses.replace(proxy, variable=variable_name(proxy.variable))
    host, port = _proxy_endpoint(proxy.proxy) if proxy.proxy else (endpoint.host, endpoint.port)
    dns = await _resolve(host, port, resolve, timeout_s)
    tcp = await _connect(dns, port, timeout_s) if dns.addresses else None
    tls = None
    if not proxy.proxy and endpoint.scheme == "https" and tcp and tcp.address:
        tls = await _tls(tcp.address, endpoint, trust, timeout_s)
    return ConnectivityReport(
        registry=target.registry,
        endpoint=endpoint,
        proxy=proxy,
        dns=dns,
        tcp=tcp,
        tls=tls,
        ca_file=trust.ca_path,
        timeout_s=timeout_s,
    )


__all__ = [
    "ConnectivityReport",
    "DnsFact",
    "Endpoint",
    "TcpFact",
    "TlsFact",
    "TrustStores",
    "endpoint_of",
    "examine",
    "system_resolver",
    "trust_stores",
    "variable_name",
]
