"""Soak: `regauthd run` under steady traffic for minutes, watching for growth and missed repairs.

One daemon (a real subprocess, as root) watches ``--users`` homes (50 by default; each home,
``.docker`` and ``config.json`` owned by the user's own uid). For ``--minutes`` (10 by default):

- ``--rate`` login-style writes per second (10 by default) to random users: a Docker-style save
  (temp file + rename) of a NEW Hub credential under ``docker.io``, which the daemon must rename
  to ``https://index.docker.io/v1/`` each time;
- journal traffic: dockerd lines (``--journal-rate`` per second, every fifth a refused push)
  appended to a log file the daemon follows (``[journal] backend = "files"``);
- probes: every config also holds a credential for a real ``docker-registry`` (token auth, the
  tests' issuer) on loopback, probed every ``--probe-interval`` seconds. The Hub credentials
  are probed too: the whole bench runs in a network namespace of its own with only loopback up
  (it re-executes itself under ``unshare --net``), so those probes fail at once as unreachable
  and not one packet leaves the machine.

Sampled every ``--sample`` seconds: RSS, open descriptors, threads, CPU time. Printed: RSS and
descriptors in the first sampled minute against the last (the baseline is the same run's start),
CPU per write in the first and the last minute, repairs seen against writes made (missed: the
writes whose repair never came; must be 0), mis-keyed configs left at the end (0), probe
results and journal alerts counted from the daemon's log.

Usage: ``sudo .venv/bin/python bench/soak.py [--minutes 10] [--users 50] [--rate 10] [--quick]``
(``--quick``: 1 minute). Needs ``docker-registry`` (Debian package docker-registry).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _common import (
    HUB,
    MoveReader,
    cpu_seconds,
    docker_style_write,
    mis_keyed,
    percentile,
    start_daemon,
    status_kib,
    wait_ready,
)

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.rigs.configs import auth as encode_auth  # noqa: E402
from tests.rigs.registry import RunningRegistry, start_registry  # noqa: E402

FIRST_UID = 210_000
REGISTRY_USER = ("soak", "soak-password-1")
MIB = 1024


def make_homes(root: Path, users: int, registry: str) -> list[tuple[Path, int]]:
    """Homes with a clean config each: the Hub credential where Docker reads it, and the
    registry's credential (probed)."""
    made = []
    (root / "home").mkdir(mode=0o755)
    for i in range(users):
        uid = FIRST_UID + i
        docker_dir = root / "home" / f"user{i:03d}" / ".docker"
        docker_dir.mkdir(parents=True, mode=0o700)
        for d in (docker_dir.parent, docker_dir):
            os.chmod(d, 0o700)
            os.chown(d, uid, uid)
        data = {
            "auths": {
                HUB: {"auth": encode_auth("ci-user", f"first-{i}")},
                registry: {"auth": encode_auth(*REGISTRY_USER)},
            }
        }
        config = docker_dir / "config.json"
        config.write_text(json.dumps(data, indent="\t"))
        os.chown(config, uid, uid)
        os.chmod(config, 0o600)
        made.append((docker_dir, uid))
    return made


def login_write(docker_dir: Path, uid: int, seq: int, registry: str) -> int:
    """A `docker login docker.io` style save: a new Hub token under docker.io (mis-keyed), the
    registry's credential kept."""
    data = json.loads(mis_keyed(seq))
    data["auths"][registry] = {"auth": encode_auth(*REGISTRY_USER)}
    return docker_style_write(docker_dir, json.dumps(data).encode(), seq, (uid, uid))


def settings_toml(root: Path, registry: RunningRegistry, log_file: Path, interval: float) -> str:
    pattern = json.dumps(str(root / "home" / "*" / ".docker" / "config.json"))
    return f"""
[daemon]
output = "json"
[watch]
paths = [{pattern}]
docker_config_dirs = []
[probe]
enabled = true
interval = "{interval:g}s"
jitter = 0
timeout = "5s"
insecure_registries = ["{registry.host}"]
[journal]
enabled = true
backend = "files"
log_files = [{json.dumps(str(log_file))}]
"""


def journal_writer(log_file: Path, rate: float, stop: threading.Event, counts: dict[str, int]):
    """dockerd lines at ``rate`` per second; every fifth a refused push to a rotating registry."""

    def run() -> None:
        n = 0
        with log_file.open("a", buffering=1) as out:
            while not stop.wait(1.0 / rate):
                stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
                if n % 5 == 0:
                    registry = f"reg{n % 7}.soak.test"
                    message = (
                        'level=info msg="Attempting next endpoint for push after error: Head '
                        f'\\"https://{registry}/v2/acme/api/blobs/sha256:4f4f\\": '
                        'unauthorized: authentication required"'
                    )
                    counts["failures"] += 1
                else:
                    message = f'level=info msg="API listen on /run/docker.sock" n={n}'
                out.write(f"[{stamp}][dockerd][I] {message}\n")
                counts["lines"] += 1
                n += 1

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def auths_of(config: Path) -> dict[str, Any]:
    auths = json.loads(config.read_bytes()).get("auths", {})
    return auths if isinstance(auths, dict) else {}


def sample(pid: int, t0: float) -> dict[str, float]:
    return {
        "t_s": round(time.monotonic() - t0, 1),
        "rss_mib": round(status_kib(pid, "VmRSS") / MIB, 2),
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
        "threads": len(os.listdir(f"/proc/{pid}/task")),
        "cpu_s": cpu_seconds(pid),
    }


def window(samples: list[dict[str, float]], first: bool, seconds: float) -> list[dict[str, float]]:
    if first:
        return [s for s in samples if s["t_s"] <= samples[0]["t_s"] + seconds]
    return [s for s in samples if s["t_s"] >= samples[-1]["t_s"] - seconds]


def soak(args: argparse.Namespace, base: Path) -> dict[str, Any]:
    registry = start_registry(base / "registry", users=dict([REGISTRY_USER]), auth="token")
    try:
        return _soak(args, base, registry)
    finally:
        registry.stop()


def _soak(args: argparse.Namespace, base: Path, registry: RunningRegistry) -> dict[str, Any]:
    homes = make_homes(base, args.users, registry.host)
    log_file = base / "dockerd.log"
    log_file.write_text("")
    settings = base / "config.toml"
    settings.write_text(settings_toml(base, registry, log_file, args.probe_interval))
    daemon_log = base / "daemon.log"
    rng = random.Random(args.seed)
    counts = {"lines": 0, "failures": 0}
    stop = threading.Event()
    with daemon_log.open("wb") as log:
        proc, sock = start_daemon(
            base, ["--config", str(settings), "--state-dir", str(base / "state")], log,
            new_session=True,
        )  # fmt: skip
    reader = MoveReader([d for d, _ in homes])
    reader.start()
    samples: list[dict[str, float]] = []
    writes_at: list[float] = []
    writes_in: list[tuple[int, int]] = []
    status: dict[str, Any] = {}
    try:
        wait_ready(sock, proc, 120)
        t0 = time.monotonic()
        journal = journal_writer(log_file, args.journal_rate, stop, counts)
        next_sample = t0
        seq = 0
        deadline = t0 + args.minutes * 60
        while time.monotonic() < deadline:
            now = time.monotonic()
            if now >= next_sample:
                samples.append(sample(proc.pid, t0))
                next_sample += args.sample
            index = rng.randrange(len(homes))
            docker_dir, uid = homes[index]
            writes_in.append((login_write(docker_dir, uid, seq, registry.host), index))
            writes_at.append(time.monotonic() - t0)
            seq += 1
            time.sleep(max(0.0, t0 + seq / args.rate - time.monotonic()))
        stop.set()
        journal.join()
        reader.wait_daemon(seq, 10.0)
        time.sleep(1.0)
        samples.append(sample(proc.pid, t0))
        left = sum(
            1
            for d, _ in homes
            if "docker.io" in json.loads((d / "config.json").read_bytes())["auths"]
        )
        status = json.loads((base / "state" / "status.json").read_bytes())
    finally:
        stop.set()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except Exception:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        reader.close()
        sock.close()
    if args.keep_log:
        shutil.copyfile(daemon_log, args.keep_log)
    events = [json.loads(line) for line in daemon_log.read_bytes().splitlines() if line[:1] == b"{"]
    missed, coalesced = missed_writes(writes_in, reader)
    result = figures(args, samples, writes_at, events, counts, status)
    result.update(writes=seq, repairs_seen=len(reader.daemon_seen), missed=missed)
    result.update(coalesced=coalesced, mis_keyed_left=left)
    return result


def missed_writes(writes_in: list[tuple[int, int]], reader: MoveReader) -> tuple[int, int]:
    """Writes whose repair never came: no repair in that directory after the write and before
    the next write there. A write that the next write to the same directory overtook before
    the daemon got to it is coalesced (its repair is the next one), not missed."""
    repairs: dict[int, list[int]] = {}
    for when, where in zip(reader.daemon_seen, reader.daemon_in, strict=True):
        repairs.setdefault(where, []).append(when)
    by_dir: dict[int, list[int]] = {}
    for when, where in writes_in:
        by_dir.setdefault(where, []).append(when)
    missed = coalesced = 0
    for where, times in by_dir.items():
        done = repairs.get(where, [])
        for k, when in enumerate(times):
            until = times[k + 1] if k + 1 < len(times) else None
            if any(when <= r and (until is None or r <= until) for r in done):
                continue
            if until is not None:
                coalesced += 1
            else:
                missed += 1
    return missed, coalesced


def figures(
    args: argparse.Namespace,
    samples: list[dict[str, float]],
    writes_at: list[float],
    events: list[dict[str, Any]],
    counts: dict[str, int],
    status: dict[str, Any],
) -> dict[str, Any]:
    minute = min(60.0, args.minutes * 60 / 3)
    first, last = window(samples, True, minute), window(samples, False, minute)

    def cpu_per_write(part: list[dict[str, float]]) -> float:
        start, end = part[0]["t_s"], part[-1]["t_s"]
        n = sum(1 for t in writes_at if start <= t < end)
        return (part[-1]["cpu_s"] - part[0]["cpu_s"]) / n * 1000 if n else float("nan")

    results = (status.get("probes") or {}).get("results") or []
    problems: dict[str, int] = {}
    for e in events:
        if e.get("level") in {"warning", "error", "critical"}:
            problems[str(e.get("event"))] = problems.get(str(e.get("event")), 0) + 1
    return {
        "minutes": args.minutes,
        "users": args.users,
        "rss_mib_first_min": round(percentile([s["rss_mib"] for s in first], 50), 2),
        "rss_mib_last_min": round(percentile([s["rss_mib"] for s in last], 50), 2),
        "rss_mib_max": max(s["rss_mib"] for s in samples),
        "fds_first_last": (first[0]["fds"], last[-1]["fds"]),
        "threads_first_last": (first[0]["threads"], last[-1]["threads"]),
        "cpu_ms_per_write_first_min": round(cpu_per_write(first), 3),
        "cpu_ms_per_write_last_min": round(cpu_per_write(last), 3),
        "journal_lines": counts["lines"],
        "journal_failures_written": counts["failures"],
        "journal_alerts": sum(1 for e in events if e.get("event") == "journal.auth_failure"),
        "probe_results_in_status": dict(
            sorted(Counter(f"{r.get('registry')} {r.get('status')}" for r in results).items())
        ),
        "warnings_and_errors": problems,
    }


def in_own_network_namespace(argv: list[str]) -> int:
    """Run this script again in a new network namespace with only ``lo`` up."""
    unshare, ip = shutil.which("unshare"), shutil.which("ip")
    if unshare is None or ip is None:
        print("bench/soak.py needs unshare (util-linux) and ip (iproute2)", file=sys.stderr)
        return 2
    command = [sys.executable, str(Path(__file__).resolve()), *argv]
    script = f'{ip} link set lo up && exec "$@"'
    env = {**os.environ, "REGAUTHD_SOAK_NETNS": "1"}
    proc = subprocess.run(
        [unshare, "--net", "sh", "-c", script, "sh", *command], env=env, check=False
    )
    return proc.returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--rate", type=float, default=10.0, help="login-style writes per second")
    parser.add_argument("--journal-rate", type=float, default=20.0, help="dockerd lines/s")
    parser.add_argument("--probe-interval", type=float, default=10.0, help="seconds")
    parser.add_argument("--sample", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--quick", action="store_true", help="one minute")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON line")
    parser.add_argument("--keep-log", type=Path, help="copy the daemon's log here")
    args = parser.parse_args(argv)
    if args.quick:
        args.minutes = 1.0
    if os.geteuid() != 0:
        print("bench/soak.py runs as root: it gives each home its own uid", file=sys.stderr)
        return 2
    if os.environ.get("REGAUTHD_SOAK_NETNS") != "1":
        return in_own_network_namespace(argv if argv is not None else sys.argv[1:])
    base = Path(tempfile.mkdtemp(prefix="regauthd-soak-"))
    os.chmod(base, 0o755)  # noqa: S103 - the users' homes below must be reachable
    try:
        result = soak(args, base)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    for key, value in result.items():
        print(f"{key:30} {value}", file=sys.stderr)
    growth = result["rss_mib_last_min"] / result["rss_mib_first_min"]
    print(f"{'RSS last/first minute':30} {growth:.3f} x", file=sys.stderr)
    if args.json:
        print(json.dumps(result))
    ok = result["missed"] == 0 and result["mis_keyed_left"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
