"""A real registry for the tests: Debian's ``docker-registry`` (distribution 2.8) on loopback.

Usage::

    from tests.rigs.registry import start_registry, push_tiny_image

    reg = start_registry(tmp_path, users={"alice": "s3cret"})  # htpasswd (bcrypt) auth
    try:
        push_tiny_image(reg, "team/app", "v1", "alice", "s3cret")
        # `docker manifest inspect --insecure {reg.host}/team/app:v1` now works with alice's login
    finally:
        reg.stop()

Three auth modes, chosen with ``auth=``:

- ``"htpasswd"``: Basic auth against an htpasswd file made with ``htpasswd -B`` (the registry
  accepts bcrypt lines only).
- ``"token"``: Docker Hub's protocol. A :class:`tests.rigs.tokenissuer.TokenIssuer` is started
  (or pass your own with ``issuer=``) and the registry trusts the certificate it signs with.
  ``users`` is then a shortcut for users allowed to push and pull everything; pass
  ``grants=`` (see the token issuer) for pull-only users and finer rules.
- ``"none"``: no auth at all (anyone may push).

``tls=True`` serves HTTPS with a certificate for ``127.0.0.1`` and ``localhost`` issued by a
throwaway ``trustme`` CA whose PEM is at ``reg.ca_file``. In token mode the issuer then serves
HTTPS with the same CA.

Pytest fixture (import it into ``tests/conftest.py``): ``registry_factory`` is a callable with
the same keyword arguments as :func:`start_registry` (minus ``tmp_path``); every registry it
started is stopped at teardown.

Every process is started by this module on 127.0.0.1 with a free port and stopped by PID.
``REGISTRY_*`` variables of the caller's environment are removed (they override the file).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import socket
import ssl
import subprocess
import tarfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

if TYPE_CHECKING:
    from tests.rigs.tokenissuer import Grant, TokenIssuer

REGISTRY_PROGRAM = "docker-registry"
_START_TIMEOUT_S = 15.0
_START_ATTEMPTS = 3

MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG_V1 = "application/vnd.docker.container.image.v1+json"
LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"


class RegistryStartError(RuntimeError):
    """The registry process did not come up; the message carries its log."""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (callers retry when they lose the race)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def registry_program() -> str | None:
    return shutil.which(REGISTRY_PROGRAM) or (
        "/usr/bin/docker-registry" if os.access("/usr/bin/docker-registry", os.X_OK) else None
    )


def clean_env() -> dict[str, str]:
    """The environment without ``REGISTRY_*`` variables, which would override the config file."""
    return {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}


@dataclass(frozen=True, slots=True)
class TestCA:
    """A throwaway CA and a server certificate for 127.0.0.1/localhost, as PEM files."""

    ca_file: Path
    cert_file: Path
    key_file: Path

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))


def make_test_ca(directory: Path) -> TestCA:
    import trustme

    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    ca_file = directory / "ca.pem"
    cert_file = directory / "server.pem"
    key_file = directory / "server.key"
    ca.cert_pem.write_to_path(str(ca_file))
    # The registry wants the chain (leaf first) in one file and the key in another.
    cert_file.write_bytes(b"".join(blob.bytes() for blob in server.cert_chain_pems))
    server.private_key_pem.write_to_path(str(key_file))
    key_file.chmod(0o600)
    return TestCA(ca_file, cert_file, key_file)


def write_htpasswd(path: Path, users: Mapping[str, str]) -> None:
    """bcrypt lines made by ``htpasswd -B`` (password on stdin, never on the command line)."""
    htpasswd = shutil.which("htpasswd")
    if htpasswd is None:
        raise RegistryStartError("htpasswd not found (Debian package: apache2-utils)")
    lines = []
    for user, password in users.items():
        out = subprocess.run(
            [htpasswd, "-i", "-B", "-C", "4", "-n", user],
            input=password,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        lines.append(out)
    path.write_text("\n".join(lines) + "\n")


@dataclass
class RunningRegistry:
    """A started ``docker-registry``. ``host`` is ``127.0.0.1:PORT``; ``url`` has the scheme."""

    host: str
    url: str
    auth: str
    root: Path
    process: subprocess.Popen[bytes]
    log_file: Path
    ca_file: Path | None = None
    issuer: TokenIssuer | None = None
    users: dict[str, str] = field(default_factory=dict)
    _owns_issuer: bool = False

    @property
    def port(self) -> int:
        return int(self.host.rsplit(":", 1)[1])

    def verify(self) -> ssl.SSLContext | bool:
        """What to give httpx as ``verify=`` to talk to this registry."""
        return ssl.create_default_context(cafile=str(self.ca_file)) if self.ca_file else True

    def log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def stop(self) -> None:
        stop_process(self.process)
        if self.issuer is not None and self._owns_issuer:
            self.issuer.stop()

    def __enter__(self) -> RunningRegistry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def _config(
    port: int,
    storage: Path,
    auth_section: dict[str, Any] | None,
    tls: TestCA | None,
) -> dict[str, Any]:
    http: dict[str, Any] = {"addr": f"127.0.0.1:{port}", "secret": "rig-http-secret"}
    if tls is not None:
        http["tls"] = {"certificate": str(tls.cert_file), "key": str(tls.key_file)}
    config: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "info", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(storage)}, "delete": {"enabled": True}},
        "http": http,
    }
    if auth_section is not None:
        config["auth"] = auth_section
    return config


def _wait_ready(proc: subprocess.Popen[bytes], url: str, verify: ssl.SSLContext | bool) -> bool:
    deadline = time.monotonic() + _START_TIMEOUT_S
    with httpx.Client(verify=verify, timeout=1.0) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return False
            try:
                client.get(f"{url}/v2/")
                return True
            except httpx.TransportError:
                time.sleep(0.02)
    return False


def start_registry(
    tmp_path: Path,
    *,
    users: Mapping[str, str] | None = None,
    auth: str = "htpasswd",
    tls: bool = False,
    issuer: TokenIssuer | None = None,
    grants: Mapping[str, Grant] | None = None,
    service: str = "rig-registry",
    realm_host: str = "127.0.0.1",
    name: str = "registry",
) -> RunningRegistry:
    """Start ``docker-registry`` and return once it answers ``GET /v2/``.

    ``users`` maps user name to password. ``auth`` is ``"htpasswd"``, ``"token"`` or ``"none"``.
    Token mode: ``issuer`` (started by you, stopped by you) or a new one made from ``users`` /
    ``grants`` with ``realm_host`` as the host in its realm URL (stopped with the registry).
    """
    program = registry_program()
    if program is None:
        raise RegistryStartError("docker-registry not found (Debian package: docker-registry)")
    users = dict(users or {})
    workdir = tmp_path / f"{name}-{os.urandom(3).hex()}"
    workdir.mkdir(parents=True)
    ca = make_test_ca(workdir / "tls") if tls else None

    auth_section: dict[str, Any] | None
    owns_issuer = False
    if auth == "htpasswd":
        htpasswd_file = workdir / "htpasswd"
        write_htpasswd(htpasswd_file, users)
        auth_section = {"htpasswd": {"realm": "rig-basic-realm", "path": str(htpasswd_file)}}
    elif auth == "token":
        if issuer is None:
            from tests.rigs.tokenissuer import start_issuer

            issuer = start_issuer(
                workdir / "issuer",
                users=users,
                grants=grants,
                service=service,
                tls=ca,
                realm_host=realm_host,
            )
            owns_issuer = True
        auth_section = {
            "token": {
                "realm": issuer.realm,
                "service": issuer.service,
                "issuer": issuer.issuer_name,
                "rootcertbundle": str(issuer.bundle_file),
            }
        }
    elif auth == "none":
        auth_section = None
    else:
        raise ValueError(f"unknown auth mode {auth!r}: use htpasswd, token or none")

    scheme = "https" if tls else "http"
    verify: ssl.SSLContext | bool = ca.client_context() if ca else True
    log_file = workdir / "registry.log"
    last_log = ""
    try:
        for _ in range(_START_ATTEMPTS):
            port = free_port()
            config_file = workdir / "config.yml"
            # JSON is YAML: no YAML library needed.
            config_file.write_text(
                json.dumps(_config(port, workdir / "storage", auth_section, ca), indent=2)
            )
            with log_file.open("wb") as log:
                proc = subprocess.Popen(
                    [program, "serve", str(config_file)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=clean_env(),
                    cwd=workdir,
                )
            url = f"{scheme}://127.0.0.1:{port}"
            if _wait_ready(proc, url, verify):
                return RunningRegistry(
                    host=f"127.0.0.1:{port}",
                    url=url,
                    auth=auth,
                    root=workdir,
                    process=proc,
                    log_file=log_file,
                    ca_file=ca.ca_file if ca else None,
                    issuer=issuer,
                    users=users,
                    _owns_issuer=owns_issuer,
                )
            stop_process(proc)
            last_log = log_file.read_text(errors="replace")
    except BaseException:
        if owns_issuer and issuer is not None:
            issuer.stop()
        raise
    if owns_issuer and issuer is not None:
        issuer.stop()
    raise RegistryStartError(f"docker-registry did not start; last log:\n{last_log[-4000:]}")


# ---------------------------------------------------------------------------------------------
# Pushing a tiny image with plain HTTP calls (no engine needed)


def _tiny_layer() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = b"hello from the regauthd test rig\n"
        info = tarfile.TarInfo("hello.txt")
        info.size = len(data)
        info.mtime = 0
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def tiny_image() -> tuple[bytes, bytes, bytes]:
    """(layer blob, config blob, schema2 manifest) of a one-file image. Deterministic."""
    tar = _tiny_layer()
    layer = gzip.compress(tar, mtime=0)
    diff_id = "sha256:" + hashlib.sha256(tar).hexdigest()
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            "history": [{"created_by": "regauthd test rig"}],
        },
        sort_keys=True,
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST_V2,
            "config": {"mediaType": CONFIG_V1, "size": len(config), "digest": _digest(config)},
            "layers": [{"mediaType": LAYER_GZIP, "size": len(layer), "digest": _digest(layer)}],
        },
        indent=3,
    ).encode()
    return layer, config, manifest


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _bearer_token(
    client: httpx.Client, challenge: str, scope: str, username: str, password: str
) -> str:
    params = dict(part.split("=", 1) for part in _challenge_params(challenge))
    query = {"service": params.get("service", ""), "scope": scope}
    resp = client.get(params["realm"], params=query, auth=(username, password))
    resp.raise_for_status()
    body = resp.json()
    return str(body.get("token") or body["access_token"])


def _challenge_params(challenge: str) -> list[str]:
    # The rig only meets the registry's own challenges: simple quoted values without commas.
    _, _, rest = challenge.partition(" ")
    return [p.strip().replace('"', "") for p in rest.split(",") if "=" in p]


def push_tiny_image(
    registry: RunningRegistry,
    repo: str,
    tag: str,
    username: str | None = None,
    password: str | None = None,
) -> str:
    """Push a one-layer schema2 image as ``repo:tag``; returns the manifest digest.

    Authenticates the way the registry asks (Basic, or a Bearer token for ``pull,push``).
    """
    layer, config, manifest = tiny_image()
    with httpx.Client(verify=registry.verify(), timeout=10.0) as client:
        headers: dict[str, str] = {}
        probe = client.get(f"{registry.url}/v2/")
        if probe.status_code == 401:
            if username is None or password is None:
                raise ValueError("the registry wants credentials: pass username and password")
            challenge = probe.headers["www-authenticate"]
            if challenge.lower().startswith("bearer"):
                token = _bearer_token(
                    client, challenge, f"repository:{repo}:pull,push", username, password
                )
                headers["Authorization"] = f"Bearer {token}"
            else:
                client.auth = httpx.BasicAuth(username, password)
        for blob in (layer, config):
            start = client.post(f"{registry.url}/v2/{repo}/blobs/uploads/", headers=headers)
            _expect(start, 202, "start blob upload")
            location = httpx.URL(registry.url).join(start.headers["location"])
            # params= would replace the upload URL's own query (_state): merge instead.
            put_url = location.copy_merge_params({"digest": _digest(blob)})
            done = client.put(
                put_url,
                content=blob,
                headers={**headers, "Content-Type": "application/octet-stream"},
            )
            _expect(done, 201, "finish blob upload")
        resp = client.put(
            f"{registry.url}/v2/{repo}/manifests/{tag}",
            content=manifest,
            headers={**headers, "Content-Type": MANIFEST_V2},
        )
        _expect(resp, 201, "put manifest")
    return _digest(manifest)


def _expect(resp: httpx.Response, status: int, what: str) -> None:
    if resp.status_code != status:
        raise RuntimeError(f"{what}: HTTP {resp.status_code} {resp.text[:300]}")


# ---------------------------------------------------------------------------------------------
# Pytest fixtures

RegistryFactory = Callable[..., RunningRegistry]


def _require_programs(auth: str | None = None) -> None:
    """Skip (fail under CI) without ``docker-registry``, or ``htpasswd`` for htpasswd auth."""
    from tests.conftest import require_program

    require_program(REGISTRY_PROGRAM, "docker-registry")
    if auth == "htpasswd":
        require_program("htpasswd", "apache2-utils")


def start_registry_or_skip(directory: Path, **kwargs: Any) -> RunningRegistry:
    """:func:`start_registry`, first skipping (failing under CI) when a program it needs is
    missing. For fixtures ``registry_factory`` cannot serve (module scope): use a with-block."""
    _require_programs(kwargs.get("auth", "htpasswd"))
    return start_registry(directory, **kwargs)


@pytest.fixture
def registry_factory(tmp_path: Path) -> Iterator[RegistryFactory]:
    """``registry_factory(users={...}, auth="htpasswd"|"token"|"none", tls=False, ...)``.

    Skips (fails under CI) when ``docker-registry`` or ``htpasswd`` is missing. Every registry
    started through it is stopped at teardown.
    """
    _require_programs()
    started: list[RunningRegistry] = []

    def factory(**kwargs: Any) -> RunningRegistry:
        _require_programs(kwargs.get("auth", "htpasswd"))
        reg = start_registry(tmp_path, **kwargs)
        started.append(reg)
        return reg

    try:
        yield factory
    finally:
        for reg in reversed(started):
            reg.stop()
