"""`scripts/run` says first, when run as root, that the daemon then watches every user's config."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

from tests.conftest import require_root

ROOT = Path(__file__).resolve().parents[2]
NOBODY = 65534


def _first_lines(env: dict[str, str], **kwargs: object) -> tuple[int, list[str]]:
    # PYTHON names no interpreter: the script stops (exit 2) before it installs anything.
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts/run")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHON": "/nonexistent/python3", **env},
        **kwargs,  # type: ignore[call-overload]
    )
    return proc.returncode, (proc.stdout + proc.stderr).splitlines()


def test_as_root_the_first_line_names_the_default_scope() -> None:
    require_root("the line is printed for root only")
    status, lines = _first_lines({})
    assert status == 2
    assert "/root/.docker/config.json and /home/*/.docker/config.json" in lines[0]
    # a one-shot fix looks at root's own config only: no such line
    status, lines = _first_lines({"REGAUTHD_COMMAND": "fix"})
    assert not any("/home/*" in line for line in lines)
    # an ordinary user is not told about /home/*
    status, lines = _first_lines({}, user=NOBODY, group=NOBODY, extra_groups=[], cwd="/")
    assert status == 2
    assert not any("/home/*" in line for line in lines)


def _plan(env: dict[str, str], tmp_path: Path, **kwargs: object) -> tuple[int, list[str]]:
    """What scripts/run would install and run (REGAUTHD_RUN_DRY=1: it installs nothing).

    ``PKG_CONFIG_LIBDIR=/nonexistent`` makes the real pkg-config find no libsystemd, as on a
    fresh machine; ``OS_RELEASE`` names the distribution."""
    # in a directory every user can read (pytest's tmp_path is root's alone)
    with tempfile.TemporaryDirectory() as readable:
        os_release = Path(readable) / "os-release"
        os_release.write_text(env.pop("os_release", "ID=debian\n"))
        os.chmod(readable, 0o755)  # noqa: S103 - the other user reads the file
        os_release.chmod(0o644)
        return _first_lines(
            {"PYTHON": "python3", "REGAUTHD_RUN_DRY": "1", "OS_RELEASE": str(os_release), **env},
            **kwargs,
        )


def test_with_build_tools_present_it_installs_journald_support(tmp_path: Path) -> None:
    status, lines = _plan({}, tmp_path)
    assert status == 0, lines
    assert "would run: .venv/bin/python -m pip install -q .[journald]" in lines
    assert not any("apt-get install" in line or "dnf" in line for line in lines)


def test_as_root_on_debian_and_fedora_it_installs_the_build_tools_first(tmp_path: Path) -> None:
    require_root("only root installs packages")
    missing = {"PKG_CONFIG_LIBDIR": "/nonexistent"}
    status, lines = _plan(dict(missing), tmp_path)
    assert status == 0, lines
    apt = "would run: apt-get install -y libsystemd-dev pkg-config gcc python3-dev"
    pip = "would run: .venv/bin/python -m pip install -q .[journald]"
    assert apt in lines and pip in lines and lines.index(apt) < lines.index(pip)
    status, lines = _plan({**missing, "os_release": 'ID="fedora"\n'}, tmp_path)
    assert "would run: dnf install -y systemd-devel pkgconf-pkg-config gcc python3-devel" in lines
    status, lines = _plan({**missing, "os_release": "ID=ubuntu\nID_LIKE=debian\n"}, tmp_path)
    assert apt in lines


def test_otherwise_it_prints_the_one_command_and_goes_on_without(tmp_path: Path) -> None:
    require_root("the test runs the script as another user")
    missing = {"PKG_CONFIG_LIBDIR": "/nonexistent"}
    status, lines = _plan(
        dict(missing), tmp_path, user=NOBODY, group=NOBODY, extra_groups=[], cwd="/"
    )
    assert status == 0, lines
    (said,) = [line for line in lines if "without systemd-python" in line]
    assert said.endswith(
        "first run: sudo apt-get install -y libsystemd-dev pkg-config gcc python3-dev"
    )
    assert "would run: .venv/bin/python -m pip install -q ." in lines
    assert not any(line.startswith("would run: apt-get") for line in lines)
    # a system it does not know: says what is needed, installs no package
    status, lines = _plan({**missing, "os_release": "ID=alpine\n"}, tmp_path)
    assert status == 0
    assert any("needs libsystemd's headers" in line for line in lines)
    assert "would run: .venv/bin/python -m pip install -q ." in lines
