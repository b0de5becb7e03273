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

``unprivileged_users`` is the lighter factory the privilege-boundary tests use: homes at
``<base>/home/<name>`` (so ``<base>/home/*/.docker/config.json`` watches them all) and
:class:`User` running programs through ``setpriv``.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
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

    def run(
        self, argv: Sequence[str], *, stdin: str = "", check: bool = True
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
            timeout=_TIMEOUT_S,
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


class UserFactory:
    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="rgd-users-", dir="/tmp"))
        self.base.chmod(0o755)  # the users reach their homes through it
        self.created: list[RigUser] = []

    def create(self) -> RigUser:
        name = PREFIX + secrets.token_hex(4)
        home = self.base / name
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


@dataclass(frozen=True, slots=True)
class User:
    name: str
    uid: int
    gid: int
    home: Path

    def own(self, *paths: Path) -> None:
        for path in paths:
            os.chown(path, self.uid, self.gid, follow_symlinks=False)

    def run(
        self, argv: Sequence[str], *, timeout: float = 60, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` as this user (``setpriv``, with only its own groups)."""
        return subprocess.run(
            [*self.command_prefix(), *argv],
            text=True,
            capture_output=True,
            timeout=timeout,
            check=check,
        )

    def command_prefix(self) -> list[str]:
        setpriv = shutil.which("setpriv") or "/usr/bin/setpriv"
        return [setpriv, f"--reuid={self.uid}", f"--regid={self.gid}", "--init-groups", "--"]


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
def unprivileged_users() -> Iterator[Callable[[], User]]:
    """A factory of fresh users whose homes are ``<base>/home/<name>`` (mode 0700), ``base``
    being a root-owned 0755 temp directory; every user and the directory go at teardown."""
    from tests.conftest import require_program, require_root

    require_root("creates users and runs the daemon as root over their homes")
    useradd = require_program("useradd", "passwd")
    userdel = require_program("userdel", "passwd")
    require_program("setpriv", "util-linux")
    base = Path(tempfile.mkdtemp(prefix="rgd-users-", dir="/tmp"))
    base.chmod(0o755)
    (base / "home").mkdir(mode=0o755)
    made: list[User] = []

    def make() -> User:
        name = f"{PREFIX}{os.getpid() % 100000}x{len(made)}"
        home = base / "home" / name
        subprocess.run(
            [useradd, "--user-group", "--no-create-home", "--home-dir", str(home),
             "--shell", "/usr/sbin/nologin", "--comment", "regauthd test user", name],
            check=True, capture_output=True, timeout=30,
        )  # fmt: skip
        entry = pwd.getpwnam(name)
        user = User(name, entry.pw_uid, entry.pw_gid, home)
        made.append(user)
        home.mkdir(mode=0o700)
        user.own(home)
        return user

    try:
        yield make
    finally:
        for user in made:
            with contextlib.suppress(subprocess.SubprocessError):
                subprocess.run([userdel, user.name], capture_output=True, timeout=30, check=False)
        shutil.rmtree(base, ignore_errors=True)
