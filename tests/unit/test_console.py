"""The daemon's console for people: one compact line per event, colour only on a terminal."""

from __future__ import annotations

import io

from regauthd.alerts.catalogue import CATALOGUE, AlertKind, alert_event
from regauthd.alerts.console import ConsoleRenderer
from regauthd.alerts.output import processors
from regauthd.settings import OutputMode

PATH = "/home/ci/.docker/config.json"


def _alert(kind: AlertKind, **fields: object) -> dict[str, object]:
    event = alert_event(CATALOGUE[kind], PATH, {"path": PATH, **fields})
    return {"timestamp": "10:42:07", "level": "info", **event}


def test_an_alert_is_one_short_line_without_repeated_fields() -> None:
    event = _alert(
        AlertKind.CONFIG_NORMALIZED,
        changes="docker.io -> https://index.docker.io/v1/ (rename)",
        fix="Nothing to do.",
    )
    text = ConsoleRenderer(colors=False)(None, "info", event)
    assert text == (
        f"10:42:07 NOTICE {PATH}: repaired so every client finds the credentials "
        "(docker.io -> https://index.docker.io/v1/ (rename))"
    )
    assert "\033[" not in text


def test_a_failure_has_its_next_step_below() -> None:
    event = _alert(AlertKind.CONFIG_UNFIXABLE, reason="line 1 column 2: invalid JSON")
    first, second = ConsoleRenderer(colors=False)(None, "error", event).splitlines()
    assert first.startswith(f"10:42:07 ERROR {PATH}: left unchanged: line 1 column 2")
    assert second.strip().startswith(f"next step: Run `regauthd check --docker-config {PATH}`")
    coloured = ConsoleRenderer(colors=True)(None, "error", event)
    assert coloured.startswith("\033[1;31m10:42:07 ERROR ")


def test_other_events_are_compact_and_long_values_cut() -> None:
    event = {"timestamp": "10:42:07", "level": "debug", "event": "config.repaired",
             "path": PATH, "changes": "x" * 500}  # fmt: skip
    text = ConsoleRenderer(colors=False)(None, "debug", event)
    assert text.startswith(f"10:42:07 debug config.repaired path={PATH} changes=")
    assert len(text) < 250 and text.endswith("...")


def test_console_output_uses_it_and_no_colour_off_a_terminal() -> None:
    chain = processors(OutputMode.CONSOLE, stdout=io.StringIO())
    renderer = chain[-1]
    assert isinstance(renderer, ConsoleRenderer)
    assert "\033[" not in renderer(None, "error", _alert(AlertKind.CONFIG_UNFIXABLE, reason="r"))


def test_the_activity_summary_reads_as_its_text() -> None:
    from regauthd.service.summary import summary_text

    text = summary_text(37, 4, 2, 60.0)
    assert text == "repaired 37 writes in 4 configs in the last 1m; 2 alerts suppressed"
    assert summary_text(0, 0, 1, 90.0) == "no repairs in the last 90s; 1 alert suppressed"
    event = {
        "timestamp": "10:43:00",
        "level": "info",
        "event": "daemon.summary",
        "summary": text,
        "repairs": 37,
        "configs": 4,
        "suppressed": {"config.normalized": 2},
    }
    assert ConsoleRenderer(colors=False)(None, "info", event) == f"10:43:00 info {text}"
