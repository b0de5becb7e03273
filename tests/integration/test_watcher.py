"""The file-watch layer (``regauthd.service.watcher``): what every backend reports.

No mocks: each test makes real directories under ``tmp_path``, changes them the way Docker and
users do, and waits (bounded) on ``select(fileno())`` for what the watcher reports
(:mod:`tests.rigs.watching`). Each test runs on all three backends unless its behaviour is one
backend's; the polling backend polls every 50 ms. Backend specifics (overflow, the watch limit,
``auto``, threads) are in ``test_watcher_backends.py``.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from regauthd.service.watcher import Change, ChangeKind, Wants, Watcher, open_watcher
from tests.rigs.watching import collect, docker_save, has, only_config, settle

BACKENDS = ("inotify", "native", "polling")
POLL = 0.05
WRITTEN, APPEARED, REMOVED = ChangeKind.WRITTEN, ChangeKind.APPEARED, ChangeKind.REMOVED
DIR_GONE = ChangeKind.DIR_GONE

Opener = Callable[..., Watcher]


@pytest.fixture
def opened() -> Iterator[Opener]:
    """``opened(backend, wants=...)``: a watcher closed at the end of the test."""
    watchers: list[Watcher] = []

    def open_(backend: str, wants: Wants | None = None) -> Watcher:
        watcher = open_watcher(backend, wants=wants, poll_interval=POLL)
        watchers.append(watcher)
        return watcher

    yield open_
    for watcher in watchers:
        watcher.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_docker_save_is_written_config_and_wants_drops_the_temp_file(
    backend: str, opened: Opener, tmp_path: Path
) -> None:
    asked: list[tuple[str, str]] = []

    def wants(directory: str, name: str) -> bool:
        asked.append((directory, name))
        return only_config(directory, name)

    watcher = opened(backend, wants=wants)
    watcher.watch(str(tmp_path), contents=True)
    temps = [docker_save(tmp_path, b'{"auths": {}}')]
    seen = collect(watcher, has(WRITTEN, "config.json"))
    # Over an existing file (the usual `docker login`): a new inode under the same name.
    temps.append(docker_save(tmp_path, b'{"auths": {"docker.io": {}}}'))
    seen += collect(watcher, has(WRITTEN, "config.json"))

    assert all(c.name == "config.json" and c.directory == str(tmp_path) for c in seen), seen
    written = [c for c in seen if c.kind is WRITTEN]
    if backend == "inotify":
        # The two halves of each rename paired: the daemon tells its own saves by this name.
        assert [c.source for c in written] == temps, written
    else:
        assert Change(WRITTEN, str(tmp_path), "config.json", False) in seen
    assert Change(APPEARED, str(tmp_path), "config.json", False) in seen
    if backend != "polling":  # a poll never sees a temp file that lived between two polls
        assert {(str(tmp_path), t) for t in temps} <= set(asked)


def test_inotify_names_the_source_only_of_a_rename_within_the_directory(
    opened: Opener, tmp_path: Path
) -> None:
    """A file moved in from another watched directory (or from outside) has no source: the
    name it had elsewhere is not an entry of this directory."""
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    watcher = opened("inotify")
    watcher.watch(str(a), contents=True)
    watcher.watch(str(b), contents=True)
    (a / "config.json.tmp").write_bytes(b"{}")
    (a / "config.json.tmp").rename(b / "config.json")
    (tmp_path / "outside").write_bytes(b"{}")
    (tmp_path / "outside").rename(a / "config.json")
    seen = collect(
        watcher, lambda s: len([c for c in s if c.kind is WRITTEN and c.name == "config.json"]) == 2
    )
    written = [c for c in seen if c.kind is WRITTEN and c.name == "config.json"]
    assert written == [
        Change(WRITTEN, str(b), "config.json", False),
        Change(WRITTEN, str(a), "config.json", False),
    ]


@pytest.mark.parametrize("backend", BACKENDS)
def test_close_after_writing_in_place_is_written(
    backend: str, opened: Opener, tmp_path: Path
) -> None:
    config = tmp_path / "config.json"
    config.write_bytes(b"{}")
    watcher = opened(backend, wants=only_config)
    watcher.watch(str(tmp_path), contents=True)
    with open(config, "ab") as out:
        out.write(b"\n")
    seen = collect(watcher, has(WRITTEN, "config.json"))
    assert Change(WRITTEN, str(tmp_path), "config.json", False) in seen
    assert not any(c.kind is APPEARED for c in seen)


@pytest.mark.parametrize("backend", BACKENDS)
def test_wants_is_asked_for_files_only(backend: str, opened: Opener, tmp_path: Path) -> None:
    asked: list[str] = []

    def wants(directory: str, name: str) -> bool:
        asked.append(name)
        return False

    watcher = opened(backend, wants=wants)
    watcher.watch(str(tmp_path), contents=True)
    (tmp_path / "dropped").write_bytes(b"x")
    (tmp_path / ".docker").mkdir()
    seen = collect(watcher, has(APPEARED, ".docker"))
    seen += settle(watcher, 0.2)
    assert seen == [Change(APPEARED, str(tmp_path), ".docker", True)]
    assert "dropped" in asked
    assert ".docker" not in asked


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_home_watched_without_contents_ignores_writes_but_sees_docker_dir(
    backend: str, opened: Opener, tmp_path: Path
) -> None:
    history = tmp_path / ".bash_history"
    history.write_bytes(b"ls\n")
    watcher = opened(backend)
    watcher.watch(str(tmp_path), contents=False)
    with open(history, "ab") as out:
        out.write(b"docker login\n")
    (tmp_path / ".docker").mkdir()
    seen = collect(watcher, has(APPEARED, ".docker"))
    seen += settle(watcher, 0.2)
    assert seen == [Change(APPEARED, str(tmp_path), ".docker", True)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_entries_removed_and_moved_away(backend: str, opened: Opener, tmp_path: Path) -> None:
    watched = tmp_path / "watched"
    watched.mkdir()
    (watched / "config.json").write_bytes(b"{}")
    (watched / "sub").mkdir()
    watcher = opened(backend)
    watcher.watch(str(watched), contents=True)
    (watched / "config.json").unlink()
    (watched / "sub").rename(tmp_path / "elsewhere")
    seen = collect(watcher, lambda s: has(REMOVED, "config.json")(s) and has(REMOVED, "sub")(s))
    assert Change(REMOVED, str(watched), "config.json", False) in seen
    assert Change(REMOVED, str(watched), "sub", True) in seen


@pytest.mark.parametrize("backend", BACKENDS)
def test_deleting_the_watched_directory_is_dir_gone_once(
    backend: str, opened: Opener, tmp_path: Path
) -> None:
    docker = tmp_path / ".docker"
    docker.mkdir()
    (docker / "config.json").write_bytes(b"{}")
    watcher = opened(backend)
    watcher.watch(str(docker), contents=True)
    shutil.rmtree(docker)
    seen = collect(watcher, lambda s: any(c.kind is DIR_GONE for c in s))
    seen += settle(watcher, 0.3)
    assert [c for c in seen if c.kind is DIR_GONE] == [Change(DIR_GONE, str(docker), "", True)]
    watcher.unwatch(str(docker))  # forgotten already: a no-op

    docker.mkdir()  # it comes back (the next `docker login`): watch it again
    watcher.watch(str(docker), contents=True)
    docker_save(docker, b"{}")
    collect(watcher, has(WRITTEN, "config.json"))


@pytest.mark.parametrize("backend", ["inotify", "polling"])
def test_moving_the_watched_directory_away_is_dir_gone(
    backend: str, opened: Opener, tmp_path: Path
) -> None:
    # native is left out: watchdog does not ask inotify for IN_MOVE_SELF (see native.py).
    docker = tmp_path / ".docker"
    docker.mkdir()
    watcher = opened(backend)
    watcher.watch(str(docker), contents=True)
    docker.rename(tmp_path / "moved")
    seen = collect(watcher, lambda s: any(c.kind is DIR_GONE for c in s))
    (tmp_path / "moved" / "config.json").write_bytes(b"{}")  # no longer ours
    seen += settle(watcher, 0.3)
    assert seen == [Change(DIR_GONE, str(docker), "", True)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_watching_a_replaced_directory_again_follows_the_new_one(
    backend: str, opened: Opener, tmp_path: Path
) -> None:
    docker = tmp_path / ".docker"
    docker.mkdir()
    watcher = opened(backend)
    watcher.watch(str(docker), contents=True)
    docker.rmdir()
    docker.mkdir()
    watcher.watch(str(docker), contents=True)  # before reading the old one's end
    docker_save(docker, b"{}")
    seen = collect(watcher, has(WRITTEN, "config.json"))
    seen += settle(watcher, 0.3)
    # The path's watch is alive: no DIR_GONE for it (the old inode's end is not reported).
    assert not any(c.kind is DIR_GONE for c in seen), seen


@pytest.mark.parametrize("backend", BACKENDS)
def test_unwatch_stops_events_even_those_already_queued(
    backend: str, opened: Opener, tmp_path: Path
) -> None:
    kept, dropped = tmp_path / "kept", tmp_path / "dropped"
    kept.mkdir()
    dropped.mkdir()
    watcher = opened(backend)
    watcher.watch(str(kept), contents=True)
    watcher.watch(str(dropped), contents=True)
    docker_save(dropped, b"{}")
    time.sleep(3 * POLL)  # the events are queued (or polled) before the unwatch
    watcher.unwatch(str(dropped))
    docker_save(dropped, b'{"a": 1}')
    (dropped / "sub").mkdir()
    docker_save(kept, b"{}")
    seen = collect(watcher, has(WRITTEN, "config.json"))
    seen += settle(watcher, 0.3)
    assert {c.directory for c in seen} == {str(kept)}, seen


@pytest.mark.parametrize("backend", BACKENDS)
def test_watching_again_with_other_contents_updates_what_is_reported(
    backend: str, opened: Opener, tmp_path: Path
) -> None:
    config = tmp_path / "config.json"
    config.write_bytes(b"{}")
    watcher = opened(backend)
    watcher.watch(str(tmp_path), contents=False)
    config.write_bytes(b'{"a": 1}')
    assert settle(watcher) == []

    watcher.watch(str(tmp_path), contents=True)
    config.write_bytes(b'{"a": 22}')
    collect(watcher, has(WRITTEN, "config.json"))
    settle(watcher)

    watcher.watch(str(tmp_path), contents=False)
    config.write_bytes(b'{"a": 333}')
    (tmp_path / ".docker").mkdir()
    seen = collect(watcher, has(APPEARED, ".docker"))
    seen += settle(watcher)
    assert seen == [Change(APPEARED, str(tmp_path), ".docker", True)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_watch_refuses_what_is_not_a_directory(
    backend: str, opened: Opener, tmp_path: Path
) -> None:
    watcher = opened(backend)
    with pytest.raises(FileNotFoundError) as missing:
        watcher.watch(str(tmp_path / "missing"), contents=True)
    assert missing.value.filename == str(tmp_path / "missing")
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(NotADirectoryError):
        watcher.watch(str(tmp_path / "file"), contents=True)
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(NotADirectoryError):  # symlinks are not followed
        watcher.watch(str(tmp_path / "link"), contents=True)
