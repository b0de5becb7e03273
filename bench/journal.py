"""Scan a large journal file for registry auth failures: regauthd beside journalctl | grep.

    .venv/bin/python bench/journal.py              # 1,000,000 entries (generated once, cached)
    .venv/bin/python bench/journal.py --quick      # 20,000 entries: a smoke run
    .venv/bin/python bench/journal.py --entries N [--failures K] [--repeat R]

The journal file is written by the real ``systemd-journal-remote`` and cached in the temporary
directory (``$TMPDIR/regauthd-bench-journal/``, shared by every checkout). 10% of the entries
come from docker.service (ordinary dockerd chatter, look-alike lines and K auth failures), the
rest from other units, some of them with auth-sounding words (sshd, nginx 401s) that a unit
filter must keep out.

Measured in the same run, each in its own process tree (peak RSS and CPU from ``wait4``), best
of R by wall-clock time:

- regauthd: ``regauthd.journal.scan.scan`` on the systemd-python fast path over the directory,
  with the workers ``regauthd scan-journal`` uses by default (one per CPU, at most 4), and with one
  process (the figure that compares CPU for CPU);
- regauthd on the journalctl backend (hosts without systemd-python): one ``journalctl --grep``
  with the rules' phrases, ``-o export``, per worker over a slice of the time range (as
  ``scan-journal`` runs it), parsed in Python; and with one journalctl;
- the pipeline ``journalctl --directory D -u docker.service -o cat | grep -c -E PATTERN``
  (journal-remote rotates at ~50 MB, so the million entries span several files);
- for reference, the default ``Reader.get_next()`` loop (every field converted) with the same
  recognizer.

``--before DIR`` adds both regauthd rows run on an older checkout's package
(``git archive REV daemon | tar -x -C DIR``), in the same run. The 1-minute load average
(the highest seen before a repetition) is printed with every row. Bytecode is written (one
unmeasured run of each) and used, as for an installed tool, whatever
``PYTHONDONTWRITEBYTECODE`` says.

All must find exactly K failures, and both regauthd backends (as scan-journal runs them) must
take at most 1.1x the pipeline's time: the script exits 1 otherwise. Results also go to
``bench/results/journal-latest.json``. Peak RSS counts the journal files' mapped pages (clean
page cache shared with every other reader), not only heap.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
CACHE = Path(tempfile.gettempdir()) / "regauthd-bench-journal"
TARGET = 1.1
JOURNAL_REMOTE = "/lib/systemd/systemd-journal-remote"

GREP_PATTERN = (
    r"after error.*(unauthorized|denied|toomanyrequests)"
    r"|Ignoring extra error returned from registry"
)

FAILURES = [
    'level=error msg="Not continuing with push after error" error="unauthorized: authentication '
    'required"',
    'level=error msg="Not continuing with push after error" error="unauthorized: incorrect '
    'username or password"',
    'level=error msg="Not continuing with push after error" error="denied: requested access to '
    'the resource is denied"',
    'level=error msg="Not continuing with pull after error: toomanyrequests: You have reached '
    "your pull rate limit. You may increase the limit by authenticating and upgrading: "
    'https://www.docker.com/increase-rate-limit"',
    'level=info msg="Attempting next endpoint for push after error: Head \\"https://ghcr.io/v2/'
    'acme/api/blobs/sha256:4f4fb700ef54\\": unauthorized"',
    'level=info msg="Ignoring extra error returned from registry: unauthorized: authentication '
    'required"',
]
DOCKER_CHATTER = [
    'level=info msg="API listen on /run/docker.sock"',
    'level=debug msg="Calling GET /v1.43/containers/json"',
    'level=info msg="Layer sha256:{h} cleaned up"',
    'level=info msg="Attempting next endpoint for push after error: Get \\"https://127.0.0.1:5000'
    '/v2/\\": dial tcp 127.0.0.1:5000: connect: connection refused"',
    'level=error msg="Not continuing with push after error" error="context canceled"',
    'level=error msg="Handler for POST /v1.43/containers/create returned error: mkdir '
    '/var/lib/docker/overlay2/{h}: permission denied"',
    'level=debug msg="Trying to pull acme/unauthorized from https://registry-1.docker.io"',
    'level=info msg="ignoring event" container={h} module=libcontainerd namespace=moby '
    'topic=/tasks/delete type="*events.TaskDelete"',
    'level=info msg="Download failed, retrying (1/5): read: connection reset by peer"',
]
OTHER = [
    ("ssh.service", "sshd", "Failed password for invalid user admin from 10.0.0.{n} port 51234"),
    ("ssh.service", "sshd", "pam_unix(sshd:auth): authentication failure; rhost=10.0.0.{n}"),
    ("nginx.service", "nginx", '10.0.0.{n} - - "GET /v2/ HTTP/1.1" 401 87 "unauthorized: x"'),
    ("cron.service", "CRON", "pam_unix(cron:session): session opened for user root(uid=0)"),
    ("systemd-logind.service", "systemd-logind", "New session {n} of user ci."),
    ("kubelet.service", "kubelet", "I1130 12:03:01 {n} kubelet.go:2190] SyncLoop (PLEG)"),
]


def _field(key: str, value: str) -> str:
    return f"{key}={value}\n"


def generate(path: Path, entries: int, failures: int, seed: int) -> None:
    """Stream export format into journal-remote; docker.service every 10th entry."""
    rng = random.Random(seed)
    boot = uuid.UUID(int=rng.getrandbits(128)).hex
    docker_slots = list(range(0, entries, 10))
    failing = set(rng.sample(docker_slots, failures))
    start_us = int(time.time() * 1_000_000) - entries * 1000
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob("*.journal"):
        stale.unlink()
    proc = subprocess.Popen(
        [JOURNAL_REMOTE, "-o", str(path), "-"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdin is not None
    chunk: list[str] = []
    for i in range(entries):
        head = (
            f"__REALTIME_TIMESTAMP={start_us + i * 1000}\n__MONOTONIC_TIMESTAMP={1_000_000 + i}\n"
            f"_BOOT_ID={boot}\n"
        )
        if i % 10 == 0:
            if i in failing:
                message = FAILURES[i % len(FAILURES)]
            else:
                message = DOCKER_CHATTER[i % len(DOCKER_CHATTER)].format(h=f"{i:012x}")
            body = (
                "_SYSTEMD_UNIT=docker.service\nSYSLOG_IDENTIFIER=dockerd\n_PID=812\n_COMM=dockerd\n"
                "_TRANSPORT=stdout\nPRIORITY=6\n"
                f'MESSAGE=time="2026-11-30T12:03:01.{i:09d}Z" {message}\n'
            )
        else:
            unit, ident, text = OTHER[i % len(OTHER)]
            body = (
                f"_SYSTEMD_UNIT={unit}\nSYSLOG_IDENTIFIER={ident}\n_PID={100 + i % 50}\n"
                f"_TRANSPORT=syslog\nPRIORITY=6\nMESSAGE={text.format(n=i % 250)}\n"
            )
        chunk.append(head + body + "\n")
        if len(chunk) >= 5000:
            proc.stdin.write("".join(chunk).encode())
            chunk.clear()
    proc.stdin.write("".join(chunk).encode())
    proc.stdin.close()
    if proc.wait() != 0:
        raise SystemExit(f"journal-remote failed with {proc.returncode}")


REGAUTHD_SCAN = """
import os, sys, time
from datetime import UTC, datetime
from pathlib import Path
from regauthd.journal.backend import FollowOptions
from regauthd.journal.scan import scan
t0 = time.perf_counter()
backend = sys.argv[3]
options = FollowOptions(directory=Path(sys.argv[1]), units=("docker.service",), backend=backend)
workers = int(sys.argv[2])
n = sum(1 for _ in scan(options, since=datetime(1970, 1, 2, tzinfo=UTC), workers=workers))
print(n, time.perf_counter() - t0)
"""

NAIVE_SCAN = """
import sys, time
from systemd import journal
from regauthd.journal.recognize import DEFAULT
t0 = time.perf_counter()
r = journal.Reader(path=sys.argv[1])
r.add_match(_SYSTEMD_UNIT="docker.service")
rec = DEFAULT
n = 0
for entry in r:
    m = entry.get("MESSAGE", "")
    if rec.might_match(m.encode()) and "CONTAINER_ID" not in entry:
        t = entry["__REALTIME_TIMESTAMP"]
        n += rec.recognize(m, unit=entry["_SYSTEMD_UNIT"], time=t) is not None
print(n, time.perf_counter() - t0)
"""


def _measure(argv: list[str], env: dict[str, str]) -> tuple[str, float, int, float]:
    """stdout, wall seconds, peak RSS (KiB), CPU seconds (user + system) of the process tree."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, env=env)
    assert proc.stdout is not None
    output = proc.stdout.read()
    proc.stdout.close()
    # wait4 instead of proc.wait(): the rusage of exactly this process tree.
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, 1):
        raise SystemExit(f"{argv[:3]} failed with {code}")
    return output.decode(), wall, usage.ru_maxrss, usage.ru_utime + usage.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--failures", type=int, default=None, help="default: 300 per million")
    parser.add_argument(
        "--quick", action="store_true", help="20,000 entries, one repetition, no speed verdict"
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument(
        "--cache", type=Path, default=CACHE, help="where the journal files are kept"
    )
    parser.add_argument(
        "--before",
        type=Path,
        default=None,
        metavar="DIR",
        help="also run an older checkout's regauthd (DIR/daemon/regauthd), e.g. git archive",
    )
    args = parser.parse_args()
    if args.quick:
        args.entries, args.repeat = 20_000, 1
    failures = args.failures or max(6, args.entries * 300 // 1_000_000)
    journal_file = args.cache / f"journal-{args.entries}-{failures}-{args.seed}" / "system.journal"
    if not journal_file.exists():
        t0 = time.perf_counter()
        generate(journal_file, args.entries, failures, args.seed)
        took = time.perf_counter() - t0
        print(f"generated {args.entries:,} entries in {took:.1f} s: {journal_file}")
    size = sum(p.stat().st_size for p in journal_file.parent.glob("*.journal"))

    python = sys.executable
    workers = min(4, os.cpu_count() or 1)
    directory = str(journal_file.parent)
    runs = {
        # `regauthd scan-journal` shares a scan between one process per CPU (at most 4).
        "regauthd": [
            python,
            "-c",
            REGAUTHD_SCAN,
            str(journal_file.parent),
            str(workers),
            "systemd",
        ],
        "regauthd (one process)": [
            python,
            "-c",
            REGAUTHD_SCAN,
            str(journal_file.parent),
            "1",
            "systemd",
        ],
        # As scan-journal runs it: one journalctl per worker, read side by side.
        "regauthd (journalctl)": [
            python,
            "-c",
            REGAUTHD_SCAN,
            directory,
            str(workers),
            "journalctl",
        ],
        "regauthd (journalctl, one process)": [
            python,
            "-c",
            REGAUTHD_SCAN,
            directory,
            "1",
            "journalctl",
        ],
        "journalctl|grep": [
            "sh",
            "-c",
            f'journalctl --directory "$1" -u docker.service -o cat | grep -c -E "{GREP_PATTERN}"',
            "sh",
            str(journal_file.parent),
        ],
        "Reader.get_next (default)": [python, "-c", NAIVE_SCAN, str(journal_file.parent)],
    }
    if args.before is not None:
        # An older regauthd package (`git archive REV daemon | tar -x -C DIR`), the same way.
        pythonpath = f"PYTHONPATH={args.before.resolve() / 'daemon'}"
        for name in ("regauthd", "regauthd (journalctl)"):
            runs[f"{name}, before"] = ["env", pythonpath, *runs[name]]
    # As installed (pip compiles every module): bytecode is written and used, whatever
    # PYTHONDONTWRITEBYTECODE says; one unmeasured run of each writes it.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    for argv in runs.values():
        _measure(argv, env)
    results: dict[str, dict[str, float | int]] = {}
    for name, argv in runs.items():
        best: tuple[float, int, int, float] | None = None
        loads: list[float] = []
        for _ in range(args.repeat):
            loads.append(os.getloadavg()[0])
            out, wall, rss, cpu = _measure(argv, env)
            found = int(out.split()[0])
            if best is None or wall < best[0]:
                best = (wall, rss, found, cpu)
        assert best is not None
        wall, rss, found, cpu = best
        results[name] = {
            "seconds": round(wall, 3),
            "cpu_seconds": round(cpu, 3),
            "entries_per_second": round(args.entries / wall),
            "peak_rss_mib": round(rss / 1024, 1),
            "failures_found": found,
            "load_average": max(loads),
        }

    print(
        f"\n{args.entries:,} entries ({size / 1e6:.0f} MB journal), {failures} failures, "
        f"best of {args.repeat}"
    )
    theirs = results["journalctl|grep"]
    print(
        f"{'':40}{'seconds':>9}{'CPU s':>8}{'x wall':>8}{'x CPU':>7}{'peak RSS':>11}{'found':>7}"
        f"{'load':>6}"
    )
    for name, r in results.items():
        print(
            f"{name:40}{r['seconds']:>9.3f}{r['cpu_seconds']:>8.3f}"
            f"{r['seconds'] / theirs['seconds']:>7.2f}x"
            f"{r['cpu_seconds'] / theirs['cpu_seconds']:>6.2f}x"
            f"{r['peak_rss_mib']:>8.1f} MiB{r['failures_found']:>7}{r['load_average']:>6.2f}"
        )
    ok = True
    for name in ("regauthd", "regauthd (journalctl)"):
        ours = results[name]
        ratio = ours["seconds"] / theirs["seconds"]
        ours["ratio_to_pipeline"] = round(ratio, 2)
        ours["cpu_ratio_to_pipeline"] = round(ours["cpu_seconds"] / theirs["cpu_seconds"], 2)
        print(f"{name}: {ratio:.2f}x journalctl | grep (target <= {TARGET}x)")
        if not (ours["failures_found"] == theirs["failures_found"] == failures):
            print(f"MISMATCH in {name}: expected {failures} failures", file=sys.stderr)
            ok = False
        if ratio > TARGET:
            if args.entries >= 200_000:
                print(f"{name} takes more than {TARGET}x journalctl | grep", file=sys.stderr)
                ok = False
            else:
                # A smoke run: interpreter start-up (~50 ms) dominates a few thousand entries.
                print("(small run: speed not compared)", file=sys.stderr)
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "journal-latest.json").write_text(
        json.dumps({"entries": args.entries, "failures": failures, "results": results}, indent=2)
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
