"""`scripts/run` says first, when run as root, that the daemon then watches every user's config."""

from __future__ import annotations

import os
import subprocess
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
