"""The daemon's pure core: which directories to watch, flapping writers, newest credentials,
and the loop's timers. (The daemon as a process: tests/test_service_daemon.py.)"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st
from structlog.testing import capture_logs

from regauthd.dockerconfig.report import FixReport
from regauthd.service.app import build
from regauthd.service.daemon import Daemon
from regauthd.service.flapping import FlapTracker, FlapVerdict, hub_fingerprints, newest_hub_keys
from regauthd.service.fsview import LOCAL
from regauthd.service.loop import Loop
from regauthd.service.sdnotify import Notifier
from regauthd.service.watchplan import DirWatch, WatchPlan, configs_matching, plan_watches
from regauthd.settings import Environment, FlappingSettings, Settings
from regauthd.settingsfile import default_settings, parse_settings, with_overrides

HUB = "https://index.docker.io/v1/"


# -- plan_watches ------------------------------------------------------------------------------


def test_existing_config_dir_is_watched_itself(tmp_path: Path) -> None:
    (tmp_path / "u/.docker").mkdir(parents=True)
    config = str(tmp_path / "u/.docker/config.json")
    plan = plan_watches([config], LOCAL)
    assert plan == WatchPlan(
        {str(tmp_path / "u/.docker"): DirWatch(files={"config.json": (config,)})}, (config,)
    )


def test_missing_dirs_are_waited_for_in_the_nearest_ancestor(tmp_path: Path) -> None:
    config = str(tmp_path / "u/.docker/config.json")
    plan = plan_watches([config], LOCAL)
    assert plan.dirs == {str(tmp_path): DirWatch(triggers=("u",))}
    (tmp_path / "u").mkdir()
    assert plan_watches([config], LOCAL).dirs == {
        str(tmp_path / "u"): DirWatch(triggers=(".docker",))
    }


def test_globs_watch_the_parent_and_every_match(tmp_path: Path) -> None:
    for user in ("alice", "bob", ".hidden"):
        (tmp_path / "home" / user).mkdir(parents=True)
    (tmp_path / "home/alice/.docker").mkdir()
    (tmp_path / "home/stray-file").write_text("")
    pattern = str(tmp_path / "home/*/.docker/config.json")
    plan = plan_watches([pattern], LOCAL)
    alice = str(tmp_path / "home/alice/.docker/config.json")
    assert plan.dirs == {
        str(tmp_path / "home"): DirWatch(triggers=("*",)),
        str(tmp_path / "home/alice/.docker"): DirWatch(files={"config.json": (alice,)}),
        str(tmp_path / "home/bob"): DirWatch(triggers=(".docker",)),
    }
    assert plan.configs == (alice,)


def test_symlinked_config_is_also_watched_in_its_targets_directory(tmp_path: Path) -> None:
    (tmp_path / "cfg").mkdir()
    (tmp_path / "real").mkdir()
    (tmp_path / "real/docker.json").write_text("{}")
    (tmp_path / "cfg/config.json").symlink_to(tmp_path / "real/docker.json")
    config = str(tmp_path / "cfg/config.json")
    plan = plan_watches([config], LOCAL)
    assert plan.dirs == {
        str(tmp_path / "cfg"): DirWatch(
            files={"config.json": (config,)}, links=frozenset({"config.json"})
        ),
        str(tmp_path / "real"): DirWatch(files={"docker.json": (config,)}),
    }
    assert plan.config_count() == 1


def test_symlinked_directory_is_watched_at_its_real_path(tmp_path: Path) -> None:
    (tmp_path / "data/docker").mkdir(parents=True)
    (tmp_path / "home").mkdir()
    (tmp_path / "home/.docker").symlink_to(tmp_path / "data/docker")
    config = str(tmp_path / "home/.docker/config.json")
    assert plan_watches([config], LOCAL).dirs == {
        str(tmp_path / "data/docker"): DirWatch(files={"config.json": (config,)})
    }


def test_two_patterns_sharing_a_directory_make_one_watch(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    a, b = str(tmp_path / "d/config.json"), str(tmp_path / "d/other.json")
    assert plan_watches([a, b, a], LOCAL).dirs == {
        str(tmp_path / "d"): DirWatch(files={"config.json": (a,), "other.json": (b,)})
    }


def test_planned_directories_are_the_real_paths_whatever_the_links_on_the_way(
    tmp_path: Path,
) -> None:
    """The plan resolves each directory from its parent's real path (one lstat each): the
    same answer as resolving every path whole, through links to links, relative links with
    `..`, a linked home and a linked ~/.docker."""
    (tmp_path / "disk" / "alice" / ".docker").mkdir(parents=True)
    (tmp_path / "disk" / "bob-docker").mkdir(parents=True)
    (tmp_path / "homes").mkdir()
    (tmp_path / "homes" / "alice").symlink_to(tmp_path / "disk" / "alice")
    (tmp_path / "homes" / "bob").mkdir()
    (tmp_path / "homes" / "bob" / ".docker").symlink_to("../../disk/bob-docker")
    (tmp_path / "homes" / "carol").symlink_to("alice")  # a link to a link
    (tmp_path / "homes" / "dave").mkdir()  # no ~/.docker yet: waited for in the home
    (tmp_path / "root").symlink_to(tmp_path)  # the whole tree reached through a link
    pattern = str(tmp_path / "root" / "homes" / "*" / ".docker" / "config.json")
    plan = plan_watches([pattern], LOCAL)
    home = tmp_path / "root" / "homes"
    expected_files = {os.path.realpath(home / u / ".docker") for u in ("alice", "bob", "carol")}
    assert {d for d, w in plan.dirs.items() if w.files} == expected_files
    assert os.path.realpath(home / "dave") in plan.dirs  # the trigger for .docker
    assert os.path.realpath(home) in plan.dirs  # the trigger for new homes
    assert all(d == os.path.realpath(d) for d in plan.dirs)


class FakeFileSystem:
    """A :class:`regauthd.service.watchplan.FileSystemView` over plain data: no disk at all."""

    def __init__(self, dirs: dict[str, list[str]], links: dict[str, str]) -> None:
        self.dirs = dirs
        self.links = links

    def listdir(self, path: str) -> list[str]:
        if path not in self.dirs:
            raise FileNotFoundError(path)
        return list(self.dirs[path])

    def isdir(self, path: str) -> bool:
        return self.realpath(path) in self.dirs

    def isfile(self, path: str) -> bool:
        real = self.realpath(path)
        parent, _, name = real.rpartition("/")
        return real not in self.dirs and name in self.dirs.get(parent or "/", [])

    def islink(self, path: str) -> bool:
        return path in self.links

    def realpath(self, path: str) -> str:
        return self.links.get(path, path)


def test_planning_reads_only_the_view_it_is_given() -> None:
    fs = FakeFileSystem(
        dirs={
            "/": ["data", "home"],
            "/data": ["alice.json"],
            "/home": ["alice", "bob", ".hidden"],
            "/home/alice": [".docker"],
            "/home/alice/.docker": ["config.json"],
            "/home/bob": [],
            "/home/.hidden": [],
        },
        links={"/home/alice/.docker/config.json": "/data/alice.json"},
    )
    alice = "/home/alice/.docker/config.json"
    plan = plan_watches(["/home/*/.docker/config.json"], fs)
    assert plan == WatchPlan(
        {
            "/data": DirWatch(files={"alice.json": (alice,)}),
            "/home": DirWatch(triggers=("*",)),
            "/home/alice/.docker": DirWatch(
                files={"config.json": (alice,)}, links=frozenset({"config.json"})
            ),
            "/home/bob": DirWatch(triggers=(".docker",)),
        },
        (alice,),
    )
    assert plan.existing_configs(fs) == [alice]  # a symlinked config is a file too


def test_configs_matching_expands_globs_and_skips_missing(tmp_path: Path) -> None:
    for user in ("ann", "ben"):
        (tmp_path / "home" / user / ".docker").mkdir(parents=True)
    (tmp_path / "home" / "ann" / ".docker" / "config.json").write_text("{}")
    text = f'[watch]\npaths = ["{tmp_path}/home/*/.docker/config.json", "~/.docker/config.json"]\n'
    env = Environment(euid=1000, home=tmp_path / "nohome", env={})
    patterns = parse_settings(text, env).watch.patterns(tmp_path / "nohome")
    found = configs_matching(patterns, LOCAL)
    assert found == [str(tmp_path / "home" / "ann" / ".docker" / "config.json")]


# -- FlapTracker -------------------------------------------------------------------------------

SETTINGS = FlappingSettings(max_undos=3, window=60, backoff=300, backoff_max=1000)


def test_new_content_every_time_is_never_flapping() -> None:
    tracker = FlapTracker(SETTINGS)
    for i in range(1000):
        assert tracker.observe("f", f"login-{i}".encode(), i * 0.01) == FlapVerdict("repair")
        tracker.replaced("f", f"login-{i}".encode(), i * 0.01)


def test_writer_putting_back_what_we_replaced_is_paused_then_retried() -> None:
    tracker = FlapTracker(SETTINGS)
    assert tracker.observe("f", b"A", 0) == FlapVerdict("repair")
    tracker.replaced("f", b"A", 0)
    assert tracker.observe("f", b"A", 1) == FlapVerdict("repair", undos=1)
    tracker.replaced("f", b"A", 1)
    assert tracker.observe("f", b"A", 2) == FlapVerdict("repair", undos=2)
    tracker.replaced("f", b"A", 2)
    assert tracker.observe("f", b"A", 3) == FlapVerdict("pause", undos=3, backoff=300)
    assert tracker.paused_until("f") == 303
    assert tracker.observe("f", b"A", 100) == FlapVerdict("paused")
    assert tracker.observe("f", b"B", 100) == FlapVerdict("paused")
    tracker.resume("f", 303)
    assert tracker.observe("f", b"A", 304) == FlapVerdict("repair")  # old undos expired
    tracker.replaced("f", b"A", 304)
    # A relapse right after the pause: paused again at once, twice as long.
    assert tracker.observe("f", b"A", 305) == FlapVerdict("pause", undos=1, backoff=600)
    tracker.resume("f", 905)
    tracker.replaced("f", b"A", 906)
    assert tracker.observe("f", b"A", 907) == FlapVerdict("pause", undos=1, backoff=1000)


def test_calm_after_a_pause_resets_the_backoff() -> None:
    tracker = FlapTracker(SETTINGS)
    for t in range(3):
        tracker.replaced("f", b"A", t)
        tracker.observe("f", b"A", t + 0.5)
    assert tracker.paused_until("f") == 302.5
    tracker.resume("f", 400)
    assert tracker.observe("f", b"X", 500) == FlapVerdict("repair")  # window passed: calm
    for t in range(501, 504):
        tracker.replaced("f", b"A", t)
        verdict = tracker.observe("f", b"A", t + 0.5)
    assert verdict == FlapVerdict("pause", undos=3, backoff=300)


def test_undos_outside_the_window_do_not_count() -> None:
    tracker = FlapTracker(SETTINGS)
    for t in (0, 100, 200, 300, 400):
        tracker.replaced("f", b"A", t)
        assert tracker.observe("f", b"A", t + 1).action == "repair"


def test_files_are_tracked_separately() -> None:
    tracker = FlapTracker(SETTINGS)
    for t in range(2):
        tracker.replaced("f", b"A", t)
        assert tracker.observe("f", b"A", t + 0.5).action == "repair"
    tracker.replaced("f", b"A", 4)
    assert tracker.observe("f", b"A", 4.5).action == "pause"
    assert tracker.observe("g", b"A", 5).action == "repair"


@given(st.lists(st.tuples(st.sampled_from([b"A", b"B", b"C"]), st.booleans()), max_size=60))
def test_pauses_never_start_without_max_undos_or_a_relapse(
    steps: list[tuple[bytes, bool]],
) -> None:
    tracker = FlapTracker(SETTINGS)
    t = 0.0
    for content, we_rewrite in steps:
        t += 1
        verdict = tracker.observe("f", content, t)
        if verdict.action == "pause":
            assert verdict.undos >= 1 and verdict.backoff >= SETTINGS.backoff
        if verdict.action == "repair" and we_rewrite:
            tracker.replaced("f", content, t)


# -- newest_hub_keys ---------------------------------------------------------------------------


def test_newest_hub_keys() -> None:
    before = {"auths": {HUB: {"auth": "old"}, "docker.io": {"auth": "x"}}}
    after = {
        "auths": {
            HUB: {"auth": "old"},
            "docker.io": {"auth": "new"},  # changed: newest
            "index.docker.io": {"auth": "y"},  # added: newest
            "ghcr.io": {"auth": "z"},  # not Docker Hub
        }
    }
    assert newest_hub_keys(hub_fingerprints(before), after) == ("docker.io", "index.docker.io")
    assert newest_hub_keys(None, after) == ()
    assert newest_hub_keys(hub_fingerprints(after), after) == ()
    canonical_only = {"auths": {HUB: {"auth": "n"}}}
    assert newest_hub_keys(hub_fingerprints({}), canonical_only) == ()  # canonical: no hint
    assert newest_hub_keys(hub_fingerprints({"auths": []}), {"auths": "garbage"}) == ()
    # Only non-canonical Hub entries are remembered, as digests: no secret is kept.
    assert set(hub_fingerprints(before) or {}) == {"docker.io"}
    assert hub_fingerprints("not a config") is None  # type: ignore[arg-type]


def test_flap_tracker_forgets_files_once_their_window_passed() -> None:
    """10,000 watched configs: a file keeps flapping state only while it can matter."""
    tracker = FlapTracker(FlappingSettings(max_undos=2, window=10.0, backoff=30.0))
    for i in range(1000):
        assert tracker.observe(f"/c{i}", b"new", now=0.0).action == "repair"
        tracker.replaced(f"/c{i}", b"old", now=0.0)
    assert len(tracker._files) == 1000
    # The writer undoes one file twice: that one pauses, and is remembered while paused.
    tracker.observe("/c0", b"old", now=1.0)
    tracker.replaced("/c0", b"old", now=1.0)
    assert tracker.observe("/c0", b"old", now=2.0).action == "pause"
    tracker.observe("/other", b"x", now=11.0)
    assert set(tracker._files) == {"/c0"}
    assert tracker.paused_until("/c0") == 32.0
    tracker.resume("/c0", now=32.0)
    tracker.observe("/other", b"x", now=60.0)
    assert tracker._files == {}


# -- Loop and Notifier -------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_loop_runs_posted_callbacks_then_work_then_due_timers() -> None:
    clock = FakeClock()
    loop = Loop(clock)
    order: list[str] = []
    loop.call_at(5, lambda: order.append("t5"))
    cancelled = loop.call_at(1, lambda: order.append("never"))
    cancelled.cancel()
    loop.post(lambda: order.append("posted"))
    loop.run_once(lambda: order.append("work"))
    assert order == ["posted", "work"]
    clock.now = 5
    loop.run_once(lambda: order.append("work"))
    assert order == ["posted", "work", "work", "t5"]
    loop.close()


def test_loop_post_from_another_thread_wakes_it() -> None:
    loop = Loop()
    seen = threading.Event()
    threading.Timer(0.05, lambda: loop.post(seen.set)).start()
    loop.run_once(lambda: None)  # blocks (no timer) until the post arrives
    assert seen.is_set()
    loop.close()


def test_notifier_is_a_no_op_without_a_socket() -> None:
    notifier = Notifier({})
    assert not notifier.enabled
    assert notifier.notify("READY=1") is False
    assert notifier.watchdog_interval is None


def test_notifier_watchdog_interval_is_half_and_only_for_us() -> None:
    assert Notifier({"WATCHDOG_USEC": "4000000"}).watchdog_interval == 2.0
    pid = str(os.getpid())
    assert Notifier({"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": pid}).watchdog_interval == 2.0
    assert Notifier({"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": "1"}).watchdog_interval is None
    assert Notifier({"WATCHDOG_USEC": "0"}).watchdog_interval is None


# -- hook points, in process -------------------------------------------------------------------


class RecordingComponent:
    """A component as the probe scheduler and journal watch plug in (records the calls, in a
    list it may share with others)."""

    def __init__(self, name: str = "recorder", calls: list[object] | None = None) -> None:
        self.name = name
        self.calls: list[object] = [] if calls is None else calls

    def start(self) -> None:
        self.calls.append("start" if self.name == "recorder" else ("start", self.name))

    def reload(self, settings: Settings) -> None:
        self.calls.append("reload")

    def stop(self) -> None:
        self.calls.append("stop" if self.name == "recorder" else ("stop", self.name))

    def status(self) -> str | None:
        return f"{self.name} ok"

    def on_repair(self, path: str, report: FixReport) -> None:
        self.calls.append(("changed", path, report.written))


def daemon_settings(tmp_path: Path) -> tuple[Settings, Path]:
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    env = Environment(euid=1000, home=tmp_path, env={})
    settings = with_overrides(
        default_settings(env), docker_configs=(str(cfg),), state_dir=tmp_path / "state"
    )
    return settings, cfg / "config.json"


def run_briefly(daemon: Daemon, started: Callable[[], bool]) -> int:
    """Run ``daemon`` in this thread until ``started()``, then stop it as SIGTERM does."""

    def drive() -> None:
        deadline = time.monotonic() + 20
        while not started() and time.monotonic() < deadline:
            time.sleep(0.01)
        daemon.stop()

    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    driver = threading.Thread(target=drive)
    driver.start()
    try:
        return daemon.run()
    finally:
        driver.join()
        for signum, handler in saved.items():
            signal.signal(signum, handler)


def test_components_are_started_told_of_repairs_and_stopped(tmp_path: Path) -> None:
    settings, config = daemon_settings(tmp_path)
    component = RecordingComponent()
    daemon = build(settings, configure_output=False).daemon
    daemon.host(component)
    daemon.on_repair(component.name, component.on_repair)
    rechecked: list[list[FixReport]] = []

    def drive() -> None:
        deadline = time.monotonic() + 20
        while "start" not in component.calls and time.monotonic() < deadline:
            time.sleep(0.01)
        config.write_text('{"auths": {"docker.io": {"auth": "Y2k6cHc="}}}')
        while ("changed", str(config), True) not in component.calls:
            if time.monotonic() > deadline:
                break
            time.sleep(0.01)
        daemon.post(lambda: rechecked.append(daemon.recheck("docker.io")))
        while not rechecked and time.monotonic() < deadline:
            time.sleep(0.01)
        daemon.stop()

    driver = threading.Thread(target=drive)
    driver.start()
    assert daemon.run() == 0
    driver.join()
    assert component.calls[0] == "start"
    assert ("changed", str(config), True) in component.calls
    assert component.calls[-1] == "stop"
    assert "recorder ok" in daemon._status_line()
    ((report,),) = rechecked
    assert report.path == config and not report.written and report.error is None
    assert json.loads(config.read_text())["auths"].keys() == {HUB}


def test_components_stop_in_reverse_order_of_start(tmp_path: Path) -> None:
    settings, _ = daemon_settings(tmp_path)
    calls: list[object] = []
    daemon = build(settings, configure_output=False).daemon
    for name in ("probes", "journal"):
        daemon.host(RecordingComponent(name, calls))
    assert run_briefly(daemon, lambda: len(calls) == 2) == 0
    assert calls == [
        ("start", "probes"),
        ("start", "journal"),
        ("stop", "journal"),
        ("stop", "probes"),
    ]


class FailingStop(RecordingComponent):
    def stop(self) -> None:
        super().stop()
        raise RuntimeError("stuck")


def test_a_failing_stop_does_not_skip_the_others(tmp_path: Path) -> None:
    settings, _ = daemon_settings(tmp_path)
    calls: list[object] = []
    before = set(threading.enumerate())
    app = build(settings, configure_output=False)
    app.daemon.host(RecordingComponent("probes", calls))
    app.daemon.host(FailingStop("journal", calls))
    with capture_logs() as logs:
        assert run_briefly(app.daemon, lambda: len(calls) == 2) == 0
    assert calls[2:] == [("stop", "journal"), ("stop", "probes")]
    (failed,) = [e for e in logs if e["event"] == "daemon.component_stop_failed"]
    assert failed["component"] == "journal"
    # The watcher was stopped too: its threads end (a generous deadline, no fixed wait).
    deadline = time.monotonic() + 10
    while set(threading.enumerate()) - before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert set(threading.enumerate()) - before == set()


def test_disabled_probes_and_journal_build_nothing_beside_the_watcher(tmp_path: Path) -> None:
    settings, _ = daemon_settings(tmp_path)
    app = build(settings, configure_output=False)
    assert (app.probes, app.journal) == (None, None)
    # The expiry watch (on by default: no thread, no httpx), the activity summary's timer and
    # the status file only.
    assert [c.name for c in app.daemon.components] == ["expiry", "summary", "status"]
    assert app.expiry is not None
