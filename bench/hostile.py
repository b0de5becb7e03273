"""Benchmark: what a hostile registry costs ``regauthd probe`` (peak RSS, wall time).

Runs the real command (``python -m regauthd probe --registry HOST --json``, a subprocess, its
peak RSS from ``wait4``) against a hostile registry on loopback (``tests/rigs/hostile.py``, the
real wire format) in four cases:

- ``honest``: a well-behaved answer (the floor: interpreter, httpx, one probe);
- ``token-body``: the token service answers ``200`` with a valid token padded to ``--size``
  bytes (JSON whitespace: read whole, it parses);
- ``error-body``: a wrong password, answered ``401`` with a body of ``--size`` bytes;
- ``trickle``: every body one byte per second (``--timeout 2``: the probe's deadline is 6 s).

Prints each case's peak RSS, wall time, the bytes the server managed to send, and the probe's
status. ``--source DIR`` runs another checkout's ``daemon/`` (e.g. the code before the bounds:
``--source /work/main/daemon``); no bytecode is written there.

Usage: ``.venv/bin/python bench/hostile.py [--size 1073741824] [--source DIR] [--quick]
[--json]``. ``--quick``: 64 MiB bodies, no trickle case (smoke test).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.rigs.hostile import start_hostile  # noqa: E402

USER = ("bench", "bench-password-1")
WRONG_PASSWORD = "not-the-bench-password"


def run_probe(source: Path, host: str, password: str, timeout_s: float) -> dict[str, Any]:
    """``regauthd probe`` for ``host`` with a config holding ``bench:password``."""
    with tempfile.TemporaryDirectory(prefix="regauthd-hostile-") as tmp:
        cfg = Path(tmp)
        token = base64.b64encode(f"{USER[0]}:{password}".encode()).decode()
        (cfg / "config.json").write_text(json.dumps({"auths": {host: {"auth": token}}}))
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": tmp,
            "LANG": "C.UTF-8",
            "PYTHONPATH": str(source),
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        argv = [sys.executable, "-m", "regauthd", "probe", "--docker-config", str(cfg)]
        argv += ["--registry", host, "--json", "--timeout", f"{timeout_s:g}"]
        started = time.monotonic()
        with (cfg / "out.json").open("w+") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.DEVNULL, env=env, cwd=tmp)
            _, status, usage = os.wait4(proc.pid, 0)
            elapsed = time.monotonic() - started
            proc.returncode = os.waitstatus_to_exitcode(status)
            out.seek(0)
            text = out.read()
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    return {
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
        "wall_s": round(elapsed, 2),
        "status": lines[0]["status"] if lines else f"exit {proc.returncode}",
        "detail": lines[0]["detail"][:100] if lines else "",
    }


def case(name: str, source: Path, timeout_s: float, **behaviour: Any) -> dict[str, Any]:
    password = behaviour.pop("password", USER[1])
    with start_hostile(users=dict([USER]), **behaviour) as reg:
        figures = run_probe(source, reg.host, password, timeout_s)
        figures["server_sent_mib"] = round(reg.bytes_sent / 2**20, 1)
    figures["case"] = name
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1 << 30, help="body size in bytes")
    parser.add_argument("--source", type=Path, default=ROOT / "daemon", help="daemon/ to run")
    parser.add_argument("--quick", action="store_true", help="64 MiB bodies, no trickle case")
    parser.add_argument("--json", action="store_true", help="the figures as one JSON line")
    args = parser.parse_args(argv)
    size = 64 << 20 if args.quick else args.size
    results = [
        case("honest", args.source, 10, auth="bearer"),
        case("token-body", args.source, 10, auth="bearer", body_size=size),
        case("error-body", args.source, 10, password=WRONG_PASSWORD, body_size=size),
    ]
    if not args.quick:
        results.append(case("trickle", args.source, 2, trickle=True))
    if args.json:
        print(json.dumps({"size": size, "source": str(args.source), "cases": results}))
        return 0
    print(f"regauthd probe against a hostile registry ({size / 2**20:g} MiB bodies), {args.source}")
    print(f"{'case':<11} {'peak RSS':>10} {'wall':>8} {'server sent':>12}  status: detail")
    for r in results:
        print(
            f"{r['case']:<11} {r['peak_rss_mib']:>6} MiB {r['wall_s']:>6} s "
            f"{r['server_sent_mib']:>8} MiB  {r['status']}: {r['detail']}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
