"""The daemon's console for people: one compact line per event, coloured on a terminal.

An alert reads ``10:42:07 NOTICE /home/u/.docker/config.json: repaired so ...`` and, when it is a
warning or an error, its next step on the line below. Other events read ``10:42:07 debug
config.repaired path=... changes=...``: the fields an alert line already says (message id,
priority, severity, subject, the catalogue's fix) are left out, and long values are cut. An event
with a ``summary`` (``daemon.summary``) reads as its text: ``10:43:00 info repaired 37 writes in 4
configs in the last 1m; 2 alerts suppressed``.
"""

from __future__ import annotations

from typing import Any, Final

from structlog.typing import EventDict, WrappedLogger

MAX_VALUE_CHARS: Final = 160
_RESET: Final = "\033[0m"
_COLOURS: Final = {
    "error": "\033[1;31m",  # bold red
    "critical": "\033[1;31m",
    "warning": "\033[33m",  # yellow
    "notice": "\033[32m",  # green
    "info": "",
    "debug": "\033[2m",  # dim
}
_SEVERITY_OF_PRIORITY: Final = {2: "critical", 3: "error", 4: "warning", 5: "notice"}


def _short(value: Any) -> str:
    text = " ".join(str(value).split())
    if len(text) > MAX_VALUE_CHARS:
        text = text[: MAX_VALUE_CHARS - 3] + "..."
    return f'"{text}"' if " " in text else text


class ConsoleRenderer:
    """Final structlog processor for ``output = "console"``."""

    def __init__(self, *, colors: bool) -> None:
        self._colors = colors

    def _paint(self, level: str, text: str) -> str:
        colour = _COLOURS.get(level, "") if self._colors else ""
        return f"{colour}{text}{_RESET}" if colour else text

    def __call__(self, logger: WrappedLogger, method: str, event_dict: EventDict) -> str:
        event = dict(event_dict)
        when = str(event.pop("timestamp", ""))
        name = str(event.pop("event", ""))
        level = str(event.pop("level", method))
        exception = event.pop("exception", None)
        if "message_id" in event and "message" in event:  # an alert: its message says it all
            line = self._alert(when, name, event)
        elif "summary" in event:  # a line for people (daemon.summary): its text says it all
            line = self._paint(level, f"{when} {level} {' '.join(str(event['summary']).split())}")
        else:
            event.pop("priority", None)
            fields = " ".join(f"{k}={_short(v)}" for k, v in event.items())
            line = self._paint(level, f"{when} {level} {name}" + (f" {fields}" if fields else ""))
        return f"{line}\n{exception}" if exception else line

    def _alert(self, when: str, name: str, event: dict[str, Any]) -> str:
        priority = event.get("priority")
        severity = (
            _SEVERITY_OF_PRIORITY.get(priority, "info") if isinstance(priority, int) else "info"
        )
        message = " ".join(str(event.get("message", name)).split())
        head = self._paint(severity, f"{when} {severity.upper()} {message}")
        lines = [head]
        fix = event.get("fix")
        if fix and severity in {"warning", "error", "critical"}:
            lines.append(f"         next step: {' '.join(str(fix).split())}")
        return "\n".join(lines)
