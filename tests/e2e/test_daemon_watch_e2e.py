"""`regauthd run` over each watch backend, and when watching fails: lost events, the watch limit.

The daemon runs as a subprocess (the rig of ``test_service_daemon.py``). The kernel's event
queue is overflowed for real (the daemon is stopped with SIGSTOP while a watched directory is
flooded with renames), and the watch limit is lowered in a private user namespace (never the
host's sysctl). Waits are for expected lines or files (with a deadline), never fixed times.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from regauthd.alerts.catalogue import CATALOGUE
from regauthd.dockerconfig.file import TEMP_PREFIX
from regauthd.service.watcher import Change, ChangeKind, open_watcher
from tests.conftest import unavailable
from tests.rigs.configs import HUB, auths_keys, docker_style_write, mis_keyed, wait_until
from tests.rigs.daemon import Daemon
from tests.rigs.watching import collect

BASE_SETTINGS = '[daemon]\noutput = "json"\nlog_level = "debug"\n[alerts]\nsuppress_window = 0\n'


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[Callable[..., Daemon]]:
    """``daemons(watch_settings, **rig_kwargs)``: a READY daemon, stopped at the end."""
    started: list[Daemon] = []

    def start(watch: str = "", **kwargs: Any) -> Daemon:
        daemon = Daemon(tmp_path, settings=BASE_SETTINGS + "[watch]\n" + watch, **kwargs)
        started.append(daemon)
        daemon.wait_ready()
        return daemon

    yield start
    for daemon in started:
        daemon.stop()


def test_auto_is_inotify_on_linux_and_says_so(
    tmp_path: Path, daemons: Callable[..., Daemon]
) -> None:
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    daemon = daemons(docker_configs=[cfg])
    (opened,) = daemon.named("watch.opened")
    assert (opened["backend"], opened["requested"]) == ("inotify", "auto")


def test_its_own_repair_is_not_read_again_and_every_other_write_is_repaired(
    tmp_path: Path, daemons: Callable[..., Daemon]
) -> None:
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    (cfg / "config.json").write_bytes(mis_keyed())
    daemon = daemons(docker_configs=[cfg])
    # This test's own view of the directory: which temp file each repair renamed into place.
    watcher = open_watcher("inotify")
    try:
        watcher.watch(str(cfg), contents=True)
        renamed_in: list[str] = []
        for seq in (1, 2):  # the second write's repair comes after the first one's event
            docker_style_write(cfg, mis_keyed(password=f"pw-{seq}"), seq)
            daemon.wait_event("config.normalized", count=seq + 1)
            seen = collect(watcher, lambda s: any(_repaired_in(c) for c in s))
            renamed_in += [c.source for c in seen if _repaired_in(c)]
        assert auths_keys(cfg / "config.json") == [HUB]
        # Before: each repair's own rename was read back (a `config.unchanged` for every one).
        assert daemon.named("config.unchanged") == []
        # A file moved in from a name one of its repairs used is someone else's write.
        reused = cfg / renamed_in[0]
        reused.write_bytes(mis_keyed(password="pw-3"))
        reused.rename(cfg / "config.json")
        daemon.wait_event("config.normalized", count=4)
        wait_until(lambda: auths_keys(cfg / "config.json") == [HUB], "the repaired file")
    finally:
        watcher.close()


def _repaired_in(change: Change) -> bool:
    return change.kind is ChangeKind.WRITTEN and change.source.startswith(TEMP_PREFIX)


@pytest.mark.parametrize("backend", ["polling", "native"])
def test_each_backend_repairs_a_docker_save(
    backend: str, tmp_path: Path, daemons: Callable[..., Daemon]
) -> None:
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    (cfg / "config.json").write_bytes(mis_keyed())
    daemon = daemons(f'backend = "{backend}"\npoll_interval = "100ms"\n', docker_configs=[cfg])
    (opened,) = daemon.named("watch.opened")
    assert opened["backend"] == backend
    assert auths_keys(cfg / "config.json") == [HUB]  # repaired before READY=1
    for seq in range(1, 4):  # new logins, each saved as Docker saves
        docker_style_write(cfg, mis_keyed(password=f"pw-{seq}"), seq)
        daemon.wait_event("config.normalized", count=seq + 1)
        wait_until(lambda: auths_keys(cfg / "config.json") == [HUB], "the repaired file")
    (cfg / "config.json").write_bytes(mis_keyed(password="pw-redirect"))  # a shell redirect
    daemon.wait_event("config.normalized", count=5)
    wait_until(lambda: auths_keys(cfg / "config.json") == [HUB], "the repaired file")
    assert daemon.named("config.unfixable") == []


def test_sighup_switches_the_backend(tmp_path: Path, daemons: Callable[..., Daemon]) -> None:
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    watch = f'paths = ["{cfg / "config.json"}"]\n'
    daemon = daemons(watch)
    daemon.settings_file.write_text(
        BASE_SETTINGS + "[watch]\n" + watch + 'backend = "polling"\npoll_interval = "100ms"\n'
    )
    daemon.signal(signal.SIGHUP)
    daemon.wait_event("settings.reloaded")
    assert [e["backend"] for e in daemon.named("watch.opened")] == ["inotify", "polling"]
    docker_style_write(cfg, mis_keyed())
    wait_until(lambda: auths_keys(cfg / "config.json") == [HUB], "repaired by the poller")


def test_a_config_changed_while_events_were_lost_is_repaired_with_one_alert(
    tmp_path: Path, daemons: Callable[..., Daemon]
) -> None:
    queue = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
    if queue > 200_000:
        unavailable(f"max_queued_events is {queue}: too many events to overflow")
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    daemon = daemons(docker_configs=[cfg])
    a, b = cfg / "a", cfg / "b"
    a.write_bytes(b"")
    # Stopped, the daemon reads nothing: a rename is two events, so this fills its queue, and
    # the save after it is lost (the kernel queues one overflow event instead).
    daemon.signal(signal.SIGSTOP)
    try:
        for _ in range(queue // 2 + 64):
            a.rename(b)
            b.rename(a)
        docker_style_write(cfg, mis_keyed())
    finally:
        daemon.signal(signal.SIGCONT)
    (alert,) = daemon.wait_event("watch.overflow")
    wait_until(lambda: auths_keys(cfg / "config.json") == [HUB], "the repair after the overflow")
    assert alert["message_id"] == CATALOGUE["watch.overflow"].message_id.hex
    assert (alert["severity"], alert["backend"], alert["configs"]) == ("warning", "inotify", 1)
    assert "lost file events" in alert["message"] and "checked again" in alert["message"]
    daemon.wait_event("config.normalized")
    metrics = tmp_path / "state" / "regauthd.prom"
    wait_until(
        lambda: metrics.exists() and "regauthd_watch_overflows_total 1.0\n" in metrics.read_text(),
        "the overflow counter in the metrics file",
    )
    # The watch still works as before, and the flood raised exactly one alert.
    docker_style_write(cfg, mis_keyed(password="pw-after"), 1)
    daemon.wait_event("config.normalized", count=2)
    wait_until(lambda: auths_keys(cfg / "config.json") == [HUB], "the next repair")
    assert len(daemon.named("watch.overflow")) == 1


_LOWER_LIMIT = 'echo "$LIMIT" > /proc/sys/user/max_inotify_watches && exec "$@"'


def test_directories_beyond_the_watch_limit_are_alerted_and_repaired_at_start(
    tmp_path: Path,
) -> None:
    # The limit is lowered in a private user namespace, where only the daemon is charged: the
    # host's fs.inotify.max_user_watches counts every process of this user.
    unshare = shutil.which("unshare")
    if unshare is None:
        unavailable("unshare not found (Debian package: util-linux)")
        return
    userns = [unshare, "--user", "--map-root-user"]
    probe = subprocess.run([*userns, "true"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        unavailable(f"no user namespaces here: {probe.stderr.strip()}")
    dirs = [tmp_path / f"cfg{i}" for i in range(3)]
    for d in dirs:
        d.mkdir()
        (d / "config.json").write_bytes(mis_keyed())
    daemon = Daemon(
        tmp_path,
        settings=BASE_SETTINGS,
        docker_configs=dirs,
        env={"LIMIT": "2"},
        command_prefix=[*userns, "sh", "-c", _LOWER_LIMIT, "sh"],
    )
    try:
        daemon.wait_ready()
        # Every config was repaired before READY=1, the unwatched one too.
        assert [auths_keys(d / "config.json") for d in dirs] == [[HUB]] * 3
        (alert,) = daemon.named("watch.limit")
        assert alert["message_id"] == CATALOGUE["watch.limit"].message_id.hex
        assert alert["severity"] == "error"
        assert (alert["count"], alert["directories"]) == (1, str(dirs[2]))
        assert (alert["sysctl"], alert["limit"]) == ("user.max_inotify_watches", 2)
        assert str(dirs[2]) in alert["message"] and "user.max_inotify_watches" in alert["message"]
        metrics = tmp_path / "state" / "regauthd.prom"
        wait_until(
            lambda: (
                metrics.exists() and "regauthd_unwatched_directories 1.0\n" in metrics.read_text()
            ),
            "the unwatched-directories gauge",
        )
        # The watched ones are repaired at once, as always.
        docker_style_write(dirs[0], mis_keyed(password="pw-2"), 1)
        wait_until(lambda: auths_keys(dirs[0] / "config.json") == [HUB], "a watched repair")
        assert len(daemon.named("watch.limit")) == 1
    finally:
        daemon.stop()
    assert os.path.exists(tmp_path / "state")
