"""Where the Docker config is: safe reading and atomic, race-safe saving of its bytes.

Reading refuses anything that is not a regular file of sane size without blocking (FIFOs,
devices, directories, symlink loops, huge files). Saving never loses a concurrent writer's
credential: on Linux the new file is swapped in with ``renameat2(RENAME_EXCHANGE)``, so the file
it displaced is still in hand and can be compared with what the plan was made from; if another
program wrote in between, the caller re-plans from that content and saves again.

Every step works relative to one descriptor of the config's directory
(:mod:`regauthd.dockerconfig.configdir`): as root, that directory is opened following no
symlink a user controls, must belong to the config's owner, and every file-system call on it is
made with the owner's identity (:mod:`regauthd.dockerconfig.fsidentity`); a device or FIFO is
refused from its ``lstat``, never opened.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from regauthd.dockerconfig import configdir, ownwrites
from regauthd.dockerconfig.configdir import ConfigDir, file_to_replace, open_config_dir
from regauthd.dockerconfig.fileerrors import check_type, open_error
from regauthd.dockerconfig.fsidentity import Owner, acting_as
from regauthd.dockerconfig.jsontext import ConfigFileError
from regauthd.dockerconfig.savecleanup import SaveCleaner, finish

MAX_CONFIG_BYTES = 1 << 20
"""A Docker config with thousands of registries is a few hundred KiB; more is not a config."""

TEMP_PREFIX = ".regauthd-tmp-"
"""Prefix of the one temp file regauthd creates beside config.json (renamed into place)."""

TEST_EXCHANGE_ENV = "REGAUTHD_TEST_EXCHANGE_BEFORE_SAVE"
"""Tests only: two paths (``os.pathsep`` between) swapped right before each save's exchange,
with the config owner's identity: the attacker's move at the worst moment, made deterministic."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One read of a config file: its bytes and the identity of the file they came from."""

    path: Path
    """The path as the caller named it (may be a symlink)."""
    real_path: Path
    """The file actually read and rewritten (the symlink's target)."""
    exists: bool
    data: bytes
    mode: int = 0o600
    uid: int = -1
    gid: int = -1
    on_disk: bytes | None = None
    """What the file holds now, when that differs from ``data`` (after a race, our own write)."""
    owner: Owner | None = None
    """Whose identity the file was read with (None: this process's own)."""
    directory: tuple[int, int] | None = None
    """(st_dev, st_ino) of the directory it was read in: a save must find the same one."""

    @property
    def expected(self) -> bytes:
        return self.data if self.on_disk is None else self.on_disk


def config_path(location: Path | str | None = None) -> Path:
    """The config.json for a ``--docker-config`` value (a directory or a file), or the default.

    Default: ``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json``.
    """
    if location is None:
        env = os.environ.get("DOCKER_CONFIG")
        base = Path(env) if env else Path.home() / ".docker"
        return base / "config.json"
    p = Path(location).expanduser()
    if p.is_dir() or str(location).endswith(os.sep) or (not p.exists() and p.suffix != ".json"):
        return p / "config.json"
    return p


def load(path: Path | str) -> Snapshot:
    """Read a config file safely. A missing file is an empty snapshot, not an error."""
    path = Path(path)
    owner = configdir.owner_of(path)
    with acting_as(owner):  # one switch for the whole read
        try:
            directory = open_config_dir(path, owner=owner)
        except FileNotFoundError:
            return Snapshot(path=path, real_path=file_to_replace(path), exists=False, data=b"")
        except OSError as exc:
            raise ConfigFileError(path, open_error(exc, path)) from None
        with directory:
            return _load_in(directory)


def _load_in(directory: ConfigDir) -> Snapshot:
    """Read the config in ``directory`` (with the owner's identity in force)."""
    path, name, fd_dir = directory.path, directory.name, directory.fd
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        if directory.owner is not None:
            # As root: a device, FIFO or symlink is refused from its lstat, never opened.
            check_type(path, os.lstat(name, dir_fd=fd_dir))
            flags |= os.O_NOFOLLOW
        fd = os.open(name, flags, dir_fd=fd_dir)
    except FileNotFoundError:
        return Snapshot(
            path=path,
            real_path=directory.real_path,
            exists=False,
            data=b"",
            owner=directory.owner,
            directory=directory.identity,
        )
    except OSError as exc:
        raise ConfigFileError(path, open_error(exc, path)) from None
    try:
        st = os.fstat(fd)
        check_type(path, st)
        if st.st_size > MAX_CONFIG_BYTES:
            raise ConfigFileError(
                path,
                f"is {st.st_size} bytes, more than the "
                f"{MAX_CONFIG_BYTES} a Docker config can sensibly be; "
                "refusing to read it",
            )
        owner = directory.owner
        if owner is not None and not owner.is_root and st.st_uid != owner.uid:
            raise ConfigFileError(
                path,
                f"belongs to {configdir.user_name(st.st_uid)}, not to "
                f"{configdir.user_name(owner.uid)} who owns its directory; regauthd, running "
                "as root, acts on a user's config only as that user, and left it alone "
                f"(if it is theirs: `sudo chown {configdir.user_name(owner.uid)} {path}`)",
            )
        data = _read_fd(fd, MAX_CONFIG_BYTES + 1)
        if len(data) > MAX_CONFIG_BYTES:
            raise ConfigFileError(path, "grew past the size limit while being read; refusing it")
        return _snapshot(directory, data, st)
    finally:
        os.close(fd)


def remove_stale_temps(path: Path | str) -> None:
    """Remove the temp files that saves killed mid-way left beside the config at ``path``
    (ours only, see :func:`regauthd.dockerconfig.configdir.remove_stale_temps`): the daemon
    calls this for each config it starts watching; every save does it as well.

    A look at the names first (one ``listdir``; a user's swapped directory can only make it look
    at the wrong names, never act there): the directory is opened, with the owner's identity,
    only when one of ours is there (10,000 configs at start-up: 0.05 ms each instead of 0.5)."""
    try:
        names = os.listdir(Path(path).parent)
    except OSError:
        return
    if not any(name.startswith(TEMP_PREFIX) for name in names):
        return
    with contextlib.suppress(OSError, ConfigFileError), open_config_dir(Path(path)) as directory:
        configdir.remove_stale_temps(directory, TEMP_PREFIX)


@dataclass(frozen=True, slots=True)
class Raced:
    """Another program replaced the file between our read and our save.

    ``found`` is the file it wrote. ``ours_on_disk`` is None when our content never reached the
    disk; when the writer landed inside the exchange, our content is on disk and ``found`` was
    displaced by it: the caller must merge ``found`` back in (see
    :func:`regauthd.dockerconfig.merge.merge_three_way`).
    """

    found: Snapshot
    ours_on_disk: bytes | None = None


_cleaner = SaveCleaner()


def flush_cleanup(timeout: float | None = None) -> bool:
    """Wait until every deferred save cleanup is done (see ``save(defer_cleanup=True)``)."""
    return _cleaner.flush(timeout)


def save(
    snapshot: Snapshot,
    new_data: bytes,
    *,
    defer_cleanup: bool = False,
    before_exchange: Callable[[], None] | None = None,
) -> Raced | None:
    """Atomically replace the file ``snapshot`` was read from with ``new_data``.

    Temp file in the target's directory (the symlink's target: a link stays a link), fsync of the
    file and the directory, mode and owner of the original kept. With ``defer_cleanup`` the
    directory fsync and the removal of the displaced file happen on a background thread.
    Returns None on success, or :class:`Raced` when the file changed since ``snapshot`` was read;
    no content is ever lost. Raises ``ConfigFileError`` when, as root, the directory is no longer
    the one the snapshot was read in (it was swapped: nothing is written). ``before_exchange``
    runs after the temp file's fsync, just before it replaces the file (also when the save
    then finds the file changed and returns :class:`Raced`: whatever it makes durable is
    needed by the retry as well), with the config owner's identity in force as root: it may
    only use descriptors opened before (:meth:`BackupStore.sync_names` fsyncs the backups'
    directories, opened by :meth:`BackupStore.save`).
    """
    # As root the read found the owner (the walk up the path); the directory opened below must
    # be the very one that was read (same device and inode), so it is still that owner's.
    owner = snapshot.owner if snapshot.owner is not None else configdir.owner_of(snapshot.path)
    with (
        acting_as(owner),  # one switch for the whole save
        open_config_dir(snapshot.path, real_path=snapshot.real_path, owner=owner) as directory,
    ):
        if directory.owner is not None and (
            directory.identity != snapshot.directory or directory.owner != snapshot.owner
        ):
            raise ConfigFileError(
                snapshot.path,
                "its directory was replaced by another while regauthd was saving; "
                "nothing was written, it is looked at again at the next change",
            )
        configdir.lock_for_save(directory, TEMP_PREFIX)
        return _save_in(directory, snapshot, new_data, defer_cleanup, before_exchange)


def _save_in(
    directory: ConfigDir,
    snapshot: Snapshot,
    new_data: bytes,
    defer_cleanup: bool,
    before_exchange: Callable[[], None] | None = None,
) -> Raced | None:
    dir_fd, name = directory.fd, directory.name
    tmp = f"{TEMP_PREFIX}{os.urandom(6).hex()}"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(tmp, flags, 0o600, dir_fd=dir_fd)
    try:
        try:
            _write_all(fd, new_data)
            if snapshot.uid >= 0 and (snapshot.uid, snapshot.gid) != (os.geteuid(), os.getegid()):
                # Not root: the file stays ours, as it would after `docker login`.
                with contextlib.suppress(PermissionError):
                    os.fchown(fd, snapshot.uid, snapshot.gid)
            os.fchmod(fd, snapshot.mode)
            os.fsync(fd)
        finally:
            os.close(fd)
        if before_exchange is not None:
            before_exchange()  # with the owner's identity: only descriptors opened before
        # Last look before replacing: a write that already landed is re-planned from without
        # ever exposing our (then stale) content to other readers.
        if _peek(directory) != (snapshot.expected if snapshot.exists else None):
            os.unlink(tmp, dir_fd=dir_fd)
            return Raced(_load_in(directory))
        if test_before_exchange is not None:
            test_before_exchange()
        ownwrites.add(tmp)  # the watcher's event of this rename is ours: not read again
        if _exchange(directory, tmp, name):
            # A writer that renamed in the microseconds since that look is caught here: the
            # exchange hands us the file we displaced, so its content is not lost.
            displaced = _read_displaced(directory, tmp)
            if defer_cleanup:
                _cleaner.submit(os.dup(dir_fd), tmp)
            else:
                finish(dir_fd, tmp)
            if displaced.data != snapshot.expected:
                return Raced(displaced, ours_on_disk=new_data)
            return None
        # No RENAME_EXCHANGE (macOS, some filesystems): a writer landing between the look above
        # and this rename is the one window left.
        os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        os.fsync(dir_fd)
        return None
    except BaseException:
        ownwrites.discard(tmp)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=dir_fd)
        raise


def _exchange(directory: ConfigDir, a: str, b: str) -> bool:
    """Atomically swap two names in ``directory`` (Linux renameat2). False when the platform
    cannot."""
    return configdir.exchange(directory, a, b)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


_NOT_A_FILE = b"\0not a regular file\0"


def _peek(directory: ConfigDir) -> bytes | None:
    """The file's bytes right now (None if absent): the cheap look before a save."""
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    if directory.owner is not None:
        flags |= os.O_NOFOLLOW
    try:
        fd = os.open(directory.name, flags, dir_fd=directory.fd)
    except FileNotFoundError:
        return None
    except OSError:
        return _NOT_A_FILE  # a symlink put there meanwhile (as root): changed, look again
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return _NOT_A_FILE  # never read a FIFO or device put there meanwhile
        return _read_fd(fd, MAX_CONFIG_BYTES + 1)
    finally:
        os.close(fd)


def _read_fd(fd: int, limit: int) -> bytes:
    chunks = []
    remaining = limit
    while remaining > 0:
        chunk = os.read(fd, min(65536, remaining))
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _snapshot(directory: ConfigDir, data: bytes, st: os.stat_result) -> Snapshot:
    return Snapshot(
        path=directory.path,
        real_path=directory.real_path,
        exists=True,
        data=data,
        mode=stat.S_IMODE(st.st_mode),
        uid=st.st_uid,
        gid=st.st_gid,
        owner=directory.owner,
        directory=directory.identity,
    )


def _read_displaced(directory: ConfigDir, tmp: str) -> Snapshot:
    fd = os.open(
        tmp, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), dir_fd=directory.fd
    )
    try:
        st = os.fstat(fd)
        data = _read_fd(fd, st.st_size + MAX_CONFIG_BYTES)
    finally:
        os.close(fd)
    return _snapshot(directory, data, st)


test_before_exchange: Callable[[], None] | None = configdir.exchange_hook(TEST_EXCHANGE_ENV)
"""Tests only: called between the last look and the exchange of every save (None in
production; set from :data:`TEST_EXCHANGE_ENV` in a daemon under test)."""
