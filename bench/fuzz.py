"""Run each fuzz target of ``tests/rigs/fuzz.py`` for N seconds; print cases per second, the
distinct inputs tried, and the distinct failures found (grouped by exception type and place).

    .venv/bin/python bench/fuzz.py                 # 30 s per target
    .venv/bin/python bench/fuzz.py --seconds 5 --target config

The baseline, measured in the same run: the same strategy drawing inputs with a no-op target
(what hypothesis itself costs); ``ratio`` is target cases/s over that. Failures are caught and
counted (hypothesis would stop at the first); each distinct one is printed once with its input,
shortened. The hypothesis database lives in a temp directory (removed at the end).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.database import DirectoryBasedExampleDatabase
from tests.rigs.fuzz import TARGETS, FuzzTarget

BATCH = 2000


@dataclass
class Tally:
    cases: int = 0
    inputs: set[str] = field(default_factory=set)
    failures: dict[str, str] = field(default_factory=dict)


def _run_for(target: FuzzTarget, seconds: float, database: Path, *, no_op: bool) -> Tally:
    tally = Tally()
    deadline = time.monotonic() + seconds
    profile = settings(
        max_examples=BATCH,
        deadline=None,
        database=DirectoryBasedExampleDatabase(str(database)),
        phases=[Phase.explicit, Phase.reuse, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )

    class TimeUp(Exception):
        pass

    @profile
    @given(target.strategy)
    def case(value: Any) -> None:
        if time.monotonic() > deadline:
            raise TimeUp
        tally.cases += 1
        tally.inputs.add(hashlib.blake2b(repr(value).encode(), digest_size=8).hexdigest())
        if no_op:
            return
        try:
            target.run(value)
        except Exception as exc:
            frame = traceback.extract_tb(exc.__traceback__)[-1]
            key = f"{type(exc).__name__} at {Path(frame.filename).name}:{frame.lineno}"
            tally.failures.setdefault(key, f"{str(exc)[:120]!r} on {repr(value)[:160]}")

    while time.monotonic() < deadline:
        try:
            case()
        except TimeUp:
            break
        except Exception:  # noqa: S112 - hypothesis' own complaints end a batch only
            continue
    return tally


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="per target (default 30)")
    parser.add_argument("--target", action="append", choices=[t.name for t in TARGETS])
    parser.add_argument("--json", action="store_true", help="end with the figures as JSON")
    args = parser.parse_args()
    figures: list[dict[str, Any]] = []
    chosen = [t for t in TARGETS if not args.target or t.name in args.target]
    print(
        f"{'target':<10} {'cases':>8} {'cases/s':>9} {'baseline/s':>10} {'ratio':>6} "
        f"{'inputs':>8} {'failures':>8} {'db':>4}"
    )
    total_failures = 0
    with tempfile.TemporaryDirectory(prefix="regauthd-fuzz-") as tmp:
        for target in chosen:
            database = Path(tmp) / target.name
            base_seconds = max(0.5, args.seconds / 5)
            baseline = _run_for(target, base_seconds, database / "baseline", no_op=True)
            started = time.monotonic()
            tally = _run_for(target, args.seconds, database / "run", no_op=False)
            elapsed = time.monotonic() - started
            rate = tally.cases / elapsed
            base_rate = baseline.cases / base_seconds
            saved = sum(1 for p in database.rglob("*") if p.is_file())
            print(
                f"{target.name:<10} {tally.cases:>8} {rate:>9.0f} {base_rate:>10.0f} "
                f"{rate / base_rate:>6.2f} {len(tally.inputs):>8} {len(tally.failures):>8} "
                f"{saved:>4}",
                flush=True,
            )
            figures.append(
                {
                    "target": target.name,
                    "cases": tally.cases,
                    "cases_per_s": round(rate, 1),
                    "baseline_per_s": round(base_rate, 1),
                    "distinct_inputs": len(tally.inputs),
                    "failures": sorted(tally.failures),
                    "db_files": saved,
                }
            )
            for key, example in tally.failures.items():
                print(f"    {key}: {example}")
            total_failures += len(tally.failures)
    if args.json:
        print(json.dumps({"seconds": args.seconds, "targets": figures}))
    return 1 if total_failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
