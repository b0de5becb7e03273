"""The directory holding a Docker config, opened once as a descriptor, and whose it is.

Every read and write of a config goes through a :class:`ConfigDir`: the directory opened once,
then ``openat``/``renameat2``/``unlinkat`` relative to that descriptor, so that swapping a
directory on the path between two steps cannot send the second step somewhere else.

As root on Linux (the system service over users' homes, or ``sudo regauthd fix``) it is
*guarded*:

- :func:`config_owner` says whose the config is: the ``st_uid`` of the deepest directory on
  its path reached without following a symlink a user could have made (a root-owned link in a
  root-owned directory nobody else can write, such as ``/home -> /var/home``, is followed).
- With that owner's identity (:func:`regauthd.dockerconfig.fsidentity.acting_as`) the path is
  resolved and the directory holding the file opened with ``openat2(RESOLVE_NO_SYMLINKS)``
  (``O_NOFOLLOW`` per component where there is no ``openat2``); it must belong to the owner.
  A symlinked ``config.json`` (or ``~/.docker``) is followed only to a directory the same
  owner owns; a link to root's, another user's or a system directory is refused in one line.

Not root (``regauthd fix`` on one's own file), the directory is opened by its path as before:
a link stays a link, and the kernel's own checks are the user's.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import pwd
import stat
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from regauthd.dockerconfig import nofollow
from regauthd.dockerconfig.fsidentity import Owner, acting_as
from regauthd.dockerconfig.jsontext import ConfigFileError
from regauthd.dockerconfig.nofollow import AT_FDCWD, DIR_FLAGS

_RENAME_EXCHANGE = 2
_LOCK_TRIES = 20


def guarded() -> bool:
    """Does this process act on configs as root (and so must hold each to its owner)?"""
    return sys.platform.startswith("linux") and os.geteuid() == 0


@dataclass(slots=True)
class ConfigDir:
    """The directory a config file is in, open; every operation on the file is relative to it."""

    fd: int
    name: str
    """The config file's name in the directory (the symlink's target name for a link)."""
    path: Path
    """The config as the caller named it."""
    real_path: Path
    """The file that is read and replaced (directory and name above)."""
    owner: Owner | None
    """Whose identity file operations use (None: this process's own, not root)."""
    identity: tuple[int, int]
    """(st_dev, st_ino) of the directory: a later open must find the same one."""

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> ConfigDir:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def acting(self) -> contextlib.AbstractContextManager[None]:
        """The owner's file-system identity, for the calls made on this directory."""
        return acting_as(self.owner)


def config_owner(path: Path) -> Owner:
    """Whose the config at ``path`` is: the owner of the deepest directory on its path reached
    without following a symlink that a user could have made or changed."""
    st = _plain_parent(path)
    if st is None:
        st = _walk_to_owner(path)
    return Owner.of_uid(st.st_uid, st.st_gid)


def _plain_parent(path: Path) -> os.stat_result | None:
    """The directory of ``path`` when no symlink at all is on the way to it (the common case:
    then it is the deepest directory the walk would reach; one open and one fstat instead of
    an lstat per level); None when there is one, or it is missing, or the path is relative or
    not normalized."""
    text = str(path)
    if not path.is_absolute() or os.path.normpath(text) != text:
        return None
    fd = nofollow.openat2(os.path.dirname(text), os.O_PATH | DIR_FLAGS)
    if fd < 0:
        return None
    try:
        return os.fstat(fd)
    finally:
        os.close(fd)


def _walk_to_owner(path: Path) -> os.stat_result:
    current = "/"
    st = os.lstat(current)
    for part in os.path.dirname(os.path.abspath(path)).split("/"):
        if not part:
            continue
        child = current + part if current == "/" else f"{current}/{part}"
        try:
            child_st = os.lstat(child)
        except OSError:
            break
        if stat.S_ISLNK(child_st.st_mode) and _root_controlled(child_st, st):
            child = os.path.realpath(child)
            try:
                child_st = os.lstat(child)
            except OSError:
                break
        if not stat.S_ISDIR(child_st.st_mode):
            break
        current, st = child, child_st
    return st


def _root_controlled(link: os.stat_result, parent: os.stat_result) -> bool:
    return link.st_uid == 0 and parent.st_uid == 0 and not parent.st_mode & 0o022


def owner_of(path: Path) -> Owner | None:
    """Whose identity operations on the config at ``path`` use: :func:`config_owner` when
    guarded (root on Linux), else None (this process's own)."""
    return config_owner(path) if guarded() else None


def open_config_dir(
    path: Path, *, real_path: Path | None = None, owner: Owner | None = None
) -> ConfigDir:
    """Open the directory of the config at ``path`` (see the module for the rules as root).

    ``real_path`` (from an earlier open) pins the file to the place found then; ``owner`` is
    :func:`owner_of`'s answer when the caller has it already. Raises
    ``FileNotFoundError`` when the directory does not exist, ``ConfigFileError`` when it may
    not be used, ``OSError`` otherwise.
    """
    if not guarded():
        real = real_path if real_path is not None else file_to_replace(path)
        fd = os.open(real.parent, DIR_FLAGS)
        st = os.fstat(fd)
        return ConfigDir(fd, real.name, path, real, None, (st.st_dev, st.st_ino))
    if owner is None:
        owner = config_owner(path)
    with acting_as(owner):
        plain = _open_if_plain(path) if real_path is None else None
        if plain is not None:
            return _owned_dir(plain, path, path, owner)
        real = real_path if real_path is not None else Path(os.path.realpath(path))
        try:
            fd = _open_no_symlinks(str(real.parent), path)
        except PermissionError:
            raise ConfigFileError(
                path,
                f"leads to {real.parent}, which its owner {user_name(owner.uid)} cannot open "
                "(permission denied); regauthd, running as root, acts on a user's config only "
                "as that user could, and left it alone",
            ) from None
    return _owned_dir(fd, path, real, owner)


def _owned_dir(fd: int, path: Path, real: Path, owner: Owner) -> ConfigDir:
    """The :class:`ConfigDir` for the open directory ``fd`` of ``real``, which must be
    ``owner``'s (else closed, and refused)."""
    try:
        st = os.fstat(fd)
        if st.st_uid != owner.uid:
            raise ConfigFileError(
                path,
                f"is in {real.parent}, which belongs to {user_name(st.st_uid)}, not to "
                f"{user_name(owner.uid)} whose config it is; regauthd, running as root, acts "
                "on a user's config only where that user could, and left it alone",
            )
    except BaseException:
        os.close(fd)
        raise
    return ConfigDir(fd, real.name, path, real, owner, (st.st_dev, st.st_ino))


def _open_if_plain(path: Path) -> int | None:
    """The directory of ``path`` opened when no symlink is on the way to the file, the file
    itself included (the common case: no ``realpath`` walk needed); None when there is one, or
    the path is relative or not normalized (the caller then resolves it). Raises what opening
    the directory raises, except the refusals a resolved path may not meet."""
    text = str(path)
    if not path.is_absolute() or os.path.normpath(text) != text:
        return None
    try:
        fd = _open_no_symlinks(os.path.dirname(text), path)
    except (ConfigFileError, PermissionError):
        return None  # a symlink on the way, or a refusal: said with the resolved path
    try:
        st = os.lstat(path.name, dir_fd=fd)
    except FileNotFoundError:
        return fd  # no file yet: nothing to resolve
    except OSError:
        st = None
    if st is None or stat.S_ISLNK(st.st_mode):
        os.close(fd)
        return None
    return fd


def file_to_replace(path: Path) -> Path:
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


def _open_no_symlinks(directory: str, config: Path) -> int:
    """Open ``directory`` (absolute) following no symlink at all."""
    fd = nofollow.openat2(directory, DIR_FLAGS)
    if fd == -errno.ENOSYS:
        fd = nofollow.walk(directory, DIR_FLAGS)
    if fd >= 0:
        return fd
    if fd == -errno.ELOOP:
        raise _symlink_refused(config, directory)
    raise OSError(-fd, os.strerror(-fd), directory)


def _symlink_refused(config: Path, directory: str) -> ConfigFileError:
    return ConfigFileError(
        config,
        f"is reached through a symlink that changed or leads out of its owner's directories "
        f"({directory}); regauthd, running as root, left it alone",
    )


def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


# -- the save's steps, relative to the directory ------------------------------------------------

_renameat2: Any = None


def exchange(directory: ConfigDir, a: str, b: str) -> bool:
    """Atomically swap two names in ``directory`` (Linux renameat2). False when the platform
    or file system cannot, or ``b`` is absent."""
    import ctypes  # noqa: PLC0415 - loaded only where used: never by `fix` on one's own file

    global _renameat2  # noqa: PLW0603 - resolved once, lazily
    if not sys.platform.startswith("linux"):
        return False
    if _renameat2 is None:
        libc = ctypes.CDLL(None, use_errno=True)  # the C library already loaded: no ldconfig run
        fn = getattr(libc, "renameat2", None)
        if fn is None:
            _renameat2 = False
            return False
        fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
        fn.restype = ctypes.c_int
        _renameat2 = fn
    if _renameat2 is False:
        return False
    rc = _renameat2(directory.fd, os.fsencode(a), directory.fd, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.ENOENT):
        return False  # no exchange here, or the target vanished: the checked rename instead
    raise OSError(err, os.strerror(err), str(directory.real_path))


def exchange_paths(a: str, b: str) -> None:
    """Swap two paths (tests: what an attacker does with ``renameat2`` in a loop)."""
    exchange(ConfigDir(AT_FDCWD, "", Path(b), Path(b), None, (0, 0)), a, b)


def exchange_hook(variable: str) -> Callable[[], None] | None:
    """Tests only: a function swapping the two paths named in the environment ``variable``
    (``os.pathsep`` between), or None (production: the variable is not set)."""
    value = os.environ.get(variable)
    if not value:
        return None
    a, b = value.split(os.pathsep, 1)

    def swap() -> None:
        with contextlib.suppress(OSError):
            exchange_paths(a, b)

    return swap


def lock_for_save(directory: ConfigDir, temp_prefix: str) -> None:
    """Hold a shared lock on the directory while saving, after removing temp files that
    crashed saves left (when no other regauthd save is running there; see
    :func:`remove_stale_temps`). Locks are released with the descriptor. Never blocks: a
    directory its owner keeps locked is saved to unlocked after a few tries."""
    remove_stale_temps(directory, temp_prefix, keep_lock=True)
    for _ in range(_LOCK_TRIES):
        try:
            # From exclusive (just had) or nothing to shared; non-blocking, as the owner could
            # take the lock in between and hold it.
            fcntl.flock(directory.fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            time.sleep(0.0002)  # another process removing stale temp files: microseconds


def remove_stale_temps(directory: ConfigDir, temp_prefix: str, *, keep_lock: bool = False) -> bool:
    """Remove the temp files (``temp_prefix``) that saves killed mid-way (SIGKILL, power loss)
    left beside the config: they hold full credentials. Only ours: the prefix, a regular file
    (never a symlink), owned by the config's owner (or this process). Only while no regauthd
    save is running in the directory (each holds a shared lock; this needs it exclusively).
    Returns whether the exclusive lock was had (kept when ``keep_lock``)."""
    try:
        fcntl.flock(directory.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    try:
        owner_uid = directory.owner.uid if directory.owner is not None else os.geteuid()
        with directory.acting():
            for name in os.listdir(directory.fd):
                if not name.startswith(temp_prefix):
                    continue
                with contextlib.suppress(OSError):
                    st = os.lstat(name, dir_fd=directory.fd)
                    if stat.S_ISREG(st.st_mode) and st.st_uid in (owner_uid, os.geteuid()):
                        os.unlink(name, dir_fd=directory.fd)
    finally:
        if not keep_lock:
            fcntl.flock(directory.fd, fcntl.LOCK_UN)
    return True
