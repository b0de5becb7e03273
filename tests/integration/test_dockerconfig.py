"""Reading refuses what is not a sane regular file; saving is atomic and loses no write."""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
import threading
from pathlib import Path

import pytest

from regauthd.dockerconfig import file as dockerconfig
from regauthd.dockerconfig import jsontext
from regauthd.dockerconfig.backups import BackupStore
from regauthd.dockerconfig.configdir import ConfigDir
from regauthd.dockerconfig.fixer import first_backup_due, fix_file
from regauthd.dockerconfig.jsontext import ConfigFileError, ConfigSyntaxError
from regauthd.dockerconfig.keys import HUB_CANONICAL
from regauthd.dockerconfig.merge import merge_config_bytes, merge_three_way
from tests.conftest import unavailable

SECRET = "c2VjcmV0dXNlcjpzM2NyZXQ="  # secretuser:s3cret


def write(path: Path, config: dict[str, object]) -> bytes:
    data = json.dumps(config, indent="\t").encode()
    path.write_bytes(data)
    return data


def docker_style_write(path: Path, data: bytes) -> None:
    """What `docker login` does: temp file in the same directory, then rename over the config."""
    tmp = path.parent / f"config.json{os.getpid()}{threading.get_ident()}"
    tmp.write_bytes(data)
    os.replace(tmp, path)


@pytest.mark.parametrize("kind", ["fifo", "directory", "chardev", "huge", "loop"])
def test_refuses_non_regular_files_without_blocking_or_touching_them(
    tmp_path: Path, kind: str
) -> None:
    target = tmp_path / "config.json"
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "directory":
        target.mkdir()
    elif kind == "chardev":
        target.symlink_to("/dev/zero")
    elif kind == "huge":
        with target.open("wb") as f:
            f.truncate(100 * 1024 * 1024)  # sparse: 100 MB without using the disk
    elif kind == "loop":
        target.symlink_to(tmp_path / "other")
        (tmp_path / "other").symlink_to(target)
    before = os.lstat(target)
    with pytest.raises(ConfigFileError) as info:
        dockerconfig.load(target)
    expected = {
        "fifo": "FIFO",
        "directory": "directory",
        "chardev": "character device",
        "huge": "bytes",
        "loop": "symlink loop",
    }[kind]
    assert expected in str(info.value)
    after = os.lstat(target)
    assert (before.st_ino, before.st_size, before.st_mtime_ns) == (
        after.st_ino,
        after.st_size,
        after.st_mtime_ns,
    )


def test_invalid_json_names_line_and_column_but_not_the_text(tmp_path: Path) -> None:
    data = b'{\n\t"auths": {\n\t\t"x.io": {"auth": "' + SECRET.encode() + b'"\n\t}\n'
    with pytest.raises(ConfigSyntaxError) as info:
        jsontext.parse(data, tmp_path / "config.json")
    assert info.value.line == 5
    assert "line 5" in str(info.value)
    assert SECRET not in str(info.value)
    assert SECRET not in repr(info.value.__cause__) and info.value.__suppress_context__


def test_bytes_that_are_not_utf8_are_refused_with_their_position(tmp_path: Path) -> None:
    data = b'{\n\t"auths": {"x.io": {"auth": "' + SECRET.encode() + b'", "email": "\xff"}}}'
    with pytest.raises(ConfigSyntaxError) as info:
        jsontext.parse(data, tmp_path / "config.json")
    assert (info.value.line, info.value.column) == (2, data.split(b"\n")[1].index(b"\xff") + 1)
    assert "not UTF-8" in str(info.value)
    assert SECRET not in str(info.value)


def test_empty_file_is_an_empty_config() -> None:
    assert jsontext.parse(b"") == {}
    assert jsontext.parse(b" \n") == {}


def test_render_uses_docker_style() -> None:
    out = jsontext.render({"auths": {"a": {"auth": "x"}}})
    assert out == b'{\n\t"auths": {\n\t\t"a": {\n\t\t\t"auth": "x"\n\t\t}\n\t}\n}'
    assert jsontext.render({}, like=b"{}\n").endswith(b"\n")


def test_symlinked_config_stays_a_symlink_and_its_target_is_rewritten(tmp_path: Path) -> None:
    real_dir = tmp_path / "dotfiles"
    real_dir.mkdir()
    target = real_dir / "docker-config.json"
    write(target, {"auths": {"docker.io": {"auth": SECRET}}})
    link_dir = tmp_path / ".docker"
    link_dir.mkdir()
    link = link_dir / "config.json"
    link.symlink_to(target)
    report = fix_file(link, backups=BackupStore(tmp_path / "state"))
    assert report.written
    assert link.is_symlink()
    assert os.readlink(link) == str(target)
    assert HUB_CANONICAL in json.loads(target.read_text())["auths"]
    assert sorted(p.name for p in link_dir.iterdir()) == ["config.json"]
    assert sorted(p.name for p in real_dir.iterdir()) == ["docker-config.json"]


def test_mode_and_owner_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    write(path, {"auths": {"docker.io": {"auth": SECRET}}})
    path.chmod(0o640)
    if os.geteuid() == 0:
        os.chown(path, 4321, 4322)
    report = fix_file(path, backups=BackupStore(tmp_path / "state"))
    assert report.written
    st = path.stat()
    assert stat.S_IMODE(st.st_mode) == 0o640
    if os.geteuid() == 0:
        assert (st.st_uid, st.st_gid) == (4321, 4322)


def test_nothing_but_config_json_is_left_in_the_config_directory(tmp_path: Path) -> None:
    cfg = tmp_path / ".docker"
    cfg.mkdir()
    write(cfg / "config.json", {"auths": {"docker.io": {"auth": SECRET}}})
    state = tmp_path / "state"
    report = fix_file(cfg / "config.json", backups=BackupStore(state))
    assert report.written
    assert [p.name for p in cfg.iterdir()] == ["config.json"]
    assert report.backup is not None and report.backup.is_relative_to(state)
    assert stat.S_IMODE(report.backup.stat().st_mode) == 0o600
    assert report.backup.read_bytes() == report.before


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "checked-rename"])
def test_a_write_between_read_and_save_is_never_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exchange: bool
) -> None:
    if not exchange:
        monkeypatch.setattr(dockerconfig, "_exchange", lambda *_: False)
    path = tmp_path / "config.json"
    write(path, {"auths": {"docker.io": {"auth": SECRET}}})
    snapshot = dockerconfig.load(path)
    ours = jsontext.render({"auths": {HUB_CANONICAL: {"auth": SECRET}}})
    theirs = jsontext.render(
        {"auths": {"docker.io": {"auth": SECRET}, "ghcr.io": {"auth": "Zzp4"}}}
    )
    docker_style_write(path, theirs)  # a `docker login ghcr.io` lands meanwhile
    raced = dockerconfig.save(snapshot, ours)
    assert raced is not None
    assert raced.found.data == theirs
    assert raced.ours_on_disk is None
    assert path.read_bytes() == theirs  # our stale content never reached the disk


def test_a_write_inside_the_exchange_is_merged_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer renames in the microseconds between our last look and our exchange."""
    path = tmp_path / "config.json"
    write(path, {"auths": {"docker.io": {"auth": SECRET}}})
    real_exchange = dockerconfig._exchange
    theirs = jsontext.render(
        {"auths": {"docker.io": {"auth": SECRET}, "ghcr.io": {"auth": "Zzp4"}}}
    )
    calls = 0

    def exchange_with_a_writer_first(directory: ConfigDir, a: str, b: str) -> bool:
        nonlocal calls
        calls += 1
        if calls == 1:
            docker_style_write(path, theirs)
        return real_exchange(directory, a, b)

    monkeypatch.setattr(dockerconfig, "_exchange", exchange_with_a_writer_first)
    report = fix_file(path, backups=BackupStore(tmp_path / "state"))
    assert report.retries == 1
    assert json.loads(path.read_text())["auths"] == {
        HUB_CANONICAL: {"auth": SECRET},
        "ghcr.io": {"auth": "Zzp4"},
    }


def test_three_way_merge_keeps_both_sides() -> None:
    base = {"auths": {"a": {"auth": "1"}}, "x": 1}
    mine = {"auths": {"a": {"auth": "1"}, "b": {"auth": "2"}}, "x": 1}
    theirs = {"auths": {"c": {"auth": "3"}}, "x": 2}
    assert merge_three_way(base, mine, theirs) == {
        "auths": {"c": {"auth": "3"}, "b": {"auth": "2"}},
        "x": 2,
    }


def test_three_way_merge_of_config_bytes_renders_like_theirs() -> None:
    base = b'{"auths": {}}'
    mine = b'{"auths": {"a": {"auth": "1"}}}'
    theirs = b'{"auths": {"b": {"auth": "2"}}}\n'
    merged = merge_config_bytes(base, mine, theirs, "config.json")
    assert merged == jsontext.render(
        {"auths": {"b": {"auth": "2"}, "a": {"auth": "1"}}}, like=theirs
    )
    assert merged.endswith(b"\n")
    with pytest.raises(ConfigSyntaxError):
        merge_config_bytes(base, mine, b'{"auths": ', "config.json")


def test_fix_loses_no_entry_while_another_program_keeps_writing(tmp_path: Path) -> None:
    """A Docker-style writer adds 300 registries one by one while fix runs in a loop."""
    path = tmp_path / "config.json"
    write(path, {"auths": {"docker.io": {"auth": SECRET}}})
    backups = BackupStore(tmp_path / "state")
    stop = threading.Event()
    retries = 0

    def fixer() -> None:
        nonlocal retries
        while not stop.is_set():
            retries += fix_file(path, backups=backups).retries

    thread = threading.Thread(target=fixer)
    thread.start()
    try:
        for i in range(300):
            # Read-modify-write like docker login: whatever is on disk now, plus one entry.
            config = jsontext.parse(dockerconfig.load(path).data)
            config.setdefault("auths", {})[f"https://reg{i}.example:5000/v2/"] = {"auth": SECRET}
            docker_style_write(path, jsontext.render(config))
    finally:
        stop.set()
        thread.join()
    final = fix_file(path, backups=backups)
    assert final.error is None
    auths = json.loads(path.read_text())["auths"]
    assert set(auths) == {HUB_CANONICAL} | {f"reg{i}.example:5000" for i in range(300)}


def test_symlink_to_another_filesystem_is_rewritten_on_that_filesystem(tmp_path: Path) -> None:
    """Docker fails with EXDEV here (temp beside the link); regauthd writes beside the target."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == tmp_path.stat().st_dev:
        unavailable("needs /dev/shm on another filesystem than the temp dir")
    target_dir = Path(tempfile.mkdtemp(dir=shm))
    try:
        target = target_dir / "config.json"
        write(target, {"auths": {"docker.io": {"auth": SECRET}}})
        link = tmp_path / "config.json"
        link.symlink_to(target)
        report = fix_file(link, backups=BackupStore(tmp_path / "state"))
        assert report.written and report.error is None
        assert link.is_symlink()
        assert HUB_CANONICAL in json.loads(target.read_text())["auths"]
        assert sorted(p.name for p in target_dir.iterdir()) == ["config.json"]
    finally:
        shutil.rmtree(target_dir)


def test_deferred_cleanup_leaves_nothing_beside_the_config_once_flushed(tmp_path: Path) -> None:
    """The daemon's hot path: displaced files go on a background thread, in batches."""
    path = tmp_path / "config.json"
    backups = BackupStore(tmp_path / "state")
    for i in range(20):
        write(path, {"auths": {"docker.io": {"auth": SECRET}, f"r{i}.io": {"auth": SECRET}}})
        report = fix_file(path, backups=backups, defer_cleanup=True)
        assert report.written
    assert dockerconfig.flush_cleanup(timeout=10)
    assert [p.name for p in tmp_path.iterdir() if p.name != "state"] == ["config.json"]
    assert HUB_CANONICAL in json.loads(path.read_text())["auths"]


@pytest.mark.parametrize(
    ("content", "due"),
    [
        ({"auths": {"docker.io": {"auth": "YTpi"}}}, True),  # mis-keyed: fixed, first backup
        ({"auths": {HUB_CANONICAL: {"auth": "YTpi"}}}, False),  # clean: never written
        # Two spellings, two credentials: the fix backs up for the conflict itself.
        ({"auths": {"docker.io": {"auth": "YTpi"}, HUB_CANONICAL: {"auth": "Yzpk"}}}, False),
        ("{not json", False),  # refused: never written
    ],
)
def test_a_first_backup_made_ahead_is_the_one_the_fix_would_make(
    tmp_path: Path, content: object, due: bool
) -> None:
    """The start-up pass makes the first backups of a chunk together (`first_backup_due`, then
    `BackupStore.save_many`): exactly where the fix would make one, so each repaired config
    still has one backup of what it held, and none is made for a file that is not written."""
    config = tmp_path / "config.json"
    original = content.encode() if isinstance(content, str) else json.dumps(content).encode()
    config.write_bytes(original)
    alone = BackupStore(tmp_path / "alone")
    assert first_backup_due(dockerconfig.load(config), backups=alone) is due
    fix_file(config, backups=alone)
    made_by_fix = alone.verified(config)
    config.write_bytes(original)

    ahead = BackupStore(tmp_path / "ahead")
    if first_backup_due(dockerconfig.load(config), backups=ahead):
        assert isinstance(ahead.save_many([dockerconfig.load(config)])[0], Path)
        assert first_backup_due(dockerconfig.load(config), backups=ahead) is False
    report = fix_file(config, backups=ahead)
    made = ahead.verified(config)
    assert len(made) == len(made_by_fix)
    assert [p.read_bytes() for p in made] == [p.read_bytes() for p in made_by_fix]
    assert all(p.read_bytes() == original for p in made)
    assert report.written == bool(made)
