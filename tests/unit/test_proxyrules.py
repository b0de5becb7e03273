"""The proxy the doctor names is the one the probe's client uses: ``choose_proxy`` against
httpx's own choice (the client ``make_client`` builds), for each spelling of the variables."""

from __future__ import annotations

import asyncio
import urllib.request

import httpx
import pytest

from regauthd.probe.client import make_client
from regauthd.probe.proxyrules import choose_proxy

PROXY_VARS = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY")
URLS = [
    "https://ghcr.io/v2/",
    "https://registry.example.com:5000/v2/",
    "https://example.com/v2/",
    "https://badexample.com/v2/",
    "http://example.com/v2/",
    "https://127.0.0.1:5000/v2/",
    "https://127.0.0.2:5000/v2/",
    "https://10.1.2.3/v2/",
    "https://[::1]:5000/v2/",
    "https://[fd00::1]:5000/v2/",
    "https://localhost:5000/v2/",
]
ENVIRONMENTS = [
    {},
    {"HTTPS_PROXY": "http://proxy.corp:3128"},
    {"https_proxy": "proxy.corp:3128"},
    {"HTTPS_PROXY": "http://upper:1", "https_proxy": "http://lower:2"},
    {"HTTP_PROXY": "http://plain:3128"},
    {"ALL_PROXY": "http://every:3128", "HTTPS_PROXY": "http://secure:3128"},
    {"ALL_PROXY": "http://every:3128"},
    {"HTTPS_PROXY": "http://p:1", "NO_PROXY": "example.com"},
    {"HTTPS_PROXY": "http://p:1", "NO_PROXY": ".example.com"},
    {"HTTPS_PROXY": "http://p:1", "no_proxy": "ghcr.io, 10.1.2.3"},
    {"HTTPS_PROXY": "http://p:1", "NO_PROXY": "127.0.0.2,fd00::1"},
    {"HTTPS_PROXY": "http://p:1", "NO_PROXY": "10.0.0.0/8"},
    {"HTTPS_PROXY": "http://p:1", "NO_PROXY": "*"},
    {"HTTPS_PROXY": "http://p:1", "NO_PROXY": "https://ghcr.io"},
    {"HTTPS_PROXY": "http://p:1", "NO_PROXY": "all://*.example.com:5000"},
    {"HTTPS_PROXY": "http://p:1", "NO_PROXY": "http://example.com"},
]


def _httpx_proxies(urls: list[str]) -> list[str | None]:
    """The proxy httpx's client (as the probe builds it) sends each URL through, or None."""

    async def choose() -> list[str | None]:
        chosen: list[str | None] = []
        async with make_client() as client:
            for url in urls:
                # httpx has no public "which transport for this URL"; this is what it uses.
                transport = client._transport_for_url(httpx.URL(url))
                origin = getattr(getattr(transport, "_pool", None), "_proxy_url", None)
                chosen.append(
                    None
                    if origin is None
                    else f"{origin.scheme.decode()}://{origin.host.decode()}:{origin.port}"
                )
        return chosen

    return asyncio.run(choose())


@pytest.mark.parametrize(
    "env", ENVIRONMENTS, ids=lambda e: ",".join(f"{k}={v}" for k, v in e.items()) or "none"
)
def test_choose_proxy_agrees_with_httpx(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    proxies = urllib.request.getproxies()
    ours: list[str | None] = []
    for url in URLS:
        parsed = httpx.URL(url)
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        proxy = choose_proxy(proxies, parsed.scheme, parsed.host.lower(), port).proxy
        if proxy is not None:
            proxy_url = httpx.URL(proxy)
            proxy = f"{proxy_url.scheme}://{proxy_url.host}:{proxy_url.port or 80}"
        ours.append(proxy)
    assert list(zip(URLS, ours, strict=True)) == list(
        zip(URLS, _httpx_proxies(URLS), strict=True)
    ), env


def test_the_reason_is_named() -> None:
    proxies = {"https": "http://p:1", "no": "example.com"}
    exempt = choose_proxy(proxies, "https", "a.example.com", 443)
    assert (exempt.proxy, exempt.variable, exempt.exempt_by) == (
        None, "https_proxy", "NO_PROXY entry example.com",
    )  # fmt: skip
    assert choose_proxy(proxies, "https", "127.0.0.1", 5000).exempt_by == "loopback"
    assert choose_proxy(proxies, "https", "ghcr.io", 443).proxy == "http://p:1"
    assert choose_proxy({}, "https", "ghcr.io", 443).variable is None
