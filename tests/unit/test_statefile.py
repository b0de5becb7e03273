"""regauthd.statefile: the one atomic writer of regauthd's own state files."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from regauthd.statefile import write_atomically


def test_replaces_whole_with_the_mode_asked_for_whatever_the_umask(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    target.write_bytes(b"old")
    old_umask = os.umask(0)
    try:
        write_atomically(target, b"new content", mode=0o600)
        assert stat.S_IMODE(target.stat().st_mode) == 0o600
        write_atomically(target, b"metrics", mode=0o644)
    finally:
        os.umask(old_umask)
    assert target.read_bytes() == b"metrics"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_a_symlink_at_the_target_is_replaced_not_followed(tmp_path: Path) -> None:
    victim = tmp_path / "root-only"
    victim.write_bytes(b"secret of someone else")
    victim.chmod(0o600)
    link = tmp_path / "regauthd.prom"
    link.symlink_to(victim)
    write_atomically(link, b"# metrics\n", mode=0o644)
    assert victim.read_bytes() == b"secret of someone else"
    assert stat.S_IMODE(victim.stat().st_mode) == 0o600
    assert not link.is_symlink()
    assert link.read_bytes() == b"# metrics\n"


def test_a_failed_write_leaves_the_old_file_whole_and_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "journal.cursor"
    target.write_bytes(b"s=old-cursor")
    # A real short write: the file-size limit makes write(2) fail with EFBIG part way.
    code = (
        "import resource, signal, sys\n"
        "from regauthd.statefile import write_atomically\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (64, 64))\n"
        "try:\n"
        "    write_atomically(sys.argv[1], b'x' * 4096)\n"
        "except OSError as exc:\n"
        "    print(exc.errno)\n"
        "    sys.exit(3)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(target)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 3, proc.stderr
    assert int(proc.stdout) == 27  # EFBIG
    assert target.read_bytes() == b"s=old-cursor"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["journal.cursor"]


def test_creates_a_missing_file(tmp_path: Path) -> None:
    write_atomically(tmp_path / "new", b"1")
    assert (tmp_path / "new").read_bytes() == b"1"


def test_the_metrics_file_never_writes_or_chmods_through_a_planted_link(tmp_path: Path) -> None:
    """The metrics writer once used ``.regauthd.prom.tmp-<pid>`` and chmodded it 0644: a link
    planted there (or at the metrics path) made root overwrite a root-only file and make it
    world-readable. Now it goes through write_atomically: both links are left alone."""
    from regauthd.alerts.metrics import Metrics

    state = tmp_path / "state"
    state.mkdir()
    victims = []
    for name in ("shadow-copy", "other-secret"):
        victim = tmp_path / name
        victim.write_bytes(b"root only: " + name.encode())
        victim.chmod(0o600)
        victims.append(victim)
    target = state / "regauthd.prom"
    planted = state / f".regauthd.prom.tmp-{os.getpid()}"
    planted.symlink_to(victims[0])
    target.symlink_to(victims[1])
    metrics = Metrics()
    metrics.count("repairs")
    metrics.write(target)
    for victim in victims:
        assert victim.read_bytes().startswith(b"root only: ")
        assert stat.S_IMODE(victim.stat().st_mode) == 0o600
    assert not target.is_symlink()
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert "regauthd_repairs_total 1" in target.read_text()
    assert planted.is_symlink()  # not ours: left where it was
