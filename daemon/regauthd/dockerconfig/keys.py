"""Registry names: which ``auths`` key means which registry, and what its canonical key is.

Pure functions over strings. The evidence for every rule is in
``shared/docs/docker-config-semantics.md`` (Docker CLI ``getAuthConfigKey`` and
``ConvertToHostname``, containers/image ``normalizeAuthFileKey``).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

HUB_CANONICAL = "https://index.docker.io/v1/"
"""The only key under which the Docker CLI, buildx and crane find Docker Hub credentials."""

HUB_PODMAN_HELPER_KEY = "docker.io"
"""The ``credHelpers`` key podman and skopeo use for Docker Hub (they never map it)."""

HUB_NAME = "docker.io"
"""How people, logs and probes name Docker Hub."""

HUB_REGISTRY_HOST = "registry-1.docker.io"
HUB_AUTH_HOST = "auth.docker.io"

_HUB_ALIAS_HOSTS = frozenset({"docker.io", "index.docker.io"})
_HUB_MIRROR_HOST = HUB_REGISTRY_HOST
_HUB_WEBSITE_HOST = "hub.docker.com"

# Paths that name the registry's API version rather than a namespace inside it.
_VERSION_PATHS = frozenset({"", "/", "/v1", "/v1/", "/v2", "/v2/"})
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


class KeyKind(enum.Enum):
    """What an ``auths`` key is, and therefore what normalization does with it."""

    HUB_CANONICAL = "hub_canonical"
    """Exactly ``https://index.docker.io/v1/``: leave it."""
    HUB_ALIAS = "hub_alias"
    """Another spelling of Docker Hub that only podman reads: rename to the canonical key."""
    HUB_REGISTRY = "hub_registry"
    """``registry-1.docker.io``: read for refs naming that host only: copy, keep the original."""
    HUB_WEBSITE = "hub_website"
    """``hub.docker.com``, the web site: no client reads it; copy and tell the user."""
    REGISTRY = "registry"
    """Another registry, already in the bare ``host[:port]`` form ``docker login`` writes."""
    REGISTRY_ALIAS = "registry_alias"
    """Another registry spelled with a scheme or API-version path: rename to ``host[:port]``."""
    NAMESPACED = "namespaced"
    """``host/namespace``: a repository-scoped credential for podman. Never collapse it."""
    INVALID = "invalid"
    """Empty, or no host: nothing sensible to do but report it."""


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """A parsed ``auths`` key."""

    key: str
    kind: KeyKind
    host: str
    """The registry host (with port) as clients compare it; Hub hosts lower-cased."""
    canonical: str
    """The key every client finds this registry's credential under (``key`` itself if none)."""

    @property
    def is_hub(self) -> bool:
        return self.kind in {
            KeyKind.HUB_CANONICAL,
            KeyKind.HUB_ALIAS,
            KeyKind.HUB_REGISTRY,
            KeyKind.HUB_WEBSITE,
        }


def _split(key: str) -> tuple[str | None, str, str]:
    """``scheme://host/path`` -> (scheme or None, host, path starting with '/' or '')."""
    rest = key
    scheme = None
    m = _SCHEME.match(rest)
    if m:
        scheme = m.group(1)
        rest = rest[m.end() :]
    host, slash, path = rest.partition("/")
    return scheme, host, slash + path


def classify(key: str) -> KeyInfo:
    """Classify one ``auths`` key.

    >>> classify("docker.io").canonical
    'https://index.docker.io/v1/'
    >>> classify("https://myreg:5000/v2/").canonical
    'myreg:5000'
    >>> classify("ghcr.io/acme").kind
    <KeyKind.NAMESPACED: 'namespaced'>
    """
    if key == HUB_CANONICAL:
        return KeyInfo(key, KeyKind.HUB_CANONICAL, "index.docker.io", HUB_CANONICAL)
    stripped = key.strip()
    scheme, host, path = _split(stripped)
    if not host:
        return KeyInfo(key, KeyKind.INVALID, "", key)
    lower_host = host.lower()
    version_path = path.lower() in _VERSION_PATHS
    if lower_host in _HUB_ALIAS_HOSTS | {_HUB_MIRROR_HOST, _HUB_WEBSITE_HOST}:
        if not version_path:
            # docker.io/acme: podman's namespace-scoped credential for the acme org on Hub.
            return KeyInfo(key, KeyKind.NAMESPACED, lower_host, key)
        if lower_host in _HUB_ALIAS_HOSTS:
            return KeyInfo(key, KeyKind.HUB_ALIAS, "index.docker.io", HUB_CANONICAL)
        kind = KeyKind.HUB_REGISTRY if lower_host == _HUB_MIRROR_HOST else KeyKind.HUB_WEBSITE
        return KeyInfo(key, kind, lower_host, HUB_CANONICAL)
    if not version_path:
        return KeyInfo(key, KeyKind.NAMESPACED, host, key)
    if scheme is None and not path and stripped == key:
        return KeyInfo(key, KeyKind.REGISTRY, host, key)
    # Host case is kept: Docker compares non-Hub hosts case-sensitively.
    return KeyInfo(key, KeyKind.REGISTRY_ALIAS, host, host)


def canonical_key(key: str) -> str:
    """The key under which every client finds the credential that ``key`` holds.

    For ``registry-1.docker.io`` and ``hub.docker.com`` this is the Hub key the credential should be
    copied to; the original key stays (see :class:`KeyKind`).
    """
    return classify(key).canonical


_HUB_NAMED_HOSTS = _HUB_ALIAS_HOSTS | {_HUB_MIRROR_HOST, "auth.docker.io", "registry.docker.io"}


def registry_name(text: str) -> str:
    """The registry a key, URL or host names, as people and logs say it (Docker Hub: docker.io).

    ``hub.docker.com`` stays itself: it is the web site, not a registry. Hub's token and API hosts
    (``auth.docker.io``, ``registry.docker.io``), which logs name and no config key uses, are Hub.

    >>> registry_name("https://index.docker.io/v1/"), registry_name("https://ghcr.io/v2/")
    ('docker.io', 'ghcr.io')
    """
    info = classify(text.strip())
    if info.host.lower() in _HUB_NAMED_HOSTS:
        return HUB_NAME
    return info.host or text.strip()


def auths_key_for_registry(registry: str) -> str:
    """The ``auths`` key Docker looks up for a registry name (``docker.io`` -> Hub's canonical)."""
    info = classify(registry)
    if info.kind in {KeyKind.HUB_CANONICAL, KeyKind.HUB_ALIAS}:
        return HUB_CANONICAL
    return info.canonical
