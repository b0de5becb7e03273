"""``--since`` values as ``journalctl --since`` reads them (systemd.time(7)), parsed by us so
every backend (systemd-python has no parser of its own) means the same instant. Pure: the
caller passes ``now``, whose time zone is the one times without an offset are read in.

Accepted: ``now``, ``today``, ``yesterday``, ``tomorrow``; ``@EPOCH``; a time span back from now
(``-2h``, ``2h``, ``1h 30min``, ``-1h30m``, ``3 hours ago``, ``+15min`` forward; units ``us ms s
sec second(s) m min minute(s) h hr hour(s) d day(s) w week(s) M month(s) y year(s)``); a date or
time (``2026-11-30``, ``2026-11-30 12:00[:00]``, ``12:00`` today, ISO 8601 with ``T`` and an
offset or ``Z``, an optional weekday first and ``UTC`` last).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_UNIT_SECONDS = {
    "us": 1e-6,
    "usec": 1e-6,
    "ms": 1e-3,
    "msec": 1e-3,
    "s": 1,
    "sec": 1,
    "second": 1,
    "seconds": 1,
    "m": 60,
    "min": 60,
    "minute": 60,
    "minutes": 60,
    "h": 3600,
    "hr": 3600,
    "hour": 3600,
    "hours": 3600,
    "d": 86400,
    "day": 86400,
    "days": 86400,
    "w": 604800,
    "week": 604800,
    "weeks": 604800,
    "M": 2629800,  # systemd: 30.44 days
    "month": 2629800,
    "months": 2629800,
    "y": 31557600,  # systemd: 365.25 days
    "year": 31557600,
    "years": 31557600,
}
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([A-Za-z]+)")
_SPAN = re.compile(r"^(?:\d+(?:\.\d+)?\s*[A-Za-z]+\s*)+$")
# journalctl checks the weekday against the date; we just skip it.
_WEEKDAY = re.compile(r"^(mon|tue|wed|thu|fri|sat|sun)[a-z]*\s+", re.IGNORECASE)
_TIME_ONLY = re.compile(r"^(\d{1,2}):(\d{2})(?::(\d{2}))?$")
_EXPECTED = (
    "expected what journalctl --since accepts: 2026-11-30 12:00:00, 2026-11-30, 12:00, "
    "today, yesterday, -2h, 1h 30min, 3 hours ago, @EPOCH"
)


class SinceError(ValueError):
    """A ``--since`` value regauthd cannot read."""


def parse_since(text: str, *, now: datetime) -> datetime:
    """The instant ``text`` names (aware), read the way ``journalctl --since`` reads it."""
    value = " ".join(text.split())
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    words = {
        "now": now,
        "today": midnight,
        "yesterday": midnight - timedelta(days=1),
        "tomorrow": midnight + timedelta(days=1),
    }
    if value.lower() in words:
        return words[value.lower()]
    if value.startswith("@"):
        try:
            return datetime.fromtimestamp(float(value[1:]), UTC)
        except (ValueError, OverflowError):
            raise SinceError(f"--since {text!r}: expected @EPOCH_SECONDS") from None
    span = _span(value)
    if span is not None:
        return now + span
    return _absolute(value, text, now)


def _span(value: str) -> timedelta | None:
    sign = -1
    body = value
    if body.endswith(" ago"):
        body = body[:-4]
    elif body.startswith("+"):
        sign, body = 1, body[1:]
    elif body.startswith("-"):
        body = body[1:]
    body = body.strip()
    if not body or not _SPAN.match(body):
        return None
    seconds = 0.0
    for amount, unit in _PART.findall(body):
        factor = _UNIT_SECONDS.get(unit) or _UNIT_SECONDS.get(unit.lower())
        if factor is None:
            return None
        seconds += float(amount) * factor
    return timedelta(seconds=sign * seconds)


def _absolute(value: str, text: str, now: datetime) -> datetime:
    value = _WEEKDAY.sub("", value)
    tz = now.tzinfo or UTC
    if value.endswith(" UTC"):
        value, tz = value[:-4], UTC
    m = _TIME_ONLY.match(value)
    if m:
        hour, minute, second = int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)
        try:
            return now.astimezone(tz).replace(
                hour=hour, minute=minute, second=second, microsecond=0
            )
        except ValueError:
            raise SinceError(f"--since {text!r}: {_EXPECTED}") from None
    iso = value[:-1] + "+00:00" if value.endswith("Z") else value
    try:
        parsed = datetime.fromisoformat(iso)
    except ValueError:
        raise SinceError(f"--since {text!r}: {_EXPECTED}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=tz)
