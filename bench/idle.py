"""What an idle `regauthd run` costs (probes and journal off), beside a bare sleeping Python.

After READY=1 and one second to settle, both processes are sampled over the same N seconds:

- wake-ups: context switches of all threads (``/proc/PID/task/*/status``,
  voluntary + involuntary) and scheduler run counts (``/proc/PID/task/*/schedstat``);
- CPU seconds (utime + stime of ``/proc/PID/stat``);
- RSS at the end (``VmRSS``).

Then the daemon gets SIGTERM: the time until it has exited (clean shutdown) is printed too.

Usage: ``.venv/bin/python bench/idle.py [--seconds N] [--json]``
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import cpu_seconds, start_daemon, status_kib, wait_ready


def sample(pid: int) -> dict[str, float]:
    switches = 0
    runs = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        for line in (task / "status").read_text().splitlines():
            if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                switches += int(line.split()[1])
        runs += int((task / "schedstat").read_text().split()[2])
    return {
        "switches": switches,
        "runs": runs,
        "cpu_s": cpu_seconds(pid),
        "rss_mib": status_kib(pid, "VmRSS") / 1024,
    }


def delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {
        "wakeups_ctxt": after["switches"] - before["switches"],
        "wakeups_sched": after["runs"] - before["runs"],
        "cpu_s": round(after["cpu_s"] - before["cpu_s"], 3),
        "rss_mib": round(after["rss_mib"], 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="regauthd-idle-") as tmp:
        base = Path(tmp)
        cfg = base / "docker"
        cfg.mkdir()
        (cfg / "config.json").write_text('{"auths": {"docker.io": {"auth": "Y2k6cHc="}}}')
        settings = base / "config.toml"
        settings.write_text(
            '[daemon]\noutput = "json"\n[probe]\nenabled = false\n[journal]\nenabled = false\n'
        )
        with (base / "daemon.log").open("wb") as log:
            daemon, notify = start_daemon(
                base,
                ["--config", str(settings), "--docker-config", str(cfg),
                 "--state-dir", str(base / "state")],
                log,
            )  # fmt: skip
        bare = subprocess.Popen(
            [sys.executable, "-c", f"import time; time.sleep({args.seconds + 30})"]
        )
        try:
            wait_ready(notify, daemon, 30)
            # Settle: the metrics file and the last STATUS= go out one second after start-up.
            time.sleep(2.0)
            before = {"daemon": sample(daemon.pid), "bare": sample(bare.pid)}
            time.sleep(args.seconds)
            after = {"daemon": sample(daemon.pid), "bare": sample(bare.pid)}
            t0 = time.monotonic()
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(10)
            stop_ms = round((time.monotonic() - t0) * 1000, 1)
        finally:
            for proc in (daemon, bare):
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(10)
            notify.close()

    figures = {
        "seconds": args.seconds,
        "regauthd": delta(before["daemon"], after["daemon"]),
        "bare_python_sleep": delta(before["bare"], after["bare"]),
        "sigterm_to_exit_ms": stop_ms,
    }
    for name in ("regauthd", "bare_python_sleep"):
        f = figures[name]
        assert isinstance(f, dict)
        print(
            f"{name:>18}: wake-ups {f['wakeups_ctxt']} (ctxt) / {f['wakeups_sched']} (sched), "
            f"CPU {f['cpu_s']} s, RSS {f['rss_mib']} MiB over {args.seconds:g} s"
        )
    print(f"SIGTERM to exit: {stop_ms} ms (daemon, status {daemon.returncode})")
    if args.json:
        print(json.dumps(figures))
    return 0 if daemon.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
