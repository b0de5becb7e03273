"""What bench/scale.py prints: start-up phases read from the daemon's JSON log, and the table of
figures (one column per number of users, the issue's target last)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any


def log_phases(log: Path, started_wall: float) -> dict[str, float | int]:
    """Start-up phases from the daemon's JSON log: seconds from process start to
    ``daemon.starting`` (imports), to ``daemon.watches_armed``, to the first repair (every
    config read: the repairs start once all are), to ``daemon.ready``."""
    stamps: dict[str, float] = {}
    found: dict[str, float | int] = {}
    for raw in log.read_bytes().splitlines():
        try:
            line = json.loads(raw)
        except ValueError:
            continue
        event = line.get("event", "")
        if "timestamp" not in line:
            continue
        when = datetime.fromisoformat(line["timestamp"]).timestamp() - started_wall
        if event == "daemon.starting":
            stamps.setdefault("imports_s", when)
        elif event == "daemon.watches_armed":
            stamps["armed_s"] = when
        elif event.startswith("config.") and "first_repair_s" not in stamps:
            stamps["first_repair_s"] = when
        elif event == "watch.overflow":
            found["overflows"] = int(found.get("overflows", 0)) + 1
        elif event == "daemon.ready":
            stamps["ready_logged_s"] = when
            found["watched_dirs"] = int(line.get("watched_dirs", -1))
            found["configs"] = int(line.get("configs", -1))
    found.update({k: round(v, 3) for k, v in stamps.items()})
    return found


def _q(figures: dict[str, float]) -> str:
    keys = ("p50_ms", "p99_ms", "p99_9_ms", "max_ms")
    return " / ".join(f"{figures[k]:.2f}" for k in keys) if figures else "-"


def _phases(log: dict[str, float]) -> str:
    keys = ("imports_s", "armed_s", "first_repair_s", "ready_logged_s")
    return " / ".join(f"{log[k]:.2f}" if k in log else "-" for k in keys)


ROWS: list[tuple[str, Callable[[dict[str, Any]], object], str]] = [
    ("users", lambda r: f"{r['users']:,}", "target at 10,000"),
    ("disk: new file write+fsync p50/p99/p99.9/max (ms)", lambda r: _q(r["disk_fsync"]), ""),
    ("READY (s)", lambda r: f"{r['ready_s']:.2f}", "< 15"),
    ("  imports / armed / first repair / ready (s)", lambda r: _phases(r["log"]), ""),
    ("mis-keyed before", lambda r: r["mis_keyed_before"], ""),
    ("event queue overflows (full rescans)", lambda r: r["log"].get("overflows", 0), ""),
    ("mis-keyed after READY", lambda r: r["after_ready"]["mis_keyed_left"], "0"),
    ("owner/mode changed", lambda r: r["after_ready"]["wrong_owner_or_mode"], "0"),
    ("watched dirs", lambda r: r["log"].get("watched_dirs", "-"), ""),
    ("RSS after READY (MiB)", lambda r: r["process"]["rss_mib"], "< 100"),
    ("VmHWM (MiB)", lambda r: r["process"]["hwm_mib"], ""),
    ("threads", lambda r: r["process"]["threads"], "<= 6"),
    ("open fds", lambda r: r["process"]["fds"], ""),
    ("react p50/p99/p99.9/max (ms)", lambda r: _q(r["react"]), "p99 < 5"),
    ("raw p50/p99/p99.9/max (ms)", lambda r: _q(r["raw"]), ""),
    ("react/raw at p50, p99", lambda r: "{p50} x, {p99} x".format(**r["react_over_raw"]), ""),
    ("writes / rewrites / lost", lambda r: "{writes} / {rewrites} / {lost}".format(**r), ""),
    ("mis-keyed after writes", lambda r: r["after_writes"]["mis_keyed_left"], "0"),
    ("RSS after writes (MiB)", lambda r: r["rss_after_writes_mib"], ""),
    ("idle CPU (s per s)", lambda r: r["idle"]["cpu_s_per_s"], ""),
    ("SIGTERM to exit (s)", lambda r: r["stop"]["sigterm_to_exit_s"], ""),
    ("processes left", lambda r: r["stop"]["left_processes"], "0"),
]


def table(runs: list[dict[str, Any]]) -> str:
    """One row per figure, one column per N, the issue's target at 10,000 users last."""
    cells = [[str(cell(r)) for r in runs] for _, cell, _ in ROWS]
    first = max(len(name) for name, _, _ in ROWS)
    widths = [max(len(row[i]) for row in cells) for i in range(len(runs))]
    lines = []
    for (name, _, target), row in zip(ROWS, cells, strict=True):
        body = "  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True))
        lines.append(f"{name.ljust(first)}  {body}  {target}".rstrip())
    return "\n".join(lines)
