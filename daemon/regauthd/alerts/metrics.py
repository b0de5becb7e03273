"""Alert counters and watch gauges for fleets: a Prometheus textfile-collector file."""

from __future__ import annotations

import threading
from pathlib import Path

from regauthd.statefile import write_atomically


def _metric_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Metrics:
    """Counters by alert kind, for fleets: a Prometheus textfile-collector file.

    Thread-safe; :meth:`render` is pure text, :meth:`write` replaces the file atomically.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[tuple[str, str], float] = {}
        self._gauges: dict[str, float] = {}
        self.dirty = False

    def count(self, name: str, kind: str = "", by: float = 1) -> None:
        with self._lock:
            self._counters[(name, kind)] = self._counters.get((name, kind), 0) + by
            self.dirty = True

    def gauge(self, name: str, value: float) -> None:
        with self._lock:
            if self._gauges.get(name) != value:
                self._gauges[name] = value
                self.dirty = True

    def value(self, name: str, kind: str = "") -> float:
        with self._lock:
            return self._counters.get((name, kind), 0)

    def render(self) -> str:
        with self._lock:
            counters = sorted(self._counters.items())
            gauges = sorted(self._gauges.items())
        lines: list[str] = []
        seen: set[str] = set()
        for (name, kind), value in counters:
            metric = f"regauthd_{name}_total"
            if metric not in seen:
                seen.add(metric)
                lines.append(f"# TYPE {metric} counter")
            label = f'{{kind="{_metric_label(kind)}"}}' if kind else ""
            lines.append(f"{metric}{label} {value:g}")
        for name, value in gauges:
            lines.append(f"# TYPE regauthd_{name} gauge")
            lines.append(f"regauthd_{name} {value:g}")
        return "\n".join(lines) + "\n"

    def write(self, path: Path) -> None:
        """Replace ``path`` whole (:func:`regauthd.statefile.write_atomically`, world-readable
        for the node exporter). Still dirty when it fails, so the next write tries again."""
        self.dirty = False
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(path, self.render().encode(), mode=0o644)
        except OSError:
            self.dirty = True
            raise
