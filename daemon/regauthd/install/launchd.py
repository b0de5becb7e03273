"""The launchd agent (pure): ``~/Library/LaunchAgents/<LABEL>.plist``.

launchd has no ``RestartPreventExitStatus``: ``KeepAlive = {SuccessfulExit: false}`` restarts
the daemon after any exit but a clean one, so the agent runs ``regauthd run
--settings-error-exit 0``: a settings error is logged (to ``StandardErrorPath``) and the daemon
exits 0, which launchd does not restart. Fixing the file and ``launchctl kickstart`` (or the next
login) starts it again. Every other failure exits non-zero and is restarted, at most once per
``ThrottleInterval``.
"""

from __future__ import annotations

import plistlib
from collections.abc import Sequence
from pathlib import PurePosixPath

LABEL = "io.github.regauthd"
"""The job's label; the plist's file name is ``LABEL + ".plist"`` (launchd's convention)."""

THROTTLE_INTERVAL_S = 30

SEARCH_PATH = ":".join(
    (
        "/opt/homebrew/bin",  # Homebrew on Apple silicon (docker-credential-* helpers)
        "/usr/local/bin",  # Homebrew on Intel, Docker Desktop's links
        "/Applications/Docker.app/Contents/Resources/bin",  # Docker Desktop's own helpers
        "/usr/bin",
        "/bin",
        "/usr/sbin",
        "/sbin",
    )
)
"""launchd starts agents with PATH=/usr/bin:/bin:/usr/sbin:/sbin: credential helpers from
Homebrew and Docker Desktop would not be found."""

_COMMENT = (
    b"<!-- Written by `regauthd service install`; `regauthd service uninstall` removes it.\n"
    b"     KeepAlive restarts regauthd after a failure, not after a clean exit. A settings error\n"
    b"     exits 0 here (the settings-error-exit option below), so it does not restart in a\n"
    b"     loop: fix the settings, then `launchctl kickstart gui/$UID/"
    + LABEL.encode()
    + b"`. -->\n"
)


def plist_name() -> str:
    return f"{LABEL}.plist"


def log_dir(home: PurePosixPath) -> PurePosixPath:
    return home / "Library" / "Logs" / "regauthd"


def program_arguments(exec_start: Sequence[str]) -> list[str]:
    """``exec_start`` (the regauthd command, absolute) + ``run`` with a settings error exiting 0."""
    if not exec_start or not exec_start[0].startswith("/"):
        raise ValueError(f"ProgramArguments needs an absolute program path, got {exec_start!r}")
    return [*exec_start, "run", "--settings-error-exit", "0"]


def render_plist(exec_start: Sequence[str], home: PurePosixPath) -> bytes:
    """The agent's plist for the regauthd command ``exec_start`` of the user whose home is
    ``home`` (XML, with a comment that says why a settings error does not restart-loop)."""
    logs = log_dir(home)
    job = {
        "Label": LABEL,
        "ProgramArguments": program_arguments(exec_start),
        "RunAtLoad": True,
        "KeepAlive": {"SuccessfulExit": False},
        "ThrottleInterval": THROTTLE_INTERVAL_S,
        "ProcessType": "Background",
        "EnvironmentVariables": {"PATH": SEARCH_PATH},
        "StandardOutPath": str(logs / "regauthd.log"),
        "StandardErrorPath": str(logs / "regauthd.err.log"),
        "ExitTimeOut": 10,
    }
    data = plistlib.dumps(job, fmt=plistlib.FMT_XML, sort_keys=False)
    head, sep, rest = data.partition(b'<plist version="1.0">\n')
    return head + sep + _COMMENT + rest


__all__ = [
    "LABEL",
    "SEARCH_PATH",
    "THROTTLE_INTERVAL_S",
    "log_dir",
    "plist_name",
    "program_arguments",
    "render_plist",
]
