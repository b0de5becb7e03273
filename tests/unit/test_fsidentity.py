"""The owner's file-system identity for file operations (``setfsuid``/``setfsgid`` per thread)."""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path

import pytest

from regauthd.dockerconfig.fsidentity import Owner, acting_as, current, needed
from tests.conftest import require_root

NOBODY = Owner.of_uid(65534, 65534)


def test_the_thread_acts_as_the_owner_and_is_restored() -> None:
    require_root("switches the file-system identity")
    with tempfile.TemporaryDirectory(prefix="rgd-fsid-", dir="/tmp") as tmp:
        shared = Path(tmp)
        shared.chmod(0o777)
        private = shared / "roots"
        private.mkdir(mode=0o700)
        with acting_as(NOBODY):
            assert current() == (NOBODY.uid, NOBODY.gid)
            assert os.getgroups() in ([NOBODY.gid], [])  # only the owner's own groups
            created = shared / "made-as-nobody"
            created.write_text("x")
            with pytest.raises(PermissionError):
                os.listdir(private)
        assert current() == (0, 0)
        assert (created.stat().st_uid, created.stat().st_gid) == (NOBODY.uid, NOBODY.gid)
        assert os.listdir(private) == []  # root again


def test_restored_after_an_exception() -> None:
    require_root("switches the file-system identity")
    groups = os.getgroups()
    with pytest.raises(RuntimeError), acting_as(NOBODY):
        raise RuntimeError("inside")
    assert current() == (0, 0)
    assert os.getgroups() == groups


def test_other_threads_keep_roots_identity() -> None:
    require_root("switches the file-system identity")
    seen: list[tuple[int, int]] = []
    inside = threading.Event()
    done = threading.Event()

    def other() -> None:
        inside.wait(10)
        seen.append(current())
        done.set()

    thread = threading.Thread(target=other)
    thread.start()
    with acting_as(NOBODY):
        inside.set()
        done.wait(10)
        assert current() == (NOBODY.uid, NOBODY.gid)
    thread.join()
    assert seen == [(0, 0)]


def test_no_switch_for_root_or_when_not_root() -> None:
    assert not needed(None)
    assert not needed(Owner(0, 0))
    assert needed(NOBODY) == (os.geteuid() == 0)
    with acting_as(Owner(0, 0)):
        assert current() == (os.geteuid(), os.getegid())
