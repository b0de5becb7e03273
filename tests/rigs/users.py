"""Unprivileged users for tests of the privilege boundary: made with ``useradd`` (a home under a
world-traversable temp directory), removed with ``userdel`` when the test ends. A pytest plugin
(``unprivileged_users``). :func:`leftover_users` lets the session fail on any left behind.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

PREFIX = "rgdtest"
"""Every user these tests make is named so (the session's leftover check looks for it)."""


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
    return [entry.pw_name for entry in pwd.getpwall() if entry.pw_name.startswith(PREFIX)]


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
