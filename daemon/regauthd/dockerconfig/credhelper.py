"""Running one ``docker-credential-<name>`` program: which one, as whom, for how long.

:class:`HelperPolicy` gives each config a :class:`HelperRunner`, which runs that config's
helpers: the program a name runs (:mod:`regauthd.dockerconfig.helperprogram`: a plain name
only, on a fixed root-only PATH when root), as whom (:mod:`regauthd.dockerconfig.helperuser`:
as root, the config's owner, with a clean environment of theirs), for how long:

* each call has a hard timeout; on expiry the helper's whole process group is killed. A
  :class:`~regauthd.dockerconfig.helperbudget.HelperBudget` bounds the seconds one user's helpers
  take in a minute, so one user's locked keychain cannot take the daemon's loop from everybody
  else. While waiting, ``tick`` is called four times a second (the daemon's watchdog
  keep-alive: the wait is bounded, the loop is not hung).

Refusals and failures raise :class:`~regauthd.dockerconfig.helperprogram.HelperRunError`: one
line, never a secret. The helper protocol (``get``, ``store``, ``erase``, ``list``) is
:class:`regauthd.dockerconfig.stores.HelperStore`'s.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from regauthd.dockerconfig.helperbudget import HelperBudget
from regauthd.dockerconfig.helperprogram import (
    SAFE_PATH,
    HelperRunError,
    find_program,
    helper_name_problem,
)
from regauthd.dockerconfig.helperuser import HelperUser, config_owner
from regauthd.dockerconfig.jsontext import os_cause

CALL_TIMEOUT_S = 5.0
"""The daemon's hard limit for one helper call."""
_TICK_S = 0.25


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


__all__ = ["CALL_TIMEOUT_S", "HelperPolicy", "HelperRunner"]
