"""``regauthd scan-journal`` split between workers finds what one reader finds, also after the
wall clock went back (NTP stepping a clock that ran ahead; a machine that logs before NTP sets
its clock at boot).

Before the check (``regauthd.journal.clocksteps``): a 50 s step back lost 50 of 200 failures
with ``--jobs 2`` or ``--jobs 4`` on both backends; a one-hour step made the sd-journal split
read nothing and exit 0 ("no failure"); and the sd-journal reader, going back to a failure by
its time for its unit, landed on another entry and said ``unknown``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.conftest import require_program
from tests.rigs.journald import to_export, write_export

T0 = int(datetime(2026, 11, 30, 12, 0, tzinfo=UTC).timestamp() * 1_000_000)
SECOND = 1_000_000
ENTRIES = 200
BOOT_A = "0123456789abcdef0123456789abcdef"
BOOT_B = "fedcba9876543210fedcba9876543210"


def failure(i: int, realtime: int, monotonic: int) -> dict[str, str]:
    image = f"ghcr.io/acme/app{i}:latest"
    return {
        "__REALTIME_TIMESTAMP": str(realtime),
        "__MONOTONIC_TIMESTAMP": str(monotonic),
        "MESSAGE": (
            f'level=error msg="PullImage \\"{image}\\" failed" error="failed to pull and unpack '
            f'image \\"{image}\\": pull access denied, repository does not exist or may require '
            'authorization: server message: insufficient_scope: authorization failed"'
        ),
        "_SYSTEMD_UNIT": "containerd.service",
        "SYSLOG_IDENTIFIER": "containerd",
        "PRIORITY": "3",
    }


def journal(directory: Path, case: str) -> Path:
    """ENTRIES failures a second apart, one journal file; ``case`` says how the clock went."""
    half = ENTRIES // 2
    if case == "boot-overlaps":  # the second boot logs 30 s "before" the first one ended
        first = [failure(i, T0 + i * SECOND, 5 * SECOND + i * SECOND) for i in range(half)]
        second = [
            failure(i, T0 + (i - 30) * SECOND, 5 * SECOND + (i - half) * SECOND)
            for i in range(half, ENTRIES)
        ]
        write_export(directory, to_export(first, boot_id=BOOT_A))
        return write_export(directory, to_export(second, boot_id=BOOT_B))
    step = {"steady": 0, "back-50s": 50, "back-1h": 3600}[case] * SECOND
    entries = [
        failure(i, T0 + i * SECOND - (step if i >= half else 0), 5 * SECOND + i * SECOND)
        for i in range(ENTRIES)
    ]
    return write_export(directory, to_export(entries, boot_id=BOOT_A))


def scan(directory: Path, backend: str, jobs: int) -> tuple[int, list[dict[str, str]]]:
    done = subprocess.run(
        [sys.executable, "-m", "regauthd", "scan-journal", "--directory", str(directory),
         "--since", "2026-01-01T00:00:00Z", "--json", "--backend", backend, "--jobs", str(jobs)],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    return done.returncode, [json.loads(line) for line in done.stdout.splitlines()]


@pytest.mark.parametrize("backend", ["systemd", "journalctl"])
@pytest.mark.parametrize("case", ["steady", "back-50s", "back-1h", "boot-overlaps"])
def test_every_failure_once_whatever_the_clock_did(tmp_path: Path, backend: str, case: str) -> None:
    require_program("systemd-journal-remote", "systemd-journal-remote")
    require_program("journalctl", "systemd")
    journal(tmp_path / "journal", case)
    alone_status, alone = scan(tmp_path / "journal", backend, 1)
    expected = {f"acme/app{i}" for i in range(ENTRIES)}
    assert alone_status == 1
    assert sorted(r["repository"] for r in alone) == sorted(expected)
    assert {r["unit"] for r in alone} == {"containerd.service"}
    for jobs in (2, 4):
        status, rows = scan(tmp_path / "journal", backend, jobs)
        assert status == 1, (jobs, len(rows))
        assert sorted(r["repository"] for r in rows) == sorted(expected), jobs
        assert {r["unit"] for r in rows} == {"containerd.service"}, jobs
