"""How fast `regauthd run` repairs a Docker-style write of a mis-keyed config.

Each round writes a config with a NEW Docker Hub credential under ``docker.io`` (a new login,
as CI runners do) the way the Docker CLI saves: temp file ``config.jsonNNNN`` (O_EXCL, 0600) in
the same directory, then rename over ``config.json``. Measured per round, on CLOCK_MONOTONIC:

- raw: from just before ``rename()`` until this script's own inotify reader (a blocking read in
  a thread, as the daemon's is) sees the IN_MOVED_TO: the floor set by the kernel and a wake-up;
- react: from the same instant until the daemon's repaired file is on disk (its own rename from
  ``.regauthd-tmp-*`` onto config.json, seen by the same reader).

After the burst the daemon's CPU time is sampled for one second (no feedback loop: it must not
keep working on its own writes) and the rewrites it made are counted (exactly one per write).

Usage: ``.venv/bin/python bench/react.py [--writes N] [--quick]``
"""

from __future__ import annotations

import argparse
import base64
import ctypes
import json
import os
import select
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = ROOT / ".venv" / "bin" / "python"
TEMP_PREFIX = ".regauthd-tmp-"
HUB = "https://index.docker.io/v1/"

IN_MOVED_FROM = 0x40
IN_MOVED_TO = 0x80
_EVENT = struct.Struct("iIII")


class MoveReader(threading.Thread):
    """Blocking inotify reader on one directory: records when each rename onto NAME is seen."""

    def __init__(self, directory: Path, name: str) -> None:
        super().__init__(daemon=True)
        libc = ctypes.CDLL(None, use_errno=True)
        self.fd = libc.inotify_init1(os.O_CLOEXEC)
        if libc.inotify_add_watch(self.fd, os.fsencode(directory), IN_MOVED_FROM | IN_MOVED_TO) < 0:
            raise OSError(ctypes.get_errno(), "inotify_add_watch")
        self.target = name.encode()
        self.stop_r, self.stop_w = os.pipe()
        self.lock = threading.Condition()
        self.writer_seen: list[int] = []
        self.daemon_seen: list[int] = []

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
                _wd, mask, cookie, length = _EVENT.unpack_from(buf, offset)
                name = buf[offset + 16 : offset + 16 + length].rstrip(b"\0")
                offset += 16 + length
                if mask & IN_MOVED_FROM:
                    sources[cookie] = name
                elif mask & IN_MOVED_TO and name == self.target:
                    source = sources.pop(cookie, b"")
                    with self.lock:
                        if source.startswith(TEMP_PREFIX.encode()):
                            self.daemon_seen.append(now)
                        else:
                            self.writer_seen.append(now)
                        self.lock.notify_all()

    def wait_daemon(self, count: int, timeout: float) -> bool:
        with self.lock:
            return self.lock.wait_for(lambda: len(self.daemon_seen) >= count, timeout)

    def close(self) -> None:
        os.write(self.stop_w, b"x")
        self.join()
        os.close(self.fd)


def docker_style_write(directory: Path, data: bytes, seq: int) -> int:
    """Temp file + rename, as the Docker CLI saves; returns the monotonic ns before rename()."""
    tmp = directory / f"config.json{seq:010d}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    t0 = time.monotonic_ns()
    os.rename(tmp, directory / "config.json")
    return t0


def mis_keyed(i: int) -> bytes:
    auth = base64.b64encode(f"ci-user:token-{i:08d}".encode()).decode()
    return json.dumps({"auths": {"docker.io": {"auth": auth}}}, indent="\t").encode()


def wait_ready(sock: socket.socket, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"daemon exited early with status {proc.returncode}")
        ready, _, _ = select.select([sock], [], [], 0.1)
        if ready and b"READY=1" in sock.recv(4096).split(b"\n"):
            return
    raise SystemExit("daemon did not send READY=1")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(name: str, values_ms: list[float]) -> dict[str, float]:
    result = {
        "p50_ms": round(statistics.median(values_ms), 3),
        "p99_ms": round(percentile(values_ms, 0.99), 3),
        "p99.9_ms": round(percentile(values_ms, 0.999), 3),
        "max_ms": round(max(values_ms), 3),
    }
    print(f"{name:>6}: " + "  ".join(f"{k}={v}" for k, v in result.items()))
    return result


def fixer_only(writes: int) -> int:
    """The floor the daemon stands on: rename, then fix_file in the same process."""
    sys.path.insert(0, str(ROOT / "daemon"))
    from regauthd.dockerconfig.backups import BackupStore
    from regauthd.dockerconfig.fixer import fix_file

    with tempfile.TemporaryDirectory(prefix="regauthd-fixer-") as tmp:
        cfg_dir = Path(tmp) / "docker"
        cfg_dir.mkdir()
        backups = BackupStore(Path(tmp) / "state")
        took = []
        for i in range(writes):
            t0 = docker_style_write(cfg_dir, mis_keyed(i), i)
            report = fix_file(cfg_dir / "config.json", backups=backups)
            took.append((time.monotonic_ns() - t0) / 1e6)
            assert report.written
    summary("fixer", took)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=10_000)
    parser.add_argument("--quick", action="store_true", help="200 writes (a smoke run)")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON line")
    parser.add_argument(
        "--fixer-only",
        action="store_true",
        help="no daemon: time regauthd.dockerconfig.fixer.fix_file alone, in this process, "
        "on the same writes",
    )
    args = parser.parse_args(argv)
    writes = 200 if args.quick else args.writes
    if args.fixer_only:
        return fixer_only(writes)

    with tempfile.TemporaryDirectory(prefix="regauthd-react-") as tmp:
        base = Path(tmp)
        cfg_dir = base / "docker"
        cfg_dir.mkdir()
        settings = base / "config.toml"
        settings.write_text('[daemon]\noutput = "json"\n')
        notify_path = base / "notify.sock"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(notify_path))
        env = {k: v for k, v in os.environ.items() if k not in {"JOURNAL_STREAM", "WATCHDOG_USEC"}}
        env.update(NOTIFY_SOCKET=str(notify_path), HOME=str(base))
        log = (base / "daemon.log").open("wb")
        # REGAUTHD_BENCH_PROFILE=FILE runs the daemon under cProfile (where does the time go?).
        profile = os.environ.get("REGAUTHD_BENCH_PROFILE")
        prefix = ["-m", "cProfile", "-o", profile] if profile else []
        proc = subprocess.Popen(
            [str(PYTHON), *prefix, "-m", "regauthd", "run", "--config", str(settings),
             "--docker-config", str(cfg_dir), "--state-dir", str(base / "state")],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
        )  # fmt: skip
        reader = MoveReader(cfg_dir, "config.json")
        reader.start()
        try:
            wait_ready(sock, proc, 20)
            starts: list[int] = []
            lost = 0
            for i in range(writes):
                starts.append(docker_style_write(cfg_dir, mis_keyed(i), i))
                if not reader.wait_daemon(i + 1 - lost, 2.0):
                    lost += 1
                    print(f"write {i}: not repaired within 2 s", file=sys.stderr)
            time.sleep(0.2)
            cpu_before = cpu_seconds(proc.pid)
            time.sleep(1.0)
            cpu_after_burst = cpu_seconds(proc.pid) - cpu_before
            final = json.loads((cfg_dir / "config.json").read_bytes())
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)
            reader.close()
            sock.close()
            log.close()

        raw = [(w - s) / 1e6 for s, w in zip(starts, reader.writer_seen, strict=False)]
        react = [(d - s) / 1e6 for s, d in zip(starts, reader.daemon_seen, strict=False)]
        print(f"writes={writes} rewrites={len(reader.daemon_seen)} lost={lost}")
        figures = {
            "writes": writes,
            "rewrites": len(reader.daemon_seen),
            "raw": summary("raw", raw),
            "react": summary("react", react),
            "cpu_s_in_1s_after_burst": round(cpu_after_burst, 3),
            "final_keys": sorted(final.get("auths", {})),
        }
        print(f"daemon CPU in the second after the burst: {cpu_after_burst:.3f} s")
        if args.json:
            print(json.dumps(figures))
        ok = lost == 0 and len(reader.daemon_seen) == writes and figures["final_keys"] == [HUB]
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
