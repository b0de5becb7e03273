"""The import contracts in pyproject.toml hold, and would catch a shell import into the core."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINT = Path(sys.executable).with_name("lint-imports")


def lint(tree: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tree / "daemon")}
    return subprocess.run(
        [str(LINT), "--no-cache"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_contracts_hold() -> None:
    proc = lint(ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 broken" in proc.stdout


def test_a_shell_import_into_a_rules_module_breaks_them(tmp_path: Path) -> None:
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    shutil.copytree(ROOT / "daemon", tmp_path / "daemon", ignore=shutil.ignore_patterns("*.pyc"))
    keys = tmp_path / "daemon/regauthd/dockerconfig/keys.py"
    keys.write_text(keys.read_text() + "\nfrom regauthd.dockerconfig import stores  # noqa\n")
    proc = lint(tmp_path)
    assert proc.returncode != 0
    assert "regauthd.dockerconfig.keys is not allowed to import subprocess" in proc.stdout
