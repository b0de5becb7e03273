"""Smoke runs of the benchmarks: they work end to end (figures are not asserted: no timing)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.conftest import require_root

ROOT = Path(__file__).resolve().parents[2]


def _run(script: str, *args: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *args, "--json"],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    figures: dict[str, Any] = json.loads(proc.stdout.splitlines()[-1])
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


def test_scale_quick_repairs_every_config_and_every_write() -> None:
    require_root("bench/scale.py gives each user's home its own uid")
    # --passwd: the users have entries (their own /etc/passwd and /etc/group, in the daemon's
    # own mount namespace), so the daemon looks them up as on a host whose users are local.
    figures = _run("scale.py", "--quick", "--passwd")
    assert figures["backend"] is None
    assert set(figures["max_user_watches"]) == {"limit", "in_use", "needed", "raised_to"}
    [run] = figures["runs"]
    assert run["users"] == 50
    assert run["passwd"] is True
    assert run["mis_keyed_before"] == 25
    clean = {"mis_keyed_left": 0, "wrong_owner_or_mode": 0}
    assert run["after_ready"] == run["after_writes"] == clean
    assert run["log"]["configs"] == 50
    assert run["writes"] == run["rewrites"] == 200
    assert run["lost"] == run["repaired_elsewhere"] == 0
    for figure in ("ready_s", "rss_after_writes_mib"):
        assert run[figure] > 0
    assert set(run["process"]) == {"rss_mib", "hwm_mib", "threads", "fds"}
    for latencies in (run["raw"], run["react"]):
        assert set(latencies) == {"p50_ms", "p99_ms", "p99_9_ms", "max_ms"}
    assert set(run["react_over_raw"]) == {"p50", "p99"}
    assert set(run["idle"]) == {"seconds", "cpu_s", "cpu_s_per_s"}
    assert run["stop"]["exit_status"] == 0
    assert run["stop"]["left_processes"] == 0


def test_hostile_bench_runs_every_case() -> None:
    figures = _run("hostile.py", "--quick")
    assert [c["case"] for c in figures["cases"]] == ["honest", "token-body", "error-body"]


def test_soak_bench_repairs_every_write_under_journal_and_probe_traffic() -> None:
    """A 15-second soak (the real one runs 10 minutes): every write repaired, the journal
    follower and the probes ran, in the bench's own network namespace (Hub probes fail there
    at once as unreachable)."""
    require_root("bench/soak.py gives each user's home its own uid and its own network namespace")
    figures = _run("soak.py", "--minutes", "0.25", "--users", "10", "--probe-interval", "3")
    assert figures["writes"] > 100
    assert figures["missed"] == 0
    assert figures["mis_keyed_left"] == 0
    assert figures["journal_alerts"] > 0
    statuses = figures["probe_results_in_status"]
    assert any(k.endswith(" ok") and k.startswith("127.0.0.1:") for k in statuses), statuses
    assert any(k == "docker.io unreachable" for k in statuses), statuses
    assert figures["rss_mib_first_min"] > 0


def test_expiry_bench_compares_check_with_and_without_expiry_reading() -> None:
    figures = _run("expiry.py", "--quick")
    assert (figures["credentials"], figures["runs"]) == (200, 3)
    assert set(figures["with_expiry"]) == set(figures["without_expiry"]) == {
        "p50_ms", "p90_ms", "min_ms"
    }  # fmt: skip
    assert figures["p50_ratio"] > 0


def test_doctor_bench_reaches_every_registry_and_reports_the_hung_one_last() -> None:
    figures = _run("doctor.py", "--quick", "--timeout", "1")
    assert figures["registries"] == 5
    assert figures["hung_rounds_in_order"] == figures["hung_rounds"] == 1


def test_fuzz_bench_runs_every_target_without_a_failure() -> None:
    figures = _run("fuzz.py", "--seconds", "0.5")
    names = [t["target"] for t in figures["targets"]]
    assert names == ["config", "settings", "challenge", "token", "journal"]
    for target in figures["targets"]:
        assert target["cases"] > 0 and target["failures"] == [], target


def test_cli_start_bench_times_every_command() -> None:
    figures = _run("cli_start.py", "--quick")
    assert set(figures["commands"]) >= {"python -c pass", "regauthd fix", "regauthd --help"}
    assert all(f["p50_ms"] > 0 for f in figures["commands"].values())


def test_documents_bench_measures_each_rule_against_its_baseline() -> None:
    figures = _run("documents.py", "--quick")
    assert set(figures) == {
        "registries", "rounds", "pull_secret", "kubelet_lookup", "auth_json_plan",
    }  # fmt: skip


def test_metrics_bench_times_every_kind_and_counts_torn_reads() -> None:
    figures = _run("metrics.py", "--rounds", "30", "--rewrites", "100")
    assert set(figures["write"]) >= {"plain", "atomic", "regauthd", "full"}
    assert figures["reader"]["rewrites"] == 100
    assert figures["reader"]["torn"] == 0 and figures["reader"]["temp_files_left"] == 0


def test_start_pass_bench_repairs_every_config_in_both_modes() -> None:
    figures = _run("start_pass.py", "--quick")
    assert figures["configs"] == 300
    assert all(figures[mode]["p50_s"] > 0 for mode in ("batched", "per_fix"))
