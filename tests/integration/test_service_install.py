"""`regauthd service install|uninstall|status`, run as a person runs it, under --root or a temp
HOME: the written units pass systemd-analyze, the plist parses, uninstall leaves nothing."""

from __future__ import annotations

import json
import os
import plistlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require_program, unavailable

ROOT = Path(__file__).resolve().parents[2]
REGAUTHD = Path(sys.executable).parent / "regauthd"
EXAMPLE = (ROOT / "config.example.toml").read_bytes()
UNIT = "etc/systemd/system/regauthd.service"
NOBODY = 65534


def regauthd(
    *args: str, env: dict[str, str] | None = None, exe: Path = REGAUTHD
) -> tuple[int, str]:
    proc = subprocess.run(
        [str(exe), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    return proc.returncode, proc.stdout + proc.stderr


def _system_install_allowed() -> None:
    # --system refuses code a non-root user can change: as a user, this checkout's venv is such.
    if os.geteuid() != 0:
        unavailable("install --system needs a root-owned regauthd (run the tests as root)")


def _tree(root: Path) -> dict[str, bytes | None]:
    return {
        str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None)
        for p in sorted(root.rglob("*"))
    }


def test_system_unit_under_root_passes_verify_and_security(tmp_path: Path) -> None:
    _system_install_allowed()
    analyze = require_program("systemd-analyze", "systemd")
    status, out = regauthd("service", "install", "--system", "--root", str(tmp_path))
    assert status == 0, out
    unit = tmp_path / UNIT
    assert f"ExecStart={REGAUTHD} run\n" in unit.read_text()
    assert (tmp_path / "etc/regauthd/config.toml").read_bytes() == EXAMPLE
    assert "nothing started" in out
    assert "systemctl enable regauthd.service" in out

    verify = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )
    assert verify.returncode == 0, verify.stderr
    assert verify.stderr.strip() == "", verify.stderr
    security = subprocess.run(
        [analyze, "security", "--offline=yes", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    measured = re.search(r"Overall exposure level for \S+: (\d+\.\d)", security.stdout)
    assert measured, security.stdout[-2000:]
    assert float(measured.group(1)) <= 2.5


def test_user_unit_passes_verify(tmp_path: Path, isolated_env: Path) -> None:
    analyze = require_program("systemd-analyze", "systemd")
    image = tmp_path / "image"
    status, out = regauthd("service", "install", "--user", "--root", str(image))
    assert status == 0, out
    unit = image / str(isolated_env / ".config/systemd/user/regauthd.service").lstrip("/")
    text = unit.read_text()
    assert f"ExecStart={REGAUTHD} run\n" in text
    assert "WantedBy=default.target" in text
    assert "loginctl enable-linger" in out
    config = image / str(isolated_env / ".config/regauthd/config.toml").lstrip("/")
    assert config.read_bytes() == EXAMPLE
    verify = subprocess.run(
        [analyze, "--user", "verify", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=dict(os.environ),  # XDG_RUNTIME_DIR: the isolated_env's
    )
    assert verify.returncode == 0, verify.stderr
    assert verify.stderr.strip() == "", verify.stderr


def test_install_twice_changes_nothing_and_never_overwrites_settings(tmp_path: Path) -> None:
    _system_install_allowed()
    assert regauthd("service", "install", "--system", "--root", str(tmp_path))[0] == 0
    settings = tmp_path / "etc/regauthd/config.toml"
    settings.write_text('[daemon]\nlog_level = "debug"\n')
    before = _tree(tmp_path)
    unit_mtime = (tmp_path / UNIT).stat().st_mtime_ns
    status, out = regauthd("service", "install", "--system", "--root", str(tmp_path))
    assert status == 0, out
    assert _tree(tmp_path) == before
    assert (tmp_path / UNIT).stat().st_mtime_ns == unit_mtime
    assert f"unchanged: {tmp_path / UNIT}" in out
    assert f"kept: {settings}" in out


def test_install_then_uninstall_leaves_only_the_settings_and_purge_leaves_nothing(
    tmp_path: Path,
) -> None:
    _system_install_allowed()
    assert regauthd("service", "install", "--system", "--root", str(tmp_path))[0] == 0
    state = tmp_path / "var/lib/regauthd"
    state.mkdir(parents=True)
    (state / "status.json").write_text("{}")
    status, out = regauthd("service", "uninstall", "--system", "--root", str(tmp_path))
    assert status == 0, out
    assert sorted(_tree(tmp_path)) == [
        "etc",
        "etc/regauthd",
        "etc/regauthd/config.toml",
        "var",
        "var/lib",
        "var/lib/regauthd",
        "var/lib/regauthd/status.json",
    ]
    status, out = regauthd("service", "uninstall", "--system", "--root", str(tmp_path), "--purge")
    assert status == 0, out
    assert list(tmp_path.iterdir()) == []


def test_launchd_agent_under_root(tmp_path: Path, isolated_env: Path) -> None:
    image = tmp_path / "image"
    status, out = regauthd("service", "install", "--manager", "launchd", "--root", str(image))
    assert status == 0, out
    agents = image / str(isolated_env / "Library/LaunchAgents").lstrip("/")
    plist = agents / "io.github.regauthd.plist"
    job = plistlib.loads(plist.read_bytes())
    assert job["Label"] == plist.name.removesuffix(".plist")
    assert job["ProgramArguments"] == [str(REGAUTHD), "run", "--settings-error-exit", "0"]
    assert job["StandardErrorPath"] == str(isolated_env / "Library/Logs/regauthd/regauthd.err.log")
    assert (image / str(isolated_env / "Library/Logs/regauthd").lstrip("/")).is_dir()
    assert f"launchctl bootstrap gui/{os.getuid()} {isolated_env}/Library" in out

    status, out = regauthd(
        "service", "uninstall", "--manager", "launchd", "--root", str(image), "--purge"
    )
    assert status == 0, out
    assert list(image.iterdir()) == []

    status, out = regauthd("service", "install", "--manager", "launchd", "--system")
    assert status == 2
    assert "--user" in out


def test_the_agent_program_exits_0_on_a_settings_error(tmp_path: Path, isolated_env: Path) -> None:
    """launchd restarts a non-zero exit (KeepAlive SuccessfulExit=false): a settings error must
    not be one there, or the agent would restart every ThrottleInterval for ever."""
    image = tmp_path / "image"
    assert regauthd("service", "install", "--manager", "launchd", "--root", str(image))[0] == 0
    plist = image / str(isolated_env / "Library/LaunchAgents/io.github.regauthd.plist").lstrip("/")
    job = plistlib.loads(plist.read_bytes())
    bad = tmp_path / "config.toml"
    bad.write_text("[watch]\npaths = 3\n")
    # The agent finds its settings itself; here they are named so that a test running as root
    # does not read /etc/regauthd.
    proc = subprocess.run(
        [*job["ProgramArguments"], "--config", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0
    assert "settings error" in proc.stderr
    assert "`watch.paths`" in proc.stderr


def test_without_a_running_service_manager_install_writes_and_prints_the_commands(
    isolated_env: Path,
) -> None:
    # isolated_env's XDG_RUNTIME_DIR holds no systemd user manager
    status, out = regauthd("service", "install", "--user")
    assert status == 0, out
    assert (isolated_env / ".config/systemd/user/regauthd.service").is_file()
    assert "nothing started" in out
    assert "  systemctl --user enable regauthd.service" in out
    assert "loginctl enable-linger" in out
    status, out = regauthd("service", "status", "--user")
    assert status == 1
    assert "installed but not running" in out
    status, out = regauthd("service", "uninstall", "--user", "--purge")
    assert status == 0, out
    assert not (isolated_env / ".config/systemd/user/regauthd.service").exists()
    assert not (isolated_env / ".config/regauthd").exists()


def test_dry_run_prints_the_files_and_commands_and_writes_nothing(tmp_path: Path) -> None:
    _system_install_allowed()
    image = tmp_path / "image"
    status, out = regauthd("service", "install", "--system", "--root", str(image), "--dry-run")
    assert status == 0, out
    assert not image.exists()
    assert f"--- would write {image / UNIT} (mode 0644)" in out
    assert f"ExecStart={REGAUTHD} run" in out
    assert "(only if absent; never overwritten)" in out
    assert "  systemctl restart regauthd.service" in out


def test_system_install_refuses_a_regauthd_a_user_can_change(tmp_path: Path) -> None:
    """root must never run code a user can change: a console script owned by a user."""
    user_bin = tmp_path / "bin"
    user_bin.mkdir()
    script = user_bin / "regauthd"
    shutil.copy(REGAUTHD, script)
    if os.geteuid() == 0:
        os.chown(user_bin, NOBODY, NOBODY)
        os.chown(script, NOBODY, NOBODY)
    image = tmp_path / "image"
    status, out = regauthd("service", "install", "--system", "--root", str(image), exe=script)
    assert status == 2, out
    assert "refusing to install a system service" in out
    assert f"{script} is owned by uid" in out
    assert "Fix:" in out
    assert "service install --user" in out
    assert not image.exists()


def test_system_install_refuses_a_group_writable_interpreter_directory(tmp_path: Path) -> None:
    _system_install_allowed()
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    (venv / "bin").chmod(0o775)
    os.chown(venv / "bin", 0, NOBODY)
    site = next(venv.glob("lib/python3*/site-packages"))
    (site / "regauthd-src.pth").write_text(str(ROOT / "daemon") + "\n")
    for pth in Path(sys.executable).parents[1].glob("lib/python3*/site-packages/*.pth"):
        shutil.copy(pth, site)  # the checkout's dependencies, through their .pth files
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    proc = subprocess.run(
        [str(venv / "bin/python"), "-m", "regauthd", "service", "install", "--system"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**env, "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"{venv / 'bin'} is writable by group {NOBODY}" in proc.stderr


def test_status_says_where_it_is_installed_and_what_the_daemon_reported(tmp_path: Path) -> None:
    _system_install_allowed()
    status, out = regauthd("service", "status", "--system", "--root", str(tmp_path))
    assert status == 1
    assert "not installed" in out
    assert "status.json: absent" in out

    assert regauthd("service", "install", "--system", "--root", str(tmp_path))[0] == 0
    state = tmp_path / "var/lib/regauthd"
    state.mkdir(parents=True)
    report = {
        "pid": 4242,
        "started_at": "2026-12-03T10:00:00Z",
        "watched_configs": ["/root/.docker/config.json", "/home/ci/.docker/config.json"],
        "last_repair": {"path": "/home/ci/.docker/config.json", "at": "2026-12-03T10:01:00Z"},
        "last_alert": None,
    }
    (state / "status.json").write_text(json.dumps(report))
    status, out = regauthd("service", "status", "--system", "--root", str(tmp_path))
    assert status == 1, out
    assert f"regauthd service (systemd, system): {tmp_path / UNIT}" in out
    assert "running: no" in out
    assert (
        "configured to watch:\n    /root/.docker/config.json\n    /home/*/.docker/config.json"
        in out
    )
    assert "pid 4242" in out
    assert "      /home/ci/.docker/config.json" in out
    assert 'last repair: {"at": "2026-12-03T10:01:00Z"' in out
    assert "last alert: none" in out

    status, out = regauthd("service", "status", "--system", "--root", str(tmp_path), "--json")
    assert status == 1
    (line,) = out.splitlines()
    parsed = json.loads(line)
    assert parsed["installed"] is True
    assert parsed["running"] is False
    assert parsed["status"] == report


def test_a_system_install_without_root_says_to_use_sudo_or_user(tmp_path: Path) -> None:
    as_user = {"user": NOBODY, "group": NOBODY, "extra_groups": []} if os.geteuid() == 0 else {}
    proc = subprocess.run(
        [str(REGAUTHD), "service", "install", "--system"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd="/",
        env={**os.environ, "HOME": str(tmp_path)},
        **as_user,  # type: ignore[call-overload]
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "install --system needs root: sudo " in proc.stderr
    assert "--user" in proc.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["service"],
        ["service", "install", "--system", "--user"],
        ["service", "install", "--manager", "upstart"],
        ["service", "status", "--bogus"],
    ],
)
def test_usage_errors_exit_2(args: list[str]) -> None:
    assert regauthd(*args)[0] == 2
