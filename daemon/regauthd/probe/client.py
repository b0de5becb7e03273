"""Ask registries whether the stored credential works, may push, and how many pulls are left.

One probe per registry (:func:`probe`), many at once with a bound (:func:`probe_many`), all over
one shared ``httpx.AsyncClient`` made by :func:`make_client`. The steps of a probe are in
:mod:`regauthd.probe.flow`, each request in :mod:`regauthd.probe.transport`.

Safety, enforced by the probe and not left to callers: credentials go only over TLS with
verification, except to loopback hosts or registries marked insecure; only to the registry's own
host, to a token realm on that host, to Hub's ``auth.docker.io`` for Hub, or to hosts the
settings trust; redirects are followed only without credentials or to the same scheme, host and
port, at most five, each checked again; nothing goes to a link-local or cloud metadata address a
registry names; every request has a timeout, the whole probe a deadline (so a registry that
trickles its answers holds only its own probe), and every body is read only up to a small bound.
No secret (password, identity token, access token) is in a
:class:`~regauthd.probe.result.ProbeResult`, a log event or an exception message leaving the
probe.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ssl
import time
import urllib.request
from collections.abc import Callable, Iterable, Sequence

import httpx
import structlog

from regauthd import __version__
from regauthd.probe.flow import ProbeFlow
from regauthd.probe.result import (
    DEFAULT_TIMEOUT_S,
    ProbePolicy,
    ProbeResult,
    ProbeStatus,
    ProbeTarget,
)
from regauthd.probe.rules import DEFAULT_CONCURRENCY
from regauthd.probe.transport import StopProbe, short

log = structlog.get_logger("regauthd.probe")


def tls_context(ca_file: str | None = None) -> ssl.SSLContext:
    """The probes' TLS trust: the system's CA store plus ``ca_file`` (costly to make: tens of
    milliseconds of CPU; make it once and share it)."""
    context = ssl.create_default_context()
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
    return context


def make_client(
    *,
    ca_file: str | None = None,
    context: ssl.SSLContext | None = None,
    insecure_hosts: Iterable[str] = (),
    request_timeout_s: float = DEFAULT_TIMEOUT_S,
    max_connections: int = 64,
) -> httpx.AsyncClient:
    """The one client every probe shares: TLS verified (system CAs plus ``ca_file``), no
    automatic redirects (the probe decides which may carry credentials), timeouts on every
    phase. ``insecure_hosts`` (``host[:port]``) get TLS without verification, like Docker's
    insecure registries. ``context``: one made by :func:`tls_context` (else made here).
    """
    if context is None:
        context = tls_context(ca_file)
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
        # Bodies as sent: nothing to decompress, so a bounded read stays bounded.
        headers={"User-Agent": f"regauthd/{__version__} (probe)", "Accept-Encoding": "identity"},
    )


async def probe(
    client: httpx.AsyncClient, target: ProbeTarget, policy: ProbePolicy | None = None
) -> ProbeResult:
    """Probe one registry. Never raises for anything the registry or network does; the whole
    probe is bounded by ``policy.timeout_s``."""
    policy = policy or ProbePolicy()
    state = ProbeFlow(client, target, policy)
    started = time.monotonic()
    try:
        async with asyncio.timeout(policy.timeout_s):
            result = await state.run()
    except StopProbe as stop:
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
            ProbeStatus.ERROR, f"probe failed: {type(exc).__name__}: {short(str(exc))}"
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
    on_result: Callable[[ProbeResult], None] | None = None,
) -> list[ProbeResult]:
    """Probe every target, at most ``concurrency`` at a time; results in the targets' order.

    ``on_result`` is called with each result as soon as it is known (completion order), so a
    person sees the fast registries while a slow one is still being asked.
    """
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    gate = asyncio.Semaphore(concurrency)

    async def one(target: ProbeTarget) -> ProbeResult:
        async with gate:
            result = await probe(client, target, policy)
        if on_result is not None:
            on_result(result)
        return result

    return list(await asyncio.gather(*(one(t) for t in targets)))
