"""What `regauthd service` asks a running service manager, in order. No systemd runs as PID 1 here
and launchctl exists only on macOS, so stand-ins on PATH record the calls and answer like them."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from regauthd.cli import main

# A stand-in that logs its arguments and answers `is-active`/`print` as a running service does;
# `bootout` of a job that is not loaded fails, as launchctl's does.
FAKE = """#!/bin/sh
echo "$(basename "$0") $*" >> "{log}"
case "$*" in
  *is-active*) echo active ;;
  *print*) echo "state = running" ;;
  *bootout*) [ -e "{log}.loaded" ] || exit 3; rm -f "{log}.loaded" ;;
  *bootstrap*) touch "{log}.loaded" ;;
esac
"""


@pytest.fixture
def manager(
    tmp_path: Path, isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Path, Path]:
    """(the call log, HOME) with fake systemctl/launchctl first on PATH and the manager up."""
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    log.touch()
    for name in ("systemctl", "launchctl"):
        program = bin_dir / name
        program.write_text(FAKE.format(log=log))
        program.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setattr("regauthd.install.apply.manager_absent", lambda manager, scope: "")
    monkeypatch.setattr(sys, "argv", [str(Path(sys.executable).parent / "regauthd")])
    return log, isolated_env


def _calls(log: Path) -> list[str]:
    calls = log.read_text().splitlines()
    log.write_text("")
    return calls


def test_systemd_user_service_is_enabled_restarted_then_disabled(
    manager: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    log, home = manager
    assert main(["service", "install", "--user"]) == 0
    assert _calls(log) == [
        "systemctl --user daemon-reload",
        "systemctl --user enable regauthd.service",
        "systemctl --user restart regauthd.service",
    ]
    assert (home / ".config/systemd/user/regauthd.service").is_file()
    assert "ran: systemctl --user restart regauthd.service" in capsys.readouterr().out

    assert main(["service", "install", "--user", "--no-start"]) == 0
    assert _calls(log) == [
        "systemctl --user daemon-reload",
        "systemctl --user enable regauthd.service",
    ]

    assert main(["service", "status", "--user"]) == 0
    assert _calls(log) == ["systemctl --user is-active regauthd.service"]
    assert "running: yes: running (systemctl --user is-active" in capsys.readouterr().out

    assert main(["service", "uninstall", "--user"]) == 0
    assert _calls(log) == [
        "systemctl --user disable --now regauthd.service",
        "systemctl --user daemon-reload",
    ]
    assert not (home / ".config/systemd/user/regauthd.service").exists()
    assert main(["service", "status", "--user"]) == 1
    assert _calls(log) == []  # nothing installed: nothing to ask
    assert "not installed" in capsys.readouterr().out


def test_launchd_agent_is_bootstrapped_again_on_every_install_and_booted_out(
    manager: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    log, home = manager
    plist = home / "Library/LaunchAgents/io.github.regauthd.plist"
    assert main(["service", "install", "--manager", "launchd"]) == 0
    uid = os.getuid()
    # the first bootout fails (nothing loaded) and is allowed to
    assert _calls(log) == [
        f"launchctl bootout gui/{uid}/io.github.regauthd",
        f"launchctl bootstrap gui/{uid} {plist}",
    ]
    assert main(["service", "install", "--manager", "launchd"]) == 0
    assert _calls(log) == [
        f"launchctl bootout gui/{uid}/io.github.regauthd",
        f"launchctl bootstrap gui/{uid} {plist}",
    ]
    assert main(["service", "status", "--manager", "launchd"]) == 0
    assert _calls(log) == [f"launchctl print gui/{uid}/io.github.regauthd"]
    assert main(["service", "uninstall", "--manager", "launchd"]) == 0
    assert _calls(log) == [f"launchctl bootout gui/{uid}/io.github.regauthd"]
    assert not plist.exists()
    assert not (home / "Library/Logs/regauthd").exists()
    capsys.readouterr()


def test_a_failing_start_is_reported_with_exit_1(
    manager: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    log, _ = manager
    fake = log.parent / "fakebin" / "systemctl"
    fake.write_text("#!/bin/sh\ncase \"$*\" in *restart*) echo 'Job failed' >&2; exit 1;; esac\n")
    assert main(["service", "install", "--user"]) == 1
    err = capsys.readouterr().err
    assert "failed: systemctl --user restart regauthd.service (exit 1): Job failed" in err
