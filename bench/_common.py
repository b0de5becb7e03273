"""What the daemon benchmarks share: starting `regauthd run`, Docker-style writes, timing them.

- :func:`start_daemon` runs ``regauthd run`` as a real subprocess with its own ``NOTIFY_SOCKET``;
  :func:`wait_ready` waits for its ``READY=1``;
- :func:`docker_style_write` saves a config the way the Docker CLI does (temp file, rename);
- :class:`MoveReader` is a blocking inotify reader (as the daemon's is) that records when each
  rename onto ``config.json`` is seen, the writer's and the daemon's told apart by source name;
- :func:`latency` summarises timings; :func:`cpu_seconds` and :func:`status_kib` read ``/proc``.

Imported by the scripts beside it (``bench/`` is their ``sys.path[0]``); not a test helper.
"""

from __future__ import annotations

import base64
import ctypes
import json
import os
import select
import socket
import statistics
import struct
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parent.parent
PYTHON = ROOT / ".venv" / "bin" / "python"
TEMP_PREFIX = ".regauthd-tmp-"
"""The daemon's own temp files (``regauthd.dockerconfig.file.TEMP_PREFIX``)."""
HUB = "https://index.docker.io/v1/"

IN_MOVED_FROM = 0x40
IN_MOVED_TO = 0x80
_EVENT = struct.Struct("iIII")


class MoveReader(threading.Thread):
    """Blocking inotify reader on some directories: records when each rename onto NAME is seen.

    One inotify descriptor holds a watch per directory. A rename whose source starts with
    :data:`TEMP_PREFIX` is the daemon's repair (``daemon_seen``, its directory's index in
    ``daemon_in``); any other is the writer's (``writer_seen``). Times are monotonic ns.
    """

    def __init__(self, directories: Sequence[Path], name: str = "config.json") -> None:
        super().__init__(daemon=True)
        libc = ctypes.CDLL(None, use_errno=True)
        self.fd = libc.inotify_init1(os.O_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        self.index: dict[int, int] = {}
        mask = IN_MOVED_FROM | IN_MOVED_TO
        for i, directory in enumerate(directories):
            wd = libc.inotify_add_watch(self.fd, os.fsencode(directory), mask)
            if wd < 0:
                errno = ctypes.get_errno()
                os.close(self.fd)
                raise OSError(errno, f"inotify_add_watch {directory}: {os.strerror(errno)}")
            self.index[wd] = i
        self.target = name.encode()
        self.stop_r, self.stop_w = os.pipe()
        self.lock = threading.Condition()
        self.writer_seen: list[int] = []
        self.daemon_seen: list[int] = []
        self.daemon_in: list[int] = []

    def run(self) -> None:
        sources: dict[int, bytes] = {}
        while True:
            ready, _, _ = select.select([self.fd, self.stop_r], [], [])
            if self.stop_r in ready:
                return
            buf = os.read(self.fd, 65536)
            now = time.monotonic_ns()
            offset = 0
            while offset < len(buf):
                wd, mask, cookie, length = _EVENT.unpack_from(buf, offset)
                name = buf[offset + 16 : offset + 16 + length].rstrip(b"\0")
                offset += 16 + length
                if mask & IN_MOVED_FROM:
                    sources[cookie] = name
                elif mask & IN_MOVED_TO and name == self.target:
                    source = sources.pop(cookie, b"")
                    with self.lock:
                        if source.startswith(TEMP_PREFIX.encode()):
                            self.daemon_seen.append(now)
                            self.daemon_in.append(self.index.get(wd, -1))
                        else:
                            self.writer_seen.append(now)
                        self.lock.notify_all()

    def wait_daemon(self, count: int, timeout: float) -> bool:
        """Until the daemon has renamed onto NAME ``count`` times in all (False: timed out)."""
        with self.lock:
            return self.lock.wait_for(lambda: len(self.daemon_seen) >= count, timeout)

    def close(self) -> None:
        os.write(self.stop_w, b"x")
        self.join()
        for fd in (self.fd, self.stop_r, self.stop_w):
            os.close(fd)


def docker_style_write(
    directory: Path, data: bytes, seq: int, owner: tuple[int, int] | None = None
) -> int:
    """Temp file + rename, as the Docker CLI saves (its temp file owned by ``owner`` when
    given, as a user's own `docker login` makes it); returns the monotonic ns before rename()."""
    tmp = directory / f"config.json{seq:010d}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        if owner is not None:
            os.fchown(fd, *owner)
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    t0 = time.monotonic_ns()
    os.rename(tmp, directory / "config.json")
    return t0


def mis_keyed(i: int) -> bytes:
    """A config holding a new Docker Hub credential (token ``i``) under ``docker.io``."""
    auth = base64.b64encode(f"ci-user:token-{i:08d}".encode()).decode()
    return json.dumps({"auths": {"docker.io": {"auth": auth}}}, indent="\t").encode()


def start_daemon(
    base: Path,
    args: Sequence[str],
    log: IO[bytes],
    *,
    new_session: bool = False,
    wrap: Sequence[str] = (),
) -> tuple[subprocess.Popen[bytes], socket.socket]:
    """``regauthd run ARGS`` with stdout and stderr to ``log`` and ``NOTIFY_SOCKET`` bound at
    ``base/notify.sock``; returns the process and that socket (close it after the process).
    ``wrap`` is a command that execs the daemon's (its arguments follow).

    REGAUTHD_BENCH_PROFILE=FILE runs the daemon under cProfile (where does the time go?).
    """
    notify_path = base / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(notify_path))
    drop = {"JOURNAL_STREAM", "WATCHDOG_USEC", "WATCHDOG_PID", "DOCKER_CONFIG"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(NOTIFY_SOCKET=str(notify_path), HOME=str(base))
    profile = os.environ.get("REGAUTHD_BENCH_PROFILE")
    prefix = ["-m", "cProfile", "-o", profile] if profile else []
    proc = subprocess.Popen(
        [*wrap, str(PYTHON), *prefix, "-m", "regauthd", "run", *args],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT, start_new_session=new_session,
    )  # fmt: skip
    return proc, sock


def wait_ready(sock: socket.socket, proc: subprocess.Popen[bytes], timeout: float) -> None:
    """Until the daemon sends ``READY=1``; SystemExit when it exits first or takes too long."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"daemon exited early with status {proc.returncode}")
        ready, _, _ = select.select([sock], [], [], 0.1)
        if ready and b"READY=1" in sock.recv(4096).split(b"\n"):
            return
    raise SystemExit("daemon did not send READY=1")


def cpu_seconds(pid: int) -> float:
    """utime + stime of the whole process (all threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def status_kib(pid: int, key: str) -> int:
    """A ``kB`` line of ``/proc/PID/status`` (``VmRSS``, ``VmHWM``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    raise KeyError(key)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def latency(values_ms: list[float]) -> dict[str, float]:
    """p50, p99, p99.9 and max of timings in ms (rounded to the µs)."""
    if not values_ms:
        return {}
    return {
        "p50_ms": round(statistics.median(values_ms), 3),
        "p99_ms": round(percentile(values_ms, 0.99), 3),
        "p99_9_ms": round(percentile(values_ms, 0.999), 3),
        "max_ms": round(max(values_ms), 3),
    }
