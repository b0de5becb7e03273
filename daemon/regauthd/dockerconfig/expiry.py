"""When a stored credential stops working, read from the credential itself (pure).

Nothing is sent anywhere and no signature is verified: the expiry is what the token *says*, which
is what the registry will enforce for a genuine token (a forged one fails anyway). Two formats
carry one:

- **Amazon ECR** passwords (``aws ecr get-login-password``, the password of ``docker login -u
  AWS``): base64 of a JSON object ``{"payload", "datakey", "version", "type", "expiration"}``,
  ``expiration`` in epoch seconds (12 h after issue);
- **JWTs** (``header.payload.signature``, base64url) with an ``exp`` claim (epoch seconds): Azure
  ACR refresh tokens kept as ``identitytoken``, Docker OAuth access tokens, registry tokens.

Anything else (a plain password, a personal access token, a JWT without ``exp``) has no readable
expiry and is reported as such: nothing is guessed. Hostile input (huge numbers, bad base64,
deeply nested JSON, megabytes of text) gives "no readable expiry", never an exception, and no
message here ever contains the secret.

The API other parts use: :func:`read_expiry` (an ``auths`` entry, a Kubernetes
``.dockerconfigjson`` entry: the same shape), :func:`credential_expiry` (a
:class:`~regauthd.dockerconfig.auth.Credential`, as a helper answers), :func:`secret_expiry` (one
secret string), :func:`judge` and :func:`describe` (what an expiry means now).
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

from regauthd.dockerconfig.auth import Credential, decode_auth
from regauthd.dockerconfig.findings import Finding
from regauthd.dockerconfig.keys import classify, registry_name
from regauthd.dockerconfig.validate import login_command

DEFAULT_LEAD_TIME: Final = timedelta(hours=1)
"""How long before its expiry a credential counts as expiring (``[expiry] lead_time``)."""

MAX_SECRET_CHARS: Final = 16384
"""Longer secrets are not decoded (ECR passwords are ~2,000 characters, JWTs rarely 4,000)."""

# Epoch seconds accepted as an expiry: after 2000-01-01 and before 9999-12-31. A number outside
# (milliseconds, a nonsense value) is not read at all rather than guessed at.
_MIN_EPOCH: Final = 946684800
_MAX_EPOCH: Final = 253402300799

Source = Literal["ecr", "jwt exp", "none"]
SecretField = Literal["password", "identitytoken", "registrytoken"]


@dataclass(frozen=True, slots=True)
class Expiry:
    """What a credential says about its own end. ``expires_at`` None: no readable expiry."""

    expires_at: datetime | None
    """When it stops working (UTC), or None."""
    source: Source
    """How it was read: ``ecr`` (an ECR password's ``expiration``), ``jwt exp``, or ``none``."""
    field: SecretField | None
    """Which secret of the entry carried it (the one the client sends), or None."""

    @property
    def readable(self) -> bool:
        return self.expires_at is not None


NO_EXPIRY: Final = Expiry(None, "none", None)


class ExpiryState(enum.StrEnum):
    """What an expiry means at one moment, given a lead time."""

    EXPIRED = "expired"
    EXPIRING = "expiring"
    VALID = "valid"
    UNKNOWN = "no readable expiry"


def judge(expiry: Expiry, now: datetime, lead: timedelta = DEFAULT_LEAD_TIME) -> ExpiryState:
    if expiry.expires_at is None:
        return ExpiryState.UNKNOWN
    if expiry.expires_at <= now:
        return ExpiryState.EXPIRED
    if expiry.expires_at - now <= lead:
        return ExpiryState.EXPIRING
    return ExpiryState.VALID


def format_duration(delta: timedelta) -> str:
    """``2 h 10 m``, ``3 d 4 h``, ``45 s``: the two largest units, never negative."""
    seconds = max(0, int(delta.total_seconds()))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "m"), (secs, "s")]
    while len(parts) > 1 and parts[0][0] == 0:
        parts.pop(0)
    shown = [f"{parts[0][0]} {parts[0][1]}"]
    if len(parts) > 1 and parts[1][0]:
        shown.append(f"{parts[1][0]} {parts[1][1]}")
    return " ".join(shown)


def describe(expiry: Expiry, now: datetime) -> str:
    """``expires in 2 h 10 m``, ``expired 3 h ago``, or ``no readable expiry``."""
    if expiry.expires_at is None:
        return "no readable expiry"
    if expiry.expires_at <= now:
        return f"expired {format_duration(now - expiry.expires_at)} ago"
    return f"expires in {format_duration(expiry.expires_at - now)}"


def what_carried_it(expiry: Expiry) -> str:
    """Where the expiry was read, for messages (no secret)."""
    if expiry.source == "ecr":
        return "the `expiration` of its Amazon ECR password"
    if expiry.source == "jwt exp":
        return f"the `exp` claim of the JWT in its {expiry.field}"
    return "nothing"


@dataclass(frozen=True, slots=True)
class CredentialExpiry:
    """One stored credential's expiry: where it is stored, whose it is, what it says."""

    key: str
    """The ``auths`` (or ``credHelpers``) key it is stored under."""
    username: str
    expiry: Expiry
    helper: str | None = None
    """The credential helper that holds it (None: the config file itself)."""
    error: str | None = None
    """Why it could not be read (a failing helper), without the secret; ``expiry`` is then
    :data:`NO_EXPIRY`."""

    @property
    def registry(self) -> str:
        return registry_name(self.key)

    def as_dict(self, now: datetime, lead: timedelta = DEFAULT_LEAD_TIME) -> dict[str, Any]:
        """For ``--json`` output: never the secret."""
        when = self.expiry.expires_at
        return {
            "key": self.key,
            "registry": self.registry,
            "username": self.username,
            "helper": self.helper,
            "state": judge(self.expiry, now, lead).value if self.error is None else "not_read",
            "expires_at": when.isoformat().replace("+00:00", "Z") if when else None,
            "seconds_left": int((when - now).total_seconds()) if when else None,
            "source": self.expiry.source,
            "field": self.expiry.field,
            "error": self.error,
        }


def relogin_command(key: str) -> str:
    """How to get a fresh credential for the registry of ``key``."""
    info = classify(key)
    host = info.host
    labels = host.split(".")
    if len(labels) == 6 and labels[1:3] == ["dkr", "ecr"] and host.endswith(".amazonaws.com"):
        return (
            f"aws ecr get-login-password --region {labels[3]} | docker login --username AWS "
            f"--password-stdin {host}"
        )
    if host.endswith(".azurecr.io"):
        return f"az acr login --name {labels[0]}"
    return login_command(info)


def expiry_findings(
    path: str, items: list[CredentialExpiry], now: datetime, lead: timedelta = DEFAULT_LEAD_TIME
) -> tuple[Finding, ...]:
    """``credential_expired`` (error), ``credential_expiring`` (warning, within ``lead``) and
    ``expiry_not_read`` (warning: a helper failed) for the credentials of one config."""
    found: list[Finding] = []
    for item in items:
        who = f"{item.registry} (user {item.username})"
        if item.error is not None:
            found.append(
                Finding(
                    "expiry_not_read",
                    "warning",
                    path,
                    item.key,
                    f"the expiry of the credential for {who} was not read: {item.error}",
                    "make the credential helper work in this session (`regauthd doctor`)",
                )
            )
            continue
        state = judge(item.expiry, now, lead)
        if state not in {ExpiryState.EXPIRED, ExpiryState.EXPIRING}:
            continue
        expired = state is ExpiryState.EXPIRED
        when = describe(item.expiry, now)
        found.append(
            Finding(
                "credential_expired" if expired else "credential_expiring",
                "error" if expired else "warning",
                path,
                item.key,
                f"the credential for {who} {when} (read from {what_carried_it(item.expiry)})"
                + ("; pulls and pushes with it fail" if expired else ""),
                f"log in again: `{relogin_command(item.key)}`",
            )
        )
    return tuple(found)


def expiry_note(
    items: list[CredentialExpiry], now: datetime, lead: timedelta = DEFAULT_LEAD_TIME
) -> str | None:
    """One line about the credentials that need no finding: valid beyond the lead time, and
    those with no readable expiry (said once, not a warning). None when there are none."""
    valid = [
        i for i in items if i.error is None and judge(i.expiry, now, lead) is ExpiryState.VALID
    ]
    unknown = [i.key for i in items if i.error is None and not i.expiry.readable]
    parts = []
    if valid:
        first = min(valid, key=lambda i: i.expiry.expires_at or now)
        parts.append(
            f"{len(valid)} credential(s) valid for more than {format_duration(lead)} (the first "
            f"to end: {first.key}, {describe(first.expiry, now)})"
        )
    if unknown:
        more = f" and {len(unknown) - 3} more" if len(unknown) > 3 else ""
        shown = ", ".join(unknown[:3]) + more
        parts.append(
            f"{len(unknown)} with no readable expiry ({shown}: plain passwords or tokens that "
            "carry no date; nothing is guessed)"
        )
    return "expiry: " + "; ".join(parts) if parts else None


def earliest_by_registry(items: list[CredentialExpiry]) -> dict[str, datetime]:
    """The earliest readable expiry per registry name (``docker.io``, ``ghcr.io``)."""
    out: dict[str, datetime] = {}
    for item in items:
        when = item.expiry.expires_at
        if when is not None and (item.registry not in out or when < out[item.registry]):
            out[item.registry] = when
    return out


# -- reading -------------------------------------------------------------------------------------


def secret_expiry(secret: object, field: SecretField = "password") -> Expiry:
    """The expiry ``secret`` carries (an ECR password or a JWT), else :data:`NO_EXPIRY`."""
    if not isinstance(secret, str) or not secret or len(secret) > MAX_SECRET_CHARS:
        return NO_EXPIRY
    try:
        when = _ecr_expiration(secret)
        if when is not None:
            return Expiry(when, "ecr", field)
        when = _jwt_exp(secret)
        if when is not None:
            return Expiry(when, "jwt exp", field)
    except (ValueError, TypeError, RecursionError, OverflowError):
        # Defence in depth: every parser below already turns bad input into None.
        return NO_EXPIRY
    return NO_EXPIRY


def read_expiry(entry: Mapping[str, Any]) -> Expiry:
    """The expiry of the secret a client sends for one ``auths`` entry (Docker's and a
    Kubernetes ``.dockerconfigjson``'s shape), else :data:`NO_EXPIRY`.

    The secret sent is the ``registrytoken`` when there is one (docker/cli's ``AuthConfig``
    documents it as the bearer token sent to the registry), else the ``identitytoken`` (sent
    instead of the password), else the password of ``auth`` (or of ``username``/``password``).
    Only that one is read: an expiry in a secret the client does not send would be a false
    alarm.
    """
    if not isinstance(entry, Mapping):
        return NO_EXPIRY
    token_fields: tuple[SecretField, ...] = ("registrytoken", "identitytoken")
    for name in token_fields:
        value = entry.get(name)
        if isinstance(value, str) and value:
            return secret_expiry(value, name)
    auth = entry.get("auth")
    if isinstance(auth, str) and auth:
        if len(auth) > 2 * MAX_SECRET_CHARS:
            return NO_EXPIRY
        try:
            _, password = decode_auth(auth)
        except ValueError:
            return NO_EXPIRY
        return secret_expiry(password, "password")
    return secret_expiry(entry.get("password"), "password")


def credential_expiry(credential: Credential) -> Expiry:
    """The expiry of a credential a helper answered with (its ``Secret``)."""
    field: SecretField = "identitytoken" if credential.is_identity_token else "password"
    return secret_expiry(credential.secret, field)


def _b64decode(text: str, *, urlsafe: bool) -> bytes | None:
    padded = text + "=" * (-len(text) % 4)
    try:
        if urlsafe:
            if not padded.replace("-", "").replace("_", "").rstrip("=").isalnum():
                return None
            return base64.urlsafe_b64decode(padded)
        return base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        return None


def _reject_constant(name: str) -> object:
    raise ValueError("NaN and Infinity are not JSON")


def _json_object(raw: bytes | None) -> dict[str, Any] | None:
    if raw is None or not raw.lstrip().startswith(b"{"):
        return None
    try:
        value = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError):  # also: ints over Python's digit limit
        return None
    return value if isinstance(value, dict) else None


def _epoch(value: object) -> datetime | None:
    """A NumericDate (RFC 7519: seconds, may have a fraction) as a UTC datetime, or None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if not _MIN_EPOCH <= value <= _MAX_EPOCH:
        return None
    return datetime.fromtimestamp(value, UTC)


def _ecr_expiration(secret: str) -> datetime | None:
    # Cheap test first: base64 of '{"payload":' starts with "eyJwYXlsb2Fk".
    if not secret.startswith("eyJ"):
        return None
    data = _json_object(_b64decode(secret, urlsafe=False))
    if data is None or not {"payload", "datakey", "expiration"} <= data.keys():
        return None
    return _epoch(data["expiration"])


def _jwt_exp(secret: str) -> datetime | None:
    parts = secret.split(".")
    if len(parts) != 3 or not parts[0].startswith("eyJ"):  # base64url of '{"'
        return None
    header = _json_object(_b64decode(parts[0], urlsafe=True))
    if header is None or not isinstance(header.get("alg", ""), str):
        return None
    claims = _json_object(_b64decode(parts[1], urlsafe=True))
    if claims is None:
        return None
    return _epoch(claims.get("exp"))


__all__ = [
    "DEFAULT_LEAD_TIME",
    "NO_EXPIRY",
    "CredentialExpiry",
    "Expiry",
    "ExpiryState",
    "credential_expiry",
    "describe",
    "earliest_by_registry",
    "expiry_findings",
    "expiry_note",
    "format_duration",
    "judge",
    "read_expiry",
    "secret_expiry",
]
