"""The daemon's status file (``<state_dir>/status.json``) and ``regauthd status`` reading it."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from regauthd.service import status as status_module
from regauthd.service.loop import Loop
from regauthd.service.status import STATUS_FILE
from regauthd.settings import Environment
from regauthd.settingsfile import default_settings, with_overrides
from tests.rigs.configs import docker_style_write, mis_keyed, wait_until
from tests.rigs.daemon import Daemon

BASE_KEYS = {
    "pid", "started_at", "watched_configs", "watched_config_count", "last_repair", "last_alert",
    "suppressed_alerts",
}  # fmt: skip


def status_file(tmp_path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((tmp_path / "state" / STATUS_FILE).read_bytes())
    except (OSError, ValueError):
        return None
    assert isinstance(data, dict)
    return data


def status_command(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "regauthd", "status", "--state-dir", str(tmp_path / "state"),
         *extra],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip


def test_status_file_follows_repairs_and_alerts(
    tmp_path: Path, start_daemon: Callable[..., Daemon]
) -> None:
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    daemon = start_daemon(docker_configs=[cfg])
    first = wait_until(lambda: status_file(tmp_path), "status.json")
    assert set(first) == BASE_KEYS
    assert first["pid"] == daemon.proc.pid
    assert first["last_repair"] is None and first["last_alert"] is None
    assert (tmp_path / "state" / STATUS_FILE).stat().st_mode & 0o777 == 0o600

    docker_style_write(cfg, mis_keyed())
    config = str(cfg / "config.json")
    data = wait_until(
        lambda: (s := status_file(tmp_path)) and s["last_alert"] and s["last_repair"] and s,
        "a repair and an alert in status.json",
    )
    assert set(data) == BASE_KEYS
    assert data["watched_configs"] == [config]
    assert data["watched_config_count"] == 1
    assert set(data["last_repair"]) == {"path", "at", "changes"}
    assert data["last_repair"]["path"] == config
    assert any(
        "renamed to 'https://index.docker.io/v1/'" in c for c in data["last_repair"]["changes"]
    )
    assert set(data["last_alert"]) == {"kind", "subject", "at", "message"}
    assert data["last_alert"]["kind"] == "config.normalized"
    assert data["last_alert"]["subject"] == config
    assert data["started_at"] == first["started_at"]

    shown = status_command(tmp_path)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0].startswith(f"regauthd is running (pid {daemon.proc.pid}, since ")
    assert f"  {config}" in lines
    assert any(line.startswith(f"last repair: {config} at ") for line in lines)
    assert "probes: off" in lines and "journal: off" in lines
    as_json = json.loads(status_command(tmp_path, "--json").stdout)
    assert as_json["running"] is True and as_json["pid"] == daemon.proc.pid

    assert daemon.stop() == 0
    shown = status_command(tmp_path)
    assert shown.returncode == 1
    assert shown.stdout.startswith(
        f"regauthd is NOT running: the daemon (pid {daemon.proc.pid}) is not running any more"
    )


def test_status_file_has_probes_and_journal_when_they_run(
    tmp_path: Path, start_daemon: Callable[..., Daemon]
) -> None:
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    (cfg / "config.json").write_text('{"auths": {}}')  # nothing to probe: no network at all
    log = tmp_path / "messages"
    log.write_text("")
    daemon = start_daemon(
        f'[probe]\nenabled = true\n[journal]\nenabled = true\nbackend = "files"\n'
        f'log_files = ["{log}"]\n',
        docker_configs=[cfg],
    )
    data = wait_until(
        lambda: (s := status_file(tmp_path)) and "probes" in s and "journal" in s and s,
        "probes and journal in status.json",
    )
    assert set(data) == BASE_KEYS | {"probes", "journal"}
    assert data["probes"] == {"interval_s": 900.0, "results": []}
    assert set(data["journal"]) == {"units", "running", "failures_seen", "alerts_raised"}
    shown = status_command(tmp_path)
    assert shown.returncode == 0
    assert "probes: every 900 s, 0 result(s)" in shown.stdout
    assert "journal: " in shown.stdout and "journal: off" not in shown.stdout
    # At start, one line per component says it is on and what it does.
    (probes,) = daemon.named("probes.started")
    assert probes["every"] == "15 min" and probes["configs"] == [str(cfg / "config.json")]
    (journal,) = daemon.named("journal.following")
    assert journal["log_files"] == [str(log)]


def test_no_status_file_is_not_running(tmp_path: Path) -> None:
    shown = status_command(tmp_path)
    assert shown.returncode == 1
    assert "no status file at" in shown.stderr
    assert json.loads(status_command(tmp_path, "--json").stdout)["running"] is False


def test_bursts_write_the_status_file_at_most_once_a_second(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [100.0]
    loop = Loop(clock=lambda: now[0])
    writes: list[bytes] = []
    monkeypatch.setattr(status_module, "write_atomically", lambda _p, data: writes.append(data))
    settings = with_overrides(default_settings(Environment.current()), state_dir=tmp_path)
    status = status_module.StatusFile(settings, loop=loop, watched=lambda n: ([], 0))
    status.start()
    assert status.flush(5)
    assert len(writes) == 1
    for i in range(50):  # a burst within the same second
        status.on_alert({"event": "config.normalized", "subject": f"s{i}", "message": "m"})
    due = [t for _, _, t in loop._timers if not t.cancelled]
    assert len(due) == 1 and due[0].when == 101.0
    now[0] = 101.0
    due[0].callback()
    assert status.flush(5)
    assert len(writes) == 2
    assert json.loads(writes[-1])["last_alert"]["subject"] == "s49"
    status.stop()
    assert len(writes) == 3  # the last state, written before stop() returns
    loop.close()


def test_every_repair_is_logged_at_debug_while_its_alert_is_suppressed(tmp_path: Path) -> None:
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    settings = '[daemon]\noutput = "json"\nlog_level = "debug"\n[alerts]\nsuppress_window = 300\n'
    daemon = Daemon(tmp_path, settings=settings, docker_configs=[cfg])
    try:
        daemon.wait_ready()
        docker_style_write(cfg, mis_keyed("first", "pw-1"))
        daemon.wait_event("config.repaired")
        docker_style_write(cfg, mis_keyed("second", "pw-2"), seq=1)
        repaired = daemon.wait_event("config.repaired", count=2)
        assert all(e["path"] == str(cfg / "config.json") for e in repaired)
        assert "docker.io -> https://index.docker.io/v1/" in repaired[-1]["changes"]
        assert len(daemon.named("config.normalized")) == 1  # the second alert is held back
    finally:
        assert daemon.stop() == 0


def test_info_summary_counts_repairs_and_suppressed_alerts_and_status_shows_them(
    tmp_path: Path,
) -> None:
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    settings = (
        '[daemon]\noutput = "json"\nlog_level = "info"\n'
        "[alerts]\nsuppress_window = 300\nsummary_interval = 1\n"
    )
    daemon = Daemon(tmp_path, settings=settings, docker_configs=[cfg])
    try:
        daemon.wait_ready()
        for seq in range(3):  # three logins: three repairs, one alert, two held back
            docker_style_write(cfg, mis_keyed(f"user{seq}", f"pw-{seq}"), seq=seq)
            wait_until(
                lambda n=seq: sum(e["repairs"] for e in daemon.named("daemon.summary")) > n,
                f"repair {seq + 1} in a summary",
            )
        summaries = daemon.named("daemon.summary")
        assert sum(e["repairs"] for e in summaries) == 3
        assert sum(e["suppressed"].get("config.normalized", 0) for e in summaries) == 2
        assert all(e["level"] == "info" and e["configs"] == 1 for e in summaries)
        assert summaries[0]["summary"].startswith("repaired 1 write in 1 config in the last 1s")
        assert any(e["summary"].endswith("; 1 alert suppressed") for e in summaries)
        assert daemon.named("config.repaired") == []  # each repair itself is at debug
        assert len(daemon.named("config.normalized")) == 1
        data = wait_until(
            lambda: (
                (s := status_file(tmp_path))
                and s["suppressed_alerts"].get("config.normalized") == 2
                and s
            ),
            "2 suppressed config.normalized in status.json",
        )
        assert data["suppressed_alerts"] == {"config.normalized": 2}
        shown = status_command(tmp_path)
        assert (
            "alerts suppressed (repeats within the window) since start: config.normalized 2"
            in shown.stdout.splitlines()
        )
    finally:
        assert daemon.stop() == 0
    assert "pw-1" not in daemon.out.read_text()


def test_many_watched_configs_are_counted_and_the_first_ones_named(tmp_path: Path) -> None:
    """10,000 paths in every write would be ~700 KB to fsync once a second: the file names the
    first WATCHED_LISTED, counts them all, and `regauthd status` says how many it leaves out."""
    loop = Loop()
    settings = with_overrides(default_settings(Environment.current()), state_dir=tmp_path / "state")
    (tmp_path / "state").mkdir()
    watched = [Path(f"/home/u{i:03d}/.docker/config.json") for i in range(250)]
    status = status_module.StatusFile(
        settings, loop=loop, watched=lambda n: (watched[:n], len(watched))
    )
    status.start()
    status.stop()
    data = status_file(tmp_path)
    assert data is not None
    listed = status_module.WATCHED_LISTED
    assert data["watched_configs"] == [str(p) for p in watched[:listed]]
    assert data["watched_config_count"] == 250
    out = status_command(tmp_path).stdout
    assert "watching 250 config(s):\n  /home/u000/.docker/config.json\n" in out
    assert f"  ... and {250 - listed} more (the status file names the first {listed})" in out
    loop.close()
