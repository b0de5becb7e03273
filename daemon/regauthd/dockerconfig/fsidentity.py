"""Acting on a user's files with that user's file-system identity (Linux ``setfsuid``).

The system service runs as root over users' homes. Every file-system call it makes on a user's
tree is made inside :func:`acting_as` the owner of that tree: the calling thread's fsuid and
fsgid become the owner's and its supplementary groups the owner's own, so the kernel grants
exactly what that user could do (root's ``CAP_DAC_OVERRIDE`` and ``CAP_FOWNER`` do not apply to
a thread whose fsuid is not 0). On Linux these credentials are per thread: other threads keep
root's. The switch is undone on the way out, exceptions included, and checked both ways
(``setfsuid`` reports no errors: calling it again returns what is in force).

Not root, the owner being root, or not Linux (macOS runs no system service over homes): no-op.

Who the owner is, is :func:`regauthd.dockerconfig.configdir.config_owner`'s answer (the
directory's ``st_uid``, never the name in the path): ``Owner`` here is only the pair to act as.
"""

from __future__ import annotations

import contextlib
import os
import platform
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from regauthd.dockerconfig import userdb


@dataclass(frozen=True, slots=True)
class Owner:
    """Whose a config's tree is: the uid and (primary) gid to act as."""

    uid: int
    gid: int

    @classmethod
    def of_uid(cls, uid: int, fallback_gid: int) -> Owner:
        """The owner ``uid`` with its primary group (``fallback_gid`` when it has no passwd
        entry: a uid a container or NSS no longer knows). Looked up once per uid while
        :func:`userdb.stamp` holds."""
        stamp = userdb.stamp()
        known = _owners.get(uid)
        if known is not None and known[0] == stamp:
            return known[1] if known[1] is not None else cls(uid, fallback_gid)
        found = userdb.user(uid)
        # A uid with no entry is remembered too: each failed lookup reads the whole password
        # database (117 us each, measured with 10,000 homes whose uids have no entry).
        _owners[uid] = (stamp, None if found is None else cls(uid, found.gid))
        return cls(uid, fallback_gid if found is None else found.gid)

    @property
    def is_root(self) -> bool:
        return self.uid == 0


class IdentitySwitchError(OSError):
    """The kernel did not switch (no CAP_SETUID/CAP_SETGID, or seccomp refused it)."""


# Syscall numbers of setgroups (the C library's setgroups changes every thread; the raw
# syscall only the calling one). An architecture not listed keeps the process's groups.
_SETGROUPS = {"x86_64": 116, "aarch64": 159, "riscv64": 159, "ppc64le": 81, "s390x": 206}

_owners: dict[int, tuple[tuple[int, ...], Owner | None]] = {}
_thread = threading.local()
"""``owner``: whose identity the calling thread acts with now (absent: its own)."""

_libc: Any = None
_setgroups_nr: Any = None
"""The setgroups syscall's number as a C long; None where the architecture is not listed."""
_root_groups: tuple[int, ...] | None = None
_user_groups: dict[tuple[int, int], tuple[tuple[int, ...], tuple[int, ...]]] = {}
"""Each owner's groups, with the :func:`userdb.stamp` they were read under: a user taken out of
a group loses it here when the files change or :data:`userdb.ASK_AGAIN_S` has passed, not at
the next restart."""


def needed(owner: Owner | None) -> bool:
    """Would :func:`acting_as` switch for ``owner`` in this process?"""
    return (
        owner is not None
        and not owner.is_root
        and sys.platform.startswith("linux")
        and os.geteuid() == 0
    )


@contextlib.contextmanager
def acting_as(owner: Owner | None) -> Iterator[None]:
    """Make the calling thread's file-system calls with ``owner``'s identity until exit."""
    if not needed(owner) or getattr(_thread, "owner", None) == owner:
        yield  # nothing to switch, or switched already (nested: the caller's block restores)
        return
    assert owner is not None  # noqa: S101 - needed() said so
    outer = getattr(_thread, "owner", None)
    libc = _calls()
    groups = _groups_of(owner)
    old_gid = _switch(libc.setfsgid, owner.gid, "fsgid")
    try:
        _set_thread_groups(libc, groups)
        try:
            old_uid = _switch(libc.setfsuid, owner.uid, "fsuid")
            _thread.owner = owner
            try:
                yield
            finally:
                _thread.owner = outer
                _switch(libc.setfsuid, old_uid, "fsuid")
        finally:
            _set_thread_groups(libc, _groups_of(outer) if outer else _process_groups())
    finally:
        _switch(libc.setfsgid, old_gid, "fsgid")


def reset_thread() -> None:
    """Give the calling thread the process's own file-system identity. A new thread starts with
    its creator's credentials: one started inside :func:`acting_as` would otherwise act as that
    user for good (and fail on every other user's files)."""
    if not (sys.platform.startswith("linux") and os.geteuid() == 0):
        return
    libc = _calls()
    _switch(libc.setfsgid, os.getegid(), "fsgid")
    _set_thread_groups(libc, _process_groups())
    _switch(libc.setfsuid, os.geteuid(), "fsuid")
    _thread.owner = None


def current() -> tuple[int, int]:
    """The calling thread's (fsuid, fsgid) (Linux; tests and diagnostics)."""
    import ctypes  # noqa: PLC0415 - loaded only where used: never by `fix` on one's own file

    libc = _calls()
    invalid = ctypes.c_uint(0xFFFFFFFF).value  # an invalid id changes nothing, returns the current
    return libc.setfsuid(invalid), libc.setfsgid(invalid)


def _switch(call: Any, new: int, what: str) -> int:
    old: int = call(new)
    now: int = call(new)
    if now != new:
        raise IdentitySwitchError(
            1,
            f"setting the {what} to {new} did not take effect (it is {now}): "
            "the service needs CAP_SETUID and CAP_SETGID to act as a config's owner",
        )
    return old


def _calls() -> Any:
    import ctypes  # noqa: PLC0415 - loaded only where used: never by `fix` on one's own file

    global _libc  # noqa: PLW0603 - bound once, lazily
    if _libc is None:
        # The C library already loaded (no ldconfig run), called with the GIL held: these calls
        # return at once, and releasing the GIL around each handed it to another repair thread
        # up to eight times per switch.
        libc = ctypes.PyDLL(None, use_errno=True)
        for name in ("setfsuid", "setfsgid"):
            fn = getattr(libc, name)
            fn.argtypes = [ctypes.c_uint]
            fn.restype = ctypes.c_int
        libc.syscall.restype = ctypes.c_long
        global _setgroups_nr  # noqa: PLW0603 - bound once with the library
        number = _SETGROUPS.get(platform.machine())
        _setgroups_nr = None if number is None else ctypes.c_long(number)
        _libc = libc
    return _libc


def _process_groups() -> tuple[int, ...]:
    global _root_groups  # noqa: PLW0603 - the process's own groups, read once
    if _root_groups is None:
        _root_groups = tuple(os.getgroups())
    return _root_groups


def _groups_of(owner: Owner) -> tuple[int, ...]:
    stamp = userdb.stamp()
    known_groups = _user_groups.get((owner.uid, owner.gid))
    if known_groups is not None and known_groups[0] == stamp:
        return known_groups[1]
    known = _owners.get(owner.uid)
    found: tuple[int, ...]
    try:
        if known is not None and known[0] == stamp and known[1] is None:
            raise KeyError(owner.uid)  # no passwd entry (remembered by Owner.of_uid)
        entry = userdb.user(owner.uid)
        if entry is None:
            raise KeyError(owner.uid)
        found = userdb.group_list(entry.name, owner.gid)
    except (KeyError, OSError):
        found = (owner.gid,)
    _user_groups[(owner.uid, owner.gid)] = (stamp, found)
    return found


def _set_thread_groups(libc: Any, groups: tuple[int, ...]) -> None:
    import ctypes  # noqa: PLC0415 - loaded only where used: never by `fix` on one's own file

    if _setgroups_nr is None:
        return
    _process_groups()  # remembered before the first change
    array = (ctypes.c_uint * max(len(groups), 1))(*groups)
    if libc.syscall(_setgroups_nr, ctypes.c_size_t(len(groups)), array) != 0:
        err = ctypes.get_errno()
        raise IdentitySwitchError(err, f"setgroups for this thread: {os.strerror(err)}")
