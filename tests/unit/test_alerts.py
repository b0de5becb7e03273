"""Alerts: the catalogue and its journald catalog, suppression, sinks, redaction, metrics."""

from __future__ import annotations

import io
import json
import os
import re
import socket
import string
import struct
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
import structlog
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from regauthd import redactor as redact
from regauthd.alerts.alerter import Alerter, Suppressor
from regauthd.alerts.catalogue import CATALOGUE, alert_event, format_message
from regauthd.alerts.metrics import Metrics
from regauthd.alerts.output import (
    JournaldRenderer,
    configure_logging,
    journal_fields,
    journald_connected,
    processors,
    resolve_output,
)
from regauthd.redact import REDACTED
from regauthd.redactor import Redactor, remember_config_secrets
from regauthd.settings import OutputMode
from tests.conftest import require_program

ROOT = Path(__file__).resolve().parents[2]
CATALOG_FILE = ROOT / "systemd" / "regauthd.catalog"
SECRET = "hunter2-very-secret"
AUTH = "YWxpY2U6aHVudGVyMi12ZXJ5LXNlY3JldA=="  # alice:hunter2-very-secret


@pytest.fixture(autouse=True)
def _reset_structlog() -> Any:
    yield
    structlog.reset_defaults()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- the catalogue -----------------------------------------------------------------------------


def test_catalogue_has_every_kind_with_a_unique_stable_id() -> None:
    assert set(CATALOGUE) == {
        "config.normalized",
        "config.conflict",
        "config.unfixable",
        "config.flapping",
        "config.save_failed",
        "settings.reload_failed",
        "probe.failing",
        "probe.recovered",
        "probe.rate_limited",
        "probe.conflict",
        "journal.auth_failure",
        "journal.unavailable",
        "watch.overflow",
        "watch.limit",
        "credential.expiring",
        "credential.expired",
        "helper.budget",
    }
    ids = [k.message_id for k in CATALOGUE.values()]
    assert len(set(ids)) == len(ids)
    for name, kind in CATALOGUE.items():
        assert kind.name == name
        assert re.fullmatch(r"[a-z]+\.[a-z_]+", name)
        assert kind.message_id.version == 4
        assert kind.priority in (3, 4, 5)
        assert kind.fix and kind.title and kind.template


@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_templates_use_exactly_the_declared_fields(name: str) -> None:
    kind = CATALOGUE[name]
    used = {f for _, f, _, _ in string.Formatter().parse(kind.template) if f}
    assert used == set(kind.fields)
    message = format_message(kind, {f: f"<{f}>" for f in kind.fields})
    assert "?" not in message
    assert all(f"<{f}>" in message for f in kind.fields)


def _catalog_ids(text: str) -> set[str]:
    return set(re.findall(r"^-- ([0-9a-f]{32})$", text, re.MULTILINE))


def test_catalog_file_and_catalogue_have_the_same_ids() -> None:
    text = CATALOG_FILE.read_text()
    assert _catalog_ids(text) == {k.message_id.hex for k in CATALOGUE.values()}
    for kind in CATALOGUE.values():
        entry = text.split(f"-- {kind.message_id.hex}\n", 1)[1].split("\n-- ", 1)[0]
        assert "Subject: " in entry
        assert "Fix: " in entry, f"catalog entry for {kind.name} does not say the fix"
        for field in kind.fields:
            assert f"@REGAUTHD_{field.upper()}@" in entry, (kind.name, field)


def test_journalctl_compiles_the_catalog(tmp_path: Path) -> None:
    journalctl = require_program("journalctl", "systemd")
    catalog_dir = tmp_path / "usr/lib/systemd/catalog"
    catalog_dir.mkdir(parents=True)
    (tmp_path / "var/lib/systemd/catalog").mkdir(parents=True)
    (catalog_dir / "regauthd.catalog").write_bytes(CATALOG_FILE.read_bytes())
    subprocess.run([journalctl, f"--root={tmp_path}", "--update-catalog"], check=True, timeout=30)
    listed = subprocess.run(
        [journalctl, f"--root={tmp_path}", "--list-catalog"],
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout
    assert {line.split()[0] for line in listed.splitlines()} == {
        k.message_id.hex for k in CATALOGUE.values()
    }


# -- events and suppression --------------------------------------------------------------------


def test_alert_event_is_flat_and_complete() -> None:
    kind = CATALOGUE["config.unfixable"]
    assert alert_event(kind, "/c/config.json", {"path": "/c/config.json", "reason": "r"}) == {
        "event": "config.unfixable",
        "message": "/c/config.json: left unchanged: r",
        "message_id": "30ce21089d064f31a9fb02dbbbccde57",
        "priority": 3,
        "severity": "error",
        "subject": "/c/config.json",
        "fix": kind.fix.replace("{path}", "/c/config.json"),
        "path": "/c/config.json",
        "reason": "r",
    }


def test_suppressor_window_and_summary() -> None:
    s = Suppressor(60)
    assert s.admit("k", "a", {}, 0)
    assert s.next_deadline() is None  # nothing suppressed yet: no timer needed
    assert not s.admit("k", "a", {"n": 1}, 10)
    assert s.admit("k", "b", {}, 10)  # another subject has its own window
    assert s.admit("other", "a", {}, 10)  # another kind too
    assert not s.admit("k", "a", {"n": 2}, 59)
    assert s.next_deadline() == 60
    assert s.due(59) == []
    assert s.due(60) == [("k", "a", 2, {"n": 2})]
    assert s.admit("k", "a", {}, 61)  # a new window starts


def test_zero_window_never_suppresses() -> None:
    s = Suppressor(0)
    assert all(s.admit("k", "a", {}, t) for t in range(5))


def test_alerter_logs_whole_events_and_one_summary() -> None:
    clock = Clock()
    metrics = Metrics()
    alerter = Alerter(suppress_window=300, metrics=metrics, clock=clock)
    fields = {"path": "/c/config.json", "changes": "docker.io -> https://index.docker.io/v1/"}
    kind = CATALOGUE["config.normalized"]
    with capture_logs() as logs:
        assert alerter.alert("config.normalized", "/c/config.json", **fields)
        for _ in range(41):
            clock.now += 1
            assert not alerter.alert("config.normalized", "/c/config.json", **fields)
        alerter.flush_due()
        assert len(logs) == 1
        clock.now = 1300
        alerter.flush_due()
    assert logs == [
        {
            "event": "config.normalized",
            "log_level": "info",
            "message": "/c/config.json: repaired so every client finds the credentials "
            "(docker.io -> https://index.docker.io/v1/)",
            "message_id": kind.message_id.hex,
            "priority": 5,
            "severity": "notice",
            "subject": "/c/config.json",
            "fix": kind.fix,
            **fields,
        },
        {
            "event": "config.normalized",
            "log_level": "info",
            "message": "config.normalized for /c/config.json: suppressed 41 more (last: "
            "/c/config.json: repaired so every client finds the credentials "
            "(docker.io -> https://index.docker.io/v1/))",
            "message_id": kind.message_id.hex,
            "priority": 5,
            "severity": "notice",
            "subject": "/c/config.json",
            "fix": kind.fix,
            "suppressed": 41,
            **fields,
        },
    ]
    assert metrics.value("alerts", "config.normalized") == 42
    assert metrics.value("alerts_suppressed", "config.normalized") == 41
    assert alerter.next_deadline() is None


def test_error_alerts_log_at_error_level() -> None:
    alerter = Alerter(suppress_window=0)
    with capture_logs() as logs:
        alerter.alert("settings.reload_failed", "/etc/x.toml", reason="bad")
    assert logs[0]["log_level"] == "error"
    assert logs[0]["message"] == ("settings not reloaded, the previous ones stay in force: bad")


# -- redaction ---------------------------------------------------------------------------------


def test_redactor_masks_keys_patterns_and_remembered_secrets() -> None:
    r = Redactor()
    r.remember([SECRET, "abc"])  # short secrets are masked as whole values only
    event = {
        "password": "x1",
        "auth": AUTH,
        "identitytoken": "tok",
        "Authorization": "Basic Zm9vOmJhcg==",
        "note": f"login with {SECRET} failed",
        "raw": '{"auths": {"x": {"auth": "Zm9vOmJhcg==", "password": "p"}}}',
        "header": "got Bearer eyJhbGciOi.J9 back",
        "url": "https://h/?token=abcdef&x=1",
        "nested": {"list": [SECRET, {"refresh_token": "r"}]},
        "count": 3,
        "abc": "abc",
        "words": "abcd xabc abc-x",
    }
    assert r(None, "info", event) == {
        "password": REDACTED,
        "auth": REDACTED,
        "identitytoken": REDACTED,
        "Authorization": REDACTED,
        "note": f"login with {REDACTED} failed",
        "raw": f'{{"auths": {{"x": {{"auth": "{REDACTED}", "password": "{REDACTED}"}}}}}}',
        "header": f"got Bearer {REDACTED} back",
        "url": f"https://h/?token={REDACTED}&x=1",
        "nested": {"list": [REDACTED, {"refresh_token": REDACTED}]},
        "count": 3,
        "abc": REDACTED,
        "words": f"abcd xabc {REDACTED}-x",
    }


def test_config_secrets_are_remembered_decoded_too() -> None:
    remember_config_secrets({"auths": {"docker.io": {"auth": AUTH}}})
    assert redact.REDACTOR.text(f"x {SECRET} y {AUTH}") == f"x {REDACTED} y {REDACTED}"


def _fail_with_secret_local(password: str) -> None:
    config = {"auths": {"docker.io": {"auth": AUTH}}}  # a local that holds a secret
    raise ValueError(f"cannot use {config['auths']['docker.io']['auth'][:4]}... for {password}")


@pytest.mark.parametrize("mode", [OutputMode.JSON, OutputMode.CONSOLE])
def test_no_secret_reaches_the_output_even_in_tracebacks(mode: OutputMode) -> None:
    out = io.StringIO()
    redact.REDACTOR.remember([SECRET])
    configure_logging(mode, "debug", stdout=out)
    log = structlog.get_logger()
    try:
        _fail_with_secret_local(SECRET)
    except ValueError:
        log.exception("daemon.loop_failed", password=SECRET, detail=f"auth={AUTH}")
    text = out.getvalue()
    assert "daemon.loop_failed" in text
    assert "_fail_with_secret_local" in text  # the traceback is there...
    assert SECRET not in text and AUTH not in text  # ...without the secret
    if mode is OutputMode.JSON:
        (line,) = text.splitlines()
        event = json.loads(line)
        frames = event["exception"][0]["frames"]
        assert all("locals" not in frame or not frame["locals"] for frame in frames)


# -- sinks -------------------------------------------------------------------------------------


def test_json_output_is_one_object_per_line() -> None:
    out = io.StringIO()
    assert configure_logging(OutputMode.JSON, stdout=out) is OutputMode.JSON
    log = structlog.get_logger()
    log.info("daemon.ready", watched_dirs=2)
    log.debug("hidden.at_info")
    Alerter(suppress_window=0).alert("probe.recovered", "ghcr.io", registry="ghcr.io")
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [e["event"] for e in events] == ["daemon.ready", "probe.recovered"]
    assert events[1]["message_id"] == CATALOGUE["probe.recovered"].message_id.hex
    assert events[1]["priority"] == 5


def test_journal_fields_are_upper_case_and_flat() -> None:
    event = alert_event(
        CATALOGUE["config.flapping"],
        "/c/config.json",
        {"path": "/c/config.json", "undos": 3, "window": "60s", "backoff": "300s"},
    )
    event.update(level="warning", timestamp="2026-01-01T00:00:00Z", **{"odd-key": ["a"]})
    assert journal_fields(event) == {
        "MESSAGE": "/c/config.json: another program put back the content regauthd replaced 3 "
        "times within 60s; not rewriting it for 300s",
        "PRIORITY": "4",
        "SYSLOG_IDENTIFIER": "regauthd",
        "MESSAGE_ID": "91a97ed8f59d4c18b9e385bf0cadcd57",
        "REGAUTHD_EVENT": "config.flapping",
        "REGAUTHD_SEVERITY": "warning",
        "REGAUTHD_SUBJECT": "/c/config.json",
        "REGAUTHD_FIX": CATALOGUE["config.flapping"].fix,
        "REGAUTHD_PATH": "/c/config.json",
        "REGAUTHD_UNDOS": "3",
        "REGAUTHD_WINDOW": "60s",
        "REGAUTHD_BACKOFF": "300s",
        "REGAUTHD_ODD_KEY": '["a"]',
    }


def _parse_datagram(data: bytes) -> dict[str, str]:
    fields: dict[str, str] = {}
    while data:
        head, _, rest = data.partition(b"\n")
        if b"=" in head:
            key, _, value = head.partition(b"=")
            fields[key.decode()] = value.decode()
            data = rest
        else:
            (length,) = struct.unpack("<Q", rest[:8])
            fields[head.decode()] = rest[8 : 8 + length].decode()
            data = rest[8 + length + 1 :]
    return fields


def test_journald_renderer_sends_native_entries_and_prints_nothing(tmp_path: Path) -> None:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(tmp_path / "journal.sock"))
    server.settimeout(5)
    renderer = JournaldRenderer(str(tmp_path / "journal.sock"))
    with pytest.raises(structlog.DropEvent):
        renderer(None, "error", {"event": "x.y", "level": "error", "detail": "two\nlines"})
    fields = _parse_datagram(server.recv(65536))
    server.close()
    assert fields == {
        "MESSAGE": "x.y",
        "PRIORITY": "3",
        "SYSLOG_IDENTIFIER": "regauthd",
        "REGAUTHD_EVENT": "x.y",
        "REGAUTHD_DETAIL": "two\nlines",
    }


def test_journald_renderer_falls_back_to_stderr_only(tmp_path: Path) -> None:
    fallback = io.StringIO()
    renderer = JournaldRenderer(str(tmp_path / "missing.sock"), fallback=fallback)
    with pytest.raises(structlog.DropEvent):
        renderer(None, "info", {"event": "x.y", "message": "hello", "priority": 5})
    assert fallback.getvalue() == "<5>hello\n"


def test_journald_detection_matches_stderr_device_and_inode(tmp_path: Path) -> None:
    with (tmp_path / "stream").open("w") as f:
        st = os.fstat(f.fileno())
        assert journald_connected({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}, f.fileno())
        assert not journald_connected({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino + 1}"}, 1)
        assert not journald_connected({"JOURNAL_STREAM": "garbage"}, f.fileno())
        assert not journald_connected({}, f.fileno())


def test_output_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    assert resolve_output(OutputMode.AUTO, env={}, stdout=io.StringIO()) is OutputMode.JSON
    primary, secondary = os.openpty()
    try:
        with os.fdopen(secondary, "w", closefd=False) as tty:
            assert resolve_output(OutputMode.AUTO, env={}, stdout=tty) is OutputMode.CONSOLE
    finally:
        os.close(primary)
        os.close(secondary)
    st = os.fstat(2)
    env = {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
    assert resolve_output(OutputMode.AUTO, env=env) is OutputMode.JOURNALD
    assert resolve_output(OutputMode.JSON, env=env) is OutputMode.JSON


def test_every_chain_redacts_right_before_rendering() -> None:
    for mode in (OutputMode.JSON, OutputMode.CONSOLE, OutputMode.JOURNALD):
        chain = processors(mode)
        assert chain[-2] is redact.REDACTOR


# -- metrics -----------------------------------------------------------------------------------


def test_metrics_textfile_is_written_atomically(tmp_path: Path) -> None:
    metrics = Metrics()
    metrics.count("alerts", "config.normalized", 2)
    metrics.count("alerts", "config.conflict")
    metrics.count("repairs")
    metrics.gauge("watched_configs", 3)
    target = tmp_path / "textfile" / "regauthd.prom"
    metrics.write(target)
    samples = {
        (sample.name, tuple(sample.labels.values())): sample.value
        for family in text_string_to_metric_families(target.read_text())
        for sample in family.samples
    }
    assert samples[("regauthd_alerts_total", ("config.conflict",))] == 1
    assert samples[("regauthd_alerts_total", ("config.normalized",))] == 2
    assert samples[("regauthd_alerts_total", ("probe.failing",))] == 0  # every kind has a series
    assert samples[("regauthd_repairs_total", ())] == 1
    assert samples[("regauthd_watched_configs", ())] == 3
    assert target.stat().st_mode & 0o777 == 0o644  # the node exporter reads it
    assert sorted(p.name for p in target.parent.iterdir()) == ["regauthd.prom"]
    assert not metrics.dirty


def test_uuid_hex_is_what_journald_expects() -> None:
    for kind in CATALOGUE.values():
        assert uuid.UUID(hex=kind.message_id.hex) == kind.message_id
        assert len(kind.message_id.hex) == 32


def test_suppressed_alerts_are_told_to_their_listeners() -> None:
    from regauthd.alerts.catalogue import AlertKind

    now = [0.0]
    alerter = Alerter(suppress_window=300, clock=lambda: now[0], logger=structlog.get_logger())
    held: list[tuple[str, str]] = []
    alerter.add_suppressed_listener(lambda kind, subject: held.append((str(kind), subject)))
    with capture_logs():
        assert alerter.alert(AlertKind.CONFIG_NORMALIZED, "/a", path="/a", changes="x")
        assert not alerter.alert(AlertKind.CONFIG_NORMALIZED, "/a", path="/a", changes="y")
        assert alerter.alert(AlertKind.CONFIG_NORMALIZED, "/b", path="/b", changes="z")
        now[0] = 301.0
        assert alerter.alert(AlertKind.CONFIG_NORMALIZED, "/a", path="/a", changes="x")
    assert held == [("config.normalized", "/a")]
