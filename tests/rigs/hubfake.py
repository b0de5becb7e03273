"""The only fake in the suite: a server that answers like Docker Hub for rate limits and 429s.

The real registry cannot send ``ratelimit-*`` headers or ``429 toomanyrequests``; Docker Hub
does. This server plays both ``registry-1.docker.io`` and ``auth.docker.io`` on one loopback
port, with Hub's wire format:

- ``GET /v2/`` without a token: 401 ``Bearer realm="http://127.0.0.1:P/token",
  service="registry.docker.io"``; with a token: 200.
- ``GET /token?service=registry.docker.io&scope=...`` (Basic credentials or anonymous):
  ``{"token", "access_token", "expires_in": 300, "issued_at"}``; wrong password: 401
  ``{"details": "incorrect username or password"}``. The JWT carries an ``access`` claim (signed
  with a throwaway HMAC key: clients never verify Hub tokens).
- ``HEAD|GET /v2/<repo>/manifests/<ref>`` with a token: 200 plus ``ratelimit-limit: L;w=21600``
  and ``ratelimit-remaining: R;w=21600`` (no headers when ``limit`` is None, like a paid
  account), or 429 with ``{"errors":[{"code":"TOOMANYREQUESTS","message":"You have reached your
  pull rate limit. ..."}]}`` when ``rate_limited``.
- ``token_status=429`` makes the token endpoint itself answer 429 (Hub's auth rate limit).

Change the attributes of :class:`HubFake` between probes. Usage::

    with start_hub_fake(users={"alice": "pw"}, remaining=42) as hub:
        ...  # probe target docker.io with endpoint hub.url
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import secrets
import threading
import time
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest

from tests.rigs.tokenissuer import Grant, parse_scope

HUB_SERVICE = "registry.docker.io"
WINDOW_S = 21600
TOO_MANY_REQUESTS = (
    "You have reached your pull rate limit. You may increase the limit by authenticating and "
    "upgrading: https://www.docker.com/increase-rate-limit"
)


class HubFake:
    """A running Hub look-alike. ``url`` is ``http://127.0.0.1:PORT``."""

    def __init__(
        self,
        *,
        users: Mapping[str, str] | None = None,
        grants: Mapping[str, Grant] | None = None,
        limit: int | None = 100,
        remaining: int | None = 100,
        rate_limited: bool = False,
        retry_after: int | None = None,
        token_status: int | None = None,
    ) -> None:
        self.grants: dict[str, Grant] = {
            # On Hub an account may push to its own namespace and pull everything public.
            u: Grant(p, {f"{u}/*": frozenset({"pull", "push"}), "*": frozenset({"pull"})})
            for u, p in (users or {}).items()
        }
        self.grants.update(grants or {})
        self.limit = limit
        self.remaining = remaining
        self.rate_limited = rate_limited
        self.retry_after = retry_after
        self.token_status = token_status
        self.requests: list[tuple[str, str, str | None]] = []
        """(method, path, Basic user or None) of every request; never a secret."""
        self._key = secrets.token_bytes(32)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.realm = f"{self.url}/token"
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="hub-fake", daemon=True
        )
        self._thread.start()

    def token(self, user: str | None, scopes: list[str]) -> str:
        grant = self.grants.get(user or "")
        access = []
        for scope in scopes:
            parsed = parse_scope(scope)
            if parsed is None:
                continue
            kind, name, requested = parsed
            # Anonymous users may pull public images on Hub.
            allowed = grant.actions_for(name) if grant else frozenset({"pull"})
            access.append({"type": kind, "name": name, "actions": sorted(requested & allowed)})
        now = int(time.time())
        claims = {
            "iss": "auth.docker.io",
            "sub": user or "",
            "aud": HUB_SERVICE,
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now,
            "jti": secrets.token_hex(8),
            "access": access,
        }
        return jwt.encode(claims, self._key, algorithm="HS256")

    def token_valid(self, token: str) -> bool:
        try:
            jwt.decode(token, self._key, algorithms=["HS256"], audience=HUB_SERVICE)
        except jwt.InvalidTokenError:
            return False
        return True

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> HubFake:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _make_handler(hub: HubFake) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in two writes: without this, Nagle plus the client's delayed
        # ACK add ~40 ms to every answer.
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(
            self, status: int, body: dict[str, Any] | None, headers: Mapping[str, str] = {}
        ) -> None:
            data = json.dumps(body).encode() if body is not None else b""
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def _basic_user(self) -> tuple[str, str] | None:
            scheme, _, value = self.headers.get("Authorization", "").partition(" ")
            if scheme.lower() != "basic":
                return None
            user, _, password = base64.b64decode(value).decode().partition(":")
            return user, password

        def _bearer_ok(self) -> bool:
            scheme, _, value = self.headers.get("Authorization", "").partition(" ")
            return scheme.lower() == "bearer" and hub.token_valid(value)

        def _rate_headers(self) -> dict[str, str]:
            headers: dict[str, str] = {}
            if hub.limit is not None:
                headers["ratelimit-limit"] = f"{hub.limit};w={WINDOW_S}"
                remaining = 0 if hub.rate_limited else (hub.remaining or 0)
                headers["ratelimit-remaining"] = f"{remaining};w={WINDOW_S}"
                headers["docker-ratelimit-source"] = "127.0.0.1"
            return headers

        def _too_many(self) -> None:
            headers = self._rate_headers()
            if hub.retry_after is not None:
                headers["Retry-After"] = str(hub.retry_after)
            body = {"errors": [{"code": "TOOMANYREQUESTS", "message": TOO_MANY_REQUESTS}]}
            self._send(429, body, headers)

        def _token(self) -> None:
            query = parse_qs(urlsplit(self.path).query)
            scopes = [s for v in query.get("scope", []) for s in v.split(" ") if s]
            creds = self._basic_user()
            with hub._lock:
                hub.requests.append(("GET", "/token", creds[0] if creds else None))
            if hub.token_status is not None:
                if hub.token_status == 429:
                    body = {"details": "too many failed login attempts for username or IP"}
                    self._send(429, body, {"Retry-After": str(hub.retry_after or 60)})
                else:
                    self._send(hub.token_status, {"details": "error"})
                return
            user = None
            if creds is not None:
                grant = hub.grants.get(creds[0])
                if grant is None or not secrets.compare_digest(grant.password, creds[1]):
                    self._send(401, {"details": "incorrect username or password"})
                    return
                user = creds[0]
            token = hub.token(user, scopes)
            issued = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            body = {"token": token, "access_token": token, "expires_in": 300, "issued_at": issued}
            self._send(200, body)

        def do_GET(self) -> None:
            self._route()

        def do_HEAD(self) -> None:
            self._route()

        def _route(self) -> None:
            path = urlsplit(self.path).path
            if path == "/token" and self.command == "GET":
                self._token()
                return
            with hub._lock:
                hub.requests.append((self.command, path, None))
            if not path.startswith("/v2/"):
                self._send(404, {"errors": [{"code": "NOT_FOUND", "message": "not found"}]})
                return
            if not self._bearer_ok():
                challenge = f'Bearer realm="{hub.realm}",service="{HUB_SERVICE}"'
                body = {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]}
                self._send(401, body, {"www-authenticate": challenge})
                return
            if path == "/v2/":
                self._send(200, {})
                return
            if "/manifests/" in path:
                if hub.rate_limited:
                    self._too_many()
                    return
                headers = {
                    **self._rate_headers(),
                    "Docker-Content-Digest": "sha256:" + "0" * 64,
                }
                self._send(200, {}, headers)
                return
            self._send(404, {"errors": [{"code": "NAME_UNKNOWN", "message": "unknown"}]})

    return Handler


def start_hub_fake(**kwargs: Any) -> HubFake:
    return HubFake(**kwargs)


@pytest.fixture
def hub_fake() -> Iterator[HubFake]:
    """A Hub look-alike with user ``hubuser``/``hub-pass-1`` and 100 pulls per 6 h, 76 left."""
    hub = HubFake(users={"hubuser": "hub-pass-1"}, limit=100, remaining=76)
    try:
        yield hub
    finally:
        hub.stop()
