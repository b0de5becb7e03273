"""Step 4 of ``regauthd doctor`` for one registry: the ``dns``, ``tcp``, ``tls`` and ``proxy``
checks, made from what :func:`regauthd.probe.connectivity.examine` found (pure: the time is
passed in).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from regauthd.commands.doctor_verdict import Verdict

if TYPE_CHECKING:
    from regauthd.probe.connectivity import ConnectivityReport, Endpoint, TlsFact
    from regauthd.probe.proxyrules import ProxyChoice

EXPIRY_WARNING_DAYS = 14
_DAY_S = 86400.0


def proxy_text(proxy: str) -> str:
    """A proxy URL without its user and password."""
    parts = urlsplit(proxy)
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")


def proxy_note(choice: ProxyChoice) -> str:
    """How the client reaches the registry, in a few words (for the ``connectivity`` line)."""
    if choice.proxy:
        return f"through the proxy {proxy_text(choice.proxy)} ({choice.variable})"
    if choice.exempt_by:
        return f"{choice.variable} is set, but {choice.exempt_by} exempts it"
    return "no proxy"


def _where(endpoint: Endpoint) -> str:
    host = f"[{endpoint.host}]" if ":" in endpoint.host else endpoint.host
    return f"{host}:{endpoint.port}"


def _date(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M UTC")


def network_verdicts(report: ConnectivityReport, now: float) -> list[Verdict]:
    """``proxy``, ``dns``, ``tcp`` and ``tls`` for one registry, in that order."""
    name = report.registry
    via = proxy_text(report.proxy.proxy) if report.proxy.proxy else None
    return [
        _proxy(report.proxy, name),
        _dns(report, name, via),
        _tcp(report, name, via),
        _tls(report, name, via, now),
    ]


def _proxy(choice: ProxyChoice, name: str) -> Verdict:
    if choice.proxy:
        return Verdict(
            "proxy",
            "ok",
            f"{choice.variable} applies: requests go through the proxy {proxy_text(choice.proxy)}",
            None,
            name,
        )
    if choice.exempt_by:
        return Verdict(
            "proxy",
            "ok",
            f"{choice.variable} is set, but {choice.exempt_by} exempts this registry: "
            "connected directly",
            None,
            name,
        )
    return Verdict(
        "proxy",
        "not_applicable",
        "no proxy variable (HTTPS_PROXY, HTTP_PROXY, ALL_PROXY) applies: connected directly",
        None,
        name,
    )


def _dns(report: ConnectivityReport, name: str, via: str | None) -> Verdict:
    dns = report.dns
    whose = f"the proxy {via}'s name" if via else "the name"
    if dns.literal:
        return Verdict(
            "dns", "not_applicable", f"{dns.host} is an address: nothing to resolve", None, name
        )
    if dns.error is not None:
        return Verdict(
            "dns",
            "problem",
            f"{whose} {dns.host} does not resolve ({dns.error})",
            "check the name for typos, then the resolver (/etc/resolv.conf, the VPN or "
            "/etc/hosts entry that should serve it)",
            name,
        )
    shown = ", ".join(dns.addresses[:4]) + (" ..." if len(dns.addresses) > 4 else "")
    return Verdict("dns", "ok", f"{whose} {dns.host} resolves to {shown}", None, name)


def _tcp(report: ConnectivityReport, name: str, via: str | None) -> Verdict:
    tcp = report.tcp
    if tcp is None:
        return Verdict(
            "tcp", "not_checked", "the name did not resolve, so nothing to connect to",
            "see the dns check", name,
        )  # fmt: skip
    what = f"the proxy {via}" if via else f"{tcp.host} port {tcp.port}"
    if tcp.address is None:
        fix = (
            "check the proxy variables and that the proxy runs"
            if via
            else f"check that the registry runs and listens on port {tcp.port}, and the firewall"
        )
        return Verdict("tcp", "problem", f"cannot connect to {what}: {tcp.error}", fix, name)
    shown = "" if tcp.address == tcp.host else f" ({tcp.address})"
    return Verdict("tcp", "ok", f"connected to {what}{shown} in {tcp.ms} ms", None, name)


def _tls(report: ConnectivityReport, name: str, via: str | None, now: float) -> Verdict:
    endpoint, tls = report.endpoint, report.tls
    if endpoint.scheme != "https":
        return Verdict("tls", "not_applicable", f"plain HTTP ({endpoint.url}): no TLS", None, name)
    if via:
        return Verdict(
            "tls",
            "not_applicable",
            f"TLS runs inside the proxy's tunnel to {_where(endpoint)}; the authentication "
            "check covers it",
            None,
            name,
        )
    if tls is None:
        return Verdict(
            "tls", "not_checked", "no TCP connection, so no TLS handshake", "see the tcp check",
            name,
        )  # fmt: skip
    return _tls_outcome(tls, endpoint, report.ca_file, name, now)


def _tls_outcome(
    tls: TlsFact, endpoint: Endpoint, ca_file: str | None, name: str, now: float
) -> Verdict:
    where = _where(endpoint)
    if tls.outcome == "verified":
        source = f"--ca-file {ca_file}" if tls.verified_by == "ca_file" else "the system CA store"
        if tls.not_after is None:
            return Verdict("tls", "ok", f"{where}: certificate verified by {source}", None, name)
        days = (tls.not_after - now) / _DAY_S
        text = f"{where}: certificate verified by {source}, valid until {_date(tls.not_after)}"
        if days < EXPIRY_WARNING_DAYS:
            return Verdict(
                "tls",
                "warning",
                f"{text}: expires in {max(days, 0):.0f} day(s)",
                "renew the registry's certificate before it expires (ask its operator)",
                name,
            )
        return Verdict("tls", "ok", text, None, name)
    if tls.outcome == "plain_http":
        if endpoint.plain_http_allowed:
            return Verdict(
                "tls",
                "not_applicable",
                f"{where} speaks plain HTTP (allowed for loopback and insecure registries, as "
                "Docker does): no TLS",
                None,
                name,
            )
        return Verdict(
            "tls",
            "problem",
            f"{where}: TLS handshake failed ({tls.detail}); does it speak plain HTTP?",
            "serve TLS, or mark the registry insecure (--insecure-registry, and Docker's "
            "insecure-registries)",
            name,
        )
    if tls.outcome in {"timeout", "failed"}:
        return Verdict(
            "tls",
            "problem",
            f"{where}: {tls.detail or 'TLS handshake failed'} (the port accepts connections "
            "but the handshake did not finish)",
            "check that the registry is healthy and that this port is the registry's",
            name,
        )
    problems = {
        "expired": (
            f"{where}: the certificate has expired ({tls.detail})",
            "renew the registry's certificate (ask its operator)",
        ),
        "hostname_mismatch": (
            f"{where}: the certificate is not for {endpoint.host} ({tls.detail})",
            "use the name the certificate was issued for, or reissue it with this name",
        ),
        "untrusted": (
            f"{where}: the certificate is not trusted by the system CA store"
            + (f" nor by --ca-file {ca_file}" if ca_file else "")
            + f" ({tls.detail})",
            "pass the registry's CA with --ca-file (the daemon: [probe] ca_file), or install "
            "it in the system store",
        ),
    }
    message, fix = problems[tls.outcome]
    if endpoint.insecure:
        return Verdict(
            "tls",
            "warning",
            f"{message}; not verified, because the registry is marked insecure",
            fix,
            name,
        )
    return Verdict("tls", "problem", message, fix, name)
