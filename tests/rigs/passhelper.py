"""The real ``pass`` credential helper (``docker-credential-pass``) with a throwaway key and store.

Usage::

    from tests.rigs.passhelper import start_pass

    with start_pass(tmp_path / "pass") as helper:
        store = HelperStore("pass", env=helper.env)    # regauthd.dockerconfig.stores
        sandbox = Sandbox.create(tmp_path / "clients", helpers=("pass",), env=helper.gpg_env)
        helper.store("docker.io", "alice", "s3cret")   # what an old `docker login` left behind

``start_pass`` makes a private ``GNUPGHOME`` (a key without passphrase:
``gpg --batch --passphrase '' --quick-gen-key NAME future-default default never``), a
``PASSWORD_STORE_DIR``, and runs ``pass init FPR``. ``pass`` and the helper are the private
copies in ``.tools/`` (:mod:`tests.rigs.tools`), never the host's. ``env`` is a whole environment
for running the helper: PATH without any other ``docker-credential-*``, the two variables above,
HOME inside the rig. ``stop()`` kills the gpg-agent this rig started (``gpgconf --kill gpg-agent``
with that GNUPGHOME) and is safe to call twice.

Pytest fixture (import it into a test module or conftest): ``pass_helper``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.rigs.tools import tool_path

HELPER = "docker-credential-pass"
_TIMEOUT_S = 60.0


class PassRigError(RuntimeError):
    """gpg or pass failed while setting the rig up."""


@dataclass
class PassHelper:
    """A ready ``pass`` store. ``env`` is the complete environment to run the helper with."""

    root: Path
    gnupg_home: Path
    store_dir: Path
    fingerprint: str
    env: dict[str, str]
    _stopped: bool = field(default=False, repr=False)

    @property
    def gpg_env(self) -> dict[str, str]:
        """Only the variables a client needs added to its own environment to use this store."""
        return {"GNUPGHOME": str(self.gnupg_home), "PASSWORD_STORE_DIR": str(self.store_dir)}

    def _helper(self, verb: str, stdin: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [HELPER, verb],
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env,
            timeout=_TIMEOUT_S,
            check=False,
        )

    def store(self, server_url: str, username: str, secret: str) -> None:
        """Put a credential in the store the way ``docker login`` does (helper protocol)."""
        payload = json.dumps({"ServerURL": server_url, "Username": username, "Secret": secret})
        proc = self._helper("store", payload)
        if proc.returncode != 0:
            raise PassRigError(f"{HELPER} store {server_url!r} failed (exit {proc.returncode})")

    def get(self, server_url: str) -> tuple[str, str] | None:
        """(username, secret) stored under exactly ``server_url``, or None.

        docker-credential-helpers 0.6 answers a missing entry with empty fields and exit 0;
        later versions print "credentials not found in native keychain" and exit 1. Both: None.
        """
        proc = self._helper("get", server_url)
        if proc.returncode != 0:
            if "credentials not found" in proc.stdout:
                return None
            raise PassRigError(f"{HELPER} get {server_url!r} failed (exit {proc.returncode})")
        data = json.loads(proc.stdout)
        if not data.get("Username") and not data.get("Secret"):
            return None
        return str(data["Username"]), str(data["Secret"])

    def list(self) -> dict[str, str]:
        proc = self._helper("list", "")
        if proc.returncode != 0:
            raise PassRigError(f"{HELPER} list failed (exit {proc.returncode})")
        data = json.loads(proc.stdout or "{}")
        return {str(k): str(v) for k, v in data.items()}

    def stop(self) -> None:
        """Kill the gpg-agent started for this GNUPGHOME and remove the short-path home."""
        if self._stopped:
            return
        self._stopped = True
        gpgconf = shutil.which("gpgconf")
        if gpgconf is not None and self.gnupg_home.exists():
            subprocess.run(
                [gpgconf, "--kill", "gpg-agent"],
                env={**self.env, "GNUPGHOME": str(self.gnupg_home)},
                capture_output=True,
                timeout=_TIMEOUT_S,
                check=False,
            )
        shutil.rmtree(self.gnupg_home, ignore_errors=True)

    def __enter__(self) -> PassHelper:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _helper_path(root: Path) -> str:
    """PATH with the pass helper and the system's programs, but no other credential helper."""
    from tests.rigs.clients import Sandbox

    return Sandbox.create(root / "path", helpers=("pass",)).path


def start_pass(root: Path, *, key_name: str = "regauthd test key") -> PassHelper:
    """Generate a throwaway gpg key, initialise a pass store with it, return the rig."""
    for program in ("gpg", "gpgconf"):
        if shutil.which(program) is None and not os.access(f"/usr/bin/{program}", os.X_OK):
            raise PassRigError(f"{program} not found (Debian package: gnupg)")
    for program in ("pass", HELPER):
        if tool_path(program) is None:
            raise PassRigError(f"{program} not unpacked into .tools/ (python -m tests.rigs.tools)")
    root.mkdir(parents=True, exist_ok=True)
    # gpg-agent's socket lives in GNUPGHOME and a UNIX socket path must stay under 108 bytes:
    # pytest's tmp_path can be longer, so the home gets a short path of its own.
    gnupg_home = Path(tempfile.mkdtemp(prefix="rgd-gpg-", dir="/tmp"))
    gnupg_home.chmod(0o700)
    store_dir = root / "password-store"
    home = root / "home"
    home.mkdir(exist_ok=True)
    env = {
        "PATH": _helper_path(root),
        "HOME": str(home),
        "GNUPGHOME": str(gnupg_home),
        "PASSWORD_STORE_DIR": str(store_dir),
        "LANG": "C.UTF-8",
    }
    helper = PassHelper(root, gnupg_home, store_dir, "", env)
    try:
        gen = subprocess.run(
            # future-default (ed25519/cv25519) takes milliseconds; rsa3072 ("default") a second.
            [
                "gpg",
                "--batch",
                "--passphrase",
                "",
                "--quick-gen-key",
                key_name,
                "future-default",
                "default",
                "never",
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=_TIMEOUT_S,
            check=False,
        )
        if gen.returncode != 0:
            raise PassRigError(f"gpg --quick-gen-key failed: {gen.stderr[-1000:]}")
        listing = subprocess.run(
            ["gpg", "--batch", "--list-secret-keys", "--with-colons"],
            capture_output=True,
            text=True,
            env=env,
            timeout=_TIMEOUT_S,
            check=True,
        ).stdout
        fingerprint = next(
            line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:")
        )
        init = subprocess.run(
            ["pass", "init", fingerprint],
            capture_output=True,
            text=True,
            env=env,
            timeout=_TIMEOUT_S,
            check=False,
        )
        if init.returncode != 0:
            raise PassRigError(f"pass init failed: {init.stderr[-1000:]}")
    except BaseException:
        helper.stop()
        raise
    helper.fingerprint = fingerprint
    return helper


@pytest.fixture
def pass_helper(tmp_path: Path) -> Iterator[PassHelper]:
    """A fresh pass store (skips, or fails under CI, when gpg/pass/the helper are missing)."""
    from tests.conftest import require_program, require_tool

    require_program("gpg", "gnupg")
    require_program("tree", "tree")
    require_tool("pass")
    require_tool(HELPER)
    helper = start_pass(tmp_path / "pass")
    try:
        yield helper
    finally:
        helper.stop()
