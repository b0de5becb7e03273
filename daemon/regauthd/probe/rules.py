"""The probe's rules (pure): where credentials may go, what a token grants, what headers say.

Each is a function of its arguments only: URLs are read as the HTTP client reads them
(:mod:`regauthd.probe.url`), the clock is passed in (:func:`parse_retry_after`'s ``now``).
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import ipaddress
import json
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from regauthd.dockerconfig.keys import HUB_AUTH_HOST, KeyKind, classify, registry_name
from regauthd.probe.url import InvalidURL, parse_url

if TYPE_CHECKING:
    from regauthd.probe.result import ProbePolicy, ProbeTarget

DEFAULT_CONCURRENCY = 8
"""How many registries are probed at the same time (``regauthd probe --concurrency``)."""


def is_hub_registry(registry: str) -> bool:
    info = classify(registry)
    return info.is_hub and info.kind is not KeyKind.HUB_WEBSITE


def is_loopback(hostname: str) -> bool:
    host = hostname.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def credentials_refusal(url: str, *, insecure: bool) -> str | None:
    """Why credentials may not travel to ``url`` because of its scheme, or None."""
    parsed = parse_url(url)
    if parsed.scheme == "https":
        return None
    if parsed.scheme == "http" and (insecure or is_loopback(parsed.host)):
        return None
    return (
        f"refusing to send credentials to {parsed.scheme}://{parsed.netloc} without "
        "TLS; use https, or mark the registry insecure in the settings if that is intended"
    )


def realm_refusal(
    realm: str,
    registry_url: str,
    *,
    is_hub: bool,
    insecure: bool,
    trusted_hosts: Iterable[str] = (),
) -> str | None:
    """Why the token realm a registry named may not receive the credential, or None.

    Allowed: the registry's own host (any port), ``auth.docker.io`` for Docker Hub, and hosts
    trusted in the settings; over TLS, or plain HTTP to loopback (or to the registry's own host
    when it is marked insecure).
    """
    try:
        url = parse_url(realm)
    except InvalidURL:
        return "the registry named a token realm that is not a URL; credentials not sent"
    if url.scheme not in {"http", "https"} or not url.host:
        return f"the registry named a token realm that is not an http(s) URL ({url.scheme}:)"
    realm_host = url.host.lower()
    registry_host = parse_url(registry_url).host.lower()
    refusal = address_refusal(realm, registry_host=registry_host)
    if refusal:
        return f"{refusal}; credentials not sent"
    trusted = {h.lower() for h in trusted_hosts}
    same_host = realm_host == registry_host
    if not (same_host or (is_hub and realm_host == HUB_AUTH_HOST) or realm_host in trusted):
        return (
            f"the registry's token service is on another host ({url.host}); credentials not "
            f"sent there. If {url.host} is the registry's real token service, trust it in the "
            "settings (trusted realm hosts)"
        )
    if url.scheme == "http" and not (is_loopback(realm_host) or (insecure and same_host)):
        return (
            f"the registry's token service {url.host} uses plain HTTP; credentials not sent. "
            "Mark the registry insecure in the settings if that is intended"
        )
    return None


def same_origin(first: str, second: str) -> bool:
    """Whether two URLs name the same scheme, host and port (a default port written or not)."""
    a, b = parse_url(first), parse_url(second)
    return (a.scheme, a.host.lower(), a.port) == (b.scheme, b.host.lower(), b.port)


# Cloud instance metadata services, by name and by address outside the link-local ranges.
_METADATA_NAMES = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "instance-data",
        "instance-data.ec2.internal",
    }
)
_METADATA_ADDRESSES = frozenset(
    {ipaddress.ip_address("100.100.100.200"), ipaddress.ip_address("fd00:ec2::254")}
)


def is_link_local_or_metadata(hostname: str) -> bool:
    """A link-local address (169.254.0.0/16, fe80::/10, IPv4 ones mapped into IPv6) or a cloud
    metadata service: places a registry's answer must never send the probe to."""
    host = hostname.strip("[]").lower().rstrip(".")
    if host in _METADATA_NAMES:
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_link_local or address in _METADATA_ADDRESSES


def address_refusal(url: str, *, registry_host: str) -> str | None:
    """Why a URL a registry named (realm, redirect, upload ``Location``) may not be contacted at
    all because of its address, or None. The registry's own host (``registry_host``, ``host`` or
    ``host:port``) is always allowed: the user chose it."""
    try:
        parsed = parse_url(url)
    except InvalidURL:
        return "the registry named a URL that is not valid; not followed"
    if parsed.scheme not in {"http", "https"}:
        return f"the registry named a URL that is not http(s) ({parsed.scheme}:); not followed"
    host = parsed.host.lower()
    own = parse_url(f"http://{registry_host}").host.lower() if registry_host else ""
    if host != own and is_link_local_or_metadata(host):
        return (
            f"the registry named a link-local or cloud metadata address ({parsed.netloc}); "
            "refused without sending anything there"
        )
    return None


def redirect_refusal(
    source: str, location: str, *, method: str, carries_secret: bool, registry_host: str = ""
) -> str | None:
    """Why a redirect may not be followed, or None.

    Never to a non-http(s) URL or a link-local/metadata address (:func:`address_refusal`). A
    request that carries credentials (a Basic header, a token, a refresh token in a form) is
    re-sent only to the same scheme, host and port, and only for GET (a POST body would go along
    with a 307/308).
    """
    src = parse_url(source)
    nxt = src.join(location)
    refusal = address_refusal(str(nxt), registry_host=registry_host or src.host)
    if refusal:
        return refusal
    if not carries_secret:
        return None
    if same_origin(str(src), str(nxt)) and method == "GET":
        return None
    return (
        f"{src.host} redirected a {method} request that carries credentials to "
        f"{nxt.scheme}://{nxt.netloc}; not followed, so the credentials were not sent there"
    )


def location_refusal(base: str, location: str) -> str | None:
    """Why an upload ``Location`` a registry answered may not be requested (to cancel the
    upload), or None: only the registry's own scheme, host and port, so credentials are never
    downgraded to ``http://`` or sent to another port, and no blind request goes elsewhere."""
    target = parse_url(base).join(location)
    if not same_origin(base, str(target)):
        return (
            f"the registry's upload location {target.scheme}://{target.netloc} is not the "
            "registry's own address; nothing sent there"
        )
    return None


def decode_claims(token: str) -> dict[str, Any] | None:
    """The claims of a JWT, decoded without verifying (only the registry must trust it)."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (binascii.Error, ValueError, RecursionError):  # the registry wrote it: anything
        return None
    return claims if isinstance(claims, dict) else None


def parse_token_answer(body: bytes) -> tuple[str | None, str | None]:
    """(token, refresh token) from a token service's JSON answer: ``token``, else
    ``access_token`` (the two names the distribution spec allows); None for what is missing or
    not a string. Any bytes at all (deep nesting, huge numbers, not JSON) give (None, None)."""
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        return None, None
    if not isinstance(value, dict):
        return None, None
    token = value.get("token") or value.get("access_token")
    refresh = value.get("refresh_token")
    return (
        token if isinstance(token, str) and token else None,
        refresh if isinstance(refresh, str) and refresh else None,
    )


def granted_actions(claims: Mapping[str, Any] | None, repository: str) -> frozenset[str] | None:
    """Actions the token's ``access`` claim grants on ``repository``; None when unreadable."""
    if claims is None:
        return None
    access = claims.get("access")
    if not isinstance(access, list):
        return None
    actions: set[str] = set()
    for item in access:
        if not isinstance(item, dict):
            continue
        if item.get("type") == "repository" and item.get("name") == repository:
            found = item.get("actions")
            if isinstance(found, list):
                actions.update(str(a) for a in found)
    return frozenset(actions)


def can_push(actions: Iterable[str]) -> bool:
    wanted = set(actions)
    return "push" in wanted or "*" in wanted


def parse_rate_limit(value: str | None) -> tuple[int, int | None] | None:
    """``100;w=21600`` -> (100, 21600); ``100`` -> (100, None); garbage -> None."""
    if not value:
        return None
    first, *params = (p.strip() for p in value.split(";"))
    try:
        amount = int(first)
    except ValueError:
        return None
    window: int | None = None
    for param in params:
        name, _, raw = param.partition("=")
        if name.strip().lower() == "w":
            try:
                window = int(raw.strip())
            except ValueError:
                window = None
    return amount, window


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """``Retry-After`` (seconds or an HTTP date) -> seconds from ``now`` (>= 0, a Unix time),
    or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


def requested_scopes(target: ProbeTarget, policy: ProbePolicy) -> list[str]:
    scopes = []
    if target.repository:
        scopes.append(f"repository:{target.repository}:pull,push")
    if target.is_hub and policy.rate_limit_repository != target.repository:
        scopes.append(f"repository:{policy.rate_limit_repository}:pull")
    return scopes


def registries_in_config(config: Mapping[str, Any]) -> list[str]:
    """Registries a config holds credentials for (``auths`` and ``credHelpers`` keys), in order.

    Hub spellings become ``docker.io``. Repository-scoped keys (``ghcr.io/acme``, podman's) are
    left out: the Docker CLI never reads them, so probing them says nothing about its pushes.
    """
    names: list[str] = []
    for section in ("auths", "credHelpers"):
        entries = config.get(section)
        if not isinstance(entries, dict):
            continue
        for key in entries:
            info = classify(str(key))
            if info.kind in {KeyKind.NAMESPACED, KeyKind.INVALID}:
                continue
            name = registry_name(str(key))
            if name not in names:
                names.append(name)
    return names


def unread_hub_keys(config: Mapping[str, Any], registry: str) -> list[str]:
    """Keys holding Docker Hub credentials that Docker never reads (``docker.io``, ...).

    Only for Docker Hub: the Docker CLI finds its credential only under the canonical key,
    so a credential stored under another spelling is there but unused; ``regauthd fix`` moves
    it. (Other registries' alias keys are found by Docker's host-name fallback.)
    """
    if registry_name(registry) != registry_name("docker.io"):
        return []
    found: list[str] = []
    for section in ("auths", "credHelpers"):
        entries = config.get(section)
        if not isinstance(entries, dict):
            continue
        for key in entries:
            kind = classify(str(key)).kind
            if kind in {KeyKind.HUB_ALIAS, KeyKind.HUB_WEBSITE} and str(key) not in found:
                found.append(str(key))
    return found


_REGISTRY_ADDRESS = re.compile(
    r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)(:[0-9]{1,5})?"
)


def registry_address_problem(registry: str) -> str | None:
    """Why ``registry`` (a config key's registry) cannot be an address to ask, or None: a host
    name, an IPv4 or bracketed IPv6 address, and an optional port. A key with spaces or other
    characters no host name has is refused before any name is looked up."""
    if _REGISTRY_ADDRESS.fullmatch(registry):
        return None
    return (
        f"{registry!r} is not a registry address (a host name or IP address and an optional "
        "port); it was not asked. Remove or fix that key (a typo?)"
    )
