"""URLs read exactly the way the probe's HTTP client (httpx) reads them, without httpx (pure).

The rules that decide where a credential may go (:mod:`regauthd.probe.rules`) compare schemes
and hosts. They must see the host the client will connect to: a rule that parsed a URL
differently from the client (``https://evil.example\\@ghcr.io/`` is one classic) would let a
credential through. So this follows httpx's own parser (``httpx/_urlparse.py``, RFC 3986 with
WHATWG quoting; BSD licence): scheme and host lower-cased, IDNA hosts encoded, default ports
dropped, dot segments removed, and the same URLs refused, with the same messages, as
:class:`InvalidURL`. ``tests/test_probe_url.py`` checks the two agree.

>>> url = parse_url("https://Reg.Example:443/v2/")
>>> url.scheme, url.host, url.netloc, str(url)
('https', 'reg.example', 'reg.example', 'https://reg.example/v2/')
>>> parse_url("http://[::1]:5000").join("/token").netloc
'[::1]:5000'
"""

from __future__ import annotations

import ipaddress
import re
import urllib.parse
from dataclasses import dataclass

_MAX_URL_LENGTH = 65536
_UNRESERVED = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
_SUB_DELIMS = "!$&'()*+,;="
_PERCENT_ENCODED = re.compile("%[A-Fa-f0-9]{2}")


def _printable_except(*excluded: int) -> str:
    return "".join(chr(i) for i in range(0x20, 0x7F) if i not in excluded)


# The WHATWG percent-encode sets, as httpx uses them.
_FRAGMENT_SAFE = _printable_except(0x20, 0x22, 0x3C, 0x3E, 0x60)
_QUERY_SAFE = _printable_except(0x20, 0x22, 0x23, 0x3C, 0x3E)
_PATH_SAFE = _printable_except(0x20, 0x22, 0x23, 0x3C, 0x3E, 0x3F, 0x60, 0x7B, 0x7D)
_USERINFO_SAFE = _printable_except(
    *(0x20, 0x22, 0x23, 0x3C, 0x3E, 0x3F, 0x60, 0x7B, 0x7D),
    *(0x2F, 0x3B, 0x3D, 0x40, 0x5B, 0x5C, 0x5D, 0x5E, 0x7C),
)
_HOST_SAFE = _SUB_DELIMS + '"`{}%|\\'

_URL = re.compile(
    r"(?:(?P<scheme>([a-zA-Z][a-zA-Z0-9+.-]*)?):)?"
    r"(?://(?P<authority>[^/?#]*))?"
    r"(?P<path>[^?#]*)"
    r"(?:\?(?P<query>[^#]*))?"
    r"(?:#(?P<fragment>.*))?"
)
_AUTHORITY = re.compile(r"(?:(?P<userinfo>.*)@)?(?P<host>(\[.*\]|[^:@]*)):?(?P<port>.*)?")
_IPV4_STYLE = re.compile(r"^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$")
_IPV6_STYLE = re.compile(r"^\[.*\]$")
_DEFAULT_PORTS = {"ftp": 21, "http": 80, "https": 443, "ws": 80, "wss": 443}


class InvalidURL(ValueError):
    """A URL the HTTP client would refuse. Name and message are httpx's, so a probe's error
    detail reads the same whichever of the two noticed."""


@dataclass(frozen=True, slots=True)
class ParsedURL:
    """A URL in httpx's normal form (every part ASCII, quoted)."""

    scheme: str
    userinfo: str
    raw_host: str
    """Lower-cased, IDNA-encoded, IPv6 without brackets."""
    port: int | None
    """None when absent or the scheme's default."""
    path: str
    query: str | None
    fragment: str | None

    @property
    def host(self) -> str:
        """As httpx's ``URL.host``: the host with IDNA names decoded to Unicode."""
        if self.raw_host.startswith("xn--"):
            # Imported here: only an internationalized name needs the (large) IDNA tables.
            import idna  # noqa: PLC0415

            return idna.decode(self.raw_host)
        return self.raw_host

    @property
    def netloc(self) -> str:
        """``host`` or ``host:port`` in ASCII (httpx's ``URL.netloc``, decoded)."""
        host = f"[{self.raw_host}]" if ":" in self.raw_host else self.raw_host
        return host if self.port is None else f"{host}:{self.port}"

    def join(self, url: str) -> ParsedURL:
        """``url`` resolved against this one (httpx's ``URL.join``)."""
        return parse_url(urllib.parse.urljoin(str(self), str(parse_url(url))))

    def __str__(self) -> str:
        authority = self.netloc if not self.userinfo else f"{self.userinfo}@{self.netloc}"
        return "".join(
            [
                f"{self.scheme}:" if self.scheme else "",
                f"//{authority}" if authority else "",
                self.path,
                f"?{self.query}" if self.query is not None else "",
                f"#{self.fragment}" if self.fragment is not None else "",
            ]
        )


def parse_url(url: str) -> ParsedURL:
    """``url`` in httpx's normal form; :class:`InvalidURL` where httpx raises it."""
    if len(url) > _MAX_URL_LENGTH:
        raise InvalidURL("URL too long")
    for index, char in enumerate(url):
        if char.isascii() and not char.isprintable():
            raise InvalidURL(
                f"Invalid non-printable ASCII character in URL, {char!r} at position {index}."
            )
    match = _URL.match(url)
    assert match is not None  # noqa: S101 - every part of the pattern is optional
    raw_scheme = match["scheme"] or ""
    scheme = raw_scheme.lower()
    authority = _AUTHORITY.match(match["authority"] or "")
    assert authority is not None  # noqa: S101 - the same
    userinfo = _quote(authority["userinfo"] or "", _USERINFO_SAFE)
    host = _encode_host(authority["host"] or "")
    # httpx compares the scheme as written: ``HTTPS://h:443`` keeps its port.
    port = _normalize_port(authority["port"], raw_scheme)
    path = match["path"] or ""
    has_authority = userinfo != "" or host != "" or port is not None
    _validate_path(path, has_scheme=scheme != "", has_authority=has_authority)
    if scheme or has_authority:
        path = _remove_dot_segments(path)
    query, fragment = match["query"], match["fragment"]
    return ParsedURL(
        scheme=scheme,
        userinfo=userinfo,
        raw_host=host,
        port=port,
        path=_quote(path, _PATH_SAFE),
        query=None if query is None else _quote(query, _QUERY_SAFE),
        fragment=None if fragment is None else _quote(fragment, _FRAGMENT_SAFE),
    )


def _encode_host(host: str) -> str:
    if not host:
        return ""
    if _IPV4_STYLE.match(host):
        try:
            ipaddress.IPv4Address(host)
        except ipaddress.AddressValueError:
            raise InvalidURL(f"Invalid IPv4 address: {host!r}") from None
        return host
    if _IPV6_STYLE.match(host):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ipaddress.AddressValueError:
            raise InvalidURL(f"Invalid IPv6 address: {host!r}") from None
        return host[1:-1]
    if host.isascii():
        return _quote(host.lower(), _HOST_SAFE)
    import idna  # noqa: PLC0415 - see ParsedURL.host

    try:
        return idna.encode(host.lower()).decode("ascii")
    except idna.IDNAError:
        raise InvalidURL(f"Invalid IDNA hostname: {host!r}") from None


def _normalize_port(port: str | None, scheme: str) -> int | None:
    if not port:
        return None
    try:
        number = int(port)
    except ValueError:
        raise InvalidURL(f"Invalid port: {port!r}") from None
    return None if number == _DEFAULT_PORTS.get(scheme) else number


def _validate_path(path: str, *, has_scheme: bool, has_authority: bool) -> None:
    if has_authority and path and not path.startswith("/"):
        raise InvalidURL("For absolute URLs, path must be empty or begin with '/'")
    if not has_scheme and not has_authority:
        if path.startswith("//"):
            raise InvalidURL("Relative URLs cannot have a path starting with '//'")
        if path.startswith(":"):
            raise InvalidURL("Relative URLs cannot have a path starting with ':'")


def _remove_dot_segments(path: str) -> str:
    if "." not in path:
        return path
    segments = path.split("/")
    if "." not in segments and ".." not in segments:
        return path
    output: list[str] = []
    for segment in segments:
        if segment == ".":
            continue
        if segment == "..":
            if output and output != [""]:
                output.pop()
        else:
            output.append(segment)
    return "/".join(output)


def _percent_encoded(text: str, safe: str) -> str:
    keep = _UNRESERVED + safe
    if not text.rstrip(keep):
        return text
    return "".join(
        char if char in keep else "".join(f"%{byte:02X}" for byte in char.encode("utf-8"))
        for char in text
    )


def _quote(text: str, safe: str) -> str:
    """Percent-encode ``text`` outside ``safe``, leaving existing ``%XX`` escapes alone."""
    parts: list[str] = []
    position = 0
    for match in _PERCENT_ENCODED.finditer(text):
        if match.start() != position:
            parts.append(_percent_encoded(text[position : match.start()], safe))
        parts.append(match.group(0))
        position = match.end()
    if position != len(text):
        parts.append(_percent_encoded(text[position:], safe))
    return "".join(parts)
