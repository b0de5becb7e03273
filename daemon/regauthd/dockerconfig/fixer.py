"""Fixing one config file: load, plan, re-key helper secrets, back up, save; race-safe.

The imperative shell around :mod:`regauthd.dockerconfig.normalize`. :func:`fix_file` never raises
for a bad file: a refusal is reported in :attr:`FixReport.error`
and the file is left byte for byte as it was.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import functools
import json
import os
import secrets
import time
import urllib.parse
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from regauthd.dockerconfig import audit
from regauthd.dockerconfig import file as dockerconfig
from regauthd.dockerconfig.file import ConfigFileError, Snapshot
from regauthd.dockerconfig.findings import Finding
from regauthd.dockerconfig.keys import HUB_CANONICAL
from regauthd.dockerconfig.normalize import Change, Conflict, HelperMove, NormalizationPlan, plan
from regauthd.dockerconfig.stores import CredentialError, HelperStore

MAX_ATTEMPTS = 50
"""Rounds of re-planning when other programs keep writing while we save."""

BACKUPS_KEPT = 20


def default_state_dir() -> Path:
    """``/var/lib/regauthd`` for root, else ``$XDG_STATE_HOME/regauthd`` (~/.local/state)."""
    if os.geteuid() == 0 and "XDG_STATE_HOME" not in os.environ:
        return Path("/var/lib/regauthd")
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "regauthd"


class BackupStore:
    """Rotated 0600 copies of configs, in the state directory (never beside config.json)."""

    def __init__(self, state_dir: Path, *, keep: int = BACKUPS_KEPT) -> None:
        self.root = Path(state_dir) / "backups"
        self.keep = keep
        self.races = RaceMemory(Path(state_dir) / "races")
        self._backed_up: set[Path] = set()

    def folder_for(self, real_path: Path) -> Path:
        return self.root / urllib.parse.quote(str(real_path), safe="")

    def has_backup(self, real_path: Path) -> bool:
        return real_path in self._backed_up

    def save(self, snapshot: Snapshot) -> Path:
        folder = self.folder_for(snapshot.real_path)
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        dest = folder / f"{stamp}.{time.time_ns() % 1_000_000_000:09d}.json"
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, snapshot.data)
            os.fsync(fd)
        finally:
            os.close(fd)
        self._backed_up.add(snapshot.real_path)
        self._rotate(folder)
        return dest

    def _rotate(self, folder: Path) -> None:
        backups = sorted(folder.glob("*.json"))
        for old in backups[: max(0, len(backups) - self.keep)]:
            old.unlink(missing_ok=True)


@dataclass(frozen=True, slots=True)
class ReportedConflict:
    """A :class:`Conflict` plus where the losing credential can be found again."""

    canonical: str
    winner: str
    loser: str
    reason: str
    backup: Path | None


@dataclass(frozen=True, slots=True)
class FixReport:
    """What :func:`fix_file` did and found for one file."""

    path: Path
    written: bool = False
    changes: tuple[Change, ...] = ()
    conflicts: tuple[ReportedConflict, ...] = ()
    findings: tuple[Finding, ...] = ()
    before: bytes | None = field(default=None, repr=False)
    after: bytes | None = field(default=None, repr=False)
    backup: Path | None = None
    retries: int = 0
    error: ConfigFileError | None = None

    @property
    def changed(self) -> bool:
        return bool(self.changes or self.conflicts)

    @property
    def clean(self) -> bool:
        """Nothing is left that breaks a client (warnings may remain)."""
        return self.error is None and not any(f.severity == "error" for f in self.findings)


def fix_file(
    path: Path | str,
    *,
    backups: BackupStore,
    prefer: Collection[str] = (),
    dry_run: bool = False,
    erase_old_helper_entries: bool = False,
    helper_env: Mapping[str, str] | None = None,
    defer_cleanup: bool = False,
    snapshot: Snapshot | None = None,
) -> FixReport:
    """Normalize one Docker config file in place (rules: :mod:`regauthd.dockerconfig.normalize`).

    ``defer_cleanup`` (the daemon's hot path) finishes each save on a background thread; call
    :func:`regauthd.dockerconfig.file.flush_cleanup` before exiting. ``snapshot`` is a
    :func:`regauthd.dockerconfig.file.load` of ``path`` the caller has just made.

    When another program writes the file while we save, its write is merged in and the plan
    made again (:func:`regauthd.dockerconfig.file.merge_three_way`), at most
    :data:`MAX_ATTEMPTS` times.
    """
    path = Path(path)
    if snapshot is None:  # else: the caller just read it (the daemon's hot path)
        try:
            snapshot = dockerconfig.load(path)
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
            config = dockerconfig.parse(snapshot.data, path)
        except ConfigFileError as exc:
            return FixReport(path=path, error=exc, before=snapshot.data, retries=retries)
        result = plan(config, path=str(path), prefer=prefer)
        findings = [*result.findings, *_file_findings(snapshot)]
        changes.update(dict.fromkeys(result.changes))
        new_data = dockerconfig.render(result.config, like=snapshot.data)
        needs_write = result.changed or snapshot.data != snapshot.expected
        report = functools.partial(
            FixReport, path, findings=tuple(findings), before=first_data, retries=retries
        )
        if not needs_write and not result.helper_moves:
            return report(
                retries > 0, tuple(changes), tuple(conflicts), after=snapshot.data, backup=backup
            )
        if dry_run:
            dry = [
                ReportedConflict(c.canonical, c.winner, c.loser, c.reason, None)
                for c in result.conflicts
            ]
            return report(False, tuple(changes), tuple(dry), after=new_data)
        if needs_write and (result.conflicts or not backups.has_backup(snapshot.real_path)):
            # Before the first change to a file, and whenever a credential loses a conflict.
            backup = backups.save(dataclasses.replace(snapshot, data=snapshot.expected))
        helper_conflicts, helper_findings, erase = _move_helper_secrets(
            result, helper_env, erase_old_helper_entries
        )
        if any(f.code == "helper_failed" for f in helper_findings):
            # The secret could not be re-keyed: moving the placeholder alone would break the
            # registry that works today. Leave the file as it is.
            return report(
                retries > 0,
                (),
                tuple(conflicts),
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
                False,
                tuple(changes),
                tuple(conflicts),
                after=snapshot.data,
                backup=backup,
                findings=(*findings, *helper_findings),
            )
        raced = dockerconfig.save(snapshot, new_data, defer_cleanup=defer_cleanup)
        if raced is None:
            backups.races.keep(snapshot.real_path, new_data)
            for store, url in erase:
                store.erase(url)
            return report(
                True,
                tuple(changes),
                tuple(conflicts),
                after=new_data,
                backup=backup,
                findings=(*findings, *helper_findings),
            )
        merged = _merge_race(snapshot, raced, backups.races)
        if merged is None:
            return report(
                retries > 0,
                tuple(changes),
                tuple(conflicts),
                backup=backup,
                error=ConfigFileError(
                    path,
                    "another program wrote invalid JSON while "
                    "regauthd was saving; its content was kept",
                ),
            )
        snapshot = merged
    return FixReport(
        path,
        True,
        tuple(changes),
        tuple(conflicts),
        (),
        first_data,
        None,
        backup,
        retries,
        ConfigFileError(
            path,
            f"another program rewrote the file {MAX_ATTEMPTS} times while "
            "regauthd was saving; it was left as that program wrote it",
        ),
    )


class RaceMemory:
    """Our content that sat on disk while it lacked another program's write.

    When a writer renames inside our exchange, our (then stale) content is on disk until the
    merged save lands, a fraction of a millisecond. A program that read the file in that window
    and writes later would drop the entry we merged back. For :data:`EXPOSURE_TTL_S` after such a
    race, every fix of the file merges again, with our stale write as the base and the content
    that must survive as "mine". The price: an entry the user logs out of within that window of
    a race comes back.

    Kept in memory and, because each `regauthd fix` is a new process, in the state directory
    (0600, like the backups: it holds config content).
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._by_path: dict[Path, tuple[bytes, bytes, float]] = {}
        self._names: dict[Path, str] = {}  # the daemon looks on every repair: quote once

    def _file(self, real_path: Path) -> str:
        name = self._names.get(real_path)
        if name is None:
            name = self._names[real_path] = os.path.join(
                self.folder, urllib.parse.quote(str(real_path), safe="")
            )
        return name

    def _lookup(self, real_path: Path) -> tuple[bytes, bytes, float] | None:
        entry = self._by_path.get(real_path)
        if entry is None:
            try:
                fd = os.open(self._file(real_path), os.O_RDONLY)
            except OSError:
                return None  # the common case: no race on record for this file
            try:
                raw = json.loads(os.read(fd, 4 * dockerconfig.MAX_CONFIG_BYTES))
                entry = (
                    base64.b64decode(raw["stale"]),
                    base64.b64decode(raw["pending"]),
                    time.monotonic() + float(raw["until"]) - time.time(),
                )
            except (OSError, ValueError, KeyError, TypeError):
                return None
            finally:
                os.close(fd)
            self._by_path[real_path] = entry
        if entry[2] < time.monotonic():
            self._forget(real_path)
            return None
        return entry

    def _forget(self, real_path: Path) -> None:
        self._by_path.pop(real_path, None)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._file(real_path))

    def _store(self, real_path: Path, entry: tuple[bytes, bytes, float]) -> None:
        self._by_path[real_path] = entry
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        record = {
            "stale": base64.b64encode(entry[0]).decode(),
            "pending": base64.b64encode(entry[1]).decode(),
            "until": time.time() + entry[2] - time.monotonic(),
        }
        tmp = self.folder / f".{secrets.token_hex(6)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, json.dumps(record).encode())
        finally:
            os.close(fd)
        os.replace(tmp, self._file(real_path))

    def active(self, real_path: Path) -> bool:
        return self._lookup(real_path) is not None

    def expose(self, real_path: Path, stale: bytes, pending: bytes) -> None:
        self._store(real_path, (stale, pending, time.monotonic() + EXPOSURE_TTL_S))

    def keep(self, real_path: Path, pending: bytes) -> None:
        """``pending`` now holds everything that must survive (merged, or written)."""
        entry = self._lookup(real_path)
        if entry is not None and entry[1] != pending:
            self._store(real_path, (entry[0], pending, entry[2]))

    def recover(self, current: Snapshot) -> Snapshot:
        entry = self._lookup(current.real_path)
        if entry is None or current.data == entry[1]:
            return current
        stale, pending, _ = entry
        try:
            base = dockerconfig.parse(stale, current.path)
            mine = dockerconfig.parse(pending, current.path)
            theirs = dockerconfig.parse(current.data, current.path)
        except ConfigFileError:
            return current
        data = dockerconfig.render(
            dockerconfig.merge_three_way(base, mine, theirs), like=current.data
        )
        return dataclasses.replace(current, data=data, on_disk=current.data)


EXPOSURE_TTL_S = 5.0


def _merge_race(pending: Snapshot, raced: dockerconfig.Raced, races: RaceMemory) -> Snapshot | None:
    """Fold another writer's content into what we still have to write.

    ``pending.data`` is what we planned from, ``pending.expected`` what we thought was on disk,
    ``raced.found`` what the other program wrote. Both are descendants of ``pending.expected``:
    merge them. If our write reached the disk anyway, it is what the next save must find.
    Returns None (after putting the other program's content back) when it is not valid JSON.
    """
    try:
        base = dockerconfig.parse(pending.expected, pending.path)
        mine = dockerconfig.parse(pending.data, pending.path)
        theirs = dockerconfig.parse(raced.found.data, pending.path)
    except ConfigFileError:
        if raced.ours_on_disk is not None:
            dockerconfig.save(
                dataclasses.replace(raced.found, on_disk=raced.ours_on_disk), raced.found.data
            )
        return None
    merged = dockerconfig.render(
        dockerconfig.merge_three_way(base, mine, theirs), like=raced.found.data
    )
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


def _move_helper_secrets(
    result: NormalizationPlan, env: Mapping[str, str] | None, erase_old: bool
) -> tuple[list[Conflict], list[Finding], list[tuple[HelperStore, str]]]:
    """Get each old URL's secret from its helper and store it under the new URL.

    Returns conflicts (the helper already held a different secret under the new URL), findings,
    and the (store, url) pairs to erase once the config is saved (only when asked to).
    """
    conflicts: list[Conflict] = []
    findings: list[Finding] = []
    erase: list[tuple[HelperStore, str]] = []
    for move in result.helper_moves:
        try:
            _move_one(move, env, erase_old, conflicts, findings, erase)
        except CredentialError as exc:
            findings.append(
                Finding(
                    "helper_sync_failed" if move.sync else "helper_failed",
                    "error",
                    "credential helper",
                    move.source_url,
                    str(exc),
                    "make the helper work (unlock it), then run `regauthd fix` again",
                )
            )
    return conflicts, findings, erase


def _move_one(
    move: HelperMove,
    env: Mapping[str, str] | None,
    erase_old: bool,
    conflicts: list[Conflict],
    findings: list[Finding],
    erase: list[tuple[HelperStore, str]],
) -> None:
    source = HelperStore(move.source_helper, env=env)
    target = HelperStore(move.target_helper, env=env)
    secret = source.get(move.source_url)
    if secret is None and move.sync:
        return
    if secret is None:
        findings.append(
            Finding(
                "helper_missing_secret",
                "warning",
                f"docker-credential-{move.source_helper}",
                move.source_url,
                f"config.json has a placeholder for {move.source_url!r} but the helper holds no "
                "credential under that URL.",
                f"`docker login {move.source_url}` again",
            )
        )
        return
    existing = target.get(move.target_url)
    if existing is not None and existing != secret and move.sync:
        if move.target_url == HUB_CANONICAL:  # report the pair once
            findings.append(
                Finding(
                    "helper_hub_mismatch",
                    "warning",
                    f"docker-credential-{move.target_helper}",
                    move.source_url,
                    "the helper holds different Docker Hub credentials under "
                    f"{HUB_CANONICAL!r} (used by Docker) and 'docker.io' (used by podman).",
                    "log in to Docker Hub again with `docker login` so both are the same",
                )
            )
        return
    if existing is not None and existing != secret and not move.source_preferred:
        conflicts.append(
            Conflict(
                move.target_url,
                move.target_url,
                move.source_url,
                "the helper already holds a different credential under the "
                "canonical URL; it is kept and the other stays in the helper",
            )
        )
        return
    if existing != secret:
        target.store(move.target_url, secret)
    if erase_old and not move.keep_source:
        erase.append((source, move.source_url))
