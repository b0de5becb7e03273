"""dockerconfig.ownwrites: each temp name this process renamed into place is claimed once."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from regauthd.dockerconfig import ownwrites


@pytest.fixture(autouse=True)
def empty() -> Iterator[None]:
    saved, recording = dict(ownwrites._names), ownwrites._recording
    ownwrites.record(True)
    yield
    ownwrites.record(recording)
    ownwrites._names.update(saved)


def test_nothing_is_remembered_while_no_watcher_claims_names() -> None:
    ownwrites.add(".regauthd-tmp-0000aa")
    ownwrites.record(False)  # the watcher closed, or one that does not pair renames
    ownwrites.add(".regauthd-tmp-0000bb")
    ownwrites.record(True)
    assert not ownwrites.claim(".regauthd-tmp-0000aa")
    assert not ownwrites.claim(".regauthd-tmp-0000bb")
    assert not ownwrites._names


def test_a_name_is_ours_once_and_only_after_it_was_added() -> None:
    assert not ownwrites.claim(".regauthd-tmp-0a1b2c")  # never ours
    ownwrites.add(".regauthd-tmp-0a1b2c")
    assert ownwrites.claim(".regauthd-tmp-0a1b2c")
    assert not ownwrites.claim(".regauthd-tmp-0a1b2c")  # a second rename from it is not ours


def test_a_rename_that_did_not_happen_is_not_ours() -> None:
    ownwrites.add(".regauthd-tmp-000001")
    ownwrites.discard(".regauthd-tmp-000001")
    assert not ownwrites.claim(".regauthd-tmp-000001")


def test_past_the_limit_the_oldest_names_are_forgotten() -> None:
    names = [f".regauthd-tmp-{i:012x}" for i in range(ownwrites.LIMIT + 2)]
    for name in names:
        ownwrites.add(name)
    assert not ownwrites.claim(names[0])
    assert not ownwrites.claim(names[1])
    assert ownwrites.claim(names[2])
    assert ownwrites.claim(names[-1])
