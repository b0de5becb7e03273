"""The daemon's watching: what a change means (pure routing), the watch set over each backend
(real directories, real watchers), and the watch limit's alert and retry (a fake clock, then an
in-process daemon whose watcher refuses a directory the way the kernel does at its limit).

The daemon as a process over each backend, a real overflow and a real limit:
``test_daemon_watch_e2e.py``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from regauthd.alerts.metrics import Metrics
from regauthd.dockerconfig.file import TEMP_PREFIX
from regauthd.service import watchlimit, watchset
from regauthd.service.app import build
from regauthd.service.fsview import LOCAL
from regauthd.service.loop import Loop
from regauthd.service.routing import Routing, route
from regauthd.service.watcher import Change, ChangeKind, Watcher, WatchLimitError
from regauthd.service.watcher import inotify as inotify_backend
from regauthd.service.watchlimit import WatchLimitRetry
from regauthd.service.watchplan import DirWatch, WatchPlan, plan_watches
from regauthd.service.watchset import WatchSet, is_temp_name
from regauthd.settings import Environment, WatchSettings
from regauthd.settingsfile import default_settings, with_overrides

HUB = "https://index.docker.io/v1/"


# -- what a change means (routing) -------------------------------------------------------------

WRITTEN, APPEARED, REMOVED = ChangeKind.WRITTEN, ChangeKind.APPEARED, ChangeKind.REMOVED
DIR_GONE, OVERFLOW = ChangeKind.DIR_GONE, ChangeKind.OVERFLOW

ROUTING_PLAN = WatchPlan(
    {
        "/cfg": DirWatch(files={"config.json": ("/cfg/config.json",)}),
        "/home": DirWatch(triggers=("*",)),
        "/home/a": DirWatch(triggers=(".docker",)),
        "/home/b/.docker": DirWatch(files={"config.json": ("/home/*/.docker/config.json",)}),
        "/home/c": DirWatch(files={"config.json": ("/home/*/config.json",)}),
        "/links": DirWatch(
            files={"config.json": ("/links/config.json",)}, links=frozenset({"config.json"})
        ),
    },
    (
        "/cfg/config.json",
        "/home/*/.docker/config.json",
        "/home/*/config.json",
        "/links/config.json",
    ),
)


class Links:
    """A file-system view where exactly ``links`` are symlinks (route asks nothing else)."""

    def __init__(self, *links: str) -> None:
        self.links = set(links)

    def listdir(self, path: str) -> list[str]:
        raise AssertionError("route lists nothing")

    def isdir(self, path: str) -> bool:
        raise AssertionError("route asks no isdir")

    def islink(self, path: str) -> bool:
        return path in self.links

    def realpath(self, path: str) -> str:
        raise AssertionError("route resolves nothing")


def routed(*changes: Change, links: tuple[str, ...] = ()) -> Routing:
    return route(ROUTING_PLAN, list(changes), Links(*links))


def test_a_write_to_a_config_is_repaired_and_nothing_else_is() -> None:
    docker_save = (
        Change(APPEARED, "/cfg", "config.json", False),
        Change(WRITTEN, "/cfg", "config.json", False),
    )
    assert routed(*docker_save) == Routing(configs={"/cfg/config.json": None})
    assert routed(Change(WRITTEN, "/home/b/.docker", "config.json", False)) == Routing(
        configs={"/home/*/.docker/config.json": None}
    )
    assert not routed(Change(REMOVED, "/cfg", "config.json", False))  # deleted: nothing to repair
    assert not routed(Change(WRITTEN, "/cfg", "other.json", False))
    assert not routed(Change(WRITTEN, "/elsewhere", "config.json", False))
    twice = routed(*docker_save, *docker_save)
    assert list(twice.configs) == ["/cfg/config.json"] and not twice.replan
    # A home watched only for .docker to appear: its other entries change nothing.
    assert not routed(Change(APPEARED, "/home/a", ".bash_history", False))
    assert not routed(Change(WRITTEN, "/home/a", ".docker", False))


def test_our_own_save_coming_back_is_not_looked_at_and_every_other_write_is() -> None:
    asked: list[str] = []

    def ours(name: str) -> bool:
        asked.append(name)
        return name == TEMP_PREFIX + "0a1b2c"

    def with_ours(*changes: Change) -> Routing:
        return route(ROUTING_PLAN, list(changes), Links(), ours)

    repair = Change(WRITTEN, "/cfg", "config.json", False, TEMP_PREFIX + "0a1b2c")
    assert not with_ours(Change(APPEARED, "/cfg", "config.json", False), repair)
    login = Change(WRITTEN, "/cfg", "config.json", False, "config.json4711")
    assert with_ours(login) == Routing(configs={"/cfg/config.json": None})
    in_place = Change(WRITTEN, "/cfg", "config.json", False)  # no rename: nothing to ask
    assert with_ours(in_place) == Routing(configs={"/cfg/config.json": None})
    assert asked == [TEMP_PREFIX + "0a1b2c", "config.json4711"]
    # Our repair and another write in one read: the other one is looked at.
    assert list(with_ours(repair, login).configs) == ["/cfg/config.json"]
    # Not a config's name: nothing is claimed for it.
    asked.clear()
    assert not with_ours(Change(WRITTEN, "/cfg", "other.json", False, TEMP_PREFIX + "0a1b2c"))
    assert asked == []
    # A backend that does not pair renames (or no one to ask): every write is looked at.
    assert routed(repair) == Routing(configs={"/cfg/config.json": None})


def test_symlinked_configs_replan() -> None:
    appeared = routed(Change(APPEARED, "/cfg", "config.json", False), links=("/cfg/config.json",))
    assert appeared.replan and list(appeared.configs) == ["/cfg/config.json"]
    replaced = routed(Change(REMOVED, "/links", "config.json", False))
    assert replaced == Routing(replan=True)
    written = routed(Change(WRITTEN, "/links", "config.json", False))
    assert written.replan and list(written.configs) == ["/links/config.json"]


def test_trigger_names_appearing_or_going_replan() -> None:
    assert routed(Change(APPEARED, "/home", "c", True)) == Routing(replan=True)
    assert routed(Change(APPEARED, "/home/a", ".docker", True)) == Routing(replan=True)
    assert routed(Change(REMOVED, "/home/a", ".docker", True)) == Routing(replan=True)
    assert not routed(Change(APPEARED, "/home", ".hidden", True))  # a glob skips dot names


def test_a_watched_directory_removed_or_gone_is_watched_anew() -> None:
    # /home/c holds a config itself (pattern /home/*/config.json): its parent sees it go.
    assert routed(Change(REMOVED, "/home", "c", True)) == Routing(replan=True, stale=["/home/c"])
    assert routed(Change(REMOVED, "/home", "b", True)) == Routing(replan=True)
    gone = routed(Change(DIR_GONE, "/home/b/.docker", "", True))
    assert gone == Routing(replan=True, gone=["/home/b/.docker"])


def test_an_overflow_asks_for_a_rescan() -> None:
    assert routed(Change(OVERFLOW, "", "", False)) == Routing(rescan=True)


# -- the watch set, over each backend -----------------------------------------------------------


def test_watchset_wants_only_what_the_plan_names_and_no_temp_files() -> None:
    watches = WatchSet(lambda routing: None)
    watches.reconcile(ROUTING_PLAN, lambda config: None)  # not open: only records the plan
    assert watches.wants("/cfg", "config.json")
    assert watches.wants("/home", "c")
    assert watches.wants("/home/a", ".docker")
    for temp in (f"{TEMP_PREFIX}0a1b2c", "config.json1234567", ".tmp-config.json42"):
        assert is_temp_name(temp)
        assert not watches.wants("/home", temp)
    assert not is_temp_name("config.json")
    assert not watches.wants("/cfg", "config.json.bak")
    assert not watches.wants("/home", ".hidden")
    assert not watches.wants("/home/a", ".bash_history")
    assert not watches.wants("/elsewhere", "config.json")


def _run_until(loop: Loop, done: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not done():
        assert time.monotonic() < deadline, "gave up waiting"
        loop.call_later(0.05, lambda: None)  # bounds each wait
        loop.run_once(lambda: None)


@pytest.mark.parametrize("backend", ["inotify", "native", "polling"])
def test_watchset_reports_docker_saves_and_not_reads_or_other_files(
    backend: str, tmp_path: Path
) -> None:
    cfg, home = tmp_path / "cfg", tmp_path / "home"
    cfg.mkdir()
    home.mkdir()
    config = str(cfg / "config.json")
    plan = plan_watches([config, str(home / ".docker" / "config.json")], LOCAL)
    routings: list[Routing] = []
    looked: list[str] = []
    watches = WatchSet(routings.append)
    loop = Loop()
    try:
        watches.open(loop, WatchSettings(paths=(), backend=backend, poll_interval=0.05))
        assert watches.backend == backend
        assert watches.reconcile(plan, looked.append)
        assert len(watches) == 2 and looked == [config]
        for i in range(5 if backend == "native" else 50):  # native pairs moves: up to 0.5 s
            before = len(routings)
            docker_style_save(cfg, b"{}", i)
            _run_until(loop, lambda before=before: len(routings) > before)
        (cfg / "config.json").read_bytes()  # our own reads wake nothing
        (cfg / "notes.txt").write_text("")
        (home / ".bash_history").write_text("")  # nor other files, here without contents
        settle = time.monotonic() + 0.3
        _run_until(loop, lambda: time.monotonic() > settle)
        saves = 5 if backend == "native" else 50
        # Polling reports a file changed in the tick of a poll once more (its digest makes
        # that a no-op); nothing else is reported.
        assert len(routings) == saves or backend == "polling"
        assert all(r == Routing(configs={config: None}) for r in routings)
        (home / ".docker").mkdir()
        _run_until(loop, lambda: bool(routings[-1].replan))
    finally:
        watches.close(loop)
        loop.close()


def docker_style_save(directory: Path, data: bytes, seq: int) -> None:
    tmp = directory / f"config.json{seq:06d}"
    tmp.write_bytes(data)
    tmp.rename(directory / "config.json")


def test_a_backend_that_does_not_work_here_falls_back_to_auto(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(inotify_backend, "LIBRARY", str(tmp_path / "libc-without-inotify.so"))
    watches = WatchSet(lambda routing: None)
    loop = Loop()
    try:
        watches.open(loop, WatchSettings(paths=(), backend="inotify"))
        assert watches.backend == "native"
        assert not watches.open(loop, WatchSettings(paths=(), backend="inotify"))  # no change
        assert watches.open(loop, WatchSettings(paths=(), backend="polling", poll_interval=1))
        assert watches.backend == "polling"
    finally:
        watches.close(loop)
        loop.close()


# -- the watch limit ------------------------------------------------------------------------------


def test_watch_limit_alerts_new_directories_once_and_retries_with_back_off() -> None:
    now = [0.0]
    loop = Loop(clock=lambda: now[0])
    alerts: list[tuple[str, str, dict[str, Any]]] = []
    retries: list[float] = []
    metrics = Metrics()

    def alert(kind: str, subject: str, **fields: Any) -> bool:
        alerts.append((kind, subject, fields))
        return True

    limit = WatchLimitRetry(
        loop=loop, alert=alert, metrics=metrics, retry=lambda: retries.append(now[0])
    )
    refused = {"/c": WatchLimitError("/c", "fs.inotify.max_user_watches", 8192)}

    def fire_at(when: float) -> None:  # the loop runs the timer due then
        now[0] = when
        loop.run_once(lambda: None)

    try:
        limit.update(refused, ["/c/config.json"])
        assert alerts == [
            (
                "watch.limit",
                "fs.inotify.max_user_watches",
                {
                    "count": 1,
                    "directories": "/c",
                    "configs": "/c/config.json",
                    "sysctl": "fs.inotify.max_user_watches",
                    "limit": 8192,
                    "retry": "30s",
                },
            )
        ]
        assert "regauthd_unwatched_directories 1.0\n" in metrics.render()
        assert "regauthd_unwatched_configs 1.0\n" in metrics.render()
        fire_at(30)
        assert retries == [30]
        more = {f"/d{i}": refused["/c"] for i in range(6)}
        limit.update({**refused, **more})  # a retry that refuses more: told once more
        assert [a[2]["directories"] for a in alerts[1:]] == ["/c, /d0, /d1, /d2, /d3 and 2 more"]
        assert alerts[1][2]["count"] == 7 and alerts[1][2]["retry"] == "60s"
        when = 30.0
        for delay in (60, 120, 240, 480, 600, 600):  # doubled up to 10 minutes
            when += delay
            fire_at(when - 0.001)
            assert retries[-1] != when - 0.001
            fire_at(when)
            assert retries[-1] == when
            limit.update({**refused, **more})
        assert len(alerts) == 2  # the same directories: no new alert
        limit.update({})  # all watched now: no timer, the back-off starts over
        assert "regauthd_unwatched_directories 0.0\n" in metrics.render()
        limit.update(refused)
        assert len(alerts) == 3 and alerts[2][2]["retry"] == "30s"
    finally:
        limit.close()
        loop.close()


class RefusingWatcher:
    """The real watcher, except that directories in ``refuse`` get the kernel's limit error."""

    def __init__(self, inner: Watcher, refuse: set[str]) -> None:
        self.inner = inner
        self.backend = inner.backend
        self.refuse = refuse

    def watch(self, directory: str, *, contents: bool) -> None:
        if directory in self.refuse:
            raise WatchLimitError(directory, "fs.inotify.max_user_watches", 2)
        self.inner.watch(directory, contents=contents)

    def unwatch(self, directory: str) -> None:
        self.inner.unwatch(directory)

    def fileno(self) -> int:
        return self.inner.fileno()

    def read(self) -> list[Change]:
        return self.inner.read()

    def close(self) -> None:
        self.inner.close()


def test_a_directory_over_the_limit_is_repaired_at_each_retry_and_watched_when_it_can_be(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    watched, refused = tmp_path / "a", tmp_path / "b"
    mis_keyed = '{"auths": {"docker.io": {"auth": "Y2k6cHc="}}}'
    for d in (watched, refused):
        d.mkdir()
        (d / "config.json").write_text(mis_keyed)
    refuse = {str(refused)}
    real_open = watchset.open_watcher
    monkeypatch.setattr(
        watchset,
        "open_watcher",
        lambda *args, **kwargs: RefusingWatcher(real_open(*args, **kwargs), refuse),
    )
    monkeypatch.setattr(watchlimit, "FIRST_RETRY", 0.05)
    monkeypatch.setattr(watchlimit, "LAST_RETRY", 0.2)
    env = Environment(euid=1000, home=tmp_path, env={})
    settings = with_overrides(
        default_settings(env),
        docker_configs=(str(watched), str(refused)),
        state_dir=tmp_path / "state",
    )
    daemon = build(settings, configure_output=False).daemon
    seen: dict[str, bool] = {}

    def repaired(d: Path) -> bool:
        return json.loads((d / "config.json").read_text())["auths"].keys() == {HUB}

    def wait(what: str, check: Callable[[], bool]) -> None:
        deadline = time.monotonic() + 20
        while not check():
            assert time.monotonic() < deadline, what
            time.sleep(0.01)
        seen[what] = True

    def drive() -> None:
        try:
            wait("both repaired at start", lambda: repaired(watched) and repaired(refused))
            unwatched = "regauthd_unwatched_configs 1.0\n"
            wait("its config counted", lambda: unwatched in daemon.metrics.render())
            (refused / "config.json").write_text(mis_keyed)  # unwatched: the retry repairs it
            wait("repaired at a retry", lambda: repaired(refused))
            refuse.clear()  # the limit was raised
            wait(
                "watched", lambda: "regauthd_unwatched_directories 0.0\n" in daemon.metrics.render()
            )
            (refused / "config.json").write_text(mis_keyed)
            wait("repaired as it is written", lambda: repaired(refused))
        finally:
            daemon.stop()

    driver = threading.Thread(target=drive)
    driver.start()
    assert daemon.run() == 0
    driver.join()
    assert list(seen) == [
        "both repaired at start",
        "its config counted",
        "repaired at a retry",
        "watched",
        "repaired as it is written",
    ]
    assert daemon.metrics.value("alerts", "watch.limit") == 1
