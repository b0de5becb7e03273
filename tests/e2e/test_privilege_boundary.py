"""The root daemon over users' homes does only what each user could (issue 12, Privilege 1-2).

Each test makes unprivileged users (homes under a temp directory), a stand-in for root's home
(``roothome``, root 0700, its ``.docker/config.json`` watched by the same daemon), and attacks
from the user's side: a directory swapped at the exact step of a save (a test hook, then a
real ``renameat2`` loop), symlinked configs leading to root's or another user's files, device
nodes and FIFOs named config.json, a symlinked ``~/.docker``, and temp files a killed save left.
"""

from __future__ import annotations

import ctypes
import json
import os
import stat
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path

from regauthd.dockerconfig.file import TEMP_PREFIX, TEST_EXCHANGE_ENV
from tests.rigs.configs import HUB, auth, auths_keys, mis_keyed, wait_until
from tests.rigs.daemon import Daemon, watch_settings
from tests.rigs.users import RigUser

ROOT_SECRET = "root-registry-secret-0x5eed"
ALICE_SECRET = "alice-secret"

Users = Callable[[], RigUser]


def root_home(base: Path) -> Path:
    """Root's stand-in home (0700) with a config that needs no repair; returns config.json."""
    home = base / "roothome"
    (home / ".docker").mkdir(parents=True, mode=0o700)
    home.chmod(0o700)
    config = home / ".docker" / "config.json"
    config.write_text(
        json.dumps({"auths": {HUB: {"auth": auth("root", ROOT_SECRET)}}}, indent="\t")
    )
    config.chmod(0o600)
    return config


def base_of(user: RigUser) -> Path:
    return user.home.parent.parent


def settings_for(base: Path, root_config: Path) -> str:
    return watch_settings(root_config, base / "home" / "*" / ".docker" / "config.json")


def write_as(user: RigUser, directory: Path, data: bytes, seq: int = 0) -> None:
    """What the user's `docker login` does: a temp file of theirs, renamed over config.json."""
    tmp = directory / f"config.json{seq:06d}"
    tmp.write_bytes(data)
    tmp.chmod(0o600)
    user.own(tmp)
    tmp.rename(directory / "config.json")


def docker_dir(user: RigUser) -> Path:
    path = user.home / ".docker"
    path.mkdir(mode=0o700)
    user.own(path)
    return path


def fingerprint(directory: Path) -> dict[str, tuple[int, int, int, int, bytes]]:
    """Every entry of ``directory``: inode, owner, mode, mtime and content (links: target)."""
    found = {}
    for entry in sorted(os.listdir(directory)):
        path = directory / entry
        st = os.lstat(path)
        content = os.readlink(path).encode() if stat.S_ISLNK(st.st_mode) else path.read_bytes()
        found[entry] = (st.st_ino, st.st_uid, st.st_mode, st.st_mtime_ns, content)
    return found


def unfixable(daemon: Daemon, config: Path) -> dict[str, object]:
    """The one alert saying ``config`` was refused (a refusal, not a crash of the repair)."""
    (alert,) = wait_until(
        lambda: [a for a in daemon.named("config.unfixable") if a.get("path") == str(config)],
        f"config.unfixable for {config}",
    )
    assert not daemon.named("config.repair_failed"), daemon.named("config.repair_failed")
    return alert  # type: ignore[no-any-return]


def settle(daemon: Daemon, config: Path) -> None:
    """A write the daemon must repair, to know it has looked at everything before it."""
    config.write_bytes(mis_keyed("root", ROOT_SECRET))
    wait_until(lambda: auths_keys(config) == [HUB], f"{config} repaired")


# -- (a) a directory swapped between opening the directory and the rename ---------------------


def swap_setup(alice: RigUser) -> tuple[RigUser, Path, Path, Path, Path]:
    """Root's config beside alice's home, her ``~/.docker``, and her link to root's directory
    (``~/.docker-swap``) to swap it with: (alice, base, root's config, her .docker, the link)."""
    base = base_of(alice)
    root_config = root_home(base)
    docker = docker_dir(alice)
    swap = alice.home / ".docker-swap"
    swap.symlink_to(root_config.parent)
    alice.own(swap)
    return alice, base, root_config, docker, swap


def test_directory_swapped_at_the_exchange_cannot_redirect_the_save(
    unprivileged_users: Users, start_daemon: Callable[..., Daemon]
) -> None:
    alice, base, root_config, docker, swap = swap_setup(unprivileged_users())
    before = fingerprint(root_config.parent)
    start_daemon(
        settings_for(base, root_config), env={TEST_EXCHANGE_ENV: f"{docker}{os.pathsep}{swap}"}
    )
    write_as(alice, docker, mis_keyed(password=ALICE_SECRET))
    # The hook swapped ~/.docker for the link to root's directory right before the exchange:
    # the save still landed in alice's own directory (now named .docker-swap).
    wait_until(
        lambda: not swap.is_symlink() and auths_keys(swap / "config.json") == [HUB],
        "alice's config repaired in her own directory",
    )
    assert docker.is_symlink()
    assert os.stat(swap / "config.json").st_uid == alice.uid
    time.sleep(0.3)  # events of the swap: the daemon looks again, through the link
    assert fingerprint(root_config.parent) == before
    assert ROOT_SECRET.encode() not in (swap / "config.json").read_bytes()


_ATTACKER = r"""
import ctypes, json, os, shutil, sys, time, base64
libc = ctypes.CDLL(None, use_errno=True)
docker, swap, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
home = os.path.dirname(docker)
end = time.monotonic() + seconds
def exchange():
    return libc.renameat2(-100, docker.encode(), -100, swap.encode(), 2) == 0
i = writes = swaps = 0
while time.monotonic() < end:
    i += 1
    if os.path.islink(docker):
        swaps += exchange()
    if os.path.isdir(docker):  # ~/.docker gone: the daemon waits for it in her home
        os.rename(docker, f"{home}/old-{i}")
    time.sleep(0.1)
    staging = f"{home}/staging-{i}"
    os.mkdir(staging, 0o700)
    auth = base64.b64encode(f"alice:pw-{i}".encode()).decode()
    with open(f"{staging}/config.json", "w") as f:  # her login, needing a repair
        json.dump({"auths": {"docker.io": {"auth": auth}},
                   "cliPluginsExtraDirs": ["/tmp/alice-plugins"]}, f)
    os.rename(staging, docker)  # appears: the daemon watches it and repairs the config ...
    writes += 1
    time.sleep((i % 5) * 0.001)
    stop = time.monotonic() + 0.002 + (i % 9) * 0.001
    while time.monotonic() < stop:  # ... while she swaps it with the link to root's directory
        swaps += exchange()
for entry in os.listdir(home):
    if entry.startswith("old-"):
        shutil.rmtree(f"{home}/{entry}")
print(json.dumps({"writes": writes, "swapped": swaps > 0}))
"""


def test_a_user_swapping_her_directory_in_a_loop_never_reaches_roots_config(
    unprivileged_users: Users, start_daemon: Callable[..., Daemon]
) -> None:
    alice, base, root_config, docker, swap = swap_setup(unprivileged_users())
    before = fingerprint(root_config.parent)
    daemon = start_daemon(settings_for(base, root_config))
    proc = alice.run(
        [sys.executable, "-c", _ATTACKER, str(docker), str(swap), "2"], timeout=30, check=True
    )
    done = json.loads(proc.stdout)
    assert done["writes"] > 10 and done["swapped"], done
    time.sleep(0.5)
    assert fingerprint(root_config.parent) == before
    real = swap if docker.is_symlink() else docker
    for entry in real.iterdir():
        assert ROOT_SECRET.encode() not in entry.read_bytes()
        assert os.lstat(entry).st_uid == alice.uid
    assert daemon.proc.poll() is None, daemon.err.read_text()[-3000:]


# -- (b), (c) a config.json that is a symlink to someone else's file ---------------------------


def test_symlinks_to_roots_or_another_users_file_are_left_alone(
    unprivileged_users: Users, start_daemon: Callable[..., Daemon]
) -> None:
    alice, bob, carol = unprivileged_users(), unprivileged_users(), unprivileged_users()
    base = base_of(alice)
    root_config = root_home(base)
    secrets_dir = base / "rootsecrets"
    secrets_dir.mkdir(mode=0o700)
    victim = secrets_dir / "root-only.json"
    victim.write_bytes(mis_keyed("root", ROOT_SECRET))  # would be "repaired" if followed
    victim.chmod(0o600)
    bob.home.chmod(0o755)
    podman = bob.home / "containers"
    podman.mkdir(mode=0o755)
    bobs = podman / "auth.json"
    bobs.write_bytes(mis_keyed("bob", "bob-secret"))
    bobs.chmod(0o644)
    bob.own(podman, bobs)
    (docker_dir(alice) / "config.json").symlink_to(victim)
    (docker_dir(carol) / "config.json").symlink_to(bobs)
    alice.own(alice.home / ".docker" / "config.json")
    carol.own(carol.home / ".docker" / "config.json")
    victim_before, bobs_before = fingerprint(victim.parent), fingerprint(podman)
    daemon = start_daemon(settings_for(base, root_config))
    to_root = unfixable(daemon, alice.home / ".docker" / "config.json")
    to_bob = unfixable(daemon, carol.home / ".docker" / "config.json")
    assert "left it alone" in str(to_root["reason"]), to_root
    assert f"belongs to {bob.name}, not to {carol.name}" in str(to_bob["reason"]), to_bob
    not_owned = {e["directory"] for e in daemon.named("watch.not_owned")}
    assert {str(victim.parent), str(podman)} <= not_owned
    settle(daemon, root_config)
    assert fingerprint(victim.parent) == victim_before
    assert fingerprint(podman) == bobs_before
    assert ROOT_SECRET not in daemon.out.read_text()


# -- (d) a device node or FIFO named config.json -----------------------------------------------

IN_OPEN = 0x20


def test_fifo_and_device_as_config_are_never_opened(
    unprivileged_users: Users, start_daemon: Callable[..., Daemon]
) -> None:
    alice, dave, erin = unprivileged_users(), unprivileged_users(), unprivileged_users()
    base = base_of(alice)
    root_config = root_home(base)
    fifo = docker_dir(alice) / "config.json"
    os.mkfifo(fifo, 0o600)
    device = docker_dir(dave) / "config.json"
    os.mknod(device, stat.S_IFCHR | 0o600, os.makedev(1, 5))  # /dev/zero's numbers
    alice.own(fifo)
    dave.own(device)
    libc = ctypes.CDLL(None, use_errno=True)
    inotify = libc.inotify_init1(os.O_NONBLOCK)
    try:
        for path in (fifo, device):
            assert libc.inotify_add_watch(inotify, os.fsencode(path), IN_OPEN) >= 0
        daemon = start_daemon(settings_for(base, root_config))
        assert "FIFO" in str(unfixable(daemon, fifo)["reason"])
        assert "character device" in str(unfixable(daemon, device)["reason"])
        erins = docker_dir(erin)
        write_as(erin, erins, mis_keyed(password="erin"))
        wait_until(lambda: auths_keys(erins / "config.json") == [HUB], "the daemon still works")
        try:
            events = os.read(inotify, 4096)
        except BlockingIOError:
            events = b""
        opened = [struct.unpack_from("iIII", events, i) for i in range(0, len(events), 16)]
        assert events == b"", f"opened as root: {opened}"
    finally:
        os.close(inotify)
    assert len([a for a in daemon.named("config.unfixable") if a["path"] == str(fifo)]) == 1


# -- (e) a symlinked ~/.docker leading to a root-owned directory -------------------------------


def test_symlinked_docker_dir_to_a_root_owned_directory_is_not_watched(
    unprivileged_users: Users, start_daemon: Callable[..., Daemon]
) -> None:
    alice = unprivileged_users()
    base = base_of(alice)
    root_config = root_home(base)
    system = base / "etc-standin"
    system.mkdir(mode=0o755)
    (system / "config.json").write_bytes(mis_keyed("root", ROOT_SECRET))
    (alice.home / ".docker").symlink_to(system)
    alice.own(alice.home / ".docker")
    before = fingerprint(system)
    daemon = start_daemon(settings_for(base, root_config))
    (refused,) = [e for e in daemon.named("watch.not_owned") if e["directory"] == str(system)]
    assert f"not to {alice.name}" in refused["reason"]
    assert str(system) not in {e["directory"] for e in daemon.named("watch.added")}
    settle(daemon, root_config)
    (system / "config.json").write_bytes(mis_keyed("root", "a-new-login"))
    before = fingerprint(system)
    settle(daemon, root_config)  # had the directory been watched, this write was repaired
    assert fingerprint(system) == before


# -- temp files a killed save left ---------------------------------------------------------------


def test_stale_temp_files_are_removed_at_start_ours_only(
    unprivileged_users: Users, start_daemon: Callable[..., Daemon]
) -> None:
    alice, bob = unprivileged_users(), unprivileged_users()
    base = base_of(alice)
    root_config = root_home(base)
    docker = docker_dir(alice)
    write_as(alice, docker, json.dumps({"auths": {HUB: {"auth": auth("a", "b")}}}).encode())
    stale = docker / f"{TEMP_PREFIX}0123456789ab"
    stale.write_bytes(mis_keyed("alice", ALICE_SECRET))
    link = docker / f"{TEMP_PREFIX}link"
    link.symlink_to(docker / "config.json")
    bobs = docker / f"{TEMP_PREFIX}bobs"
    bobs.write_bytes(b"bob's")
    other = docker / "notes.json"
    other.write_bytes(b"{}")
    alice.own(stale, link, other)
    bob.own(bobs)
    start_daemon(settings_for(base, root_config))
    wait_until(lambda: not stale.exists(), "the stale temp file removed")
    assert link.is_symlink() and bobs.exists() and other.exists()
