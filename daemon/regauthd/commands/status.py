"""``regauthd status``: how the running daemon is doing, read from the status file it keeps in
its state directory (``status.json``, written by :mod:`regauthd.service.status`).

Exit 0 when the file's daemon is running; 1 when it is not (or no status file can be read),
saying why; 2 on usage errors. ``--json`` prints the file's object with ``running`` and
``reason`` added, on one line.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from regauthd.commands import EXIT_OK, EXIT_PROBLEMS
from regauthd.settingsfile import resolve_state_dir

SYSTEM_STATE_DIR = Path("/var/lib/regauthd")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state-dir",
        metavar="DIR",
        type=Path,
        default=None,
        help="the daemon's state directory (default: as `regauthd run` picks it: "
        "/var/lib/regauthd for root, else $XDG_STATE_HOME/regauthd)",
    )
    parser.add_argument("--json", action="store_true", help="print the status as one JSON object")


def read_status(path: Path) -> tuple[dict[str, Any] | None, str]:
    """(the status object, "") or (None, why it cannot be had)."""
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        why = f"no status file at {path}: no daemon has run with this state directory"
        if os.geteuid() != 0 and not path.is_relative_to(SYSTEM_STATE_DIR):
            why += (
                " (the system service keeps its status under /var/lib/regauthd: "
                "`sudo regauthd status`)"
            )
        return None, why
    except PermissionError:
        return None, f"cannot read {path}: permission denied; run `sudo regauthd status`"
    except OSError as exc:
        return None, f"cannot read {path}: {exc.strerror or errno.errorcode.get(exc.errno or 0)}"
    except ValueError:
        return None, f"{path} is not valid JSON (a daemon from another version, or damaged)"
    if not isinstance(data, dict) or not isinstance(data.get("pid"), int):
        return None, f"{path} does not hold a regauthd status object"
    return data, ""


def daemon_alive(pid: int) -> tuple[bool, str]:
    """Whether ``pid`` is a running regauthd; the reason when it is not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False, f"the daemon (pid {pid}) is not running any more"
    except PermissionError:
        pass  # alive, another user's
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True, ""
    if b"regauthd" not in cmdline:
        return (
            False,
            f"the daemon (pid {pid}) is not running any more (the pid is another program's)",
        )
    return True, ""


def render(data: dict[str, Any], running: bool, reason: str, path: Path) -> list[str]:
    written = datetime.fromtimestamp(path.stat().st_mtime, UTC).isoformat(timespec="seconds")
    if running:
        head = f"regauthd is running (pid {data['pid']}, since {data.get('started_at')})"
    else:
        head = f"regauthd is NOT running: {reason}; last status written {written}"
    lines = [head]
    configs = data.get("watched_configs") or []
    count = data.get("watched_config_count")
    count = count if isinstance(count, int) and count >= len(configs) else len(configs)
    lines.append(f"watching {count} config(s)" + (":" if configs else ""))
    lines += [f"  {c}" for c in configs]
    if count > len(configs):
        lines.append(
            f"  ... and {count - len(configs)} more (the status file names the first "
            f"{len(configs)})"
        )
    repair = data.get("last_repair")
    if repair:
        changes = "; ".join(repair.get("changes") or []) or "rewritten"
        lines.append(f"last repair: {repair.get('path')} at {repair.get('at')}: {changes}")
    else:
        lines.append("last repair: none since start")
    alert = data.get("last_alert")
    if alert:
        lines.append(
            f"last alert: {alert.get('kind')} at {alert.get('at')}: {alert.get('message')}"
        )
    else:
        lines.append("last alert: none since start")
    suppressed = data.get("suppressed_alerts")
    if isinstance(suppressed, dict) and suppressed:
        counts = ", ".join(f"{kind} {n}" for kind, n in sorted(suppressed.items()))
        lines.append(f"alerts suppressed (repeats within the window) since start: {counts}")
    elif isinstance(suppressed, dict):
        lines.append("alerts suppressed since start: none")
    probes = data.get("probes")
    if isinstance(probes, dict):
        every = probes.get("interval_s")
        results = probes.get("results") or []
        lines.append(
            f"probes: every {every:g} s, {len(results)} result(s)"
            if isinstance(every, int | float)
            else f"probes: {len(results)} result(s)"
        )
        lines += [
            f"  {r.get('registry')} ({r.get('config')}): {r.get('status')} at {r.get('at')}"
            f" - {r.get('detail')}"
            for r in results
        ]
    else:
        lines.append("probes: off")
    journal = data.get("journal")
    if isinstance(journal, dict):
        state = "following" if journal.get("running") else "NOT following (see the daemon's log)"
        lines.append(
            f"journal: {state} {', '.join(journal.get('units') or [])}; "
            f"{journal.get('failures_seen', 0)} auth failure(s), "
            f"{journal.get('alerts_raised', 0)} alert(s)"
        )
    else:
        lines.append("journal: off")
    return lines


def command(args: argparse.Namespace) -> int:
    # The daemon's status writer (and its logging) is imported only when the command runs.
    from regauthd.service.status import STATUS_FILE  # noqa: PLC0415

    path = resolve_state_dir(args.state_dir) / STATUS_FILE
    data, why = read_status(path)
    if data is None:
        if args.json:
            print(json.dumps({"running": False, "reason": why}), flush=True)
        print(f"regauthd status: {why}", file=sys.stderr)
        return EXIT_PROBLEMS
    running, reason = daemon_alive(data["pid"])
    if args.json:
        print(json.dumps({**data, "running": running, "reason": reason}, ensure_ascii=False))
    else:
        print("\n".join(render(data, running, reason, path)))
    return EXIT_OK if running else EXIT_PROBLEMS
