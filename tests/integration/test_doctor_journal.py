"""``regauthd doctor``'s journal check: recent auth failures for a registry with the cause the
correlator assigns, from real journal files (systemd-journal-remote) and a real registry."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from regauthd.journal.correlate import Cause
from tests.conftest import require_program
from tests.rigs.configs import auth
from tests.rigs.journald import dockerd, write_journal
from tests.rigs.registry import RegistryFactory


def failure_line(host: str) -> str:
    return (
        'level=error msg="Handler for POST /v1.47/images/create returned error: Head '
        f'\\"https://{host}/v2/acme/api/manifests/v1\\": unauthorized: authentication required"'
    )


def doctor(tmp_path: Path, host: str, password: str, journal: Path) -> list[dict[str, Any]]:
    cfg = tmp_path / "d"
    cfg.mkdir(exist_ok=True)
    (cfg / "config.json").write_text(
        json.dumps({"auths": {host: {"auth": auth("alice", password)}}})
    )
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "LANG": "C.UTF-8"}
    proc = subprocess.run(
        [sys.executable, "-m", "regauthd", "doctor", "--docker-config", str(cfg), "--json",
         "--timeout", "2", "--journal-directory", str(journal)],
        capture_output=True, text=True, timeout=60, check=False, env=env,
    )  # fmt: skip
    assert password not in proc.stdout + proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()]


def journal_row(rows: list[dict[str, Any]], host: str) -> dict[str, Any]:
    (row,) = [r for r in rows if r["check"] == "journal" and r["registry"] == host]
    return row


def test_failures_come_with_the_correlated_cause(
    registry_factory: RegistryFactory, tmp_path: Path
) -> None:
    require_program("systemd-journal-remote", "systemd-journal-remote")
    reg = registry_factory(users={"alice": "alice-pw-1"})
    other = "127.0.0.1:1"  # failures for another registry are not this one's
    journal = tmp_path / "j"
    write_journal(
        journal,
        dockerd(failure_line(reg.host), failure_line(reg.host), failure_line(other)),
        start=datetime.now(UTC) - timedelta(minutes=5),
    )
    # The stored password is wrong: the fresh probe says so, and that is the cause.
    row = journal_row(doctor(tmp_path, reg.host, "wrong-pw-2", journal), reg.host)
    assert row["status"] == "problem"
    assert row["message"].startswith("2 auth failure(s) logged in the last 24 h")
    assert f"cause ({Cause.BAD_CREDENTIALS.value}):" in row["message"]
    assert f"docker login {reg.host}" in row["fix"]
    # The stored credential works: the failing client used another one.
    row = journal_row(doctor(tmp_path, reg.host, "alice-pw-1", journal), reg.host)
    assert row["status"] == "warning"
    assert f"cause ({Cause.OTHER_CREDENTIAL.value}):" in row["message"]
    assert "the failing client used another one" in row["message"]


def test_no_failures_for_the_registry_is_ok(tmp_path: Path) -> None:
    require_program("systemd-journal-remote", "systemd-journal-remote")
    journal = tmp_path / "j"
    write_journal(journal, dockerd(failure_line("127.0.0.1:1")), start=datetime.now(UTC))
    host = "127.0.0.1:2"
    row = journal_row(doctor(tmp_path, host, "pw", journal), host)
    assert row["status"] == "ok"
    assert row["message"] == "no auth failures logged in the last 24 h"
