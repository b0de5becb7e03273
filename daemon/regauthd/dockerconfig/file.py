"""Where the Docker config is: safe reading and atomic, race-safe saving of its bytes.

Reading refuses anything that is not a regular file of sane size without blocking (FIFOs,
devices, directories, symlink loops, huge files). Saving never loses a concurrent writer's
credential: on Linux the new file is swapped in with ``renameat2(RENAME_EXCHANGE)``, so the file
it displaced is still in hand and can be compared with what the plan was made from; if another
program wrote in between, the caller re-plans from that content and saves again.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pwd
import queue
import stat
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from regauthd.dockerconfig.jsontext import ConfigFileError

MAX_CONFIG_BYTES = 1 << 20
"""A Docker config with thousands of registries is a few hundred KiB; more is not a config."""

TEMP_PREFIX = ".regauthd-tmp-"
"""Prefix of the one temp file regauthd creates beside config.json (renamed into place)."""

_RENAME_EXCHANGE = 2


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
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        return Snapshot(path=path, real_path=real_path(path), exists=False, data=b"")
    except OSError as exc:
        raise ConfigFileError(path, _open_error(exc, path)) from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise ConfigFileError(
                path,
                "is a directory, not a file; pass the directory that "
                "contains config.json, or the file itself",
            )
        if not stat.S_ISREG(st.st_mode):
            raise ConfigFileError(
                path,
                f"is not a regular file ({_file_kind(st.st_mode)}); refusing to read or replace it",
            )
        if st.st_size > MAX_CONFIG_BYTES:
            raise ConfigFileError(
                path,
                f"is {st.st_size} bytes, more than the "
                f"{MAX_CONFIG_BYTES} a Docker config can sensibly be; "
                "refusing to read it",
            )
        data = _read_fd(fd, MAX_CONFIG_BYTES + 1)
        if len(data) > MAX_CONFIG_BYTES:
            raise ConfigFileError(path, "grew past the size limit while being read; refusing it")
        return _snapshot(path, real_path(path), data, st)
    finally:
        os.close(fd)


def real_path(path: Path) -> Path:
    """The file a save must replace: the link's target when the file itself is a symlink.

    Symlinked parent directories need no resolving (the temp file and the file share a
    directory either way), and resolving only the last component saves a syscall per level.
    """
    try:
        if not stat.S_ISLNK(os.lstat(path).st_mode):
            return path
        return Path(os.path.realpath(path, strict=False))
    except OSError:
        return path


def _open_error(exc: OSError, path: Path) -> str:
    if exc.errno == errno.ELOOP:
        return "is a symlink loop; fix the link"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return _permission_text(path)
    if exc.errno == errno.ENOTDIR:
        return "a component of the path is not a directory"
    return f"cannot be opened ({os.strerror(exc.errno or 0)})"


def _permission_text(path: Path) -> str:
    """Why a config cannot be opened, and the one step that fixes it."""
    try:
        st = os.stat(path)
    except OSError:
        return (
            "permission denied: a directory on the way is closed to this user (for root's "
            "config, /root is usually mode 0700); run the command with sudo"
        )
    if st.st_uid != os.geteuid():
        me = _user_name(os.geteuid())
        return (
            f"permission denied: the file belongs to {_user_name(st.st_uid)} "
            f"(often left by `sudo docker login`); if it is yours, `sudo chown {me} {path}`, "
            "else run the command as its owner"
        )
    return f"permission denied (mode {stat.S_IMODE(st.st_mode):04o}); `chmod 600 {path}`"


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _file_kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


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


class _Cleaner:
    """Finishes saves off the hot path: unlink the displaced file, fsync the directory.

    The daemon hands these to one background thread so that the next event is not queued behind
    them. Jobs arriving within :data:`_COALESCE_S` of each other share one directory fsync (a
    burst of logins costs one journal commit, not one per login, and the cleanup's commit does
    not contend with the next repair's). :func:`flush_cleanup` waits for all of them. A blocked
    thread costs no wake-ups when idle.
    """

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[tuple[Path, Path] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._pending = 0
        self._idle = threading.Condition(self._lock)

    def submit(self, tmp: Path, directory: Path) -> None:
        with self._lock:
            self._pending += 1
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="regauthd-save-cleanup", daemon=True
                )
                self._thread.start()
        self._queue.put((tmp, directory))

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            batch = [job]
            with contextlib.suppress(queue.Empty):
                while len(batch) < 64:
                    more = self._queue.get(timeout=_COALESCE_S)
                    if more is None:
                        self._queue.put(None)
                        break
                    batch.append(more)
            try:
                for tmp, _ in batch:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(tmp)
                for directory in dict.fromkeys(d for _, d in batch):
                    with contextlib.suppress(OSError):
                        _fsync_dir(directory)
            finally:
                with self._lock:
                    self._pending -= len(batch)
                    self._idle.notify_all()

    def flush(self, timeout: float | None = None) -> bool:
        with self._lock:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)


_COALESCE_S = 0.002
_cleaner = _Cleaner()


def flush_cleanup(timeout: float | None = None) -> bool:
    """Wait until every deferred save cleanup is done (see ``save(defer_cleanup=True)``)."""
    return _cleaner.flush(timeout)


def _finish(tmp: Path, directory: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    _fsync_dir(directory)


def save(snapshot: Snapshot, new_data: bytes, *, defer_cleanup: bool = False) -> Raced | None:
    """Atomically replace the file ``snapshot`` was read from with ``new_data``.

    Temp file in the target's directory (the symlink's target: a link stays a link), fsync of the
    file and the directory, mode and owner of the original kept. With ``defer_cleanup`` the
    directory fsync and the removal of the displaced file happen on a background thread.
    Returns None on success, or :class:`Raced` when the file changed since ``snapshot`` was read;
    no content is ever lost.
    """
    target = snapshot.real_path
    directory = target.parent
    tmp = directory / f"{TEMP_PREFIX}{os.urandom(6).hex()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
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
        # Last look before replacing: a write that already landed is re-planned from without
        # ever exposing our (then stale) content to other readers.
        if _peek(target) != (snapshot.expected if snapshot.exists else None):
            os.unlink(tmp)
            return Raced(load(snapshot.path))
        if _exchange(tmp, target):
            # A writer that renamed in the microseconds since that look is caught here: the
            # exchange hands us the file we displaced, so its content is not lost.
            displaced = _read_displaced(tmp, snapshot)
            if defer_cleanup:
                _cleaner.submit(tmp, directory)
            else:
                _finish(tmp, directory)
            if displaced.data != snapshot.expected:
                return Raced(displaced, ours_on_disk=new_data)
            return None
        # No RENAME_EXCHANGE (macOS, some filesystems): a writer landing between the look above
        # and this rename is the one window left.
        os.replace(tmp, target)
        _fsync_dir(directory)
        return None
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _fsync_dir(directory: Path) -> None:
    dfd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def _peek(path: Path) -> bytes | None:
    """The file's bytes right now (None if absent): the cheap look before a save."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return None
    try:
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


def _snapshot(path: Path, real_path: Path, data: bytes, st: os.stat_result) -> Snapshot:
    return Snapshot(
        path=path,
        real_path=real_path,
        exists=True,
        data=data,
        mode=stat.S_IMODE(st.st_mode),
        uid=st.st_uid,
        gid=st.st_gid,
    )


def _read_displaced(tmp: Path, original: Snapshot) -> Snapshot:
    fd = os.open(tmp, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        data = _read_fd(fd, st.st_size + MAX_CONFIG_BYTES)
    finally:
        os.close(fd)
    return _snapshot(original.path, original.real_path, data, st)


_renameat2: Any = None


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2). False when the platform cannot."""
    global _renameat2  # noqa: PLW0603 - resolved once, lazily
    if not sys.platform.startswith("linux") or not b.exists():
        return False
    # ctypes only here: importing it (and ctypes.util's subprocess) cost `regauthd fix` a third of
    # its start. CDLL(None) is the C library this process runs on, without find_library's ldconfig.
    import ctypes  # noqa: PLC0415

    if _renameat2 is None:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = getattr(libc, "renameat2", None)
        if fn is None:
            _renameat2 = False
            return False
        fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
        fn.restype = ctypes.c_int
        _renameat2 = fn
    if _renameat2 is False:
        return False
    at_fdcwd = -100
    rc = _renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
        return False
    if err == errno.ENOENT:
        return False  # target vanished meanwhile: fall back to the checked rename
    raise OSError(err, os.strerror(err), str(b))
