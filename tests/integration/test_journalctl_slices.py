"""A one-shot scan on the journalctl backend splits the time range between journalctl processes
read side by side (issue 9): the slices meet without a gap or an overlap, also when several
entries carry exactly the microsecond a slice starts at, and the failures come out as one
journalctl reads them; journalctl's export format is parsed whole, binary fields included."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from regauthd.journal.backend import FollowOptions
from regauthd.journal.exportstream import split_entries
from regauthd.journal.journalctl import journalctl_query, matched_span, realtime_arg
from regauthd.journal.recognize import Recognizer, compile_patterns
from regauthd.journal.scan import scan
from tests.conftest import require_journal_backend
from tests.rigs.journald import to_export, write_journal

T0 = 1_796_304_247_000_000  # a realtime in microseconds
SINCE = datetime(2026, 1, 1, tzinfo=UTC)


def _failure(n: int) -> str:
    return (
        'level=error msg="Not continuing with push after error" error="unauthorized: '
        f'authentication required" repo=acme/api-{n}'
    )


@pytest.fixture
def stamped(tmp_path: Path) -> Path:
    """Two failures at every microsecond from T0 to T0 + 60, chatter between them: whatever
    the cut, entries sit exactly on it and just before it."""
    entries: list[dict[str, str]] = []
    for us in range(61):
        for copy in range(2):
            n = us * 2 + copy
            for message in (_failure(n), f'level=info msg="pulled layer {n}"'):
                entries.append(
                    {
                        "__REALTIME_TIMESTAMP": str(T0 + us),
                        "__MONOTONIC_TIMESTAMP": str(1_000_000 + len(entries)),
                        "MESSAGE": message,
                        "_SYSTEMD_UNIT": "docker.service",
                    }
                )
    directory = tmp_path / "journal"
    write_journal(directory, entries, boot_id="5bc8fbbcbde5c0994164d8399f767c45")
    return directory


def test_slices_meet_exactly_at_every_cut(stamped: Path) -> None:
    require_journal_backend("journalctl")
    options = FollowOptions(directory=stamped, backend="journalctl", units=("docker.service",))
    assert matched_span(journalctl_query(options), SINCE) == (T0, T0 + 60)
    whole = list(scan(options, since=SINCE, workers=1))
    assert [f.message.rsplit("-", 1)[1] for f in whole] == [str(n) for n in range(122)]
    for workers in (2, 3, 4, 7):
        assert list(scan(options, since=SINCE, workers=workers)) == whole, workers
    # unfiltered (extra patterns: no --grep), empty slices included, the same
    extra = Recognizer(compile_patterns([r"pulled layer (?P<repository>\d+)"]))
    unfiltered = FollowOptions(
        directory=stamped, backend="journalctl", units=("docker.service",), recognizer=extra
    )
    everything = list(scan(unfiltered, since=SINCE, workers=1))
    assert len(everything) == 244
    for workers in (2, 4, 90):
        assert list(scan(unfiltered, since=SINCE, workers=workers)) == everything, workers
    # the fields are those of the entry: time to the microsecond, unit, message
    assert whole[121].time == datetime.fromtimestamp((T0 + 60) / 1_000_000, UTC)
    assert {f.unit for f in whole} == {"docker.service"}
    # and the systemd-python backend finds the same
    require_journal_backend("systemd")
    systemd = FollowOptions(directory=stamped, backend="systemd", units=("docker.service",))
    assert list(scan(systemd, since=SINCE, workers=2)) == whole


def test_since_after_the_head_and_an_empty_range(stamped: Path) -> None:
    require_journal_backend("journalctl")
    options = FollowOptions(directory=stamped, backend="journalctl", units=("docker.service",))
    since = datetime.fromtimestamp((T0 + 30) / 1_000_000, UTC)
    query = journalctl_query(options)
    assert matched_span(query, since) == (T0 + 30, T0 + 60)
    found = list(scan(options, since=since, workers=2))
    assert [f.message.rsplit("-", 1)[1] for f in found] == [str(n) for n in range(60, 122)]
    later = datetime.fromtimestamp((T0 + 61) / 1_000_000, UTC)
    assert matched_span(query, later) is None
    assert list(scan(options, since=later, workers=2)) == []


def test_realtime_arg_is_exact() -> None:
    assert realtime_arg(T0 + 7) == "@1796304247.000007"
    assert realtime_arg(datetime(2026, 11, 30, 12, 3, 1, 999_999, tzinfo=UTC)) == (
        "@1796040181.999999"
    )


def test_export_entries_with_binary_fields_split_anywhere() -> None:
    entries = [
        {"MESSAGE": "plain = with equals", "_SYSTEMD_UNIT": "docker.service"},
        {"MESSAGE": b"two\nlines\n\nand a blank one", "CONTAINER_ID": "4f4fb700ef54"},
        {"MESSAGE": b"not utf-8 \xff\xfe=", "_SYSTEMD_UNIT": "docker.service"},
    ]
    data = to_export(entries, start=datetime(2026, 11, 30, tzinfo=UTC), boot_id="b" * 32)
    whole, used = split_entries(data)
    assert used == len(data)
    assert [e[b"MESSAGE"] for e in whole] == [
        b"plain = with equals",
        b"two\nlines\n\nand a blank one",
        b"not utf-8 \xff\xfe=",
    ]
    assert whole[1][b"CONTAINER_ID"] == b"4f4fb700ef54"
    # Fed in pieces cut at every byte, the carried-over tail gives the same entries.
    for cut in range(len(data) + 1):
        first, used = split_entries(data[:cut])
        rest, rest_used = split_entries(data[used:])
        assert first + rest == whole and used + rest_used == len(data), cut


def test_a_repeated_field_keeps_its_first_value() -> None:
    data = b"__CURSOR=c\nMESSAGE=first\nMESSAGE\n" + (5).to_bytes(8, "little") + b"secon\n\n"
    assert split_entries(data) == ([{b"__CURSOR": b"c", b"MESSAGE": b"first"}], len(data))
