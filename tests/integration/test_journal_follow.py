"""Follow mode against a real systemd-journald in a private mount namespace.

Entries are sent by processes placed in a ``docker.service`` cgroup, so journald itself stamps
``_SYSTEMD_UNIT=docker.service``, as it does for dockerd. No sleeps: every wait ends on a sentinel
failure sent last; entries are read in order, so once it arrived everything before it was seen.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from regauthd.journal.backend import FollowOptions
from regauthd.journal.cursor import CURSOR_FILE
from regauthd.journal.follow import follow, open_follower
from regauthd.journal.recognize import AuthFailure
from tests.conftest import require_program, unavailable
from tests.rigs.journald import JournaldNamespace

pytestmark = pytest.mark.integration


def _failure(n: int) -> dict[str, str]:
    return {
        "SYSLOG_IDENTIFIER": "dockerd",
        "MESSAGE": f'level=error msg="Not continuing with push after error" '
        f'error="unauthorized: authentication required" n={n}',
    }


LOOKALIKES = [
    {"SYSLOG_IDENTIFIER": "dockerd", "MESSAGE": 'level=info msg="API listen on /run/docker.sock"'},
    {
        "SYSLOG_IDENTIFIER": "dockerd",
        "MESSAGE": 'level=error msg="Handler for POST /v1.43/containers/create returned error: '
        'mkdir /var/lib/docker/x: permission denied"',
    },
]
CONTAINER_OUTPUT = {
    "SYSLOG_IDENTIFIER": "3f2a9c1b7d1e",
    "CONTAINER_ID": "3f2a9c1b7d1e",
    "CONTAINER_NAME": "api",
    "MESSAGE": "unauthorized: authentication required n=900",
}


def _numbers(failures: list[AuthFailure]) -> list[int]:
    return [int(f.message.rsplit("n=", 1)[1]) for f in failures]


@pytest.fixture(params=["systemd", "journalctl"])
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "systemd":
        try:
            import systemd.journal  # noqa: F401
        except ImportError:
            unavailable("systemd-python not installed (pip install '.[journald]')")
    require_program("journalctl", "systemd")
    return str(request.param)


@pytest.fixture
def ns(tmp_path: Path) -> Iterator[JournaldNamespace]:
    with JournaldNamespace(tmp_path) as journald:
        yield journald


class Following:
    """A follower running in a thread, as the daemon runs it; failures collected in order."""

    def __init__(self, options: FollowOptions, state: Path) -> None:
        self.follower = open_follower(options, state)
        self.got: list[AuthFailure] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            follow(self.follower, self._collect, self._stop)
        except BaseException as exc:
            self.error = exc
            raise

    def _collect(self, failure: AuthFailure) -> None:
        with self._lock:
            self.got.append(failure)

    def until(self, sentinel: int, timeout: float = 20.0) -> list[int]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                numbers = _numbers(self.got)
            if sentinel in numbers:
                return numbers
            if self.error is not None:
                raise AssertionError(f"the follower failed: {self.error!r}; got {numbers}")
            time.sleep(0.02)
        raise AssertionError(f"sentinel {sentinel} never arrived; got {numbers}")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        assert not self._thread.is_alive()
        self.follower.close()


@contextmanager
def following(options: FollowOptions, state: Path) -> Iterator[Following]:
    f = Following(options, state)
    try:
        yield f
    finally:
        f.stop()


def test_entries_sent_while_following_are_reported_once_and_restart_resumes(
    backend: str, ns: JournaldNamespace, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    options = FollowOptions(directory=ns.journal_dir, backend=backend, save_interval=0)
    with following(options, state) as f:
        ns.send_many([_failure(0), *LOOKALIKES, _failure(1)], unit="docker.service")
        ns.send_many([CONTAINER_OUTPUT], unit="docker.service")
        ns.send_many([_failure(800)], unit="nginx.service")  # not a followed unit
        ns.send_many([_failure(2), _failure(3), _failure(99)], unit="docker.service")
        assert f.until(99) == [0, 1, 2, 3, 99]
        assert {x.unit for x in f.got} == {"docker.service"}
    assert (state / CURSOR_FILE).read_text().startswith("s=")

    # Logged while regauthd was stopped: read after the restart, and nothing twice.
    ns.send_many([_failure(n) for n in range(4, 9)], unit="docker.service")
    with following(options, state) as f:
        ns.send_many([_failure(100)], unit="docker.service")
        assert f.until(100) == [4, 5, 6, 7, 8, 100]


def test_rotation_and_vacuum_while_following(
    backend: str, ns: JournaldNamespace, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    options = FollowOptions(directory=ns.journal_dir, backend=backend, save_interval=0)
    with following(options, state) as f:
        ns.send_many([_failure(n) for n in range(0, 3)], unit="docker.service")
        ns.rotate()
        ns.send_many([_failure(n) for n in range(3, 6)], unit="docker.service")
        assert f.until(5) == [0, 1, 2, 3, 4, 5]
        ns.rotate()
        vacuum = subprocess.run(
            ["journalctl", f"--directory={ns.journal_dir}", "--vacuum-files=1"],
            capture_output=True,
            check=False,
        )
        assert vacuum.returncode == 0, vacuum.stderr
        assert len(list(ns.journal_dir.glob("*.journal"))) == 1
        ns.send_many([_failure(n) for n in range(6, 9)], unit="docker.service")
        assert f.until(8) == list(range(9))
    # Resume after the archived files (and the cursor's own file) were vacuumed.
    ns.rotate()
    for archived in ns.journal_dir.glob("system@*.journal"):
        archived.unlink()
    ns.send_many([_failure(9)], unit="docker.service")
    with following(options, state) as f:
        ns.send_many([_failure(10)], unit="docker.service")
        assert f.until(10) == [9, 10]


def test_burst_keeps_moving_the_cursor(ns: JournaldNamespace, tmp_path: Path) -> None:
    try:
        import systemd.journal  # noqa: F401
    except ImportError:
        unavailable("systemd-python not installed (pip install '.[journald]')")
    state = tmp_path / "state"
    options = FollowOptions(directory=ns.journal_dir, batch=50, save_interval=0)
    ns.send_many([_failure(n) for n in range(300)], unit="docker.service")
    follower = open_follower(options, state)
    try:
        cursors = set()
        total = 0
        while True:
            total += len(follower.process())
            if (state / CURSOR_FILE).exists():
                cursors.add((state / CURSOR_FILE).read_text())
            if follower.timeout() != 0.0:
                break
        follower.process()
    finally:
        follower.close()
    assert total == 300
    assert len(cursors) >= 5  # written again and again during the burst, not only at the end


def test_rig_runs_a_program_as_a_service_would_run(ns: JournaldNamespace) -> None:
    """For the alert tests: stdout/stderr to journald, JOURNAL_STREAM naming stderr, the unit."""
    code = (
        "import os, sys; st = os.fstat(2); "
        "print('stream', os.environ['JOURNAL_STREAM'], flush=True); "
        "print('stderr', f'{st.st_dev}:{st.st_ino}', file=sys.stderr, flush=True)"
    )
    ns.run([sys.executable, "-c", code], unit="regauthd.service", stream="regauthd")
    lines = ns.wait_for(count=2, SYSLOG_IDENTIFIER="regauthd")
    assert {e["_SYSTEMD_UNIT"] for e in lines} == {"regauthd.service"}
    said = dict(e["MESSAGE"].split(" ", 1) for e in lines)
    assert said["stream"] == said["stderr"]
