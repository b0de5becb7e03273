"""Smoke runs of the benchmarks: they work end to end (figures are not asserted: no timing)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _run(script: str, *args: str) -> dict[str, object]:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *args, "--json"],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    figures: dict[str, object] = json.loads(proc.stdout.splitlines()[-1])
    return figures


def test_react_quick_repairs_every_write_exactly_once() -> None:
    figures = _run("react.py", "--quick")
    assert figures["writes"] == figures["rewrites"] == 200
    assert figures["final_keys"] == ["https://index.docker.io/v1/"]


def test_idle_bench_samples_both_processes() -> None:
    figures = _run("idle.py", "--seconds", "1")
    assert set(figures) == {"seconds", "regauthd", "bare_python_sleep", "sigterm_to_exit_ms"}


def test_watcher_bench_delivers_every_save_on_every_backend() -> None:
    figures = _run("watcher.py", "--quick")
    for backend in ("floor", "inotify", "native", "polling"):
        result = figures[backend]
        assert isinstance(result, dict)
        assert result["delivered"] == result["rounds"] > 0, (backend, result)
