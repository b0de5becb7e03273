"""containers' auth.json (podman, skopeo, buildah): its key rules, its problems, and how it and
the Docker config disagree. Pure, like :mod:`~regauthd.dockerconfig.normalize`.

containers/image (``pkg/docker/config/config.go``: ``findCredentialsInFile``,
``normalizeAuthFileKey``) looks a registry up under the exact key first (``docker.io`` for
Docker Hub, ``host[:port]``, ``host/namespace``), then under any key that becomes that host
once a lower-case ``http://``/``https://`` and what follows the host are cut off
(``registry-1.docker.io``, ``index.docker.io`` and ``docker.io`` all mean Hub). So in an
auth.json ``docker.io`` IS the canonical Hub key: Docker's rule (rename it to
``https://index.docker.io/v1/``) must not be applied here. Only ``auth`` is read
(``username``/``password`` never); an ``auth`` that is not base64 fails the lookup, one
without a colon is skipped. Each rule is checked against the real
skopeo and podman in ``tests/integration/test_authfile_clients.py``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from regauthd.dockerconfig.auth import Credential, convert_to_hostname, decode_auth, helper_name_for
from regauthd.dockerconfig.findings import Finding, Severity
from regauthd.dockerconfig.keys import HUB_CANONICAL, HUB_NAME, KeyKind, classify
from regauthd.dockerconfig.normalize import Change, Conflict, NormalizationPlan

_HUB_KINDS = {KeyKind.HUB_CANONICAL, KeyKind.HUB_ALIAS}
_HUB_HOSTS = {"docker.io", "index.docker.io", "registry-1.docker.io"}


def containers_key(key: str) -> str:
    """The key ``podman login`` writes for the registry ``key`` names (``key`` when it is one).

    >>> containers_key("https://index.docker.io/v1/"), containers_key("https://ghcr.io/v2/")
    ('docker.io', 'ghcr.io')
    >>> containers_key("docker.io"), containers_key("quay.io/acme")
    ('docker.io', 'quay.io/acme')
    """
    info = classify(key)
    if info.kind in _HUB_KINDS:
        return HUB_NAME
    if info.kind == KeyKind.REGISTRY_ALIAS:
        return info.canonical
    return key


def registry_of(key: str) -> str | None:
    """The registry containers/image finds ``key`` for (``normalizeAuthFileKey``), or None
    for a namespace-scoped key (``quay.io/acme``, found only for that namespace)."""
    stripped = key.removeprefix("http://").removeprefix("https://")
    if stripped != key:
        stripped = stripped.split("/", 1)[0]
    elif "/" in stripped:
        return None
    return HUB_NAME if stripped in _HUB_HOSTS else stripped


def lookup(config: Mapping[str, Any], registry: str) -> tuple[str, Mapping[str, Any]] | None:
    """(key, entry) podman uses for ``registry``: the exact key, else the first other key
    that names it (Go's map order makes "first" random when several do; the plan removes them)."""
    auths = config.get("auths")
    if not isinstance(auths, dict):
        return None
    entry = auths.get(registry)
    if isinstance(entry, dict):
        return registry, entry
    for key, value in auths.items():
        if isinstance(value, dict) and registry_of(key) == registry:
            return key, value
    return None


def _secret_identity(entry: Mapping[str, Any]) -> tuple[Any, ...]:
    return tuple(entry.get(f) for f in ("auth", "identitytoken") if entry.get(f))


def plan(
    config: Mapping[str, Any], *, path: str = "auth.json", prefer: Collection[str] = ()
) -> NormalizationPlan:
    """Normalize a parsed auth.json by containers' rules: every key as ``podman login`` writes it.

    Spellings podman never finds (``hub.docker.com``, ``ghcr.io/v2/``, an upper-case scheme,
    padded keys) move to the found key; spellings it finds through its fallback loop move too, so
    that ``podman logout`` removes them. When two spellings hold different credentials, the one
    podman uses today (the exact key) wins, unless the caller names the newest (``prefer``).
    """
    new: dict[str, Any] = {k: v for k, v in config.items()}
    changes: list[Change] = []
    conflicts: list[Conflict] = []
    auths = config.get("auths")
    if isinstance(auths, dict):
        new["auths"] = _normalize(auths, prefer, changes, conflicts)
    return NormalizationPlan(new, tuple(changes), tuple(conflicts), validate(new, path=path), ())


def _reason(old: str, new: str) -> str:
    found = registry_of(old) == registry_of(new) and registry_of(old) is not None
    if found:
        return (
            f"podman and skopeo find it only through their fallback loop; `podman login` "
            f"writes {new!r} (and `podman logout` removes only that)"
        )
    return f"podman and skopeo never look under {old!r}; they look under {new!r}"


def _normalize(
    auths: Mapping[str, Any],
    prefer: Collection[str],
    changes: list[Change],
    conflicts: list[Conflict],
) -> dict[str, Any]:
    groups: dict[str, list[str]] = {}
    for key in auths:
        kind = classify(key).kind
        target = HUB_NAME if kind == KeyKind.HUB_WEBSITE else containers_key(key)
        groups.setdefault(target, []).append(key)
    out: dict[str, Any] = {}
    for target, members in groups.items():
        website = [m for m in members if classify(m).kind == KeyKind.HUB_WEBSITE]
        movable = [m for m in members if m not in website]
        with_secret = [
            m for m in movable if isinstance(auths[m], dict) and _secret_identity(auths[m])
        ]
        if website and not with_secret:
            # hub.docker.com: no client reads it; copy its credential to Hub's key, keep it.
            for m in website:
                out[m] = auths[m]
            source = website[0]
            if isinstance(auths[source], dict) and _secret_identity(auths[source]):
                out[target] = auths[source]
                changes.append(
                    Change("copy", "auths", source, target, note=_reason(source, target))
                )
            continue
        for m in website:
            out[m] = auths[m]
        if len(movable) == 1 and movable[0] == target:
            out[target] = auths[target]
            continue
        winner = _winner(target, movable, with_secret, prefer)
        out[target] = auths[winner]
        for m in movable:
            if m == winner:
                if m != target:
                    changes.append(Change("rename", "auths", m, target, note=_reason(m, target)))
                continue
            entry = auths[m]
            if not isinstance(entry, dict) or not _secret_identity(entry):
                changes.append(Change("drop_empty", "auths", m, target))
            elif _secret_identity(entry) == _secret_identity(auths[winner]):
                changes.append(Change("drop_duplicate", "auths", m, target))
            else:
                why = (
                    "it held the newest credential for the registry"
                    if winner in prefer
                    else "it is the credential podman and skopeo use today"
                )
                conflicts.append(Conflict(target, winner, m, why))
    return out


def _winner(
    target: str, members: list[str], with_secret: list[str], prefer: Collection[str]
) -> str:
    for m in with_secret:
        if m in prefer:
            return m
    if target in with_secret:
        return target
    if with_secret:
        return with_secret[0]
    return target if target in members else members[0]


def validate(config: Mapping[str, Any], *, path: str = "auth.json") -> tuple[Finding, ...]:
    """What podman and skopeo cannot use in an auth.json, that no renaming fixes."""
    found: list[Finding] = []

    def add(code: str, severity: Severity, key: str | None, message: str, fix: str) -> None:
        found.append(Finding(code, severity, path, key, message, fix))

    auths = config.get("auths", {})
    if not isinstance(auths, dict):
        add(
            "wrong_type",
            "error",
            None,
            "`auths` is not a JSON object; podman and skopeo cannot read the file.",
            "remove the file and `podman login` again",
        )
        return tuple(found)
    for key, entry in auths.items():
        website = classify(key).kind == KeyKind.HUB_WEBSITE
        login = f"podman login {HUB_NAME if website else containers_key(key)}"
        if not isinstance(entry, dict) or any(
            f in entry and not isinstance(entry[f], str) for f in ("auth", "identitytoken")
        ):
            add(
                "wrong_type",
                "error",
                key,
                "the entry is not an object of strings; podman and skopeo cannot read the file.",
                f"remove the entry, then `{login}`",
            )
            continue
        auth = entry.get("auth") or ""
        if auth:
            try:
                decode_auth(auth)
            except ValueError as exc:
                fails = "base64" in str(exc)
                add(
                    "auth_not_base64" if fails else "auth_no_colon",
                    "error",
                    key,
                    f"{exc}; podman and skopeo "
                    + ("fail for this registry." if fails else "skip it: no credential."),
                    f"remove the entry, then `{login}`",
                )
        elif entry.get("password"):
            add(
                "plaintext_password",
                "error",
                key,
                "podman and skopeo read only `auth`, never `username`/`password`: they have no "
                "credential here.",
                f"`{login}` to store it as `auth`",
            )
        elif not entry.get("identitytoken") and helper_name_for(config, key) is None:
            add(
                "empty_placeholder",
                "error",
                key,
                "the entry is empty: podman and skopeo find no credential for this registry, "
                "and an empty exact key hides every other spelling of it.",
                f"`{login}`, or remove the empty entry",
            )
        if classify(key).kind == KeyKind.HUB_WEBSITE:
            add(
                "hub_website_key",
                "warning",
                key,
                "hub.docker.com is Docker Hub's web site; podman and skopeo never read it "
                "(regauthd copies the credential to 'docker.io').",
                "`podman login docker.io`",
            )
    return tuple(found)


@dataclass(frozen=True, slots=True)
class _Seen:
    key: str
    credential: Credential | None
    helper: str | None


def _docker_view(config: Mapping[str, Any], registry: str) -> _Seen | None:
    """What the Docker CLI uses for ``registry`` (exact key, then its legacy hostname loop)."""
    auths = config.get("auths")
    if not isinstance(auths, dict):
        return None
    wanted = HUB_CANONICAL if registry == HUB_NAME else registry
    keys = [wanted] if wanted in auths else []
    if not keys and registry != HUB_NAME:
        keys = [k for k in auths if convert_to_hostname(k) == registry]
    for key in keys:
        entry = auths[key]
        if isinstance(entry, dict):
            return _Seen(key, _credential(entry), helper_name_for(config, key))
    return None


def _credential(entry: Mapping[str, Any]) -> Credential | None:
    auth = entry.get("auth")
    if not isinstance(auth, str) or not auth:
        return None
    try:
        user, secret = decode_auth(auth)
    except ValueError:
        return None
    return Credential(user, secret)


def registries_in(config: Mapping[str, Any]) -> list[str]:
    """The registries an auth.json holds an entry for (namespace-scoped keys left out)."""
    auths = config.get("auths")
    if not isinstance(auths, dict):
        return []
    return list(dict.fromkeys(r for r in (registry_of(k) for k in auths) if r is not None))


def disagreement_findings(
    docker_path: str,
    docker_config: Mapping[str, Any],
    auth_path: str,
    auth_config: Mapping[str, Any],
    *,
    registries: Collection[str] | None = None,
) -> tuple[Finding, ...]:
    """Registries for which podman (this auth.json) and Docker (this config) use different
    credentials: podman and skopeo read the auth.json first; the Docker CLI never reads it.
    ``registries``: only these (the ones for which this is the first auth file podman reads)."""
    found = []
    for registry in registries_in(auth_config):
        if registries is not None and registry not in registries:
            continue
        podman = lookup(auth_config, registry)
        docker = _docker_view(docker_config, registry)
        if podman is None or docker is None or docker.helper is not None:
            continue  # a helper-held secret is not read here: nothing to compare without it
        theirs = _credential(podman[1])
        ours = docker.credential
        if theirs is None or ours is None or theirs == ours:
            continue
        docker_login = "docker login" if registry == HUB_NAME else f"docker login {registry}"
        same_user = theirs.username == ours.username
        users = (
            f"same user {ours.username!r}, different password"
            if same_user
            else f"user {theirs.username!r} there, {ours.username!r} here"
        )
        found.append(
            Finding(
                "clients_disagree",
                "warning",
                docker_path,
                docker.key,
                f"podman and skopeo use the credential for {registry} in {auth_path} "
                f"(key {podman[0]!r}), the Docker CLI the one here: they differ ({users}), "
                "so one client may pull or push while the other is refused.",
                f"log in again with both clients (`{docker_login}`, then "
                f"`podman login {registry}`), or log out of the stale one",
            )
        )
    return tuple(found)


@dataclass(frozen=True, slots=True)
class AuthFileLocation:
    """One auth file podman and skopeo may read, and whether they read it before the Docker
    config (only then can it hold a credential they use instead of Docker's)."""

    path: str
    before_docker_config: bool
    read: bool = True
    """False: written by ``podman login`` but not read in this environment."""


def podman_auth_files(env: Mapping[str, str], uid: int, home: str) -> list[AuthFileLocation]:
    """The containers auth files of this environment, in the order podman and skopeo read them.

    ``$REGISTRY_AUTH_FILE`` if set; else, if ``$DOCKER_CONFIG`` is set, THE DOCKER CONFIG comes
    first (containers/common ``GetDefaultAuthFile``) and ``$XDG_RUNTIME_DIR/containers/auth.json``
    is not read at all; else ``$XDG_RUNTIME_DIR/containers/auth.json`` (without the variable,
    ``/run/containers/UID/auth.json``). Then ``$XDG_CONFIG_HOME/containers/auth.json`` (else
    ``~/.config/containers/auth.json``), then the Docker config.
    """
    runtime_dir = env.get("XDG_RUNTIME_DIR", "")
    runtime = (
        f"{runtime_dir}/containers/auth.json" if runtime_dir else f"/run/containers/{uid}/auth.json"
    )
    config_home = env.get("XDG_CONFIG_HOME", "")
    base = config_home if config_home.startswith("/") else f"{home}/.config"
    xdg = f"{base}/containers/auth.json"
    explicit = env.get("REGISTRY_AUTH_FILE", "")
    if explicit:
        found = [AuthFileLocation(explicit, True), AuthFileLocation(xdg, True)]
        found.append(AuthFileLocation(runtime, False, read=False))
    elif env.get("DOCKER_CONFIG", ""):
        found = [AuthFileLocation(xdg, False), AuthFileLocation(runtime, False, read=False)]
    else:
        found = [AuthFileLocation(runtime, True), AuthFileLocation(xdg, True)]
    unique: dict[str, AuthFileLocation] = {}
    for loc in found:
        unique.setdefault(loc.path, loc)
    return list(unique.values())
