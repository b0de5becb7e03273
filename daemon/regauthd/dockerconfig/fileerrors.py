"""What a config that cannot be read or replaced is told as: one line naming the cause and the
step that fixes it (a directory, a FIFO, a symlink loop, permissions)."""

from __future__ import annotations

import errno
import os
import pwd
import stat
from pathlib import Path

from regauthd.dockerconfig.jsontext import ConfigFileError


def check_type(path: Path, st: os.stat_result) -> None:
    if stat.S_ISDIR(st.st_mode):
        raise ConfigFileError(
            path,
            "is a directory, not a file; pass the directory that "
            "contains config.json, or the file itself",
        )
    if stat.S_ISLNK(st.st_mode):
        raise ConfigFileError(
            path, "is a symlink loop, or a symlink that changed while it was read; fix the link"
        )
    if not stat.S_ISREG(st.st_mode):
        raise ConfigFileError(
            path,
            f"is not a regular file ({file_kind(st.st_mode)}); refusing to read or replace it",
        )


def open_error(exc: OSError, path: Path) -> str:
    if exc.errno == errno.ELOOP:
        return "is a symlink loop; fix the link"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return permission_text(path)
    if exc.errno == errno.ENOTDIR:
        return "a component of the path is not a directory"
    return f"cannot be opened ({os.strerror(exc.errno or 0)})"


def permission_text(path: Path) -> str:
    """Why a config cannot be opened, and the one step that fixes it."""
    try:
        st = os.stat(path)
    except OSError:
        return (
            "permission denied: a directory on the way is closed to this user (for root's "
            "config, /root is usually mode 0700); run the command with sudo"
        )
    if st.st_uid != os.geteuid():
        me = user_name(os.geteuid())
        return (
            f"permission denied: the file belongs to {user_name(st.st_uid)} "
            f"(often left by `sudo docker login`); if it is yours, `sudo chown {me} {path}`, "
            "else run the command as its owner"
        )
    return f"permission denied (mode {stat.S_IMODE(st.st_mode):04o}); `chmod 600 {path}`"


def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def file_kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


__all__ = ["check_type", "open_error"]
