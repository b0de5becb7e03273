"""Faults of the machine, for real: a full filesystem, a read-only one, a directory the user may
not write. `fix` says which file and why in one line, exits 1 and leaves the file byte for byte;
the daemon's repair raises ``config.save_failed`` and retries with a bounded back-off; backups
count only once verified, and failed attempts never rotate a good one out.

The full and read-only filesystems are small tmpfs mounts (root), unmounted after each test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from regauthd.alerts.metrics import Metrics
from regauthd.dockerconfig import backups as backups_module
from regauthd.dockerconfig.backups import BackupStore
from regauthd.dockerconfig.file import TEMP_PREFIX, load
from regauthd.service.app import build
from regauthd.service.loop import Loop
from regauthd.service.repair import SAVE_FIRST_RETRY, SAVE_LAST_RETRY, Repairer
from regauthd.settingsfile import load_settings, with_overrides
from tests.conftest import require_program, require_root
from tests.rigs.cli import run_in_process
from tests.rigs.configs import auth

NOBODY = 65534
PASSWORD = "fault-Pa55-do-not-leak"
AUTH = auth("alice", PASSWORD)
MIS_KEYED = json.dumps({"auths": {"docker.io": {"auth": AUTH}}}, indent="\t").encode()


def run_cli(*args: str, user: int | None = None) -> subprocess.CompletedProcess[str]:
    """In this process; as ``user`` (a real process under setpriv) when given."""
    if user is None:
        proc = run_in_process(*args)
    else:
        setpriv = require_program("setpriv", "util-linux")
        argv = [setpriv, f"--reuid={user}", f"--regid={user}", "--clear-groups"]
        argv += [sys.executable, "-m", "regauthd", *args]
        env = {k: v for k, v in os.environ.items() if k != "DOCKER_AUTH_CONFIG"}
        proc = subprocess.run(
            argv, capture_output=True, text=True, timeout=60, env=env, check=False
        )
    assert PASSWORD not in proc.stdout + proc.stderr
    assert AUTH not in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    return proc


def assert_one_clear_line(proc: subprocess.CompletedProcess[str], path: Path, cause: str) -> None:
    lines = [line for line in proc.stdout.splitlines() if cause in line]
    assert len(lines) == 1, proc.stdout + proc.stderr
    assert f"{path}: not saved" in proc.stdout
    assert "the file was left unchanged" in lines[0]


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith(TEMP_PREFIX))


def write_config(directory: Path) -> Path:
    config = directory / "config.json"
    config.write_bytes(MIS_KEYED)
    config.chmod(0o600)
    return config


def test_fix_on_a_full_filesystem_says_so_and_leaves_the_file(tmpfs: Any, tmp_path: Path) -> None:
    disk = tmpfs("docker")
    config = write_config(disk.path)
    disk.fill()
    proc = run_cli("fix", "--docker-config", str(config), "--state-dir", str(tmp_path / "state"))
    assert proc.returncode == 1
    assert_one_clear_line(proc, config, "no space left on the device")
    assert config.read_bytes() == MIS_KEYED
    assert leftovers(disk.path) == []
    disk.free()  # space again: the same command repairs it
    again = run_cli("fix", "--docker-config", str(config), "--state-dir", str(tmp_path / "state"))
    assert again.returncode == 0, again.stderr
    assert b'"https://index.docker.io/v1/"' in config.read_bytes()


def test_fix_on_a_read_only_filesystem_says_so(tmpfs: Any, tmp_path: Path) -> None:
    disk = tmpfs("docker")
    config = write_config(disk.path)
    disk.read_only()
    proc = run_cli("fix", "--docker-config", str(config), "--state-dir", str(tmp_path / "state"))
    assert proc.returncode == 1
    assert_one_clear_line(proc, config, "the filesystem is read-only (EROFS)")
    assert config.read_bytes() == MIS_KEYED


def test_fix_in_a_directory_the_user_may_not_write_says_so(tmp_path: Path) -> None:
    require_root("runs fix as nobody on a config in a root-owned directory")
    base = Path(os.environ.get("TMPDIR", "/tmp")) / f"regauthd-eacces-{os.getpid()}"
    base.mkdir(mode=0o755)
    try:
        docker = base / "docker"
        docker.mkdir(mode=0o755)  # root's, not writable by nobody
        config = write_config(docker)
        os.chown(config, NOBODY, NOBODY)  # nobody may read and write the file, not its directory
        state = base / "state"
        state.mkdir()
        os.chown(state, NOBODY, NOBODY)
        proc = run_cli(
            "fix", "--docker-config", str(config), "--state-dir", str(state), user=NOBODY
        )
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert_one_clear_line(proc, config, "permission denied (EACCES)")
        assert config.read_bytes() == MIS_KEYED
        assert leftovers(docker) == []
    finally:
        subprocess.run(["rm", "-rf", str(base)], check=False)


def test_a_full_state_directory_refuses_the_fix_and_keeps_every_good_backup(
    tmpfs: Any, tmp_path: Path
) -> None:
    """No fix without its backup; a failed backup leaves no file and rotates nothing out."""
    state = tmpfs("state", size=64 * 1024)
    docker = tmp_path / "docker"
    docker.mkdir()
    config = write_config(docker)
    store = BackupStore(state.path, keep=1)
    good = store.save(load(config))
    # A config larger than the space left: the first write is short, the next one fails.
    big = json.dumps({"auths": {"docker.io": {"auth": AUTH}}, "x": "y" * 200_000}).encode()
    config.write_bytes(big)
    for _ in range(3):
        with pytest.raises(OSError, match="No space left"):
            store.save(load(config))
    assert store.verified(config) == [good]
    assert good.read_bytes() == MIS_KEYED
    assert sorted(p.name for p in good.parent.iterdir()) == [good.name]  # no partial file

    config.write_bytes(MIS_KEYED)
    state.fill()
    proc = run_cli("fix", "--docker-config", str(config), "--state-dir", str(state.path))
    assert proc.returncode == 1
    backups = state.path / "backups"
    assert_one_clear_line(
        proc, config, f"writing the backup in {backups} failed: no space left on the device"
    )
    assert config.read_bytes() == MIS_KEYED
    assert sorted(p.name for p in good.parent.iterdir()) == [good.name]


def test_backups_taken_across_a_seconds_end_are_named_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write_config(tmp_path)
    store = BackupStore(tmp_path / "state")
    # The first backup 1 ns before a second ends, the second 1 ns after.
    ticks = iter([1_800_000_000_999_999_999, 1_800_000_001_000_000_001])
    monkeypatch.setattr(backups_module.time, "time_ns", lambda: next(ticks, 1_900_000_000 * 10**9))
    first = store.save(load(config))
    second = store.save(load(config))
    assert store.verified(config) == [first, second]
    assert first.name < second.name


def test_rotation_counts_only_verified_backups(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    store = BackupStore(tmp_path / "state", keep=2)
    first = store.save(load(config))
    folder = first.parent
    for i in range(3):  # what failed attempts of older versions left: empty files
        (folder / f"29990101T00000{i}.000000000.json").write_bytes(b"")
    second = store.save(load(config))
    assert store.verified(config) == [first, second]
    assert first.exists()  # the empty files did not push it out


def test_the_daemon_alerts_and_retries_a_repair_it_cannot_save(tmpfs: Any, tmp_path: Path) -> None:
    disk = tmpfs("docker")
    config = write_config(disk.path)
    disk.read_only()
    now = [0.0]
    loop = Loop(clock=lambda: now[0])
    alerts: list[tuple[str, str, dict[str, Any]]] = []
    retried: list[str] = []
    (tmp_path / "settings.toml").write_text("")
    settings = with_overrides(
        load_settings(tmp_path / "settings.toml"), state_dir=tmp_path / "state"
    )
    metrics = Metrics()

    def alert(kind: str, subject: str, **fields: Any) -> bool:
        alerts.append((kind, subject, fields))
        return True

    repairer = Repairer(settings, loop=loop, alert=alert, metrics=metrics, retry=retried.append)

    def fire_at(when: float) -> None:
        now[0] = when
        loop.run_once(lambda: None)

    try:
        report = repairer.repair(str(config))
        assert report is not None and report.error is not None
        kind, subject, fields = alerts[-1]
        assert (kind, subject) == ("config.save_failed", str(config))
        assert "the filesystem is read-only (EROFS)" in fields["reason"]
        assert fields["retry"] == f"{SAVE_FIRST_RETRY:g}s"
        assert config.read_bytes() == MIS_KEYED
        delays = []
        when = 0.0
        for _ in range(8):  # each retry that fails again waits twice as long, up to the cap
            delay = float(alerts[-1][2]["retry"].rstrip("s"))
            delays.append(delay)
            when += delay
            fire_at(when)
            assert retried[-1] == str(config)
            repairer.repair(str(config))  # what the daemon's retry callback does
        assert delays[:3] == [SAVE_FIRST_RETRY, SAVE_FIRST_RETRY * 2, SAVE_FIRST_RETRY * 4]
        assert max(delays) == SAVE_LAST_RETRY
        assert "regauthd_save_failures_total 9" in metrics.render()
        disk.read_only(False)
        when += SAVE_LAST_RETRY
        fire_at(when)
        report = repairer.repair(str(config))
        assert report is not None and report.written
        assert alerts[-1][0] == "config.normalized"
    finally:
        loop.close()


def test_run_with_a_state_directory_it_cannot_create_exits_2_in_one_line(
    tmpfs: Any, tmp_path: Path
) -> None:
    """2 is the unit's RestartPreventExitStatus (tests/integration/test_service_unit.py checks
    the unit says so): systemd does not restart-loop it."""
    disk = tmpfs("ro")
    disk.read_only()
    docker = tmp_path / "docker"
    docker.mkdir()
    state = disk.path / "state"
    proc = run_cli(
        "run", "--docker-config", str(docker), "--state-dir", str(state), "--output", "json"
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"regauthd run: the state directory {state} cannot be created: the filesystem is "
        "read-only (EROFS); make it writable, or set [daemon] state_dir (or --state-dir) "
        "to a directory that is"
    ]


def test_a_reload_naming_a_state_directory_it_cannot_create_keeps_the_old_one(
    tmpfs: Any, tmp_path: Path
) -> None:
    disk = tmpfs("ro")
    disk.read_only()
    (tmp_path / "settings.toml").write_text("")
    settings = with_overrides(
        load_settings(tmp_path / "settings.toml"), state_dir=tmp_path / "state"
    )
    bad = with_overrides(settings, state_dir=disk.path / "state")
    daemon = build(settings, reload_settings=lambda: bad, configure_output=False).daemon
    alerts: list[tuple[str, dict[str, Any]]] = []
    daemon.alert = lambda kind, subject, **fields: bool(alerts.append((kind, fields)))  # type: ignore[method-assign]
    try:
        daemon.reload()
        assert daemon.settings.state_dir == tmp_path / "state"
        assert [kind for kind, _ in alerts] == ["settings.reload_failed"]
        assert "the filesystem is read-only (EROFS)" in alerts[0][1]["reason"]
    finally:
        daemon.loop.close()


_KILL_ON_TEMP = """
import ctypes, os, signal, struct, subprocess, sys
directory, prefix = sys.argv[1], sys.argv[2].encode()
argv = sys.argv[3:]
libc = ctypes.CDLL(None, use_errno=True)
fd = libc.inotify_init1(os.O_CLOEXEC)
assert libc.inotify_add_watch(fd, directory.encode(), 0x100) >= 0  # IN_CREATE
proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
killed = False
while proc.poll() is None and not killed:
    import select
    if not select.select([fd], [], [], 0.05)[0]:
        continue
    buf = os.read(fd, 65536)
    offset = 0
    while offset < len(buf):
        _, _, _, length = struct.unpack_from("iIII", buf, offset)
        name = buf[offset + 16 : offset + 16 + length].rstrip(b"\\0")
        offset += 16 + length
        if name.startswith(prefix):
            os.kill(proc.pid, signal.SIGKILL)
            killed = True
            break
proc.wait()
print("killed" if killed else "finished")
"""


def test_a_fix_killed_mid_save_leaves_a_temp_file_the_next_save_removes(tmp_path: Path) -> None:
    """A real SIGKILL of `fix` the moment its temp file (the full credentials) appears beside
    config.json: the config is intact (old or new, never half), and the next `fix` removes the
    temp file it left. Bounded: up to 20 attempts for one kill that lands before the rename."""
    docker = tmp_path / "docker"
    docker.mkdir(mode=0o700)
    # A large config (400 KiB of other registries) keeps the write + fsync long enough to land in.
    others = {f"reg{i:04d}.example.com": {"auth": auth(f"u{i}", f"p{i}" * 40)} for i in range(2000)}
    data = json.dumps({"auths": {"docker.io": {"auth": AUTH}, **others}}, indent="\t").encode()
    left: list[str] = []
    for _ in range(20):
        (docker / "config.json").write_bytes(data)
        argv = [sys.executable, "-m", "regauthd", "fix", "--docker-config", str(docker)]
        argv += ["--state-dir", str(tmp_path / "state")]
        killer = subprocess.run(
            [sys.executable, "-c", _KILL_ON_TEMP, str(docker), TEMP_PREFIX, *argv],
            capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        left = [p.name for p in docker.iterdir() if p.name.startswith(TEMP_PREFIX)]
        if killer.stdout.strip() == "killed" and left:
            break
    assert left, "no kill landed between the temp file and the rename in 20 attempts"
    now = json.loads((docker / "config.json").read_bytes())  # whole, parseable: old or new
    assert set(now["auths"]) - {"docker.io", "https://index.docker.io/v1/"} == set(others)
    proc = run_cli("fix", "--docker-config", str(docker), "--state-dir", str(tmp_path / "state"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [p.name for p in docker.iterdir() if p.name.startswith(TEMP_PREFIX)] == []
    fixed = json.loads((docker / "config.json").read_bytes())["auths"]
    assert "https://index.docker.io/v1/" in fixed and "docker.io" not in fixed
