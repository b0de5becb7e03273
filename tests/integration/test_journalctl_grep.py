"""The journalctl backend filters with `journalctl --grep` (issue 9, item 5): on the same journal
files it finds exactly what the unfiltered read and the systemd-python backend find, while
journalctl hands over only the entries whose message holds a pre-filter word; a journalctl that
refuses the pattern is read unfiltered."""

from __future__ import annotations

import select
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from regauthd.journal import journalctl
from regauthd.journal.backend import FollowOptions
from regauthd.journal.exportstream import split_entries
from regauthd.journal.journalctl import JournalctlFollower, grep_accepted, grep_pattern
from regauthd.journal.recognize import (
    DEFAULT,
    AuthFailure,
    Recognizer,
    compile_patterns,
    rule_literals,
)
from regauthd.journal.scan import scan
from tests.conftest import require_journal_backend, require_program
from tests.rigs.journald import write_export, write_journal

FIXTURES = Path(__file__).parents[1] / "fixtures" / "journal"
SINCE = datetime(2026, 1, 1, tzinfo=UTC)
UNITS = ("docker.service", "containerd.service", "gitlab-runner.service", "actions.runner.*")
DOCKER = "docker.service"

# Entries that test the filter's edges: case, bytes that are not UTF-8, several lines, the
# words only outside MESSAGE, container output, no MESSAGE at all.
EDGES: list[dict[str, str | bytes]] = [
    {
        "MESSAGE": 'level=error msg="Not continuing with push after error" error="UNAUTHORIZED: '
        'authentication required"',
        "_SYSTEMD_UNIT": DOCKER,
    },
    {
        "MESSAGE": b'level=error msg="x \xff\xfe" error="denied: requested access to the resource '
        b'is denied"',
        "_SYSTEMD_UNIT": DOCKER,
    },
    {
        "MESSAGE": 'Error response from daemon: Get "https://ghcr.io/v2/":\nunauthorized: '
        "Authentication Required",
        "_SYSTEMD_UNIT": DOCKER,
    },
    {"MESSAGE": "toomanyrequests: You have reached your pull rate limit.", "_SYSTEMD_UNIT": DOCKER},
    {
        "MESSAGE": 'level=info msg="layer pulled"',
        "ERROR": "unauthorized: x",
        "_SYSTEMD_UNIT": DOCKER,
    },
    {
        "MESSAGE": "unauthorized: authentication required",
        "CONTAINER_ID": "4f4fb700ef54",
        "_SYSTEMD_UNIT": DOCKER,
    },
    {"NOTE": "no message here: unauthorized", "_SYSTEMD_UNIT": DOCKER},
    {"MESSAGE": 'level=info msg="API listen on /run/docker.sock"', "_SYSTEMD_UNIT": DOCKER},
    {"MESSAGE": "mkdir /var/lib/docker/x: permission denied", "_SYSTEMD_UNIT": DOCKER},
]


@pytest.fixture
def journal_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "journal"
    for export in sorted(FIXTURES.glob("*.export")):
        write_export(directory, export.read_bytes(), name=export.stem)
    chatter = [
        {"MESSAGE": f'level=info msg="pulled layer {n}"', "_SYSTEMD_UNIT": DOCKER}
        for n in range(200)
    ]
    write_journal(
        directory, [*EDGES, *chatter], name="edges", start=datetime(2026, 11, 30, 13, 0, tzinfo=UTC)
    )
    return directory


def _read(options: FollowOptions, *, grep: bool) -> tuple[list[AuthFailure], JournalctlFollower]:
    follower = JournalctlFollower(options, None, since=SINCE, follow=False, grep=grep)
    found: list[AuthFailure] = []
    try:
        while not follower.finished:
            select.select([follower.fileno()], [], [], 5)
            found += follower.process()
    finally:
        follower.close()
    return found, follower


def test_grep_finds_exactly_what_the_unfiltered_read_finds(journal_dir: Path) -> None:
    require_journal_backend("journalctl")
    options = FollowOptions(directory=journal_dir, backend="journalctl", units=UNITS)
    filtered, with_grep = _read(options, grep=True)
    unfiltered, without = _read(options, grep=False)
    assert with_grep.grep == grep_pattern(DEFAULT) and without.grep is None
    assert filtered == unfiltered
    assert len(filtered) >= 20
    # the edges: upper case, bytes that are not UTF-8 and a second line all reach the rules
    messages = "\n".join(f.message for f in filtered)
    assert "UNAUTHORIZED: authentication required" in messages
    assert "Authentication Required" in messages and "requested access" in messages
    # journalctl did the filtering: far fewer entries crossed the pipe
    assert with_grep.entries_read * 3 < without.entries_read
    # and the systemd-python backend agrees
    require_journal_backend("systemd")
    systemd_options = FollowOptions(directory=journal_dir, backend="systemd", units=UNITS)
    assert list(scan(systemd_options, since=SINCE)) == filtered
    assert list(scan(options, since=SINCE)) == filtered  # scan uses --grep too


def test_extra_patterns_read_every_entry(journal_dir: Path) -> None:
    require_journal_backend("journalctl")
    extra = Recognizer(compile_patterns([r"layer pulled"]))
    assert grep_pattern(extra) is None
    options = FollowOptions(
        directory=journal_dir, backend="journalctl", units=(DOCKER,), recognizer=extra
    )
    found, follower = _read(options, grep=True)
    assert follower.grep is None
    assert any("layer pulled" in f.message for f in found)


def test_a_refused_pattern_falls_back_to_reading_everything(
    journal_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """journalctl refuses a pattern it cannot compile (as one without PCRE2 refuses any):
    the follower asks once, then reads unfiltered and finds the same."""
    program = require_program("journalctl", "systemd")
    assert grep_accepted(program, grep_pattern(DEFAULT) or "")
    assert not grep_accepted(program, "(unclosed")
    options = FollowOptions(directory=journal_dir, backend="journalctl", units=UNITS)
    expected, _ = _read(options, grep=False)
    monkeypatch.setattr(journalctl, "grep_pattern", lambda recognizer: "(unclosed")
    found, follower = _read(options, grep=True)
    assert follower.grep is None
    assert found == expected


# Where a phrase may stand: the characters the rules let an error code follow (and the start),
# and what may come after it; and the words two rules want around theirs.
_BEFORE = ("", " ", "\t", '"', "'", ":", "(", "\n", 'error="')
_BEFORE += ("You have reached your ", "You have reached your unknown ")
_AFTER = ("", ": retry", '"', " x", "\n", "\\n", "unexpected status: 401 Unauthorized")


def _cases(phrase: str) -> set[str]:
    """The phrase in the cases the rules accept: lowered, they are the phrase again."""
    mixed = "".join(c.upper() if i % 2 else c for i, c in enumerate(phrase))
    variants = {phrase, phrase.upper(), phrase.title(), mixed, mixed.swapcase()}
    variants.add(phrase.replace("k", "\u212a"))  # the Kelvin sign lowers to k
    variants.add(phrase.replace("i", "\u0130"))  # dotted I lowers to two characters: refused
    return {v for v in variants if v.lower() == phrase}


def test_journalctl_keeps_every_phrase_the_rules_accept(tmp_path: Path) -> None:
    """The pre-filter is complete: every rule phrase, in every case the rules accept, wherever
    the rules accept it, is kept by the real journalctl --grep; look-alikes are not."""
    program = require_program("journalctl", "systemd")
    require_journal_backend("journalctl")
    accepted: set[str] = set()
    for phrase in rule_literals():
        kinds = set()
        for text in _cases(phrase):
            for before in _BEFORE:
                for after in _AFTER:
                    line = f"{before}{text}{after}"
                    if DEFAULT.find(line) is not None:
                        accepted.add(line)
                        kinds.add(text)
        assert kinds == _cases(phrase) and len(kinds) >= 4, phrase  # each case form was tried
    look_alikes = {
        "Trying to pull acme/unauthorized from https://registry-1.docker.io",
        "mkdir /var/lib/docker/overlay2/x: permission denied",
        "pulled acme/toomanyrequests-bot:latest",
        "image sha256-denied: none",
    }
    assert not any(DEFAULT.find(line) for line in look_alikes)
    directory = tmp_path / "journal"
    entries = [{"MESSAGE": m, "_SYSTEMD_UNIT": DOCKER} for m in sorted(accepted | look_alikes)]
    write_journal(directory, entries, start=datetime(2026, 11, 30, 13, 0, tzinfo=UTC))
    pattern = grep_pattern(DEFAULT)
    assert pattern is not None
    argv = [program, f"--directory={directory}", "-o", "export", "--output-fields=MESSAGE"]
    proc = subprocess.run(
        [*argv, f"--grep={pattern}", "--case-sensitive=false", "--no-pager"],
        capture_output=True,
        check=True,
        timeout=60,
    )
    kept, used = split_entries(proc.stdout)
    assert used == len(proc.stdout)
    messages = {e[b"MESSAGE"].decode() for e in kept}
    assert messages == accepted, sorted(accepted - messages)[:5]
    assert len(accepted) > 2000
