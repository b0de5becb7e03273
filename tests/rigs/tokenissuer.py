"""The tests' own token issuer: Docker's token authentication protocol, as registry 2.8 wants it.

A small HTTP(S) server in a thread of the test process, on 127.0.0.1 with a free port.

- ``GET /token?service=S&scope=repository:NAME:pull,push[&scope=...][&offline_token=true]`` with
  HTTP Basic credentials (or none, for an anonymous token) answers
  ``{"token", "access_token", "expires_in", "issued_at"}`` (plus ``"refresh_token"`` when
  ``offline_token=true``), the way Docker Hub's ``auth.docker.io`` does. Wrong credentials: 401
  ``{"details": "incorrect username or password"}``.
- ``POST /token`` (OAuth2 form): ``grant_type=password`` (``username``, ``password``,
  ``access_type=offline`` for a refresh token) or ``grant_type=refresh_token``
  (``refresh_token``); answers ``{"access_token", "scope", "expires_in", "issued_at"}``. A revoked,
  expired or unknown refresh token: 400 ``{"error": "invalid_grant"}`` (RFC 6749 5.2).

The JWT is ES256 with an ``x5c`` header holding a self-signed certificate that is the registry's
``rootcertbundle``. Claims: iss, sub, aud (a string), exp, nbf, iat, jti and
``access=[{type, name, actions}]`` with the requested actions intersected with the allowed ones.

Rules per user are :class:`Grant` objects: a password and, per repository pattern (fnmatch), the
allowed actions. ``grants[""]`` applies to anonymous requests (default: nothing).

Every request is recorded in :attr:`TokenIssuer.requests` (without secrets) so tests can prove
where credentials were, or were not, sent.
"""

from __future__ import annotations

import base64
import datetime as dt
import fnmatch
import json
import secrets
import ssl
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

if TYPE_CHECKING:
    from tests.rigs.registry import TestCA

ALL_ACTIONS = frozenset({"pull", "push", "delete", "*"})


@dataclass(frozen=True)
class Grant:
    """A user's password and allowed actions per repository pattern (fnmatch, ``*`` = all)."""

    password: str
    allowed: Mapping[str, frozenset[str]] = field(
        default_factory=lambda: {"*": frozenset({"pull", "push"})}
    )

    @classmethod
    def push(cls, password: str) -> Grant:
        return cls(password, {"*": frozenset({"pull", "push"})})

    @classmethod
    def pull_only(cls, password: str) -> Grant:
        return cls(password, {"*": frozenset({"pull"})})

    def actions_for(self, repository: str) -> frozenset[str]:
        result: frozenset[str] = frozenset()
        for pattern, actions in self.allowed.items():
            if fnmatch.fnmatchcase(repository, pattern):
                result |= actions
        return result


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    user: str | None
    """The Basic user name or the refresh token's owner; never a secret."""
    grant_type: str | None
    scopes: tuple[str, ...]
    status: int


@dataclass
class _RefreshToken:
    user: str
    expires_at: float
    revoked: bool = False


def parse_scope(scope: str) -> tuple[str, str, frozenset[str]] | None:
    """``repository:team/app:pull,push`` -> (type, name, actions). Names never hold ':' here."""
    kind, sep, rest = scope.partition(":")
    name, sep2, actions = rest.rpartition(":")
    if not sep or not sep2 or not name:
        return None
    return kind, name, frozenset(a for a in actions.split(",") if a)


def _signing_identity(directory: Path) -> tuple[ec.EllipticCurvePrivateKey, bytes, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "regauthd test token signer")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    bundle = directory / "token-signer.pem"
    bundle.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key, cert.public_bytes(serialization.Encoding.DER), bundle


class TokenIssuer:
    """A running token issuer. Mutate :attr:`grants`, :attr:`access_ttl` freely between calls."""

    def __init__(
        self,
        directory: Path,
        *,
        grants: Mapping[str, Grant],
        service: str,
        issuer_name: str = "regauthd-test-issuer",
        tls: TestCA | None = None,
        realm_host: str = "127.0.0.1",
        access_ttl: int = 300,
        refresh_ttl: int = 3600,
    ) -> None:
        self.grants: dict[str, Grant] = dict(grants)
        self.service = service
        self.issuer_name = issuer_name
        self.access_ttl = access_ttl
        self.refresh_ttl = refresh_ttl
        self.requests: list[RecordedRequest] = []
        self._refresh: dict[str, _RefreshToken] = {}
        self._lock = threading.Lock()
        self._key, self._cert_der, self.bundle_file = _signing_identity(directory)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._server.daemon_threads = True
        scheme = "http"
        if tls is not None:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(str(tls.cert_file), str(tls.key_file))
            self._server.socket = ctx.wrap_socket(self._server.socket, server_side=True)
            scheme = "https"
        self.port = int(self._server.server_address[1])
        self.realm = f"{scheme}://{realm_host}:{self.port}/token"
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="token-issuer", daemon=True
        )
        self._thread.start()

    # -- administration used by tests -----------------------------------------------------

    def issue_refresh_token(self, user: str, *, ttl: int | None = None) -> str:
        """A refresh (identity) token for ``user``, as ``docker login`` would store it."""
        token = "rt-" + secrets.token_urlsafe(24)
        with self._lock:
            self._refresh[token] = _RefreshToken(
                user, time.time() + (self.refresh_ttl if ttl is None else ttl)
            )
        return token

    def revoke_refresh_tokens(self, user: str) -> None:
        with self._lock:
            for rt in self._refresh.values():
                if rt.user == user:
                    rt.revoked = True

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # -- the protocol ---------------------------------------------------------------------

    def _refresh_owner(self, token: str) -> str | None:
        with self._lock:
            rt = self._refresh.get(token)
            if rt is None or rt.revoked or rt.expires_at < time.time():
                return None
            return rt.user

    def _check_password(self, user: str, password: str) -> bool:
        grant = self.grants.get(user)
        return grant is not None and secrets.compare_digest(grant.password, password)

    def _granted(self, user: str | None, scopes: list[str]) -> list[dict[str, Any]]:
        grant = self.grants.get(user or "")
        access: list[dict[str, Any]] = []
        for scope in scopes:
            parsed = parse_scope(scope)
            if parsed is None:
                continue
            kind, name, requested = parsed
            allowed = grant.actions_for(name) if grant and kind == "repository" else frozenset()
            if "*" in allowed:
                allowed = ALL_ACTIONS
            actions = sorted(requested & allowed)
            access.append({"type": kind, "name": name, "actions": actions})
        return access

    def make_token(self, user: str | None, scopes: list[str]) -> tuple[str, int, str]:
        now = int(time.time())
        access = self._granted(user, scopes)
        claims = {
            "iss": self.issuer_name,
            "sub": user or "",
            "aud": self.service,
            "exp": now + self.access_ttl,
            "nbf": now - 10,
            "iat": now,
            "jti": secrets.token_hex(8),
            "access": access,
        }
        x5c = base64.b64encode(self._cert_der).decode("ascii")
        token = jwt.encode(claims, self._key, algorithm="ES256", headers={"x5c": [x5c]})
        issued_at = dt.datetime.fromtimestamp(now, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return token, self.access_ttl, issued_at


def _make_handler(issuer: TokenIssuer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in two writes: without this, Nagle plus the client's delayed
        # ACK add ~40 ms to every answer.
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the test output stays quiet; requests are recorded instead

        def _send(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _record(
            self, user: str | None, grant_type: str | None, scopes: list[str], status: int
        ) -> None:
            with issuer._lock:
                issuer.requests.append(
                    RecordedRequest(
                        self.command,
                        urlsplit(self.path).path,
                        user,
                        grant_type,
                        tuple(scopes),
                        status,
                    )
                )

        def _basic(self) -> tuple[str, str] | None:
            header = self.headers.get("Authorization", "")
            scheme, _, value = header.partition(" ")
            if scheme.lower() != "basic":
                return None
            try:
                user, _, password = base64.b64decode(value).decode().partition(":")
            except ValueError:
                return None
            return user, password

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            query = parse_qs(url.query)
            scopes = [s for value in query.get("scope", []) for s in value.split(" ") if s]
            if url.path != "/token":
                self._send(404, {"details": "not found"})
                return
            creds = self._basic()
            user: str | None = None
            if creds is not None:
                if not issuer._check_password(*creds):
                    self._record(creds[0], None, scopes, 401)
                    self._send(401, {"details": "incorrect username or password"})
                    return
                user = creds[0]
            token, ttl, issued_at = issuer.make_token(user, scopes)
            body: dict[str, Any] = {
                "token": token,
                "access_token": token,
                "expires_in": ttl,
                "issued_at": issued_at,
            }
            if user and query.get("offline_token", ["false"])[0] == "true":
                body["refresh_token"] = issuer.issue_refresh_token(user)
            self._record(user, None, scopes, 200)
            self._send(200, body)

        def do_POST(self) -> None:
            url = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            form = parse_qs(self.rfile.read(length).decode())

            def one(name: str) -> str:
                return form.get(name, [""])[0]

            scopes = [s for s in one("scope").split(" ") if s]
            grant_type = one("grant_type")
            if url.path != "/token":
                self._send(404, {"details": "not found"})
                return
            user: str | None = None
            if grant_type == "refresh_token":
                user = issuer._refresh_owner(one("refresh_token"))
                if user is None:
                    self._record(None, grant_type, scopes, 400)
                    self._send(400, {"error": "invalid_grant"})
                    return
            elif grant_type == "password":
                if not issuer._check_password(one("username"), one("password")):
                    self._record(one("username"), grant_type, scopes, 401)
                    self._send(401, {"error": "invalid_grant", "details": "bad credentials"})
                    return
                user = one("username")
            else:
                self._record(None, grant_type, scopes, 400)
                self._send(400, {"error": "unsupported_grant_type"})
                return
            token, ttl, issued_at = issuer.make_token(user, scopes)
            body: dict[str, Any] = {
                "access_token": token,
                "scope": " ".join(scopes),
                "expires_in": ttl,
                "issued_at": issued_at,
            }
            if grant_type == "password" and one("access_type") == "offline":
                body["refresh_token"] = issuer.issue_refresh_token(user)
            self._record(user, grant_type, scopes, 200)
            self._send(200, body)

    return Handler


def start_issuer(
    directory: Path,
    *,
    users: Mapping[str, str] | None = None,
    grants: Mapping[str, Grant] | None = None,
    service: str = "rig-registry",
    tls: TestCA | None = None,
    realm_host: str = "127.0.0.1",
    access_ttl: int = 300,
) -> TokenIssuer:
    """Start an issuer. ``users`` (name -> password) may push and pull everything; ``grants``
    adds or overrides finer rules."""
    all_grants: dict[str, Grant] = {u: Grant.push(p) for u, p in (users or {}).items()}
    all_grants.update(grants or {})
    return TokenIssuer(
        directory,
        grants=all_grants,
        service=service,
        tls=tls,
        realm_host=realm_host,
        access_ttl=access_ttl,
    )
