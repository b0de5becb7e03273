"""Unprivileged test users, for tests of the root service acting for users.

Usage (a pytest fixture, root only; skips on a laptop without root, fails under CI)::

    def test_x(test_users: UserFactory) -> None:
        alice = test_users.create()             # useradd, home in a private 0755 temp dir
        alice.write(".docker/config.json", b"{}")  # written as alice (her file, her dirs)
        alice.run(["pass", "ls"])               # any program, as alice, in her home
        alice.init_pass()                       # her own gpg key and pass store
        alice.pass_store("ghcr.io", "ci", "s3cret")

Users are named ``rgdt-...`` (``tests/conftest.py`` fails the session if one is left behind);
at teardown their gpg-agent is stopped (``gpgconf --kill``, as them), then ``userdel``, then
their homes are removed. Their PATH holds the private test tools (:mod:`tests.rigs.tools`).

Homes are ``<base>/home/<name>``, so ``<base>/home/*/.docker/config.json`` watches them all.
``unprivileged_users`` is the same factory as a function.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.rigs.tools import TOOLS_BIN

PREFIX = "rgdt-"
USER_PATH = f"{TOOLS_BIN}:/usr/local/bin:/usr/bin:/bin"
_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class RigUser:
    name: str
    uid: int
    gid: int
    home: Path

    @property
    def env(self) -> dict[str, str]:
        return {
            "HOME": str(self.home),
            "USER": self.name,
            "LOGNAME": self.name,
            "PATH": USER_PATH,
            "LANG": "C.UTF-8",
        }

    def own(self, *paths: Path) -> None:
        """Make ``paths`` this user's (as her own programs would have made them)."""
        for path in paths:
            os.chown(path, self.uid, self.gid, follow_symlinks=False)

    def run(
        self,
        argv: Sequence[str],
        *,
        stdin: str = "",
        check: bool = True,
        timeout: float = _TIMEOUT_S,
    ) -> subprocess.CompletedProcess[str]:
        """``argv`` as this user (no supplementary groups), in their home."""
        return subprocess.run(
            list(argv),
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env,
            cwd=self.home,
            user=self.uid,
            group=self.gid,
            extra_groups=[],
            timeout=timeout,
            check=check,
        )

    def write(self, relative: str, data: bytes) -> Path:
        """Write ``data`` to ``home/relative`` as this user would (their dirs, 0600 file)."""
        code = (
            "import os, sys\n"
            "p = sys.argv[1]\n"
            "os.makedirs(os.path.dirname(p), mode=0o700, exist_ok=True)\n"
            "fd = os.open(p + '.tmp', os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)\n"
            "os.write(fd, sys.stdin.buffer.read())\n"
            "os.close(fd)\n"
            "os.rename(p + '.tmp', p)\n"
        )
        path = self.home / relative
        proc = subprocess.run(
            ["/usr/bin/python3", "-c", code, str(path)],
            input=data,
            capture_output=True,
            env=self.env,
            cwd=self.home,
            user=self.uid,
            group=self.gid,
            extra_groups=[],
            timeout=_TIMEOUT_S,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        return path

    def init_pass(self) -> str:
        """A gpg key without passphrase and a ``pass`` store in this user's home; the key's
        fingerprint."""
        self.run(
            ["gpg", "--batch", "--passphrase", "", "--quick-gen-key", f"{self.name} key",
             "future-default", "default", "never"]
        )  # fmt: skip
        listing = self.run(["gpg", "--batch", "--list-secret-keys", "--with-colons"]).stdout
        fingerprint = next(
            line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:")
        )
        self.run(["pass", "init", fingerprint])
        return fingerprint

    def pass_store(self, server_url: str, username: str, secret: str) -> None:
        payload = json.dumps({"ServerURL": server_url, "Username": username, "Secret": secret})
        self.run(["docker-credential-pass", "store"], stdin=payload)

    def pass_get(self, server_url: str) -> tuple[str, str] | None:
        proc = self.run(["docker-credential-pass", "get"], stdin=server_url, check=False)
        if proc.returncode != 0:
            return None
        data = json.loads(proc.stdout)
        if not data.get("Username") and not data.get("Secret"):
            return None
        return str(data["Username"]), str(data["Secret"])

    def stop_agent(self) -> None:
        if (self.home / ".gnupg").exists():
            self.run(["gpgconf", "--kill", "gpg-agent"], check=False)


@contextmanager
def reachable_tmpdir(prefix: str) -> Iterator[Path]:
    """A root-owned 0755 temp directory other users can reach (not under tmp_path: pytest keeps
    /tmp/pytest-of-root 0700, and every pytest session run as root sets it again); removed
    afterwards."""
    directory = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    directory.chmod(0o755)
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


class UserFactory:
    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="rgd-users-", dir="/tmp"))
        self.base.chmod(0o755)  # the users reach their homes through it
        (self.base / "home").mkdir(mode=0o755)
        self.created: list[RigUser] = []

    def create(self) -> RigUser:
        name = PREFIX + secrets.token_hex(4)
        home = self.base / "home" / name
        argv = ["useradd", "--no-create-home", "--home-dir", str(home), "--shell", "/bin/sh",
                "--user-group", name]  # fmt: skip
        for _ in range(50):  # another useradd holding /etc/passwd's lock: exit status 10
            proc = subprocess.run(argv, capture_output=True, text=True, check=False)
            if proc.returncode != 10:
                break
            time.sleep(0.1)
        assert proc.returncode == 0, f"useradd failed: {proc.stderr}"
        entry = pwd.getpwnam(name)
        user = RigUser(name, entry.pw_uid, entry.pw_gid, home)
        self.created.append(user)
        home.mkdir(mode=0o700)
        os.chown(home, user.uid, user.gid)
        return user

    def remove_all(self) -> None:
        for user in self.created:
            user.stop_agent()
            for _ in range(50):
                proc = subprocess.run(["userdel", user.name], capture_output=True, check=False)
                if proc.returncode != 10:
                    break
                time.sleep(0.1)
        shutil.rmtree(self.base, ignore_errors=True)


def leftover_users() -> list[str]:
    """Test users still in the password database (the session must remove every one)."""
    return sorted(p.pw_name for p in pwd.getpwall() if p.pw_name.startswith(PREFIX))


@pytest.fixture
def test_users() -> Iterator[UserFactory]:
    from tests.conftest import require_program, require_root

    require_root("creates unprivileged users (useradd)")
    require_program("useradd", "passwd")
    factory = UserFactory()
    try:
        yield factory
    finally:
        factory.remove_all()


@pytest.fixture
def unprivileged_users(test_users: UserFactory) -> Callable[[], RigUser]:
    """The same users, as a factory function (the privilege-boundary tests' spelling)."""
    return test_users.create
