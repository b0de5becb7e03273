"""The systemd unit, system and user, from one template (pure).

``systemd/regauthd.service`` in the source tree is :func:`render_systemd_unit` of
:data:`DEFAULT_EXEC_START` for the system scope (a test proves they agree); ``regauthd service
install`` renders the same template with ``ExecStart=`` the regauthd it runs from.

Template lines starting ``S|`` are in the system unit only (root's sandbox, capabilities and
directories), ``U|`` in the user unit only; the others are in both. A user manager cannot set up
mount namespaces or drop capabilities, so the user unit keeps the seccomp-based hardening only.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence

UNIT_NAME = "regauthd.service"

DEFAULT_EXEC_START: tuple[str, ...] = ("/usr/local/bin/regauthd", "run")
"""What the shipped unit runs (``install`` writes the real path of the regauthd it runs from)."""


class Scope(enum.Enum):
    SYSTEM = "system"
    """root's service: every user's config, ``/etc/regauthd``, ``/var/lib/regauthd``."""
    USER = "user"
    """one user's service: that user's config, ``~/.config/regauthd``, ``~/.local/state``."""


_TEMPLATE = """\
S|# regauthd: keeps container registry credentials working (system service, runs as root so it
S|# can repair every user's ~/.docker/config.json and keep each file's owner).
U|# regauthd: keeps container registry credentials working (user service: repairs this user's
U|# ~/.docker/config.json; `loginctl enable-linger USER` keeps it running without a login).
# `regauthd service install` writes this unit with ExecStart= the regauthd it runs from;
# `regauthd service uninstall` removes it.
S|#
S|# Hardening: `systemd-analyze security --offline=yes regauthd.service` rates this unit
S|# 2.4 OK (systemd 252). What it still needs: write access to /root and /home (the
S|# configs it repairs; backups go to its StateDirectory), AF_UNIX (journald, sd_notify,
S|# credential helpers), AF_INET/AF_INET6 (registry probes), and the capabilities below.
S|#
S|# Root acts on a user's files only as that user: the thread doing the file work takes the
S|# owner's fs identity (setfsuid/setfsgid and the owner's groups), and credential helpers run as
S|# the owner (setuid/setgid/setgroups, the owner's HOME). So root's override of file
S|# permissions is not needed: CAP_DAC_OVERRIDE, CAP_CHOWN and CAP_FOWNER are gone (a file
S|# written with the owner's fsuid is already the owner's; its mode is set by its owner).
[Unit]
Description=regauthd - keeps container registry credentials working
Documentation=https://github.com/regauthd/regauthd
S|After=local-fs.target network-online.target
S|Wants=network-online.target

[Service]
Type=notify
NotifyAccess=main
ExecStart=@EXEC_START@
ExecReload=/bin/kill -HUP $MAINPID
Restart=on-failure
RestartSec=5s
# Settings errors exit 2: restarting cannot fix them.
RestartPreventExitStatus=2
WatchdogSec=60s
TimeoutStopSec=5s
S|StateDirectory=regauthd
S|StateDirectoryMode=0700
S|ConfigurationDirectory=regauthd
UMask=0077

# Sandboxing
S|ProtectSystem=strict
S|# /home and /root stay writable: the configs there are rewritten in place. That is safe
S|# because every write into a user's tree is made with that user's fs identity (the kernel
S|# checks it as the user's own write, and a user's symlink cannot lead root elsewhere):
S|# root can write there only what the owner could.
S|ReadWritePaths=/root /home
S|ProtectHome=no
S|PrivateTmp=yes
S|PrivateDevices=yes
S|PrivateIPC=yes
S|PrivateMounts=yes
S|ProtectHostname=yes
S|ProtectClock=yes
S|ProtectKernelTunables=yes
S|ProtectKernelModules=yes
S|ProtectKernelLogs=yes
S|ProtectControlGroups=yes
S|ProtectProc=invisible
S|ProcSubset=pid
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
NoNewPrivileges=yes
S|RemoveIPC=yes
S|KeyringMode=private
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
S|# CAP_SETUID, CAP_SETGID: setfsuid/setfsgid and setgroups for the file work, and
S|#   setuid/setgid/setgroups to start a user's credential helper as that user.
S|# CAP_DAC_READ_SEARCH: find and read configs in homes that are 0700 (the watch plan, the
S|#   probes), and watch their directories.
S|# CAP_KILL: kill a user's credential helper (its process group) that does not answer in time;
S|#   it runs as that user, so root needs this capability to signal it.
S|CapabilityBoundingSet=CAP_SETUID CAP_SETGID CAP_DAC_READ_SEARCH CAP_KILL
S|# Empty: root has the capabilities above anyway; programs started as another user get none.
S|AmbientCapabilities=
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallFilter=~@privileged @resources @mount @swap @reboot @module
SystemCallFilter=~@raw-io @debug @cpu-emulation @obsolete @clock
# ~@privileged also removes @chown and the identity switches: @chown keeps a config's owner and
# group when it is rewritten; @setuid (setuid, setgid, setgroups, setres*id) starts a user's
# helper as that user and gives the file-work thread the owner's groups; setfsuid and setfsgid
# (@privileged and @system-service both list them) switch the fs identity of that thread.
SystemCallFilter=@chown
SystemCallFilter=@setuid setfsuid setfsgid
SystemCallErrorNumber=EPERM
S|DevicePolicy=closed

[Install]
S|WantedBy=multi-user.target
U|WantedBy=default.target
"""

_MARKERS = {"S|": Scope.SYSTEM, "U|": Scope.USER}


def render_systemd_unit(exec_start: Sequence[str], scope: Scope) -> str:
    """The unit for ``scope`` running ``exec_start`` (an absolute program path, then arguments)."""
    if not exec_start or not exec_start[0].startswith("/"):
        raise ValueError(f"ExecStart needs an absolute program path, got {exec_start!r}")
    lines: list[str] = []
    for line in _TEMPLATE.splitlines():
        only = _MARKERS.get(line[:2])
        if only is not None:
            if only is not scope:
                continue
            line = line[2:]  # noqa: PLW2901 - the marker is dropped, the line kept
        lines.append(line)
    text = "\n".join(lines) + "\n"
    return text.replace("@EXEC_START@", " ".join(quote_exec_arg(a) for a in exec_start))


def quote_exec_arg(arg: str) -> str:
    """One ``ExecStart=`` word: specifiers (``%``) and variables (``$``) escaped, and quoted
    when it holds whitespace, quotes or backslashes (systemd.service(5), "Command lines")."""
    escaped = arg.replace("%", "%%").replace("$", "$$")
    if escaped and not any(c in escaped for c in " \t\n\"'\\;"):
        return escaped
    inner = escaped.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{inner}"'


__all__ = ["DEFAULT_EXEC_START", "UNIT_NAME", "Scope", "quote_exec_arg", "render_systemd_unit"]
