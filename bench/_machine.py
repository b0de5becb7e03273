"""The machine a bench runs on: the inotify watch limit (raised for a run, restored after), the
processes left in a session, and a fresh file system for a run (a journaled ext4 image)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

MAX_USER_WATCHES = Path("/proc/sys/fs/inotify/max_user_watches")
WATCH_HEADROOM = 1024
"""Watches left free beyond what this run needs (other programs may add some meanwhile)."""


def inotify_watches_in_use() -> int:
    """Watches held by every inotify descriptor on the machine now (an upper bound for root's)."""
    total = 0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (proc / "fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) == "anon_inode:inotify":
                        info = (proc / "fdinfo" / fd.name).read_text()
                        total += info.count("inotify wd:")
    return total


@contextlib.contextmanager
def enough_inotify_watches(needed: int) -> Iterator[dict[str, int]]:
    """Make sure ``fs.inotify.max_user_watches`` leaves ``needed`` watches free; raise it for
    the run if not (root only), and put the old value back afterwards."""
    limit = int(MAX_USER_WATCHES.read_text())
    in_use = inotify_watches_in_use()
    wanted = in_use + needed + WATCH_HEADROOM
    facts = {"limit": limit, "in_use": in_use, "needed": needed, "raised_to": 0}
    line = f"fs.inotify.max_user_watches = {limit} (in use: {in_use}; this run needs {needed})"
    if limit >= wanted:
        print(f"{line}: enough", file=sys.stderr)
        yield facts
        return
    if os.geteuid() != 0:
        raise SystemExit(f"{line}: too small, and only root can raise it")
    print(f"{line}: too small, raised to {wanted} for the run", file=sys.stderr)
    MAX_USER_WATCHES.write_text(f"{wanted}\n")
    facts["raised_to"] = wanted
    try:
        yield facts
    finally:
        MAX_USER_WATCHES.write_text(f"{limit}\n")
        print(f"fs.inotify.max_user_watches restored to {limit}", file=sys.stderr)


def session_processes(session: int) -> list[int]:
    """Processes whose session id is ``session`` (the daemon is started as its leader)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):
                fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[3]) == session:
                    found.append(int(proc.name))
    return found


@contextlib.contextmanager
def ext4_image(size_gib: int = 8) -> Iterator[Path]:
    """A fresh ext4 file system with its journal (``mkfs.ext4`` defaults, as Debian and Ubuntu
    install) on a sparse image in $TMPDIR, loop-mounted for the run (root only); unmounted and
    deleted afterwards. A run then starts from the same empty file system whatever earlier runs
    left on the host's (see bench/README.md: a journal-less ext4 that has just freed many
    inodes spends milliseconds in each new file's creation)."""
    work = Path(tempfile.mkdtemp(prefix="regauthd-bench-fs-"))
    work.chmod(0o755)  # the users whose homes are under it must pass (root acts as each)
    image, mountpoint = work / "fs.img", work / "mnt"
    mountpoint.mkdir()
    try:
        with image.open("wb") as f:
            f.truncate(size_gib << 30)
        subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True)
        subprocess.run(["mount", "-o", "loop", str(image), str(mountpoint)], check=True)
        try:
            yield mountpoint
        finally:
            subprocess.run(["umount", str(mountpoint)], check=False)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def small_file_fsyncs(directory: Path, count: int = 200) -> list[float]:
    """Milliseconds to write and fsync each of ``count`` new 100-byte files in ``directory``
    (removed afterwards): how fast the disk is right now. A first repair makes three such
    files durable, so the start-up pass follows this figure from run to run."""
    probe = Path(tempfile.mkdtemp(prefix="fsync-probe-", dir=directory))
    took = []
    try:
        for i in range(count):
            fd = os.open(probe / f"f{i}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                start = time.perf_counter()
                os.write(fd, b"x" * 100)
                os.fsync(fd)
                took.append((time.perf_counter() - start) * 1000)
            finally:
                os.close(fd)
    finally:
        shutil.rmtree(probe, ignore_errors=True)
    return took
