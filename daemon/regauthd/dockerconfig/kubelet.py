"""Which pull-secret credential the kubelet uses for an image: Kubernetes' keyring rules.

Pure. These are NOT Docker's rules. They follow kubernetes/kubernetes
``pkg/credentialprovider/keyring.go`` (``BasicDockerKeyring.Add`` and ``Lookup``,
``URLsMatch``, ``isDefaultRegistryMatch``), ``config.go`` (``decodeDockerConfigFieldAuth``) and
``pkg/util/parsers.ParseImageName`` (distribution's ``ParseNormalizedNamed``, which names the
repository the kubelet looks up):

- a key loses its ``http(s)://`` scheme and a leading ``/v1/`` or ``/v2/``; what is left is
  ``host[:port][/path]``;
- a key matches an image when the port is the same, the host has as many dot-separated parts,
  each part matches as a glob (``*.example.com``), and the key's path is a prefix of the
  image's; every matching key is used, most specific first (reverse-sorted);
- with no match, a Docker Hub image uses the key ``index.docker.io`` (so a
  ``https://index.docker.io/v1/`` key works for Hub; a ``docker.io`` key matches directly);
- the kubelet reads ``auth`` (or ``username``/``password``) and nothing else: an identity
  token gives it no credential.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

DEFAULT_REGISTRY_HOST = "index.docker.io"
"""keyring.go ``defaultRegistryHost``: the key a Hub image falls back to."""

_DOCKER_DOMAIN = "docker.io"
_LEGACY_DOCKER_DOMAIN = "index.docker.io"


@dataclass(frozen=True, slots=True)
class KeyringEntry:
    """One ``auths`` key as the keyring indexes it."""

    key: str
    """The key as written in the document."""
    location: str
    """``host[:port][/path]``: scheme and a ``/v1/``/``/v2/`` prefix stripped (``Add``)."""


def keyring_location(key: str) -> str | None:
    """Where ``BasicDockerKeyring.Add`` files a key, or None when it ignores the key.

    The kubelet prefixes ``https://`` unless the key starts with ``https://`` or ``http://``
    (exactly, lower case), parses it as a URL and drops ``/v1`` or ``/v2`` from a path that
    starts with ``/v1/`` or ``/v2/``.
    """
    value = key if key.startswith(("https://", "http://")) else "https://" + key
    parsed = _parse_url(value)
    if parsed is None:
        return None
    host, path = parsed
    if path.startswith(("/v2/", "/v1/")):
        path = path[3:]
    return host + path if path and path != "/" else host


def keyring(auths: Mapping[str, Any]) -> tuple[KeyringEntry, ...]:
    """The keyring's index over the keys it accepts: most specific first (reverse-sorted)."""
    entries = []
    for key in auths:
        location = keyring_location(key)
        if location is not None:
            entries.append(KeyringEntry(key, location))
    return tuple(sorted(entries, key=lambda e: e.location, reverse=True))


def normalized_repository(image: str) -> str:
    """The repository name the kubelet looks credentials up for (``ParseImageName``).

    ``alpine`` -> ``docker.io/library/alpine``, ``index.docker.io/x/y:1`` -> ``docker.io/x/y``,
    ``localhost:5000/app@sha256:...`` -> ``localhost:5000/app``. Raises :class:`ValueError` for a
    reference the kubelet would refuse to pull at all.
    """
    name = image.strip()
    if not name:
        raise ValueError("an empty image reference")
    name = name.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        name = name[:colon]
    first, sep, rest = name.partition("/")
    if not sep or (
        not any(c in first for c in ".:") and first != "localhost" and first.lower() == first
    ):
        domain, remainder = _DOCKER_DOMAIN, name
    else:
        domain, remainder = first, rest
    if domain == _LEGACY_DOCKER_DOMAIN:
        domain = _DOCKER_DOMAIN
    if domain == _DOCKER_DOMAIN and "/" not in remainder:
        remainder = "library/" + remainder
    if not remainder or remainder != remainder.lower() or "//" in remainder:
        raise ValueError(f"{image!r} is not a valid image reference (names are lower case)")
    return f"{domain}/{remainder}"


def is_default_registry_match(repository: str) -> bool:
    """keyring.go ``isDefaultRegistryMatch``: would this repository come from Docker Hub?"""
    first, sep, _ = repository.partition("/")
    if not first:
        return False
    if not sep or first in {_DOCKER_DOMAIN, _LEGACY_DOCKER_DOMAIN}:
        return True
    return not any(c in first for c in ".:")


def urls_match(glob: str, target: str) -> bool:
    """keyring.go ``URLsMatch`` over schemeless strings (a parse or pattern error: no match)."""
    t = _parse_url("https://" + target)
    if t is None:
        return False
    parts, port = _split_host(t[0])
    return _matches(glob, parts, port, t[1])


def _matches(glob: str, t_parts: list[str], t_port: str, t_path: str) -> bool:
    g = _compiled_glob(glob)
    if g is None:
        return False
    g_parts, g_port, g_path = g
    if g_port != t_port or len(g_parts) != len(t_parts) or not t_path.startswith(g_path):
        return False
    return all(
        p is not None and p.fullmatch(q) is not None for p, q in zip(g_parts, t_parts, strict=True)
    )


@functools.lru_cache(maxsize=4096)
def _compiled_glob(glob: str) -> tuple[tuple[re.Pattern[str] | None, ...], str, str] | None:
    """A keyring location parsed once: each host part's glob, the port, the path."""
    parsed = _parse_url("https://" + glob)
    if parsed is None:
        return None
    parts, port = _split_host(parsed[0])
    return tuple(_glob_regex(p) for p in parts), port, parsed[1]


def lookup(entries: tuple[KeyringEntry, ...], image: str) -> tuple[KeyringEntry, ...]:
    """The entries the kubelet tries for ``image``, in order (``BasicDockerKeyring.Lookup``).

    Empty: the kubelet pulls without credentials. Raises :class:`ValueError` for a reference
    the kubelet cannot parse.
    """
    repository = normalized_repository(image)
    target = _parse_url("https://" + repository)
    if target is None:
        return ()
    parts, port = _split_host(target[0])
    found = tuple(e for e in entries if _matches(e.location, parts, port, target[1]))
    if found:
        return found
    if is_default_registry_match(repository):
        return tuple(e for e in entries if e.location == DEFAULT_REGISTRY_HOST)
    return ()


def decode_auth(value: str) -> tuple[str, str]:
    """config.go ``decodeDockerConfigFieldAuth``: padded standard base64, else unpadded.

    An empty user name is accepted (unlike Docker). Raises :class:`ValueError`.
    """
    try:
        if value.strip().endswith("="):
            raw = base64.b64decode(value, validate=True)
        else:
            raw = base64.b64decode(value + "=" * (-len(value) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("`auth` is not valid base64") from None
    text = raw.decode("utf-8", errors="replace")
    user, sep, password = text.partition(":")
    if not sep:
        raise ValueError("`auth` decodes to text without a ':' between user name and password")
    return user, password


def auth_decoded_twice(value: str) -> str | None:
    """The ``auth`` value encoded once, when ``value`` is ``user:password`` base64-encoded twice."""
    try:
        once = base64.b64decode(value, validate=True).decode("ascii").strip()
        decode_auth(once)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None
    return once


@dataclass(frozen=True, slots=True)
class ImagePick:
    """Which keys the kubelet would try for an image, in order (empty: none)."""

    image: str
    repository: str | None
    keys: tuple[str, ...]
    problem: str | None = None


def picks(
    entries: Mapping[str, Any] | None, images: Sequence[str], *, skipped: bool = False
) -> tuple[ImagePick, ...]:
    """Which keys of ``entries`` the kubelet uses for each image (only those holding a
    credential); ``entries`` None: the keyring fails as a whole;
    ``skipped``: the kubelet reads no credential from the Secret as it is."""
    out = []
    ring = keyring(entries) if entries is not None else ()
    for image in images:
        try:
            repository = normalized_repository(image)
        except ValueError as exc:
            out.append(ImagePick(image, None, (), f"the kubelet refuses the image: {exc}"))
            continue
        if entries is None:
            out.append(
                ImagePick(image, repository, (), "the kubelet cannot read this Secret at all")
            )
            continue
        if skipped:
            why = (
                "as it is, the Secret gives the kubelet no credential: it pulls "
                f"{image} anonymously"
            )
            out.append(ImagePick(image, repository, (), why))
            continue
        keys = tuple(e.key for e in lookup(ring, image))
        usable = tuple(k for k in keys if _has_credential(entries.get(k)))
        problem = None
        if keys and not usable:
            problem = (
                f"the kubelet picks {', '.join(map(repr, keys))} for {repository}, but no "
                "credential is in it"
            )
        out.append(ImagePick(image, repository, usable, problem))
    return tuple(out)


def _has_credential(entry: Any) -> bool:
    if not isinstance(entry, dict):
        return False
    auth = entry.get("auth")
    if isinstance(auth, str) and auth:
        try:
            decode_auth(auth)
        except ValueError:
            return False
        return True
    return bool(entry.get("username") or entry.get("password"))


def _parse_url(value: str) -> tuple[str, str] | None:
    """(host with port, path) as Go's ``url.Parse`` gives them, or None when it fails.

    Written out rather than ``urllib.parse``: Go keeps ``[``/``]`` in a host (so
    ``reg-[0-9].example.com`` is a glob), where Python reads them as an IPv6 literal.
    """
    _, sep, rest = value.partition("://")
    if not sep:
        return None
    end = len(rest)
    for mark in "/?#":
        i = rest.find(mark)
        if i != -1:
            end = min(end, i)
    authority, tail = rest[:end], rest[end:]
    host = authority.rpartition("@")[2]
    path = tail
    for mark in "?#":
        path = path.split(mark, 1)[0]
    if any(ord(c) < 0x21 or c in '%"<>\\^`{|}' for c in host):
        return None
    colon = host.rfind(":")
    if colon > host.rfind("]") and not host[colon + 1 :].isdigit() and host[colon + 1 :]:
        return None  # validOptionalPort: "invalid port"
    return host, path


def _split_host(netloc: str) -> tuple[list[str], str]:
    """``SplitURL``: the host's dot-separated parts and the port (``net.SplitHostPort``)."""
    host, port = netloc, ""
    if netloc.startswith("["):
        end = netloc.find("]")
        if end != -1 and netloc[end + 1 : end + 2] == ":":
            host, port = netloc[1:end], netloc[end + 2 :]
    elif netloc.count(":") == 1:
        host, port = netloc.split(":", 1)
    return host.split("."), port


def _glob_regex(pattern: str) -> re.Pattern[str] | None:
    """Go's ``filepath.Match`` for one host part: ``*``, ``?``, ``[...]`` (``^`` negates);
    None for a bad pattern (``ErrBadPattern``: no match)."""
    out = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        elif c == "[":
            end = pattern.find("]", i + 1)
            if end == -1:
                return None  # ErrBadPattern: Lookup treats it as no match
            body = pattern[i + 1 : end]
            negate = body.startswith("^")
            body = body[1:] if negate else body
            if not body:
                return None
            out.append("[" + ("^" if negate else "") + body.replace("\\", "\\\\") + "]")
            i = end
        else:
            out.append(re.escape(c))
        i += 1
    try:
        return re.compile("".join(out))
    except re.error:
        return None
