"""The file-tail fallback (no journald: macOS, no systemd): rotation, truncation, resume."""

from __future__ import annotations

import os
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from regauthd.journal.backend import FollowOptions, JournalError
from regauthd.journal.follow import follow, open_follower
from regauthd.journal.logfiles import LOGTAIL_FILE, LogFileFollower
from regauthd.journal.recognize import AuthFailure
from regauthd.journal.scan import scan

NOW = datetime.now(UTC)


def _syslog(n: int, when: datetime = NOW, text: str | None = None) -> str:
    local = when.astimezone()  # syslog writes local time, the day padded with a space
    stamp = f"{local:%b} {local.day:2d} {local:%H:%M:%S}"
    message = text or (
        'level=error msg="Not continuing with push after error" '
        f'error="unauthorized: authentication required" n={n}'
    )
    return f"{stamp} build-7 dockerd[812]: {message}\n"


def _numbers(failures: list[AuthFailure]) -> list[int]:
    return [int(f.message.rsplit("n=", 1)[1]) for f in failures]


def _append(path: Path, text: str) -> None:
    with path.open("a", encoding="utf-8") as f:
        f.write(text)


@pytest.fixture
def log(tmp_path: Path) -> Path:
    path = tmp_path / "messages"
    path.write_text("")
    return path


def _follower(log: Path, state: Path | None, **kw: object) -> LogFileFollower:
    return LogFileFollower(FollowOptions(log_files=(log,), backend="files", **kw), state)  # type: ignore[arg-type]


def test_appended_lines_and_partial_lines(log: Path, tmp_path: Path) -> None:
    f = _follower(log, tmp_path / "state")
    try:
        _append(log, _syslog(1) + _syslog(0, text='level=info msg="API listen"') + _syslog(2))
        found = f.process()
        assert _numbers(found) == [1, 2]
        assert {x.unit for x in found} == {"dockerd"}
        line = _syslog(3)
        _append(log, line[:30])  # the writer has not finished the line yet
        assert f.process() == []
        _append(log, line[30:])
        assert _numbers(f.process()) == [3]
        assert f.process() == []
    finally:
        f.close()


def test_rotation_reads_the_rest_of_the_old_file_then_the_new_one(
    log: Path, tmp_path: Path
) -> None:
    f = _follower(log, tmp_path / "state")
    try:
        _append(log, _syslog(1))
        assert _numbers(f.process()) == [1]
        _append(log, _syslog(2))
        log.rename(log.with_name("messages.1"))  # logrotate's default: rename, then create
        _append(log.with_name("messages.1"), _syslog(3))  # the writer still has the old file
        assert _numbers(f.process()) == [2, 3]  # not switched yet: nothing at the path
        _append(log, _syslog(4))
        assert _numbers(f.process()) == [4]
        _append(log, _syslog(5))
        assert _numbers(f.process()) == [5]
    finally:
        f.close()


def test_truncation_starts_over(log: Path, tmp_path: Path) -> None:
    f = _follower(log, tmp_path / "state")
    try:
        _append(log, _syslog(1) + _syslog(2))
        assert _numbers(f.process()) == [1, 2]
        with log.open("r+") as handle:  # copytruncate
            handle.truncate(0)
        _append(log, _syslog(3))
        assert _numbers(f.process()) == [3]
    finally:
        f.close()


def test_restart_resumes_where_it_stopped(log: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    f = _follower(log, state)
    _append(log, _syslog(1))
    assert _numbers(f.process()) == [1]
    f.close()
    assert (state / LOGTAIL_FILE).exists()
    assert [p.name for p in state.iterdir()] == [LOGTAIL_FILE]  # no temp files left

    _append(log, _syslog(2))
    f = _follower(log, state)
    try:
        assert _numbers(f.process()) == [2]
    finally:
        f.close()

    # Rotated while stopped: the new file is read from its start.
    os.replace(log, log.with_name("messages.1"))
    _append(log, _syslog(3))
    f = _follower(log, state)
    try:
        assert _numbers(f.process()) == [3]
    finally:
        f.close()


def test_old_lines_are_not_reported(log: Path, tmp_path: Path) -> None:
    _append(log, _syslog(1, NOW - timedelta(hours=5)) + _syslog(2, NOW - timedelta(minutes=5)))
    f = _follower(log, tmp_path / "state", max_age=timedelta(hours=1))
    try:
        assert _numbers(f.process()) == [2]
    finally:
        f.close()


def test_docker_desktop_log_and_scan(tmp_path: Path) -> None:
    log = tmp_path / "dockerd.log"
    stamp = NOW.strftime("%Y-%m-%dT%H:%M:%S.123456789Z")
    log.write_text(
        f'[{stamp}][dockerd][I] time="{stamp}" level=error msg="Not continuing with pull after '
        'error: toomanyrequests: You have reached your pull rate limit." n=7\n'
        f'[{stamp}][dockerd][I] time="{stamp}" level=info msg="API listen on /run/docker.sock"\n'
    )
    found = list(scan(FollowOptions(log_files=(log,)), since=NOW - timedelta(minutes=1)))
    assert [(x.kind.value, x.unit, x.operation) for x in found] == [
        ("rate_limited", "dockerd", "pull")
    ]
    with pytest.raises(JournalError, match="not found"):
        list(scan(FollowOptions(log_files=(tmp_path / "nope",))))


def test_missing_file_appears_later(tmp_path: Path) -> None:
    log = tmp_path / "later.log"
    f = _follower(log, None)
    try:
        assert f.process() == []
        _append(log, _syslog(1))
        assert _numbers(f.process()) == [1]
    finally:
        f.close()


def test_follow_loop_without_a_descriptor(log: Path, tmp_path: Path) -> None:
    follower = open_follower(
        FollowOptions(log_files=(log,), backend="files", poll_interval=0.01), tmp_path / "state"
    )
    got: list[AuthFailure] = []
    arrived = threading.Event()

    def collect(failure: AuthFailure) -> None:
        got.append(failure)
        arrived.set()

    stop = threading.Event()
    thread = threading.Thread(target=follow, args=(follower, collect, stop))
    thread.start()
    try:
        _append(log, _syslog(1))
        assert arrived.wait(10)
    finally:
        stop.set()
        thread.join(10)
        follower.close()
    assert _numbers(got) == [1]
