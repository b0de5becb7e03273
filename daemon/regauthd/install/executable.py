"""Which regauthd is running, and whether root may run it.

``install`` writes the absolute path of the regauthd being run into the unit, resolved at install
time, so a root-owned venv, pipx or uv tool install works without ``/usr/local/bin``. For the
system service that code runs as root: :func:`writable_by_others` names any file or directory
of it (the script, its interpreter, site-packages, the regauthd package) that a non-root user
could change, so ``install --system`` refuses it.
"""

from __future__ import annotations

import os
import stat
import sysconfig
from collections.abc import Iterable, Iterator
from pathlib import Path

import regauthd


class NoExecutable(Exception):
    """The regauthd being run cannot be named as an absolute command."""


def running_command(argv0: str, python: str) -> tuple[str, ...]:
    """The command that runs this regauthd: its console script when ``argv0`` is one, else
    ``python -m regauthd`` (``python -m regauthd service install``)."""
    script = Path(argv0)
    if script.name == "regauthd" and script.is_file() and os.access(script, os.X_OK):
        return (os.path.abspath(script),)
    if not python:
        raise NoExecutable("cannot tell which Python runs regauthd (sys.executable is empty)")
    return (os.path.abspath(python), "-m", "regauthd")


def code_paths(command: Iterable[str], python: str) -> list[Path]:
    """Every file and directory whose content decides what ``command`` runs."""
    paths: list[Path] = []
    for word in command:
        if word.startswith("/"):
            paths.append(Path(word))
            interpreter = _shebang(Path(word))
            if interpreter:
                paths.append(Path(interpreter))
    if python:
        paths.append(Path(python))
    for key in ("purelib", "platlib"):
        site = Path(sysconfig.get_paths()[key])
        paths.append(site)
        paths.extend(sorted(site.glob("*.pth")))  # run at every start of the interpreter
    package = Path(regauthd.__file__).parent
    paths.append(package)
    paths.extend(sorted(package.rglob("*.py")))
    return paths


def _shebang(path: Path) -> str:
    try:
        with path.open("rb") as f:
            first = f.readline(512)
    except OSError:
        return ""
    if not first.startswith(b"#!"):
        return ""
    words = first[2:].decode(errors="replace").split()
    return words[0] if words and words[0].startswith("/") else ""


def writable_by_others(paths: Iterable[Path]) -> list[str]:
    """Why each path (or a directory above it, or a symlink's target) could be changed by a user
    other than root; empty when only root can change all of them."""
    reasons: list[str] = []
    seen: set[Path] = set()
    for path in paths:
        for candidate in _chain(path):
            if candidate in seen:
                continue
            seen.add(candidate)
            reason = _unsafe(candidate)
            if reason:
                reasons.append(f"{candidate} {reason}")
    return reasons


def _chain(path: Path) -> Iterator[Path]:
    """``path``, its parents, and the same for its resolved target when links are involved."""
    absolute = Path(os.path.abspath(path))
    yield absolute
    yield from absolute.parents
    resolved = absolute.resolve()
    if resolved != absolute:
        yield resolved
        yield from resolved.parents


def _unsafe(path: Path) -> str:
    try:
        st = path.lstat()
    except FileNotFoundError:
        return ""
    except OSError as exc:
        return f"cannot be checked ({exc.strerror})"
    if st.st_uid != 0:
        return f"is owned by uid {st.st_uid}, not root"
    sticky_dir = stat.S_ISDIR(st.st_mode) and st.st_mode & stat.S_ISVTX
    if stat.S_ISLNK(st.st_mode):
        return ""  # a link's own mode means nothing; its target is checked
    if st.st_mode & stat.S_IWOTH and not sticky_dir:
        return "is writable by every user"
    if st.st_mode & stat.S_IWGRP and st.st_gid != 0 and not sticky_dir:
        return f"is writable by group {st.st_gid}"
    return ""


def refusal(reasons: list[str]) -> str:
    """The message of ``install --system`` refusing code a user can change."""
    shown = "\n".join(f"  {r}" for r in reasons[:5])
    more = f"\n  (and {len(reasons) - 5} more)" if len(reasons) > 5 else ""
    return (
        "refusing to install a system service: root would run code that a non-root user can "
        f"change:\n{shown}{more}\n"
        "Fix: install regauthd where only root can write, then install the service from there, "
        "e.g.\n"
        "  sudo python3 -m venv /opt/regauthd && sudo /opt/regauthd/bin/pip install .  "
        "(in the regauthd checkout)\n"
        "  sudo /opt/regauthd/bin/regauthd service install --system\n"
        "(or `sudo pipx install --global .`); or install a service for your own account: "
        "regauthd service install --user"
    )


__all__ = ["NoExecutable", "code_paths", "refusal", "running_command", "writable_by_others"]
