"""``regauthd scan-journal`` over real journal files (systemd-journal-remote) and plain logs."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from regauthd.cli import main
from regauthd.journal.since import SinceError, parse_since
from tests.conftest import require_program
from tests.rigs.journald import write_export, write_journal

FIXTURES = Path(__file__).parents[1] / "fixtures" / "journal"
SINCE = ["--since", "2026-01-01T00:00:00Z"]
SECRET = "hunter2-Sup3r-S3cret-t0ken"


@pytest.fixture(scope="module")
def journal_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_program("systemd-journal-remote", "systemd-journal-remote")
    directory = tmp_path_factory.mktemp("journal")
    for export in sorted(FIXTURES.glob("*.export")):
        write_export(directory, export.read_bytes(), name=export.stem)
    return directory


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        status = main(["scan-journal", *argv])
    except SystemExit as exc:  # argparse usage errors
        status = int(exc.code or 0)
    out, err = capsys.readouterr()
    return status, out, err


def test_json_lines_for_every_failure(
    journal_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = _run(capsys, "--directory", str(journal_dir), *SINCE, "--json")
    assert status == 1
    lines = out.splitlines()
    rows = [json.loads(line) for line in lines]
    assert all(isinstance(r, dict) for r in rows)
    assert len(rows) == 18  # docker.service + containerd.service fixtures, container output skipped
    assert set(rows[0]) == {
        "kind",
        "registry",
        "repository",
        "operation",
        "unit",
        "time",
        "message",
    }
    assert {r["unit"] for r in rows} == {"docker.service", "containerd.service"}
    ghcr = [r for r in rows if r["registry"] == "ghcr.io" and r["repository"] == "acme/api"]
    assert [(r["kind"], r["operation"]) for r in ghcr] == [("denied", "pull")]
    assert "18 registry auth failure(s)" in err


def test_units_and_globs(journal_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = _run(
        capsys,
        "--directory",
        str(journal_dir),
        *SINCE,
        "--json",
        "--unit",
        "gitlab-runner.service",
        "--unit",
        "actions.runner.*",
    )
    assert status == 1
    units = [json.loads(line)["unit"] for line in out.splitlines()]
    assert sorted(set(units)) == [
        "actions.runner.acme-api.runner-1.service",
        "gitlab-runner.service",
    ]
    assert len(units) == 4


def test_nothing_found_exits_0(journal_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # noise.journal: only container output (skipped) and units nobody follows.
    status, out, err = _run(capsys, "--file", str(journal_dir / "noise.journal"), *SINCE)
    assert (status, out) == (0, "")
    assert "0 registry auth failure(s)" in err


def test_since_limits(journal_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = _run(
        capsys, "--directory", str(journal_dir), "--since", "2026-11-30T12:04:30Z", "--json"
    )
    assert status == 1
    assert {json.loads(line)["unit"] for line in out.splitlines()} == {"containerd.service"}


def test_journalctl_backend_finds_the_same(
    journal_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    require_program("journalctl", "systemd")
    _, native, _ = _run(capsys, "--directory", str(journal_dir), *SINCE, "--json")
    status, fallback, _ = _run(
        capsys, "--directory", str(journal_dir), *SINCE, "--json", "--backend", "journalctl"
    )
    assert status == 1
    assert fallback == native


def test_human_output(journal_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = _run(capsys, "--file", str(journal_dir / "containerd.journal"), *SINCE)
    assert status == 1
    assert "containerd.service: pull to ghcr.io/acme/api: denied: " in out
    assert len(out.splitlines()) == 4


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        (["--since", "yesterdayish"], "--since 'yesterdayish'"),
        (["--file", "a.journal", "--directory", "b"], "not allowed with argument"),
        (["--pattern", "(unclosed"], "not a valid regex"),
        (["--directory", "/nonexistent/journal"], "cannot open"),
        (["--log-file", "/nonexistent/messages"], "not found"),
    ],
)
def test_usage_errors_exit_2(
    argv: list[str], complaint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = _run(capsys, *argv)
    assert status == 2
    assert out == ""
    assert complaint in err


def test_secrets_in_logged_lines_never_reach_the_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    require_program("systemd-journal-remote", "systemd-journal-remote")
    lines = [
        f'level=debug msg="GET /v2/ Authorization: Bearer {SECRET}" error="unauthorized: x"',
        f'level=error msg="Not continuing with push after error" error="Get \\"https://ci:{SECRET}'
        '@registry.example.com/v2/acme/api/manifests/v1\\": unauthorized: authentication required"',
        f'level=error msg="login failed" error="unauthorized: incorrect username or password" '
        f"password={SECRET}",
    ]
    write_journal(
        tmp_path / "j",
        [{"_SYSTEMD_UNIT": "docker.service", "MESSAGE": line} for line in lines],
        start=datetime.now(UTC) - timedelta(minutes=1),
    )
    for extra in ([], ["--json"]):
        status, out, err = _run(capsys, "--directory", str(tmp_path / "j"), *extra)
        assert status == 1
        assert len(out.splitlines()) == 3
        assert SECRET not in out + err
        assert "<redacted>" in out


def test_plain_log_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "messages"
    local = datetime.now(UTC).astimezone()
    log.write_text(
        f"{local:%b} {local.day:2d} {local:%H:%M:%S} h dockerd[9]: level=error "
        'msg="Not continuing with pull after error: denied: requested access to the resource is '
        'denied"\n'
    )
    status, out, _ = _run(capsys, "--log-file", str(log), "--json")
    assert status == 1
    assert json.loads(out)["kind"] == "denied"


def test_real_entry_point(journal_dir: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "regauthd",
            "scan-journal",
            "--directory",
            str(journal_dir),
            *SINCE,
            "--json",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 1, done.stderr
    assert len(done.stdout.splitlines()) == 18


NOW = datetime(2026, 11, 30, 13, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expect"),
    [
        ("2026-11-30T12:00:00Z", datetime(2026, 11, 30, 12, tzinfo=UTC)),
        ("2026-11-30 12:00", datetime(2026, 11, 30, 12, tzinfo=UTC)),
        ("2026-11-30T14:00:00+02:00", datetime(2026, 11, 30, 12, tzinfo=UTC)),
        ("1h", NOW - timedelta(hours=1)),
        ("-30m", NOW - timedelta(minutes=30)),
        ("2d", NOW - timedelta(days=2)),
        ("90s", NOW - timedelta(seconds=90)),
        ("today", datetime(2026, 11, 30, tzinfo=UTC)),
        ("@1764504000", datetime.fromtimestamp(1764504000, UTC)),
        # What journalctl --since also accepts (systemd.time(7)).
        ("yesterday", datetime(2026, 11, 29, tzinfo=UTC)),
        ("tomorrow", datetime(2026, 12, 1, tzinfo=UTC)),
        ("now", NOW),
        ("-2h", NOW - timedelta(hours=2)),
        ("1h 30min", NOW - timedelta(minutes=90)),
        ("-1h30m", NOW - timedelta(minutes=90)),
        ("3 hours ago", NOW - timedelta(hours=3)),
        ("2d ago", NOW - timedelta(days=2)),
        ("+15min", NOW + timedelta(minutes=15)),
        ("1y", NOW - timedelta(days=365.25)),
        ("2026-11-29", datetime(2026, 11, 29, tzinfo=UTC)),
        ("12:30", datetime(2026, 11, 30, 12, 30, tzinfo=UTC)),
        ("12:30:15", datetime(2026, 11, 30, 12, 30, 15, tzinfo=UTC)),
        ("Sun 2026-11-29 08:00:00", datetime(2026, 11, 29, 8, tzinfo=UTC)),
        ("2026-11-29 08:00:00 UTC", datetime(2026, 11, 29, 8, tzinfo=UTC)),
    ],
)
def test_parse_since(text: str, expect: datetime) -> None:
    assert parse_since(text, now=NOW) == expect


@pytest.mark.parametrize("text", ["", "soon", "@x", "1 fortnight", "2026-13-01", "25:00"])
def test_parse_since_refuses(text: str) -> None:
    with pytest.raises(SinceError, match="--since"):
        parse_since(text, now=NOW)


def test_times_without_an_offset_are_local_time_as_journalctl_reads_them() -> None:
    berlin = timezone(timedelta(hours=1))
    now = NOW.astimezone(berlin)
    assert parse_since("2026-11-30 12:00", now=now) == datetime(2026, 11, 30, 11, tzinfo=UTC)
    assert parse_since("today", now=now) == datetime(2026, 11, 29, 23, tzinfo=UTC)
    assert parse_since("2026-11-30 12:00 UTC", now=now) == datetime(2026, 11, 30, 12, tzinfo=UTC)


def test_ends_with_a_summary_per_registry(
    journal_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for extra in ([], ["--json"]):
        status, _out, err = _run(capsys, "--directory", str(journal_dir), *SINCE, *extra)
        assert status == 1
        head, *rows = err.splitlines()
        assert head.endswith("18 registry auth failure(s) since 2026-01-01T00:00:00+00:00:")
        counts = {row.split()[0]: int(row.split()[1]) for row in rows}
        assert sum(counts.values()) == 18
        found = [
            json.loads(line)
            for line in _run(capsys, "--directory", str(journal_dir), *SINCE, "--json")[
                1
            ].splitlines()
        ]
        for name, n in counts.items():
            assert n == sum(1 for f in found if (f["registry"] or "unknown") == name)
        assert all(" by " in row and "; last " in row for row in rows)


def test_logged_escapes_and_newlines_cannot_forge_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A process that logs a terminal escape or a newline (journald keeps both) cannot clear
    the reader's screen or add a line that looks like scan-journal's own."""
    require_program("systemd-journal-remote", "systemd-journal-remote")
    forged = "regauthd scan-journal: 0 registry auth failure(s)"
    line = f'level=error msg="\x1b[2Jpull failed\n{forged}\x9b" error="denied: requested access"'
    write_journal(
        tmp_path / "j",
        [{"_SYSTEMD_UNIT": "docker.service", "MESSAGE": line}],
        start=datetime.now(UTC) - timedelta(minutes=1),
    )
    status, out, err = _run(capsys, "--directory", str(tmp_path / "j"))
    assert status == 1
    assert "\x1b" not in out + err and "\x9b" not in out + err
    assert len(out.splitlines()) == 1
    assert "\\x1b[2Jpull failed\\x0a" + forged in out
    assert not any(x.startswith(forged) for x in (out + err).splitlines())
    status, out, _ = _run(capsys, "--directory", str(tmp_path / "j"), "--json")
    (entry,) = map(json.loads, out.splitlines())
    assert "\x1b[2Jpull failed\n" + forged in entry["message"]  # the JSON keeps it, escaped
    assert "\x1b" not in out and "\x9b" not in out
