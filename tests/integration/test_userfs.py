"""Root saving a user's config (in process): one directory descriptor, the owner's identity.

The steps of :func:`regauthd.dockerconfig.file.save` with the user's ``~/.docker`` swapped for a
link to root's directory at the worst moments: between the read and the save, and right before
the exchange (the module's test hook). Plus stale temp files removed at the next save.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from regauthd.dockerconfig import configdir, fsidentity, nofollow
from regauthd.dockerconfig import file as dockerconfig
from regauthd.dockerconfig.backups import BackupStore
from regauthd.dockerconfig.fixer import fix_file
from regauthd.dockerconfig.jsontext import ConfigFileError, render
from regauthd.dockerconfig.savecleanup import SaveCleaner
from regauthd.service import repair
from tests.conftest import require_root
from tests.e2e.test_privilege_boundary import (
    ROOT_SECRET,
    Users,
    base_of,
    docker_dir,
    fingerprint,
    root_home,
    write_as,
)
from tests.rigs.configs import HUB, auths_keys, mis_keyed
from tests.rigs.startpass import repairer, start_pass

NEW = render({"auths": {HUB: {"auth": "YWxpY2U6cHc="}}})


@pytest.mark.parametrize("opening", ["openat2", "per-component walk"])
def test_a_swap_between_read_and_save_writes_nothing(
    unprivileged_users: Users, monkeypatch: pytest.MonkeyPatch, opening: str
) -> None:
    if opening != "openat2":
        monkeypatch.setattr(nofollow, "_openat2_call", False)  # as on a kernel before 5.6
    alice = unprivileged_users()
    root_config = root_home(base_of(alice))
    docker = docker_dir(alice)
    write_as(alice, docker, mis_keyed("alice", "pw"))
    snapshot = dockerconfig.load(docker / "config.json")
    assert snapshot.uid == alice.uid
    before = fingerprint(root_config.parent)
    docker.rename(alice.home / "real")
    docker.symlink_to(root_config.parent)
    with pytest.raises(ConfigFileError) as info:
        dockerconfig.save(snapshot, NEW)
    assert "left it alone" in str(info.value) or "replaced" in str(info.value)
    assert fingerprint(root_config.parent) == before
    assert sorted(os.listdir(alice.home / "real")) == ["config.json"]


def test_a_swap_right_before_the_exchange_lands_in_the_users_directory(
    unprivileged_users: Users, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    alice = unprivileged_users()
    root_config = root_home(base_of(alice))
    docker = docker_dir(alice)
    swap = alice.home / ".docker-swap"
    swap.symlink_to(root_config.parent)
    write_as(alice, docker, mis_keyed("alice", "pw"))
    before = fingerprint(root_config.parent)
    swapped: list[bool] = []

    def swap_once() -> None:  # her move: her directory out, the link to root's in its place
        if not swapped:
            swapped.append(True)
            os.replace(docker, alice.home / "moved")
            os.replace(swap, docker)

    monkeypatch.setattr(dockerconfig, "test_before_exchange", swap_once, raising=False)
    report = fix_file(docker / "config.json", backups=BackupStore(tmp_path / "state"))
    assert report.written and report.error is None
    assert swapped and docker.is_symlink()
    assert auths_keys(alice.home / "moved" / "config.json") == [HUB]
    assert os.stat(alice.home / "moved" / "config.json").st_uid == alice.uid
    assert fingerprint(root_config.parent) == before
    assert ROOT_SECRET.encode() not in (alice.home / "moved" / "config.json").read_bytes()


def test_stale_temp_files_go_at_the_next_save_ours_only(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_bytes(mis_keyed("a", "b"))
    stale = tmp_path / f"{dockerconfig.TEMP_PREFIX}deadbeef0000"
    stale.write_bytes(mis_keyed("a", "old-secret"))
    link = tmp_path / f"{dockerconfig.TEMP_PREFIX}link"
    link.symlink_to(config)
    report = fix_file(config, backups=BackupStore(tmp_path / "state"))
    assert report.written
    assert not stale.exists()
    assert link.is_symlink()


def test_whose_config_one_open_without_symlinks_and_the_walk_otherwise(tmp_path: Path) -> None:
    """A path with no symlink is answered from one ``openat2`` of its directory; with one on
    the way, or a directory missing, by the walk: the same owner either way."""
    require_root("directories owned by other uids")
    base = tmp_path / "base"
    (base / "real" / "user" / ".docker").mkdir(parents=True)
    (base / "home").symlink_to(base / "real")  # root's link in root's 0755 directory: followed
    (base / "real" / "user" / "linked").symlink_to("/etc")  # a user's link: not followed
    os.lchown(base / "real" / "user" / "linked", 320_001, 320_001)
    os.chown(base / "real" / "user", 320_001, 320_001)
    os.chown(base / "real" / "user" / ".docker", 320_002, 320_002)
    for path in (tmp_path, base, base / "real"):
        path.chmod(0o755)
    cases = {
        base / "real" / "user" / ".docker" / "config.json": (True, 320_002),
        base / "home" / "user" / ".docker" / "config.json": (False, 320_002),
        base / "real" / "user" / "linked" / "config.json": (False, 320_001),
        base / "real" / "user" / "missing" / "config.json": (False, 320_001),
    }
    for path, (one_open, uid) in cases.items():
        assert (configdir._plain_parent(path) is not None) == one_open, path
        assert configdir.config_owner(path).uid == uid == configdir._walk_to_owner(path).st_uid


def test_a_backups_name_is_fsynced_with_the_owners_identity_in_force(
    unprivileged_users: Users, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The save fsyncs the backup's directories (root's 0700 state directory) while acting as
    the config's owner: through descriptors opened before, so the fsync is not refused."""
    alice = unprivileged_users()
    docker = docker_dir(alice)
    write_as(alice, docker, mis_keyed("alice", "pw"))
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    synced: list[tuple[str, tuple[int, int]]] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        real_fsync(fd)  # raises if refused: the save would then fail the test
        synced.append((os.readlink(f"/proc/self/fd/{fd}"), fsidentity.current()))

    monkeypatch.setattr(os, "fsync", fsync)
    open_before = set(os.listdir("/proc/self/fd"))
    report = fix_file(docker / "config.json", backups=BackupStore(state))
    assert report.written and report.backup is not None
    folder = str(report.backup.parent)
    assert (folder, (alice.uid, alice.gid)) in synced  # its name, as alice, before the exchange
    assert (str(state / "backups"), (alice.uid, alice.gid)) in synced  # a new folder's entry
    assert set(os.listdir("/proc/self/fd")) <= open_before  # every descriptor closed
    assert auths_keys(docker / "config.json") == [HUB]


def test_deferred_cleanup_removes_every_users_displaced_file(
    unprivileged_users: Users, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cleanup thread is started by the first deferred save, which acts as that config's
    owner; it used to keep that identity and fail (EACCES, swallowed) on every other user's
    directory, leaving their old config beside config.json."""
    cleaner = SaveCleaner()  # a thread of its own, started by the first save below
    monkeypatch.setattr(dockerconfig, "_cleaner", cleaner)
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    backups = BackupStore(state)
    dirs = []
    for i in range(3):
        user = unprivileged_users()
        docker = docker_dir(user)
        write_as(user, docker, mis_keyed(f"user{i}", f"pw-{i}"))
        report = fix_file(docker / "config.json", backups=backups, defer_cleanup=True)
        assert report.written
        dirs.append(docker)
    assert cleaner.flush(timeout=10)
    for docker in dirs:
        assert sorted(os.listdir(docker)) == ["config.json"], docker
        assert auths_keys(docker / "config.json") == [HUB]


def test_the_start_pass_backs_up_as_root_after_its_threads_acted_as_users(
    unprivileged_users: Users, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pass's repair threads act as each config's owner for its save, then make the next
    chunk's backups together (`BackupStore.save_many`) in root's 0700 state directory: with the
    identity put back, or each of those would be refused and left to its fix."""
    monkeypatch.setattr(repair, "REPAIR_CHUNK", 3)
    batches: list[list[Path | OSError]] = []
    save_many = BackupStore.save_many

    def recorded(
        store: BackupStore, snapshots: list[dockerconfig.Snapshot]
    ) -> list[Path | OSError]:
        batches.append(save_many(store, snapshots))
        return batches[-1]

    monkeypatch.setattr(BackupStore, "save_many", recorded)
    configs = []
    for i in range(6):  # two chunks: the second runs on threads that acted as users
        user = unprivileged_users()
        docker = docker_dir(user)
        write_as(user, docker, mis_keyed(f"user{i}", f"pw-{i}"))
        configs.append(docker / "config.json")
    state = tmp_path / "state"
    with repairer(tmp_path, state_dir=state) as fixer:
        reports = start_pass(fixer, configs)
        assert dockerconfig.flush_cleanup(timeout=10)
    written = [config for config, report in reports.items() if report.written]
    assert sorted(written) == sorted(map(str, configs))
    assert sum(map(len, batches)) == 6  # every first backup made in a batch
    assert all(isinstance(result, Path) for batch in batches for result in batch), batches
    for config in configs:
        (backup,) = BackupStore(state).verified(config)
        st = backup.stat()
        assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (0, 0, 0o600)
        assert auths_keys(config) == [HUB]
