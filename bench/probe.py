"""Benchmark: 50 registries probed concurrently over one shared httpx client.

Starts real ``docker-registry`` processes with token auth (the tests' token issuer) on loopback
and probes them under N distinct registry names (``bench-07.test`` reached at
``http://127.0.0.1:PORT``), as the daemon does in one round. Prints:

- total wall time of the round, against the slowest single probe in the same round (a ratio
  near 1 means the probes really ran side by side; near N means they queued);
- the sum of all probe latencies (what a sequential loop would roughly cost);
- TCP connections opened (counted in the client's network backend), per round: the second
  round shows keep-alive reuse.

On loopback the probes are CPU-bound (client, registry and issuer share the machine's cores), so
concurrency cannot beat the sequential baseline here; a wide bound even costs time, because
httpcore's pool scans every pooled connection for each queued request (and, without ``sniffio``
installed, attempts that import on every request). On real networks each probe mostly waits for
round trips, which is what the bound overlaps; a stuck registry costs one slot, not the round.

Usage: ``.venv/bin/python bench/probe.py [--registries 50] [--processes 1] [--rounds 2]
[--concurrency 50] [--quick]``. Needs ``docker-registry`` (Debian package docker-registry).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpcore
import structlog

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "daemon"))

from tests.rigs.registry import start_registry  # noqa: E402

from regauthd.dockerconfig.auth import Credential  # noqa: E402
from regauthd.probe.client import make_client, probe_many  # noqa: E402
from regauthd.probe.result import ProbePolicy, ProbeResult, ProbeStatus, ProbeTarget  # noqa: E402

USER = ("bench", "bench-password-1")


class CountingBackend(httpcore.AsyncNetworkBackend):
    """Counts TCP connections the client opens (wraps httpcore's own backend)."""

    def __init__(self, inner: httpcore.AsyncNetworkBackend) -> None:
        self.inner = inner
        self.opened = 0

    async def connect_tcp(self, *args: Any, **kwargs: Any) -> httpcore.AsyncNetworkStream:
        self.opened += 1
        return await self.inner.connect_tcp(*args, **kwargs)

    async def connect_unix_socket(self, *args: Any, **kwargs: Any) -> httpcore.AsyncNetworkStream:
        return await self.inner.connect_unix_socket(*args, **kwargs)

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


def count_connections(client: Any) -> CountingBackend:
    # httpx has no public hook for this; the benchmark reaches into the default transport's
    # connection pool (httpx 0.28 / httpcore 1.x layout).
    pool = client._transport._pool
    counter = CountingBackend(pool._network_backend)
    pool._network_backend = counter
    return counter


async def one_round(
    client: Any, targets: list[ProbeTarget], concurrency: int
) -> tuple[float, list[ProbeResult]]:
    started = time.perf_counter()
    results = await probe_many(
        client, targets, concurrency=concurrency, policy=ProbePolicy(timeout_s=60)
    )
    return time.perf_counter() - started, results


async def bench(urls: list[str], args: argparse.Namespace) -> int:
    targets = [
        ProbeTarget(
            registry=f"bench-{i:02d}.test",
            credential=Credential(*USER),
            repository=f"team/app{i}",
            endpoint=urls[i % len(urls)],
        )
        for i in range(args.registries)
    ]
    failures = 0
    async with make_client(max_connections=max(64, args.registries)) as client:
        counter = count_connections(client)
        rounds = [(f"round {n} (concurrent)", args.concurrency) for n in range(1, args.rounds + 1)]
        if args.sequential:
            rounds.append(("sequential baseline (concurrency 1)", 1))
        for label, concurrency in rounds:
            before = counter.opened
            wall, results = await one_round(client, targets, concurrency)
            failures += report(label, concurrency, wall, results, counter.opened - before)
    return 1 if failures else 0


def report(
    label: str, concurrency: int, wall: float, results: list[ProbeResult], opened: int
) -> int:
    latencies = [r.latency_ms for r in results]
    slowest = max(latencies)
    bad = [r for r in results if r.status is not ProbeStatus.OK or not r.push_allowed]
    print(f"{label}:")
    print(f"  registries probed          {len(results):8d}")
    print(f"  concurrency bound          {concurrency:8d}")
    print(f"  total wall time            {wall * 1000:8.0f} ms")
    print(f"  slowest single probe       {slowest:8d} ms")
    print(f"  fastest single probe       {min(latencies):8d} ms")
    print(f"  sum of probe latencies     {sum(latencies):8d} ms")
    print(f"  wall / slowest             {wall * 1000 / max(slowest, 1):8.2f}")
    print(f"  connections opened         {opened:8d}")
    print(f"  results not ok             {len(bad):8d}")
    for r in bad[:5]:
        print(f"    {r.registry}: {r.status.value}: {r.detail}")
    return len(bad)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--registries", type=int, default=50)
    parser.add_argument("--processes", type=int, default=1, help="registry processes to start")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=None, help="default: --registries")
    parser.add_argument(
        "--no-sequential",
        dest="sequential",
        action="store_false",
        help="skip the sequential baseline round",
    )
    parser.add_argument("--quick", action="store_true", help="5 registries, 1 round (smoke test)")
    args = parser.parse_args(argv)
    if args.quick:
        args.registries, args.rounds, args.processes, args.sequential = 5, 1, 1, False
    args.concurrency = args.concurrency or args.registries
    if shutil.which("docker-registry") is None:
        print("bench/probe.py: docker-registry not found (Debian package docker-registry)")
        return 2
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    context = multiprocessing.get_context("spawn")
    hosts: list[tuple[Any, Any]] = []
    try:
        for n in range(args.processes):
            parent, child = context.Pipe()
            proc = context.Process(target=serve_registry, args=(child, n), daemon=True)
            proc.start()
            hosts.append((proc, parent))
        urls = [parent.recv() for _, parent in hosts]
        print(
            f"{args.registries} registry names on {args.processes} docker-registry "
            "process(es) with token auth (issuer in its own process), one shared "
            "httpx.AsyncClient in this one"
        )
        return asyncio.run(bench(urls, args))
    finally:
        for _, parent in hosts:
            parent.send("stop")
        for proc, _ in hosts:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.terminate()
                proc.join()


def serve_registry(conn: Any, number: int) -> None:
    """Child process: a registry and its token issuer, until the parent says stop.

    The issuer's threads would otherwise share the GIL with the client being measured.
    """
    with tempfile.TemporaryDirectory(prefix="regauthd-bench-") as tmp:
        reg = start_registry(Path(tmp), users=dict([USER]), auth="token", name=f"bench{number}")
        try:
            conn.send(reg.url)
            conn.recv()
        finally:
            reg.stop()


if __name__ == "__main__":
    sys.exit(main())
