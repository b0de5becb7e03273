"""The journal watch against real journals: files written by systemd-journal-remote, and a real
systemd-journald in a private mount namespace.

Each test runs the watch's thread for real; the daemon's loop is reduced to what the watch needs
(``post`` from any thread, ``call_later``, callbacks run in the test's thread), the alerts go
through the real :class:`regauthd.alerts.alerter.Alerter`, re-checks through the real fixer on
real config files. The prober is a scripted object implementing our own ``Prober`` interface,
pushing its results as the probe scheduler does (which has its own tests).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog

from regauthd.alerts.alerter import Alerter
from regauthd.alerts.catalogue import AlertKind
from regauthd.dockerconfig.auth import encode_auth
from regauthd.dockerconfig.backups import BackupStore
from regauthd.dockerconfig.fixer import fix_file
from regauthd.dockerconfig.keys import HUB_CANONICAL
from regauthd.dockerconfig.report import FixReport
from regauthd.journal.backend import FollowOptions
from regauthd.journal.cursor import CURSOR_FILE
from regauthd.journal.recognize import AuthFailure, FailureKind
from regauthd.journal.verdicts import Recheck, Verdicts, recheck_files
from regauthd.journal.watch import JournalWatch, follow_options
from regauthd.probe.result import ProbeResult, ProbeStatus
from regauthd.probe.schedule import ProbeKey
from regauthd.probe.scheduler import ProbeScheduler
from regauthd.service.app import build
from regauthd.service.fsview import LOCAL
from regauthd.service.watchplan import configs_matching
from regauthd.settings import Environment, Settings
from regauthd.settingsfile import parse_settings
from tests.conftest import require_journal_backend, require_program, unavailable
from tests.rigs.journald import JournaldNamespace, dockerd, write_journal
from tests.rigs.registry import RegistryFactory
from tests.rigs.tokenissuer import Grant

PASSWORD = "s3cret-Pw-0f-acme"
AUTH = encode_auth("acme", PASSWORD)
TOKEN = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhY21lIn0.c2lnbmF0dXJlLXNlY3JldA"
SECRETS = (PASSWORD, AUTH, TOKEN, "hunter2secret")

HUB_PUSH = (
    'level=info msg="Attempting next endpoint for push after error: Head '
    '\\"https://registry-1.docker.io/v2/acme/api/blobs/sha256:4f4fb700ef54461cfa02571ae0db9a0d'
    'c1e0cdb5577484a6d75e68dc38e8acc1\\": unauthorized: authentication required"'
)
DOCKERD_PUSH = (
    'level=error msg="Not continuing with push after error" '
    'error="unauthorized: authentication required"'
)
HUB_PULL_WITH_SECRETS = (
    'level=info msg="Attempting next endpoint for pull after error: Get '
    '\\"https://auth.docker.io/token?scope=repository%3Aacme%2Fapi%3Apull&service=registry.'
    'docker.io\\": unauthorized: incorrect username or password" '
    f'authorization="Bearer {TOKEN}" password=hunter2secret'
)
BOOT = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
"""One boot for every write: journalctl --follow does not see entries of a new boot appended."""
NOT_A_FAILURE = 'level=error msg="Not continuing with push after error" error="context canceled"'


def push_to(registry: str, repository: str = "acme/api") -> str:
    """A dockerd line for a push to ``registry`` that was refused: one alert key per registry."""
    return (
        'level=info msg="Attempting next endpoint for push after error: Head '
        f'\\"https://{registry}/v2/{repository}/blobs/sha256:4f4f\\": unauthorized: '
        'authentication required"'
    )


# --- the harness --------------------------------------------------------------------------------
class Timer:
    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Loop:
    """The daemon loop as the watch sees it: ``post`` from any thread, ``call_later``; the
    test's thread runs the callbacks and the due timers (it is the loop thread)."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self.thread = threading.get_ident()
        self.timers: list[Timer] = []

    def post(self, callback: Callable[[], None]) -> None:
        self._queue.put(callback)

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        timer = Timer(time.monotonic() + delay, callback)
        self.timers.append(timer)
        return timer

    def _run_due_timers(self) -> None:
        now = time.monotonic()
        for timer in [t for t in self.timers if t.when <= now or t.cancelled]:
            self.timers.remove(timer)
            if not timer.cancelled:
                timer.callback()

    def run_until(self, done: Callable[[], bool], *, within: float = 30.0) -> None:
        """Run posted callbacks and due timers until ``done()``; ``within`` only bounds a
        broken test."""
        deadline = time.monotonic() + within
        while not done():
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("the watch did not get there")
            try:
                callback = self._queue.get(timeout=min(left, 0.05))
            except queue.Empty:
                self._run_due_timers()
                continue
            callback()
            self._run_due_timers()

    def run_ready(self) -> None:
        while True:
            try:
                callback = self._queue.get_nowait()
            except queue.Empty:
                return
            callback()


class Recorder:
    """The alerter's logger: keeps every event with its fields, exactly as the sinks get them."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def _log(self, event: str, **fields: Any) -> None:
        self.events.append({"event": event, **fields})

    error = warning = info = _log

    def alerts(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == AlertKind.JOURNAL_AUTH_FAILURE]


class ScriptedProber:
    """Implements :class:`regauthd.journal.verdicts.Prober`: ``probe_now`` pushes the prepared
    answer (a new object, as a real probe yields) to the watch through the loop's ``post``, as
    the probe scheduler does, at once or on ``release()``. ``previous``: results pushed before
    the watch starts (earlier probes)."""

    def __init__(
        self,
        answers: dict[str, ProbeResult],
        *,
        hold: bool = False,
        previous: dict[str, ProbeResult] | None = None,
    ) -> None:
        self.answers = answers
        self.hold = hold
        self.calls: list[list[str]] = []
        self.running = True
        self._previous = dict(previous or {})
        self._asked: list[str] = []
        self._post: Callable[[Callable[[], None]], None] = lambda callback: None
        self._push: Callable[[ProbeKey, ProbeResult], None] = lambda key, result: None

    def attach(
        self,
        post: Callable[[Callable[[], None]], None],
        push: Callable[[ProbeKey, ProbeResult], None],
    ) -> None:
        """Push to ``push`` through ``post`` (the scheduler's subscription; loop thread)."""
        self._post, self._push = post, push
        for registry, result in self._previous.items():
            push(ProbeKey(CONFIG_KEY, registry), result)

    def probe_now(self, registries: list[str]) -> None:
        self.calls.append(list(registries))
        self._asked += registries
        if not self.hold:
            self.release()

    def release(self) -> None:
        for registry in self._asked:
            if registry in self.answers:
                result = dataclasses.replace(self.answers[registry])
                key = ProbeKey(CONFIG_KEY, registry)
                self._post(lambda key=key, result=result: self._push(key, result))
        self._asked = []


CONFIG_KEY = "/home/ci/.docker/config.json"
"""The config a scripted probe result is for."""


def settings_for(
    tmp_path: Path, *, window: str = "5m", enabled: bool = True, extra: str = ""
) -> Settings:
    text = (
        extra
        + f"""
[daemon]
state_dir = "{tmp_path / "state"}"
[watch]
paths = ["{tmp_path / "home" / ".docker" / "config.json"}"]
[alerts]
suppress_window = "{window}"
[journal]
enabled = {"true" if enabled else "false"}
units = ["docker.service"]
"""
    )
    return parse_settings(text, Environment(euid=1000, home=tmp_path / "home", env={}))


def hub_alias_config(home: Path) -> Path:
    """A config as many CI scripts write it: the Hub credential under `docker.io`."""
    config = home / ".docker" / "config.json"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(json.dumps({"auths": {"docker.io": {"auth": AUTH}}}))
    return config


@dataclasses.dataclass
class Rig:
    tmp_path: Path
    settings: Settings
    loop: Loop
    recorder: Recorder
    alerter: Alerter
    options: FollowOptions
    watches: list[JournalWatch]

    def watch(
        self,
        recheck: Recheck,
        prober: ScriptedProber | None = None,
        **kwargs: Any,
    ) -> JournalWatch:
        watch = make_watch(
            self.settings, self.loop, self.alerter, recheck, prober, self.options, **kwargs
        )
        self.watches.append(watch)
        watch.start()
        return watch

    def stop(self, watch: JournalWatch) -> None:
        watch.stop(timeout=5.0)
        assert not watch.running


def make_watch(
    settings: Settings,
    loop: Loop,
    alerter: Alerter,
    recheck: Recheck,
    prober: ScriptedProber | None,
    options: FollowOptions | None,
    **kwargs: Any,
) -> JournalWatch:
    """A watch wired as :mod:`regauthd.service.app` wires it, to the test's loop and prober."""
    watch = JournalWatch(
        settings,
        post=loop.post,
        call_later=loop.call_later,
        alert=alerter.alert,
        recheck=recheck,
        prober=prober,
        options=options,
        **kwargs,
    )
    if prober is not None:
        prober.attach(loop.post, watch.probe_result)
    return watch


@pytest.fixture(params=["systemd", "journalctl"])
def backend(request: pytest.FixtureRequest) -> str:
    return require_journal_backend(str(request.param))


@contextlib.contextmanager
def make_rig(tmp_path: Path, options: FollowOptions, **settings: Any) -> Iterator[Rig]:
    config = settings_for(tmp_path, **settings)
    recorder = Recorder()
    alerter = Alerter(suppress_window=config.alerts.suppress_window, logger=recorder)
    rig = Rig(tmp_path, config, Loop(), recorder, alerter, options, [])
    try:
        yield rig
    finally:
        for watch in rig.watches:
            watch.stop(timeout=5.0)


@pytest.fixture
def journal_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "journal"
    write_journal(directory, dockerd("dockerd started"), boot_id=BOOT)
    return directory


@pytest.fixture
def rig(tmp_path: Path, journal_dir: Path, backend: str) -> Iterator[Rig]:
    options = FollowOptions(
        units=("docker.service",), directory=journal_dir, backend=backend, save_interval=0.0
    )
    with make_rig(tmp_path, options) as made:
        yield made


def assert_no_secrets(events: Sequence[dict[str, Any]]) -> None:
    text = json.dumps(events, default=str)
    for secret in SECRETS:
        assert secret not in text


# --- journal files --------------------------------------------------------------------------------
def test_failure_alerted_once_with_normalized_verdict(rig: Rig, journal_dir: Path) -> None:
    """A CI script wrote the Hub credential under `docker.io`; the push fails; the alert says
    the key was normalized (by the re-check the failure triggered), and the probe agrees."""
    config = hub_alias_config(rig.tmp_path / "home")
    recheck = recheck_files([config], BackupStore(rig.tmp_path / "state"))
    prober = ScriptedProber({"docker.io": ProbeResult("docker.io", ProbeStatus.OK)})
    watch = rig.watch(recheck, prober)

    write_journal(journal_dir, dockerd(NOT_A_FAILURE, HUB_PUSH), boot_id=BOOT)
    rig.loop.run_until(lambda: len(rig.recorder.alerts()) == 1)

    (alert,) = rig.recorder.alerts()
    assert alert["subject"] == "docker.io#unauthorized"
    assert alert["cause"] == "misplaced_key"
    assert alert["registry"] == "docker.io"
    assert alert["repository"] == "acme/api"
    assert alert["operation"] == "push"
    assert alert["failures"] == 1
    assert alert["probe"] == "ok"
    assert "push to docker.io/acme/api failed at " in alert["reason"]
    assert (
        "credentials were stored under `docker.io`, which Docker never reads; normalized at"
        in (alert["reason"])
    )
    assert alert["reason"].endswith("; the credential works now (probe: ok)")
    assert alert["message"] == f"docker.service: {alert['reason']}"
    assert "docker login` (no argument)" in alert["fix"]
    assert prober.calls == [["docker.io"]]
    # The re-check repaired the real file.
    assert list(json.loads(config.read_text())["auths"]) == [HUB_CANONICAL]
    assert_no_secrets(rig.recorder.events)
    assert watch.failures_seen == 1


def test_entries_after_a_restart_are_alerted_once(rig: Rig, journal_dir: Path) -> None:
    """Stop, more entries, start again: only the new ones, each once (cursor in the state dir)."""
    recheck = recheck_files([], BackupStore(rig.tmp_path / "state"))
    first = rig.watch(recheck)
    write_journal(
        journal_dir,
        dockerd(push_to("reg1.example.com"), push_to("reg2.example.com")),
        boot_id=BOOT,
    )
    rig.loop.run_until(lambda: len(rig.recorder.alerts()) >= 2)
    rig.stop(first)
    assert (rig.settings.state_dir / CURSOR_FILE).exists()

    write_journal(journal_dir, dockerd(push_to("reg3.example.com")), boot_id=BOOT)
    second = rig.watch(recheck)
    write_journal(journal_dir, dockerd(push_to("reg4.example.com")), boot_id=BOOT)
    rig.loop.run_until(lambda: len(rig.recorder.alerts()) >= 4)
    rig.stop(second)
    rig.loop.run_ready()

    assert (first.failures_seen, second.failures_seen) == (2, 2)
    registries = [a["registry"] for a in rig.recorder.alerts()]
    assert sorted(registries) == [f"reg{n}.example.com" for n in (1, 2, 3, 4)]
    for alert in rig.recorder.alerts():
        assert f"no credential for {alert['registry']} in any watched config" in alert["reason"]


def test_a_burst_is_one_alert_then_counted_into_the_summary(tmp_path: Path) -> None:
    """Failures for one registry and kind: folded while the probe runs, then suppressed and
    counted for the alert window's summary (clock driven by the test)."""
    require_program("systemd-journal-remote", "systemd-journal-remote")
    now = [1000.0]
    directory = tmp_path / "journal"
    write_journal(directory, dockerd("dockerd started"), boot_id=BOOT)
    options = FollowOptions(units=("docker.service",), directory=directory, backend="journalctl")
    settings = settings_for(tmp_path, window="5m")
    recorder = Recorder()
    alerter = Alerter(suppress_window=300.0, logger=recorder, clock=lambda: now[0])
    loop = Loop()
    prober = ScriptedProber(
        {"docker.io": ProbeResult("docker.io", ProbeStatus.BAD_CREDENTIALS, username="acme")},
        hold=True,
    )
    watch = make_watch(
        settings,
        loop,
        alerter,
        recheck_files([], BackupStore(tmp_path / "state")),
        prober,
        options,
        clock=lambda: now[0],
    )
    watch.start()
    try:
        write_journal(directory, dockerd(*[HUB_PULL_WITH_SECRETS] * 5), boot_id=BOOT)
        loop.run_until(lambda: watch.failures_seen == 5)
        assert recorder.alerts() == []  # waiting for the probe
        prober.release()
        loop.run_until(lambda: len(recorder.alerts()) == 1)
        (alert,) = recorder.alerts()
        assert alert["failures"] == 5
        assert alert["cause"] == "bad_credentials"
        assert " failed 5 times since " in alert["reason"]
        assert alert["reason"].endswith(
            "the password for docker.io (user acme) is rejected (probe: bad_credentials)"
        )
        assert prober.calls == [["docker.io"]]

        write_journal(directory, dockerd(*[HUB_PULL_WITH_SECRETS] * 3), boot_id=BOOT)
        loop.run_until(lambda: watch.failures_seen == 8)
        assert len(recorder.alerts()) == 1
        assert prober.calls == [["docker.io"]]  # repeats within the window are not re-probed

        now[0] += 301.0
        alerter.flush_due()
        summary = recorder.alerts()[-1]
        assert summary["suppressed"] == 3
        assert summary["failures"] == 8
        assert "suppressed 3 more" in summary["message"]
        assert " failed 8 times since " in summary["message"]
        assert_no_secrets(recorder.events)
    finally:
        watch.stop(timeout=5.0)


def test_verdict_goes_out_without_the_probe_after_the_timeout(rig: Rig, journal_dir: Path) -> None:
    stale = ProbeResult("docker.io", ProbeStatus.BAD_CREDENTIALS)
    prober = ScriptedProber({}, previous={"docker.io": stale})
    rig.watch(recheck_files([], BackupStore(rig.tmp_path / "state")), prober, verdict_timeout=0.2)
    write_journal(journal_dir, dockerd(HUB_PUSH), boot_id=BOOT)
    rig.loop.run_until(lambda: len(rig.recorder.alerts()) == 1)
    (alert,) = rig.recorder.alerts()
    assert alert["reason"].endswith(
        "the password for docker.io is rejected (last probe: bad_credentials)"
    )


def test_line_without_registry_is_explained_by_the_repair(rig: Rig, journal_dir: Path) -> None:
    """dockerd's commonest line names no registry: nothing to probe, the repair explains it."""
    config = hub_alias_config(rig.tmp_path / "home")
    prober = ScriptedProber({})
    rig.watch(recheck_files([config], BackupStore(rig.tmp_path / "state")), prober)
    write_journal(journal_dir, dockerd(DOCKERD_PUSH), boot_id=BOOT)
    rig.loop.run_until(lambda: len(rig.recorder.alerts()) == 1)
    (alert,) = rig.recorder.alerts()
    assert alert["subject"] == "unknown#unauthorized"
    assert alert["registry"] == "a registry"
    assert alert["reason"].startswith("a push failed at ")
    assert (
        "stored under `docker.io`, which Docker never reads (for docker.io); normalized"
        in (alert["reason"])
    )
    assert prober.calls == []


def test_repair_made_by_the_daemon_before_the_failure_is_named(rig: Rig, journal_dir: Path) -> None:
    """The daemon's watcher repaired the file first (record_fix); the push had read it before."""
    config = hub_alias_config(rig.tmp_path / "home")
    backups = BackupStore(rig.tmp_path / "state")
    watch = rig.watch(recheck_files([config], backups))
    watch.record_fix(fix_file(config, backups=backups))
    write_journal(journal_dir, dockerd(HUB_PUSH), boot_id=BOOT)
    rig.loop.run_until(lambda: len(rig.recorder.alerts()) == 1)
    (alert,) = rig.recorder.alerts()
    assert alert["cause"] == "misplaced_key"
    assert "stored under `docker.io`, which Docker never reads; normalized at" in alert["reason"]


def test_no_credential_anywhere(rig: Rig, journal_dir: Path) -> None:
    config = rig.tmp_path / "home" / ".docker" / "config.json"
    config.parent.mkdir(parents=True)
    config.write_text(json.dumps({"auths": {"ghcr.io": {"auth": AUTH}}}))
    rig.watch(recheck_files([config], BackupStore(rig.tmp_path / "state")))
    write_journal(journal_dir, dockerd(HUB_PUSH), boot_id=BOOT)
    rig.loop.run_until(lambda: len(rig.recorder.alerts()) == 1)
    (alert,) = rig.recorder.alerts()
    assert alert["cause"] == "no_credentials"
    assert "no credential for docker.io in any watched config" in alert["reason"]


def test_secrets_in_the_line_and_the_config_stay_out(rig: Rig, journal_dir: Path) -> None:
    config = hub_alias_config(rig.tmp_path / "home")
    prober = ScriptedProber({"docker.io": ProbeResult("docker.io", ProbeStatus.OK)})
    rig.watch(recheck_files([config], BackupStore(rig.tmp_path / "state")), prober)
    write_journal(journal_dir, dockerd(HUB_PULL_WITH_SECRETS), boot_id=BOOT)
    rig.loop.run_until(lambda: len(rig.recorder.alerts()) == 1)
    (alert,) = rig.recorder.alerts()
    assert "Bearer <redacted>" in alert["line"]
    assert_no_secrets(rig.recorder.events)


def test_a_failing_recheck_does_not_lose_the_alert(rig: Rig, journal_dir: Path) -> None:
    def broken(registry: str | None) -> list[FixReport]:
        raise PermissionError(13, "Permission denied")

    with structlog.testing.capture_logs() as logs:
        rig.watch(broken)
        write_journal(journal_dir, dockerd(HUB_PUSH), boot_id=BOOT)
        rig.loop.run_until(lambda: len(rig.recorder.alerts()) == 1)
    assert any(e["event"] == "journal.recheck_failed" for e in logs)


def test_log_file_backend(tmp_path: Path) -> None:
    """Hosts without journald: the watch runs the file-tail follower (no descriptor to wait on)."""
    log_file = tmp_path / "docker.log"
    log_file.write_text("")
    options = FollowOptions(log_files=(log_file,), backend="files", poll_interval=0.05)
    with make_rig(tmp_path, options) as rig:
        rig.watch(recheck_files([], BackupStore(tmp_path / "state")))
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        with log_file.open("a") as f:
            f.write(f"[{stamp}][dockerd][I] {push_to('reg9.example.com')}\n")
        rig.loop.run_until(lambda: len(rig.recorder.alerts()) == 1)
        assert rig.recorder.alerts()[0]["registry"] == "reg9.example.com"


# --- life -------------------------------------------------------------------------------------
def test_disabled_means_no_thread(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, enabled=False)
    before = set(threading.enumerate())
    watch = make_watch(settings, Loop(), Alerter(suppress_window=0), lambda r: [], None, None)
    watch.start()
    assert not watch.running
    assert set(threading.enumerate()) == before
    assert watch.status() is None
    watch.stop()
    assert not (settings.state_dir / CURSOR_FILE).exists()


def test_unusable_journal_is_logged_and_stop_is_prompt(tmp_path: Path) -> None:
    options = FollowOptions(backend="no-such-backend")
    with make_rig(tmp_path, options) as rig:
        watch = rig.watch(lambda r: [])
        rig.loop.run_until(
            lambda: any(e["event"] == "journal.unavailable" for e in rig.recorder.events)
        )
        rig.stop(watch)
        (unavailable,) = [e for e in rig.recorder.events if e["event"] == "journal.unavailable"]
        assert "unknown journal backend" in unavailable["reason"]


def test_reload_restarts_only_when_the_journal_settings_change(rig: Rig) -> None:
    watch = rig.watch(lambda r: [])
    thread = watch._reader
    watch.reload(rig.settings)
    assert watch._reader is thread
    changed = dataclasses.replace(
        rig.settings, journal=dataclasses.replace(rig.settings.journal, units=("x.service",))
    )
    watch.reload(changed)
    assert watch.running
    assert watch._reader is not thread
    assert thread is not None and not thread.running


def test_follow_options_from_settings(tmp_path: Path) -> None:
    text = f"""
[daemon]
state_dir = "{tmp_path}"
[journal]
enabled = true
units = ["docker.service", "actions.runner.*"]
max_age = "2h"
extra_patterns = ['registry (?P<registry>\\S+) said no']
log_files = ["/var/log/messages"]
"""
    settings = parse_settings(text, Environment(euid=1000, home=tmp_path, env={}))
    options = follow_options(settings.journal)
    assert options.units == ("docker.service", "actions.runner.*")
    assert options.max_age == timedelta(hours=2)
    assert options.log_files == (Path("/var/log/messages"),)
    found = options.recognizer.find("registry quay.io said no")
    assert found is not None and found.registry == "quay.io"


# --- a real journald ----------------------------------------------------------------------------
def test_real_journald_entries_alerted_once_and_restart_resumes(tmp_path: Path) -> None:
    """Entries a real journald receives while the watch runs are alerted once each, with the
    verdict; after a restart (and a rotation) only the new ones, none twice."""
    try:
        import systemd.journal  # noqa: F401
    except ImportError:
        unavailable("systemd-python not installed (pip install '.[journald]')")
    with JournaldNamespace(tmp_path) as ns:
        ns.send("dockerd started", unit="docker.service", SYSLOG_IDENTIFIER="dockerd")
        options = FollowOptions(
            units=("docker.service",), directory=ns.journal_dir, save_interval=0.0
        )
        with make_rig(tmp_path, options) as rig:
            config = hub_alias_config(tmp_path / "home")
            backups = BackupStore(tmp_path / "state")
            prober = ScriptedProber({"docker.io": ProbeResult("docker.io", ProbeStatus.OK)})
            # Only docker.io has a probe answer: the others go out after the (short) timeout.
            first = rig.watch(recheck_files([config], backups), prober, verdict_timeout=0.1)

            ns.send_many(
                [{"MESSAGE": HUB_PUSH}, {"MESSAGE": push_to("reg1.example.com")}],
                unit="docker.service",
            )
            # Container output through the journald log driver is not a failure of ours.
            ns.send(push_to("reg0.example.com"), unit="docker.service", CONTAINER_ID="3f2a9c1b")
            ns.send(push_to("reg9.example.com"), unit="other.service")
            rig.loop.run_until(lambda: len(rig.recorder.alerts()) >= 2)
            hub = next(a for a in rig.recorder.alerts() if a["registry"] == "docker.io")
            assert hub["cause"] == "misplaced_key"
            assert (
                "stored under `docker.io`, which Docker never reads; normalized at"
                in (hub["reason"])
            )
            rig.stop(first)

            ns.send(push_to("reg2.example.com"), unit="docker.service")
            ns.rotate()
            second = rig.watch(recheck_files([config], backups), prober, verdict_timeout=0.1)
            ns.send(push_to("reg3.example.com"), unit="docker.service")
            rig.loop.run_until(lambda: len(rig.recorder.alerts()) >= 4)
            # Everything journald has is read by now: a duplicate would have been posted.
            ns.send(push_to("reg4.example.com"), unit="docker.service")
            rig.loop.run_until(lambda: len(rig.recorder.alerts()) >= 5)
            rig.stop(second)
            rig.loop.run_ready()

            # Each entry was handed out once: docker.io's repeat would only have been counted.
            assert (first.failures_seen, second.failures_seen) == (2, 3)
            registries = sorted(a["registry"] for a in rig.recorder.alerts())
            assert registries == [
                "docker.io",
                *(f"reg{n}.example.com" for n in (1, 2, 3, 4)),
            ]
            assert_no_secrets(rig.recorder.events)


def test_probes_off_means_no_probe_and_no_wait(rig: Rig, journal_dir: Path) -> None:
    prober = ScriptedProber({"docker.io": ProbeResult("docker.io", ProbeStatus.OK)})
    prober.running = False
    rig.watch(lambda r: [], prober, verdict_timeout=3600.0)
    write_journal(journal_dir, dockerd(HUB_PUSH), boot_id=BOOT)
    rig.loop.run_until(lambda: len(rig.recorder.alerts()) == 1)
    assert prober.calls == []
    assert "probe" not in rig.recorder.alerts()[0]


# --- as the daemon wires it ----------------------------------------------------------------------
def test_repairs_the_watched_configs_and_hears_of_repairs(rig: Rig, journal_dir: Path) -> None:
    """Wired as in the daemon: re-checks repair the watched configs; every repair the daemon
    makes is handed over (``on_repair``) as it happens."""
    config = hub_alias_config(rig.tmp_path / "home")
    patterns = rig.settings.watch.patterns(rig.tmp_path / "home")
    backups = BackupStore(rig.tmp_path / "state")

    def recheck(registry: str | None) -> list[FixReport]:
        return [fix_file(Path(p), backups=backups) for p in configs_matching(patterns, LOCAL)]

    watch = make_watch(rig.settings, rig.loop, rig.alerter, recheck, None, rig.options)
    watch.start()
    try:
        write_journal(journal_dir, dockerd(HUB_PUSH), boot_id=BOOT)
        rig.loop.run_until(lambda: len(rig.recorder.alerts()) == 1)
        (alert,) = rig.recorder.alerts()
        assert alert["cause"] == "misplaced_key"
        assert list(json.loads(config.read_text())["auths"]) == [HUB_CANONICAL]
        assert watch.status() == "journal: 1 auth failure(s), 1 alert(s)"

        # The daemon's own repair of another spelling, handed over as it happens.
        other = rig.tmp_path / "home" / ".docker" / "config.json"
        other.write_text(json.dumps({"auths": {"https://ghcr.io/v2/": {"auth": AUTH}}}))
        watch.on_repair(str(other), fix_file(other, backups=backups))
        write_journal(journal_dir, dockerd(push_to("ghcr.io")), boot_id=BOOT)
        rig.loop.run_until(lambda: len(rig.recorder.alerts()) == 2)
        assert "stored under `https://ghcr.io/v2/`" in rig.recorder.alerts()[1]["reason"]
    finally:
        watch.stop()
    assert not watch.running


def test_uses_the_recheck_it_is_given(rig: Rig, journal_dir: Path) -> None:
    asked: list[str | None] = []

    def recheck(registry: str | None) -> list[FixReport]:
        asked.append(registry)
        return []

    watch = make_watch(rig.settings, rig.loop, rig.alerter, recheck, None, rig.options)
    watch.start()
    try:
        # dockerd's two lines for one refused push are one failure...
        write_journal(journal_dir, dockerd(HUB_PUSH, DOCKERD_PUSH), boot_id=BOOT)
        # ...a registry-less line long after it is a failure of its own.
        later = datetime.now(UTC) + timedelta(seconds=30)
        write_journal(journal_dir, dockerd(DOCKERD_PUSH), boot_id=BOOT, start=later)
        rig.loop.run_until(lambda: len(rig.recorder.alerts()) == 2)
    finally:
        watch.stop()
    assert asked == ["docker.io", None]
    assert [a["registry"] for a in rig.recorder.alerts()] == ["docker.io", "a registry"]


def test_the_verdict_is_decided_when_the_probe_result_is_pushed() -> None:
    """No polling: the verdict goes out inside the call that pushes the probe's result (a fake
    clock that never moves, no thread, no sleep); the timeout's timer is then cancelled."""
    settings = settings_for(Path("/nonexistent"))
    recorder = Recorder()
    alerter = Alerter(suppress_window=300.0, logger=recorder, clock=lambda: 1000.0)
    timers: list[Timer] = []

    def call_later(delay: float, callback: Callable[[], None]) -> Timer:
        timers.append(Timer(delay, callback))
        return timers[-1]

    prober = ScriptedProber({"docker.io": ProbeResult("docker.io", ProbeStatus.OK)}, hold=True)
    verdicts = Verdicts(
        settings,
        alert=alerter.alert,
        recheck=lambda registry: [],
        prober=prober,
        call_later=call_later,
        verdict_timeout=5.0,
        clock=lambda: 1000.0,
        wall=lambda: datetime(2025, 1, 1, 12, 0, tzinfo=UTC),
        tz=UTC,
    )
    pushed: list[Callable[[], None]] = []
    prober.attach(pushed.append, verdicts.probe_result)
    failure = AuthFailure(
        FailureKind.UNAUTHORIZED,
        "docker.io",
        "acme/api",
        "push",
        "docker.service",
        datetime(2025, 1, 1, 11, 59, 59, tzinfo=UTC),
        "unauthorized: authentication required",
    )

    verdicts.on_failure(failure)
    assert prober.calls == [["docker.io"]]
    assert recorder.alerts() == []  # waiting for the probe, one timer armed for the timeout
    ((timer,),) = [timers]
    assert timer.when == 5.0 and not timer.cancelled

    prober.release()  # the probe finished: the scheduler posts its result to the loop...
    (deliver,) = pushed
    deliver()  # ...and the loop hands it over: the verdict is decided right here
    (alert,) = recorder.alerts()
    assert (alert["probe"], alert["failures"], alert["registry"]) == ("ok", 1, "docker.io")
    assert timer.cancelled
    assert verdicts.alerts_raised == 1


@pytest.mark.integration
def test_the_real_probe_scheduler_names_the_missing_push_right(
    tmp_path: Path, journal_dir: Path, registry_factory: RegistryFactory
) -> None:
    """With probes on, the failure is probed by the real scheduler against a real registry
    (token auth, a pull-only user): the alert says the token has no push."""
    require_program("journalctl", "systemd")
    reg = registry_factory(auth="token", grants={"alice": Grant.pull_only(PASSWORD)})
    config = tmp_path / "home" / ".docker" / "config.json"
    config.parent.mkdir(parents=True)
    config.write_text(json.dumps({"auths": {reg.host: {"auth": encode_auth("alice", PASSWORD)}}}))
    probe_table = f"""
[probe]
enabled = true
interval = "1h"
jitter = 0
repositories = {{ "{reg.host}" = "team/app" }}
"""
    settings = settings_for(tmp_path, extra=probe_table)
    options = FollowOptions(units=("docker.service",), directory=journal_dir, backend="journalctl")
    loop, recorder = Loop(), Recorder()
    alerter = Alerter(suppress_window=300.0, logger=recorder)
    # Wired as regauthd.service.app wires them.
    scheduler = ProbeScheduler(
        settings.probe, lambda: [config], loop.post, alerter.alert, min_gap=0.0
    )
    backups = BackupStore(tmp_path / "state")
    journal = JournalWatch(
        settings,
        post=loop.post,
        call_later=loop.call_later,
        alert=alerter.alert,
        recheck=recheck_files([config], backups),
        prober=scheduler,
        options=options,
    )
    scheduler.subscribe(journal.probe_result)
    scheduler.start()
    journal.start()
    try:
        loop.run_until(lambda: scheduler.latest(reg.host) is not None)  # the first round
        write_journal(journal_dir, dockerd(push_to(reg.host, "team/app")), boot_id=BOOT)
        loop.run_until(lambda: len(recorder.alerts()) == 1)
    finally:
        journal.stop()
        scheduler.stop()
    (alert,) = recorder.alerts()
    assert alert["cause"] == "denied"
    assert alert["probe"] == "push_denied"
    assert alert["reason"].endswith(
        "the token for alice has no push on team/app (probe: push_denied)"
    )
    assert "Give alice write access to team/app" in alert["fix"]
    assert_no_secrets(recorder.events)


@pytest.mark.integration
def test_in_the_daemon_built_by_the_composition_root(
    tmp_path: Path,
    journal_dir: Path,
    registry_factory: RegistryFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """:func:`regauthd.service.app.build` with probes and the journal on, run in this process:
    the failure is re-checked through the daemon, probed by its scheduler, and the verdict goes
    out when the scheduler pushes the result; shutdown stops the journal, then the probes."""
    require_program("journalctl", "systemd")
    reg = registry_factory(auth="token", grants={"alice": Grant.pull_only(PASSWORD)})
    config = tmp_path / "home" / ".docker" / "config.json"
    config.parent.mkdir(parents=True)
    config.write_text(json.dumps({"auths": {reg.host: {"auth": encode_auth("alice", PASSWORD)}}}))
    extra = f"""
[probe]
enabled = true
interval = "1h"
jitter = 0
repositories = {{ "{reg.host}" = "team/app" }}
"""
    settings = settings_for(tmp_path, extra=extra)
    settings = dataclasses.replace(
        settings,
        journal=dataclasses.replace(settings.journal, directory=journal_dir, backend="journalctl"),
    )
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    app = build(settings, configure_output=False, probe_min_gap=0.0)
    assert [c.name for c in app.daemon.components] == [
        "probes",
        "journal",
        "expiry",
        "summary",
        "status",
    ]
    scheduler, journal = app.probes, app.journal
    assert scheduler is not None and journal is not None

    def verdicts(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [e for e in logs if e["event"] == AlertKind.JOURNAL_AUTH_FAILURE]

    def drive(logs: list[dict[str, Any]]) -> None:
        deadline = time.monotonic() + 30
        try:
            while scheduler.latest(reg.host) is None and time.monotonic() < deadline:
                time.sleep(0.01)  # the first round
            write_journal(journal_dir, dockerd(push_to(reg.host, "team/app")), boot_id=BOOT)
            while not verdicts(logs) and time.monotonic() < deadline:
                time.sleep(0.01)
        finally:
            app.daemon.stop()

    # Daemon.run() installs handlers for SIGTERM, SIGINT and SIGHUP: put pytest's back after.
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        with structlog.testing.capture_logs() as logs:
            driver = threading.Thread(target=drive, args=(logs,), daemon=True)
            driver.start()
            assert app.run() == 0
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)
    driver.join(timeout=5.0)
    (alert,) = verdicts(logs)
    assert alert["cause"] == "denied"
    assert alert["probe"] == "push_denied"
    assert alert["reason"].endswith(
        "the token for alice has no push on team/app (probe: push_denied)"
    )
    assert not journal.running and not scheduler.running
    assert_no_secrets(logs)


def test_a_config_that_cannot_be_repaired_is_named(rig: Rig, journal_dir: Path) -> None:
    config = rig.tmp_path / "home" / ".docker" / "config.json"
    config.parent.mkdir(parents=True)
    config.write_text('{"auths": {"docker.io": {"auth": "' + AUTH + '"}')  # cut short
    rig.watch(recheck_files([config], BackupStore(rig.tmp_path / "state")))
    write_journal(journal_dir, dockerd(HUB_PUSH), boot_id=BOOT)
    rig.loop.run_until(lambda: len(rig.recorder.alerts()) == 1)
    (alert,) = rig.recorder.alerts()
    assert alert["cause"] == "config_unfixable"
    assert f"{config} cannot be repaired (line 1 column " in alert["reason"]
    assert_no_secrets(rig.recorder.events)
