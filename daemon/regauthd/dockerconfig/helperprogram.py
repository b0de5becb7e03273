"""Which program a credential helper name runs, and :class:`HelperRunError`.

A config names its helpers (``credsStore``, ``credHelpers``); the root service reads every
user's config, so a helper name is input from that user. The rules:

* a name is ``[A-Za-z0-9._-]+`` (not ``.`` or ``..``). The Docker CLI itself runs
  ``docker-credential-<name>`` with Go's ``exec.Command``, which takes a name holding ``/`` as a
  path relative to its working directory instead of looking it up on PATH
  (tests/integration/test_helper_identity.py shows it with the real CLI); regauthd refuses it.
* as root, the program is looked up on a fixed PATH only (:data:`SAFE_PATH`, ``[helpers] path``),
  and is run only when neither it nor a directory above it can be changed by anyone but root (a
  user-writable directory on the PATH would let a user choose what root, or another user, runs).

Refusals here, and every failure of :mod:`regauthd.dockerconfig.credhelper` to run a helper,
raise :class:`HelperRunError`: one line, never a secret.
"""

from __future__ import annotations

import os
import re
import stat

SAFE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
"""Where helpers are looked up when running as root (systemd's default PATH)."""
_NAME = re.compile(r"[A-Za-z0-9._-]+")


class HelperRunError(Exception):
    """A helper could not be run, was refused, or did not answer in time (one line, no secret)."""


def helper_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a credential helper's name, or None when it can."""
    if _NAME.fullmatch(name) and name not in {".", ".."}:
        return None
    shown = name.encode("unicode_escape").decode("ascii")[:80]
    return (
        f"credential helper name {shown!r} refused: a helper name may hold only letters, digits, "
        "'.', '_' and '-' (regauthd runs docker-credential-<name> from PATH, never a path)"
    )


def _root_only(path: str) -> str | None:
    """Why root must not run ``path`` (someone else can change it), or None."""
    current = path
    first = True
    while True:
        try:
            st = os.stat(current)
        except OSError as exc:
            return f"{current}: {exc.strerror}"
        writable = st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
        sticky_dir = not first and st.st_mode & stat.S_ISVTX
        if st.st_uid != 0 or (writable and not sticky_dir):
            return f"{current} can be changed by another user than root"
        parent = os.path.dirname(current)
        if parent == current:
            return None
        current, first = parent, False


def find_program(program: str, path: str, *, root_only: bool) -> str:
    """The absolute path of ``program`` on ``path``; :class:`HelperRunError` when absent or
    (``root_only``) changeable by someone other than root."""
    not_executable = None
    for directory in path.split(os.pathsep):
        if not directory.startswith("/"):
            continue  # a relative PATH entry would depend on the working directory
        candidate = os.path.join(directory, program)
        if os.path.isfile(candidate) and not os.access(candidate, os.X_OK):
            not_executable = not_executable or candidate
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            real = os.path.realpath(candidate)
            why = (_root_only(candidate) or _root_only(real)) if root_only else None
            if why is not None:
                raise HelperRunError(f"credential helper `{program}` refused: {why}")
            return real
    if not_executable is not None:
        raise HelperRunError(
            f"credential helper `{program}` could not be run: {not_executable} is not "
            "executable, permission denied (EACCES); `chmod +x` it, or reinstall the helper"
        )
    raise HelperRunError(f"credential helper `{program}` is not installed or not on PATH")


__all__ = ["SAFE_PATH", "HelperRunError", "find_program", "helper_name_problem"]
