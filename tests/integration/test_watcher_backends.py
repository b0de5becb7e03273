"""The watch backends' own promises: inotify's overflow, watch limit, shared inodes and zero
threads; ``auto`` falling back to native; polling's one thread; no watchdog on import.

Real file system, real kernel limits (lowered in a private user namespace, not on the host),
real subprocesses; see ``test_watcher.py`` for what every backend reports.
"""

from __future__ import annotations

import json
import os
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
from tests.rigs.watching import collect, docker_save, has, settle

WRITTEN, APPEARED, OVERFLOW = ChangeKind.WRITTEN, ChangeKind.APPEARED, ChangeKind.OVERFLOW

Opener = Callable[..., Watcher]


@pytest.fixture
def opened() -> Iterator[Opener]:
    """``opened(backend, wants=...)``: a watcher closed at the end of the test."""
    watchers: list[Watcher] = []

    def open_(backend: str, wants: Wants | None = None) -> Watcher:
        watcher = open_watcher(backend, wants=wants)
        watchers.append(watcher)
        return watcher

    yield open_
    for watcher in watchers:
        watcher.close()


def test_unknown_backend_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="kqueue"):
        open_watcher("kqueue")


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


def _threads() -> tuple[set[int], set[str]]:
    """Python threads and the process's OS threads (watchdog's or ctypes' would show there)."""
    return {t.ident or 0 for t in threading.enumerate()}, set(os.listdir("/proc/self/task"))


def test_inotify_watches_two_thousand_directories_with_no_thread(
    opened: Opener, tmp_path: Path
) -> None:
    homes = [tmp_path / f"home{i}" for i in range(2000)]
    for home in homes:
        home.mkdir()
    python_before, os_before = _threads()
    watcher = opened("inotify")
    for home in homes:
        watcher.watch(str(home), contents=False)
    (homes[1234] / ".docker").mkdir()
    seen = collect(watcher, has(APPEARED, ".docker"))
    assert seen == [Change(APPEARED, str(homes[1234]), ".docker", True)]
    python_after, os_after = _threads()
    assert python_after - python_before == set()
    assert os_after - os_before == set()


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
