"""How long a short command takes, whole process, against ``python -c pass`` in the same run.

    .venv/bin/python bench/cli_start.py             # 60 runs of each, interleaved
    .venv/bin/python bench/cli_start.py --quick     # 5 runs: a smoke run
    .venv/bin/python bench/cli_start.py --runs N [--json]

Each round runs, one after the other (so the machine's load hits all of them alike):

- ``python -c pass`` with the project's interpreter: the floor, Python's own start;
- ``regauthd fix --docker-config FILE`` on a clean config (nothing to repair), as the installed
  console script (``.venv/bin/regauthd``) and as ``python -m regauthd``;
- ``regauthd --help``, both ways.

Wall-clock time from ``fork`` to ``wait4``, and the CPU time (user + system) and peak RSS
``wait4`` reports. Printed: p50 and p90 per command and the p50 ratio to ``python -c pass``
(issue 9's target: under 9x for ``fix`` and ``--help``, wall-clock). CPU time moves less with
other work on the machine than wall-clock time does. Bytecode is written and used, as for an
installed tool, whatever ``PYTHONDONTWRITEBYTECODE`` says.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / ".venv" / "bin"
PYTHON = BIN / "python"
TARGET = 9.0


def _commands(config: Path) -> dict[str, list[str]]:
    fix = ["fix", "--docker-config", str(config)]
    return {
        "python -c pass": [str(PYTHON), "-c", "pass"],
        "regauthd fix": [str(BIN / "regauthd"), *fix],
        "python -m regauthd fix": [str(PYTHON), "-m", "regauthd", *fix],
        "regauthd --help": [str(BIN / "regauthd"), "--help"],
        "python -m regauthd --help": [str(PYTHON), "-m", "regauthd", "--help"],
    }


def _once(argv: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    """Seconds from start to exit, CPU seconds (user + system) and peak RSS in KiB; the command
    must exit 0."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=tempfile.gettempdir()
    )
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.stderr is not None
    err = proc.stderr.read()
    proc.stderr.close()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {proc.returncode}: {err.decode()[-500:]}")
    return elapsed, usage.ru_utime + usage.ru_stime, usage.ru_maxrss


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--runs", type=int, default=60)
    parser.add_argument("--quick", action="store_true", help="5 runs of each")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args()
    runs = 5 if args.quick else args.runs
    with tempfile.TemporaryDirectory(prefix="regauthd-bench-cli-") as tmp:
        home = Path(tmp)
        config = home / ".docker" / "config.json"
        config.parent.mkdir(mode=0o700)
        config.write_text(json.dumps({"auths": {"ghcr.io": {"auth": "dTpw"}}}, indent="\t") + "\n")
        config.chmod(0o600)
        clean = config.read_bytes()
        env = {**os.environ, "HOME": str(home), "DOCKER_CONFIG": str(config.parent)}
        # As installed (pip and pipx compile every module): the warm-up run writes the .pyc
        # files a PYTHONDONTWRITEBYTECODE environment would otherwise make every run recompile.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        commands = _commands(config)
        times: dict[str, list[float]] = {name: [] for name in commands}
        cpu: dict[str, list[float]] = {name: [] for name in commands}
        rss: dict[str, int] = dict.fromkeys(commands, 0)
        for argv in commands.values():  # warm the page cache and the .pyc files once
            _once(argv, env)
        for _ in range(runs):
            for name, argv in commands.items():
                elapsed, used, peak = _once(argv, env)
                times[name].append(elapsed)
                cpu[name].append(used)
                rss[name] = max(rss[name], peak)
        if config.read_bytes() != clean:
            raise SystemExit("fix changed the clean config")
    floor = statistics.median(times["python -c pass"])
    cpu_floor = statistics.median(cpu["python -c pass"])
    figures = {
        name: {
            "p50_ms": round(statistics.median(values) * 1000, 1),
            "p90_ms": round(_percentile(values, 0.9) * 1000, 1),
            "ratio_p50": round(statistics.median(values) / floor, 2),
            "cpu_p50_ms": round(statistics.median(cpu[name]) * 1000, 1),
            "cpu_ratio_p50": round(statistics.median(cpu[name]) / cpu_floor, 2),
            "peak_rss_mib": round(rss[name] / 1024, 1),
        }
        for name, values in times.items()
    }
    worst = max(f["ratio_p50"] for n, f in figures.items() if n != "python -c pass")
    if args.json:
        print(json.dumps({"runs": runs, "commands": figures, "worst_ratio": worst}))
        return 0
    print(f"{runs} runs of each, interleaved; whole process, from fork to exit")
    print(f"{'command':26} {'p50':>9} {'p90':>9} {'x pass':>7} {'CPU p50':>9} {'x':>6} {'RSS':>8}")
    for name, f in figures.items():
        print(
            f"{name:26} {f['p50_ms']:7.1f}ms {f['p90_ms']:7.1f}ms {f['ratio_p50']:6.2f}x "
            f"{f['cpu_p50_ms']:7.1f}ms {f['cpu_ratio_p50']:5.2f}x {f['peak_rss_mib']:5.1f}MiB"
        )
    verdict = "met" if worst < TARGET else "MISSED"
    print(f"worst ratio {worst:.2f}x: target < {TARGET:.0f}x {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
