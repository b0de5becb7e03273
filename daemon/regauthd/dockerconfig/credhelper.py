"""Running one ``docker-credential-<name>`` program: which one, as whom, for how long.

A config names its helpers (``credsStore``, ``credHelpers``); the root service reads every
user's config, so a helper name is input from that user. The rules:

* a name is ``[A-Za-z0-9._-]+`` (not ``.`` or ``..``). The Docker CLI itself runs
  ``docker-credential-<name>`` with Go's ``exec.Command``, which takes a name holding ``/`` as a
  path relative to its working directory instead of looking it up on PATH
  (tests/integration/test_helper_identity.py shows it with the real CLI); regauthd refuses it.
* when this process is root and the config belongs to another user (the owner of the directory
  holding ``config.json``), the helper runs as that user: uid, gid and supplementary groups from
  the password and group databases, a clean environment (HOME, USER, LOGNAME, a fixed PATH,
  ``XDG_RUNTIME_DIR`` when ``/run/user/UID`` exists; nothing of root's, no ``GNUPGHOME``), the
  working directory their home. Their own ``pass`` store and gpg-agent then answer, and root's
  are never touched.
* as root, the program is looked up on that fixed PATH only, and is run only when neither it
  nor a directory above it can be changed by anyone but root (a user-writable directory on the
  PATH would let a user choose what root, or another user, runs).
* each call has a hard timeout; on expiry the helper's whole process group is killed. A
  :class:`HelperBudget` bounds the seconds one user's helpers take in a minute, so one user's
  locked keychain cannot take the daemon's loop from everybody else. While waiting, ``tick`` is
  called four times a second (the daemon's watchdog keep-alive: the wait is bounded, the loop
  is not hung).

Refusals and failures raise :class:`HelperRunError`: one line, never a secret.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import signal
import stat
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from regauthd.dockerconfig import configdir
from regauthd.dockerconfig.jsontext import os_cause

SAFE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
"""Where helpers are looked up when running as root (systemd's default PATH)."""
CALL_TIMEOUT_S = 5.0
"""The daemon's hard limit for one helper call."""
_NAME = re.compile(r"[A-Za-z0-9._-]+")
_TICK_S = 0.25


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


@dataclass(frozen=True, slots=True)
class HelperUser:
    """The user a helper runs as (root's service acting for the owner of a config)."""

    uid: int
    gid: int
    groups: tuple[int, ...]
    name: str
    home: str

    @classmethod
    def lookup(cls, uid: int) -> HelperUser:
        """From the password and group databases; :class:`HelperRunError` when unknown."""
        try:
            entry = pwd.getpwuid(uid)
        except KeyError:
            raise HelperRunError(
                f"uid {uid} owns the config but has no password entry: its credential helpers "
                "are not run"
            ) from None
        try:
            groups = tuple(os.getgrouplist(entry.pw_name, entry.pw_gid))
        except OSError:
            groups = (entry.pw_gid,)
        return cls(uid, entry.pw_gid, groups, entry.pw_name, entry.pw_dir or "/")

    def environment(self, path: str) -> dict[str, str]:
        """A login-like environment of this user's own: nothing inherited from root."""
        env = {
            "HOME": self.home,
            "USER": self.name,
            "LOGNAME": self.name,
            "PATH": path,
            "LANG": "C.UTF-8",
        }
        runtime = f"/run/user/{self.uid}"
        with contextlib.suppress(OSError):
            if stat.S_ISDIR(os.lstat(runtime).st_mode) and os.lstat(runtime).st_uid == self.uid:
                env["XDG_RUNTIME_DIR"] = runtime
        return env


def config_owner(config: Path | str) -> int | None:
    """The uid whose identity runs the helpers ``config`` names (None: it cannot be looked at):
    :func:`regauthd.dockerconfig.configdir.config_owner`, the one rule the file work uses too
    (the deepest directory reached without following a symlink a user could have made), so a
    user's link to root's directory never makes root run what the user's file names."""
    try:
        return configdir.config_owner(Path(config)).uid
    except OSError:
        return None


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


class HelperBudget:
    """Seconds of helper time each user may use in a sliding window (thread-safe).

    ``on_exhausted(user, spent)`` is called once each time a user's spending reaches the
    limit (from the thread that ran the helper).
    """

    def __init__(
        self,
        seconds: float,
        *,
        window: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        on_exhausted: Callable[[str, float], None] | None = None,
    ) -> None:
        self.seconds = seconds
        self.window = window
        self._clock = clock
        self._on_exhausted = on_exhausted
        self._spent: dict[str, deque[tuple[float, float]]] = {}
        self._exhausted: set[str] = set()
        self._lock = threading.Lock()

    def _total(self, user: str, now: float) -> float:
        entries = self._spent.get(user)
        if entries is None:
            return 0.0
        while entries and entries[0][0] <= now - self.window:
            entries.popleft()
        if not entries:
            del self._spent[user]
            self._exhausted.discard(user)
            return 0.0
        return sum(spent for _, spent in entries)

    def remaining(self, user: str) -> float:
        with self._lock:
            return self.seconds - self._total(user, self._clock())

    def spend(self, user: str, seconds: float) -> None:
        with self._lock:
            now = self._clock()
            self._spent.setdefault(user, deque()).append((now, seconds))
            total = self._total(user, now)
            tell = total >= self.seconds and user not in self._exhausted
            if tell:
                self._exhausted.add(user)
        if tell and self._on_exhausted is not None:
            self._on_exhausted(user, total)


@dataclass(slots=True)
class HelperRunner:
    """How the helpers of one config are run (one thread at a time).

    ``user`` None: as this process, with ``env`` (None: this process's environment). As root,
    programs are found on ``path`` only (default :data:`SAFE_PATH`) and must be root's alone.
    ``refusal``: nothing is run for this config, every call fails with this line.
    ``owner_of``: a config whose owner, when this process is root, becomes ``user`` at the first
    call (:meth:`resolve`): a repair that runs no helper costs no password-database lookup.
    """

    user: HelperUser | None = None
    env: Mapping[str, str] | None = None
    path: str | None = None
    timeout: float = CALL_TIMEOUT_S
    budget: HelperBudget | None = None
    tick: Callable[[], None] | None = None
    refusal: str | None = None
    owner_of: str | None = None

    def resolve(self) -> HelperUser | None:
        """The user the helpers run as (None: as this process), once ``owner_of`` is looked at."""
        config, self.owner_of = self.owner_of, None
        if config is None or os.geteuid() != 0:
            return self.user
        owner = config_owner(config)
        if owner is None:
            self.refusal = f"cannot tell who owns {config}: no helper is run"
        elif owner != 0:
            try:
                self.user = HelperUser.lookup(owner)
            except HelperRunError as exc:
                self.refusal = str(exc)
        return self.user

    def _who(self) -> str:
        if self.user is not None:
            return self.user.name
        try:
            return pwd.getpwuid(os.geteuid()).pw_name
        except KeyError:
            return str(os.geteuid())

    def run(self, name: str, verb: str, stdin: str) -> tuple[int, str, str]:
        """Run ``docker-credential-<name> <verb>`` with ``stdin``: (exit status, stdout, stderr)."""
        problem = helper_name_problem(name)
        if problem is not None:
            raise HelperRunError(problem)
        self.resolve()
        if self.refusal is not None:
            raise HelperRunError(self.refusal)
        program = f"docker-credential-{name}"
        who = self._who()
        timeout = self.timeout
        if self.budget is not None:
            left = self.budget.remaining(who)
            if left <= 0:
                raise HelperRunError(
                    f"`{program} {verb}` not run: credential helpers of user {who} already "
                    f"took {self.budget.seconds:g} s of the last {self.budget.window:g} s "
                    "(tried again on the next change)"
                )
            timeout = min(timeout, max(left, 0.1))
        env, cwd = self._environment()
        search = env.get("PATH") or os.defpath
        executable = find_program(program, search, root_only=os.geteuid() == 0)
        started = time.monotonic()
        try:
            return self._call(executable, program, verb, stdin, env, cwd, timeout)
        finally:
            if self.budget is not None:
                self.budget.spend(who, time.monotonic() - started)

    def _environment(self) -> tuple[dict[str, str], str | None]:
        if self.user is not None:
            env = self.user.environment(self.path or SAFE_PATH)
            cwd = self.user.home if os.path.isdir(self.user.home) else "/"
            return env, cwd
        env = dict(os.environ if self.env is None else self.env)
        if self.path is not None:
            env["PATH"] = self.path
        return env, None

    def _call(
        self,
        executable: str,
        program: str,
        verb: str,
        stdin: str,
        env: dict[str, str],
        cwd: str | None,
        timeout: float,
    ) -> tuple[int, str, str]:
        user = self.user
        try:
            proc = subprocess.Popen(
                [executable, verb],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
                cwd=cwd,
                start_new_session=True,  # its own process group: killed whole on timeout
                user=user.uid if user else None,
                group=user.gid if user else None,
                extra_groups=list(user.groups) if user else None,
            )
        except OSError as exc:
            where = f" ({exc.filename})" if exc.filename else ""
            raise HelperRunError(
                f"credential helper `{program}` could not be run as "
                f"{user.name if user else 'this user'}: {os_cause(exc)}{where}"
            ) from None
        deadline = time.monotonic() + timeout
        pending: str | None = stdin
        while True:
            try:
                out, err = proc.communicate(
                    pending, timeout=min(_TICK_S, max(0.0, deadline - time.monotonic()))
                )
                return proc.returncode, out, err
            except subprocess.TimeoutExpired:
                pending = None  # already being written: communicate keeps it
                if time.monotonic() >= deadline:
                    _kill_group(proc)
                    raise HelperRunError(
                        f"credential helper `{program} {verb}` did not answer within "
                        f"{timeout:g} s and was killed (locked keychain or gpg-agent waiting "
                        "for a passphrase?)"
                    ) from None
                if self.tick is not None:
                    self.tick()


def _kill_group(proc: subprocess.Popen[str]) -> None:
    """Kill the helper and all it started (root needs CAP_KILL for a user's processes); never
    wait long for them: the caller's time is bounded whatever happens here."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    try:
        proc.communicate(timeout=1.0)
    except subprocess.TimeoutExpired:
        # A process that left the group holds the pipes, or the kill was not allowed.
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=1.0)  # else Popen reaps it later


@dataclass(frozen=True, slots=True)
class HelperPolicy:
    """The daemon's rules for running the helpers its configs name (see the module docstring)."""

    path: str = SAFE_PATH
    timeout: float = CALL_TIMEOUT_S
    budget: HelperBudget | None = None
    tick: Callable[[], None] | None = None

    def for_config(self, config: Path | str) -> HelperRunner:
        """The runner for the helpers ``config`` names: as its owner when we are root (looked
        up at its first helper call)."""
        if os.geteuid() != 0:
            return HelperRunner(timeout=self.timeout, budget=self.budget, tick=self.tick)
        return HelperRunner(
            path=self.path,
            timeout=self.timeout,
            budget=self.budget,
            tick=self.tick,
            owner_of=os.fspath(config),
        )


__all__ = [
    "CALL_TIMEOUT_S",
    "SAFE_PATH",
    "HelperBudget",
    "HelperPolicy",
    "HelperRunError",
    "HelperRunner",
    "HelperUser",
    "config_owner",
    "find_program",
    "helper_name_problem",
]
