"""The auth codec and the credential value type: what an ``auths`` entry holds, read as Docker does.

Pure functions over parsed config data (docker/cli ``configfile`` and ``credentials``: the
``auth`` field's base64 ``user:password``, the identity token, and which helper serves a key).
Where a secret is then read or written is :mod:`regauthd.dockerconfig.stores`.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

IDENTITY_TOKEN_USERNAME = "<token>"
"""What helpers store as the user name when the secret is an identity (refresh) token."""


@dataclass(frozen=True, slots=True)
class Credential:
    """A user name and its secret (a password, or an identity token)."""

    username: str
    secret: str = field(repr=False)
    identity_token: bool = False
    """The secret is an identity (refresh) token, not a password; Docker keeps the user name."""

    def __post_init__(self) -> None:
        if self.username == IDENTITY_TOKEN_USERNAME:
            object.__setattr__(self, "identity_token", True)

    @property
    def is_identity_token(self) -> bool:
        return self.identity_token

    def __repr__(self) -> str:
        kind = ", identity_token=True" if self.is_identity_token else ""
        return f"Credential(username={self.username!r}, secret=<redacted>{kind})"


def decode_auth(value: str) -> tuple[str, str]:
    """Split an ``auth`` value the way Docker does (base64 of ``user:password``).

    Raises :class:`ValueError` with a message fit for a person (no secret in it).
    """
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("`auth` is not valid base64") from None
    text = raw.decode("utf-8", errors="replace").rstrip("\x00")
    user, sep, password = text.partition(":")
    if not sep:
        raise ValueError("`auth` decodes to text without a ':' between user name and password")
    if not user:
        raise ValueError("`auth` has an empty user name")
    return user, password


def encode_auth(username: str, password: str) -> str:
    return base64.b64encode(f"{username}:{password}".encode()).decode("ascii")


def credential_from_entry(entry: Mapping[str, Any]) -> Credential | None:
    """The credential an ``auths`` entry holds inline, as Docker reads it, or None."""
    token = entry.get("identitytoken")
    auth = entry.get("auth")
    username = entry.get("username")
    password = entry.get("password")
    user = ""
    secret = ""
    if isinstance(auth, str) and auth:
        try:
            user, secret = decode_auth(auth)
        except ValueError:
            return None
    elif isinstance(username, str) and isinstance(password, str) and password:
        user, secret = username, password
    if isinstance(token, str) and token:
        # Docker sends the identity token instead of the password when one is present.
        return Credential(user or IDENTITY_TOKEN_USERNAME, token, identity_token=True)
    if user:
        return Credential(user, secret)
    return None


def helper_name_for(config: Mapping[str, Any], key: str) -> str | None:
    """The helper Docker uses for an ``auths`` key: ``credHelpers[key]``, else ``credsStore``."""
    helpers = config.get("credHelpers")
    if isinstance(helpers, dict):
        name = helpers.get(key)
        if isinstance(name, str) and name:
            return name
    store = config.get("credsStore")
    return store if isinstance(store, str) and store else None


def convert_to_hostname(key: str) -> str:
    """The host a key names, as docker/cli ``ConvertToHostname``: no scheme, up to the first '/'."""
    rest = key.split("://", 1)[1] if "://" in key else key
    return rest.split("/", 1)[0]
