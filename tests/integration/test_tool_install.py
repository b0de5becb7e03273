"""`pipx install .` and `uv tool install .` give a working `regauthd` (README), the version
comes from `regauthd.__version__` alone, and building prints no setuptools deprecation."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import regauthd

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _run(argv: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )


def _works(regauthd_bin: Path, tmp_path: Path) -> None:
    """The installed command runs, says the version, and installs a unit naming itself."""
    assert regauthd_bin.exists()
    version = _run([str(regauthd_bin), "--version"])
    assert version.stdout.strip() == f"regauthd {regauthd.__version__}", version.stderr
    image = str(tmp_path / "img")
    dry = _run([str(regauthd_bin), "service", "install", "--user", "--root", image, "--dry-run"])
    assert dry.returncode == 0, dry.stderr
    assert f"ExecStart={regauthd_bin} run\n" in dry.stdout
    # the settings example is in the installed package, not only in the checkout
    assert "# regauthd settings: every option" in dry.stdout


def test_pipx_install(tmp_path: Path) -> None:
    env = {
        "PIPX_HOME": str(tmp_path / "pipx"),
        "PIPX_BIN_DIR": str(tmp_path / "bin"),
        "PIPX_MAN_DIR": str(tmp_path / "man"),
    }
    proc = _run([str(BIN / "pipx"), "install", "--python", sys.executable, "."], env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Deprecat" not in proc.stdout + proc.stderr
    _works(tmp_path / "bin" / "regauthd", tmp_path)


def test_uv_tool_install(tmp_path: Path) -> None:
    env = {
        "UV_TOOL_DIR": str(tmp_path / "tools"),
        "UV_TOOL_BIN_DIR": str(tmp_path / "bin"),
        "UV_PYTHON_DOWNLOADS": "never",
    }
    proc = _run([str(BIN / "uv"), "tool", "install", "--python", sys.executable, "."], env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    _works(tmp_path / "bin" / "regauthd", tmp_path)


def test_the_wheel_builds_without_warnings_and_takes_the_version_from_the_package(
    tmp_path: Path,
) -> None:
    proc = _run([sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "-w", str(tmp_path), "."])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    output = proc.stdout + proc.stderr
    assert "Deprecat" not in output, [ln for ln in output.splitlines() if "eprecat" in ln]
    (wheel,) = tmp_path.glob("regauthd-*.whl")
    assert wheel.name.startswith(f"regauthd-{regauthd.__version__}-")
    with zipfile.ZipFile(wheel) as archive:
        metadata = archive.read(f"regauthd-{regauthd.__version__}.dist-info/METADATA").decode()
        example = archive.read("regauthd/install/config.example.toml")
    assert f"\nVersion: {regauthd.__version__}\n" in metadata
    assert "\nLicense-Expression: MIT\n" in metadata
    assert example == (ROOT / "config.example.toml").read_bytes()
    assert 'version = "' not in (ROOT / "pyproject.toml").read_text().split("[project]")[1][:400]
