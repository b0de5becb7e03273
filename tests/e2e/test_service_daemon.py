"""`regauthd run` as a real process against temp config directories.

Every test starts ``python -m regauthd run`` (JSON output to a file, a datagram socket for
sd_notify), drives the file system the way real writers do, and stops the daemon by PID.
Waits are for conditions (with generous limits), never for fixed times.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from regauthd.alerts.catalogue import CATALOGUE
from tests.rigs.configs import (
    HUB,
    WAIT_S,
    auth,
    auths_keys,
    docker_style_write,
    mis_keyed,
    wait_until,
)
from tests.rigs.daemon import Daemon, watch_settings


def test_ready_status_watchdog_and_clean_sigterm(
    tmp_path: Path, start_daemon: Callable[..., Daemon]
) -> None:
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    daemon = start_daemon(docker_configs=[cfg], watchdog_usec=200_000)
    daemon.notify.wait_for("WATCHDOG=1", WAIT_S, count=2)
    messages = daemon.notify.poll()
    ready = messages.index("READY=1")
    assert messages[ready + 1] == "STATUS=watching 1 config(s) in 1 dir(s); 0 repair(s); 0 alert(s)"
    docker_style_write(cfg, mis_keyed())
    daemon.notify.wait_for(
        "STATUS=watching 1 config(s) in 1 dir(s); 1 repair(s); 1 alert(s)", WAIT_S
    )
    daemon.signal(signal.SIGTERM)
    assert daemon.proc.wait(timeout=10) == 0
    messages = daemon.notify.poll()
    assert "STOPPING=1" in messages
    assert [e["event"] for e in daemon.events()][-1] == "daemon.stopping"
    assert daemon.err.read_text() == ""
    # at start, one line per watched pattern and whether probes and the journal are on
    assert [e["pattern"] for e in daemon.named("daemon.watching")] == [str(cfg / "config.json")]
    (components,) = daemon.named("daemon.components")
    assert (components["probes"], components["journal"]) == ("off", "off")


def test_existing_problem_is_repaired_before_ready(
    tmp_path: Path, start_daemon: Callable[..., Daemon]
) -> None:
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    (cfg / "config.json").write_bytes(mis_keyed())
    daemon = start_daemon(docker_configs=[cfg])
    assert auths_keys(cfg / "config.json") == [HUB]
    (event,) = daemon.named("config.normalized")
    assert event["message_id"] == CATALOGUE["config.normalized"].message_id.hex
    assert event["path"] == str(cfg / "config.json")
    # Backups live in the state directory, never beside config.json.
    assert sorted(p.name for p in cfg.iterdir()) == ["config.json"]
    assert list((tmp_path / "state" / "backups").rglob("*.json"))


def test_shell_redirect_write_is_repaired(
    tmp_path: Path, start_daemon: Callable[..., Daemon]
) -> None:
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    daemon = start_daemon(docker_configs=[cfg])
    content = mis_keyed("robot", "pw-redirect").decode()
    subprocess.run(["sh", "-c", f"printf '%s' '{content}' > '{cfg}/config.json'"], check=True)
    wait_until(lambda: auths_keys(cfg / "config.json") == [HUB], "normalized config")
    daemon.wait_event("config.normalized")


def test_directory_created_after_start(tmp_path: Path, start_daemon: Callable[..., Daemon]) -> None:
    home = tmp_path / "users"
    home.mkdir()
    daemon = start_daemon(watch_settings(home / "*" / ".docker" / "config.json"))
    cfg = home / "runner7" / ".docker"
    cfg.mkdir(parents=True)
    docker_style_write(cfg, mis_keyed())
    wait_until(lambda: auths_keys(cfg / "config.json") == [HUB], "first login normalized")
    assert daemon.proc.poll() is None


def test_directory_removed_and_recreated(
    tmp_path: Path, start_daemon: Callable[..., Daemon]
) -> None:
    cfg = tmp_path / "home" / ".docker"
    cfg.mkdir(parents=True)
    start_daemon(watch_settings(cfg / "config.json"))
    docker_style_write(cfg, mis_keyed(password="one"))
    wait_until(lambda: auths_keys(cfg / "config.json") == [HUB], "normalized before removal")
    for round_ in range(3):
        shutil.rmtree(cfg)
        cfg.mkdir()
        docker_style_write(cfg, mis_keyed(password=f"again-{round_}"))
        wait_until(lambda: auths_keys(cfg / "config.json") == [HUB], "normalized after re-create")


def test_symlinked_config_is_followed_to_its_target(
    tmp_path: Path, start_daemon: Callable[..., Daemon]
) -> None:
    cfg = tmp_path / "cfg"
    real = tmp_path / "real"
    cfg.mkdir()
    real.mkdir()
    (real / "docker.json").write_bytes(b"{}")
    (cfg / "config.json").symlink_to(real / "docker.json")
    start_daemon(docker_configs=[cfg])
    # The Docker CLI writes a temp file beside the link and renames it into the target's dir.
    tmp = cfg / "config.json12345"
    tmp.write_bytes(mis_keyed())
    tmp.rename(real / "docker.json")
    wait_until(lambda: auths_keys(real / "docker.json") == [HUB], "target normalized")
    assert (cfg / "config.json").is_symlink()


# -- flapping, new logins, no feedback loop ----------------------------------------------------


def test_flapping_writer_is_paused_with_one_alert_then_retried(
    tmp_path: Path, start_daemon: Callable[..., Daemon]
) -> None:
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    daemon = start_daemon(
        '[flapping]\nmax_undos = 3\nwindow = "10m"\nbackoff = "3s"\n', docker_configs=[cfg]
    )
    same = mis_keyed("desktop", "restored-copy")
    for i in range(3):  # the first write plus two undos are repaired
        docker_style_write(cfg, same, i)
        daemon.wait_event("config.normalized", i + 1)
        assert auths_keys(cfg / "config.json") == [HUB]
    for i in range(3, 8):  # the third undo pauses; the writer's content then stays
        docker_style_write(cfg, same, i)
    (alert,) = daemon.wait_event("config.flapping")
    assert alert["message_id"] == CATALOGUE["config.flapping"].message_id.hex
    assert alert["undos"] == 3
    assert alert["path"] == str(cfg / "config.json")
    # After the back-off regauthd tries again: the writer stopped, so the repair sticks.
    daemon.wait_event("config.flapping_retry")
    wait_until(lambda: auths_keys(cfg / "config.json") == [HUB], "repair after back-off")
    daemon.wait_event("config.normalized", 4)  # logged just after the file is written
    assert len(daemon.named("config.flapping")) == 1
    assert len(daemon.named("config.normalized")) == 4


def test_new_credential_every_time_is_always_repaired_without_feedback_loop(
    tmp_path: Path, start_daemon: Callable[..., Daemon]
) -> None:
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    daemon = start_daemon(docker_configs=[cfg])
    writes = 40
    for i in range(writes):
        docker_style_write(cfg, mis_keyed(password=f"login-{i}"), i)
        daemon.wait_event("config.normalized", i + 1)
    assert auths_keys(cfg / "config.json") == [HUB]
    assert json.loads((cfg / "config.json").read_bytes())["auths"][HUB]["auth"] == auth(
        "ci", f"login-{writes - 1}"
    )
    assert daemon.named("config.flapping") == []
    # No feedback loop: once the burst is over the daemon neither rewrites nor computes.
    settled = len(daemon.named("config.normalized"))
    stat = Path(f"/proc/{daemon.proc.pid}/stat")
    ticks_before = sum(int(x) for x in stat.read_text().rsplit(")", 1)[1].split()[11:13])
    mtime = (cfg / "config.json").stat().st_mtime_ns
    time.sleep(1.0)
    ticks_after = sum(int(x) for x in stat.read_text().rsplit(")", 1)[1].split()[11:13])
    assert len(daemon.named("config.normalized")) == settled == writes
    assert (cfg / "config.json").stat().st_mtime_ns == mtime
    # A busy loop would burn ~100 ticks in that second; an idle daemon burns none.
    assert ticks_after - ticks_before <= 10


def test_newest_login_wins_a_conflict(tmp_path: Path, start_daemon: Callable[..., Daemon]) -> None:
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    daemon = start_daemon(docker_configs=[cfg])
    docker_style_write(cfg, mis_keyed(password="old-login"))
    wait_until(lambda: auths_keys(cfg / "config.json") == [HUB], "first login normalized")
    # podman logs in again under docker.io, keeping the canonical entry it found.
    both = json.loads((cfg / "config.json").read_bytes())
    both["auths"]["docker.io"] = {"auth": auth("ci", "new-login")}
    docker_style_write(cfg, json.dumps(both).encode(), 1)
    wait_until(lambda: auths_keys(cfg / "config.json") == [HUB], "second login normalized")
    kept = json.loads((cfg / "config.json").read_bytes())["auths"][HUB]["auth"]
    assert kept == auth("ci", "new-login")
    (conflict,) = daemon.wait_event("config.conflict")
    assert conflict["winner"] == "docker.io"


# -- reload, unfixable files, secrets ----------------------------------------------------------


def test_sighup_with_good_then_bad_settings(
    tmp_path: Path, start_daemon: Callable[..., Daemon]
) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    daemon = start_daemon(watch_settings(first / "config.json"))
    base = daemon.settings_file.read_text().split("[watch]")[0]
    daemon.settings_file.write_text(base + watch_settings(second / "config.json"))
    daemon.signal(signal.SIGHUP)
    daemon.wait_event("settings.reloaded")
    docker_style_write(second, mis_keyed())
    wait_until(lambda: auths_keys(second / "config.json") == [HUB], "new path watched")

    daemon.settings_file.write_text(base + '[flapping]\nwindow = "a while"\n')
    daemon.signal(signal.SIGHUP)
    (alert,) = daemon.wait_event("settings.reload_failed")
    assert alert["message_id"] == CATALOGUE["settings.reload_failed"].message_id.hex
    assert "`flapping.window` must be a duration" in alert["reason"]
    docker_style_write(second, mis_keyed(password="after-bad-reload"), 2)
    wait_until(
        lambda: (
            json.loads((second / "config.json").read_bytes())["auths"].get(HUB, {}).get("auth")
            == auth("ci", "after-bad-reload")
        ),
        "old settings still in force",
    )
    assert daemon.proc.poll() is None


def test_unfixable_config_alerts_and_no_secret_reaches_the_output(
    tmp_path: Path, start_daemon: Callable[..., Daemon]
) -> None:
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    secret = "pw-never-logged-9f3k"
    daemon = start_daemon(docker_configs=[cfg])
    docker_style_write(cfg, mis_keyed(password=secret), 0)
    daemon.wait_event("config.normalized")
    broken = b'{"auths": {"docker.io": {"auth": "' + auth("ci", secret).encode() + b'"}'
    docker_style_write(cfg, broken, 1)
    (alert,) = daemon.wait_event("config.unfixable")
    assert alert["priority"] == 3
    assert "invalid JSON" in alert["reason"]
    assert (cfg / "config.json").read_bytes() == broken  # refused: left untouched
    daemon.stop()
    output = daemon.out.read_text() + daemon.err.read_text()
    for leak in (secret, auth("ci", secret)):
        assert leak not in output
    metrics = (tmp_path / "state" / "regauthd.prom").read_text()
    assert 'regauthd_alerts_total{kind="config.unfixable"} 1.0\n' in metrics
    assert "regauthd_repairs_total 1.0\n" in metrics


def test_burst_is_coalesced_and_the_last_login_wins(
    tmp_path: Path, start_daemon: Callable[..., Daemon]
) -> None:
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    daemon = start_daemon(docker_configs=[cfg])
    writes = 200
    for i in range(writes):  # as fast as a loop of logins can go: no waiting for repairs
        docker_style_write(cfg, mis_keyed(password=f"burst-{i}"), i)
    last = auth("ci", f"burst-{writes - 1}")
    wait_until(
        lambda: (
            auths_keys(cfg / "config.json") == [HUB]
            and json.loads((cfg / "config.json").read_bytes())["auths"][HUB]["auth"] == last
        ),
        "the last login normalized",
    )
    time.sleep(0.3)  # the alert is logged just after the file is written
    mtime = (cfg / "config.json").stat().st_mtime_ns
    settled = len(daemon.named("config.normalized"))
    time.sleep(0.5)
    assert (cfg / "config.json").stat().st_mtime_ns == mtime
    assert len(daemon.named("config.normalized")) == settled
    assert daemon.named("config.flapping") == []


def test_probe_component_is_wired_started_and_stopped(
    tmp_path: Path, start_daemon: Callable[..., Daemon]
) -> None:
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    (cfg / "config.json").write_text('{"auths": {}}')  # nothing to probe: no network at all
    daemon = start_daemon("[probe]\nenabled = true\n", docker_configs=[cfg])
    ready = daemon.notify.poll()
    status = ready[ready.index("READY=1") + 1]
    assert status.startswith("STATUS=watching 1 config(s) in 1 dir(s); 0 repair(s); 0 alert(s); ")
    (components,) = daemon.named("daemon.components")
    assert (components["probes"], components["journal"]) == ("on", "off")
    assert daemon.stop() == 0
    assert [e["event"] for e in daemon.events()][-1] == "daemon.stopping"
    assert daemon.err.read_text() == ""


def test_fifo_named_config_json_does_not_hang_the_daemon(
    tmp_path: Path, start_daemon: Callable[..., Daemon]
) -> None:
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    os.mkfifo(cfg / "config.json")
    daemon = start_daemon(docker_configs=[cfg])  # returns once READY=1: the look did not block
    (alert,) = daemon.wait_event("config.unfixable")
    assert "FIFO" in alert["reason"]
    daemon.signal(signal.SIGTERM)
    assert daemon.proc.wait(timeout=10) == 0
