"""The start-up pass over many users' configs (root): repaired side by side before READY=1, each
as its owner, and nothing of the pass left running after it.

A real ``regauthd run`` as root over ``home/*/.docker/config.json`` under a temp root; each
home, ``.docker`` and config belongs to a uid of its own with no passwd entry (as on a runner
whose users come from a directory service), modes as Docker leaves them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.conftest import require_root
from tests.rigs.configs import HUB, auth, mis_keyed
from tests.rigs.daemon import Daemon
from tests.rigs.users import reachable_tmpdir

FIRST_UID = 310_000
USERS = 40  # more than the daemon's threshold for fixing side by side (16)


def make_home(root: Path, i: int, data: bytes) -> Path:
    docker = root / "home" / f"user{i:03d}" / ".docker"
    docker.mkdir(parents=True)
    config = docker / "config.json"
    config.write_bytes(data)
    for path, mode in ((docker.parent, 0o700), (docker, 0o700), (config, 0o600)):
        os.chown(path, FIRST_UID + i, FIRST_UID + i)
        path.chmod(mode)
    return config


@pytest.fixture
def users_root() -> Iterator[Path]:
    """A temp root the users can pass (pytest's own is root's 0700)."""
    require_root("configs owned by other uids")
    with reachable_tmpdir("rgd-start-pass-") as root:
        yield root


def test_start_pass_repairs_every_users_config_as_its_owner_before_ready(
    tmp_path: Path, users_root: Path
) -> None:
    root = users_root
    originals = [mis_keyed(f"user{i}", f"pw-{i}") if i % 2 == 0 else b"{}" for i in range(USERS)]
    configs = [make_home(root, i, data) for i, data in enumerate(originals)]
    # One names a credential helper: fixed on the loop thread, after the others.
    helper_named = {"auths": {"docker.io": {"auth": auth("h", "pw-h")}}, "credsStore": "none"}
    originals.append(json.dumps(helper_named).encode())
    configs.append(make_home(root, USERS, originals[-1]))
    settings = (
        '[daemon]\noutput = "json"\nlog_level = "debug"\n[alerts]\nsuppress_window = 0\n'
        f'[watch]\npaths = ["{root}/home/*/.docker/config.json"]\n'
    )
    daemon = Daemon(tmp_path, settings=settings)
    try:
        daemon.wait_ready()  # READY=1 comes after the pass: nothing to wait for below
        threads = len(os.listdir(f"/proc/{daemon.proc.pid}/task"))
        for i, config in enumerate(configs):
            data = json.loads(config.read_bytes())
            st = config.stat()
            assert (st.st_uid, st.st_mode & 0o777) == (FIRST_UID + i, 0o600), config
            if i % 2 == 0 or i == USERS:
                assert list(data["auths"]) == [HUB], config
        # Nothing beside config.json: every displaced file removed (as every user's, too).
        assert [p for c in configs for p in c.parent.iterdir() if p.name != "config.json"] == []
        repaired = {e["path"] for e in daemon.named("config.repaired")}
        assert repaired == {str(c) for i, c in enumerate(configs) if i % 2 == 0 or i == USERS}
        # Each repaired config: one backup (the pass makes them together, its fixes find them
        # made), byte for byte what the user had, root's own 0600 file; no partial file left.
        backups = daemon.state / "backups"
        assert len(list(backups.iterdir())) == len(repaired)  # one backup folder per config
        for config, original in zip(configs, originals, strict=True):
            if str(config) in repaired:
                (backup,) = (backups / quote(str(config), safe="")).iterdir()
                st = backup.stat()
                assert (st.st_uid, st.st_mode & 0o777) == (0, 0o600), backup
                assert backup.name.endswith(".json") and backup.read_bytes() == original
        # The pass's own renames came back as events: told from other writes, not read again.
        assert not daemon.named("config.unchanged")
        assert not daemon.named("config.repair_failed")
        assert not daemon.named("config.unfixable")
        assert threads <= 3  # the pass's threads ended with it (main, save cleanup, status)
    finally:
        assert daemon.stop() == 0
