"""Test-only programs kept off the host: unpacked into the checkout's ``.tools/``, never installed.

Installing ``pass`` and ``golang-docker-credential-helpers`` system-wide changes what the host's
own ``docker login`` does (the CLI then picks ``pass`` as its default credential store and fails
while ``pass`` is not initialised); installing ``prometheus`` (for its ``promtool``) starts a
Prometheus server on a systemd host. So the suite takes them from Debian's archive with
``apt-get download`` and unpacks them with ``dpkg -x`` into ``.tools/root`` (git-ignored); only
the tests' own PATH (:class:`tests.rigs.clients.Sandbox`) names ``.tools/root/usr/bin``. A copy
installed on the host is never used. ``pass`` itself needs ``gnupg`` and ``tree``, which
``tests/run`` installs (they change nothing the Docker CLI looks at).

Usage::

    python -m tests.rigs.tools          # what tests/run does: unpack once, idempotent

    from tests.rigs.tools import tool_path
    tool_path("docker-credential-pass")  # .../.tools/root/usr/bin/docker-credential-pass or None
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TOOLS_DIR = ROOT / ".tools"
TOOLS_BIN = TOOLS_DIR / "root" / "usr" / "bin"
PACKAGES = ("pass", "golang-docker-credential-helpers", "prometheus")
# The programs the packages above bring that the tests use. `promtool` checks the metrics
# textfile and the shipped alert rules; installing `prometheus` would start a server.
PROGRAMS = ("pass", "docker-credential-pass", "promtool")
_TIMEOUT_S = 300.0


class ToolsUnavailable(RuntimeError):
    """The private tools could not be unpacked (no apt-get/dpkg, or no archive to download from)."""


def tool_path(name: str) -> str | None:
    """The private copy of a test-only program, or None when it is not unpacked."""
    candidate = TOOLS_BIN / name
    return str(candidate) if os.access(candidate, os.X_OK) else None


def is_tool(name: str) -> bool:
    return name in PROGRAMS


def unpack() -> Path:
    """Download and unpack :data:`PACKAGES` into ``.tools/root`` unless already there."""
    if all(tool_path(p) for p in PROGRAMS):
        return TOOLS_BIN
    for program in ("apt-get", "dpkg"):
        if shutil.which(program) is None:
            raise ToolsUnavailable(f"{program} not found: cannot unpack {', '.join(PACKAGES)}")
    TOOLS_DIR.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="debs-", dir=TOOLS_DIR) as tmp:
        # apt-get download runs as the _apt user when started by root: it must reach the folder.
        Path(tmp).chmod(0o755)
        download = subprocess.run(
            ["apt-get", "download", "-q", *PACKAGES],
            cwd=tmp,
            capture_output=True,
            text=True,
            timeout=_TIMEOUT_S,
            check=False,
        )
        debs = sorted(Path(tmp).glob("*.deb"))
        if download.returncode != 0 or len(debs) != len(PACKAGES):
            raise ToolsUnavailable(
                f"apt-get download {' '.join(PACKAGES)} failed (exit {download.returncode}): "
                f"{download.stderr[-1000:]}"
            )
        staging = Path(tempfile.mkdtemp(prefix="root-", dir=TOOLS_DIR))
        for deb in debs:
            subprocess.run(["dpkg", "-x", str(deb), str(staging)], check=True, timeout=_TIMEOUT_S)
    # Readable by the unprivileged users some tests run as (the checkout may be 0700 though).
    staging.chmod(0o755)
    shutil.rmtree(TOOLS_DIR / "root", ignore_errors=True)
    staging.rename(TOOLS_DIR / "root")
    missing = [p for p in PROGRAMS if tool_path(p) is None]
    if missing:
        raise ToolsUnavailable(f"unpacked {', '.join(PACKAGES)} but found no {missing}")
    return TOOLS_BIN


if __name__ == "__main__":
    try:
        print(f"test tools in {unpack()}")
    except ToolsUnavailable as exc:
        sys.exit(f"tests/rigs/tools.py: {exc}")
