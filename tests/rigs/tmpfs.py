"""Small tmpfs mounts a test can fill or make read-only, for real faults (root).

Usage (a pytest fixture; skips on a laptop without root, fails under CI)::

    def test_x(tmpfs: Any) -> None:
        state = tmpfs("state", size=64 * 1024)  # mounted at tmp_path / "state"
        state.fill()                             # no free space left
        state.read_only()                        # remount read-only (read_only(False): back)

Every mount is unmounted (lazily) after the test.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require_root


class Tmpfs:
    """A tmpfs of ``size`` bytes at ``path``; :meth:`fill` leaves it with no free space."""

    def __init__(self, path: Path, size: int) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
            check=True,
            capture_output=True,
        )

    def fill(self) -> None:
        for name, chunk in (("filler", 4096), ("filler-tail", 1)):
            fd = os.open(self.path / name, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                while True:
                    os.write(fd, b"\0" * chunk)
            except OSError:
                pass  # full; a last partial page may take a few more bytes: the tail takes them
            finally:
                os.close(fd)

    def free(self) -> None:
        for name in ("filler", "filler-tail"):
            (self.path / name).unlink(missing_ok=True)

    def read_only(self, on: bool = True) -> None:
        option = "remount,ro" if on else "remount,rw"
        subprocess.run(["mount", "-o", option, str(self.path)], check=True, capture_output=True)

    def unmount(self) -> None:
        subprocess.run(["umount", "-l", str(self.path)], check=False, capture_output=True)


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Any]:
    require_root("mounts small tmpfs filesystems to fill them for real")
    mounts: list[Tmpfs] = []

    def make(name: str, size: int = 256 * 1024) -> Tmpfs:
        mount = Tmpfs(tmp_path / name, size)
        mounts.append(mount)
        return mount

    try:
        yield make
    finally:
        for mount in reversed(mounts):
            mount.unmount()
