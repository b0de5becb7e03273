"""Watching rig: wait on a watcher's ``fileno()`` (bounded), and save files as Docker does.

Usage::

    from tests.rigs.watching import collect, docker_save, has, settle

    docker_save(directory, b"{}")
    seen = collect(watcher, has(ChangeKind.WRITTEN, "config.json"))
    assert settle(watcher) == []  # nothing more within 0.3 s
"""

from __future__ import annotations

import os
import select
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from regauthd.service.watcher import Change, ChangeKind, Watcher


def collect(
    watcher: Watcher, until: Callable[[list[Change]], bool], timeout: float = 5.0
) -> list[Change]:
    """Read until ``until(everything so far)`` holds; fail after ``timeout`` seconds."""
    seen: list[Change] = []
    deadline = time.monotonic() + timeout
    while not until(seen):
        left = deadline - time.monotonic()
        if left <= 0:
            pytest.fail(f"{watcher.backend}: gave up waiting; saw {seen}")
        ready, _, _ = select.select([watcher.fileno()], [], [], left)
        if ready:
            seen.extend(watcher.read())
    return seen


def settle(watcher: Watcher, seconds: float = 0.3) -> list[Change]:
    """Everything reported within ``seconds`` (for asserting that nothing is)."""
    seen: list[Change] = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([watcher.fileno()], [], [], left)
        if ready:
            seen.extend(watcher.read())
    return seen


def has(kind: ChangeKind, name: str) -> Callable[[list[Change]], bool]:
    return lambda seen: any(c.kind is kind and c.name == name for c in seen)


def docker_save(directory: Path, data: bytes, name: str = "config.json") -> str:
    """Save as the Docker CLI does: a temp file beside it (O_EXCL, 0600), renamed over it."""
    temp = directory / f"{name}{time.monotonic_ns() % 10**9}"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    os.rename(temp, directory / name)
    return temp.name


def only_config(directory: str, name: str) -> bool:
    return name == "config.json"
