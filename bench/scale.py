"""How `regauthd run` scales with the number of users' Docker configs it watches.

For each N of ``--users`` (200, 2,000 and 10,000 by default): N homes under a temp root,
``ROOT/home/userNNNNN/.docker/config.json``, each home, ``.docker`` and config owned by the
user's own uid (200000 + i: root may chown to a uid with no passwd entry), modes as Docker makes
them (0700 directory, 0600 file); every other config mis-keyed (the Hub credential under
``docker.io``, which the daemon renames to ``https://index.docker.io/v1/``), the rest clean.
One daemon (``regauthd run`` as a real subprocess, probes and journal off) watches
``ROOT/home/*/.docker/config.json``. Measured, on CLOCK_MONOTONIC:

- the disk, before the daemon starts: write and fsync of 200 new 100-byte files beside the homes
  (how fast it is right now: a first repair makes three such files durable, and this machine's
  disk got 1.3x slower within an hour, its start-up pass with it);
- READY: from starting the process until ``READY=1`` arrives on its ``NOTIFY_SOCKET`` (every
  watch armed, every mis-keyed config repaired). Then every config is read: none may still be
  mis-keyed, and none may have changed owner or mode. The daemon's JSON log splits the time
  into start-up (interpreter and imports, to ``daemon.starting``), arming the watches (to the
  first repair) and the repair pass;
- after READY: RSS (``VmRSS``, ``VmHWM``), threads (``/proc/PID/task``), open descriptors;
- react: ``--writes`` Docker-style saves (temp ``config.jsonNNNN``, O_EXCL, 0600, chowned to the
  user, renamed over ``config.json``) of a NEW Hub credential under ``docker.io`` to random users,
  each timed from just before ``rename()`` until the daemon's repaired file lands (its own rename
  onto ``config.json``), beside raw inotify delivery of the same rename (the floor), both seen by
  one blocking inotify reader of this script holding a watch on every user's ``.docker``;
  ``react_split`` splits them: writes that make the user's first backup (a new folder, one
  more directory fsync) or not, and the burst's first half or second;
- idle: the daemon's CPU time (utime + stime) over ``--idle-seconds`` after the burst;
- stop: SIGTERM until the daemon has exited, and no process left in its session.

``fs.inotify.max_user_watches`` must hold the daemon's watches and this script's (about 2N):
when it is too small it is raised for the run (as root) and restored afterwards.
``--backend NAME`` sets ``[watch] backend`` (a daemon without that setting refuses it: exit 2).

Usage: ``.venv/bin/python bench/scale.py [--users N ...] [--writes K] [--quick] [--json]``
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
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from _common import (
    HUB,
    MoveReader,
    cpu_seconds,
    docker_style_write,
    latency,
    mis_keyed,
    start_daemon,
    status_kib,
    wait_ready,
)
from _machine import enough_inotify_watches, ext4_image, session_processes, small_file_fsyncs
from _scale_report import log_phases, table

FIRST_UID = 200_000
MIB = 1024


class SettingsRefused(Exception):
    """The daemon exited with status 2 before READY: it refused the settings written."""


@dataclass(frozen=True, slots=True)
class Home:
    docker_dir: Path
    uid: int


# ---------------------------------------------------------------------------------------------
# The users' configs


def clean_config(i: int) -> bytes:
    hub = {"auth": f"Y2ktdXNlcjp0b2tlbi{i:08d}"}
    return json.dumps({"auths": {HUB: hub, "ghcr.io": {"auth": "Z2g6dG9rZW4="}}}).encode()


def make_homes(root: Path, users: int) -> list[Home]:
    """``root/home/userNNNNN/.docker/config.json`` for each user, owned by its own uid; even
    users' configs mis-keyed, odd users' clean."""
    homes = root / "home"
    homes.mkdir(mode=0o755)
    made = []
    for i in range(users):
        uid = FIRST_UID + i
        home = homes / f"user{i:05d}"
        docker_dir = home / ".docker"
        for directory in (home, docker_dir):
            directory.mkdir(mode=0o700)
            os.chmod(directory, 0o700)  # whatever the umask
            os.chown(directory, uid, uid)
        fd = os.open(docker_dir / "config.json", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.fchown(fd, uid, uid)
            os.fchmod(fd, 0o600)
            os.write(fd, mis_keyed(i) if i % 2 == 0 else clean_config(i))
        finally:
            os.close(fd)
        made.append(Home(docker_dir, uid))
    return made


def audit_homes(homes: list[Home]) -> dict[str, int]:
    """How many configs are still mis-keyed (a Hub credential not under HUB), and how many no
    longer have their user's owner and mode 0600."""
    mis_keyed_left = 0
    wrong_owner = 0
    for home in homes:
        path = home.docker_dir / "config.json"
        st = path.stat()
        if (st.st_uid, st.st_gid, st.st_mode & 0o7777) != (home.uid, home.uid, 0o600):
            wrong_owner += 1
        auths = json.loads(path.read_bytes()).get("auths", {})
        if "docker.io" in auths or HUB not in auths:
            mis_keyed_left += 1
    return {"mis_keyed_left": mis_keyed_left, "wrong_owner_or_mode": wrong_owner}


def settings_toml(root: Path, backend: str | None) -> str:
    pattern = json.dumps(str(root / "home" / "*" / ".docker" / "config.json"))
    lines = [
        "[daemon]",
        'output = "json"',
        "[watch]",
        f"paths = [{pattern}]",
        "docker_config_dirs = []",
    ]
    if backend is not None:
        lines.append(f"backend = {json.dumps(backend)}")
    lines += ["[probe]", "enabled = false", "[journal]", "enabled = false"]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# One run


def run_once(users: int, args: argparse.Namespace) -> dict[str, Any]:
    if args.settle:
        # This machine's root file system has no journal: ext4 then reads the table block of
        # every inode freed in the last minute or more before reusing any, and an earlier run
        # (3N homes removed) slows this one's file creations (see bench/README.md).
        os.sync()
        print(f"N={users}: settling {args.settle:g} s after a sync", file=sys.stderr)
        time.sleep(args.settle)
    if args.fs == "image":
        with ext4_image() as parent:
            return in_temp_root(users, args, parent)
    return in_temp_root(users, args, None)


def in_temp_root(users: int, args: argparse.Namespace, parent: Path | None) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix=f"regauthd-scale-{users}-", dir=parent))
    root.chmod(0o755)  # as / is above /home: root acts on each config as its user
    try:
        return {**measure(root, users, args), "fs": args.fs, "passwd": args.passwd}
    finally:
        t0 = time.monotonic()
        shutil.rmtree(root, ignore_errors=True)
        print(f"N={users}: temp tree removed in {time.monotonic() - t0:.1f} s", file=sys.stderr)


def user_databases(root: Path, users: int) -> list[str]:
    """``--passwd``: the users get entries, as on a host whose users are local: the host's
    ``/etc/passwd`` and ``/etc/group`` plus one user and one group per home, and every seventh
    user in one more group, bind-mounted over the host's for the daemon only (its own mount
    namespace); the command prefix that starts the daemon there."""
    names = [f"rgdscale{i:05d}" for i in range(users)]
    passwd, group = root / "passwd", root / "group"
    lines = (
        f"{n}:x:{FIRST_UID + i}:{FIRST_UID + i}::/nonexistent:/bin/sh\n"
        for i, n in enumerate(names)
    )
    passwd.write_text(Path("/etc/passwd").read_text() + "".join(lines))
    group.write_text(
        Path("/etc/group").read_text()
        + "".join(f"{n}:x:{FIRST_UID + i}:\n" for i, n in enumerate(names))
        + f"rgdscale-shared:x:{FIRST_UID - 1}:{','.join(names[::7])}\n"
    )
    script = 'mount --bind "$0" /etc/passwd && mount --bind "$1" /etc/group && shift && exec "$@"'
    return ["unshare", "--mount", "--", "sh", "-c", script, str(passwd), str(group)]


def measure(root: Path, users: int, args: argparse.Namespace) -> dict[str, Any]:
    t0 = time.monotonic()
    homes = make_homes(root, users)
    # The homes' 3N new inodes are still in the page cache: without this, the daemon's first
    # fsync commits all of them (ext4's journal), a cost of the set-up, not of the daemon.
    os.sync()
    print(f"N={users}: {users} homes made in {time.monotonic() - t0:.1f} s", file=sys.stderr)
    disk = latency(small_file_fsyncs(root))
    settings = root / "config.toml"
    settings.write_text(settings_toml(root, args.backend))
    log_path = root / "daemon.log"
    daemon_args = ["--config", str(settings), "--state-dir", str(root / "state")]
    with log_path.open("wb") as log:
        started_wall = time.time()
        started = time.monotonic()
        wrap = user_databases(root, users) if args.passwd else []
        proc, sock = start_daemon(root, daemon_args, log, new_session=True, wrap=wrap)
    figures: dict[str, Any] = {
        "users": users,
        "mis_keyed_before": (users + 1) // 2,
        "disk_fsync": disk,
    }
    reader: MoveReader | None = None
    try:
        try:
            wait_ready(sock, proc, args.ready_timeout)
        except SystemExit:
            if proc.returncode == 2:
                raise SettingsRefused(log_path.read_text(errors="replace").strip()) from None
            raise
        figures["ready_s"] = round(time.monotonic() - started, 3)
        figures["after_ready"] = audit_homes(homes)
        figures["process"] = sample_process(proc.pid)
        print(f"N={users}: READY after {figures['ready_s']} s", file=sys.stderr)

        reader = MoveReader([h.docker_dir for h in homes])
        reader.start()
        figures.update(burst(homes, reader, args))
        figures["after_writes"] = audit_homes(homes)
        figures["rss_after_writes_mib"] = round(status_kib(proc.pid, "VmRSS") / MIB, 1)

        time.sleep(0.5)  # settle: the last deferred cleanup, metrics and STATUS= go out
        cpu_before = cpu_seconds(proc.pid)
        time.sleep(args.idle_seconds)
        idle_cpu = cpu_seconds(proc.pid) - cpu_before
        figures["idle"] = {
            "seconds": args.idle_seconds,
            "cpu_s": round(idle_cpu, 3),
            "cpu_s_per_s": round(idle_cpu / args.idle_seconds, 4),
        }
        figures["stop"] = stop(proc)
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if reader is not None:
            reader.close()
        sock.close()
    figures["log"] = log_phases(log_path, started_wall)
    return figures


def sample_process(pid: int) -> dict[str, float | int]:
    return {
        "rss_mib": round(status_kib(pid, "VmRSS") / MIB, 1),
        "hwm_mib": round(status_kib(pid, "VmHWM") / MIB, 1),
        "threads": len(os.listdir(f"/proc/{pid}/task")),
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
    }


def burst(homes: list[Home], reader: MoveReader, args: argparse.Namespace) -> dict[str, Any]:
    """``args.writes`` Docker-style saves to random users, one at a time, each waited for."""
    rng = random.Random(args.seed)
    starts: list[int] = []
    targets: list[int] = []
    lost = 0
    for k in range(args.writes):
        i = rng.randrange(len(homes))
        home = homes[i]
        starts.append(
            docker_style_write(home.docker_dir, mis_keyed(len(homes) + k), k, (home.uid, home.uid))
        )
        targets.append(i)
        if not reader.wait_daemon(k + 1 - lost, args.repair_wait):
            lost += 1
            print(
                f"write {k} (user {i}): not repaired within {args.repair_wait:g} s",
                file=sys.stderr,
            )
    time.sleep(0.2)  # a late repair of the last write still counts as a rewrite
    rewrites = len(reader.daemon_seen)
    wrong_dir = sum(1 for t, d in zip(targets, reader.daemon_in, strict=False) if t != d)
    raw = latency([(w - s) / 1e6 for s, w in zip(starts, reader.writer_seen, strict=False)])
    react = latency([(d - s) / 1e6 for s, d in zip(starts, reader.daemon_seen, strict=False)])
    ratio = {
        q: round(react[f"{q}_ms"] / raw[f"{q}_ms"], 1) if raw.get(f"{q}_ms") else None
        for q in ("p50", "p99")
    }
    # Which writes pay for what: a user whose config the start-up pass repaired (even) or who
    # was written before has a backup folder; the first write to a clean one makes its folder
    # (one more directory fsync, of the backups directory). And does the tail sit early, while
    # the disk still writes back what the start-up pass left?
    took = [(d - s) / 1e6 for s, d in zip(starts, reader.daemon_seen, strict=False)]
    backed_up: set[int] = set()
    first_backup: list[float] = []
    had_backup: list[float] = []
    for t, ms in zip(targets, took, strict=False):
        (had_backup if t % 2 == 0 or t in backed_up else first_backup).append(ms)
        backed_up.add(t)
    half = len(took) // 2
    split = {
        "first_backup": latency(first_backup),
        "had_backup": latency(had_backup),
        "first_half": latency(took[:half]),
        "second_half": latency(took[half:]),
    }
    return {
        "writes": args.writes,
        "rewrites": rewrites,
        "lost": lost,
        "repaired_elsewhere": wrong_dir,
        "raw": raw,
        "react": react,
        "react_over_raw": ratio,
        "react_split": split,
    }


def stop(proc: subprocess.Popen[bytes]) -> dict[str, Any]:
    """SIGTERM; the time until the daemon has exited; what is left in its session."""
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(120)
    except subprocess.TimeoutExpired:
        print("the daemon did not exit within 120 s of SIGTERM", file=sys.stderr)
        return {"sigterm_to_exit_s": None, "exit_status": None, "left_processes": None}
    return {
        "sigterm_to_exit_s": round(time.monotonic() - t0, 3),
        "exit_status": proc.returncode,
        "left_processes": len(session_processes(proc.pid)),
    }


def passed(run: dict[str, Any]) -> bool:
    """Behaviour, not timing: everything repaired, nothing lost or left behind."""
    return bool(
        run["after_ready"] == run["after_writes"] == {"mis_keyed_left": 0, "wrong_owner_or_mode": 0}
        and run["lost"] == run["repaired_elsewhere"] == 0
        and run["rewrites"] == run["writes"]
        and run["stop"]["exit_status"] == 0
        and run["stop"]["left_processes"] == 0
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--users",
        type=int,
        nargs="+",
        action="extend",
        metavar="N",
        help="numbers of users, one daemon run each (repeatable; default 200 2000 10000)",
    )
    parser.add_argument("--writes", type=int, help="writes to random users (default 2000)")
    parser.add_argument(
        "--idle-seconds", type=float, help="idle CPU sampled over this long (default 10)"
    )
    parser.add_argument("--backend", help='write [watch] backend = "NAME" into the settings')
    parser.add_argument(
        "--repair-wait",
        type=float,
        help="seconds to wait for each write's repair before counting it lost (default 2; "
        "with --backend polling: two poll intervals of 2 s plus 1 s, since a write waits for the "
        "next poll and a poll of 10,000 homes itself takes time)",
    )
    parser.add_argument(
        "--fs",
        choices=("host", "image"),
        default="host",
        help="where the homes and the state directory live: the host's $TMPDIR (default), or a "
        "fresh journaled ext4 image loop-mounted for each N (the same empty file system for "
        "every run, whatever earlier runs left on the host's)",
    )
    parser.add_argument(
        "--passwd",
        action="store_true",
        help="give the users entries in /etc/passwd and /etc/group (bind-mounted for the daemon "
        "alone): a host whose users are local, where each lookup reads the file from the top",
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="before each N: sync, then wait this long (60: what earlier runs freed no longer "
        "slows a journal-less ext4's file creations)",
    )
    parser.add_argument("--ready-timeout", type=float, default=600.0)
    parser.add_argument("--seed", type=int, default=8, help="which users the writes go to")
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: 50 users, 200 writes, 1 s idle"
    )
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON line")
    args = parser.parse_args(argv)
    users = args.users or ([50] if args.quick else [200, 2000, 10_000])
    args.writes = args.writes if args.writes is not None else (200 if args.quick else 2000)
    if args.idle_seconds is None:
        args.idle_seconds = 1.0 if args.quick else 10.0
    if args.repair_wait is None:
        args.repair_wait = 5.0 if args.backend == "polling" else 2.0
    if os.geteuid() != 0:
        print("bench/scale.py runs as root: it gives each home its own uid", file=sys.stderr)
        return 2

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)  # clean up (daemon, sysctl, temp tree) as on Ctrl-C

    signal.signal(signal.SIGTERM, on_sigterm)
    runs: list[dict[str, Any]] = []
    with enough_inotify_watches(2 * max(users) + 2) as watches:
        for n in users:
            try:
                runs.append(run_once(n, args))
            except SettingsRefused as exc:
                print(
                    f"regauthd run refused the settings (exit 2) with backend = "
                    f"{args.backend!r}: {exc}",
                    file=sys.stderr,
                )
                return 2
    print(table(runs), file=sys.stderr)
    if args.json:
        figures = {"backend": args.backend, "max_user_watches": watches, "runs": runs}
        print(json.dumps(figures))
    return 0 if all(passed(r) for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
