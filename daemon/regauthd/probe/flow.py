"""The steps of one probe: challenge, token or Basic login, push check, Hub's rate limit.

1. ``GET /v2/`` without credentials; read the challenge(s) (:mod:`regauthd.probe.challenge`).
2. ``Bearer``: ask the realm for a token for ``repository:<repo>:pull,push`` with the credential
   (HTTP Basic; an identity token goes in an OAuth2 ``grant_type=refresh_token`` POST), check the
   registry accepts it, and read the granted actions from the token's ``access`` claim (decoded,
   not verified: only the registry needs to trust it). ``Basic``: check the credential against
   ``/v2/``; push is tried by opening a blob upload and cancelling it.
3. Docker Hub: ``HEAD /v2/ratelimitpreview/test/manifests/latest`` for ``ratelimit-*`` headers.
   A 429 anywhere means ``rate_limited``.

Every request goes through :func:`regauthd.probe.transport.send` (bounded bodies; a token
response over :data:`TOKEN_BODY_LIMIT` is refused); credentials go to a realm only when
:func:`regauthd.probe.rules.realm_refusal` allows, to an upload ``Location`` only when it is the
registry's own scheme, host and port (:func:`regauthd.probe.rules.location_refusal`), and nothing
goes to a link-local or metadata address a registry names. Every secret the flow holds (password,
identity token, access token) is redacted from the result's detail.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence

import httpx

from regauthd.dockerconfig.auth import Credential, encode_auth
from regauthd.dockerconfig.keys import HUB_CANONICAL
from regauthd.probe import outcome, transport
from regauthd.probe.challenge import Challenge, find, parse_challenges
from regauthd.probe.result import ProbePolicy, ProbeResult, ProbeStatus, ProbeTarget
from regauthd.probe.rules import (
    address_refusal,
    can_push,
    credentials_refusal,
    decode_claims,
    granted_actions,
    location_refusal,
    parse_rate_limit,
    parse_token_answer,
    realm_refusal,
    registry_address_problem,
    requested_scopes,
)
from regauthd.probe.transport import BodyTooLarge, PlainHTTPServer, StopProbe, error_text

_CLIENT_ID = "regauthd"
# A token response is a small JSON object (Hub's: about 1.5 KiB): anything longer is refused.
TOKEN_BODY_LIMIT = 64 * 1024


class ProbeFlow:
    """One probe's state: the target, the secrets to keep out of messages, the figures."""

    def __init__(self, client: httpx.AsyncClient, target: ProbeTarget, policy: ProbePolicy):
        self.client = client
        self.target = target
        self.policy = policy
        self.secrets: list[str] = []
        cred = target.credential
        if cred is not None:
            self.secrets += [cred.secret, encode_auth(cred.username, cred.secret)]
        self.figures = outcome.Figures()

    # -- requests --------------------------------------------------------------------------

    async def send(
        self,
        method: str,
        url: str | httpx.URL,
        *,
        headers: Mapping[str, str] | None = None,
        data: Mapping[str, str] | None = None,
        carries_secret: bool = False,
        body_limit: int = transport.BODY_LIMIT,
        refuse_longer: bool = False,
    ) -> httpx.Response:
        """One request through :func:`regauthd.probe.transport.send`; a 429's figures are kept.

        A URL at a link-local or cloud metadata address (other than the registry's own) is
        refused before anything is sent (:func:`regauthd.probe.rules.address_refusal`)."""
        refusal = address_refusal(str(url), registry_host=self.target.host)
        if refusal:
            raise StopProbe(ProbeStatus.ERROR, refusal)
        return await transport.send(
            self.client,
            method,
            url,
            headers=headers,
            data=data,
            carries_secret=carries_secret,
            on_rate_limited=self.read_rate_limit,
            registry_host=self.target.host,
            body_limit=body_limit,
            refuse_longer=refuse_longer,
        )

    async def send_for_token(
        self,
        method: str,
        url: str | httpx.URL,
        *,
        headers: Mapping[str, str] | None = None,
        data: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """A request to a token service: it carries the credential when it has headers or a
        form, and an answer longer than :data:`TOKEN_BODY_LIMIT` ends the probe."""
        try:
            return await self.send(
                method,
                url,
                headers=headers,
                data=data,
                carries_secret=bool(headers or data),
                body_limit=TOKEN_BODY_LIMIT,
                refuse_longer=True,
            )
        except BodyTooLarge:
            raise StopProbe(
                ProbeStatus.ERROR,
                f"the token service sent more than {TOKEN_BODY_LIMIT // 1024} KiB; that is not "
                "a token response",
            ) from None

    # -- the steps -------------------------------------------------------------------------

    async def run(self) -> ProbeResult:
        target = self.target
        if target.credential_error is not None:
            return self.result(ProbeStatus.ERROR, target.credential_error)
        refusal = None if target.endpoint else registry_address_problem(target.registry)
        if refusal is not None:
            return self.result(ProbeStatus.ERROR, refusal)
        if target.credential is None:
            if target.is_hub:
                await self.anonymous_rate_limit()
            if target.unread_keys:
                keys = ", ".join(target.unread_keys)
                return self.result(
                    ProbeStatus.NO_CREDENTIALS,
                    f"the Docker Hub credential is stored under {keys}, a key Docker never "
                    f"reads (it looks only under {HUB_CANONICAL}); run `regauthd fix`",
                )
            return self.result(
                ProbeStatus.NO_CREDENTIALS,
                f"no credentials for {target.registry} in the Docker config; run "
                f"`{self.login_command()}`",
            )
        endpoints = target.endpoints()
        for index, base in enumerate(endpoints):
            try:
                response = await self.send("GET", f"{base}/v2/")
            except PlainHTTPServer as exc:
                if index + 1 < len(endpoints):
                    continue
                raise StopProbe(
                    ProbeStatus.TLS_ERROR, f"TLS handshake with {target.host} failed ({exc})"
                ) from None
            except StopProbe as stop:
                if stop.status is ProbeStatus.UNREACHABLE and index + 1 < len(endpoints):
                    continue
                raise
            return await self.authenticate(base, response)
        raise StopProbe(ProbeStatus.UNREACHABLE, f"no endpoint of {target.registry} answered")

    async def authenticate(self, base: str, response: httpx.Response) -> ProbeResult:
        if response.status_code == 200:
            if self.target.repository:
                await self.upload_check(base, {})
            return self.finish("the registry asks for no credentials")
        if response.status_code != 401:
            raise StopProbe(
                ProbeStatus.ERROR,
                f"GET {base}/v2/ answered HTTP {response.status_code}{error_text(response)}",
            )
        challenges = parse_challenges(response.headers.get_list("www-authenticate"))
        bearer = find(challenges, "bearer")
        if bearer is not None:
            return await self.bearer(base, bearer)
        if find(challenges, "basic") is not None:
            return await self.basic(base)
        schemes = ", ".join(c.scheme for c in challenges) or "none"
        raise StopProbe(
            ProbeStatus.ERROR,
            f"{self.target.registry} asks for an authentication scheme regauthd cannot probe "
            f"({schemes})",
        )

    def credential(self) -> Credential:
        if self.target.credential is None:
            raise StopProbe(
                ProbeStatus.NO_CREDENTIALS, f"no credentials for {self.target.registry}"
            )
        return self.target.credential

    def basic_header(self) -> dict[str, str]:
        cred = self.credential()
        return {"Authorization": f"Basic {encode_auth(cred.username, cred.secret)}"}

    async def basic(self, base: str) -> ProbeResult:
        refusal = credentials_refusal(base, insecure=self.target.insecure)
        if refusal:
            raise StopProbe(ProbeStatus.ERROR, refusal)
        headers = self.basic_header()
        response = await self.send("GET", f"{base}/v2/", headers=headers, carries_secret=True)
        if response.status_code in {401, 403}:
            raise StopProbe(ProbeStatus.BAD_CREDENTIALS, self.refused_text())
        if response.status_code != 200:
            raise StopProbe(
                ProbeStatus.ERROR,
                f"GET /v2/ with credentials answered HTTP {response.status_code}"
                f"{error_text(response)}",
            )
        if self.target.repository:
            await self.upload_check(base, headers)
        return self.finish("credentials accepted (Basic)")

    async def bearer(self, base: str, challenge: Challenge) -> ProbeResult:
        target = self.target
        realm = challenge.realm
        if not realm:
            raise StopProbe(ProbeStatus.ERROR, "the registry's Bearer challenge names no realm")
        refusal = realm_refusal(
            realm,
            base,
            is_hub=target.is_hub,
            insecure=target.insecure,
            trusted_hosts=self.policy.trusted_realm_hosts,
        )
        if refusal:
            raise StopProbe(ProbeStatus.ERROR, refusal)
        token = await self.fetch_token(realm, challenge.service or "")
        bearer = {"Authorization": f"Bearer {token}"}
        check = await self.send("GET", f"{base}/v2/", headers=bearer, carries_secret=True)
        if check.status_code != 200:
            raise StopProbe(
                ProbeStatus.ERROR,
                f"the registry refused the token its own token service issued (HTTP "
                f"{check.status_code}{error_text(check)}); the token service and the registry "
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
            response = await self.send_for_token("POST", realm, data=form)
        else:
            url = httpx.URL(realm).copy_merge_params(_token_query(service, scopes))
            response = await self.send_for_token("GET", url, headers=self.basic_header())
        if response.status_code in {401, 403}:
            raise StopProbe(ProbeStatus.BAD_CREDENTIALS, self.refused_text())
        if response.status_code == 400 and "invalid_grant" in response.text:
            raise StopProbe(
                ProbeStatus.BAD_CREDENTIALS,
                f"the identity token stored for {self.target.registry} is expired or revoked; "
                f"run `{self.login_command()}` again",
            )
        if response.status_code != 200:
            raise StopProbe(
                ProbeStatus.ERROR,
                f"the token service answered HTTP {response.status_code}{error_text(response)}",
            )
        token, refresh = parse_token_answer(response.content)
        if token is None:
            raise StopProbe(ProbeStatus.ERROR, "the token service answered without a token")
        self.secrets.append(token)
        if refresh is not None:
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
            # An abandoned upload expires on the registry by itself: cancelling is a courtesy,
            # skipped when the Location is not the registry's own scheme, host and port
            # (credentials go nowhere else, never downgraded to http://), and its failure
            # changes nothing.
            if location and not location_refusal(base, location):
                with contextlib.suppress(StopProbe, PlainHTTPServer):
                    await self.send(
                        "DELETE",
                        httpx.URL(base).join(location),
                        headers=headers,
                        carries_secret=bool(headers),
                    )
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
            realm = httpx.URL(bearer.realm).copy_merge_params(query)
            response = await self.send_for_token("GET", realm)
            token = response.json().get("token") if response.status_code == 200 else None
            if isinstance(token, str):
                self.secrets.append(token)
                await self.rate_limit(base, {"Authorization": f"Bearer {token}"})
        except (StopProbe, PlainHTTPServer, ValueError):
            return  # figures are a bonus here: the status is no_credentials either way

    # -- results ---------------------------------------------------------------------------

    def login_command(self) -> str:
        return outcome.login_command(self.target)

    def refused_text(self) -> str:
        return outcome.refused_text(self.target)

    def finish(self, what: str) -> ProbeResult:
        return outcome.finish(self.target, self.figures, what, self.secrets)

    def result(
        self, status: ProbeStatus, detail: str, *, retry_after_s: float | None = None
    ) -> ProbeResult:
        return outcome.result(
            self.target, self.figures, status, detail, self.secrets, retry_after_s=retry_after_s
        )


def _token_query(service: str, scopes: Sequence[str]) -> httpx.QueryParams:
    # One `scope` parameter per scope, as Docker sends them; merged into the realm's own query
    # (httpx's params= would replace it).
    params: dict[str, str | list[str]] = {"scope": list(scopes)}
    if service:
        params["service"] = service
    return httpx.QueryParams(params)
