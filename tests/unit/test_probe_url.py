"""The probe's rules read URLs exactly as its HTTP client does (:mod:`regauthd.probe.url`).

The rules that decide where a credential may go are pure, so they cannot ask httpx; a parser
that disagreed with the client about a host would let a credential through. So each case is
compared with httpx itself: examples (IPv6, ports, userinfo tricks, IDNA, malformed URLs),
generated strings, redirects, and the hosts a :class:`ProbeTarget` derives from its registry.
"""

from __future__ import annotations

import doctest
from collections.abc import Callable

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from regauthd.probe import url as url_module
from regauthd.probe.result import HUB_ENDPOINT, ProbeTarget
from regauthd.probe.rules import is_loopback
from regauthd.probe.url import InvalidURL, ParsedURL, parse_url

View = tuple[str | None, ...]


def _host_or_error(read: Callable[[], str]) -> str:
    try:
        return read()
    except UnicodeError as exc:  # an ``xn--`` label that does not decode
        return f"{type(exc).__name__}: {exc}"


def client_view(make: Callable[[], httpx.URL]) -> View:
    try:
        url = make()
    except httpx.InvalidURL as exc:
        return ("InvalidURL", str(exc))
    host = _host_or_error(lambda: url.host)
    return (url.scheme, host, url.netloc.decode("ascii"), str(url))


def our_view(make: Callable[[], ParsedURL]) -> View:
    try:
        url = make()
    except InvalidURL as exc:
        return ("InvalidURL", str(exc))
    host = _host_or_error(lambda: url.host)
    return (url.scheme, host, url.netloc, str(url))


def same_as_client(text: str) -> None:
    assert our_view(lambda: parse_url(text)) == client_view(lambda: httpx.URL(text))


def same_join_as_client(base: str, location: str) -> None:
    ours = our_view(lambda: parse_url(base).join(location))
    assert ours == client_view(lambda: httpx.URL(base).join(location))


EXAMPLES = [
    "https://ghcr.io",
    "HTTPS://GHCR.io:443/v2/",
    "http://reg.example:80/",
    "https://reg.example:80/",
    "http://127.0.0.1:5000/v2/",
    "http://localhost:5000",
    "http://[::1]:5000/v2/",
    "https://[::1]",
    "https://[::FFFF:192.168.0.1]:8443/token",
    "https://[2001:DB8::1]:443",
    "https://[fe80::1%25eth0]:5000",
    "https://[zz]/",
    "https://[::1",
    "https://300.1.1.1/",
    "https://1.2.3/",
    "https://reg.example:99999/",
    "https://reg.example:port/",
    "https://reg.example:/",
    "https://reg.example:0/",
    "https://evil.example\\@ghcr.io/",
    "https://evil.example%40@ghcr.io/",
    "https://a@b@ghcr.io/",
    "https://user:pa ss@ghcr.io/token",
    "https://ghcr.io#@evil.example/",
    "https://ghcr.io?@evil.example/",
    "https://gh cr.io/",
    "https://ghcr.io./",
    "https://bücher.example/",
    "https://xn--bcher-kva.example/",
    "https://xn--zz/",
    "https://☃.example:5000",
    "http://reg.example/a/../b/./c/..",
    "https://reg.example/?q=a b#frag ment",
    "https://reg.example/x\ty",
    "https://reg.example/\x00",
    "ftp://ghcr.io:21/token",
    "ws://ghcr.io:80",
    "file:///etc/passwd",
    "not a url at all",
    "",
    "/token2",
    "//b.io/token",
    "::x",
    ":x",
    "http:relative",
    "https:/just/a/path",
]


@pytest.mark.parametrize("text", EXAMPLES)
def test_parse_url_reads_examples_as_the_client_does(text: str) -> None:
    same_as_client(text)


_URL_PARTS = st.text(alphabet="aZ09.-_~:/@[]%?# \\!$&'()*+,;=ü", max_size=24)


@given(
    st.sampled_from(["", "http:", "https:", "HTTPS:", "ftp:", "x-y:"]),
    st.sampled_from(["", "//", "///"]),
    _URL_PARTS,
)
def test_parse_url_agrees_with_the_client_on_generated_urls(
    scheme: str, slashes: str, rest: str
) -> None:
    same_as_client(scheme + slashes + rest)


@given(st.text(max_size=40))
def test_parse_url_agrees_with_the_client_on_any_text(text: str) -> None:
    same_as_client(text)


@pytest.mark.parametrize(
    ("base", "location"),
    [
        ("https://a.io/token", "/token2"),
        ("https://a.io/token", "token2?x=1"),
        ("https://a.io/v2/token", "../other#f"),
        ("https://a.io/token", "//b.io/token"),
        ("https://a.io/token", "https://a.io:444/token"),
        ("https://a.io/token", "HTTPS://A.IO:443/token"),
        ("https://a.io/token", "http://a.io/token"),
        ("https://a.io/token", "http:relative"),
        ("https://a.io/token", "https:/same/host"),
        ("https://a.io/token", "https://b.io\\@a.io/"),
        ("https://a.io/token", "https://a.io:port/"),
        ("https://a.io/token", "::x"),
        ("https://a.io/token", ""),
        ("http://[::1]:5000/v2/", "/token"),
        ("http://[::1]:5000/v2/", "//[::2]:5000/token"),
    ],
)
def test_join_resolves_redirects_as_the_client_does(base: str, location: str) -> None:
    same_join_as_client(base, location)


@given(
    st.sampled_from(["https://a.io/v2/token", "http://[::1]:5000/v2/", "https://a.io"]),
    st.sampled_from(["", "http:", "https:", "//", "https://"]),
    _URL_PARTS,
)
def test_join_agrees_with_the_client_on_generated_locations(
    base: str, prefix: str, rest: str
) -> None:
    same_join_as_client(base, prefix + rest)


def test_the_module_examples_hold() -> None:
    assert doctest.testmod(url_module).failed == 0


# -- the hosts a target derives from its registry ----------------------------------------------


@pytest.mark.parametrize(
    ("target", "host", "endpoints"),
    [
        (ProbeTarget("ghcr.io"), "ghcr.io", ("https://ghcr.io",)),
        (ProbeTarget("docker.io"), "registry-1.docker.io", (HUB_ENDPOINT,)),
        (ProbeTarget("GHCR.io:443"), "ghcr.io", ("https://GHCR.io:443",)),
        (
            ProbeTarget("127.0.0.1:5000"),
            "127.0.0.1:5000",
            ("https://127.0.0.1:5000", "http://127.0.0.1:5000"),
        ),
        (ProbeTarget("[::1]"), "[::1]", ("https://[::1]", "http://[::1]")),
        (
            ProbeTarget("[::1]:5000"),
            "[::1]:5000",
            ("https://[::1]:5000", "http://[::1]:5000"),
        ),
        (ProbeTarget("[2001:db8::1]:5000"), "[2001:db8::1]:5000", ("https://[2001:db8::1]:5000",)),
        (
            ProbeTarget("[2001:db8::1]:5000", insecure=True),
            "[2001:db8::1]:5000",
            ("https://[2001:db8::1]:5000", "http://[2001:db8::1]:5000"),
        ),
        (
            ProbeTarget("localhost:5000"),
            "localhost:5000",
            ("https://localhost:5000", "http://localhost:5000"),
        ),
        (
            ProbeTarget("ghcr.io", endpoint="http://[::1]:8080/"),
            "[::1]:8080",
            ("http://[::1]:8080",),
        ),
        (ProbeTarget("ghcr.io", endpoint="https://Mirror.Example:443"), "mirror.example", None),
    ],
)
def test_target_host_and_endpoints_with_ipv6_and_ports(
    target: ProbeTarget, host: str, endpoints: tuple[str, ...] | None
) -> None:
    assert target.host == host
    if endpoints is not None:
        assert target.endpoints() == endpoints


def client_endpoints(target: ProbeTarget) -> tuple[str, ...]:
    """``ProbeTarget.endpoints`` as it was written over httpx."""
    if target.endpoint:
        return (target.endpoint.rstrip("/"),)
    if target.is_hub:
        return (HUB_ENDPOINT,)
    hostname = httpx.URL(f"https://{target.registry}").host
    if target.insecure or is_loopback(hostname):
        return (f"https://{target.registry}", f"http://{target.registry}")
    return (f"https://{target.registry}",)


def outcome(read: Callable[[], object]) -> object:
    try:
        return read()
    except (httpx.InvalidURL, ValueError, UnicodeError) as exc:
        return (type(exc).__name__, str(exc))


@pytest.mark.parametrize("insecure", [False, True])
@pytest.mark.parametrize(
    "registry",
    [
        "ghcr.io",
        "127.0.0.1:5000",
        "127.8.9.10",
        "[::1]:5000",
        "[::ffff:127.0.0.1]:5000",
        "[2001:db8::1]",
        "reg.localhost:5000",
        "LOCALHOST",
        "reg.example:443",
        "reg.example:port",
        "300.1.1.1:5000",
        "[zz]:5000",
        "xn--zz",
        "bücher.example",
        "two words",
        "",
    ],
)
def test_target_endpoints_and_host_match_the_client(registry: str, insecure: bool) -> None:
    target = ProbeTarget(registry, insecure=insecure)
    assert outcome(target.endpoints) == outcome(lambda: client_endpoints(target))
    expected_host = outcome(lambda: httpx.URL(client_endpoints(target)[0]).netloc.decode("ascii"))
    assert outcome(lambda: target.host) == expected_host
