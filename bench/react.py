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

``--owner UID`` (as root): the config directory and each write belong to that user, as on a
system service over users' homes, so every repair acts with that user's file-system identity.

Usage: ``.venv/bin/python bench/react.py [--writes N] [--quick] [--owner UID]``
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import signal
import sys
import tempfile
import time
from pathlib import Path

from _common import (
    HUB,
    ROOT,
    MoveReader,
    cpu_seconds,
    docker_style_write,
    latency,
    mis_keyed,
    start_daemon,
    wait_ready,
)


def summary(name: str, values_ms: list[float]) -> dict[str, float]:
    result = latency(values_ms)
    print(f"{name:>6}: " + "  ".join(f"{k}={v}" for k, v in result.items()))
    return result


def owned_by(uid: int | None) -> tuple[int, int] | None:
    """(uid, gid) for ``--owner``: the user's primary group, as `docker login` leaves it."""
    if uid is None:
        return None
    try:
        return uid, pwd.getpwuid(uid).pw_gid
    except KeyError:
        return uid, uid


def fixer_only(writes: int, owner: tuple[int, int] | None) -> int:
    """The floor the daemon stands on: rename, then fix_file in the same process."""
    sys.path.insert(0, str(ROOT / "daemon"))
    from regauthd.dockerconfig.backups import BackupStore
    from regauthd.dockerconfig.fixer import fix_file

    with tempfile.TemporaryDirectory(prefix="regauthd-fixer-") as tmp:
        cfg_dir = Path(tmp) / "docker"
        cfg_dir.mkdir()
        if owner is not None:
            Path(tmp).chmod(0o755)
            os.chown(cfg_dir, *owner)
        backups = BackupStore(Path(tmp) / "state")
        took = []
        for i in range(writes):
            t0 = docker_style_write(cfg_dir, mis_keyed(i), i, owner)
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
    parser.add_argument(
        "--owner",
        type=int,
        metavar="UID",
        help="(as root) the config directory and its writes belong to this user",
    )
    args = parser.parse_args(argv)
    writes = 200 if args.quick else args.writes
    owner = owned_by(args.owner)
    if args.fixer_only:
        return fixer_only(writes, owner)

    with tempfile.TemporaryDirectory(prefix="regauthd-react-") as tmp:
        base = Path(tmp)
        cfg_dir = base / "docker"
        cfg_dir.mkdir()
        if owner is not None:
            base.chmod(0o755)
            os.chown(cfg_dir, *owner)
        settings = base / "config.toml"
        settings.write_text('[daemon]\noutput = "json"\n')
        log = (base / "daemon.log").open("wb")
        proc, sock = start_daemon(
            base,
            ["--config", str(settings), "--docker-config", str(cfg_dir),
             "--state-dir", str(base / "state")],
            log,
        )  # fmt: skip
        reader = MoveReader([cfg_dir])
        reader.start()
        try:
            wait_ready(sock, proc, 20)
            starts: list[int] = []
            lost = 0
            for i in range(writes):
                starts.append(docker_style_write(cfg_dir, mis_keyed(i), i, owner))
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
        tenth = max(1, len(react) // 10)
        figures["react_first_tenth"] = latency(react[:tenth])
        figures["react_last_tenth"] = latency(react[-tenth:])
        print(
            f"react p50 over the first / last {tenth} writes: "
            f"{figures['react_first_tenth']['p50_ms']} / {figures['react_last_tenth']['p50_ms']} ms"
            " (a drift with the count of files the burst created and removed is the file "
            "system's; see bench/README.md)"
        )
        print(f"daemon CPU in the second after the burst: {cpu_after_burst:.3f} s")
        if args.json:
            print(json.dumps(figures))
        ok = lost == 0 and len(reader.daemon_seen) == writes and figures["final_keys"] == [HUB]
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
