"""Ask a registry whether the stored credential works, may push, and how many pulls are left.

One probe per registry (:func:`probe`), many at once with a bound (:func:`probe_many`), all over
one shared ``httpx.AsyncClient`` made by :func:`make_client`:

1. ``GET /v2/`` without credentials; read the challenge(s) (:mod:`regauthd.probe.challenge`).
2. ``Bearer``: ask the realm for a token for ``repository:<repo>:pull,push`` with the credential
   (HTTP Basic; an identity token goes in an OAuth2 ``grant_type=refresh_token`` POST), check the
   registry accepts it, and read the granted actions from the token's ``access`` claim (decoded,
   not verified: only the registry needs to trust it). ``Basic``: check the credential against
   ``/v2/``; push is tried by opening a blob upload and cancelling it.
3. Docker Hub: ``HEAD /v2/ratelimitpreview/test/manifests/latest`` for ``ratelimit-*`` headers.
   A 429 anywhere means ``rate_limited``.

Safety, enforced here and not left to callers: credentials go only over TLS with verification,
except to loopback hosts or registries marked insecure; only to the registry's own host, to a
token realm on that host, to Hub's ``auth.docker.io`` for Hub, or to hosts the settings trust;
redirects are followed only without credentials or within the same host; every request has a
timeout and the whole probe a deadline. No secret (password, identity token, access token) is in
a :class:`ProbeResult`, a log event or an exception message leaving this module.

The functions at the top (challenge rules, token claims, rate-limit headers, back-off) are pure.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import dataclasses
import email.utils
import enum
import ipaddress
import json
import random
import ssl
import time
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import structlog

from regauthd import __version__
from regauthd.dockerconfig.auth import Credential, encode_auth
from regauthd.dockerconfig.keys import (
    HUB_AUTH_HOST,
    HUB_REGISTRY_HOST,
    KeyKind,
    classify,
    registry_name,
)
from regauthd.dockerconfig.stores import CredentialError, resolve
from regauthd.probe.challenge import Challenge, find, parse_challenges

log = structlog.get_logger("regauthd.probe")

HUB_ENDPOINT = f"https://{HUB_REGISTRY_HOST}"
RATE_LIMIT_REPOSITORY = "ratelimitpreview/test"
"""Docker Hub's documented image for reading the pull rate limit without spending a pull."""
DEFAULT_TIMEOUT_S = 10.0
DEFAULT_CONCURRENCY = 8
_MAX_REDIRECTS = 5
_CLIENT_ID = "regauthd"


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

    @property
    def is_hub(self) -> bool:
        return is_hub_registry(self.registry)

    @property
    def host(self) -> str:
        return httpx.URL(self.endpoints()[0]).netloc.decode("ascii")

    def endpoints(self) -> tuple[str, ...]:
        """Base URLs to try, in order (Docker's order: HTTPS, then HTTP where allowed)."""
        if self.endpoint:
            return (self.endpoint.rstrip("/"),)
        if self.is_hub:
            return (HUB_ENDPOINT,)
        hostname = httpx.URL(f"https://{self.registry}").host
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


# ---------------------------------------------------------------------------------------------
# Pure rules


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
    parsed = httpx.URL(url)
    if parsed.scheme == "https":
        return None
    if parsed.scheme == "http" and (insecure or is_loopback(parsed.host)):
        return None
    return (
        f"refusing to send credentials to {parsed.scheme}://{parsed.netloc.decode()} without "
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
        url = httpx.URL(realm)
    except httpx.InvalidURL:
        return "the registry named a token realm that is not a URL; credentials not sent"
    if url.scheme not in {"http", "https"} or not url.host:
        return f"the registry named a token realm that is not an http(s) URL ({url.scheme}:)"
    realm_host = url.host.lower()
    registry_host = httpx.URL(registry_url).host.lower()
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


def redirect_refusal(
    source: str | httpx.URL, location: str, *, method: str, carries_secret: bool
) -> str | None:
    """Why a redirect may not be followed, or None.

    A request that carries credentials (a Basic header, a token, a refresh token in a form) is
    re-sent only to the same host over the same scheme, and only for GET (a POST body would go
    along with a 307/308).
    """
    if not carries_secret:
        return None
    src = httpx.URL(source)
    nxt = src.join(location)
    if nxt.host.lower() == src.host.lower() and nxt.scheme == src.scheme and method == "GET":
        return None
    return (
        f"{src.host} redirected a {method} request that carries credentials to "
        f"{nxt.scheme}://{nxt.host}; not followed, so the credentials were not sent there"
    )


def decode_claims(token: str) -> dict[str, Any] | None:
    """The claims of a JWT, decoded without verifying (only the registry must trust it)."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (binascii.Error, ValueError):
        return None
    return claims if isinstance(claims, dict) else None


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


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """``Retry-After`` (seconds or an HTTP date) -> seconds from now (>= 0), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    reference = time.time() if now is None else now
    return max(0.0, when.timestamp() - reference)


def next_delay(
    interval_s: float,
    consecutive_failures: int = 0,
    *,
    jitter_s: float = 0.0,
    retry_after_s: float | None = None,
    max_backoff_s: float = 6 * 3600,
    rand: float | None = None,
) -> float:
    """Seconds until the next probe of one registry.

    Healthy: ``interval_s`` plus up to ``jitter_s`` at random, so fleets do not probe in step.
    Failing: the interval doubles per consecutive failure, up to ``max_backoff_s`` (never below
    the interval): a wrong password retried at full speed can get an account locked. A
    ``Retry-After`` is a floor. ``rand`` in [0, 1) makes the result deterministic (tests); None
    draws one.
    """
    if interval_s <= 0:
        raise ValueError("interval_s must be positive")
    if jitter_s < 0:
        raise ValueError("jitter_s must not be negative")
    failures = max(0, consecutive_failures)
    # 2**20 intervals is far past any sane cap; bounding the shift keeps the number small.
    base = interval_s * (1 << min(failures, 20))
    base = max(interval_s, min(base, max_backoff_s))
    r: float = random.random() if rand is None else rand  # noqa: S311 - jitter, not a secret
    delay = base + jitter_s * r
    if retry_after_s is not None:
        delay = max(delay, retry_after_s)
    return delay


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret (longest first) replaced by ``<redacted>``."""
    for secret in sorted({s for s in secrets if s and len(s) >= 3}, key=len, reverse=True):
        text = text.replace(secret, "<redacted>")
    return text


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


# ---------------------------------------------------------------------------------------------
# Where the credential comes from (runs credential helpers: call it off the event loop)


def target_for(
    config: dict[str, Any],
    registry: str,
    *,
    repository: str | None = None,
    insecure: bool = False,
    endpoint: str | None = None,
    env: Mapping[str, str] | None = None,
) -> ProbeTarget:
    """The probe target for ``registry`` with the credential Docker would use from ``config``.

    Runs a credential helper when the config names one (blocking: from async code use
    ``asyncio.to_thread``). A failing helper gives a target carrying ``credential_error``.
    """
    name = registry_name(registry)
    base = ProbeTarget(registry=name, repository=repository, insecure=insecure, endpoint=endpoint)
    try:
        found = resolve(config, name, env=env)
    except CredentialError as exc:
        return dataclasses.replace(base, credential_error=str(exc))
    if found is None:
        return base
    key, credential = found
    return dataclasses.replace(
        base, credential=credential, identity_token=credential.is_identity_token, credential_key=key
    )


def targets_from_config(
    config: dict[str, Any],
    *,
    registries: Sequence[str] | None = None,
    repositories: Mapping[str, str] | None = None,
    default_repository: str | None = None,
    insecure: Iterable[str] = (),
    endpoints: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
) -> list[ProbeTarget]:
    """Targets for ``registries`` (default: every registry with credentials in ``config``).

    ``repositories`` maps a registry name to the repository to check push on;
    ``default_repository`` applies to the others. Blocking (credential helpers).
    """
    names = [registry_name(r) for r in registries] if registries else registries_in_config(config)
    insecure_names = {registry_name(r) for r in insecure}
    repos = {registry_name(k): v for k, v in (repositories or {}).items()}
    ends = {registry_name(k): v for k, v in (endpoints or {}).items()}
    seen: list[str] = []
    for name in names:
        if name not in seen:
            seen.append(name)
    return [
        target_for(
            config,
            name,
            repository=repos.get(name, default_repository),
            insecure=name in insecure_names,
            endpoint=ends.get(name),
            env=env,
        )
        for name in seen
    ]


# ---------------------------------------------------------------------------------------------
# The HTTP client


def make_client(
    *,
    ca_file: str | None = None,
    insecure_hosts: Iterable[str] = (),
    request_timeout_s: float = DEFAULT_TIMEOUT_S,
    max_connections: int = 64,
) -> httpx.AsyncClient:
    """The one client every probe shares: TLS verified (system CAs plus ``ca_file``), no
    automatic redirects (the probe decides which may carry credentials), timeouts on every
    phase. ``insecure_hosts`` (``host[:port]``) get TLS without verification, like Docker's
    insecure registries.
    """
    context = ssl.create_default_context()
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
    limits = httpx.Limits(
        max_connections=max_connections, max_keepalive_connections=max_connections
    )
    mounts: dict[str, httpx.AsyncBaseTransport | None] = {}
    if any(urllib.request.getproxies().get(k) for k in ("http", "https", "all")):
        # Like Go's ProxyFromEnvironment (so like Docker): loopback is never proxied. Without
        # this, Basic credentials for a plain-HTTP loopback registry would go to the proxy.
        for pattern in ("all://localhost", "all://127.0.0.1", "all://[::1]"):
            mounts[pattern] = httpx.AsyncHTTPTransport(verify=context, limits=limits)
    for host in insecure_hosts:
        mounts[f"https://{host}"] = httpx.AsyncHTTPTransport(verify=False, limits=limits)
    return httpx.AsyncClient(
        verify=context,
        timeout=httpx.Timeout(request_timeout_s),
        follow_redirects=False,
        limits=limits,
        mounts=mounts,
        # Proxies from the environment are honoured (as Docker does), loopback excepted.
        trust_env=True,
        headers={"User-Agent": f"regauthd/{__version__} (probe)"},
    )


# ---------------------------------------------------------------------------------------------
# The probe


class _Stop(Exception):
    """Ends a probe early with a finished result."""

    def __init__(
        self, status: ProbeStatus, detail: str, *, retry_after_s: float | None = None
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.retry_after_s = retry_after_s


class _PlainHTTPServer(Exception):
    """The TLS handshake failed in a way that means the server speaks plain HTTP."""


def _ssl_cause(exc: BaseException) -> ssl.SSLError | None:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ssl.SSLError):
            return current
        current = current.__cause__ or current.__context__
    return None


@dataclass
class _Figures:
    push_allowed: bool | None = None
    limit: int | None = None
    remaining: int | None = None
    window: int | None = None
    notes: list[str] = field(default_factory=list)


class _Probe:
    """One probe's state: the target, the secrets to keep out of messages, the figures."""

    def __init__(self, client: httpx.AsyncClient, target: ProbeTarget, policy: ProbePolicy):
        self.client = client
        self.target = target
        self.policy = policy
        self.secrets: list[str] = []
        cred = target.credential
        if cred is not None:
            self.secrets += [cred.secret, encode_auth(cred.username, cred.secret)]
        self.figures = _Figures()

    # -- transport -------------------------------------------------------------------------

    async def send(
        self,
        method: str,
        url: str | httpx.URL,
        *,
        headers: Mapping[str, str] | None = None,
        data: Mapping[str, str] | None = None,
        carries_secret: bool = False,
    ) -> httpx.Response:
        """One request, following redirects only where the rules allow; 429 stops the probe."""
        current = httpx.URL(url)
        for _ in range(_MAX_REDIRECTS + 1):
            try:
                response = await self.client.request(method, current, headers=headers, data=data)
            except httpx.TimeoutException:
                raise _Stop(
                    ProbeStatus.UNREACHABLE,
                    f"{current.netloc.decode()} did not answer in time; is it up?",
                ) from None
            except httpx.ConnectError as exc:
                cause = _ssl_cause(exc)
                if isinstance(cause, ssl.SSLCertVerificationError):
                    raise _Stop(
                        ProbeStatus.TLS_ERROR,
                        f"TLS certificate of {current.netloc.decode()} not trusted "
                        f"({cause.verify_message or cause.reason}); install its CA (--ca-file) "
                        "or mark the registry insecure in the settings",
                    ) from None
                if cause is not None:
                    raise _PlainHTTPServer(str(cause.reason or "TLS handshake failed")) from None
                raise _Stop(
                    ProbeStatus.UNREACHABLE,
                    f"cannot connect to {current.netloc.decode()} "
                    f"({_short(str(exc)) or type(exc).__name__}); check the name, the port and "
                    "the network",
                ) from None
            except httpx.TransportError as exc:
                raise _Stop(
                    ProbeStatus.UNREACHABLE,
                    f"connection to {current.netloc.decode()} failed ({type(exc).__name__})",
                ) from None
            if response.status_code == 429:
                self.read_rate_limit(response)
                raise _Stop(
                    ProbeStatus.RATE_LIMITED,
                    f"{current.host} answered 429 too many requests"
                    f"{_error_text(response)}; wait, or use an account with a higher limit",
                    retry_after_s=parse_retry_after(response.headers.get("retry-after")),
                ) from None
            if not response.is_redirect:
                return response
            location = response.headers.get("location", "")
            refusal = redirect_refusal(
                current, location, method=method, carries_secret=carries_secret
            )
            if refusal:
                raise _Stop(ProbeStatus.ERROR, refusal)
            current = current.join(location)
        raise _Stop(ProbeStatus.ERROR, f"too many redirects from {httpx.URL(url).host}")

    # -- the steps -------------------------------------------------------------------------

    async def run(self) -> ProbeResult:
        target = self.target
        if target.credential_error is not None:
            return self.result(ProbeStatus.ERROR, target.credential_error)
        if target.credential is None:
            if target.is_hub:
                await self.anonymous_rate_limit()
            return self.result(
                ProbeStatus.NO_CREDENTIALS,
                f"no credentials for {target.registry} in the Docker config; run "
                f"`{self.login_command()}`",
            )
        endpoints = target.endpoints()
        for index, base in enumerate(endpoints):
            try:
                response = await self.send("GET", f"{base}/v2/")
            except _PlainHTTPServer as exc:
                if index + 1 < len(endpoints):
                    continue
                raise _Stop(
                    ProbeStatus.TLS_ERROR, f"TLS handshake with {target.host} failed ({exc})"
                ) from None
            except _Stop as stop:
                if stop.status is ProbeStatus.UNREACHABLE and index + 1 < len(endpoints):
                    continue
                raise
            return await self.authenticate(base, response)
        raise _Stop(ProbeStatus.UNREACHABLE, f"no endpoint of {target.registry} answered")

    async def authenticate(self, base: str, response: httpx.Response) -> ProbeResult:
        if response.status_code == 200:
            if self.target.repository:
                await self.upload_check(base, {})
            return self.finish("the registry asks for no credentials")
        if response.status_code != 401:
            raise _Stop(
                ProbeStatus.ERROR,
                f"GET {base}/v2/ answered HTTP {response.status_code}{_error_text(response)}",
            )
        challenges = parse_challenges(response.headers.get_list("www-authenticate"))
        bearer = find(challenges, "bearer")
        if bearer is not None:
            return await self.bearer(base, bearer)
        if find(challenges, "basic") is not None:
            return await self.basic(base)
        schemes = ", ".join(c.scheme for c in challenges) or "none"
        raise _Stop(
            ProbeStatus.ERROR,
            f"{self.target.registry} asks for an authentication scheme regauthd cannot probe "
            f"({schemes})",
        )

    def credential(self) -> Credential:
        if self.target.credential is None:
            raise _Stop(ProbeStatus.NO_CREDENTIALS, f"no credentials for {self.target.registry}")
        return self.target.credential

    def basic_header(self) -> dict[str, str]:
        cred = self.credential()
        return {"Authorization": f"Basic {encode_auth(cred.username, cred.secret)}"}

    async def basic(self, base: str) -> ProbeResult:
        refusal = credentials_refusal(base, insecure=self.target.insecure)
        if refusal:
            raise _Stop(ProbeStatus.ERROR, refusal)
        headers = self.basic_header()
        response = await self.send("GET", f"{base}/v2/", headers=headers, carries_secret=True)
        if response.status_code in {401, 403}:
            raise _Stop(ProbeStatus.BAD_CREDENTIALS, self.refused_text())
        if response.status_code != 200:
            raise _Stop(
                ProbeStatus.ERROR,
                f"GET /v2/ with credentials answered HTTP {response.status_code}"
                f"{_error_text(response)}",
            )
        if self.target.repository:
            await self.upload_check(base, headers)
        return self.finish("credentials accepted (Basic)")

    async def bearer(self, base: str, challenge: Challenge) -> ProbeResult:
        target = self.target
        realm = challenge.realm
        if not realm:
            raise _Stop(ProbeStatus.ERROR, "the registry's Bearer challenge names no realm")
        refusal = realm_refusal(
            realm,
            base,
            is_hub=target.is_hub,
            insecure=target.insecure,
            trusted_hosts=self.policy.trusted_realm_hosts,
        )
        if refusal:
            raise _Stop(ProbeStatus.ERROR, refusal)
        token = await self.fetch_token(realm, challenge.service or "")
        bearer = {"Authorization": f"Bearer {token}"}
        check = await self.send("GET", f"{base}/v2/", headers=bearer, carries_secret=True)
        if check.status_code != 200:
            raise _Stop(
                ProbeStatus.ERROR,
                f"the registry refused the token its own token service issued (HTTP "
                f"{check.status_code}{_error_text(check)}); the token service and the registry "
                "disagree (signing certificate, service name or clock)",
            )
        if target.repository:
            actions = granted_actions(decode_claims(token), target.repository)
            if actions is None:
                # An opaque token: the only way to know is to ask the registry itself.
                await self.upload_check(base, bearer)
            else:
                self.figures.push_allowed = can_push(actions)
                if not self.figures.push_allowed:
                    self.figures.notes.append(
                        f"token grants [{','.join(sorted(actions)) or 'nothing'}] on "
                        f"{target.repository}"
                    )
        if target.is_hub:
            await self.rate_limit(base, bearer)
        return self.finish("credentials accepted (token)")

    async def fetch_token(self, realm: str, service: str) -> str:
        cred = self.credential()
        scopes = requested_scopes(self.target, self.policy)
        if self.target.identity_token:
            form = {
                "grant_type": "refresh_token",
                "refresh_token": cred.secret,
                "service": service,
                "client_id": _CLIENT_ID,
            }
            if scopes:
                form["scope"] = " ".join(scopes)
            response = await self.send("POST", realm, data=form, carries_secret=True)
        else:
            url = httpx.URL(realm).copy_merge_params(_token_query(service, scopes))
            response = await self.send("GET", url, headers=self.basic_header(), carries_secret=True)
        if response.status_code in {401, 403}:
            raise _Stop(ProbeStatus.BAD_CREDENTIALS, self.refused_text())
        if response.status_code == 400 and "invalid_grant" in response.text:
            raise _Stop(
                ProbeStatus.BAD_CREDENTIALS,
                f"the identity token stored for {self.target.registry} is expired or revoked; "
                f"run `{self.login_command()}` again",
            )
        if response.status_code != 200:
            raise _Stop(
                ProbeStatus.ERROR,
                f"the token service answered HTTP {response.status_code}{_error_text(response)}",
            )
        try:
            body = response.json()
            token = body.get("token") or body.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise _Stop(ProbeStatus.ERROR, "the token service answered without a token")
        self.secrets.append(token)
        refresh = body.get("refresh_token")
        if isinstance(refresh, str):
            self.secrets.append(refresh)
        return token

    async def upload_check(self, base: str, headers: Mapping[str, str]) -> None:
        """Open a blob upload (the first step of every push) and cancel it at once."""
        repository = self.target.repository
        response = await self.send(
            "POST",
            f"{base}/v2/{repository}/blobs/uploads/",
            headers=headers,
            carries_secret=bool(headers),
        )
        if response.status_code == 202:
            self.figures.push_allowed = True
            location = response.headers.get("location")
            if location:
                cancel = httpx.URL(base).join(location)
                if cancel.host.lower() == httpx.URL(base).host.lower():
                    # An abandoned upload expires on the registry by itself: cancelling is a
                    # courtesy, and its failure changes nothing about the answer.
                    with contextlib.suppress(httpx.HTTPError):
                        await self.client.delete(cancel, headers=headers)
        elif response.status_code in {401, 403}:
            self.figures.push_allowed = False
            self.figures.notes.append(f"opening an upload to {repository} was refused")
        else:
            self.figures.notes.append(
                f"push check on {repository} inconclusive (HTTP {response.status_code})"
            )

    async def rate_limit(self, base: str, headers: Mapping[str, str]) -> None:
        url = f"{base}/v2/{self.policy.rate_limit_repository}/manifests/latest"
        response = await self.send(
            "HEAD",
            url,
            headers={
                **headers,
                "Accept": "application/vnd.docker.distribution.manifest.v2+json",
            },
            carries_secret=bool(headers),
        )
        if response.status_code != 200:
            self.figures.notes.append(f"rate limit unknown (HTTP {response.status_code})")
            return
        if not self.read_rate_limit(response):
            self.figures.notes.append("no pull rate limit")

    def read_rate_limit(self, response: httpx.Response) -> bool:
        """Take Hub's ``ratelimit-*`` figures from any response; False when it has none."""
        limit = parse_rate_limit(response.headers.get("ratelimit-limit"))
        remaining = parse_rate_limit(response.headers.get("ratelimit-remaining"))
        if limit is not None:
            self.figures.limit, self.figures.window = limit
        if remaining is not None:
            self.figures.remaining = remaining[0]
            self.figures.window = self.figures.window or remaining[1]
        return limit is not None or remaining is not None

    async def anonymous_rate_limit(self) -> None:
        """Hub without credentials: the anonymous (per-IP) figures are still worth showing."""
        try:
            base = self.target.endpoints()[0]
            first = await self.send("GET", f"{base}/v2/")
            bearer = find(parse_challenges(first.headers.get_list("www-authenticate")), "bearer")
            if bearer is None or not bearer.realm:
                return
            scope = f"repository:{self.policy.rate_limit_repository}:pull"
            query = _token_query(bearer.service or "", [scope])
            response = await self.send("GET", httpx.URL(bearer.realm).copy_merge_params(query))
            token = response.json().get("token") if response.status_code == 200 else None
            if isinstance(token, str):
                self.secrets.append(token)
                await self.rate_limit(base, {"Authorization": f"Bearer {token}"})
        except (_Stop, _PlainHTTPServer, ValueError):
            return  # figures are a bonus here: the status is no_credentials either way

    # -- results ---------------------------------------------------------------------------

    def login_command(self) -> str:
        return "docker login" if self.target.is_hub else f"docker login {self.target.registry}"

    def refused_text(self) -> str:
        cred = self.target.credential
        if self.target.identity_token:
            who = "the stored identity token"
        else:
            who = f"user {cred.username!r}" if cred else "the credential"
        key = self.target.credential_key
        where = f" (stored under {key!r})" if key else ""
        return (
            f"{self.target.registry} refused {who}{where}: wrong password, or token expired or "
            f"revoked; run `{self.login_command()}` again"
        )

    def finish(self, what: str) -> ProbeResult:
        figures = self.figures
        target = self.target
        if figures.remaining is not None and figures.remaining <= 0:
            return self.result(
                ProbeStatus.RATE_LIMITED,
                f"pull rate limit used up (0 of {figures.limit} left"
                f"{_window_text(figures.window)}); pulls fail until the window moves on",
            )
        if target.repository and figures.push_allowed is False:
            user = target.credential.username if target.credential else "anonymous"
            notes = "; ".join(figures.notes)
            return self.result(
                ProbeStatus.PUSH_DENIED,
                f"{user!r} may log in to {target.registry} but not push to {target.repository}"
                f" ({notes}); use a token with write access",
            )
        parts = [what]
        if target.repository and figures.push_allowed:
            parts.append(f"push to {target.repository} allowed")
        if figures.remaining is not None:
            parts.append(
                f"{figures.remaining} of {figures.limit} pulls left{_window_text(figures.window)}"
            )
        parts += [n for n in figures.notes if n]
        return self.result(ProbeStatus.OK, "; ".join(parts))

    def result(
        self, status: ProbeStatus, detail: str, *, retry_after_s: float | None = None
    ) -> ProbeResult:
        figures = self.figures
        return ProbeResult(
            registry=self.target.registry,
            status=status,
            push_allowed=figures.push_allowed if self.target.repository else None,
            rate_limit_limit=figures.limit,
            rate_limit_remaining=figures.remaining,
            rate_limit_window=figures.window,
            detail=redact(" ".join(detail.split()), self.secrets),
            retry_after_s=retry_after_s,
            username=self.target.credential.username if self.target.credential else None,
            repository=self.target.repository,
        )


def _token_query(service: str, scopes: Sequence[str]) -> httpx.QueryParams:
    # One `scope` parameter per scope, as Docker sends them; merged into the realm's own query
    # (httpx's params= would replace it).
    params: dict[str, str | list[str]] = {"scope": list(scopes)}
    if service:
        params["service"] = service
    return httpx.QueryParams(params)


def _window_text(window: int | None) -> str:
    if not window:
        return ""
    return f" per {window // 3600} h" if window % 3600 == 0 else f" per {window} s"


def _short(text: str, limit: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _error_text(response: httpx.Response) -> str:
    """``: CODE message`` from a registry error body (``{"errors": [...]}``), else ''.

    Bodies can echo request data; only the registry's own code and message are kept, shortened.
    """
    try:
        body = response.json()
    except ValueError:
        return ""
    if isinstance(body, dict):
        errors = body.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            code = str(errors[0].get("code", ""))
            message = str(errors[0].get("message", ""))
            return f": {_short(f'{code} {message}'.strip(), 160)}"
        for key in ("details", "error"):
            if isinstance(body.get(key), str):
                return f": {_short(body[key], 160)}"
    return ""


async def probe(
    client: httpx.AsyncClient, target: ProbeTarget, policy: ProbePolicy | None = None
) -> ProbeResult:
    """Probe one registry. Never raises for anything the registry or network does; the whole
    probe is bounded by ``policy.timeout_s``."""
    policy = policy or ProbePolicy()
    state = _Probe(client, target, policy)
    started = time.monotonic()
    try:
        async with asyncio.timeout(policy.timeout_s):
            result = await state.run()
    except _Stop as stop:
        result = state.result(stop.status, stop.detail, retry_after_s=stop.retry_after_s)
    except TimeoutError:
        result = state.result(
            ProbeStatus.UNREACHABLE,
            f"{target.registry} did not finish answering within {policy.timeout_s:g} s",
        )
    except (httpx.HTTPError, httpx.InvalidURL, ValueError, UnicodeError) as exc:
        # Unexpected but survivable: a malformed URL or header. The type and a redacted,
        # shortened message are enough to debug without leaking anything.
        result = state.result(
            ProbeStatus.ERROR, f"probe failed: {type(exc).__name__}: {_short(str(exc))}"
        )
    except Exception as exc:
        # A bug of ours must not take the other registries' probes (or the daemon) down with
        # it: it becomes this registry's error result, and the type is logged for a report.
        # The message is left out: an unexpected exception may carry anything, secrets too.
        log.error("probe.crashed", registry=target.registry, error_type=type(exc).__name__)
        result = state.result(
            ProbeStatus.ERROR, f"probe failed unexpectedly ({type(exc).__name__}); please report"
        )
    latency_ms = round((time.monotonic() - started) * 1000)
    result = dataclasses.replace(result, latency_ms=latency_ms)
    log.debug(
        "probe.finished",
        registry=result.registry,
        status=result.status.value,
        push_allowed=result.push_allowed,
        rate_limit_remaining=result.rate_limit_remaining,
        latency_ms=latency_ms,
        detail=result.detail,
    )
    return result


async def probe_many(
    client: httpx.AsyncClient,
    targets: Sequence[ProbeTarget],
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    policy: ProbePolicy | None = None,
) -> list[ProbeResult]:
    """Probe every target, at most ``concurrency`` at a time; results in the targets' order."""
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    gate = asyncio.Semaphore(concurrency)

    async def one(target: ProbeTarget) -> ProbeResult:
        async with gate:
            return await probe(client, target, policy)

    return list(await asyncio.gather(*(one(t) for t in targets)))
