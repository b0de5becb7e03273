"""`regauthd run` as a real process against temp config directories.

Every test starts ``python -m regauthd run`` (JSON output to a file, a datagram socket for
sd_notify), drives the file system the way real writers do, and stops the daemon by PID.
Waits are for conditions (with generous limits), never for fixed times.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from regauthd.alerts.catalogue import CATALOGUE
from tests.rigs.notify import NotifySocket

ROOT = Path(__file__).resolve().parent.parent
HUB = "https://index.docker.io/v1/"
WAIT_S = 20.0


def auth(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def mis_keyed(user: str = "ci", password: str = "pw-1", key: str = "docker.io") -> bytes:  # noqa: S107
    return json.dumps({"auths": {key: {"auth": auth(user, password)}}}, indent="\t").encode()


def docker_style_write(directory: Path, data: bytes, seq: int = 0) -> None:
    """Temp file in the same directory, then rename over config.json (as the Docker CLI saves)."""
    tmp = directory / f"config.json{os.getpid()}{seq:06d}"
    tmp.write_bytes(data)
    tmp.chmod(0o600)
    tmp.rename(directory / "config.json")


def auths_keys(path: Path) -> list[str]:
    try:
        return sorted(json.loads(path.read_bytes()).get("auths", {}))
    except (OSError, ValueError):
        return []


def wait_until(check: Callable[[], Any], what: str, timeout: float = WAIT_S) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


class Daemon:
    """A running ``regauthd run``; stopped by PID in :meth:`stop`."""

    def __init__(
        self,
        tmp_path: Path,
        *,
        settings: str,
        docker_configs: list[Path] | None = None,
        env: dict[str, str] | None = None,
        watchdog_usec: int | None = None,
        command_prefix: list[str] | None = None,
    ) -> None:
        """``command_prefix`` runs the daemon under another program (``unshare ...``)."""
        self.dir = tmp_path / "daemon"
        self.dir.mkdir(exist_ok=True)
        self.home = tmp_path / "home"
        self.home.mkdir(exist_ok=True)
        self.state = tmp_path / "state"
        self.settings_file = self.dir / "config.toml"
        self.settings_file.write_text(settings)
        self.notify = NotifySocket(self.dir / "notify.sock")
        self.out = self.dir / "stdout.jsonl"
        self.err = self.dir / "stderr.txt"
        argv = [
            *(command_prefix or []), sys.executable, "-m", "regauthd", "run",
            "--config", str(self.settings_file), "--state-dir", str(self.state),
        ]  # fmt: skip
        for d in docker_configs or []:
            argv += ["--docker-config", str(d)]
        environ = {
            k: v
            for k, v in os.environ.items()
            if k not in {"JOURNAL_STREAM", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"}
            and not k.startswith("DOCKER_")
        }
        environ.update(HOME=str(self.home), **self.notify.env(watchdog_usec=watchdog_usec))
        environ.update(env or {})
        with self.out.open("wb") as out, self.err.open("wb") as err:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=err, env=environ, cwd=ROOT)

    def wait_ready(self) -> None:
        try:
            self.notify.wait_for("READY=1", WAIT_S)
        except TimeoutError:
            raise AssertionError(f"no READY=1; stderr: {self.err.read_text()}") from None

    def events(self) -> list[dict[str, Any]]:
        lines = self.out.read_text().splitlines()
        return [json.loads(line) for line in lines if line.endswith("}")]

    def named(self, event: str) -> list[dict[str, Any]]:
        return [e for e in self.events() if e["event"] == event]

    def wait_event(self, event: str, count: int = 1) -> list[dict[str, Any]]:
        return wait_until(
            lambda: len(self.named(event)) >= count and self.named(event),
            f"{count} x {event} in {self.out.read_text()[-3000:]}",
        )

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.notify.close()
        return self.proc.returncode


@pytest.fixture
def start_daemon(tmp_path: Path) -> Iterator[Callable[..., Daemon]]:
    started: list[Daemon] = []

    def start(settings: str = "", **kwargs: Any) -> Daemon:
        base = '[daemon]\noutput = "json"\nlog_level = "debug"\n[alerts]\nsuppress_window = 0\n'
        daemon = Daemon(tmp_path, settings=base + settings, **kwargs)
        started.append(daemon)
        daemon.wait_ready()
        return daemon

    yield start
    for daemon in started:
        daemon.stop()


def watch_settings(*patterns: Path) -> str:
    return "[watch]\npaths = [" + ", ".join(f'"{p}"' for p in patterns) + "]\n"


# -- life ----------------------------------------------------------------------------------------


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
    assert 'regauthd_alerts_total{kind="config.unfixable"} 1' in metrics
    assert "regauthd_repairs_total 1" in metrics


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
