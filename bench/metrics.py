"""The metrics textfile for 200 registries: what one write costs, and that no reader ever sees
half a file.

1. **write time**: ``Metrics.write`` after one probe result changed one registry (render with
   prometheus_client, re-rendering that registry's lines only, then
   ``statefile.write_atomically``: temp file, fsync, rename, directory fsync) against a plain
   ``write()`` + ``rename()`` of the same bytes (no fsync: the floor), interleaved round by round
   in the same run, in the same directory; percentiles and p50 ratios. Also timed: ``atomic``,
   ``write_atomically`` alone on the same bytes (the fsyncs' share), and ``full``, rendering the
   whole file with one ``generate_latest`` (what every write would cost without the reuse).
2. **torn reads**: a reader PROCESS (as node_exporter is) loops on the file while the daemon's
   writer rewrites it N times (10,000 by default), each time with a changed counter; every read
   is parsed with prometheus_client's parser and must hold every sample. ``torn`` must be 0.

Usage: ``.venv/bin/python bench/metrics.py [--rounds N] [--rewrites N] [--quick] [--json]``
(``--dir`` picks the directory: default a temp dir on /var/tmp, a disk like the state dir's).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from multiprocessing.synchronize import Event
from pathlib import Path

from _common import ROOT

sys.path.insert(0, str(ROOT / "daemon"))

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from regauthd.alerts.metrics import Metrics, RegistryProbe
from regauthd.statefile import write_atomically

STATUSES = (
    "ok",
    "bad_credentials",
    "push_denied",
    "no_credentials",
    "rate_limited",
    "unreachable",
    "tls_error",
    "error",
)


def fleet_metrics(registries: int) -> Metrics:
    """A daemon's metrics with ``registries`` registries, each in three configs."""
    metrics = Metrics()
    metrics.track_probes()
    now = time.time()
    for i in range(registries):
        registry = f"registry-{i}.example.com:5000"
        for c in range(3):
            status = STATUSES[(i + c) % len(STATUSES)]
            metrics.probed(f"/home/user{c}/.docker/config.json", _probe(registry, status, now - c))
        metrics.count("conflicts", registry)
    expiry = {f"registry-{i}.example.com:5000": now + 3600 + i for i in range(50)}
    metrics.credential_expiry(lambda: expiry)
    metrics.gauge("watched_configs", 3)
    return metrics


def plain_write(path: Path, data: bytes) -> None:
    temp = path.with_name(f".{path.name}.plain")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.rename(temp, path)


def percentiles(samples_s: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in samples_s)
    cut = statistics.quantiles(ms, n=100, method="inclusive")
    return {
        "p50_ms": round(cut[49], 3),
        "p90_ms": round(cut[89], 3),
        "p99_ms": round(cut[98], 3),
        "max_ms": round(ms[-1], 3),
    }


def time_writes(directory: Path, metrics: Metrics, rounds: int) -> dict[str, object]:
    target = directory / "regauthd.prom"
    plain_target = directory / "plain.prom"
    whole = metrics.collector_registry()
    timings: dict[str, list[float]] = {"plain": [], "atomic": [], "regauthd": [], "full": []}
    data = b""
    for i in range(rounds):
        # one probe result, as the daemon gets them: one registry's figures change
        registry = f"registry-{i % 200}.example.com:5000"
        result = "ok" if i % 2 else "bad_credentials"
        metrics.probed("/home/user0/.docker/config.json", _probe(registry, result, time.time()))
        # interleaved: each round times every kind, so load on the machine hits them alike
        started = time.perf_counter()
        metrics.write(target)
        timings["regauthd"].append(time.perf_counter() - started)
        data = target.read_bytes()
        started = time.perf_counter()
        plain_write(plain_target, data)
        timings["plain"].append(time.perf_counter() - started)
        started = time.perf_counter()
        write_atomically(plain_target, data, mode=0o644)
        timings["atomic"].append(time.perf_counter() - started)
        started = time.perf_counter()
        write_atomically(plain_target, generate_latest(whole), mode=0o644)
        timings["full"].append(time.perf_counter() - started)
    figures: dict[str, object] = {name: percentiles(t) for name, t in timings.items()}
    plain_p50 = statistics.median(timings["plain"])
    figures["bytes"] = len(data)
    figures["series"] = sum(not line.startswith("#") for line in data.decode().splitlines())
    for name in ("regauthd", "atomic", "full"):
        ratio = statistics.median(timings[name]) / plain_p50
        figures[f"ratio_p50_{name}_over_plain"] = round(ratio, 2)
    atomic_p50 = statistics.median(timings["atomic"])
    figures["ratio_p50_regauthd_over_atomic"] = round(
        statistics.median(timings["regauthd"]) / atomic_p50, 2
    )
    return figures


def _probe(registry: str, status: str, at: float) -> RegistryProbe:
    return RegistryProbe(
        registry=registry,
        status=status,
        authenticated=status in {"ok", "push_denied"},
        at=at,
        push_allowed=status != "push_denied",
        rate_limit_remaining=100,
        rate_limit_limit=200,
    )


def reader(
    path: str, expected: int, stop: Event, out: multiprocessing.Queue[dict[str, int]]
) -> None:
    reads = torn = 0
    while not stop.is_set():
        with open(path, "rb") as file:
            text = file.read().decode()
        reads += 1
        try:
            found = sum(len(f.samples) for f in text_string_to_metric_families(text))
        except ValueError:
            found = -1
        if found != expected or not text.endswith("\n"):
            torn += 1
    out.put({"reads": reads, "torn": torn})


def torn_reads(directory: Path, metrics: Metrics, rewrites: int) -> dict[str, object]:
    target = directory / "regauthd.prom"
    metrics.write(target)
    expected = sum(len(f.samples) for f in text_string_to_metric_families(target.read_text()))
    context = multiprocessing.get_context("fork")
    stop = context.Event()
    out: multiprocessing.Queue[dict[str, int]] = context.Queue()
    process = context.Process(target=reader, args=(str(target), expected, stop, out))
    process.start()
    started = time.perf_counter()
    for _ in range(rewrites):
        metrics.count("repairs")  # a new version each time: same samples, another value
        metrics.write(target)
    seconds = time.perf_counter() - started
    stop.set()
    counts = out.get(timeout=60)
    process.join(timeout=10)
    leftovers = sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))
    return {
        "rewrites": rewrites,
        "seconds": round(seconds, 2),
        "reads": counts["reads"],
        "torn": counts["torn"],
        "samples_per_read": expected,
        "temp_files_left": len(leftovers),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--registries", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2000, help="timed writes of each kind")
    parser.add_argument("--rewrites", type=int, default=10_000, help="rewrites under a reader")
    parser.add_argument("--quick", action="store_true", help="200 rounds, 500 rewrites")
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.rewrites = 200, 500
    base = args.dir or Path("/var/tmp" if Path("/var/tmp").is_dir() else tempfile.gettempdir())
    with tempfile.TemporaryDirectory(prefix="regauthd-bench-metrics-", dir=base) as tmp:
        metrics = fleet_metrics(args.registries)
        figures: dict[str, object] = {
            "registries": args.registries,
            "directory": str(base),
            "write": time_writes(Path(tmp), metrics, args.rounds),
            "reader": torn_reads(Path(tmp), metrics, args.rewrites),
        }
    if args.json:
        print(json.dumps(figures))
        return 0
    write = figures["write"]
    assert isinstance(write, dict)
    print(f"textfile: {args.registries} registries, {write['series']} series, {write['bytes']} B")
    print(f"{args.rounds} interleaved writes of each kind, in {base}:")
    for name, label in (
        ("plain", "plain write + rename (baseline)"),
        ("atomic", "write_atomically, same bytes"),
        ("regauthd", "Metrics.write, 1 registry changed"),
        ("full", "whole generate_latest + atomic"),
    ):
        p = write[name]
        print(
            f"  {label:34} p50 {p['p50_ms']:7.3f} ms  p90 {p['p90_ms']:7.3f}  "
            f"p99 {p['p99_ms']:7.3f}  max {p['max_ms']:7.3f}"
        )
    print(
        f"  p50 ratios over plain: Metrics.write {write['ratio_p50_regauthd_over_plain']}x "
        f"(target <= 2x), write_atomically {write['ratio_p50_atomic_over_plain']}x, "
        f"whole render {write['ratio_p50_full_over_plain']}x"
    )
    print(
        "  p50 ratio Metrics.write over write_atomically of the same bytes (what rendering "
        f"adds to a durable write): {write['ratio_p50_regauthd_over_atomic']}x"
    )
    r = figures["reader"]
    assert isinstance(r, dict)
    print(
        f"reader process during {r['rewrites']} rewrites ({r['seconds']} s): {r['reads']} reads "
        f"of {r['samples_per_read']} samples each, torn {r['torn']} (must be 0), "
        f"temp files left {r['temp_files_left']}"
    )
    return 1 if r["torn"] else 0


if __name__ == "__main__":
    sys.exit(main())
