"""The start-up pass's first backups, made together per chunk (`BackupStore.save_many`).

Faults for real (small tmpfs mounts, root): a backup that does not fit fails alone and leaves
nothing; a full state directory changes no config; a batch that breaks leaves each backup to
its fix. No fix without its backup, in the batch as one by one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import structlog.testing

from regauthd.dockerconfig.backups import BackupStore
from regauthd.dockerconfig.file import load
from tests.integration.test_faults import AUTH, MIS_KEYED, PASSWORD, leftovers, write_config
from tests.rigs.configs import HUB
from tests.rigs.startpass import repairer, start_pass


def users_configs(parent: Path, count: int) -> list[Path]:
    """``count`` mis-keyed configs, each in a directory of its own under ``parent``."""
    configs = []
    for i in range(count):
        docker = parent / f"user{i}"
        docker.mkdir()
        configs.append(write_config(docker))
    return configs


def test_backups_made_together_each_count_or_leave_nothing(tmpfs: Any, tmp_path: Path) -> None:
    """A backup that does not fit fails alone, with nothing of it left; the others are whole,
    verified and counted."""
    state = tmpfs("state", size=64 * 1024)
    big = json.dumps({"auths": {"docker.io": {"auth": AUTH}}, "x": "y" * 200_000}).encode()
    contents = [MIS_KEYED, big, MIS_KEYED.replace(b"\t", b"  "), MIS_KEYED]
    configs = []
    for i, data in enumerate(contents):
        docker = tmp_path / f"user{i}"
        docker.mkdir()
        configs.append(docker / "config.json")
        configs[-1].write_bytes(data)
    store = BackupStore(state.path)
    results = store.save_many([load(config) for config in configs])
    assert isinstance(results[1], OSError) and "No space left" in str(results[1])
    for i in (0, 2, 3):
        assert store.verified(configs[i]) == [results[i]]
        assert store.has_backup(configs[i])
        assert Path(str(results[i])).read_bytes() == contents[i]
    assert not store.has_backup(configs[1])
    assert store.verified(configs[1]) == []
    every_file = [p.name for p in (state.path / "backups").rglob("*") if p.is_file()]
    assert sorted(every_file) == sorted(Path(str(results[i])).name for i in (0, 2, 3))


def test_a_start_pass_with_a_full_state_directory_changes_no_config(
    tmpfs: Any, tmp_path: Path
) -> None:
    """Each config is left byte for byte, each says why, and once there is space the same pass
    backs up and repairs them all."""
    state = tmpfs("state")  # 64 pages: room for 20 backups (a page each) and the race memory
    configs = users_configs(tmp_path, 20)
    alerts: list[tuple[str, str, dict[str, Any]]] = []

    def alert(kind: Any, subject: str, **fields: Any) -> bool:
        alerts.append((kind, subject, fields))
        return True

    with repairer(tmp_path, state_dir=state.path, alert=alert) as fixer:
        state.fill()
        reports = start_pass(fixer, configs)
        assert all(config.read_bytes() == MIS_KEYED for config in configs)
        assert {str(c) for c in configs} == {s for k, s, _ in alerts if k == "config.save_failed"}
        assert len(reports) == 20
        assert all("writing the backup" in r.error.reason for r in reports.values())  # type: ignore[union-attr]
        assert [p for p in (state.path / "backups").rglob("*") if p.is_file()] == []
        assert all(leftovers(config.parent) == [] for config in configs)

        state.free()
        for config in configs:
            fixer.look_again(str(config))
        start_pass(fixer, configs)
    for config in configs:
        assert list(json.loads(config.read_bytes())["auths"]) == [HUB]
        (backup,) = BackupStore(state.path).verified(config)
        assert backup.read_bytes() == MIS_KEYED


def test_a_batch_of_backups_that_breaks_leaves_each_backup_to_its_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not an OSError (those are per backup): a bug in the batch. Every config is still
    repaired with its one backup, made by its fix; the warning names no content."""

    def broken(self: BackupStore, snapshots: list[Any]) -> list[Any]:
        raise RuntimeError(f"broken with {snapshots[0].data!r}")

    monkeypatch.setattr(BackupStore, "save_many", broken)
    configs = users_configs(tmp_path, 4)
    with (
        repairer(tmp_path, state_dir=tmp_path / "state") as fixer,
        structlog.testing.capture_logs() as logs,
    ):
        reports = start_pass(fixer, configs)
    assert sorted(c for c, r in reports.items() if r.written) == sorted(map(str, configs))
    for config in configs:
        (backup,) = BackupStore(tmp_path / "state").verified(config)
        assert backup.read_bytes() == MIS_KEYED
    warnings = [e for e in logs if e["event"] == "config.batch_backup_failed"]
    assert warnings and all(e["error"] == "RuntimeError" for e in warnings)
    assert PASSWORD not in repr(logs) and AUTH not in repr(logs)
