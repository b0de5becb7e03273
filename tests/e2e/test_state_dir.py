"""One state directory for every command: ``fix`` and the daemon share backups and race memory.

Race memory (``state_dir/races``) is how a one-shot ``fix`` and the running daemon merge a racing
``docker login`` again after an exposed race: if they used different directories, that merge
would silently stop working.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from regauthd.settings import Environment
from regauthd.settingsfile import resolve_state_dir
from tests.conftest import require_root
from tests.rigs.configs import HUB, mis_keyed
from tests.rigs.notify import NotifySocket

ROOT = Path(__file__).resolve().parents[2]
NOBODY = 65534


def env_of(euid: int, home: Path, **env: str) -> Environment:
    return Environment(euid=euid, home=home, env=env)


@pytest.mark.parametrize(
    ("euid", "env", "expected"),
    [
        (0, {}, "/var/lib/regauthd"),
        # Root's service and root's shell agree even when root has XDG variables set.
        (0, {"XDG_STATE_HOME": "/root/.xdg"}, "/var/lib/regauthd"),
        # systemd's StateDirectory= hands the directory over.
        (0, {"STATE_DIRECTORY": "/var/lib/regauthd"}, "/var/lib/regauthd"),
        (1000, {}, "/home/u/.local/state/regauthd"),
        (1000, {"XDG_STATE_HOME": "/srv/state"}, "/srv/state/regauthd"),
        (1000, {"XDG_STATE_HOME": "relative"}, "/home/u/.local/state/regauthd"),
    ],
)
def test_default_state_dir(euid: int, env: dict[str, str], expected: str) -> None:
    assert resolve_state_dir(None, env_of(euid, Path("/home/u"), **env)) == Path(expected)


def test_explicit_and_settings_file_state_dirs(tmp_path: Path) -> None:
    settings = tmp_path / "config" / "regauthd" / "config.toml"
    settings.parent.mkdir(parents=True)
    settings.write_text(f'[daemon]\nstate_dir = "{tmp_path / "custom"}"\n')
    env = env_of(1000, tmp_path, XDG_CONFIG_HOME=str(tmp_path / "config"))
    assert resolve_state_dir(None, env) == tmp_path / "custom"
    assert resolve_state_dir(tmp_path / "cli", env) == tmp_path / "cli"
    settings.write_text("[daemon\n")  # broken: a one-shot repair still runs, on the default
    assert resolve_state_dir(None, env) == tmp_path / ".local/state/regauthd"


@pytest.fixture
def user_tmp() -> Iterator[Path]:
    """A temp dir an unprivileged user can reach (pytest's own is inside root's 0700 dir)."""
    path = Path(tempfile.mkdtemp(prefix="regauthd-test-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_fix_and_the_daemon_keep_state_in_one_directory(user_tmp: Path) -> None:
    """Both started the way a person starts them (no --state-dir), as an ordinary user."""
    require_root("to run both processes as an unprivileged user with a home of its own")
    tmp_path = user_tmp
    home = tmp_path / "home"
    watched = home / ".docker"
    other = tmp_path / "other-docker-config"
    for d in (home, watched, other):
        d.mkdir()
    (watched / "config.json").write_bytes(mis_keyed("daemon-user", "pw-d"))
    (other / "config.json").write_bytes(mis_keyed("fix-user", "pw-f"))
    for path in (tmp_path, home, watched, other, watched / "config.json", other / "config.json"):
        os.chown(path, NOBODY, NOBODY)
    notify = NotifySocket(tmp_path / "notify.sock")
    os.chown(tmp_path / "notify.sock", NOBODY, NOBODY)
    env = {"PATH": os.environ["PATH"], "HOME": str(home), **notify.env()}
    as_nobody = {"user": NOBODY, "group": NOBODY, "extra_groups": [], "cwd": tmp_path}
    daemon = subprocess.Popen(
        [sys.executable, "-m", "regauthd", "run"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        **as_nobody,  # type: ignore[call-overload]
    )
    try:
        try:
            notify.wait_for("READY=1", 20)
        except TimeoutError:
            daemon.kill()
            raise AssertionError(daemon.communicate()[1].decode()) from None
        fixed = subprocess.run(
            [sys.executable, "-m", "regauthd", "fix", "--docker-config", str(other), "--json"],
            env={"PATH": os.environ["PATH"], "HOME": str(home)},
            capture_output=True,
            text=True,
            check=False,
            **as_nobody,  # type: ignore[call-overload]
        )
    finally:
        daemon.terminate()
        daemon.wait(10)
        notify.close()
    assert fixed.returncode == 0, fixed.stderr
    fix_backup = Path(json.loads(fixed.stdout.splitlines()[0])["backup"])
    state = home / ".local/state/regauthd"
    assert fix_backup.is_relative_to(state)
    # The daemon repaired its config and keeps its metrics in that same directory.
    assert json.loads((watched / "config.json").read_bytes())["auths"].keys() == {HUB}
    assert (state / "regauthd.prom").stat().st_uid == NOBODY
