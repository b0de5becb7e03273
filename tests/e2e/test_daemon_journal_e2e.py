"""`regauthd run` with the journal watch on, end to end: real daemon, real journal files.

The daemon runs as a subprocess (JSON lines on stdout) and follows journal files that
``systemd-journal-remote`` writes (``[journal] directory``, as a host journal mounted into a
container would be read). dockerd's real lines for a refused push are appended while it runs;
a CI script has just written the Hub credential under ``docker.io`` with a shell redirect.
Waits are for expected lines (with a deadline), never for fixed times.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from regauthd.alerts.catalogue import CATALOGUE
from regauthd.dockerconfig.keys import HUB_CANONICAL
from tests.conftest import require_journal_backend
from tests.rigs.configs import auth, wait_until
from tests.rigs.daemon import Daemon
from tests.rigs.journald import dockerd, write_journal

PASSWORD = "journal-e2e-pw-7Qx"
AUTH = auth("acme", PASSWORD)
BOOT = "5e2c0f4a9b8d47e1a3c6d9f0b1e2a3c4"
"""One boot for every write: journalctl --follow does not see a new boot's entries appended."""

# What dockerd logs for one refused push, in this order: the line that names the registry and
# repository, then the closing line that names neither.
ATTEMPT = (
    'level=info msg="Attempting next endpoint for push after error: Head '
    '\\"https://registry-1.docker.io/v2/acme/api/blobs/sha256:4f4fb700ef54461cfa02571ae0db9a0d'
    'c1e0cdb5577484a6d75e68dc38e8acc1\\": unauthorized: authentication required"'
)
NOT_CONTINUING = (
    'level=error msg="Not continuing with push after error" '
    'error="unauthorized: authentication required"'
)
GHCR_PULL = (
    'level=info msg="Attempting next endpoint for pull after error: Head '
    '\\"https://ghcr.io/v2/acme/tool/manifests/v1\\": unauthorized: authentication required"'
)
KIND = "journal.auth_failure"


@pytest.fixture(params=["systemd", "journalctl"])
def backend(request: pytest.FixtureRequest) -> str:
    return require_journal_backend(str(request.param))


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for daemon in started:
        daemon.stop()


def settings(journal_dir: Path, backend: str) -> str:
    return f"""
[daemon]
output = "json"
log_level = "debug"
[alerts]
suppress_window = "5m"
[journal]
enabled = true
backend = "{backend}"
directory = "{journal_dir}"
units = ["docker.service"]
"""


def start(tmp_path: Path, text: str, cfg: Path, daemons: list[Daemon]) -> Daemon:
    daemon = Daemon(tmp_path, settings=text, docker_configs=[cfg])
    daemons.append(daemon)
    daemon.wait_ready()
    return daemon


def statuses(daemon: Daemon) -> list[str]:
    return [m for m in daemon.notify.poll() if m.startswith("STATUS=")]


def wait_status(daemon: Daemon, words: str) -> None:
    wait_until(
        lambda: any(words in m for m in statuses(daemon)),
        f"STATUS with {words!r} in {statuses(daemon)[-3:]}",
    )


def everything(daemon: Daemon) -> str:
    return daemon.out.read_text() + daemon.err.read_text()


def test_push_failure_is_alerted_once_with_the_verdict_and_not_again_after_restart(
    tmp_path: Path, backend: str, daemons: list[Daemon]
) -> None:
    journal_dir = tmp_path / "journal"
    write_journal(
        journal_dir, dockerd('level=info msg="API listen on /run/docker.sock"'), boot_id=BOOT
    )
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    text = settings(journal_dir, backend)
    daemon = start(tmp_path, text, cfg, daemons)

    # A CI script writes the Hub credential under `docker.io` with a plain shell redirect; the
    # daemon repairs it at once, but the push that had already read the file fails.
    mis_keyed = json.dumps({"auths": {"docker.io": {"auth": AUTH}}})
    subprocess.run(["sh", "-c", f"printf '%s' '{mis_keyed}' > config.json"], cwd=cfg, check=True)
    daemon.wait_event("config.normalized")
    write_journal(journal_dir, dockerd(ATTEMPT, NOT_CONTINUING), boot_id=BOOT)

    (alert,) = daemon.wait_event(KIND)
    assert list(json.loads((cfg / "config.json").read_text())["auths"]) == [HUB_CANONICAL]
    assert alert["message_id"] == CATALOGUE[KIND].message_id.hex
    assert (alert["unit"], alert["registry"]) == ("docker.service", "docker.io")
    assert (alert["repository"], alert["operation"]) == ("acme/api", "push")
    assert alert["message"] == f"docker.service: {alert['reason']}"
    assert alert["reason"].startswith("push to docker.io/acme/api failed at ")
    assert "credentials were stored under `docker.io`, which Docker never reads" in alert["reason"]
    assert "normalized at" in alert["reason"]
    assert alert["fix"] != CATALOGUE[KIND].fix  # the verdict's own fix
    # Both dockerd lines are one failure.
    wait_status(daemon, "journal: 1 auth failure(s), 1 alert(s)")

    # The same failure again within the alert window: counted, not alerted.
    write_journal(journal_dir, dockerd(ATTEMPT, NOT_CONTINUING), boot_id=BOOT)
    wait_status(daemon, "journal: 2 auth failure(s), 1 alert(s)")
    assert len(daemon.named(KIND)) == 1
    assert daemon.stop() == 0
    first_run = everything(daemon)

    # Restarted, the daemon resumes after its cursor: the old entries are not alerted again
    # (its suppression window is gone, so only the cursor can prevent it). A new entry is.
    daemon = start(tmp_path, text, cfg, daemons)
    write_journal(journal_dir, dockerd(GHCR_PULL), boot_id=BOOT)
    (alert,) = daemon.wait_event(KIND)
    assert alert["registry"] == "ghcr.io"
    wait_status(daemon, "journal: 1 auth failure(s), 1 alert(s)")
    assert [e["registry"] for e in daemon.named(KIND)] == ["ghcr.io"]

    for output in (first_run, everything(daemon)):
        assert PASSWORD not in output
        assert AUTH not in output


def test_unreadable_journal_raises_one_alert(
    tmp_path: Path, backend: str, daemons: list[Daemon]
) -> None:
    """A journal the daemon cannot read (here: a "directory" that is a file; systemd-python
    refuses it at once, journalctl exits each time it is started) is one alert, not one line
    per retry."""
    not_a_dir = tmp_path / "journal"
    not_a_dir.write_text("")
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    daemon = start(tmp_path, settings(not_a_dir, backend), cfg, daemons)
    (alert,) = daemon.wait_event("journal.unavailable")
    assert alert["message_id"] == CATALOGUE["journal.unavailable"].message_id.hex
    assert "Not a directory" in alert["reason"]
    assert alert["message"].startswith("cannot follow the journal for registry auth failures: ")

    def retries() -> int:
        return len(daemon.named("journal.open_failed")) + len(daemon.named("journal.follow_failed"))

    # The daemon keeps retrying (with back-off); the retries are logged, not alerted.
    wait_until(lambda: retries() >= 3, "three attempts to open the journal")
    assert len(daemon.named("journal.unavailable")) == 1
