"""One request of a probe: the safety rules on redirects, and network failures as answers.

:func:`send` sends one request over the shared client and follows redirects itself, only where
:func:`regauthd.probe.rules.redirect_refusal` allows (a request carrying credentials stays on
its host, scheme and method). A timeout, a refused connection, an untrusted certificate or a
429 ends the probe with a finished answer (:class:`StopProbe`); a TLS handshake with a server
that speaks plain HTTP raises :class:`PlainHTTPServer`, so the caller can try the next endpoint.

Bodies are streamed and read only up to a bound (:data:`BODY_LIMIT`, or the caller's): a
registry that answers a gigabyte costs a few KiB, the rest is never read (the connection is
closed). Bodies come as sent (the client asks for ``Accept-Encoding: identity``; nothing is
decompressed, so a small compressed body cannot grow into a large one). A server that trickles
its answer is cut off by the probe's total deadline (:func:`regauthd.probe.client.probe`).

A host the registry named (a realm, a redirect) that is not the registry's own is resolved
before anything is sent to it: a name whose addresses include a link-local or cloud metadata
one (169.254.169.254 behind an innocent-looking name) is refused with nothing sent there.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import time
from collections.abc import Callable, Mapping

import httpx

from regauthd.probe.result import ProbeStatus
from regauthd.probe.rules import is_link_local_or_metadata, parse_retry_after, redirect_refusal

MAX_REDIRECTS = 5
# What the probe reads of an answer at most: error texts and /v2/ bodies are short.
BODY_LIMIT = 8 * 1024
# Headers of the body as it was sent that no longer describe the bounded copy kept.
_BODY_FRAMING = ("content-encoding", "content-length", "transfer-encoding")


class StopProbe(Exception):
    """Ends a probe early with a finished result."""

    def __init__(
        self, status: ProbeStatus, detail: str, *, retry_after_s: float | None = None
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.retry_after_s = retry_after_s


class BodyTooLarge(Exception):
    """The answer's body was longer than the caller allows (raised only when it asked)."""


class PlainHTTPServer(Exception):
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


async def send(
    client: httpx.AsyncClient,
    method: str,
    url: str | httpx.URL,
    *,
    headers: Mapping[str, str] | None = None,
    data: Mapping[str, str] | None = None,
    carries_secret: bool = False,
    on_rate_limited: Callable[[httpx.Response], object],
    registry_host: str = "",
    body_limit: int = BODY_LIMIT,
    refuse_longer: bool = False,
) -> httpx.Response:
    """One request, following redirects only where the rules allow; 429 stops the probe
    (``on_rate_limited`` reads the response's figures first).

    The response holds at most ``body_limit`` bytes of the body: the rest is dropped, or with
    ``refuse_longer`` the request fails with :class:`BodyTooLarge`. ``registry_host`` is the
    host the user named (a redirect there is never refused for its address).
    """
    current = httpx.URL(url)
    for _ in range(MAX_REDIRECTS + 1):
        await _refuse_named_metadata(current, registry_host)
        try:
            request = client.build_request(method, current, headers=headers, data=data)
            response = await client.send(request, stream=True)
            try:
                if response.is_redirect:
                    bounded = _bounded(response, b"")
                else:
                    body = await _read_bounded(response, body_limit, refuse_longer)
                    bounded = _bounded(response, body)
            finally:
                await response.aclose()
        except httpx.TimeoutException:
            raise StopProbe(
                ProbeStatus.UNREACHABLE,
                f"{current.netloc.decode()} did not answer in time; is it up?",
            ) from None
        except httpx.ConnectError as exc:
            cause = _ssl_cause(exc)
            if isinstance(cause, ssl.SSLCertVerificationError):
                raise StopProbe(
                    ProbeStatus.TLS_ERROR,
                    f"TLS certificate of {current.netloc.decode()} not trusted "
                    f"({cause.verify_message or cause.reason}); install its CA (--ca-file) "
                    "or mark the registry insecure in the settings",
                ) from None
            if cause is not None:
                raise PlainHTTPServer(str(cause.reason or "TLS handshake failed")) from None
            raise StopProbe(
                ProbeStatus.UNREACHABLE,
                f"cannot connect to {current.netloc.decode()} "
                f"({short(str(exc)) or type(exc).__name__}); check the name, the port and "
                "the network",
            ) from None
        except httpx.TransportError as exc:
            raise StopProbe(
                ProbeStatus.UNREACHABLE,
                f"connection to {current.netloc.decode()} failed ({type(exc).__name__})",
            ) from None
        response = bounded
        if response.status_code == 429:
            on_rate_limited(response)
            raise StopProbe(
                ProbeStatus.RATE_LIMITED,
                f"{current.host} answered 429 too many requests"
                f"{error_text(response)}; wait, or use an account with a higher limit",
                retry_after_s=parse_retry_after(
                    response.headers.get("retry-after"), now=time.time()
                ),
            ) from None
        if not response.is_redirect:
            return response
        location = response.headers.get("location", "")
        refusal = redirect_refusal(
            str(current),
            location,
            method=method,
            carries_secret=carries_secret,
            registry_host=registry_host,
        )
        if refusal:
            raise StopProbe(ProbeStatus.ERROR, refusal)
        current = current.join(location)
    raise StopProbe(ProbeStatus.ERROR, f"too many redirects from {httpx.URL(url).host}")


async def _refuse_named_metadata(url: httpx.URL, registry_host: str) -> None:
    """Refuse a host name (not the registry's own) that resolves to a link-local or cloud
    metadata address, before anything is sent. A name that does not resolve is left to the
    request, which then fails the usual way. (A DNS server that answers differently a few
    milliseconds later is beyond this check: the connection resolves the name again.)"""
    host = url.host
    own = httpx.URL(f"http://{registry_host}").host if registry_host else ""
    if not host or host.lower() == own.lower():
        return
    try:
        ipaddress.ip_address(host.strip("[]"))
        return  # an address literal: the rules already judged it
    except ValueError:
        pass
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return
    for info in infos:
        address = str(info[4][0]).split("%", 1)[0]
        if is_link_local_or_metadata(address):
            raise StopProbe(
                ProbeStatus.ERROR,
                f"the registry named {host}, which resolves to a link-local or cloud metadata "
                f"address ({address}); refused without sending anything there",
            )


async def _read_bounded(response: httpx.Response, limit: int, refuse_longer: bool) -> bytes:
    """At most ``limit`` bytes of the body as sent; the rest is never read."""
    body = bytearray()
    async for chunk in response.aiter_raw():
        body += chunk
        if len(body) > limit:
            if refuse_longer:
                raise BodyTooLarge(f"{response.url.host} sent more than {limit // 1024} KiB")
            del body[limit:]
            break
    return bytes(body)


def _bounded(response: httpx.Response, body: bytes) -> httpx.Response:
    """A finished response holding ``body`` (no longer tied to the connection)."""
    headers = [(k, v) for k, v in response.headers.multi_items() if k not in _BODY_FRAMING]
    return httpx.Response(
        response.status_code, headers=headers, content=body, request=response.request
    )


def short(text: str, limit: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def error_text(response: httpx.Response) -> str:
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
            return f": {short(f'{code} {message}'.strip(), 160)}"
        for key in ("details", "error"):
            if isinstance(body.get(key), str):
                return f": {short(body[key], 160)}"
    return ""
