"""The user a credential helper runs as (:class:`HelperUser`) and who that is for a config.

When this process is root and the config belongs to another user (the owner of the directory
holding ``config.json``), the helper runs as that user: uid, gid and supplementary groups from
the password and group databases, a clean environment (HOME, USER, LOGNAME, a fixed PATH,
``XDG_RUNTIME_DIR`` when ``/run/user/UID`` exists; nothing of root's, no ``GNUPGHOME``), the
working directory their home. Their own ``pass`` store and gpg-agent then answer, and root's
are never touched.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import stat
from dataclasses import dataclass
from pathlib import Path

from regauthd.dockerconfig import configdir
from regauthd.dockerconfig.helperprogram import HelperRunError


@dataclass(frozen=True, slots=True)
class HelperUser:
    """The user a helper runs as (root's service acting for the owner of a config)."""

    uid: int
    gid: int
    groups: tuple[int, ...]
    name: str
    home: str

    @classmethod
    def lookup(cls, uid: int) -> HelperUser:
        """From the password and group databases; :class:`HelperRunError` when unknown."""
        try:
            entry = pwd.getpwuid(uid)
        except KeyError:
            raise HelperRunError(
                f"uid {uid} owns the config but has no password entry: its credential helpers "
                "are not run"
            ) from None
        try:
            groups = tuple(os.getgrouplist(entry.pw_name, entry.pw_gid))
        except OSError:
            groups = (entry.pw_gid,)
        return cls(uid, entry.pw_gid, groups, entry.pw_name, entry.pw_dir or "/")

    def environment(self, path: str) -> dict[str, str]:
        """A login-like environment of this user's own: nothing inherited from root."""
        env = {
            "HOME": self.home,
            "USER": self.name,
            "LOGNAME": self.name,
            "PATH": path,
            "LANG": "C.UTF-8",
        }
        runtime = f"/run/user/{self.uid}"
        with contextlib.suppress(OSError):
            if stat.S_ISDIR(os.lstat(runtime).st_mode) and os.lstat(runtime).st_uid == self.uid:
                env["XDG_RUNTIME_DIR"] = runtime
        return env


def config_owner(config: Path | str) -> int | None:
    """The uid whose identity runs the helpers ``config`` names (None: it cannot be looked at):
    :func:`regauthd.dockerconfig.configdir.config_owner`, the one rule the file work uses too
    (the deepest directory reached without following a symlink a user could have made), so a
    user's link to root's directory never makes root run what the user's file names."""
    try:
        return configdir.config_owner(Path(config)).uid
    except OSError:
        return None


__all__ = ["HelperUser", "config_owner"]
