"""`regauthd check` with expiry reading vs without it, whole process, on one config with 1,000
file-stored credentials (a third Amazon ECR passwords, a third JWTs, a third opaque passwords).

Both variants run in the same session, interleaved (with, without, with, ...), N runs each; the
baseline is the same `check` with ``REGAUTHD_BENCH_NO_EXPIRY=1`` (the switch only this script
uses), so the difference is the expiry reading alone: decoding 1,000 secrets, the findings,
the note. Prints p50/p90 per variant and the p50 ratio (target < 2x).

    .venv/bin/python bench/expiry.py            # 1,000 credentials, 15 runs each
    .venv/bin/python bench/expiry.py --quick    # 200 credentials, 3 runs each
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from _common import PYTHON, ROOT, percentile

SWITCH = "REGAUTHD_BENCH_NO_EXPIRY"
PAYLOAD_BYTES = 400
"""Real ECR payloads are ~1,200 bytes (a ~3.4 kB `auth`): 334 of them would pass the 1 MiB a
config may have (`regauthd.dockerconfig.file` refuses more), so the bench's are shorter."""


def ecr_password(expires_at: datetime) -> str:
    """As `aws ecr get-login-password` prints it (see tests/rigs/tokens.py)."""
    document = {
        "payload": base64.b64encode(os.urandom(PAYLOAD_BYTES)).decode(),
        "datakey": base64.b64encode(os.urandom(185)).decode(),
        "version": "2",
        "type": "DATA_KEY",
        "expiration": int(expires_at.timestamp()),
    }
    return base64.b64encode(json.dumps(document, separators=(",", ":")).encode()).decode()


def jwt_token(expires_at: datetime) -> str:
    def part(obj: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    claims = {"sub": "ci", "exp": int(expires_at.timestamp())}
    signature = base64.urlsafe_b64encode(os.urandom(256)).rstrip(b"=").decode()
    return f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part(claims)}.{signature}"


def make_config(path: Path, count: int) -> None:
    later = datetime.now(UTC) + timedelta(hours=11)
    auths = {}
    for i in range(count):
        kind = i % 3
        if kind == 0:
            host, user, secret = (
                f"{100000000000 + i}.dkr.ecr.eu-west-1.amazonaws.com",
                "AWS",
                ecr_password(later),
            )
        elif kind == 1:
            host, user, secret = f"reg{i}.example.com", "bot", jwt_token(later)
        else:
            host, user, secret = f"opaque{i}.example.com", "user", os.urandom(16).hex()
        auth = base64.b64encode(f"{user}:{secret}".encode()).decode()
        auths[host] = {"auth": auth}
    path.write_text(json.dumps({"auths": auths}, indent="\t"))
    path.chmod(0o600)


def run_check(config: Path, *, expiry: bool, home: Path) -> float:
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "LANG": "C.UTF-8"}
    if not expiry:
        env[SWITCH] = "1"
    started = time.perf_counter()
    proc = subprocess.run(
        [str(PYTHON), "-m", "regauthd", "check", "--json", "--docker-config", str(config)],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        cwd=ROOT,
        timeout=120,
    )
    elapsed = (time.perf_counter() - started) * 1000
    if proc.returncode != 0:
        raise SystemExit(f"check failed ({proc.returncode}): {(proc.stdout + proc.stderr)[-500:]}")
    has_expiry = "expiry" in json.loads(proc.stdout.splitlines()[0])
    if has_expiry != expiry:
        raise SystemExit("the switch did not switch expiry reading")
    return elapsed


def summary(values: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(statistics.median(values), 1),
        "p90_ms": round(percentile(values, 0.9), 1),
        "min_ms": round(min(values), 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--credentials", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--quick", action="store_true", help="200 credentials, 3 runs each")
    parser.add_argument("--json", action="store_true", help="figures as one JSON line")
    args = parser.parse_args()
    if args.quick:
        args.credentials, args.runs = 200, 3
    with tempfile.TemporaryDirectory(prefix="regauthd-bench-expiry-") as scratch:
        home = Path(scratch)
        config = home / "config.json"
        make_config(config, args.credentials)
        run_check(config, expiry=True, home=home)  # warm the page cache and .pyc files
        run_check(config, expiry=False, home=home)
        with_expiry: list[float] = []
        without: list[float] = []
        for _ in range(args.runs):
            with_expiry.append(run_check(config, expiry=True, home=home))
            without.append(run_check(config, expiry=False, home=home))
    figures = {
        "credentials": args.credentials,
        "runs": args.runs,
        "with_expiry": summary(with_expiry),
        "without_expiry": summary(without),
        "p50_ratio": round(statistics.median(with_expiry) / statistics.median(without), 3),
        "target_p50_ratio": 2.0,
    }
    if args.json:
        print(json.dumps(figures))
        return 0
    print(
        f"check, whole process, {args.credentials} file-stored credentials, {args.runs} runs each"
    )
    for name in ("with_expiry", "without_expiry"):
        f = figures[name]
        assert isinstance(f, dict)
        p50, p90, low = f["p50_ms"], f["p90_ms"], f["min_ms"]
        print(f"  {name:<15} p50 {p50:8.1f} ms  p90 {p90:8.1f} ms  min {low:8.1f} ms")
    print(f"  p50 ratio {figures['p50_ratio']:.3f} (target < 2)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
