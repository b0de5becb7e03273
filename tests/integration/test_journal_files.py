"""The journal follower over real journal files written by systemd-journal-remote.

Both journald backends (systemd-python and the journalctl subprocess) run the same scenarios:
the fixture files, cursor resume with no duplicates and no gaps, the maximum age, a vacuumed
cursor entry, long bursts, and the atomic cursor file.
"""

from __future__ import annotations

import json
import select
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from regauthd.journal.backend import FollowOptions, JournalError
from regauthd.journal.cursor import CURSOR_FILE, cursor_realtime, start_point
from regauthd.journal.follow import open_follower
from regauthd.journal.journalctl import JournalctlFollower
from regauthd.journal.recognize import AuthFailure
from regauthd.journal.scan import scan
from regauthd.journal.systemd import SystemdFollower
from tests.conftest import require_journal_backend, require_program, unavailable
from tests.rigs.journald import read_export, write_export, write_journal

FIXTURES = Path(__file__).parents[1] / "fixtures" / "journal"
FIXTURE_TIME = datetime(2026, 11, 30, 12, 30, tzinfo=UTC)
ALL_UNITS = ("docker.service", "containerd.service", "gitlab-runner.service", "actions.runner.*")
BOOT = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"


@pytest.fixture(params=["systemd", "journalctl"])
def backend(request: pytest.FixtureRequest) -> str:
    return require_journal_backend(str(request.param))


@pytest.fixture
def fixture_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "journal"
    for export in sorted(FIXTURES.glob("*.export")):
        write_export(directory, export.read_bytes(), name=export.stem)
    return directory


def _expected(units: tuple[str, ...]) -> list[tuple[str, str, str | None, str | None]]:
    """(time, kind, registry, repository) of every fixture failure a unit filter lets through."""
    rows = []
    for export in sorted(FIXTURES.glob("*.export")):
        for entry in read_export(export.read_bytes()):
            expect = json.loads(entry["TEST_EXPECT"])
            unit = entry["_SYSTEMD_UNIT"].decode()
            followed = unit in units or (
                "actions.runner.*" in units and unit.startswith("actions.runner.")
            )
            if expect is None or not followed or "CONTAINER_ID" in entry:
                continue
            when = datetime.fromtimestamp(int(entry["__REALTIME_TIMESTAMP"]) / 1e6, UTC)
            rows.append(
                (when.isoformat(), expect["kind"], expect["registry"], expect["repository"])
            )
    return sorted(rows)


def _rows(failures: list[AuthFailure]) -> list[tuple[str, str, str | None, str | None]]:
    return sorted((f.time.isoformat(), f.kind.value, f.registry, f.repository) for f in failures)


def test_scan_finds_exactly_the_fixture_failures(backend: str, fixture_dir: Path) -> None:
    options = FollowOptions(directory=fixture_dir, backend=backend, units=ALL_UNITS)
    found = list(scan(options, since=datetime(2026, 1, 1, tzinfo=UTC)))
    assert _rows(found) == _expected(ALL_UNITS)
    assert len(found) == 22
    units = {f.unit for f in found}
    assert units == {
        "docker.service",
        "containerd.service",
        "gitlab-runner.service",
        "actions.runner.acme-api.runner-1.service",
    }


def test_default_units_leave_runners_noise_and_container_output_out(
    backend: str, fixture_dir: Path
) -> None:
    options = FollowOptions(directory=fixture_dir, backend=backend)
    found = list(scan(options, since=datetime(2026, 1, 1, tzinfo=UTC)))
    assert _rows(found) == _expected(("docker.service", "containerd.service"))
    # The container's own output (CONTAINER_ID) said "unauthorized" at 12:08:00: not reported.
    assert all(f.time != datetime(2026, 11, 30, 12, 8, tzinfo=UTC) for f in found)


def test_binary_multiline_message_is_read(backend: str, fixture_dir: Path) -> None:
    options = FollowOptions(files=(fixture_dir / "dockerd.journal",), backend=backend)
    found = list(scan(options, since=datetime(2026, 1, 1, tzinfo=UTC)))
    multiline = [f for f in found if "\n" in f.message]
    assert len(multiline) == 1
    assert multiline[0].kind.value == "denied"


def test_since_limits_the_scan(backend: str, fixture_dir: Path) -> None:
    options = FollowOptions(directory=fixture_dir, backend=backend)
    since = datetime(2026, 11, 30, 12, 4, 30, tzinfo=UTC)  # containerd: 12:04:40-47
    found = list(scan(options, since=since))
    assert found
    assert all(f.time >= since for f in found)
    assert {f.unit for f in found} == {"containerd.service"}


# --- following with a cursor --------------------------------------------------------------------
def _failure_line(n: int) -> dict[str, str]:
    return {
        "_SYSTEMD_UNIT": "docker.service",
        "SYSLOG_IDENTIFIER": "dockerd",
        "MESSAGE": f'level=error msg="Not continuing with push after error" '
        f'error="unauthorized: authentication required" n={n}',
    }


def _chatter(n: int) -> dict[str, str]:
    return {"_SYSTEMD_UNIT": "docker.service", "MESSAGE": f'level=info msg="chatter {n}"'}


def _append(directory: Path, numbers: range, start: datetime) -> None:
    entries: list[dict[str, str]] = []
    for n in numbers:
        entries += [_chatter(n), _failure_line(n)]
    # Timestamps continue from `start`, one millisecond per line number, in the same boot.
    write_journal(
        directory, entries, start=start + timedelta(milliseconds=numbers.start * 2), boot_id=BOOT
    )


def _numbers(failures: list[AuthFailure]) -> list[int]:
    return [int(f.message.rsplit("n=", 1)[1]) for f in failures]


def _open(backend: str, directory: Path, state: Path, now: datetime, **kw: object) -> object:
    options = FollowOptions(directory=directory, backend=backend, save_interval=0, **kw)  # type: ignore[arg-type]
    return open_follower(options, state, now=now)


def _read_then_close(
    backend: str,
    directory: Path,
    state: Path,
    now: datetime,
    *,
    want: int,
    timeout: float = 10.0,
    **options: object,
) -> list[AuthFailure]:
    """Open a follower, :func:`_drain` it, close it (which saves the cursor)."""
    follower = _open(backend, directory, state, now, **options)
    try:
        return _drain(follower, want=want, timeout=timeout)
    finally:
        follower.close()  # type: ignore[attr-defined]


def _drain(follower: object, *, want: int, timeout: float = 10.0) -> list[AuthFailure]:
    """Process until `want` failures arrived or `timeout` passed with nothing more."""
    got: list[AuthFailure] = []
    while True:
        fd = follower.fileno()  # type: ignore[attr-defined]
        wait = follower.timeout()  # type: ignore[attr-defined]
        if len(got) >= want:
            wait = 0.3 if wait is None else min(wait, 0.3)  # a grace period for extra (wrong) ones
        else:
            wait = timeout if wait is None else min(wait, timeout)
        ready, _, _ = select.select([fd], [], [], wait)
        new = follower.process()  # type: ignore[attr-defined]
        got += new
        if not ready and not new and len(got) >= want:
            return got
        if not ready and not new and wait == timeout:
            return got


def test_follow_resume_no_duplicates_no_gaps(backend: str, tmp_path: Path) -> None:
    directory, state = tmp_path / "j", tmp_path / "state"
    start = datetime.now(UTC) - timedelta(minutes=5)
    now = datetime.now(UTC)
    _append(directory, range(0, 10), start)

    first = _open(backend, directory, state, now)
    try:
        assert _numbers(_drain(first, want=10)) == list(range(10))
        _append(directory, range(10, 15), start)  # appended while following
        assert _numbers(_drain(first, want=5)) == list(range(10, 15))
    finally:
        first.close()  # type: ignore[attr-defined]
    saved = (state / CURSOR_FILE).read_text().strip()
    assert saved.startswith("s=")
    assert not [p for p in state.iterdir() if p.name != CURSOR_FILE]  # no temp files left

    _append(directory, range(15, 20), start)  # while stopped
    assert _numbers(_read_then_close(backend, directory, state, now, want=5)) == list(range(15, 20))

    # Nothing new: nothing reported again.
    assert _read_then_close(backend, directory, state, now, want=0, timeout=0.5) == []


def test_never_further_back_than_max_age(backend: str, tmp_path: Path) -> None:
    directory, state = tmp_path / "j", tmp_path / "state"
    now = datetime.now(UTC)
    _append(directory, range(0, 5), now - timedelta(hours=3))
    _append(directory, range(5, 8), now - timedelta(minutes=10))
    hour = timedelta(hours=1)
    # No cursor: starts max_age ago.
    first = _read_then_close(backend, directory, state, now, max_age=hour, want=3)
    assert _numbers(first) == [5, 6, 7]
    # A cursor older than max_age is not used either.
    later = now + timedelta(hours=2)
    again = _read_then_close(backend, directory, state, later, max_age=hour, want=0, timeout=0.5)
    assert again == []


def test_cursor_of_a_vacuumed_entry_resumes_at_the_next_one(backend: str, tmp_path: Path) -> None:
    directory, state = tmp_path / "j", tmp_path / "state"
    now = datetime.now(UTC)
    start = now - timedelta(minutes=5)
    _append(directory, range(0, 3), start)
    assert _numbers(_read_then_close(backend, directory, state, now, want=3)) == [0, 1, 2]
    # The file holding the cursor entry is vacuumed; a new file holds newer entries.
    (directory / "system.journal").unlink()
    _append(directory, range(3, 6), start)
    assert _numbers(_read_then_close(backend, directory, state, now, want=3)) == [3, 4, 5]


def test_long_burst_is_read_in_batches_and_the_cursor_moves(tmp_path: Path) -> None:
    require_program("systemd-journal-remote", "systemd-journal-remote")
    directory, state = tmp_path / "j", tmp_path / "state"
    now = datetime.now(UTC)
    _append(directory, range(0, 500), now - timedelta(minutes=5))
    options = FollowOptions(directory=directory, batch=100, save_interval=0)
    follower = SystemdFollower(options, state, now=now)
    try:
        first = follower.process()
        assert len(first) == 50  # 100 entries: 50 chatter + 50 failures
        assert follower.timeout() == 0.0  # more is waiting
        assert not (state / CURSOR_FILE).exists()  # saved only once the failures were handed out
        follower.process()
        mid = (state / CURSOR_FILE).read_text().strip()
        while follower.timeout() == 0.0:
            follower.process()
        follower.process()
        assert (state / CURSOR_FILE).read_text().strip() != mid
    finally:
        follower.close()


def test_unit_globs_expand_against_the_journal(backend: str, fixture_dir: Path) -> None:
    options = FollowOptions(
        directory=fixture_dir, backend=backend, units=("actions.runner.*", "nothing.*")
    )
    found = list(scan(options, since=datetime(2026, 1, 1, tzinfo=UTC)))
    assert {f.unit for f in found} == {"actions.runner.acme-api.runner-1.service"}
    assert len(found) == 2
    none = FollowOptions(directory=fixture_dir, backend=backend, units=("nothing.*",))
    assert list(scan(none, since=datetime(2026, 1, 1, tzinfo=UTC))) == []


# --- pure parts ----------------------------------------------------------------------------------
def test_cursor_realtime_and_start_point() -> None:
    cursor = "s=ab;i=1;b=cd;m=3e8;t=60a24181e4000;x=ef"
    when = cursor_realtime(cursor)
    assert when == datetime.fromtimestamp(0x60A24181E4000 / 1e6, UTC)
    assert cursor_realtime("s=ab;i=1") is None
    assert cursor_realtime("t=zz") is None
    hour = timedelta(hours=1)
    assert start_point(cursor, when + timedelta(minutes=5), hour) == (
        cursor,
        when + timedelta(minutes=5) - hour,
    )
    assert start_point(cursor, when + 2 * hour, hour) == (None, when + hour)
    assert start_point(None, when, hour) == (None, when - hour)


def test_errors_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(JournalError, match="use auto, systemd, journalctl, files"):
        open_follower(FollowOptions(backend="carrier-pigeon"), tmp_path)
    with pytest.raises(JournalError, match="no log files configured"):
        open_follower(FollowOptions(backend="files"), tmp_path)


def test_journalctl_failure_is_reported(tmp_path: Path) -> None:
    require_program("journalctl", "systemd")
    bogus = tmp_path / "not-a-journal.journal"
    bogus.write_bytes(b"garbage" * 100)
    options = FollowOptions(files=(bogus,), backend="journalctl")
    follower = JournalctlFollower(
        options, None, since=datetime(2026, 1, 1, tzinfo=UTC), follow=False
    )

    def run() -> Iterator[AuthFailure]:
        while not follower.finished:
            select.select([follower.fileno()], [], [], 5)
            yield from follower.process()

    try:
        with pytest.raises(JournalError, match="journalctl exited with status"):
            list(run())
    finally:
        follower.close()


def test_parallel_scan_finds_the_same_in_the_same_order(fixture_dir: Path) -> None:
    try:
        import systemd.journal  # noqa: F401
    except ImportError:
        unavailable("systemd-python not installed (pip install '.[journald]')")
    options = FollowOptions(directory=fixture_dir, units=ALL_UNITS)
    since = datetime(2026, 1, 1, tzinfo=UTC)
    one = [f.as_dict() for f in scan(options, since=since)]
    for workers in (2, 3, 8):
        assert [f.as_dict() for f in scan(options, since=since, workers=workers)] == one
    assert list(scan(options, since=datetime(2027, 1, 1, tzinfo=UTC), workers=2)) == []


def test_bench_smoke(tmp_path: Path) -> None:
    require_program("systemd-journal-remote", "systemd-journal-remote")
    require_program("journalctl", "systemd")
    bench = Path(__file__).parents[2] / "bench" / "journal.py"
    done = subprocess.run(
        [
            sys.executable,
            str(bench),
            "--quick",
            "--results",
            str(tmp_path),
            "--cache",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads((tmp_path / "journal-latest.json").read_text())
    found = {name: r["failures_found"] for name, r in result["results"].items()}
    assert set(found.values()) == {result["failures"]}


def test_entries_of_an_earlier_boot_after_the_cursor_are_read(backend: str, tmp_path: Path) -> None:
    """After a reboot the journal holds two boots; `journalctl --follow` alone shows the last."""
    directory, state = tmp_path / "j", tmp_path / "state"
    now = datetime.now(UTC)
    write_journal(
        directory,
        [_failure_line(0), _failure_line(1)],
        start=now - timedelta(minutes=20),
        boot_id="a" * 32,
    )
    assert _numbers(_read_then_close(backend, directory, state, now, want=2)) == [0, 1]
    write_journal(
        directory, [_failure_line(2)], start=now - timedelta(minutes=15), boot_id="a" * 32
    )
    write_journal(directory, [_failure_line(3)], start=now - timedelta(minutes=5), boot_id="b" * 32)
    assert _numbers(_read_then_close(backend, directory, state, now, want=2)) == [2, 3]
