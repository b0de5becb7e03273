"""A hostile registry: what the real one cannot do (huge or trickling bodies, hostile Locations).

The real registry (``tests/rigs/registry.py``) answers honestly; a hostile one answers in the
same wire format (distribution's ``/v2/`` API, its JSON error bodies, its challenges) but:

- ``body_size``: every answer that has a body (the token, errors) is this many bytes long
  (``Content-Length`` says so), sent in 64 KiB chunks until the client hangs up;
- ``trickle``: every body is sent one byte per second instead;
- ``redirect_authenticated``: ``GET /v2/`` with credentials answers ``307`` to this URL;
- ``redirect_anonymous``: ``GET /v2/`` without credentials answers ``307`` to this URL (relative
  URLs allowed: ``/v2/`` makes an endless loop);
- ``upload_location``: ``POST /v2/<repo>/blobs/uploads/`` answers ``202`` with this ``Location``;
- ``auth``: ``"basic"`` (``users``) or ``"bearer"`` (realm ``realm`` or its own ``/token``).

Every request is recorded (:attr:`HostileRegistry.requests`: method, path, whether it carried an
``Authorization`` header); :attr:`HostileRegistry.bytes_sent` counts body bytes written. Listens
on ``host`` (127.0.0.1, or 127.0.0.2 as "another host"), plain HTTP or TLS with a
:class:`tests.rigs.registry.TestCA` certificate.

Usage::

    with start_hostile(auth="bearer", body_size=1 << 30) as reg:
        ...  # probe ProbeTarget(reg.host, cred, endpoint=reg.url)
"""

from __future__ import annotations

import base64
import json
import ssl
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.rigs.registry import TestCA

_CHUNK = 64 * 1024
_UNAUTHORIZED = {
    "errors": [{"code": "UNAUTHORIZED", "message": "authentication required", "detail": None}]
}


@dataclass(frozen=True, slots=True)
class Seen:
    method: str
    path: str
    authorized: bool


@dataclass
class HostileRegistry:
    server: ThreadingHTTPServer
    scheme: str
    auth: str = "basic"
    users: Mapping[str, str] = field(default_factory=dict)
    realm: str | None = None
    body_size: int | None = None
    trickle: bool = False
    redirect_authenticated: str | None = None
    redirect_anonymous: str | None = None
    upload_location: str | None = None
    requests: list[Seen] = field(default_factory=list)
    bytes_sent: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def host(self) -> str:
        address, port = self.server.server_address[:2]
        return f"{address}:{port}"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def challenge(self) -> str:
        if self.auth == "bearer":
            realm = self.realm or f"{self.url}/token"
            return f'Bearer realm="{realm}",service="hostile"'
        return 'Basic realm="hostile"'

    def accepts(self, authorization: str | None) -> bool:
        if not authorization:
            return False
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer":
            return value == "hostile-token"
        try:
            user, _, password = base64.b64decode(value).decode().partition(":")
        except ValueError:
            return False
        return self.users.get(user) == password


def _handler(holder: list[HostileRegistry]) -> type[BaseHTTPRequestHandler]:
    """The request handler of the registry ``holder[0]`` (set once the server exists)."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        @property
        def reg(self) -> HostileRegistry:
            return holder[0]

        def log_message(self, format: str, *args: Any) -> None:
            return

        def _body(self, status: int, body: bytes, headers: Mapping[str, str] = {}) -> None:
            size = self.reg.body_size if self.reg.body_size is not None else len(body)
            self.send_response(status)
            self.send_header("Docker-Distribution-API-Version", "registry/2.0")
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(size))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            if self.command == "HEAD":
                return
            try:
                for piece in _pieces(body, size, 1 if self.reg.trickle else _CHUNK):
                    self.wfile.write(piece)
                    self._count(len(piece))
                    if self.reg.trickle:
                        self.wfile.flush()
                        time.sleep(1)
            except OSError:
                self.close_connection = True  # the client hung up: what a bounded reader does

        def _count(self, amount: int) -> None:
            with self.reg.lock:
                self.reg.bytes_sent += amount

        def _handle(self) -> None:
            authorization = self.headers.get("Authorization")
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            with self.reg.lock:
                self.reg.requests.append(Seen(self.command, self.path, bool(authorization)))
            path = self.path.split("?")[0]
            authorized = self.reg.accepts(authorization)
            if path == "/token":
                token = json.dumps({"token": "hostile-token", "expires_in": 300}).encode()
                self._body(200, token)
                return
            if path == "/v2/" and authorization and self.reg.redirect_authenticated:
                self._redirect(self.reg.redirect_authenticated)
                return
            if path == "/v2/" and not authorization and self.reg.redirect_anonymous:
                self._redirect(self.reg.redirect_anonymous)
                return
            if not authorized:
                self._body(
                    401,
                    json.dumps(_UNAUTHORIZED).encode(),
                    {"WWW-Authenticate": self.reg.challenge()},
                )
                return
            if self.command == "POST" and path.endswith("/blobs/uploads/"):
                location = self.reg.upload_location or f"{path}hostile-upload"
                self._body(202, b"", {"Location": location, "Docker-Upload-UUID": "hostile"})
                return
            self._body(200 if self.command != "DELETE" else 204, b"{}")

        def _redirect(self, location: str) -> None:
            self.send_response(307)
            self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_POST = do_DELETE = do_HEAD = do_PUT = do_PATCH = _handle

    return Handler


def _pieces(body: bytes, size: int, piece: int) -> Iterator[bytes]:
    """``body`` padded with spaces (JSON whitespace) to ``size`` bytes, ``piece`` at a time,
    without ever holding more than one piece of the padding."""
    head = body[:size]
    for start in range(0, len(head), piece):
        yield head[start : start + piece]
    left = size - len(head)
    while left > 0:
        yield b" " * min(piece, left)
        left -= piece


@contextmanager
def start_hostile(
    *, host: str = "127.0.0.1", tls: TestCA | None = None, **behaviour: Any
) -> Iterator[HostileRegistry]:
    """A hostile registry listening on ``host`` (a free port), stopped on exit."""

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        block_on_close = False

    holder: list[HostileRegistry] = []
    server = Server((host, 0), _handler(holder))
    if tls is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(tls.cert_file), str(tls.key_file))
        server.socket = context.wrap_socket(server.socket, server_side=True)
    reg = HostileRegistry(server, "https" if tls else "http", **behaviour)
    holder.append(reg)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield reg
    finally:
        reg.stop()
        thread.join(timeout=5)
