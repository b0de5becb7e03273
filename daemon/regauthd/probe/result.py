"""What a probe is asked and what it answers (pure): the target, the policy, the result.

A :class:`ProbeTarget` names one registry with the credential the clients would use for it; a
:class:`ProbePolicy` holds what applies to every probe; a :class:`ProbeResult` is the answer
(:class:`ProbeStatus` plus figures and one line for a person). A result never holds a secret.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from regauthd.dockerconfig.auth import Credential
from regauthd.dockerconfig.keys import HUB_REGISTRY_HOST
from regauthd.probe.rules import is_hub_registry, is_loopback
from regauthd.probe.url import parse_url

HUB_ENDPOINT = f"https://{HUB_REGISTRY_HOST}"
RATE_LIMIT_REPOSITORY = "ratelimitpreview/test"
"""Docker Hub's documented image for reading the pull rate limit without spending a pull."""
DEFAULT_TIMEOUT_S = 10.0


class ProbeStatus(enum.StrEnum):
    """The answer to "will my pull/push work?" for one registry."""

    OK = "ok"
    BAD_CREDENTIALS = "bad_credentials"
    PUSH_DENIED = "push_denied"
    NO_CREDENTIALS = "no_credentials"
    RATE_LIMITED = "rate_limited"
    UNREACHABLE = "unreachable"
    TLS_ERROR = "tls_error"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class ProbeTarget:
    """One registry to probe, with the credential the clients would use for it."""

    registry: str
    """As people and ``docker login`` name it: ``docker.io``, ``ghcr.io``, ``127.0.0.1:5000``."""
    credential: Credential | None = None
    identity_token: bool = False
    """The secret is an identity (refresh) token: use the OAuth2 refresh-token grant."""
    repository: str | None = None
    """A repository the team pushes to; push is checked only when it is set."""
    endpoint: str | None = None
    """Base URL (``https://host[:port]``) when it is not derived from ``registry``."""
    insecure: bool = False
    """Plain HTTP and unverified TLS allowed (settings, like Docker's insecure-registries)."""
    credential_key: str | None = None
    """The ``auths``/``credHelpers`` key the credential was found under (for messages)."""
    credential_error: str | None = None
    """Why the credential could not be read (a broken helper); the probe then reports error."""
    unread_keys: tuple[str, ...] = ()
    """With no credential: keys that hold one under a spelling Docker never reads."""

    @property
    def is_hub(self) -> bool:
        return is_hub_registry(self.registry)

    @property
    def host(self) -> str:
        """``host[:port]`` of the first endpoint, as the HTTP client names it (lower case,
        IPv6 in brackets, no default port)."""
        return parse_url(self.endpoints()[0]).netloc

    def endpoints(self) -> tuple[str, ...]:
        """Base URLs to try, in order (Docker's order: HTTPS, then HTTP where allowed)."""
        if self.endpoint:
            return (self.endpoint.rstrip("/"),)
        if self.is_hub:
            return (HUB_ENDPOINT,)
        hostname = parse_url(f"https://{self.registry}").host
        if self.insecure or is_loopback(hostname):
            return (f"https://{self.registry}", f"http://{self.registry}")
        return (f"https://{self.registry}",)


@dataclass(frozen=True, slots=True)
class ProbePolicy:
    """Settings that apply to every probe."""

    trusted_realm_hosts: frozenset[str] = frozenset()
    """Token realm hosts that may receive credentials although they are not the registry's."""
    timeout_s: float = 3 * DEFAULT_TIMEOUT_S
    """Deadline for one whole probe (several requests; each also has the client's timeout)."""
    rate_limit_repository: str = RATE_LIMIT_REPOSITORY


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """What one probe found. Never holds a secret."""

    registry: str
    status: ProbeStatus
    push_allowed: bool | None = None
    """True/False when a repository was named and the answer is known; None otherwise."""
    rate_limit_limit: int | None = None
    rate_limit_remaining: int | None = None
    rate_limit_window: int | None = None
    """Seconds (``w=`` of Hub's headers)."""
    latency_ms: int = 0
    detail: str = ""
    """One line for a person: what was found and, when failing, what to do."""
    retry_after_s: float | None = None
    """From a ``Retry-After`` header: do not probe again before this."""
    username: str | None = None
    repository: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is ProbeStatus.OK

    def to_dict(self) -> dict[str, Any]:
        return {
            "registry": self.registry,
            "status": self.status.value,
            "push_allowed": self.push_allowed,
            "rate_limit_limit": self.rate_limit_limit,
            "rate_limit_remaining": self.rate_limit_remaining,
            "rate_limit_window": self.rate_limit_window,
            "latency_ms": self.latency_ms,
            "detail": self.detail,
            "retry_after_s": self.retry_after_s,
            "username": self.username,
            "repository": self.repository,
        }
