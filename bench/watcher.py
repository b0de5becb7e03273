"""How fast each watch backend delivers a Docker-style save, beside a bare inotify reader.

A writer PROCESS (as Docker is) saves ``config.json`` N times the way the Docker CLI does:
temp file ``config.jsonNNNN`` (O_EXCL, 0600), then rename over ``config.json``; it takes
CLOCK_MONOTONIC just before each ``rename()``. This process waits in ``select()`` on the
watcher's ``fileno()``, as the daemon's loop does, and takes the clock when ``read()`` has
returned the WRITTEN change for ``config.json`` (temp names are dropped by ``wants``). One save
at a time: the next starts when the last was delivered.

- floor: a bare reader (ctypes ``inotify_init1`` + ``os.read`` + ``struct``, IN_MOVED_TO only)
  in the same harness: the kernel, one wake-up and the least parsing there is;
- inotify / native / polling: ``regauthd.service.watcher.open_watcher(backend)``; the ratio is
  each one's p50/p99 over the floor's. polling runs fewer rounds (each waits for a poll) at
  ``--poll-interval``, and lets two polls pass after each save (a save seen less than a second
  before the poll is reported once more: that echo must not count as the next delivery).

Then what polling costs at idle: ``--idle-homes`` homes (each a home watched for entries only
and its ``.docker`` watched for contents, holding a config.json) polled every 2 s (the default
interval), CPU seconds per second of this process over ``--idle-seconds``.

Usage: ``.venv/bin/python bench/watcher.py [--renames N] [--quick] [--json]``
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import select
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from regauthd.service.watcher import ChangeKind, Watcher, open_watcher

IN_MOVED_TO = 0x80
_EVENT = struct.Struct("iIII")
_ROUND_TIMEOUT = 2.0

_WRITER = r"""
import os, sys, time
target = os.path.join(sys.argv[1], "config.json")
data = b'{"auths": {"https://index.docker.io/v1/": {"auth": "dXNlcjpwYXNz"}}}'
i = 0
while os.read(0, 1):
    i += 1
    temp = f"{target}{i:010d}"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, data)
    os.fchmod(fd, 0o600)
    os.close(fd)
    started = time.monotonic_ns()
    os.rename(temp, target)
    os.write(1, b"%d\n" % started)
"""


class BareReader:
    """The floor: one inotify watch for IN_MOVED_TO, parsed with nothing but struct."""

    backend = "floor"

    def __init__(self, directory: Path) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self.fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0 or libc.inotify_add_watch(self.fd, bytes(directory), IN_MOVED_TO) < 0:
            raise OSError(ctypes.get_errno(), "inotify")

    def fileno(self) -> int:
        return int(self.fd)

    def delivered(self) -> bool:
        buf = os.read(self.fd, 65536)
        offset, seen = 0, False
        while offset < len(buf):
            _wd, _mask, _cookie, length = _EVENT.unpack_from(buf, offset)
            name = buf[offset + 16 : offset + 16 + length].rstrip(b"\0")
            offset += 16 + length
            seen = seen or name == b"config.json"
        return seen

    def close(self) -> None:
        os.close(self.fd)


def delivered_by(watcher: Watcher) -> Callable[[], bool]:
    def delivered() -> bool:
        return any(c.kind is ChangeKind.WRITTEN and c.name == "config.json" for c in watcher.read())

    return delivered


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(values_ms: list[float]) -> dict[str, float]:
    if not values_ms:
        return {}
    return {
        "p50_ms": round(statistics.median(values_ms), 4),
        "p99_ms": round(percentile(values_ms, 0.99), 4),
        "max_ms": round(max(values_ms), 4),
    }


def run(
    directory: Path,
    fileno: int,
    delivered: Callable[[], bool],
    rounds: int,
    settle: float,
) -> tuple[list[float], int]:
    """Latencies (ms) of ``rounds`` saves by a writer process, and how many were lost."""
    writer = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(directory)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert writer.stdin is not None and writer.stdout is not None
    latencies: list[float] = []
    lost = 0
    try:
        for _ in range(rounds):
            writer.stdin.write(b"g")
            writer.stdin.flush()
            deadline = time.monotonic() + _ROUND_TIMEOUT
            arrived = 0
            while time.monotonic() < deadline:
                ready, _, _ = select.select([fileno], [], [], deadline - time.monotonic())
                if ready and delivered():
                    arrived = time.monotonic_ns()
                    break
            started = int(writer.stdout.readline())
            if arrived:
                latencies.append((arrived - started) / 1e6)
            else:
                lost += 1
            if settle:
                time.sleep(settle)
                while select.select([fileno], [], [], 0)[0]:
                    delivered()
    finally:
        writer.stdin.close()
        writer.wait(10)
    return latencies, lost


def polling_idle(homes: int, seconds: float) -> dict[str, float]:
    """CPU per second of one polling watcher over ``homes`` idle homes (2 directories each)."""
    with tempfile.TemporaryDirectory(prefix="regauthd-watch-idle-") as tmp:
        watcher = open_watcher("polling", wants=lambda _d, name: name == "config.json")
        try:
            for i in range(homes):
                docker = Path(tmp, f"user{i}", ".docker")
                docker.mkdir(parents=True)
                (docker / "config.json").write_bytes(b"{}")
                watcher.watch(str(docker.parent), contents=False)
                watcher.watch(str(docker), contents=True)
            time.sleep(2.5)  # past the first poll (files just written are looked at twice)
            cpu, wall = time.process_time(), time.monotonic()
            time.sleep(seconds)
            cpu, wall = time.process_time() - cpu, time.monotonic() - wall
            reported = len(watcher.read())
        finally:
            watcher.close()
    return {
        "homes": homes,
        "directories": 2 * homes,
        "cpu_s_per_s": round(cpu / wall, 4),
        "changes_at_idle": reported,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--renames", type=int, default=5_000)
    parser.add_argument("--polling-renames", type=int, default=200)
    parser.add_argument("--poll-interval", type=float, default=0.02)
    parser.add_argument("--idle-homes", type=int, default=2_000)
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    parser.add_argument(
        "--quick", action="store_true", help="100 renames, 10 polled, 50 idle homes for 2 s"
    )
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON line")
    args = parser.parse_args(argv)
    renames = 100 if args.quick else args.renames
    polled = 10 if args.quick else args.polling_renames

    figures: dict[str, object] = {"renames": renames, "poll_interval_s": args.poll_interval}
    floor: dict[str, float] = {}
    ok = True
    for backend in ("floor", "inotify", "native", "polling"):
        with tempfile.TemporaryDirectory(prefix=f"regauthd-watch-{backend}-") as tmp:
            directory = Path(tmp)
            rounds, settle = renames, 0.0
            if backend == "floor":
                bare = BareReader(directory)
                fileno, delivered, close = bare.fileno(), bare.delivered, bare.close
            else:
                watcher = open_watcher(
                    backend,
                    wants=lambda _d, name: name == "config.json",
                    poll_interval=args.poll_interval,
                )
                watcher.watch(str(directory), contents=True)
                fileno, delivered, close = watcher.fileno(), delivered_by(watcher), watcher.close
                if backend == "polling":
                    rounds, settle = polled, 2.5 * args.poll_interval
            try:
                latencies, lost = run(directory, fileno, delivered, rounds, settle)
            finally:
                close()
        result: dict[str, object] = {"rounds": rounds, "delivered": len(latencies), "lost": lost}
        result.update(summary(latencies))
        if backend == "floor":
            floor = summary(latencies)
        elif floor and latencies:
            result["ratio_p50"] = round(statistics.median(latencies) / floor["p50_ms"], 2)
            result["ratio_p99"] = round(percentile(latencies, 0.99) / floor["p99_ms"], 2)
        ok = ok and lost == 0
        figures[backend] = result
        print(f"{backend:>8}: " + "  ".join(f"{k}={v}" for k, v in result.items()))
    idle = polling_idle(*((50, 2.0) if args.quick else (args.idle_homes, args.idle_seconds)))
    figures["polling_idle"] = idle
    print("polling idle: " + "  ".join(f"{k}={v}" for k, v in idle.items()))
    if args.json:
        print(json.dumps(figures))
    return 0 if ok and idle["changes_at_idle"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
