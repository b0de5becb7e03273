"""Step 5 of ``regauthd doctor``: the auth failures the journal logged for each registry in the
last day, each registry's last one with the cause :func:`regauthd.journal.correlate.correlate`
assigns (the same verdicts the daemon's journal alerts carry), weighed with what the doctor
found: the config's credential for the registry and the probe that just ran.

The doctor knows no repairs of its own (it changes nothing), so the evidence holds no repair
history; a credential under a key Docker never reads shows up in the login check instead.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from regauthd.commands.doctor_verdict import Status, Verdict
from regauthd.journal.access import require_readable
from regauthd.journal.backend import DEFAULT_UNITS, FollowOptions, JournalError
from regauthd.journal.correlate import Cause, correlate
from regauthd.journal.evidence import Evidence, ProbeNote, sight
from regauthd.journal.recognize import AuthFailure
from regauthd.journal.scan import scan
from regauthd.probe.result import ProbeResult

JOURNAL_WINDOW = timedelta(hours=24)
# Causes the doctor reports as a warning: the stored credential works now.
_EXPLAINED = frozenset({Cause.OTHER_CREDENTIAL, Cause.MISPLACED_KEY, Cause.PUSH_UNCHECKED})


def scan_failures(
    now: datetime, directory: Path | None = None
) -> tuple[list[AuthFailure] | None, str]:
    """The failures logged in the last :data:`JOURNAL_WINDOW`, or None and why not."""
    options = FollowOptions(units=DEFAULT_UNITS, directory=directory)
    try:
        require_readable(options)
        return list(scan(options, since=now - JOURNAL_WINDOW, now=now)), ""
    except JournalError as exc:
        return None, str(exc)


def journal_verdicts(
    names: list[str],
    failures: list[AuthFailure] | None,
    why: str,
    results: dict[str, ProbeResult],
    config_path: str,
    config: dict[str, Any] | None,
) -> list[Verdict]:
    """One ``journal`` verdict per registry."""
    out = []
    for name in names:
        if failures is None:
            status: Status = "not_applicable" if sys.platform != "linux" else "not_checked"
            out.append(Verdict("journal", status, why, _journal_fix(why), name))
            continue
        mine = sorted((f for f in failures if f.registry == name), key=lambda f: f.time)
        if not mine:
            out.append(
                Verdict("journal", "ok", "no auth failures logged in the last 24 h", None, name)
            )
            continue
        out.append(_explained(name, mine, results.get(name), config_path, config))
    return out


def _explained(
    name: str,
    mine: list[AuthFailure],
    probe: ProbeResult | None,
    config_path: str,
    config: dict[str, Any] | None,
) -> Verdict:
    last = mine[-1]
    evidence = Evidence(
        configs=(sight(config_path, config, name),) if config is not None else None,
        probe=probe,
        probe_note=ProbeNote.FRESH if probe is not None else ProbeNote.OFF,
        failures=len(mine),
        first_time=mine[0].time,
    )
    verdict = correlate(last, evidence, tz=UTC)
    when = last.time.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    text = (
        f"{len(mine)} auth failure(s) logged in the last 24 h, the last at {when} by "
        f"{last.unit}; cause ({verdict.cause.value}): {verdict.text}"
    )
    works = verdict.cause in _EXPLAINED or (probe is not None and probe.ok)
    return Verdict("journal", "warning" if works else "problem", text, verdict.fix, name)


def _journal_fix(why: str) -> str:
    if "permission" in why or "not readable" in why or "is not open to" in why:
        return "run `sudo regauthd doctor`, or add yourself to the systemd-journal group"
    return "no journal here: on a host without journald, use `regauthd scan-journal --log-file F`"
