"""Ask each registry mirror what dockerd or containerd would get: an anonymous pull.

No credential is ever sent: the engines send none to a mirror (moby#30880). Steps: ``GET /v2/``
(200: open; a Basic challenge: a login is demanded), then for a Bearer challenge an anonymous
token for ``repository:library/alpine:pull`` from the realm and, with it, a ``HEAD`` of the
manifest (401/403: refused). Each mirror is bounded in time; the requests go through
:func:`regauthd.probe.transport.send` (bounded bodies, redirect rules).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence

import httpx

from regauthd.probe import rules
from regauthd.probe.challenge import find, parse_challenges
from regauthd.probe.client import make_client
from regauthd.probe.mirrorconf import MIRROR_TEST_REPOSITORY, Mirror, Outcome
from regauthd.probe.result import ProbeStatus
from regauthd.probe.transport import PlainHTTPServer, StopProbe, send

DEFAULT_TIMEOUT_S = 5.0
_MANIFEST_TYPES = (
    "application/vnd.docker.distribution.manifest.v2+json, "
    "application/vnd.docker.distribution.manifest.list.v2+json, "
    "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json"
)


def _ignore(_: httpx.Response) -> None:
    return None


async def anonymous_pull(client: httpx.AsyncClient, mirror: Mirror) -> tuple[Outcome, str]:
    """What an engine's anonymous pull through ``mirror`` meets, and how it was seen."""
    base = mirror.url.rstrip("/")
    v2 = await send(
        client, "GET", f"{base}/v2/", on_rate_limited=_ignore, registry_host=mirror.host
    )
    if v2.status_code == 200:
        return Outcome.OPEN, "GET /v2/ answered 200 without credentials"
    challenges = parse_challenges(v2.headers.get_list("www-authenticate"))
    bearer = find(challenges, "bearer")
    if v2.status_code != 401 or (bearer is None and find(challenges, "basic") is None):
        return Outcome.NOT_A_REGISTRY, f"GET /v2/ answered {v2.status_code}"
    if bearer is None:
        return Outcome.BASIC_REQUIRED, "GET /v2/ answered 401 with a Basic challenge"
    realm = bearer.realm or ""
    try:
        realm_url = httpx.URL(realm)
    except httpx.InvalidURL:
        return Outcome.NOT_A_REGISTRY, "the Bearer challenge's realm is not a URL"
    if realm_url.scheme not in {"http", "https"} or rules.is_link_local_or_metadata(realm_url.host):
        return Outcome.NOT_A_REGISTRY, f"refused to ask the realm {realm_url.host!r}"
    params = {"scope": f"repository:{MIRROR_TEST_REPOSITORY}:pull"}
    if bearer.service:
        params["service"] = bearer.service
    answer = await send(client, "GET", realm_url.copy_merge_params(params), on_rate_limited=_ignore)
    if answer.status_code in {401, 403}:
        return Outcome.TOKEN_REFUSED, f"the token service answered {answer.status_code}"
    token = _token(answer)
    if answer.status_code != 200 or token is None:
        return Outcome.NOT_A_REGISTRY, f"the token service answered {answer.status_code}"
    actions = rules.granted_actions(rules.decode_claims(token), MIRROR_TEST_REPOSITORY)
    if actions is not None and "pull" not in actions and "*" not in actions:
        return Outcome.TOKEN_REFUSED, "the anonymous token grants no pull"
    manifest = await send(
        client,
        "HEAD",
        f"{base}/v2/{MIRROR_TEST_REPOSITORY}/manifests/latest",
        headers={"Authorization": f"Bearer {token}", "Accept": _MANIFEST_TYPES},
        carries_secret=True,
        on_rate_limited=_ignore,
        registry_host=mirror.host,
    )
    if manifest.status_code in {401, 403}:
        status = manifest.status_code
        return Outcome.TOKEN_REFUSED, f"the manifest with an anonymous token: {status}"
    return Outcome.ANONYMOUS_TOKEN, f"anonymous token; the manifest: {manifest.status_code}"


def _token(response: httpx.Response) -> str | None:
    try:
        body = json.loads(response.content or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    if not isinstance(body, dict):
        return None
    token = body.get("token") or body.get("access_token")
    return token if isinstance(token, str) and token else None


async def _one(client: httpx.AsyncClient, mirror: Mirror, timeout_s: float) -> tuple[Outcome, str]:
    try:
        async with asyncio.timeout(timeout_s):
            return await anonymous_pull(client, mirror)
    except StopProbe as stop:
        if stop.status in {ProbeStatus.UNREACHABLE, ProbeStatus.TLS_ERROR}:
            return Outcome.UNREACHABLE, stop.detail
        return Outcome.NOT_A_REGISTRY, stop.detail
    except PlainHTTPServer:
        return Outcome.UNREACHABLE, "it speaks plain HTTP where HTTPS was configured"
    except TimeoutError:
        return Outcome.UNREACHABLE, f"no answer within {timeout_s:g} s"
    except (httpx.HTTPError, httpx.InvalidURL, ValueError) as exc:
        return Outcome.NOT_A_REGISTRY, f"{type(exc).__name__}"


async def check_mirrors(
    mirrors: Sequence[Mirror], *, timeout_s: float = DEFAULT_TIMEOUT_S, ca_file: str | None = None
) -> list[tuple[Mirror, Outcome, str]]:
    """Each mirror's outcome, asked concurrently (each bounded by ``timeout_s``)."""
    insecure = [m.host for m in mirrors if m.insecure]
    async with make_client(ca_file=ca_file, insecure_hosts=insecure) as client:
        results = await asyncio.gather(*(_one(client, m, timeout_s) for m in mirrors))
    return [(m, outcome, detail) for m, (outcome, detail) in zip(mirrors, results, strict=True)]
