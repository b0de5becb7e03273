"""Plain log-file lines (no journald): split one into its time, program and message. Pure.

Hosts without journald (macOS with Docker Desktop, hosts without systemd) log to files; the
file-tail follower (:mod:`regauthd.journal.logfiles`) reads them and hands each line here. The
caller passes "now": it dates syslog lines (which carry no year) and lines that carry no time.
Syslog writes the host's local time: those stamps are converted with the host's time-zone rules
(``datetime.astimezone()``), the one fact about the host this module reads.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

_SYSLOG = re.compile(
    r"^(?P<ts>[A-Z][a-z]{2} [ 0-9]\d \d{2}:\d{2}:\d{2}) \S+ (?P<ident>[^\s\[:]+)(?:\[\d+\])?: "
)
_ISO_PREFIX = re.compile(
    r"^\[?(?P<ts>\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?)\]?\s*"
    r"(?:\[(?P<ident>[^\]]+)\](?:\[[A-Z]\])?\s*)?"
)
_LOGFMT_TIME = re.compile(r"\btime=\"(?P<ts>[^\"]+)\"")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _parse_iso(text: str) -> datetime | None:
    text = text.replace(" ", "T", 1)
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    # Go writes nanoseconds; Python takes at most microseconds.
    m = re.match(r"^(.*?\.\d{6})\d*(.*)$", text)
    if m:
        text = m.group(1) + m.group(2)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def split_log_line(line: str, *, now: datetime) -> tuple[datetime, str | None, str]:
    """A plain log-file line -> (time, program, message).

    Understands syslog (``Nov 30 12:03:01 host dockerd[812]: ...``, the year taken from ``now``),
    ISO-prefixed lines (Docker Desktop's ``[2026-11-30T12:03:01.123Z][dockerd][I] ...``) and a
    logfmt ``time="..."`` field; otherwise the time is ``now``.
    """
    time: datetime | None = None
    ident: str | None = None
    message = line.rstrip("\r\n")
    m = _SYSLOG.match(message)
    if m:
        month, day, clock = m.group("ts").split(None, 2)
        hour, minute, second = (int(x) for x in clock.split(":"))
        # syslog writes local time without a year.
        local_now = now.astimezone()
        naive = datetime(local_now.year, _MONTHS.index(month) + 1, int(day), hour, minute, second)
        if naive.month == 12 and local_now.month == 1:
            naive = naive.replace(year=local_now.year - 1)  # a December line read in January
        time = naive.astimezone().astimezone(now.tzinfo)
        ident = m.group("ident")
        message = message[m.end() :]
    else:
        m2 = _ISO_PREFIX.match(message)
        if m2:
            time = _parse_iso(m2.group("ts"))
            ident = m2.group("ident")
            message = message[m2.end() :]
    logfmt = _LOGFMT_TIME.search(message)
    if logfmt:
        time = _parse_iso(logfmt.group("ts")) or time
    return (time or now), ident, message
