"""Where log events go: native journald entries, a readable console, or JSON lines.

Output picks itself (:func:`configure_logging`): native journald entries when stderr is connected
to journald (``JOURNAL_STREAM``), a readable console on a TTY (one compact, coloured line per
event: :mod:`regauthd.alerts.console`), JSON lines on stdout otherwise;
never two sinks for one event. Every event passes :data:`regauthd.redactor.REDACTOR` last, so no
secret reaches any sink, tracebacks included (rendered without local variables).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import socket
import struct
import sys
from collections.abc import Mapping
from typing import IO, Any, Final, TextIO

import structlog
from structlog.tracebacks import ExceptionDictTransformer
from structlog.typing import EventDict, Processor, WrappedLogger

from regauthd.alerts.catalogue import (
    PRIORITY_DEBUG,
    PRIORITY_ERR,
    PRIORITY_INFO,
    PRIORITY_WARNING,
)
from regauthd.alerts.console import ConsoleRenderer
from regauthd.redactor import REDACTOR
from regauthd.settings import OutputMode

SYSLOG_IDENTIFIER: Final = "regauthd"
JOURNAL_SOCKET: Final = "/run/systemd/journal/socket"

_LEVEL_PRIORITY = {
    "critical": 2,
    "exception": PRIORITY_ERR,
    "error": PRIORITY_ERR,
    "warning": PRIORITY_WARNING,
    "warn": PRIORITY_WARNING,
    "info": PRIORITY_INFO,
    "debug": PRIORITY_DEBUG,
}


def journal_fields(event_dict: Mapping[str, Any]) -> dict[str, str]:
    """A structlog event as journald fields: MESSAGE, PRIORITY, SYSLOG_IDENTIFIER, MESSAGE_ID and
    every other field as upper-case ``REGAUTHD_*``."""
    event = dict(event_dict)
    name = str(event.pop("event", ""))
    level = str(event.pop("level", "info"))
    message = event.pop("message", None)
    priority = event.pop("priority", None)
    fields: dict[str, str] = {
        "MESSAGE": str(message) if message is not None else name,
        "PRIORITY": str(priority if priority is not None else _LEVEL_PRIORITY.get(level, 6)),
        "SYSLOG_IDENTIFIER": SYSLOG_IDENTIFIER,
        "REGAUTHD_EVENT": name,
    }
    message_id = event.pop("message_id", None)
    if message_id:
        fields["MESSAGE_ID"] = str(message_id)
    event.pop("timestamp", None)  # journald stamps entries itself
    for key, value in event.items():
        name_part = re.sub(r"[^A-Z0-9_]", "_", key.upper())
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        fields[f"REGAUTHD_{name_part}"[:64]] = text
    return fields


def _journal_datagram(fields: Mapping[str, str]) -> bytes:
    """journald's native protocol: ``KEY=value`` lines; values with newlines length-prefixed."""
    parts: list[bytes] = []
    for key, value in fields.items():
        data = value.encode("utf-8", "replace")
        if b"\n" in data:
            parts.append(key.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n")
        else:
            parts.append(key.encode() + b"=" + data + b"\n")
    return b"".join(parts)


class JournaldRenderer:
    """Final processor under journald: sends the entry natively, prints nothing.

    When the journal socket refuses the datagram, the entry goes to ``fallback`` (stderr, which
    journald also reads) instead: one sink per event, never two.
    """

    def __init__(self, socket_path: str = JOURNAL_SOCKET, fallback: IO[str] | None = None) -> None:
        self._path = socket_path
        self._fallback = fallback
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    def __call__(self, logger: WrappedLogger, method: str, event_dict: EventDict) -> str:
        fields = journal_fields(event_dict)
        try:
            self._sock.sendto(_journal_datagram(fields), self._path)
        except OSError:
            stream = self._fallback or sys.stderr
            stream.write(f"<{fields['PRIORITY']}>{fields['MESSAGE']}\n")
            stream.flush()
        raise structlog.DropEvent


def journald_connected(env: Mapping[str, str] | None = None, stderr_fd: int = 2) -> bool:
    """True when stderr is the journal stream systemd set up (``JOURNAL_STREAM=dev:ino``)."""
    value = (env if env is not None else os.environ).get("JOURNAL_STREAM", "")
    dev, _, ino = value.partition(":")
    if not dev.isdigit() or not ino.isdigit():
        return False
    try:
        st = os.fstat(stderr_fd)
    except OSError:
        return False
    return st.st_dev == int(dev) and st.st_ino == int(ino)


def resolve_output(
    mode: OutputMode, *, env: Mapping[str, str] | None = None, stdout: TextIO | None = None
) -> OutputMode:
    """AUTO -> journald when connected to it, console on a TTY, JSON otherwise."""
    if mode is not OutputMode.AUTO:
        return mode
    if journald_connected(env):
        return OutputMode.JOURNALD
    stream = stdout or sys.stdout
    with contextlib.suppress(ValueError, OSError):
        if stream.isatty():
            return OutputMode.CONSOLE
    return OutputMode.JSON


def _colour_wanted(stream: TextIO) -> bool:
    """Colour on a terminal, unless ``NO_COLOR`` is set (no-color.org)."""
    if os.environ.get("NO_COLOR"):
        return False
    try:
        return stream.isatty()
    except (ValueError, OSError):
        return False


def _add_priority(logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
    event_dict.setdefault("priority", _LEVEL_PRIORITY.get(method, PRIORITY_INFO))
    return event_dict


def processors(output: OutputMode, *, stdout: TextIO | None = None) -> list[Processor]:
    """The processor chain for a resolved output mode, renderer last, redaction before it."""
    # Tracebacks become data (JSON, journald) or plain text (console), never with local
    # variables: locals hold secrets.
    exceptions: Processor = (
        structlog.processors.format_exc_info
        if output is OutputMode.CONSOLE
        else structlog.processors.ExceptionRenderer(ExceptionDictTransformer(show_locals=False))
    )
    chain: list[Processor] = [
        structlog.processors.add_log_level,
        _add_priority,
        exceptions,
        REDACTOR,
    ]
    if output is OutputMode.JOURNALD:
        chain.append(JournaldRenderer())
    elif output is OutputMode.CONSOLE:
        chain.insert(0, structlog.processors.TimeStamper(fmt="%H:%M:%S", utc=False))
        chain.append(ConsoleRenderer(colors=_colour_wanted(stdout or sys.stdout)))
    else:
        chain.insert(0, structlog.processors.TimeStamper(fmt="iso", utc=True))
        chain.append(structlog.processors.JSONRenderer(default=str))
    return chain


def configure_logging(
    mode: OutputMode, level: str = "info", *, stdout: TextIO | None = None
) -> OutputMode:
    """Configure structlog for the daemon; returns the output actually chosen."""
    output = resolve_output(mode, stdout=stdout)
    structlog.configure(
        processors=processors(output, stdout=stdout),
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(stdout or sys.stdout),
        cache_logger_on_first_use=False,
    )
    return output
