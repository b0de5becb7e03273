"""Alerts: the catalogue of alert kinds, suppression, logging sinks, redaction and metrics.

The catalogue (:data:`CATALOGUE`) is the single list of things regauthd tells people about. Each
kind has a stable journald ``MESSAGE_ID`` (the same IDs are in ``systemd/regauthd.catalog``, so
``journalctl -x`` explains the alert and its fix), a syslog priority, a message template and the
fix.

Output picks itself (:func:`configure_logging`): native journald entries when stderr is connected
to journald (``JOURNAL_STREAM``), a readable console on a TTY, JSON lines on stdout otherwise;
never two sinks for one event. Every event passes the :class:`Redactor` last, so no secret reaches
any sink, tracebacks included (rendered without local variables).
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
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final, TextIO

import structlog
from structlog.tracebacks import ExceptionDictTransformer
from structlog.typing import EventDict, Processor, WrappedLogger

from regauthd.redact import secret_values
from regauthd.settings import OutputMode

SYSLOG_IDENTIFIER: Final = "regauthd"
JOURNAL_SOCKET: Final = "/run/systemd/journal/socket"

# syslog priorities, as journald's PRIORITY field wants them.
PRIORITY_ERR: Final = 3
PRIORITY_WARNING: Final = 4
PRIORITY_NOTICE: Final = 5
PRIORITY_INFO: Final = 6
PRIORITY_DEBUG: Final = 7

_SEVERITY = {
    PRIORITY_ERR: "error",
    PRIORITY_WARNING: "warning",
    PRIORITY_NOTICE: "notice",
    PRIORITY_INFO: "info",
}
_LEVEL_PRIORITY = {
    "critical": 2,
    "exception": PRIORITY_ERR,
    "error": PRIORITY_ERR,
    "warning": PRIORITY_WARNING,
    "warn": PRIORITY_WARNING,
    "info": PRIORITY_INFO,
    "debug": PRIORITY_DEBUG,
}
# The structlog method an alert is logged with (notice has no method of its own).
_PRIORITY_METHOD = {
    PRIORITY_ERR: "error",
    PRIORITY_WARNING: "warning",
    PRIORITY_NOTICE: "info",
    PRIORITY_INFO: "info",
}


@dataclass(frozen=True, slots=True)
class AlertKind:
    """One kind of alert, as people and log-based alerting see it."""

    name: str
    """Namespaced event name (``config.normalized``)."""
    message_id: uuid.UUID
    """Stable journald MESSAGE_ID: never change it, alerting rules match on it."""
    priority: int
    """syslog priority: 3 error, 4 warning, 5 notice."""
    title: str
    """One line saying what happened (the catalog's Subject)."""
    template: str
    """The human message; ``{field}`` placeholders are filled from the alert's fields."""
    fix: str
    """What a person does about it."""
    fields: tuple[str, ...]
    """Fields every alert of this kind carries (the template uses only these)."""

    @property
    def severity(self) -> str:
        return _SEVERITY[self.priority]


def _kind(
    name: str,
    message_id: str,
    priority: int,
    title: str,
    template: str,
    fix: str,
    fields: tuple[str, ...],
) -> AlertKind:
    return AlertKind(name, uuid.UUID(message_id), priority, title, template, fix, fields)


CATALOGUE: Final[Mapping[str, AlertKind]] = {
    k.name: k
    for k in (
        _kind(
            "config.normalized",
            "8fb9ffe68f95460caebf1095f6a057ab",
            PRIORITY_NOTICE,
            "A Docker config was repaired",
            "{path}: repaired so every client finds the credentials ({changes})",
            "Nothing to do. To stop the writer from using the wrong key, log in to Docker Hub "
            "with `docker login` (no argument) instead of `docker login docker.io`.",
            ("path", "changes"),
        ),
        _kind(
            "config.conflict",
            "bd77fba0b802472c984a312b2da10fdf",
            PRIORITY_WARNING,
            "Two spellings of one registry held different credentials",
            "{path}: {canonical} had two different credentials; kept the one from {winner}, "
            "the one from {loser} is in the backup {backup}",
            "Check that pushes work (`regauthd probe`). If the kept credential is the stale one, "
            "log in again; the other one can be restored from the backup.",
            ("path", "canonical", "winner", "loser", "backup"),
        ),
        _kind(
            "config.unfixable",
            "30ce21089d064f31a9fb02dbbbccde57",
            PRIORITY_ERR,
            "A Docker config cannot be repaired",
            "{path}: left unchanged: {reason}",
            "Run `regauthd check --docker-config DIR` for the details, fix the file by hand "
            "(or log in again to have it rewritten), then regauthd repairs it by itself.",
            ("path", "reason"),
        ),
        _kind(
            "config.flapping",
            "91a97ed8f59d4c18b9e385bf0cadcd57",
            PRIORITY_WARNING,
            "Another program keeps undoing the repair of a Docker config",
            "{path}: another program put back the content regauthd replaced {undos} times "
            "within {window}; not rewriting it for {backoff}",
            "Find the program that rewrites the file (Docker Desktop restores its own copy; "
            "a configuration-management run may too) and have it write the canonical key, "
            "or stop it. regauthd tries again after the pause.",
            ("path", "undos", "window", "backoff"),
        ),
        _kind(
            "settings.reload_failed",
            "e1d288d5a93b4ddf871438868fcf706e",
            PRIORITY_ERR,
            "New regauthd settings were rejected; the previous ones stay in force",
            "settings not reloaded, the previous ones stay in force: {reason}",
            "Correct the settings file (config.example.toml lists every option), then reload "
            "again with `systemctl reload regauthd` (SIGHUP).",
            ("reason",),
        ),
        _kind(
            "probe.failing",
            "15adec7240c14fb487313812a9067002",
            PRIORITY_ERR,
            "A registry probe with the stored credential fails",
            "{registry}: probe failed ({status}): {reason}",
            "Log in again (`docker login REGISTRY`) when the credential is refused or may not "
            "push; when the registry cannot be reached or its TLS fails, check the network, the "
            "name and `[probe] ca_file`. `regauthd probe REGISTRY` shows the details.",
            ("registry", "status", "reason"),
        ),
        _kind(
            "probe.recovered",
            "24362ed9636d4f5888df64de114582ff",
            PRIORITY_NOTICE,
            "A registry accepts the stored credential again",
            "{registry}: the stored credential works again",
            "Nothing to do.",
            ("registry",),
        ),
        _kind(
            "probe.conflict",
            "4903823f81eb478696864e13246628f0",
            PRIORITY_WARNING,
            "A probe checked both credentials of a repaired conflict",
            "{path}: {canonical} was stored twice with different credentials: {verdict} "
            "(original file in {backup})",
            "When the kept credential does not work, restore the other entry from the backup or "
            "log in again (`docker login REGISTRY`); otherwise nothing to do.",
            ("path", "canonical", "verdict", "backup"),
        ),
        _kind(
            "probe.rate_limited",
            "9058a30c181446778e40914dcf40878e",
            PRIORITY_WARNING,
            "A registry is rate-limiting this host",
            "{registry}: rate limit reached ({remaining} of {limit} pulls left)",
            "Log in to the registry (authenticated pulls have a higher limit), use a pull-through "
            "mirror, or spread the pulls out.",
            ("registry", "remaining", "limit"),
        ),
        _kind(
            "journal.auth_failure",
            "25dbf2da990f44b7a3467891ca4105de",
            PRIORITY_ERR,
            "A container engine logged a registry authentication failure",
            "{unit}: {reason}",
            "Check the credential for that registry with `regauthd probe REGISTRY` and log in "
            "again for the user the engine runs as (root's ~/.docker for dockerd).",
            ("unit", "reason"),
        ),
        _kind(
            "journal.unavailable",
            "57e637542dc446859c2130d4283a7b82",
            PRIORITY_ERR,
            "regauthd cannot follow the journal",
            "cannot follow the journal for registry auth failures: {reason}",
            "Run regauthd as root or in the systemd-journal group; on a host without journald "
            'set `[journal] log_files` (or `backend = "files"`); for a journal mounted from '
            "elsewhere set `[journal] directory`. regauthd keeps retrying meanwhile.",
            ("reason",),
        ),
    )
}


# ---------------------------------------------------------------------------------------------
# Pure core: alert events, suppression, redaction, metrics text


class _Missing(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "?"


def format_message(kind: AlertKind, fields: Mapping[str, Any]) -> str:
    """The human message of an alert; a missing field shows as ``?`` rather than failing."""
    return kind.template.format_map(_Missing(fields))


def alert_event(
    kind: AlertKind, subject: str, fields: Mapping[str, Any], *, suppressed: int = 0
) -> dict[str, Any]:
    """The flat event dict logged for an alert (or, with ``suppressed``, its window's summary)."""
    message = format_message(kind, fields)
    if suppressed:
        message = f"{kind.name} for {subject}: suppressed {suppressed} more (last: {message})"
    event: dict[str, Any] = {
        "event": kind.name,
        "message": message,
        "message_id": kind.message_id.hex,
        "priority": kind.priority,
        "severity": kind.severity,
        "subject": subject,
        "fix": kind.fix,
        **fields,
    }
    if suppressed:
        event["suppressed"] = suppressed
    return event


@dataclass(slots=True)
class _Window:
    ends: float
    suppressed: int
    last_fields: Mapping[str, Any]


class Suppressor:
    """The same alert (kind, subject) at most once per window; the window ends with a summary.

    Pure bookkeeping: the caller passes the time, so tests drive the clock.
    """

    def __init__(self, window: float) -> None:
        self.window = window
        self._open: dict[tuple[str, str], _Window] = {}

    def admit(self, kind: str, subject: str, fields: Mapping[str, Any], now: float) -> bool:
        """True: emit this alert now. False: counted for the window's summary."""
        key = (kind, subject)
        current = self._open.get(key)
        if current is not None and now < current.ends:
            current.suppressed += 1
            current.last_fields = fields
            return False
        if self.window > 0:
            self._open[key] = _Window(now + self.window, 0, fields)
        return True

    def due(self, now: float) -> list[tuple[str, str, int, Mapping[str, Any]]]:
        """Close the windows that ended: (kind, subject, suppressed, last fields) for each that
        suppressed something."""
        summaries = []
        for key, current in list(self._open.items()):
            if now >= current.ends:
                del self._open[key]
                if current.suppressed:
                    summaries.append((key[0], key[1], current.suppressed, current.last_fields))
        return summaries

    def next_deadline(self) -> float | None:
        """When the next window with something to summarize ends (None: nothing pending)."""
        ends = [w.ends for w in self._open.values() if w.suppressed]
        return min(ends) if ends else None

    def prune(self, now: float) -> None:
        """Forget ended windows that suppressed nothing (keeps memory bounded)."""
        for key, current in list(self._open.items()):
            if now >= current.ends and not current.suppressed:
                del self._open[key]


REDACTED: Final = "[redacted]"
_SENSITIVE_KEY = re.compile(
    r"(^auth$|pass|secret|token|authorization|credential|cookie|^x-?api-?key$)", re.IGNORECASE
)
_SECRET_PATTERNS: Final = (
    # JSON fragments of a Docker config: "auth": "...", "password": "...", "identitytoken": "..."
    (
        re.compile(
            r'("(?:auth|password|identitytoken|registrytoken|token|access_token|refresh_token)"'
            r'\s*:\s*)"(?:[^"\\]|\\.)*"',
            re.IGNORECASE,
        ),
        rf'\1"{REDACTED}"',
    ),
    (re.compile(r"\b(Basic|Bearer)\s+[A-Za-z0-9+/=._~-]{4,}"), rf"\1 {REDACTED}"),
    (
        re.compile(r"\b(password|passwd|secret|token|auth)=[^\s&,;]+", re.IGNORECASE),
        rf"\1={REDACTED}",
    ),
)
_MIN_SECRET_LENGTH: Final = 4
_MAX_REMEMBERED: Final = 256


class Redactor:
    """Keeps secrets out of every sink.

    Three guards: values under sensitive keys (``password``, ``auth``, ``*token*``...) are
    replaced; text that looks like a credential (a config's ``"auth": "..."``, ``Basic xyz``,
    ``password=...``) is masked; and every secret the daemon has seen (:meth:`remember`) is
    replaced wherever it appears, exception messages included.
    """

    def __init__(self) -> None:
        self._secrets: dict[str, None] = {}
        self._lock = threading.Lock()
        self._pattern: re.Pattern[str] | None = None

    def remember(self, secrets: Iterable[str]) -> None:
        """Add secrets to mask (the most recent ones are kept). Cheap: called on the hot path;
        the pattern is rebuilt lazily, when something is logged."""
        with self._lock:
            for secret in secrets:
                if len(secret) < _MIN_SECRET_LENGTH:
                    continue
                if secret in self._secrets:
                    self._secrets.pop(secret)
                else:
                    self._pattern = None
                self._secrets[secret] = None
            while len(self._secrets) > _MAX_REMEMBERED:
                del self._secrets[next(iter(self._secrets))]
                self._pattern = None

    def _compiled(self) -> re.Pattern[str] | None:
        with self._lock:
            if self._pattern is None and self._secrets:
                # Longest first, so a secret that contains another is masked whole.
                ordered = sorted(self._secrets, key=len, reverse=True)
                self._pattern = re.compile("|".join(re.escape(s) for s in ordered))
            return self._pattern

    def text(self, value: str) -> str:
        pattern = self._compiled()
        if pattern is not None:
            value = pattern.sub(REDACTED, value)
        for regex, replacement in _SECRET_PATTERNS:
            value = regex.sub(replacement, value)
        return value

    def value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {k: self.field(str(k), v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(v) for v in value]
        if isinstance(value, bytes):
            return self.text(value.decode("utf-8", "replace"))
        return value

    def field(self, key: str, value: Any) -> Any:
        if _SENSITIVE_KEY.search(key) and isinstance(value, str | bytes) and value:
            return REDACTED
        return self.value(value)

    def __call__(self, logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
        """structlog processor: redact every field of the event."""
        return {k: self.field(k, v) for k, v in event_dict.items()}


REDACTOR: Final = Redactor()
"""The process-wide redactor every sink uses; the daemon remembers the secrets it reads."""


def remember_config_secrets(config: Mapping[str, Any]) -> None:
    """Remember every secret a parsed Docker config holds (auth, decoded password, tokens)."""
    REDACTOR.remember(secret_values(config))


def _metric_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Metrics:
    """Counters by alert kind, for fleets: a Prometheus textfile-collector file.

    Thread-safe; :meth:`render` is pure text, :meth:`write` replaces the file atomically.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[tuple[str, str], float] = {}
        self._gauges: dict[str, float] = {}
        self.dirty = False

    def count(self, name: str, kind: str = "", by: float = 1) -> None:
        with self._lock:
            self._counters[(name, kind)] = self._counters.get((name, kind), 0) + by
            self.dirty = True

    def gauge(self, name: str, value: float) -> None:
        with self._lock:
            if self._gauges.get(name) != value:
                self._gauges[name] = value
                self.dirty = True

    def value(self, name: str, kind: str = "") -> float:
        with self._lock:
            return self._counters.get((name, kind), 0)

    def render(self) -> str:
        with self._lock:
            counters = sorted(self._counters.items())
            gauges = sorted(self._gauges.items())
        lines: list[str] = []
        seen: set[str] = set()
        for (name, kind), value in counters:
            metric = f"regauthd_{name}_total"
            if metric not in seen:
                seen.add(metric)
                lines.append(f"# TYPE {metric} counter")
            label = f'{{kind="{_metric_label(kind)}"}}' if kind else ""
            lines.append(f"{metric}{label} {value:g}")
        for name, value in gauges:
            lines.append(f"# TYPE regauthd_{name} gauge")
            lines.append(f"regauthd_{name} {value:g}")
        return "\n".join(lines) + "\n"

    def write(self, path: Path) -> None:
        """Atomically replace ``path`` (temp file in the same directory, then rename)."""
        text = self.render()
        self.dirty = False
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tmp.write_text(text, encoding="utf-8")
        tmp.chmod(0o644)
        tmp.replace(path)


class Alerter:
    """Raises alerts from the catalogue: suppression, metrics, then the configured logger.

    Call it from one thread (the daemon's loop); the probe and journal hooks post to that loop.
    """

    def __init__(
        self,
        *,
        suppress_window: float,
        metrics: Metrics | None = None,
        logger: Any = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.suppressor = Suppressor(suppress_window)
        self.metrics = metrics or Metrics()
        self._logger = logger
        self._clock = clock

    @property
    def logger(self) -> Any:
        return self._logger if self._logger is not None else structlog.get_logger()

    def alert(self, kind: str, subject: str, **fields: Any) -> bool:
        """Raise one alert of a catalogued kind; False when suppressed (it is still counted)."""
        alert_kind = CATALOGUE[kind]
        self.metrics.count("alerts", kind)
        now = self._clock()
        if not self.suppressor.admit(kind, subject, fields, now):
            self.metrics.count("alerts_suppressed", kind)
            return False
        self._emit(alert_kind, alert_event(alert_kind, subject, fields))
        return True

    def flush_due(self) -> None:
        """Emit the summaries of the windows that have ended."""
        now = self._clock()
        for kind, subject, suppressed, fields in self.suppressor.due(now):
            alert_kind = CATALOGUE[kind]
            self._emit(alert_kind, alert_event(alert_kind, subject, fields, suppressed=suppressed))
        self.suppressor.prune(now)

    def next_deadline(self) -> float | None:
        return self.suppressor.next_deadline()

    def _emit(self, kind: AlertKind, event: dict[str, Any]) -> None:
        name = event.pop("event")
        getattr(self.logger, _PRIORITY_METHOD[kind.priority])(name, **event)


# ---------------------------------------------------------------------------------------------
# Shell: sinks and structlog configuration


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
        chain.append(structlog.dev.ConsoleRenderer(colors=False))
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
