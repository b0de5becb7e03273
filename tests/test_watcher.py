"""The file-watch layer (``regauthd.service.watcher``) on the real file system, every backend.

No mocks: each test makes real directories under ``tmp_path``, changes them the way Docker and
users do, and waits (bounded) on ``select(fileno())`` for what the watcher reports. Behaviour
common to the backends is parametrized over all three; the polling backend runs at 50 ms.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from regauthd.service.watcher import (
    BackendUnavailableError,
    Change,
    ChangeKind,
    Wants,
    Watcher,
    open_watcher,
)
from regauthd.service.watcher import inotify as inotify_backend
from tests.conftest import unavailable

BACKENDS = ("inotify", "native", "polling")
POLL = 0.05
WRITTEN, APPEARED, REMOVED = ChangeKind.WRITTEN, ChangeKind.APPEARED, ChangeKind.REMOVED
DIR_GONE, OVERFLOW = ChangeKind.DIR_GONE, ChangeKind.OVERFLOW

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


def collect(
    watcher: Watcher, until: Callable[[list[Change]], bool], timeout: float = 5.0
) -> list[Change]:
    """Read until ``until(everything so far)`` holds; fail after ``timeout`` seconds."""
    seen: list[Change] = []
    deadline = time.monotonic() + timeout
    while not until(seen):
        left = deadline - time.monotonic()
        if left <= 0:
            pytest.fail(f"{watcher.backend}: gave up waiting; saw {seen}")
        ready, _, _ = select.select([watcher.fileno()], [], [], left)
        if ready:
            seen.extend(watcher.read())
    return seen


def settle(watcher: Watcher, seconds: float = 0.3) -> list[Change]:
    """Everything reported within ``seconds`` (for asserting that nothing is)."""
    seen: list[Change] = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([watcher.fileno()], [], [], left)
        if ready:
            seen.extend(watcher.read())
    return seen


def has(kind: ChangeKind, name: str) -> Callable[[list[Change]], bool]:
    return lambda seen: any(c.kind is kind and c.name == name for c in seen)


def docker_save(directory: Path, data: bytes, name: str = "config.json") -> str:
    """Save as the Docker CLI does: a temp file beside it (O_EXCL, 0600), renamed over it."""
    temp = directory / f"{name}{time.monotonic_ns() % 10**9}"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    os.rename(temp, directory / name)
    return temp.name


def only_config(directory: str, name: str) -> bool:
    return name == "config.json"


# -- common behaviour ---------------------------------------------------------------------------


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
    assert Change(WRITTEN, str(tmp_path), "config.json", False) in seen
    assert Change(APPEARED, str(tmp_path), "config.json", False) in seen
    if backend != "polling":  # a poll never sees a temp file that lived between two polls
        assert {(str(tmp_path), t) for t in temps} <= set(asked)


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


def test_unknown_backend_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="kqueue"):
        open_watcher("kqueue")


# -- inotify ------------------------------------------------------------------------------------


def test_two_paths_of_one_directory_share_one_watch_and_both_are_reported(
    opened: Opener, tmp_path: Path
) -> None:
    # A bind mount gives two paths to one inode; a symlinked parent does the same unprivileged.
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "alias").symlink_to(real)
    alias = os.path.join(tmp_path / "alias", ".")  # pathlib would drop the "."
    watcher = opened("inotify")
    watcher.watch(str(real), contents=True)
    watcher.watch(alias, contents=False)
    (real / "config.json").write_bytes(b"{}")
    seen = collect(watcher, has(WRITTEN, "config.json"))
    seen += settle(watcher, 0.1)
    assert seen == [
        Change(APPEARED, str(real), "config.json", False),
        Change(APPEARED, alias, "config.json", False),
        Change(WRITTEN, str(real), "config.json", False),
    ]

    watcher.unwatch(str(real))  # the alias still wants entries, and no longer contents
    (real / "config.json").write_bytes(b"{}")
    (real / "new").write_bytes(b"")
    seen = collect(watcher, has(APPEARED, "new"))
    seen += settle(watcher, 0.1)
    assert seen == [Change(APPEARED, alias, "new", False)]

    watcher.unwatch(alias)
    (real / "newer").write_bytes(b"")
    assert settle(watcher, 0.1) == []


def test_inotify_reports_a_queue_overflow_and_keeps_working(opened: Opener, tmp_path: Path) -> None:
    limit_file = Path("/proc/sys/fs/inotify/max_queued_events")
    limit = int(limit_file.read_text())
    if limit <= 200_000:
        # Overflow the real queue: a rename is two events; nothing is read meanwhile.
        watcher = opened("inotify")
    elif os.geteuid() == 0:
        # A huge queue: shrink it only while our instance is created (the size is read
        # then), so no other process's instance gets the small one for long.
        try:
            limit_file.write_text("64")
            watcher = opened("inotify")
        finally:
            limit_file.write_text(str(limit))
        limit = 64
    else:
        unavailable(f"max_queued_events is {limit}: too many events to overflow, needs root")
        return
    watcher.watch(str(tmp_path), contents=True)
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"")
    for _ in range(limit // 2 + 64):
        a.rename(b)
        b.rename(a)
    seen = collect(watcher, lambda s: any(c.kind is OVERFLOW for c in s))
    assert [c for c in seen if c.kind is OVERFLOW] == [Change(OVERFLOW, "", "", False)]
    settle(watcher, 0.1)
    docker_save(tmp_path, b"{}")
    collect(watcher, has(WRITTEN, "config.json"))


_LIMIT_SCRIPT = """
import json, sys
from pathlib import Path
from regauthd.service.watcher import WatchLimitError, open_watcher

Path("/proc/sys/user/max_inotify_watches").write_text("2")
root = Path(sys.argv[1])
result = {}
for backend in ("inotify", "native"):
    watcher = open_watcher(backend)
    try:
        for i in range(3):
            (root / backend / str(i)).mkdir(parents=True)
            watcher.watch(str(root / backend / str(i)), contents=True)
    except WatchLimitError as exc:
        result[backend] = {"directory": exc.directory, "message": str(exc), "errno": exc.errno}
    finally:
        watcher.close()
print(json.dumps(result))
"""


@pytest.mark.parametrize("backend", ["inotify", "native"])
def test_watch_limit_names_the_directory_and_the_sysctl(backend: str, tmp_path: Path) -> None:
    # The host's fs.inotify.max_user_watches counts every watch of every process of this user
    # (the other test suites on the machine too): lower the same limit in a private user
    # namespace instead, where only this subprocess is charged.
    unshare = shutil.which("unshare")
    if unshare is None:
        unavailable("unshare not found (Debian package: util-linux)")
        return
    proc = subprocess.run(
        [unshare, "--user", "--map-root-user", sys.executable, "-c", _LIMIT_SCRIPT, tmp_path],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if proc.returncode != 0 and "unshare failed" in proc.stderr:
        unavailable(f"no user namespaces here: {proc.stderr.strip()}")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)[backend]
    third = str(tmp_path / backend / "2")
    assert result["directory"] == third
    assert result["errno"] == 28
    assert third in result["message"]
    assert "user.max_inotify_watches (now 2)" in result["message"]  # the lower limit, named


def _dynamic_loader() -> str:
    """The running dynamic loader (glibc's ld-linux): loadable, without the inotify calls."""
    for line in Path("/proc/self/maps").read_text().splitlines():
        path = line.split(maxsplit=5)[-1]
        if os.path.basename(path).startswith("ld-linux"):
            return path
    pytest.skip("no glibc dynamic loader mapped (musl's loader is its C library)")
    raise AssertionError("unreachable")


@pytest.mark.parametrize("stand_in", ["loader", "missing"])
def test_auto_is_native_when_the_c_library_has_no_inotify(
    stand_in: str, opened: Opener, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("auto is native off Linux anyway")
    assert opened("auto").backend == "inotify"
    # inotify.LIBRARY names the library that provides the calls: a real library without them
    # (the dynamic loader has no dependencies to find them in), or one that is not there.
    library = _dynamic_loader() if stand_in == "loader" else str(tmp_path / "libc-none.so")
    monkeypatch.setattr(inotify_backend, "LIBRARY", library)
    with pytest.raises(BackendUnavailableError, match="no inotify"):
        opened("inotify")
    watcher = opened("auto")
    assert watcher.backend == "native"
    watcher.watch(str(tmp_path), contents=True)
    docker_save(tmp_path, b"{}")
    collect(watcher, has(WRITTEN, "config.json"))


def _os_threads() -> int:
    return len(os.listdir("/proc/self/task"))


def test_inotify_watches_two_thousand_directories_with_no_thread(
    opened: Opener, tmp_path: Path
) -> None:
    homes = [tmp_path / f"home{i}" for i in range(2000)]
    for home in homes:
        home.mkdir()
    python_threads, os_threads = threading.active_count(), _os_threads()
    watcher = opened("inotify")
    for home in homes:
        watcher.watch(str(home), contents=False)
    (homes[1234] / ".docker").mkdir()
    seen = collect(watcher, has(APPEARED, ".docker"))
    assert seen == [Change(APPEARED, str(homes[1234]), ".docker", True)]
    assert (threading.active_count(), _os_threads()) == (python_threads, os_threads)


# -- polling ------------------------------------------------------------------------------------


def test_polling_is_one_thread_and_stops_promptly(tmp_path: Path) -> None:
    before = threading.active_count()
    watcher = open_watcher("polling", poll_interval=30.0)
    try:
        for i in range(50):
            (tmp_path / str(i)).mkdir()
            watcher.watch(str(tmp_path / str(i)), contents=True)
        assert threading.active_count() == before + 1
    finally:
        started = time.monotonic()
        watcher.close()
    assert time.monotonic() - started < 1.0
    assert threading.active_count() == before


def test_importing_the_layer_imports_no_watchdog() -> None:
    code = (
        "import sys, regauthd.service.watcher as w;"
        "w.open_watcher('polling').close();"
        "w.open_watcher('inotify').close() if sys.platform.startswith('linux') else None;"
        "print('watchdog' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "False"
