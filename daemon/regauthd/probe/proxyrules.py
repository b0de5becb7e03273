"""Which proxy the probe's HTTP client uses for a URL: httpx's rules, written out (pure).

The probe's client (:func:`regauthd.probe.client.make_client`) takes its proxies from the
environment as httpx does (``trust_env``): ``urllib.request.getproxies()`` reads
``HTTPS_PROXY``, ``HTTP_PROXY``, ``ALL_PROXY`` and ``NO_PROXY`` in upper or lower case (the
lower-case one wins when both are set); httpx then maps them to URL patterns
(``httpx._utils.get_environment_proxies``, httpx 0.28):

- ``https://`` URLs use ``https_proxy``, ``http://`` URLs ``http_proxy``, both fall back to
  ``all_proxy``;
- ``NO_PROXY=*`` turns every proxy off; an entry with ``://`` is a URL pattern; an IPv4 or IPv6
  address, or ``localhost``, exempts that host only; any other name exempts that name and its
  subdomains (``example.com`` exempts ``example.com`` and ``a.example.com``, not
  ``badexample.com``; ``.example.com`` only the subdomains). No CIDR ranges, no ports;
- regauthd adds one rule of its own: loopback (``localhost``, ``127.0.0.1``, ``::1``) is never
  proxied, like Go's ``ProxyFromEnvironment`` (so like Docker).

``tests/unit/test_proxyrules.py`` checks this against httpx's own client.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

_LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


@dataclass(frozen=True, slots=True)
class ProxyChoice:
    """How the probe's client reaches one URL."""

    proxy: str | None
    """The proxy URL, or None: connected directly."""
    variable: str | None
    """Which variable named the proxy (``https_proxy``, ``http_proxy``, ``all_proxy``)."""
    exempt_by: str | None
    """Why a proxy that is set does not apply: the ``NO_PROXY`` entry, or ``loopback``."""


def _is_ip(text: str, version: int) -> bool:
    try:
        return ipaddress.ip_address(text.split("/", maxsplit=1)[0]).version == version
    except ValueError:
        return False


def _entry_matches(entry: str, scheme: str, host: str, port: int) -> bool:
    """One ``NO_PROXY`` entry, as httpx's ``URLPattern`` matches it."""
    if "://" in entry:
        parts = urlsplit(entry)
        if parts.scheme not in {"all", scheme}:
            return False
        try:
            pattern_port = parts.port
        except ValueError:
            return False
        if pattern_port is not None and pattern_port != port:
            return False
        return _host_matches((parts.hostname or "").lower(), host)
    if _is_ip(entry, 4):
        return host == entry.split("/", maxsplit=1)[0]
    if _is_ip(entry, 6):
        return host == str(ipaddress.ip_address(entry.split("/", maxsplit=1)[0]))
    if entry.lower() == "localhost":
        return host == "localhost"
    return _host_matches("*" + entry.lower(), host)


def _host_matches(pattern: str, host: str) -> bool:
    if not pattern or pattern == "*":
        return True
    if pattern.startswith("*."):
        return re.fullmatch(rf".+\.{re.escape(pattern[2:])}", host) is not None
    if pattern.startswith("*"):
        return re.fullmatch(rf"(.+\.)?{re.escape(pattern[1:])}", host) is not None
    return host == pattern


def choose_proxy(proxies: Mapping[str, str], scheme: str, host: str, port: int) -> ProxyChoice:
    """The proxy for ``scheme://host:port`` given ``urllib.request.getproxies()``'s answer
    (keys ``https``, ``http``, ``all``, ``no``). ``host`` is lower case, IPv6 without
    brackets."""
    variable = next(
        (f"{name}_proxy" for name in (scheme, "all") if proxies.get(name)),
        None,
    )
    if variable is None:
        return ProxyChoice(None, None, None)
    proxy = proxies[variable.removesuffix("_proxy")]
    if "://" not in proxy:
        proxy = f"http://{proxy}"
    entries = [e.strip() for e in proxies.get("no", "").split(",")]
    if "*" in entries:
        return ProxyChoice(None, variable, "NO_PROXY=*")
    if host in _LOOPBACK_NAMES:
        return ProxyChoice(None, variable, "loopback")
    for entry in entries:
        if entry and _entry_matches(entry, scheme, host, port):
            return ProxyChoice(None, variable, f"NO_PROXY entry {entry}")
    return ProxyChoice(proxy, variable, None)


__all__ = ["ProxyChoice", "choose_proxy"]
