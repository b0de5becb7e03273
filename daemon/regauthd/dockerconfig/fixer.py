"""Fixing one config file: load, plan, re-key helper secrets, back up, save; race-safe.

The imperative shell around :mod:`regauthd.dockerconfig.normalize`. :func:`fix_file` never raises
for a bad file: a refusal is reported in :attr:`regauthd.dockerconfig.report.FixReport.error` and
the file is left byte for byte as it was. Backups and race memory live in
:mod:`regauthd.dockerconfig.backups` and :mod:`regauthd.dockerconfig.races`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Callable, Collection, Mapping
from pathlib import Path

from regauthd.dockerconfig import audit
from regauthd.dockerconfig import file as dockerconfig
from regauthd.dockerconfig.backups import BackupStore
from regauthd.dockerconfig.credhelper import HelperRunner
from regauthd.dockerconfig.file import Snapshot
from regauthd.dockerconfig.findings import Finding
from regauthd.dockerconfig.helpermoves import move_helper_secrets
from regauthd.dockerconfig.jsontext import (
    ConfigFileError,
    ConfigSaveError,
    os_cause,
    parse,
    render,
)
from regauthd.dockerconfig.merge import merge_config_bytes
from regauthd.dockerconfig.normalize import Change, NormalizationPlan, plan
from regauthd.dockerconfig.races import RaceMemory
from regauthd.dockerconfig.report import FixReport, ReportedConflict

Planner = Callable[..., NormalizationPlan]
"""``(config, *, path, prefer) -> NormalizationPlan``: which client's key rules a file follows."""

MAX_ATTEMPTS = 50
"""Rounds of re-planning when other programs keep writing while we save."""


def fix_file(
    path: Path | str,
    *,
    backups: BackupStore,
    prefer: Collection[str] = (),
    dry_run: bool = False,
    erase_old_helper_entries: bool = False,
    helper_env: Mapping[str, str] | None = None,
    helper_runner: HelperRunner | None = None,
    defer_cleanup: bool = False,
    snapshot: Snapshot | None = None,
    rules: Planner = plan,
) -> FixReport:
    """Normalize one Docker config file in place (rules: :mod:`regauthd.dockerconfig.normalize`).

    ``defer_cleanup`` (the daemon's hot path) finishes each save on a background thread; call
    :func:`regauthd.dockerconfig.file.flush_cleanup` before exiting. ``snapshot`` is a
    :func:`regauthd.dockerconfig.file.load` of ``path`` the caller has just made.
    ``helper_runner`` runs the credential helpers the file names (the daemon: as the file's
    owner, bounded in time; :mod:`regauthd.dockerconfig.credhelper`), else with ``helper_env``.

    When another program writes the file while we save, its write is merged in and the plan
    made again (:func:`regauthd.dockerconfig.merge.merge_three_way`), at most
    :data:`MAX_ATTEMPTS` times. A save or backup the system refuses (no space, read-only
    filesystem, permission) is reported as a :class:`ConfigSaveError`; the file is unchanged.
    ``rules`` plans the change: Docker's (the default) or containers' for a podman auth.json
    (:func:`regauthd.dockerconfig.authfile.plan`).
    """
    try:
        return _fix_file(
            Path(path),
            backups=backups,
            prefer=prefer,
            dry_run=dry_run,
            erase_old_helper_entries=erase_old_helper_entries,
            helper_env=helper_env,
            helper_runner=helper_runner,
            defer_cleanup=defer_cleanup,
            snapshot=snapshot,
            rules=rules,
        )
    except ConfigSaveError as exc:
        return FixReport(path=Path(path), error=exc)
    except OSError as exc:
        return FixReport(path=Path(path), error=ConfigSaveError(path, "saving", exc))
    finally:
        backups.sync_names()  # a backup made without the save that would have synced it


def _fix_file(
    path: Path,
    *,
    backups: BackupStore,
    prefer: Collection[str] = (),
    dry_run: bool = False,
    erase_old_helper_entries: bool = False,
    helper_env: Mapping[str, str] | None = None,
    helper_runner: HelperRunner | None = None,
    defer_cleanup: bool = False,
    snapshot: Snapshot | None = None,
    rules: Planner = plan,
) -> FixReport:
    if snapshot is None:  # else: the caller just read it (the daemon's hot path)
        try:
            snapshot = read(path)
        except ConfigFileError as exc:
            return FixReport(path=path, error=exc)
    if not snapshot.exists:
        return FixReport(path=path)

    snapshot = backups.races.recover(snapshot)
    first_data = snapshot.data
    changes: dict[Change, None] = {}
    conflicts: list[ReportedConflict] = []
    backup: Path | None = None
    for retries in range(MAX_ATTEMPTS * 10):
        if retries >= MAX_ATTEMPTS and not backups.races.active(snapshot.real_path):
            break  # nothing of another program's is held only by us: safe to give up
        # snapshot.data: what the plan is made from; snapshot.expected: what is on disk.
        try:
            config = parse(snapshot.data, path)
        except ConfigFileError as exc:
            return FixReport(path=path, error=exc, before=snapshot.data, retries=retries)
        result = rules(config, path=str(path), prefer=prefer)
        findings = [*result.findings, *_file_findings(snapshot)]
        changes.update(dict.fromkeys(result.changes))
        new_data = render(result.config, like=snapshot.data)
        needs_write = result.changed or snapshot.data != snapshot.expected
        report = functools.partial(
            FixReport, path=path, findings=tuple(findings), before=first_data, retries=retries
        )
        if not needs_write and not result.helper_moves:
            return report(
                written=retries > 0,
                changes=tuple(changes),
                conflicts=tuple(conflicts),
                after=snapshot.data,
                backup=backup,
            )
        if dry_run:
            dry = [
                ReportedConflict(c.canonical, c.winner, c.loser, c.reason, None)
                for c in result.conflicts
            ]
            return report(
                written=False, changes=tuple(changes), conflicts=tuple(dry), after=new_data
            )
        if needs_write and (result.conflicts or not backups.has_backup(snapshot.real_path)):
            # Before the first change to a file, and whenever a credential loses a conflict.
            try:
                backup = backups.save(
                    dataclasses.replace(snapshot, data=snapshot.expected), sync_name=False
                )
            except OSError as exc:
                # No way back, no change: a fix is only made with its backup in place.
                raise ConfigSaveError(path, f"writing the backup in {backups.root}", exc) from None
        helper_conflicts, helper_findings, erase = move_helper_secrets(
            result, helper_env, erase_old_helper_entries, helper_runner
        )
        if any(f.code == "helper_failed" for f in helper_findings):
            # The secret could not be re-keyed: moving the placeholder alone would break the
            # registry that works today. Leave the file as it is.
            return report(
                written=retries > 0,
                changes=(),
                conflicts=tuple(conflicts),
                after=snapshot.expected,
                backup=backup,
                findings=(*findings, *helper_findings),
            )
        conflicts.extend(
            ReportedConflict(c.canonical, c.winner, c.loser, c.reason, backup)
            for c in (*result.conflicts, *helper_conflicts)
        )
        if not needs_write:
            return report(
                written=False,
                changes=tuple(changes),
                conflicts=tuple(conflicts),
                after=snapshot.data,
                backup=backup,
                findings=(*findings, *helper_findings),
            )
        try:
            raced = dockerconfig.save(
                snapshot,
                new_data,
                defer_cleanup=defer_cleanup,
                # The backup's name is durable before the file changes (after the temp file's
                # fsync, which on most file systems has committed it already).
                before_exchange=backups.sync_names,
            )
        except ConfigFileError as exc:  # as root: the directory was swapped, nothing written
            return report(
                written=retries > 0,
                changes=(),
                conflicts=tuple(conflicts),
                backup=backup,
                error=exc,
            )
        except OSError as exc:
            raise ConfigSaveError(path, "saving", exc) from None
        if raced is None:
            # The file is saved: a full state directory must not make that look like a failure
            # (the race memory is kept in this process even when its file cannot be written).
            with contextlib.suppress(OSError):
                backups.races.keep(snapshot.real_path, new_data)
            for store, url in erase:
                store.erase(url)
            return report(
                written=True,
                changes=tuple(changes),
                conflicts=tuple(conflicts),
                after=new_data,
                backup=backup,
                findings=(*findings, *helper_findings),
            )
        merged = _merge_race(snapshot, raced, backups.races)
        if merged is None:
            return report(
                written=retries > 0,
                changes=tuple(changes),
                conflicts=tuple(conflicts),
                backup=backup,
                error=ConfigFileError(
                    path,
                    "another program wrote invalid JSON while "
                    "regauthd was saving; its content was kept",
                ),
            )
        snapshot = merged
    return FixReport(
        path=path,
        written=True,
        changes=tuple(changes),
        conflicts=tuple(conflicts),
        findings=(),
        before=first_data,
        after=None,
        backup=backup,
        retries=retries,
        error=ConfigFileError(
            path,
            f"another program rewrote the file {MAX_ATTEMPTS} times while "
            "regauthd was saving; it was left as that program wrote it",
        ),
    )


def first_backup_due(
    snapshot: Snapshot,
    *,
    backups: BackupStore,
    prefer: Collection[str] = (),
    rules: Planner = plan,
) -> bool:
    """Whether :func:`fix_file` on ``snapshot`` will start by making the file's first backup
    from ``snapshot.data`` (and no other): it will write, the file has no backup yet, and the
    plan has no conflict (a conflict makes its own backup every time). A caller fixing many
    files makes those backups first, together (:meth:`BackupStore.save_many`), and
    :func:`fix_file` then finds them made."""
    if not snapshot.exists or backups.has_backup(snapshot.real_path):
        return False
    recovered = backups.races.recover(snapshot)
    try:
        result = rules(parse(recovered.data, snapshot.path), path=str(snapshot.path), prefer=prefer)
    except ConfigFileError:
        return False
    needs_write = result.changed or recovered.data != recovered.expected
    return needs_write and not result.conflicts


def read(path: Path) -> Snapshot:
    """:func:`regauthd.dockerconfig.file.load`, with a read the kernel refuses (``/proc`` files
    that error on read: EIO, EINVAL, EAGAIN) as a :class:`ConfigFileError` too."""
    try:
        return dockerconfig.load(path)
    except OSError as exc:
        raise ConfigFileError(path, f"cannot be read: {os_cause(exc)}") from None


def _merge_race(pending: Snapshot, raced: dockerconfig.Raced, races: RaceMemory) -> Snapshot | None:
    """Fold another writer's content into what we still have to write.

    ``pending.data`` is what we planned from, ``pending.expected`` what we thought was on disk,
    ``raced.found`` what the other program wrote. Both are descendants of ``pending.expected``:
    merge them. If our write reached the disk anyway, it is what the next save must find.
    Returns None (after putting the other program's content back) when it is not valid JSON.
    """
    try:
        merged = merge_config_bytes(pending.expected, pending.data, raced.found.data, pending.path)
    except ConfigFileError:
        if raced.ours_on_disk is not None:
            with contextlib.suppress(ConfigFileError):  # its directory swapped: nothing to undo
                dockerconfig.save(
                    dataclasses.replace(raced.found, on_disk=raced.ours_on_disk), raced.found.data
                )
        return None
    on_disk = raced.ours_on_disk if raced.ours_on_disk is not None else raced.found.data
    if raced.ours_on_disk is not None:
        races.expose(pending.real_path, raced.ours_on_disk, merged)
    else:
        races.keep(pending.real_path, merged)
    return dataclasses.replace(raced.found, data=merged, on_disk=on_disk)


def _file_findings(snapshot: Snapshot) -> tuple[Finding, ...]:
    try:
        dir_uid: int | None = snapshot.real_path.parent.stat().st_uid
    except OSError:
        dir_uid = None
    return audit.file_findings(str(snapshot.path), snapshot.mode, snapshot.uid, dir_uid)
