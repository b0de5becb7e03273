"""Which directories to watch so that every configured Docker config is seen (pure).

:func:`plan_watches` expands the configured path patterns (``/home/*/.docker/config.json``) into
a :class:`WatchPlan`: one :class:`DirWatch` per real directory. It reads the file system only
through the :class:`FileSystemView` it is given (the daemon passes
:data:`regauthd.service.fsview.LOCAL`), so the rules here touch no disk themselves.
:meth:`WatchPlan.existing_configs` and :func:`configs_matching` are the one expansion of the
patterns into the config files that exist (the probe scheduler reads those).
"""

from __future__ import annotations

import fnmatch
import posixpath  # os.path's string rules on POSIX, without os' file-system calls
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Protocol

_GLOB_CHARS = frozenset("*?[")


class FileSystemView(Protocol):
    """The read-only questions planning asks the file system (``os``' answers, on POSIX paths)."""

    def listdir(self, path: str) -> list[str]:
        """The entry names of a directory; raises ``OSError`` when it cannot be read."""
        ...

    def isdir(self, path: str) -> bool:
        """True for a directory (symlinks followed)."""
        ...

    def isfile(self, path: str) -> bool:
        """True for a regular file (symlinks followed)."""
        ...

    def islink(self, path: str) -> bool:
        """True for a symbolic link (not followed)."""
        ...

    def realpath(self, path: str) -> str:
        """The path with every symlink resolved."""
        ...


@dataclass(frozen=True, slots=True)
class DirWatch:
    """What one watched directory (a real path, symlinks resolved) is watched for."""

    files: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Entry name -> the watched config paths (as configured) that this file is."""
    triggers: tuple[str, ...] = ()
    """Entry names or globs whose appearance or disappearance changes the plan."""
    links: frozenset[str] = frozenset()
    """Entries that are symlinked configs: replacing the link changes the plan."""


@dataclass(frozen=True, slots=True)
class WatchPlan:
    dirs: Mapping[str, DirWatch]
    """Real directory path -> what it is watched for."""
    configs: tuple[str, ...]
    """Config paths (as configured, symlinks not resolved) that exist now or may appear."""

    def config_count(self) -> int:
        return len({p for d in self.dirs.values() for ps in d.files.values() for p in ps})

    def existing_configs(self, fs: FileSystemView) -> list[str]:
        """The planned config paths that are files now (as configured, symlinks kept)."""
        return [config for config in self.configs if fs.isfile(config)]


def docker_configs(
    plan: WatchPlan, auth_files: Iterable[str], fs: FileSystemView, named: int | None
) -> tuple[list[str], int]:
    """The first ``named`` (None: all) of ``plan``'s Docker configs (not podman's auth files,
    ``auth_files``) that are files now, and how many Docker configs it has."""
    auth_files = tuple(auth_files)
    docker = [c for c in plan.configs if not follows_containers_rules(c, auth_files)]
    found: list[str] = []
    for config in docker:
        if named is not None and len(found) >= named:
            break
        if fs.isfile(config):
            found.append(config)
    return found, len(docker)


def _is_glob(component: str) -> bool:
    return any(c in _GLOB_CHARS for c in component)


def glob_matches(pattern: str, name: str) -> bool:
    """Does entry ``name`` match the glob component ``pattern`` (as a shell would)?"""
    # Shell semantics: a wildcard does not match a leading dot.
    if name.startswith(".") and not pattern.startswith("."):
        return False
    return fnmatch.fnmatchcase(name, pattern)


class _PlanBuilder:
    def __init__(self, fs: FileSystemView) -> None:
        self.fs = fs
        self.files: dict[str, dict[str, list[str]]] = {}
        self.triggers: dict[str, list[str]] = {}
        self.links: dict[str, set[str]] = {}
        self.configs: list[str] = []
        self._real: dict[str, str] = {}

    def real(self, directory: str) -> str:
        """``directory`` with every symlink resolved: its parent's real path and its own name,
        unless it is a link itself (one lstat per directory; resolving each path whole took
        one per component, 7 for each of 10,000 homes)."""
        known = self._real.get(directory)
        if known is None:
            parent, name = posixpath.split(directory)
            if name in ("", ".", "..") or self.fs.islink(directory):
                known = self.fs.realpath(directory)
            else:
                known = posixpath.join(self.real(parent), name)
            self._real[directory] = known
        return known

    def add_file(self, directory: str, name: str, config: str) -> None:
        real = self.real(directory)
        paths = self.files.setdefault(real, {}).setdefault(name, [])
        if config not in paths:
            paths.append(config)

    def add_trigger(self, directory: str, pattern: str) -> None:
        real = self.real(directory)
        triggers = self.triggers.setdefault(real, [])
        if pattern not in triggers:
            triggers.append(pattern)

    def add_link(self, directory: str, name: str) -> None:
        self.links.setdefault(self.real(directory), set()).add(name)

    def build(self) -> WatchPlan:
        dirs = {}
        for real in sorted(set(self.files) | set(self.triggers)):
            dirs[real] = DirWatch(
                files={k: tuple(v) for k, v in self.files.get(real, {}).items()},
                triggers=tuple(self.triggers.get(real, ())),
                links=frozenset(self.links.get(real, ())),
            )
        return WatchPlan(dirs, tuple(dict.fromkeys(self.configs)))


def plan_watches(patterns: Iterable[str], fs: FileSystemView) -> WatchPlan:
    """The directories to watch so that every config matching ``patterns`` is seen.

    Patterns are absolute paths whose directory components may be globs
    (``/home/*/.docker/config.json``). A directory that does not exist yet is waited for in its
    nearest existing ancestor; a symlinked config file is also watched in its target's directory
    (Docker renames into the target's directory). Reads the file system through ``fs``, changes
    nothing.
    """
    builder = _PlanBuilder(fs)
    for pattern in patterns:
        parts = PurePosixPath(pattern).parts
        if len(parts) < 2 or parts[0] != "/":
            continue
        _expand(builder, "/", parts[1:])
    return builder.build()


def configs_matching(patterns: Iterable[str], fs: FileSystemView) -> list[str]:
    """Every existing config file ``patterns`` match, expanded as :func:`plan_watches` does
    (for a one-shot command; the daemon asks its current plan)."""
    return plan_watches(patterns, fs).existing_configs(fs)


def _expand(builder: _PlanBuilder, directory: str, rest: tuple[str, ...]) -> None:
    name = rest[0]
    if len(rest) == 1:
        config = posixpath.join(directory, name)
        builder.configs.append(config)
        builder.add_file(directory, name, config)
        if builder.fs.islink(config):
            builder.add_link(directory, name)
            target = builder.fs.realpath(config)
            target_dir, target_name = posixpath.split(target)
            if builder.fs.isdir(target_dir):
                builder.add_file(target_dir, target_name, config)
        return
    if _is_glob(name):
        builder.add_trigger(directory, name)
        try:
            entries = sorted(builder.fs.listdir(directory))
        except OSError:
            return
        for entry in entries:
            child = posixpath.join(directory, entry)
            if glob_matches(name, entry) and builder.fs.isdir(child):
                _expand(builder, child, rest[1:])
        return
    child = posixpath.join(directory, name)
    if builder.fs.isdir(child):
        _expand(builder, child, rest[1:])
    else:
        # Not there yet (a runner user's first login): wait for it in the nearest ancestor.
        builder.add_trigger(directory, name)


def matches_pattern(path: str, pattern: str) -> bool:
    """Is ``path`` one of the files ``pattern`` names (globs per component, as planned)?"""
    parts = PurePosixPath(path).parts
    wanted = PurePosixPath(pattern).parts
    if len(parts) != len(wanted):
        return False
    return all(
        glob_matches(w, p) if _is_glob(w) else w == p for w, p in zip(wanted, parts, strict=True)
    )


def follows_containers_rules(path: str, auth_file_patterns: Iterable[str]) -> bool:
    """Is this watched file one of podman's auth files (containers' key rules, not Docker's)?"""
    return any(matches_pattern(path, pattern) for pattern in auth_file_patterns)
