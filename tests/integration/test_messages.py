"""What `check`, `fix`, `probe` and `scan-journal` tell a person: no silent all-clear, no wrong
advice (issue 11, item 2). Each test shows the corrected text."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from regauthd.alerts.catalogue import CATALOGUE, AlertKind, alert_event
from regauthd.dockerconfig.audit import file_findings
from regauthd.dockerconfig.keys import HUB_CANONICAL
from regauthd.dockerconfig.normalize import plan
from regauthd.dockerconfig.report import FixReport, normalized_fix
from regauthd.dockerconfig.validate import validate
from regauthd.journal.access import require_readable
from regauthd.journal.backend import FollowOptions, JournalError
from tests.conftest import require_program, require_root
from tests.rigs.configs import auth

NOBODY = 65534
HUB_REASON = f"Docker looks Hub credentials up only under {HUB_CANONICAL}"


def run(
    *args: str, env: dict[str, str] | None = None, **kw: object
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # type: ignore[call-overload, no-any-return]
        [sys.executable, "-m", "regauthd", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
        **kw,
    )


def write(directory: Path, config: dict[str, object], mode: int = 0o600) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "config.json"
    path.write_text(json.dumps(config, indent="\t"))
    path.chmod(mode)
    return path


@pytest.fixture
def user_tmp() -> Iterator[Path]:
    """A temp dir an unprivileged user can reach (pytest's own is inside root's 0700 dir)."""
    path = Path(tempfile.mkdtemp(prefix="regauthd-test-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def as_nobody(home: Path) -> dict[str, object]:
    os.chown(home, NOBODY, NOBODY)
    return {
        "env": {"PATH": os.environ["PATH"], "HOME": str(home)},
        "user": NOBODY,
        "group": NOBODY,
        "extra_groups": [],
        "cwd": home,
    }


# -- check and fix ------------------------------------------------------------------------------


def test_clean_only_when_nothing_is_printed_under_it(isolated_env: Path) -> None:
    cfg = isolated_env / ".docker"
    write(cfg, {"auths": {HUB_CANONICAL: {"auth": auth("u", "p")}}})
    proc = run("check")
    assert (proc.returncode, proc.stdout) == (0, f"{cfg / 'config.json'}: clean\n")
    (cfg / "config.json").chmod(0o644)
    proc = run("check")
    assert proc.returncode == 0
    first, *rest = proc.stdout.splitlines()
    assert first == f"{cfg / 'config.json'}: works, with warnings"
    assert ": clean" not in proc.stdout
    assert rest[0].startswith("  warning: the file is readable")


def test_each_change_names_its_reason(isolated_env: Path) -> None:
    write(
        isolated_env / ".docker",
        {"auths": {"docker.io": {"auth": auth("u", "p")}, "https://localhost:5000/v1/": {}}},
    )
    lines = run("check").stdout.splitlines()
    hub = next(line for line in lines if "'docker.io'" in line)
    assert hub.endswith(f"renamed to '{HUB_CANONICAL}': {HUB_REASON}")
    local = next(line for line in lines if "localhost:5000/v1/'] " in line)
    assert "bare host name localhost:5000" in local
    assert "Hub" not in local


def test_fix_dry_run_exits_1_while_changes_are_pending(isolated_env: Path, tmp_path: Path) -> None:
    cfg = isolated_env / ".docker"
    write(cfg, {"auths": {"docker.io": {"auth": auth("u", "p")}}})
    state = ("--state-dir", str(tmp_path / "s"))
    proc = run("fix", "--dry-run", *state)
    assert proc.returncode == 1
    assert "would fix" in proc.stdout
    assert run("fix", *state).returncode == 0
    assert run("fix", "--dry-run", *state).returncode == 0


def test_no_nothing_to_do_before_an_error_about_the_same_file(
    isolated_env: Path, tmp_path: Path
) -> None:
    root_cfg = write(tmp_path / "root", {"auths": {HUB_CANONICAL: {"auth": auth("r", "p")}}})
    (isolated_env / ".docker").rmdir()
    proc = run("check", "--root-docker-config", str(root_cfg))
    assert proc.returncode == 1
    assert "nothing to do" not in proc.stderr
    assert "no config.json here" in proc.stderr
    assert "sudo docker login" in proc.stdout


def test_unreadable_root_config_is_not_checked_not_clean(user_tmp: Path) -> None:
    """/root is 0700: an ordinary user's `check` cannot see what `sudo docker login` stored."""
    require_root("to run check as an unprivileged user")
    home = user_tmp / "home"
    (home / ".docker").mkdir(parents=True)
    kw = as_nobody(home)
    proc = run("check", **kw)  # no credentials of its own: root's config matters
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "clean" not in proc.stdout
    assert "not checked: root's config cannot be read" in proc.stdout
    assert "/root is usually mode 0700" in proc.stdout
    assert "sudo regauthd check" in proc.stdout
    assert "--root-docker-config FILE" in proc.stdout
    # Named explicitly and unreadable: reported even when the user has credentials.
    write(home / ".docker", {"auths": {HUB_CANONICAL: {"auth": auth("u", "p")}}})
    os.chown(home / ".docker" / "config.json", NOBODY, NOBODY)
    os.chown(home / ".docker", NOBODY, NOBODY)
    secret_root = user_tmp / "root-only"
    write(secret_root, {"auths": {}})
    secret_root.chmod(0o700)
    proc = run("check", "--root-docker-config", str(secret_root / "config.json"), **kw)
    assert proc.returncode == 1
    assert "not checked" in proc.stdout
    # The user's own credentials serve and root's default config is out of reach: fine.
    proc = run("check", **kw)
    assert proc.returncode == 0, proc.stdout
    assert proc.stdout.endswith(": clean\n")


def test_root_owned_config_says_sudo_chown(user_tmp: Path) -> None:
    require_root("to run check as an unprivileged user")
    home = user_tmp / "home"
    cfg = home / ".docker"
    write(cfg, {"auths": {}})  # root-owned 0600: what `sudo docker login` may leave
    cfg.chmod(0o755)
    kw = as_nobody(home)
    os.chown(cfg, NOBODY, NOBODY)
    proc = run("check", "--docker-config", str(cfg), **kw)
    assert proc.returncode == 1
    assert "the file belongs to root" in proc.stdout
    assert f"`sudo chown nobody {cfg / 'config.json'}`" in proc.stdout
    assert "PosixPath" not in proc.stdout + proc.stderr
    # Readable but owned by someone else than its directory: chown needs sudo too.
    (found,) = [f for f in file_findings("/h/.docker/config.json", 0o600, 0, 1000)]
    assert found.fix == "sudo chown 1000 /h/.docker/config.json"


def test_advice_logs_in_to_hub_without_a_server_argument() -> None:
    found = validate({"auths": {"docker.io": {}, "ghcr.io": {}}})
    fixes = {f.key: f.fix for f in found if f.code == "empty_placeholder"}
    assert fixes == {
        "docker.io": "`docker login` again, or remove the empty entry",
        "ghcr.io": "`docker login ghcr.io` again, or remove the empty entry",
    }


def test_hub_advice_only_for_hub_repairs() -> None:
    def repaired(config: dict[str, object]) -> FixReport:
        return FixReport(path=Path("/c/config.json"), changes=plan(config).changes, written=True)

    local = normalized_fix(repaired({"auths": {"https://localhost:5000/v1/": {"auth": "x"}}}))
    assert "Hub" not in local and "docker.io" not in local
    assert "`docker login localhost:5000`" in local
    hub = normalized_fix(repaired({"auths": {"docker.io": {"auth": "x"}}}))
    assert "`docker login` (no argument)" in hub
    assert "localhost" not in hub
    generic = CATALOGUE[AlertKind.CONFIG_NORMALIZED]
    event = alert_event(generic, "/c", {"path": "/c", "changes": "x", "fix": local})
    assert event["fix"] == local


def test_unfixable_advice_names_the_file_not_a_placeholder() -> None:
    kind = CATALOGUE[AlertKind.CONFIG_UNFIXABLE]
    event = alert_event(kind, "/h/.docker/config.json", {"path": "/h/.docker/config.json"})
    assert "`regauthd check --docker-config /h/.docker/config.json`" in event["fix"]
    assert "DIR" not in event["fix"]
    catalog = (Path(__file__).parents[2] / "systemd" / "regauthd.catalog").read_text()
    assert "--docker-config DIR" not in catalog


# -- a bad `auth`: what the real Docker CLI does --------------------------------------------------

BAD_AUTH_RUNS = 80


def test_bad_auth_message_matches_what_the_docker_cli_does(tmp_path: Path) -> None:
    """Docker 28 warns and stops reading `auths` at the bad entry: the Hub credential beside a
    bad ghcr.io entry is found in most runs and lost in some (Go's random map order)."""
    docker = require_program("docker", "docker.io")
    config = {
        "auths": {
            HUB_CANONICAL: {"auth": auth("hubuser", "pw")},
            "ghcr.io": {"auth": "bm9jb2xvbg=="},
        }
    }
    cfg = tmp_path / "dc"
    write(cfg, config)
    (finding,) = [f for f in validate(config) if f.key == "ghcr.io"]
    assert finding.code == "auth_no_colon"
    assert 'Docker warns "Invalid auth configuration file"' in finding.message
    assert "stops reading `auths` at this entry" in finding.message
    assert "may also lose other registries' credentials" in finding.message
    assert "WHOLE" not in finding.message
    found = lost = 0
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "DOCKER_CONFIG": str(cfg)}
    for _ in range(BAD_AUTH_RUNS):
        proc = subprocess.run(
            [docker, "login"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env=env,
            timeout=30,
            check=False,
        )
        assert "Invalid auth configuration file" in proc.stderr
        if "[Username: hubuser]" in proc.stdout + proc.stderr:
            found += 1
        else:
            lost += 1
        if found and lost:
            break
    assert found, "Docker never read the Hub credential: it would refuse the whole file"
    assert lost, f"Docker found the Hub credential in all {found} runs: it never lost it"


# -- probe ----------------------------------------------------------------------------------------


def test_probe_on_a_mis_keyed_hub_credential_points_at_fix(isolated_env: Path) -> None:
    write(isolated_env / ".docker", {"auths": {"docker.io": {"auth": auth("u", "p")}}})
    proc = run("probe", "--json", "--endpoint", "docker.io=http://127.0.0.1:9", "--timeout", "2")
    assert proc.returncode == 1
    (line,) = proc.stdout.splitlines()
    result = json.loads(line)
    assert result["status"] == "no_credentials"
    assert "stored under docker.io, a key Docker never reads" in result["detail"]
    assert result["detail"].endswith("run `regauthd fix`")
    assert "docker login" not in result["detail"]


# -- scan-journal ---------------------------------------------------------------------------------


def test_missing_or_unreadable_journal_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(JournalError, match=r"no journal at .*journald is not running"):
        require_readable(FollowOptions(), system_dirs=[tmp_path / "none"])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(JournalError, match="holds no journal files"):
        require_readable(FollowOptions(), system_dirs=[empty])
    with pytest.raises(JournalError, match=r"cannot open journal file .*: no such file"):
        require_readable(FollowOptions(files=(tmp_path / "x.journal",)))


def test_scan_journal_as_an_ordinary_user_never_says_no_failures(user_tmp: Path) -> None:
    require_root("to run scan-journal as an unprivileged user")
    home = user_tmp / "home"
    home.mkdir()
    kw = as_nobody(home)
    journal = user_tmp / "journal" / "0123456789abcdef"
    journal.mkdir(parents=True)
    (journal / "system.journal").write_bytes(b"LPKSHHRH" + bytes(200))
    (journal / "system.journal").chmod(0o640)
    proc = run("scan-journal", "--directory", str(user_tmp / "journal"), **kw)
    assert proc.returncode == 2
    assert "failure(s)" not in proc.stderr
    assert "are not readable by this user (uid 65534)" in proc.stderr
    assert "systemd-journal" in proc.stderr
    proc = run("scan-journal", "--file", str(journal / "system.journal"), **kw)
    assert proc.returncode == 2
    assert "permission denied" in proc.stderr and "PosixPath" not in proc.stderr
    proc = run("scan-journal", **kw)  # the system journal: absent here, or closed to nobody
    assert proc.returncode == 2, proc.stderr
    assert "failure(s)" not in proc.stderr
    assert "cannot" in proc.stderr
