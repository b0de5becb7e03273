"""Registry mirrors as the engines configure them, and what an anonymous pull from one means.

Pure: text in, values out. dockerd reads ``registry-mirrors`` and ``insecure-registries`` from
``/etc/docker/daemon.json``; containerd reads ``/etc/containerd/certs.d/<registry>/hosts.toml``
(``server``, and ``[host."URL"]`` tables with ``capabilities`` and ``skip_verify``). dockerd
tries a mirror ANONYMOUSLY: it never uses a login stored for the mirror's host (moby#30880,
open since 2017), so a mirror that wants a login silently turns every pull into a direct Docker
Hub pull (and its rate limit).
"""

from __future__ import annotations

import enum
import json
import tomllib
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from regauthd.dockerconfig.findings import Finding

MIRROR_TEST_REPOSITORY = "library/alpine"
"""What an anonymous pull through a Hub mirror is tried with (a token for its pull scope)."""

Engine = Literal["dockerd", "containerd"]


class MirrorConfigError(Exception):
    """The engine's own file cannot be read: the message says where, never the content."""


@dataclass(frozen=True, slots=True)
class Mirror:
    """One mirror an engine pulls through."""

    url: str
    """``scheme://host[:port][/path]`` as configured."""
    source: str
    """The file that names it."""
    engine: Engine
    insecure: bool = False
    """TLS without verification (``insecure-registries``, ``skip_verify``)."""
    mirrors: str = "docker.io"
    """The registry it stands in for (containerd: the ``certs.d`` directory's name)."""

    @property
    def host(self) -> str:
        return urlsplit(self.url).netloc


class Outcome(enum.Enum):
    """What an anonymous pull through the mirror met."""

    OPEN = "open"
    """``/v2/`` answered 200 without credentials."""
    ANONYMOUS_TOKEN = "anonymous_token"
    """A token without credentials, and the manifest request was not refused."""
    TOKEN_REFUSED = "token_refused"
    """The token service refused an anonymous token, or the token did not allow the pull."""
    BASIC_REQUIRED = "basic_required"
    """``/v2/`` demands HTTP Basic credentials."""
    UNREACHABLE = "unreachable"
    """No answer (refused, timed out, TLS failure)."""
    NOT_A_REGISTRY = "not_a_registry"
    """An answer, but not a registry's (no ``/v2/``, an unknown challenge)."""


def _host_of(entry: str) -> str:
    return urlsplit(entry if "://" in entry else f"//{entry}").netloc


def mirrors_from_daemon_json(text: str, path: str) -> list[Mirror]:
    """``registry-mirrors`` of a daemon.json (insecure when the host is in
    ``insecure-registries``). Raises :class:`MirrorConfigError` (dockerd would not start)."""
    try:
        data = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError as exc:
        raise MirrorConfigError(
            f"{path}: line {exc.lineno} column {exc.colno}: invalid JSON ({exc.msg}); dockerd "
            "refuses to start with it"
        ) from None
    if not isinstance(data, dict):
        raise MirrorConfigError(f"{path}: the top level is not a JSON object")
    mirrors = data.get("registry-mirrors", [])
    insecure = data.get("insecure-registries", [])
    if not isinstance(mirrors, list) or not all(isinstance(m, str) for m in mirrors):
        raise MirrorConfigError(f"{path}: `registry-mirrors` is not a list of URLs")
    if not isinstance(insecure, list) or not all(isinstance(i, str) for i in insecure):
        raise MirrorConfigError(f"{path}: `insecure-registries` is not a list of hosts")
    insecure_hosts = {_host_of(i) for i in insecure}
    return [
        Mirror(m.rstrip("/"), path, "dockerd", insecure=_host_of(m) in insecure_hosts)
        for m in mirrors
    ]


def mirrors_from_hosts_toml(text: str, path: str, registry: str) -> list[Mirror]:
    """The pull mirrors of one containerd ``hosts.toml`` (``registry``: its directory's name).

    Raises :class:`MirrorConfigError`.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise MirrorConfigError(f"{path}: not valid TOML ({exc}); containerd ignores it") from None
    hosts = data.get("host", {})
    if not isinstance(hosts, dict):
        raise MirrorConfigError(f"{path}: `host` is not a table of URLs")
    out = []
    for url, table in hosts.items():
        if not isinstance(table, dict):
            continue
        capabilities = table.get("capabilities", ["pull", "resolve", "push"])
        if isinstance(capabilities, list) and "pull" not in capabilities:
            continue
        out.append(
            Mirror(
                url.rstrip("/"),
                path,
                "containerd",
                insecure=table.get("skip_verify") is True,
                mirrors=registry,
            )
        )
    return out


def finding(mirror: Mirror, outcome: Outcome, detail: str) -> Finding | None:
    """The warning an outcome deserves (None: anonymous pulls work through this mirror)."""
    if outcome in {Outcome.OPEN, Outcome.ANONYMOUS_TOKEN}:
        return None
    then = (
        "dockerd never uses a login stored for a mirror (moby#30880): it skips the mirror "
        "and pulls from Docker Hub directly, under Hub's rate limit"
        if mirror.engine == "dockerd"
        else f"containerd goes on to the next host, and at last to {mirror.mirrors} itself"
    )
    if outcome == Outcome.UNREACHABLE:
        return Finding(
            "mirror_unreachable",
            "warning",
            mirror.source,
            mirror.url,
            f"the mirror does not answer ({detail}); {then}.",
            "fix the mirror or its address, or remove it from the list",
        )
    if outcome == Outcome.NOT_A_REGISTRY:
        return Finding(
            "mirror_not_a_registry",
            "warning",
            mirror.source,
            mirror.url,
            f"the mirror does not answer as a registry ({detail}); {then}.",
            "point the entry at the registry's base URL (https://host[:port])",
        )
    how = (
        "demands HTTP Basic credentials"
        if outcome == Outcome.BASIC_REQUIRED
        else f"refuses an anonymous pull of {MIRROR_TEST_REPOSITORY}"
    )
    return Finding(
        "mirror_refuses_anonymous",
        "warning",
        mirror.source,
        mirror.url,
        f"the mirror {how} ({detail}); {then}.",
        "let the mirror serve anonymous pulls (a pull-through cache holds its own upstream "
        "login), or remove it from the list",
    )
