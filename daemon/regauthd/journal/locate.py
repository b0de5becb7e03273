"""Where a failure's log line points: registry, repository, operation. Pure functions over strings.

Log lines name their target in many ways: an image reference (``pull access denied for acme/api``,
containerd's ``PullImage "ghcr.io/acme/api:1"``), a logfmt ``host=`` field, a registry API URL
(``https://ghcr.io/v2/acme/api/manifests/1``) or a token URL's ``scope=repository:acme/api:push``.
:func:`locate` reads the registry and repository from them; :func:`operation_of` reads push,
pull or login.
"""

from __future__ import annotations

import re

from regauthd.dockerconfig.keys import registry_name

_HOST = r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?(?::[0-9]+)?"
_PATH = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
_V2_URL = re.compile(
    rf"https?://(?P<host>{_HOST})/v2/(?:(?P<repo>{_PATH})/(?:manifests|blobs|tags)/)?"
)
_TOKEN_URL = re.compile(rf"https?://(?P<host>{_HOST})/[^\s\"\\]*?[?&]scope=(?P<scope>[^&\s\"\\]+)")
_REF = r"(?P<ref>[A-Za-z0-9][A-Za-z0-9._:/@-]*[A-Za-z0-9])"
_REF_CONTEXTS = (
    re.compile(rf"pull access denied for {_REF}"),
    re.compile(rf"failed to resolve reference \\?\"{_REF}\\?\""),
    re.compile(rf"PullImage \\?\"{_REF}\\?\""),
    re.compile(rf"failed to pull image \\?\"{_REF}\\?\""),
    re.compile(rf"failed to pull and unpack image \\?\"{_REF}\\?\""),
    re.compile(rf"\b(?:image|ref|reference|repository)=\\?\"?{_REF}"),
)
_LOGFMT_HOST = re.compile(rf"(?:^|\s)host=\"?(?P<host>{_HOST})\"?(?:\s|$)")
_OPERATION = re.compile(
    r"\b(?:for|with|to) (?P<op>push|pull)\b|\b(?P<pullimage>PullImage|pull access)\b"
    r"|\b(?P<login>login attempt|logging in)\b",
    re.IGNORECASE,
)


def split_reference(ref: str) -> tuple[str, str]:
    """An image reference -> (registry, repository path), following Docker's reference grammar.

    >>> split_reference("alpine:3.19")
    ('docker.io', 'library/alpine')
    >>> split_reference("ghcr.io/acme/api@sha256:abc")
    ('ghcr.io', 'acme/api')
    """
    name = ref.split("@", 1)[0]
    first, slash, rest = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        registry, path = registry_name(first), rest
    else:
        registry, path = "docker.io", name
    last_slash = path.rfind("/")
    colon = path.find(":", last_slash + 1)
    if colon != -1:
        path = path[:colon]
    if registry == "docker.io" and "/" not in path:
        path = f"library/{path}"
    return registry, path


def locate(text: str) -> tuple[str | None, str | None]:
    """(registry, repository) a log line names, each ``None`` when it names none."""
    registry: str | None = None
    repository: str | None = None
    for context in _REF_CONTEXTS:
        m = context.search(text)
        if m:
            registry, repository = split_reference(m.group("ref"))
            break
    m = _LOGFMT_HOST.search(text)
    if m:
        registry = registry_name(m.group("host"))
    if repository is None:
        v2 = _V2_URL.search(text)
        if v2:
            registry = registry or registry_name(v2.group("host"))
            repository = v2.group("repo")
    if repository is None:
        token = _TOKEN_URL.search(text)
        if token:
            from urllib.parse import unquote  # noqa: PLC0415 - rare; keeps startup short

            scope = unquote(token.group("scope"))
            parts = scope.split(":")
            if len(parts) >= 3 and parts[0] == "repository":
                repository = ":".join(parts[1:-1])
            registry = registry or registry_name(token.group("host"))
    return registry, repository


def operation_of(text: str) -> str | None:
    """``push``, ``pull`` or ``login`` when the line says which, else ``None``."""
    m = _OPERATION.search(text)
    if m is None:
        return None
    if m.group("op"):
        return m.group("op").lower()
    if m.group("pullimage"):
        return "pull"
    return "login"
