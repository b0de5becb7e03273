"""The systemd unit: verified by systemd-analyze, and its comment states the real exposure score."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import require_program

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "systemd" / "regauthd.service"


def _unit_with_real_exec_start(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this checkout's entry point (verify checks it exists)."""
    regauthd = Path(sys.executable).parent / "regauthd"
    text = UNIT.read_text()
    assert "ExecStart=/usr/local/bin/regauthd run\n" in text
    copy = tmp_path / "regauthd.service"
    copy.write_text(text.replace("/usr/local/bin/regauthd", str(regauthd)))
    return copy


def test_unit_is_verify_clean(tmp_path: Path) -> None:
    analyze = require_program("systemd-analyze", "systemd")
    proc = subprocess.run(
        [analyze, "verify", str(_unit_with_real_exec_start(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == "", proc.stderr


def test_unit_comment_states_the_exposure_score(tmp_path: Path) -> None:
    analyze = require_program("systemd-analyze", "systemd")
    proc = subprocess.run(
        [analyze, "security", "--offline=yes", str(_unit_with_real_exec_start(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    measured = re.search(r"Overall exposure level for \S+: (\d+\.\d)", proc.stdout)
    assert measured, proc.stdout[-2000:]
    stated = re.search(r"rates this unit\n# (\d+\.\d) ", UNIT.read_text())
    assert stated, "the unit's comment must state the exposure score"
    assert stated.group(1) == measured.group(1)
    assert float(measured.group(1)) <= 3.0


def test_unit_is_a_hardened_notify_service() -> None:
    text = UNIT.read_text()
    for line in (
        "Type=notify",
        "WatchdogSec=",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "RestartPreventExitStatus=2",
        "SystemCallFilter=@chown",
        "StateDirectory=regauthd",
    ):
        assert line in text
