"""Benchmark: ``regauthd doctor`` on a config with 5 registries (issue 11, "Measured").

Starts 5 real ``docker-registry`` processes on loopback, with TLS (each its own trustme CA; the
CAs go to ``--ca-file`` together) and htpasswd auth, writes a config with a working credential
for each, and runs the doctor command in this process (``regauthd.commands.doctor.command``,
stdout captured line by line with the time each line was printed). Two cases:

- **all reachable**: the doctor's whole run against the slowest single probe of the same run
  (the probe latency each ``connectivity`` line reports). The target: within the slowest probe
  plus 100 ms, i.e. the registries are checked concurrently and the local checks (config file,
  keys, helpers, journal) cost little beside them. Loading the system's CA store (once per run,
  before any probe starts, so not in any probe's latency) is measured alone beside it;
- **one hung** (a socket that accepts and never answers, in place of one registry): when the
  last line about the other four was printed, against when the hung one's first ``problem``
  (``tls``: no handshake within ``--timeout``) and its ``connectivity`` problem (the probe;
  on loopback it tries https, then plain http, each with the timeout) were.

Usage: ``.venv/bin/python bench/doctor.py [--rounds 5] [--timeout 2] [--quick] [--json]``.
Needs ``docker-registry`` and ``htpasswd`` (Debian packages docker-registry, apache2-utils).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import io
import json
import re
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "daemon"))

from tests.rigs.registry import RunningRegistry, start_registry  # noqa: E402

from regauthd.commands import doctor  # noqa: E402
from regauthd.probe.client import tls_context  # noqa: E402

REGISTRIES = 5
USER = ("bench", "bench-password-1")
_REACHED = re.compile(r"reached in (\d+) ms")


class TimedLines(io.TextIOBase):
    """A stdout that remembers each line and when (monotonic s) it was written."""

    def __init__(self) -> None:
        self.lines: list[tuple[float, str]] = []
        self._partial = ""

    def write(self, text: str) -> int:
        self._partial += text
        while "\n" in self._partial:
            line, self._partial = self._partial.split("\n", 1)
            self.lines.append((time.monotonic(), line))
        return len(text)


def run_doctor(
    config_dir: Path, argv: list[str]
) -> tuple[float, float, list[tuple[float, dict[str, Any]]]]:
    parser = argparse.ArgumentParser()
    doctor.add_arguments(parser)
    args = parser.parse_args(["--docker-config", str(config_dir), "--json", *argv])
    out = TimedLines()
    started = time.monotonic()
    with contextlib.redirect_stdout(out):
        doctor.command(args)
    ended = time.monotonic()
    return started, ended, [(t - started, json.loads(line)) for t, line in out.lines]


def write_config(directory: Path, hosts: list[str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    token = base64.b64encode(":".join(USER).encode()).decode()
    (directory / "config.json").write_text(
        json.dumps({"auths": {h: {"auth": token} for h in hosts}})
    )
    (directory / "config.json").chmod(0o600)
    return directory


@contextlib.contextmanager
def hung_port() -> Iterator[str]:
    listener = socket.create_server(("127.0.0.1", 0))  # the kernel accepts; no one answers
    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()


def reachable_round(
    workdir: Path, regs: list[RunningRegistry], common: list[str]
) -> dict[str, float]:
    cfg = write_config(workdir / "all", [r.host for r in regs])
    started, ended, rows = run_doctor(cfg, common)
    probes = [
        int(m.group(1))
        for _, row in rows
        if row["check"] == "connectivity" and (m := _REACHED.search(row["message"]))
    ]
    if len(probes) != len(regs):
        bad = [row for _, row in rows if row["status"] in {"problem", "not_checked"}]
        raise SystemExit(f"not every registry was reached: {bad}")
    total_ms = (ended - started) * 1000
    return {
        "total_ms": total_ms,
        "slowest_probe_ms": max(probes),
        "over_ms": total_ms - max(probes),
    }


def hung_round(workdir: Path, regs: list[RunningRegistry], common: list[str]) -> dict[str, float]:
    with hung_port() as hung:
        cfg = write_config(workdir / "hung", [*(r.host for r in regs[:-1]), hung])
        _, _, rows = run_doctor(cfg, common)
    others = [
        t for t, row in rows if row["registry"] not in {None, hung} and row["check"] != "journal"
    ]
    mine = {row["check"]: (t, row["status"]) for t, row in rows if row["registry"] == hung}
    first_problem = min(t for t, status in mine.values() if status == "problem")
    return {
        "others_last_line_ms": max(others) * 1000,
        "hung_first_problem_ms": first_problem * 1000,
        "hung_connectivity_ms": mine["connectivity"][0] * 1000,
        "in_order": float(
            max(others) < first_problem
            and mine["tls"][1] == "problem"
            and mine["connectivity"][1] == "problem"
        ),
    }


def ca_store_ms(ca_file: str) -> float:
    """What making the probes' TLS context costs (the system CA store, parsed once per run)."""
    started = time.monotonic()
    tls_context(ca_file)
    return (time.monotonic() - started) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=2.0)
    parser.add_argument("--quick", action="store_true", help="2 rounds")
    parser.add_argument("--json", action="store_true", help="figures as one JSON object")
    opts = parser.parse_args()
    rounds = 2 if opts.quick else opts.rounds
    with tempfile.TemporaryDirectory(prefix="regauthd-bench-doctor-") as tmp:
        workdir = Path(tmp)
        regs: list[RunningRegistry] = []
        try:
            for i in range(REGISTRIES):
                regs.append(
                    start_registry(workdir, users={USER[0]: USER[1]}, tls=True, name=f"r{i}")
                )
            ca_file = workdir / "cas.pem"
            ca_file.write_bytes(b"".join(r.ca_file.read_bytes() for r in regs if r.ca_file))
            empty_journal = workdir / "journal"
            empty_journal.mkdir()
            common = ["--ca-file", str(ca_file), "--timeout", str(opts.timeout),
                      "--journal-directory", str(empty_journal),
                      "--root-docker-config", str(workdir / "no-root-config.json")]  # fmt: skip
            reachable_round(workdir, regs, common)  # warm-up: imports, first TLS contexts
            reach = [reachable_round(workdir, regs, common) for _ in range(rounds)]
            ca_store = [ca_store_ms(str(ca_file)) for _ in range(rounds)]
            hung = [hung_round(workdir, regs, common) for _ in range(max(1, rounds // 2))]
        finally:
            for reg in regs:
                reg.stop()
    figures = {
        "registries": REGISTRIES,
        "rounds": rounds,
        "timeout_s": opts.timeout,
        "total_ms_median": statistics.median(r["total_ms"] for r in reach),
        "slowest_probe_ms_median": statistics.median(r["slowest_probe_ms"] for r in reach),
        "over_slowest_ms_median": statistics.median(r["over_ms"] for r in reach),
        "over_slowest_ms_max": max(r["over_ms"] for r in reach),
        "within_slowest_plus_100ms": sum(r["over_ms"] <= 100 for r in reach),
        "ca_store_load_ms_median": statistics.median(ca_store),
        "hung_others_last_line_ms_max": max(h["others_last_line_ms"] for h in hung),
        "hung_first_problem_ms_median": statistics.median(h["hung_first_problem_ms"] for h in hung),
        "hung_connectivity_ms_median": statistics.median(h["hung_connectivity_ms"] for h in hung),
        "hung_rounds_in_order": sum(int(h["in_order"]) for h in hung),
        "hung_rounds": len(hung),
    }
    if opts.json:
        print(json.dumps(figures))
        return 0
    print(f"doctor, {REGISTRIES} TLS registries on loopback, {rounds} rounds (after a warm-up):")
    print(
        f"  all reachable: total {figures['total_ms_median']:.0f} ms (median) vs slowest probe "
        f"{figures['slowest_probe_ms_median']:.0f} ms: over by "
        f"{figures['over_slowest_ms_median']:.0f} ms (max {figures['over_slowest_ms_max']:.0f}); "
        f"within slowest + 100 ms in {figures['within_slowest_plus_100ms']}/{rounds} rounds"
    )
    print(
        f"    of which loading the system CA store once (measured alone, same run): "
        f"{figures['ca_store_load_ms_median']:.0f} ms (median)"
    )
    for r in reach:
        print(
            f"    total {r['total_ms']:.0f} ms, slowest probe {r['slowest_probe_ms']:.0f} ms, "
            f"over {r['over_ms']:.0f} ms"
        )
    print(
        f"  one hung (--timeout {opts.timeout:g}): the other four's last line at "
        f"{figures['hung_others_last_line_ms_max']:.0f} ms (max); the hung one's first problem "
        f"(tls) at {figures['hung_first_problem_ms_median']:.0f} ms, its connectivity problem "
        f"(the probe, https then http on loopback) at "
        f"{figures['hung_connectivity_ms_median']:.0f} ms (medians); in that order in "
        f"{figures['hung_rounds_in_order']}/{figures['hung_rounds']} rounds"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
