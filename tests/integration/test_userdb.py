"""Users and groups read whole (``userdb``) answer as the C library does one at a time.

Each case runs in a mount namespace of its own (``unshare --mount``) with an ``/etc/passwd``,
``/etc/group`` and ``/etc/nsswitch.conf`` of the test's bind-mounted over the host's, and
compares :mod:`regauthd.dockerconfig.userdb` with ``getpwuid`` and ``getgrouplist`` for every
uid, once the whole read is due.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require_root

FIRST = 330_000
USERS = 100

PROBE = r"""
import json, os, pwd, sys
from regauthd.dockerconfig import userdb
uids = [int(u) for u in sys.argv[1:]]
for uid in uids[: userdb.WHOLE_AFTER]:
    userdb.user(uid)  # one at a time until the whole read is due
getpwuid, alone = pwd.getpwuid, []
def counted(uid):
    alone.append(uid)
    return getpwuid(uid)
pwd.getpwuid = counted  # what userdb still asks the C library one at a time
answers = []
for uid in uids:
    mine = userdb.user(uid)
    try:
        entry = getpwuid(uid)
    except KeyError:
        libc = None
    else:
        libc = [entry.pw_name, entry.pw_gid, sorted(os.getgrouplist(entry.pw_name, entry.pw_gid))]
    ours = None
    if mine is not None:
        ours = [mine.name, mine.gid, sorted(userdb.group_list(mine.name, mine.gid))]
    answers.append([uid, ours, libc])
print(json.dumps({"whole": userdb._whole is not None, "answers": answers, "alone": alone}))
"""


LEAVES = r"""
import os, sys, time
from regauthd.dockerconfig import fsidentity, userdb
userdb.LOOK_EVERY_S = 0.2
group_file, shared, first = sys.argv[1], sys.argv[2], int(sys.argv[3])
keep_stamp = sys.argv[4] == "keep-stamp"
userdb.ASK_AGAIN_S = float(sys.argv[5])
for uid in range(first, first + userdb.WHOLE_AFTER):
    userdb.user(uid)  # the whole read is due where the sources list everything
member = fsidentity.Owner.of_uid(first + 3, first + 3)  # in rgdudb-every3
folder = os.open(shared, os.O_RDONLY | os.O_DIRECTORY)
def can_read():
    with fsidentity.acting_as(member):
        try:
            os.close(os.open("secret", os.O_RDONLY, dir_fd=folder))
        except PermissionError:
            return False
        return True
before = can_read()
stamp = os.stat(group_file)
with open(group_file, "r+") as f:  # in place: the bind mount keeps this inode
    lines = [ln for ln in f.read().splitlines(keepends=True) if not ln.startswith("rgdudb-every3:")]
    f.seek(0)
    f.write("".join(lines))
    f.truncate()
if keep_stamp:  # as a directory service's change looks: the files untouched
    os.utime(group_file, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
time.sleep(0.3)
print(before, can_read())
"""


def databases(tmp_path: Path) -> tuple[Path, Path]:
    names = [f"rgdudb{i:03d}" for i in range(USERS)]
    passwd = tmp_path / "passwd"
    lines = [f"{n}:x:{FIRST + i}:{FIRST + i}::/nonexistent:/bin/sh\n" for i, n in enumerate(names)]
    lines.append(f"rgdudb-dup:x:{FIRST + 5}:{FIRST + 99}::/nonexistent:/bin/sh\n")  # first wins
    passwd.write_text(Path("/etc/passwd").read_text() + "".join(lines))
    group = tmp_path / "group"
    group.write_text(
        Path("/etc/group").read_text()
        + "".join(f"{n}:x:{FIRST + i}:\n" for i, n in enumerate(names))
        + f"rgdudb-every3:x:{FIRST - 1}:{','.join(names[::3])}\n"
        + f"rgdudb-every5:x:{FIRST - 2}:{','.join(names[::5])}\n"
        # a user listed as a member of its own primary group: counted once
        + f"rgdudb-self:x:{FIRST + 7}:{names[7]}\n"
    )
    return passwd, group


def with_databases(tmp_path: Path, nsswitch: str, code: str, *args: str) -> str:
    """The stdout of Python running ``code`` in a mount namespace of its own, where the test's
    users and groups (:func:`databases`, in ``tmp_path``) and ``nsswitch`` are bind-mounted
    over the host's files."""
    require_root("bind-mounts users' databases in a mount namespace of its own")
    passwd, group = databases(tmp_path)
    switch = tmp_path / "nsswitch.conf"
    switch.write_text(nsswitch)
    script = (
        'mount --bind "$0" /etc/passwd && mount --bind "$1" /etc/group && '
        'mount --bind "$2" /etc/nsswitch.conf && shift 2 && exec "$@"'
    )
    out = subprocess.run(
        ["unshare", "--mount", "--", "sh", "-c", script, passwd, group, switch,
         sys.executable, "-c", code, *args],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert out.stdout, out.stderr
    return out.stdout


def probe(tmp_path: Path, nsswitch: str) -> dict[str, Any]:
    uids = [str(FIRST + i) for i in range(USERS)] + [str(FIRST + 500), "0"]
    result: dict[str, Any] = json.loads(with_databases(tmp_path, nsswitch, PROBE, *uids))
    return result


@pytest.mark.parametrize(
    ("nsswitch", "whole"),
    [
        ("passwd: files\ngroup: files\n", True),
        ("passwd:   files systemd\ngroup: files [SUCCESS=merge] systemd\n", True),
        ("passwd: files ldap\ngroup: files ldap\n", False),  # a source that may list nothing
        ("group: files\n", False),  # passwd not named: the C library's default, not ours
    ],
)
def test_answers_are_the_c_librarys(tmp_path: Path, nsswitch: str, whole: bool) -> None:
    result = probe(tmp_path, nsswitch)
    assert result["whole"] is whole
    answers = result["answers"]
    assert len(answers) == USERS + 2
    for uid, ours, libc in answers:
        assert ours == libc, uid
    by_uid = {uid: ours for uid, ours, _ in answers}
    assert by_uid[FIRST + 500] is None  # no entry
    # Read whole, the sources list every entry: a uid not there has none, and is not asked for
    # again alone (each such lookup read the files and asked systemd's userdb: 92 us).
    assert result["alone"] == (
        [] if whole else [FIRST + i for i in range(USERS)] + [FIRST + 500, 0]
    )
    assert by_uid[FIRST + 5][:2] == [f"rgdudb{5:03d}", FIRST + 5]  # the first of two entries
    assert by_uid[FIRST + 15][2] == sorted([FIRST + 15, FIRST - 1, FIRST - 2])
    assert by_uid[FIRST + 7][2] == [FIRST + 7]


@pytest.mark.parametrize(
    ("nsswitch", "change", "ask_again"),
    [
        # The files change: seen within userdb.LOOK_EVERY_S (only the stamp can tell here).
        ("passwd: files\ngroup: files\n", "files", "1e9"),
        ("passwd: files ldap\ngroup: files ldap\n", "files", "1e9"),
        # A directory service's change (LDAP; systemd's records, read whole) leaves the files'
        # stamp as it was: seen once userdb.ASK_AGAIN_S has passed.
        ("passwd: files ldap\ngroup: files ldap\n", "keep-stamp", "0.25"),
        ("passwd: files systemd\ngroup: files systemd\n", "keep-stamp", "0.25"),
    ],
)
def test_a_user_taken_out_of_a_group_loses_it(
    tmp_path: Path, nsswitch: str, change: str, ask_again: str
) -> None:
    """Acting as a user grants the groups that user has now, not those it had when the service
    first acted as it (they were kept until the service restarted)."""
    require_root("bind-mounts users' databases in a mount namespace of its own")
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o755)
    secret = shared / "secret"
    secret.write_text("for rgdudb-every3 only\n")
    os.chown(secret, 0, FIRST - 1)
    secret.chmod(0o040)
    group = str(tmp_path / "group")  # written by databases()
    out = with_databases(
        tmp_path, nsswitch, LEAVES, group, str(shared), str(FIRST), change, ask_again
    )
    assert out.split() == ["True", "False"]
