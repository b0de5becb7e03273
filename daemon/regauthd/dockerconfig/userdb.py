"""Users and their groups, for acting as a config's owner: looked up one at a time, or read
whole once when a host has many of them in plain files.

The C library answers ``getpwuid`` and ``getgrouplist`` from ``/etc/passwd`` and ``/etc/group``
by reading the file from the top each time: with 10,000 users in each, 541 us and 885 us per
call on the bench machine, so a daemon starting over 10,000 homes spent 20 s on it. Reading both
databases whole (``getpwall``/``getgrall``) took 9 ms and 5 ms there. So after
:data:`WHOLE_AFTER` users looked up one at a time, and only when ``/etc/nsswitch.conf`` names
nothing but sources that list every entry (``files``, ``systemd``; a directory service may list
none or a part), the answers come from one whole read, made again whenever ``/etc/passwd``,
``/etc/group`` or ``/etc/nsswitch.conf`` changes and every :data:`ASK_AGAIN_S` (:func:`stamp`,
which the callers' own memories are keyed on too). A uid not in it has no
entry. The answers are the same either way: the tests compare them with the C library's. (A
record systemd adds or changes without touching those files, a homed or dynamic user, is seen
at the next whole read: until then, acting as a new uid with the directory's group and no
supplementary ones grants less, never more.)
"""

from __future__ import annotations

import grp
import os
import pwd
import threading
import time
from dataclasses import dataclass

WHOLE_AFTER = 32
"""Users looked up one at a time before the databases are read whole."""
LOOK_EVERY_S = 1.0
"""How long :func:`stamp` trusts its last look at the files: a change to a user or a group takes
effect within it. Looking at the three files on every lookup made about 10 of the 32 ``stat``
calls of a config's first repair by the root service."""
ASK_AGAIN_S = 60.0
"""How long answers about users and groups hold while the files are unchanged (the whole read
here, the owners and groups ``fsidentity`` remembers): a directory service (LDAP, SSSD) or
systemd's records change a membership without touching the files."""
_FILES = ("/etc/passwd", "/etc/group", "/etc/nsswitch.conf")
_LISTING_SOURCES = frozenset({"files", "systemd"})


@dataclass(frozen=True, slots=True)
class User:
    name: str
    gid: int


@dataclass(frozen=True, slots=True)
class _Whole:
    stamp: tuple[int, ...]
    users: dict[int, User]
    groups: dict[str, tuple[int, ...]]
    """Each user name's supplementary groups (as ``/etc/group`` lists its members)."""


_asked = 0
"""Users looked up one at a time so far."""
_whole: _Whole | None = None
_not_listing: tuple[int, ...] | None = None
"""The stamp of the files for which ``nsswitch.conf`` named a source that may not list all."""
_reading = threading.Lock()
_looked: tuple[float, tuple[int, ...]] | None = None
"""When the files were last looked at (monotonic), and their stamp then."""
_stamped: tuple[tuple[int, ...], int, tuple[int, ...]] | None = None
"""The last :func:`stamp`, with the files' stamp and the period it was made from."""


def user(uid: int) -> User | None:
    """``uid``'s name and primary group; None when it has no entry."""
    global _asked  # noqa: PLW0603 - counted for the process
    whole = _read_whole()
    if whole is not None:
        # These sources list every entry: a uid not listed has none. Asking again alone would
        # read the files and ask systemd's userdb each time (92 us per uid on the bench
        # machine, for answers that would be the same).
        return whole.users.get(uid)
    _asked += 1
    try:
        entry = pwd.getpwuid(uid)
    except KeyError:
        return None
    return User(entry.pw_name, entry.pw_gid)


def group_list(name: str, gid: int) -> tuple[int, ...]:
    """The groups of the user ``name`` whose primary group is ``gid`` (``getgrouplist``)."""
    whole = _read_whole()
    if whole is None:
        return tuple(os.getgrouplist(name, gid))
    return (gid, *(g for g in whole.groups.get(name, ()) if g != gid))


def _read_whole() -> _Whole | None:
    """The whole read, made (again) when due; None when lookups stay one at a time."""
    global _whole, _not_listing  # noqa: PLW0603 - one read for the process, replaced whole
    if _asked < WHOLE_AFTER:
        return None
    # Also made again every ASK_AGAIN_S (9 + 5 ms at 10,000 users): systemd's records change
    # without the files.
    now = stamp()
    if _whole is not None and _whole.stamp == now:
        return _whole
    if _not_listing == now:
        return None  # decided for these files already: nsswitch.conf is not read each time
    with _reading:  # getpwall/getgrall walk the C library's one enumeration: one at a time
        if _whole is not None and _whole.stamp == now:
            return _whole
        if not _lists_everything():
            _not_listing = now
            return None
        users: dict[int, User] = {}
        for entry in pwd.getpwall():
            users.setdefault(entry.pw_uid, User(entry.pw_name, entry.pw_gid))  # the first wins
        groups: dict[str, list[int]] = {}
        for group in grp.getgrall():
            for member in group.gr_mem:
                if group.gr_gid not in groups.setdefault(member, []):
                    groups[member].append(group.gr_gid)
        _whole = _Whole(now, users, {k: tuple(v) for k, v in groups.items()})
        return _whole


def stamp() -> tuple[int, ...]:
    """What any answer about users and groups holds under: the modification times and inodes of
    ``/etc/passwd``, ``/etc/group`` and ``nsswitch.conf`` (looked at no more than once every
    :data:`LOOK_EVERY_S`) and the current period of :data:`ASK_AGAIN_S`. The same tuple while
    they hold: each remembered answer keeps a reference, not a copy (a copy each was 2.5 MiB at
    10,000 users)."""
    global _looked, _stamped  # noqa: PLW0603 - one stamp for the process, replaced whole
    now = time.monotonic()
    looked = _looked
    if looked is None or now - looked[0] >= LOOK_EVERY_S:
        looked = _looked = (now, _stat_files())
    period = int(now // ASK_AGAIN_S)
    stamped = _stamped
    if stamped is not None and stamped[0] == looked[1] and stamped[1] == period:
        return stamped[2]
    key = (*looked[1], period)
    _stamped = (looked[1], period, key)
    return key


def _stat_files() -> tuple[int, ...]:
    out = []
    for path in _FILES:
        try:
            st = os.stat(path)
        except OSError:
            out += [0, 0]
            continue
        out += [st.st_mtime_ns, st.st_ino]
    return tuple(out)


def _lists_everything() -> bool:
    """Do ``passwd`` and ``group`` come only from sources that list every entry?"""
    try:
        with open("/etc/nsswitch.conf", encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return False
    sources: dict[str, list[str]] = {}
    for line in lines:
        key, sep, rest = line.partition("#")[0].partition(":")
        if sep and key.strip() in ("passwd", "group"):
            sources[key.strip()] = [w for w in rest.split() if not w.startswith("[")]
    return all(
        name in sources and sources[name] and set(sources[name]) <= _LISTING_SOURCES
        for name in ("passwd", "group")
    )
