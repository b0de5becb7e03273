"""Platforms without inotify (macOS, BSD), proven on Linux (issue 9, item 3).

Every process here runs with ``tests/rigs/noinotify`` first on ``PYTHONPATH``: its
``sitecustomize`` hides the C library's ``inotify_*`` symbols (watchdog's inotify module then
raises ``UnsupportedLibcError`` at import and its ``Observer`` falls back to polling) and removes
Linux-only ``os`` calls such as ``pipe2``; with ``REGAUTHD_TEST_NO_JOURNALD=1`` neither
systemd-python nor journalctl is there. In that environment ``fix``, ``check``, ``probe`` (against
the registry rig), ``scan-journal --log-file`` and the daemon (a write is repaired, a log file is
followed; with no journal at all it says so in one line) work. FSEvents, kqueue and launchd
cannot run on Linux: this is what stands in for them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.rigs.configs import HUB, auth, auths_keys, docker_style_write, mis_keyed
from tests.rigs.daemon import Daemon
from tests.rigs.registry import RunningRegistry, start_registry_or_skip

NO_INOTIFY = Path(__file__).resolve().parents[1] / "rigs" / "noinotify"
ENV = {"PYTHONPATH": str(NO_INOTIFY), "REGAUTHD_TEST_NO_JOURNALD": "1"}
CAROL = ("carol", "carol-noinotify-pw-5Tz")
FAILURE = (
    'level=error msg="Not continuing with pull after error: denied: requested access to the '
    'resource is denied"'
)


def _python(*argv: str, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *argv],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **ENV, "HOME": str(home)},
    )


def _syslog_line(message: str) -> str:
    local = datetime.now(UTC).astimezone()
    return f"{local:%b} {local.day:2d} {local:%H:%M:%S} mac dockerd[9]: {message}\n"


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    with start_registry_or_skip(tmp_path_factory.mktemp("noinotify"), users=dict([CAROL])) as reg:
        yield reg


def test_the_environment_is_one_without_inotify_and_the_watcher_falls_back(
    tmp_path: Path,
) -> None:
    probe = """
import os
from regauthd.service.watcher import open_watcher
from regauthd.service.watcher.protocol import BackendUnavailableError
try:
    import watchdog.observers.inotify
except Exception as exc:
    print("watchdog inotify:", type(exc).__name__)
from watchdog.observers import Observer
print("Observer:", Observer.__name__)
try:
    open_watcher("inotify")
except BackendUnavailableError:
    print("our inotify: unavailable")
w = open_watcher("auto")
print("auto:", w.backend)
w.close()
print("pipe2:", hasattr(os, "pipe2"))
"""
    done = _python("-c", probe, home=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "watchdog inotify: UnsupportedLibcError",
        "Observer: PollingObserver",
        "our inotify: unavailable",
        "auto: native",
        "pipe2: False",
    ]


def test_fix_check_probe_and_scan_journal_work(registry: RunningRegistry, tmp_path: Path) -> None:
    cfg = tmp_path / ".docker"
    cfg.mkdir()
    (cfg / "config.json").write_bytes(mis_keyed())
    (cfg / "config.json").chmod(0o600)
    state = ["--state-dir", str(tmp_path / "state")]  # never the host's /var/lib/regauthd
    fixed = _python("-m", "regauthd", "fix", "--docker-config", str(cfg), *state, home=tmp_path)
    assert fixed.returncode == 0, fixed.stderr
    assert auths_keys(cfg / "config.json") == [HUB]
    checked = _python("-m", "regauthd", "check", "--docker-config", str(cfg), home=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr

    reg_cfg = tmp_path / "reg"
    reg_cfg.mkdir()
    (reg_cfg / "config.json").write_text(
        json.dumps({"auths": {registry.host: {"auth": auth(*CAROL)}}})
    )
    probed = _python(
        "-m", "regauthd", "probe", "--docker-config", str(reg_cfg), "--json", home=tmp_path
    )
    assert probed.returncode == 0, probed.stderr
    (result,) = [json.loads(line) for line in probed.stdout.splitlines()]
    assert (result["registry"], result["status"]) == (registry.host, "ok")

    log = tmp_path / "dockerd.log"
    log.write_text(_syslog_line(FAILURE))
    scanned = _python(
        "-m", "regauthd", "scan-journal", "--log-file", str(log), "--json", home=tmp_path
    )
    assert scanned.returncode == 1, scanned.stderr  # 1: failures found
    assert json.loads(scanned.stdout.splitlines()[0])["kind"] == "denied"


def test_the_daemon_repairs_on_watchdogs_fallback_and_follows_a_log_file(tmp_path: Path) -> None:
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    log = tmp_path / "dockerd.log"
    log.write_text(_syslog_line('level=info msg="API listen on /run/docker.sock"'))
    settings = (
        '[daemon]\noutput = "json"\nlog_level = "debug"\n[alerts]\nsuppress_window = 0\n'
        '[watch]\npoll_interval = "200ms"\n'
        f'[journal]\nenabled = true\nlog_files = ["{log}"]\n'
    )
    daemon = Daemon(tmp_path, settings=settings, docker_configs=[cfg], env=ENV)
    try:
        daemon.wait_ready()
        (opened,) = daemon.named("watch.opened")
        assert (opened["backend"], opened["requested"]) == ("native", "auto")
        docker_style_write(cfg, mis_keyed(password="pw-mac"), 1)
        daemon.wait_event("config.normalized")
        assert auths_keys(cfg / "config.json") == [HUB]
        with log.open("a") as out:
            out.write(_syslog_line(FAILURE))
        (alert,) = daemon.wait_event("journal.auth_failure")
        assert alert["unit"] == "dockerd" and "a pull failed" in alert["reason"], alert
        assert daemon.named("journal.unavailable") == []
    finally:
        assert daemon.stop() == 0, daemon.err.read_text()[-2000:]


def test_with_no_journal_at_all_the_daemon_says_so_once_and_runs_on(tmp_path: Path) -> None:
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    settings = (
        '[daemon]\noutput = "json"\nlog_level = "info"\n[alerts]\nsuppress_window = 0\n'
        "[journal]\nenabled = true\n"
    )
    daemon = Daemon(tmp_path, settings=settings, docker_configs=[cfg], env=ENV)
    try:
        daemon.wait_ready()
        (said,) = daemon.wait_event("journal.unavailable")
        assert "no journal here" in said["reason"]
        assert "Library/Containers/com.docker.docker/Data/log" in said["reason"]
        docker_style_write(cfg, mis_keyed(password="pw-nojournal"), 1)
        daemon.wait_event("config.normalized")
        assert auths_keys(cfg / "config.json") == [HUB]
        assert len(daemon.named("journal.unavailable")) == 1
    finally:
        assert daemon.stop() == 0, daemon.err.read_text()[-2000:]
