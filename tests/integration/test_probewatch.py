"""Probes in the daemon (:mod:`regauthd.probe.schedule`, :mod:`regauthd.probe.scheduler`).

First the pure state machine, exhaustively: which transition raises which alert, when a registry
is due again (interval, jitter, back-off, ``Retry-After``, on-demand probes), what a new login
does, what the conflict check says. Then the scheduler thread against the real registry
(distribution 2.8 with the tests' token issuer or htpasswd): one failing alert and one recovered
alert over a revoke/restore cycle, a new login probed at once, ``probe_now``, the conflict check,
a 429 from the Hub look-alike, and ``stop()`` with a registry that never answers. No timing
assertions: tests wait for events, with generous deadlines only to avoid hanging forever.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import queue
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from regauthd.alerts.alerter import Alerter
from regauthd.alerts.catalogue import CATALOGUE, AlertKind
from regauthd.dockerconfig.auth import Credential
from regauthd.dockerconfig.backups import BackupStore
from regauthd.dockerconfig.fixer import fix_file
from regauthd.dockerconfig.report import ReportedConflict
from regauthd.probe.component import ProbeComponent
from regauthd.probe.conflicts import conflict_alert, conflict_verdict
from regauthd.probe.delivery import deliver
from regauthd.probe.result import ProbeResult, ProbeStatus
from regauthd.probe.schedule import (
    AlertDecision,
    Cadence,
    ProbeKey,
    Watched,
    alerts_for,
    begin,
    due_keys,
    expedite,
    next_wakeup,
    observe,
    recredentialed,
    settle,
    status_text,
    sync,
)
from regauthd.probe.scheduler import ProbeScheduler
from regauthd.settings import Environment, ProbeSettings
from regauthd.settingsfile import parse_settings
from tests.rigs.configs import auth
from tests.rigs.hubfake import HubFake
from tests.rigs.registry import RegistryFactory
from tests.rigs.tokenissuer import Grant

FAILING_KIND = AlertKind.PROBE_FAILING
RECOVERED_KIND = AlertKind.PROBE_RECOVERED
RATE_LIMITED_KIND = AlertKind.PROBE_RATE_LIMITED
CONFLICT_KIND = AlertKind.PROBE_CONFLICT
ALL = list(ProbeStatus)
FAILING = [s for s in ALL if s not in (ProbeStatus.OK, ProbeStatus.RATE_LIMITED)]
KEY = ProbeKey("/home/a/.docker/config.json", "ghcr.io")
CADENCE = Cadence(interval=100.0, jitter=10.0, max_backoff=1000.0, min_gap=5.0)


def result(status: ProbeStatus, **kwargs: Any) -> ProbeResult:
    return ProbeResult(
        registry=KEY.registry, status=status, detail=f"found {status.value}", **kwargs
    )


def kinds(decisions: tuple[AlertDecision, ...]) -> list[str]:
    return [d.kind for d in decisions]


# ---------------------------------------------------------------------------------------------
# Which transition raises which alert


def expected_kinds(previous: ProbeStatus | None, now: ProbeStatus) -> list[str]:
    """The table of the module docstring, written out."""
    if now is previous:
        return []
    if now is ProbeStatus.OK:
        return [] if previous is None else [RECOVERED_KIND]
    if now is ProbeStatus.RATE_LIMITED:
        return [RATE_LIMITED_KIND]
    return [FAILING_KIND]


@pytest.mark.parametrize("previous", [None, *ALL], ids=str)
@pytest.mark.parametrize("now", ALL, ids=str)
def test_every_transition(previous: ProbeStatus | None, now: ProbeStatus) -> None:
    decisions = alerts_for(previous, result(now), KEY)
    assert kinds(decisions) == expected_kinds(previous, now)
    for decision in decisions:
        # Every field the catalogue's template needs is there, and the subject is per config.
        assert set(CATALOGUE[decision.kind].fields) <= set(decision.kwargs())
        assert decision.subject == f"{KEY.config}#{KEY.registry}"
        assert decision.kwargs()["registry"] == "ghcr.io"


def test_first_ok_is_silent_and_first_failure_alerts() -> None:
    assert alerts_for(None, result(ProbeStatus.OK), KEY) == ()
    (decision,) = alerts_for(None, result(ProbeStatus.BAD_CREDENTIALS), KEY)
    assert decision.kind == FAILING_KIND
    assert decision.kwargs()["reason"] == "found bad_credentials"
    assert decision.kwargs()["status"] == "bad_credentials"
    assert decision.kwargs()["previous"] is None


def test_new_failure_reason_alerts_again_same_reason_does_not() -> None:
    (decision,) = alerts_for(ProbeStatus.BAD_CREDENTIALS, result(ProbeStatus.PUSH_DENIED), KEY)
    assert decision.kwargs()["status"] == "push_denied"
    assert decision.kwargs()["previous"] == "bad_credentials"
    assert alerts_for(ProbeStatus.PUSH_DENIED, result(ProbeStatus.PUSH_DENIED), KEY) == ()


def test_rate_limited_alert_carries_the_figures() -> None:
    limited = result(
        ProbeStatus.RATE_LIMITED, rate_limit_limit=100, rate_limit_remaining=0, retry_after_s=60.0
    )
    (decision,) = alerts_for(ProbeStatus.OK, limited, KEY)
    fields = decision.kwargs()
    assert (fields["remaining"], fields["limit"], fields["retry_after_s"]) == ("0", "100", 60.0)
    (unknown,) = alerts_for(None, result(ProbeStatus.RATE_LIMITED), KEY)
    assert (unknown.kwargs()["remaining"], unknown.kwargs()["limit"]) == ("?", "?")


def test_recovery_names_what_it_recovered_from() -> None:
    (decision,) = alerts_for(ProbeStatus.TLS_ERROR, result(ProbeStatus.OK), KEY)
    assert decision.kind == RECOVERED_KIND
    assert decision.kwargs()["previous"] == "tls_error"


@given(st.lists(st.sampled_from(ALL), min_size=1, max_size=30))
def test_alerts_follow_transitions_only(statuses: list[ProbeStatus]) -> None:
    state = Watched()
    now = 0.0
    raised: list[tuple[int, str]] = []
    for i, status in enumerate(statuses):
        step = observe(state, result(status), KEY, now=now, cadence=CADENCE, rand=0.5)
        raised += [(i, k) for k in kinds(step.alerts)]
        state = step.state
        now = step.state.due
    changes = [
        (i, s)
        for i, s in enumerate(statuses)
        if (statuses[i - 1] if i else None) is not s and not (i == 0 and s is ProbeStatus.OK)
    ]
    # One alert per change of status, none otherwise, of the kind the new status calls for.
    assert [i for i, _ in raised] == [i for i, _ in changes]
    kind_of = {ProbeStatus.OK: RECOVERED_KIND, ProbeStatus.RATE_LIMITED: RATE_LIMITED_KIND}
    assert [k for _, k in raised] == [kind_of.get(s, FAILING_KIND) for _, s in changes]
    # Never two recoveries without something to recover from in between.
    recoveries = [k for _, k in raised]
    for a, b in itertools.pairwise(recoveries):
        assert not (a == RECOVERED_KIND and b == RECOVERED_KIND)
    assert state.status is statuses[-1]


# ---------------------------------------------------------------------------------------------
# When a registry is due again


def test_healthy_interval_plus_jitter() -> None:
    step = observe(Watched(), result(ProbeStatus.OK), KEY, now=1000.0, cadence=CADENCE, rand=0.25)
    assert step.state.due == 1000.0 + 100.0 + 2.5
    assert step.state.failures == 0
    assert step.state.last_probed == 1000.0
    assert step.state.not_before == 0.0


def test_back_off_doubles_while_failing_up_to_the_cap_then_resets() -> None:
    state = Watched()
    now = 0.0
    delays = []
    for _ in range(6):
        step = observe(
            state, result(ProbeStatus.UNREACHABLE), KEY, now=now, cadence=CADENCE, rand=0
        )
        delays.append(step.state.due - now)
        state, now = step.state, step.state.due
    assert delays == [200.0, 400.0, 800.0, 1000.0, 1000.0, 1000.0]
    assert state.failures == 6
    step = observe(state, result(ProbeStatus.OK), KEY, now=now, cadence=CADENCE, rand=0)
    assert step.state.failures == 0
    assert step.state.due - now == 100.0


def test_rate_limited_counts_as_failing_for_back_off() -> None:
    step = observe(
        Watched(), result(ProbeStatus.RATE_LIMITED), KEY, now=0.0, cadence=CADENCE, rand=0
    )
    assert step.state.failures == 1
    assert step.state.due == 200.0


def test_retry_after_is_a_floor_for_the_next_probe_and_for_on_demand_probes() -> None:
    limited = result(ProbeStatus.RATE_LIMITED, retry_after_s=5000.0)
    step = observe(Watched(), limited, KEY, now=10.0, cadence=CADENCE, rand=0.9)
    assert step.state.due == 5010.0
    assert step.state.not_before == 5010.0
    # Asked to probe now (a journal failure): still not before Retry-After.
    assert expedite(step.state, now=20.0, cadence=CADENCE).due == 5010.0
    # A new login does not override Retry-After either.
    assert recredentialed(step.state, b"new", now=20.0).due == 5010.0
    # A short Retry-After does not shorten the back-off.
    short = observe(
        Watched(),
        result(ProbeStatus.RATE_LIMITED, retry_after_s=1.0),
        KEY,
        now=0.0,
        cadence=CADENCE,
        rand=0,
    )
    assert short.state.due == 200.0
    assert short.state.not_before == 1.0


@given(
    st.lists(
        st.tuples(
            st.sampled_from(ALL),
            st.one_of(st.none(), st.floats(0, 1e5)),
            st.floats(0, 0.999),
        ),
        min_size=1,
        max_size=20,
    ),
    st.floats(1, 1e4),
    st.floats(0, 100),
)
@settings(max_examples=200)
def test_due_is_always_in_the_future_and_bounded(
    steps: list[tuple[ProbeStatus, float | None, float]], interval: float, jitter: float
) -> None:
    cadence = Cadence(interval=interval, jitter=jitter, max_backoff=6 * 3600.0)
    state = Watched()
    now = 0.0
    for status, retry, rand in steps:
        new = observe(
            state, result(status, retry_after_s=retry), KEY, now=now, cadence=cadence, rand=rand
        ).state
        delay = new.due - now
        # due is now + delay in floating point: compare sums, not a difference that rounds.
        assert new.due >= now + interval
        assert new.due >= now + (retry or 0.0)
        assert delay <= max(cadence.max_backoff, interval) + jitter + (retry or 0.0)
        assert new.failures == (0 if status is ProbeStatus.OK else state.failures + 1)
        state, now = new, now + 1.0


def test_expedite_min_gap_and_never_later() -> None:
    state = Watched(due=500.0, last_probed=100.0)
    assert expedite(state, now=102.0, cadence=CADENCE).due == 105.0  # min_gap after last
    assert expedite(state, now=200.0, cadence=CADENCE).due == 200.0
    early = Watched(due=50.0, last_probed=None)
    assert expedite(early, now=200.0, cadence=CADENCE).due == 50.0  # never postponed
    flying = begin(state)
    assert expedite(flying, now=200.0, cadence=CADENCE) == flying


def test_in_flight_keys_are_neither_due_nor_waited_for() -> None:
    a, b = ProbeKey("/c", "a.io"), ProbeKey("/c", "b.io")
    book = {a: begin(Watched(due=0.0)), b: Watched(due=30.0)}
    assert due_keys(book, now=100.0) == [b]
    assert next_wakeup(book) == 30.0
    assert next_wakeup({a: book[a]}) is None
    assert next_wakeup({}) is None
    settled = settle(book, now=100.0)
    assert settled[a].in_flight is False and settled[a].due == 0.0
    assert settled[b] == book[b]
    held = settle({a: begin(Watched(due=900.0, not_before=300.0))}, now=100.0)
    assert held[a].due == 300.0


def test_a_result_for_a_replaced_credential_is_dropped() -> None:
    state = begin(Watched(fingerprint=b"new", status=ProbeStatus.BAD_CREDENTIALS, due=7.0))
    step = observe(
        state,
        result(ProbeStatus.BAD_CREDENTIALS),
        KEY,
        now=10.0,
        cadence=CADENCE,
        rand=0,
        probed_fingerprint=b"old",
    )
    assert step.alerts == ()
    assert step.state == Watched(fingerprint=b"new", status=ProbeStatus.BAD_CREDENTIALS, due=7.0)


def test_new_login_is_due_now_and_keeps_the_status_for_a_recovery() -> None:
    state = Watched(fingerprint=b"old", status=ProbeStatus.BAD_CREDENTIALS, due=900.0, failures=3)
    assert recredentialed(state, b"old", now=10.0) is state
    new = recredentialed(state, b"new", now=10.0)
    assert (new.due, new.fingerprint, new.status, new.failures) == (
        10.0,
        b"new",
        ProbeStatus.BAD_CREDENTIALS,
        3,
    )
    step = observe(new, result(ProbeStatus.OK), KEY, now=11.0, cadence=CADENCE, rand=0)
    assert kinds(step.alerts) == [RECOVERED_KIND]


def test_sync_adds_forgets_and_keeps() -> None:
    a1, a2, b1 = ProbeKey("/a", "one.io"), ProbeKey("/a", "two.io"), ProbeKey("/b", "one.io")
    book = {
        a1: Watched(fingerprint=b"1", due=500.0, status=ProbeStatus.OK),
        a2: Watched(fingerprint=b"2", due=500.0),
        b1: Watched(fingerprint=b"3", due=500.0),
    }
    new_key = ProbeKey("/a", "three.io")
    # /a re-read: two.io gone, three.io new, one.io's credential changed. /b not read: kept.
    out = sync(book, {a1: b"1x", new_key: b"9"}, now=42.0, keep={"/b"})
    assert set(out) == {a1, new_key, b1}
    assert out[a1].due == 42.0 and out[a1].status is ProbeStatus.OK
    assert out[new_key] == Watched(fingerprint=b"9", due=42.0)
    assert out[b1] is book[b1]
    # Without keep, a config that is not seen any more is forgotten entirely.
    assert set(sync(book, {}, now=0.0)) == set()


def test_status_text() -> None:
    assert status_text([], enabled=False) == "probes off"
    assert status_text([], enabled=True) == "probes: no registries"
    assert status_text([], enabled=True, started=False) == "probes: starting"
    assert status_text([("a.io", None)], enabled=True) == "probes: 1 pending"
    text = status_text(
        [
            ("a.io", ProbeStatus.OK),
            ("b.io", ProbeStatus.OK),
            ("c.io", ProbeStatus.BAD_CREDENTIALS),
            ("d.io", ProbeStatus.RATE_LIMITED),
        ],
        enabled=True,
    )
    assert text == "probes: 2 ok, 1 bad_credentials, 1 rate_limited (c.io, d.io)"
    many = status_text([(f"r{i}.io", ProbeStatus.ERROR) for i in range(5)], enabled=True)
    assert many == "probes: 5 error (r0.io, r1.io, r2.io, ...)"


# ---------------------------------------------------------------------------------------------
# Conflicts: which of two credentials works


def _res(status: ProbeStatus) -> ProbeResult:
    return ProbeResult(registry="docker.io", status=status)


ALICE_CRED = Credential("alice", "alice-secret-1")
BOB_CRED = Credential("bob", "bob-secret-2")


def test_conflict_verdict_kept_works() -> None:
    text, act = conflict_verdict(
        "https://index.docker.io/v1/",
        (ALICE_CRED, _res(ProbeStatus.OK)),
        (BOB_CRED, _res(ProbeStatus.BAD_CREDENTIALS)),
        backup="/state/b.json",
    )
    assert text == (
        "kept alice's credential for docker.io; it works; the removed bob credential is rejected"
    )
    assert act is False


def test_conflict_verdict_kept_fails_removed_works() -> None:
    text, act = conflict_verdict(
        "ghcr.io",
        (ALICE_CRED, _res(ProbeStatus.BAD_CREDENTIALS)),
        (BOB_CRED, _res(ProbeStatus.OK)),
        backup="/state/b.json",
    )
    assert text == (
        "kept alice's credential for ghcr.io; it is rejected; the removed bob credential works; "
        "restore the removed credential from /state/b.json or log in again"
    )
    assert act is True


@pytest.mark.parametrize(
    ("kept", "removed", "expected", "act"),
    [
        (
            (Credential("<token>", "tok-1", identity_token=True), ProbeStatus.PUSH_DENIED),
            (None, ProbeStatus.NO_CREDENTIALS),
            "kept the identity-token credential for ghcr.io; it works but may not push; "
            "the removed credential could not be read; log in again",
            True,
        ),
        (
            (ALICE_CRED, ProbeStatus.RATE_LIMITED),
            (BOB_CRED, ProbeStatus.UNREACHABLE),
            "kept alice's credential for ghcr.io; it could not be checked (rate_limited); "
            "the removed bob credential could not be checked (unreachable)",
            False,
        ),
        (
            (ALICE_CRED, ProbeStatus.OK),
            (BOB_CRED, ProbeStatus.OK),
            "kept alice's credential for ghcr.io; it works; the removed bob credential works",
            False,
        ),
    ],
)
def test_conflict_verdict_cases(
    kept: tuple[Credential | None, ProbeStatus],
    removed: tuple[Credential | None, ProbeStatus],
    expected: str,
    act: bool,
) -> None:
    text, must_act = conflict_verdict(
        "ghcr.io", (kept[0], _res(kept[1])), (removed[0], _res(removed[1])), backup="/b"
    )
    assert (text, must_act) == (expected, act)
    for secret in ("alice-secret-1", "bob-secret-2", "tok-1"):
        assert secret not in text


def test_conflict_alert_fields() -> None:
    conflict = ReportedConflict("ghcr.io", "ghcr.io", "https://ghcr.io", "kept", Path("/s/b.json"))
    decision = conflict_alert(
        "/c/config.json",
        conflict,
        (ALICE_CRED, _res(ProbeStatus.OK)),
        (BOB_CRED, _res(ProbeStatus.BAD_CREDENTIALS)),
    )
    assert decision.kind == CONFLICT_KIND
    assert decision.subject == "/c/config.json#ghcr.io"
    fields = decision.kwargs()
    assert fields["winner"] == "ghcr.io" and fields["loser"] == "https://ghcr.io"
    assert fields["backup"] == "/s/b.json"
    assert fields["kept_status"] == "ok" and fields["removed_status"] == "bad_credentials"
    assert fields["action_needed"] is False


# ---------------------------------------------------------------------------------------------
# Delivering alerts


class Recorder:
    """A structlog-like logger for :class:`Alerter`: records (method, event, fields)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict[str, Any]]] = []

    def __getattr__(self, method: str) -> Callable[..., None]:
        def record(event: str, **fields: Any) -> None:
            self.events.append((method, event, fields))

        return record


def test_deliver_uses_the_alerter_for_every_decision() -> None:
    recorder = Recorder()
    alerter = Alerter(suppress_window=0, logger=recorder)
    failing = alerts_for(None, result(ProbeStatus.BAD_CREDENTIALS), KEY)
    deliver(alerter.alert, failing)
    ((method, event, fields),) = recorder.events
    assert (method, event) == ("error", FAILING_KIND)
    assert fields["message"] == "ghcr.io: probe failed (bad_credentials): found bad_credentials"
    assert fields["message_id"] == CATALOGUE[FAILING_KIND].message_id.hex


def test_every_probe_alert_kind_is_catalogued() -> None:
    """A decision's kind is an :class:`AlertKind` (a typo is a mypy error, so the old fallback
    for kinds the catalogue lacked is gone); every kind has its catalogue entry."""
    probe_kinds = [k for k in AlertKind if k.value.startswith("probe.")]
    assert probe_kinds == [FAILING_KIND, RECOVERED_KIND, CONFLICT_KIND, RATE_LIMITED_KIND]
    assert set(CATALOGUE) == set(AlertKind)


# ---------------------------------------------------------------------------------------------
# The scheduler against real registries


class Inbox:
    """The daemon's ``post`` for tests: callbacks queue up and run on the test's thread."""

    def __init__(self) -> None:
        self.queue: queue.Queue[Callable[[], None]] = queue.Queue()
        self.ran = 0

    def post(self, callback: Callable[[], None]) -> None:
        self.queue.put(callback)

    def run(self, count: int = 1, deadline: float = 30.0) -> None:
        """Run the next ``count`` posted callbacks (each probe result posts exactly one)."""
        for _ in range(count):
            callback = self.queue.get(timeout=deadline)
            callback()
            self.ran += 1

    def idle(self) -> bool:
        return self.queue.empty()


class Sink:
    """A real :class:`Alerter` (catalogue, templates) writing into a :class:`Recorder`."""

    def __init__(self) -> None:
        self.recorder = Recorder()
        self.alerter = Alerter(suppress_window=0, logger=self.recorder)

    def alert(self, kind: str, subject: str, **fields: Any) -> bool:
        return self.alerter.alert(kind, subject, **fields)

    @property
    def kinds(self) -> list[str]:
        return [event for _, event, _ in self.recorder.events]

    def text(self) -> str:
        return json.dumps(self.recorder.events, default=str)


def write_config(path: Path, auths: dict[str, tuple[str, str]]) -> None:
    entries = {key: {"auth": auth(u, p)} for key, (u, p) in auths.items()}
    tmp = path.with_name(".config.json.tmp")
    tmp.write_text(json.dumps({"auths": entries}, indent="\t"))
    tmp.replace(path)  # as docker does: a rename


def secrets_of(*pairs: tuple[str, str]) -> list[str]:
    out: list[str] = []
    for user, password in pairs:
        out += [password, auth(user, password)]
    return out


def probe_settings(**overrides: Any) -> ProbeSettings:
    values: dict[str, Any] = {
        "enabled": True,
        "interval": 3600.0,  # nothing periodic happens during a test: every probe is triggered
        "jitter": 0.0,
        "concurrency": 4,
        "timeout": 5.0,
    }
    values.update(overrides)
    return ProbeSettings(**values)


@pytest.fixture
def scheduler_factory() -> Iterator[Callable[..., ProbeScheduler]]:
    made: list[ProbeScheduler] = []

    def make(
        settings: ProbeSettings, configs: list[Path], inbox: Inbox, sink: Sink
    ) -> ProbeScheduler:
        scheduler = ProbeScheduler(
            settings, lambda: list(configs), inbox.post, sink.alert, min_gap=0.0
        )
        made.append(scheduler)
        return scheduler

    try:
        yield make
    finally:
        for scheduler in made:
            assert scheduler.stop(timeout=5.0)


ALICE = ("alice", "alice-pw-4Tq8")
BOB = ("bob", "bob-pw-9Wd2")


@pytest.mark.integration
def test_revoked_then_restored_gives_one_failing_and_one_recovered_alert(
    tmp_path: Path,
    registry_factory: RegistryFactory,
    scheduler_factory: Callable[..., ProbeScheduler],
) -> None:
    reg = registry_factory(auth="token", grants={ALICE[0]: Grant.push(ALICE[1])})
    assert reg.issuer is not None
    config = tmp_path / "config.json"
    write_config(config, {reg.host: ALICE})
    inbox, sink = Inbox(), Sink()
    scheduler = scheduler_factory(
        probe_settings(repositories={reg.host: "team/app"}), [config], inbox, sink
    )
    scheduler.start()
    assert scheduler.running

    inbox.run()  # the first round probes every registry at once
    first = scheduler.latest(reg.host)
    assert first is not None and first.status is ProbeStatus.OK and first.push_allowed
    assert sink.kinds == []
    assert scheduler.status_line() == "probes: 1 ok"

    reg.issuer.grants[ALICE[0]] = Grant.push("changed-elsewhere")  # password changed / revoked
    scheduler.probe_now([f"http://{reg.host}/"])  # any spelling of the registry
    inbox.run()
    bad = scheduler.latest(reg.host)
    assert bad is not None and bad.status is ProbeStatus.BAD_CREDENTIALS
    assert sink.kinds == [FAILING_KIND]
    assert scheduler.status_line() == f"probes: 1 bad_credentials ({reg.host})"

    scheduler.probe_now([reg.host])  # still failing the same way: no second alert
    inbox.run()
    again = scheduler.latest(reg.host)
    assert again is not None and again is not bad and again.status is ProbeStatus.BAD_CREDENTIALS
    assert sink.kinds == [FAILING_KIND]

    reg.issuer.grants[ALICE[0]] = Grant.push(ALICE[1])
    scheduler.probe_now(None)
    inbox.run()
    assert sink.kinds == [FAILING_KIND, RECOVERED_KIND]

    _, _, failing = sink.recorder.events[0]
    assert failing["registry"] == reg.host
    assert failing["status"] == "bad_credentials"
    assert "refused user 'alice'" in failing["reason"]
    assert failing["subject"] == f"{config}#{reg.host}"
    text = sink.text()
    for secret in secrets_of(ALICE):
        assert secret not in text
    assert inbox.idle()


@pytest.mark.integration
def test_a_new_login_is_probed_at_once_and_recovers(
    tmp_path: Path,
    registry_factory: RegistryFactory,
    scheduler_factory: Callable[..., ProbeScheduler],
) -> None:
    reg = registry_factory(users=dict([ALICE]))  # htpasswd
    config = tmp_path / "config.json"
    wrong = (ALICE[0], "typo-pw-0Xx1")
    write_config(config, {reg.host: wrong})
    inbox, sink = Inbox(), Sink()
    scheduler = scheduler_factory(probe_settings(), [config], inbox, sink)
    with capture_logs() as logs:
        scheduler.start()
        inbox.run()
        assert sink.kinds == [FAILING_KIND]

        # The daemon repairs a file without changing a credential: nothing to probe.
        write_config(config, {f"https://{reg.host}": wrong})
        scheduler.config_changed([config])
        # `docker login` with the right password: probed at once (the interval is an hour).
        write_config(config, {reg.host: ALICE})
        scheduler.config_changed([str(config)])
        inbox.run()
    ok = scheduler.latest(reg.host, config)
    assert ok is not None and ok.status is ProbeStatus.OK
    assert sink.kinds == [FAILING_KIND, RECOVERED_KIND]
    assert inbox.idle()
    everything = sink.text() + json.dumps(logs, default=str)
    for secret in secrets_of(ALICE, wrong):
        assert secret not in everything


@pytest.mark.integration
def test_registries_leaving_and_configs_sharing_a_credential(
    tmp_path: Path,
    registry_factory: RegistryFactory,
    scheduler_factory: Callable[..., ProbeScheduler],
) -> None:
    reg = registry_factory(users=dict([ALICE]))
    one, two = tmp_path / "one.json", tmp_path / "two.json"
    write_config(one, {reg.host: ALICE})
    write_config(two, {reg.host: ALICE})  # the same credential: one probe serves both
    inbox, sink = Inbox(), Sink()
    scheduler = scheduler_factory(probe_settings(), [one, two], inbox, sink)
    scheduler.start()
    inbox.run()
    assert scheduler.latest(reg.host, one) is scheduler.latest(reg.host, two)
    assert scheduler.status_line() == "probes: 2 ok"
    write_config(two, {})
    scheduler.config_changed([two])
    scheduler.probe_now([reg.host])
    inbox.run()
    assert scheduler.status_line() == "probes: 1 ok"
    assert sink.kinds == []


@pytest.mark.integration
def test_rate_limited_registry_alerts_once_with_retry_after(
    tmp_path: Path, scheduler_factory: Callable[..., ProbeScheduler]
) -> None:
    hub = HubFake(users={"hubuser": "hub-pass-1"}, token_status=429, retry_after=120)
    try:
        host = f"127.0.0.1:{hub.port}"
        config = tmp_path / "config.json"
        write_config(config, {host: ("hubuser", "hub-pass-1")})
        inbox, sink = Inbox(), Sink()
        scheduler = scheduler_factory(probe_settings(), [config], inbox, sink)
        scheduler.start()
        inbox.run()
    finally:
        hub.stop()
    assert sink.kinds == [RATE_LIMITED_KIND]
    _, _, fields = sink.recorder.events[0]
    assert fields["retry_after_s"] == 120.0
    assert "hub-pass-1" not in sink.text()


@pytest.mark.integration
def test_conflict_check_says_which_credential_works(
    tmp_path: Path,
    registry_factory: RegistryFactory,
    scheduler_factory: Callable[..., ProbeScheduler],
) -> None:
    reg = registry_factory(users=dict([ALICE, BOB]))
    config = tmp_path / "config.json"
    stale_bob = (BOB[0], "bob-old-pw-1Rr5")
    write_config(config, {reg.host: ALICE, f"https://{reg.host}/v1/": stale_bob})
    report = fix_file(config, backups=BackupStore(tmp_path / "state"))
    (conflict,) = report.conflicts
    assert conflict.backup is not None and conflict.winner == reg.host

    inbox, sink = Inbox(), Sink()
    scheduler = scheduler_factory(probe_settings(), [config], inbox, sink)
    scheduler.start()
    with capture_logs() as logs:
        scheduler.probe_conflict(config, conflict)
        inbox.run(2)  # the periodic first round and the conflict check, in either order
    raised = [(event, fields) for _, event, fields in sink.recorder.events]
    raised += [(e["event"], e) for e in logs if e["event"] == CONFLICT_KIND]
    ((_, fields),) = [(k, f) for k, f in raised if k == CONFLICT_KIND]
    verdict = fields.get("verdict") or fields["message"]
    assert verdict.startswith(
        f"kept alice's credential for {reg.host}; it works; the removed bob credential is rejected"
    )
    assert fields["backup"] == str(conflict.backup)
    everything = sink.text() + json.dumps(logs, default=str)
    for secret in secrets_of(ALICE, stale_bob, BOB):
        assert secret not in everything


@pytest.fixture
def black_hole() -> Iterator[socket.socket]:
    """A TCP server that accepts connections and never answers."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    try:
        yield server
    finally:
        server.close()


@pytest.mark.integration
def test_stop_cancels_a_probe_stuck_on_a_registry_that_never_answers(
    tmp_path: Path, black_hole: socket.socket, scheduler_factory: Callable[..., ProbeScheduler]
) -> None:
    host = f"127.0.0.1:{black_hole.getsockname()[1]}"
    config = tmp_path / "config.json"
    write_config(config, {host: ALICE})
    inbox, sink = Inbox(), Sink()
    # Every request may take a minute: only cancellation can end the probe in time.
    scheduler = scheduler_factory(probe_settings(timeout=60.0), [config], inbox, sink)
    scheduler.start()
    black_hole.settimeout(30.0)
    connection, _ = black_hole.accept()  # the probe is now waiting for an answer
    try:
        assert scheduler.stop(timeout=5.0)
        assert not scheduler.running
        assert not any(t.name == "regauthd-probes" for t in threading.enumerate())
    finally:
        connection.close()
    assert inbox.idle()  # a cancelled probe reports nothing
    assert sink.kinds == []


def test_disabled_probes_start_no_thread() -> None:
    inbox, sink = Inbox(), Sink()
    before = threading.active_count()
    scheduler = ProbeScheduler(
        ProbeSettings(enabled=False), lambda: [Path("/nonexistent")], inbox.post, sink.alert
    )
    scheduler.start()
    scheduler.probe_now(["ghcr.io"])
    scheduler.config_changed(["/nonexistent"])
    assert not scheduler.running
    assert threading.active_count() == before
    assert scheduler.status_line() == "probes off"
    assert scheduler.latest("ghcr.io") is None
    assert scheduler.stop() is True
    assert inbox.idle()


@pytest.mark.integration
def test_reload_enables_and_disables_the_thread(
    tmp_path: Path, registry_factory: RegistryFactory
) -> None:
    reg = registry_factory(users=dict([ALICE]))
    config = tmp_path / "config.json"
    write_config(config, {reg.host: ALICE})
    inbox, sink = Inbox(), Sink()
    scheduler = ProbeScheduler(
        ProbeSettings(enabled=False), lambda: [config], inbox.post, sink.alert, min_gap=0.0
    )
    try:
        scheduler.start()
        assert not scheduler.running
        scheduler.reload(probe_settings())
        assert scheduler.running
        inbox.run()
        scheduler.reload(probe_settings(jitter=1.0))  # restarted: the statuses are kept
        assert scheduler.running
        scheduler.probe_now([reg.host])
        inbox.run()
        assert sink.kinds == []
        scheduler.reload(ProbeSettings(enabled=False))
        assert not scheduler.running
        assert scheduler.status_line() == "probes off"
    finally:
        assert scheduler.stop(timeout=5.0)


@pytest.mark.integration
def test_an_unreadable_config_keeps_its_registries(
    tmp_path: Path,
    registry_factory: RegistryFactory,
    scheduler_factory: Callable[..., ProbeScheduler],
) -> None:
    reg = registry_factory(users=dict([ALICE]))
    config = tmp_path / "config.json"
    write_config(config, {reg.host: ALICE})
    inbox, sink = Inbox(), Sink()
    scheduler = scheduler_factory(probe_settings(), [config], inbox, sink)
    scheduler.start()
    inbox.run()
    # Half-edited by hand: not JSON. The registry stays known and is still probed (with the
    # credential last read), and nothing is raised about it.
    config.write_text('{"auths": {')
    scheduler.config_changed([config])
    scheduler.probe_now([reg.host])
    inbox.run()
    assert scheduler.status_line() == "probes: 1 ok"
    assert sink.kinds == []


@pytest.mark.integration
def test_component_wiring_as_the_composition_root_does(
    tmp_path: Path, registry_factory: RegistryFactory
) -> None:
    """Wired as :func:`regauthd.service.app.build` wires it: the daemon's ``post`` and ``alert``,
    the watched configs, the repair listener, a result subscriber."""
    reg = registry_factory(users=dict([ALICE, BOB]))
    docker_dir = tmp_path / "docker"
    docker_dir.mkdir()
    config = docker_dir / "config.json"
    write_config(config, {reg.host: ALICE, f"http://{reg.host}": BOB})
    text = f'[watch]\npaths = ["{config}"]\n[probe]\nenabled = true\ninterval = "1h"\njitter = 0\n'
    env = Environment(euid=1000, home=tmp_path, env={})
    settings = parse_settings(text, env)
    inbox, sink = Inbox(), Sink()
    watched = [config]  # the daemon's watch plan
    scheduler = ProbeScheduler(
        settings.probe, lambda: list(watched), inbox.post, sink.alert, min_gap=0.0
    )
    pushed: list[tuple[ProbeKey, ProbeResult]] = []
    scheduler.subscribe(lambda key, result: pushed.append((key, result)))
    component = ProbeComponent(scheduler, lambda: list(watched))
    component.start()
    try:
        inbox.run()
        assert component.status() == "probes: 1 ok"
        # Every completed result is pushed, on the loop thread (here: the test's).
        assert pushed == [(ProbeKey(str(config), reg.host), scheduler.latest(reg.host))]
        assert pushed[0][1] is scheduler.latest(reg.host)
        # The daemon repaired the file and reports the conflict it resolved.
        report = fix_file(config, backups=BackupStore(tmp_path / "state"))
        with capture_logs() as logs:
            scheduler.on_repair(config, report)
            inbox.run()
        conflict_events = [e for e in logs if e["event"] == CONFLICT_KIND]
        conflict_events += [f for _, e, f in sink.recorder.events if e == CONFLICT_KIND]
        (conflict_event,) = conflict_events
        message = conflict_event.get("verdict") or conflict_event["message"]
        assert message == (
            f"kept alice's credential for {reg.host}; it works; the removed bob credential works"
        )
        scheduler.probe_now([f"https://{reg.host}/v1/"])  # as a journal line names it
        inbox.run()
        assert component.status() == "probes: 1 ok"
        assert sink.kinds in ([], [CONFLICT_KIND])
        assert pushed[-1] == (ProbeKey(str(config), reg.host), scheduler.latest(reg.host))
        component.reload(dataclasses.replace(settings, probe=ProbeSettings(enabled=False)))
        assert component.status() is None
        assert not scheduler.running
    finally:
        component.stop()


@pytest.mark.integration
def test_inside_the_real_daemon_loop(
    tmp_path: Path, registry_factory: RegistryFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The component in :class:`regauthd.service.daemon.Daemon`, built by
    :func:`regauthd.service.app.build`: alerts go through the daemon's own alerter on its loop
    thread, the probe summary reaches ``STATUS=``, and shutdown stops the probe thread."""
    from regauthd.service.app import build

    reg = registry_factory(users=dict([ALICE]))
    config = tmp_path / "docker" / "config.json"
    config.parent.mkdir()
    wrong = (ALICE[0], "stale-pw-8Hh3")
    write_config(config, {reg.host: wrong})
    notify_path = tmp_path / "notify.sock"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    notify.settimeout(30.0)
    monkeypatch.setenv("NOTIFY_SOCKET", str(notify_path))
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    text = (
        f'[daemon]\nstate_dir = "{tmp_path / "state"}"\n[watch]\npaths = ["{config}"]\n'
        '[probe]\nenabled = true\ninterval = "1h"\njitter = 0\n'
    )
    settings = parse_settings(text, Environment(euid=1000, home=tmp_path, env={}))
    app = build(settings, configure_output=False)
    daemon = app.daemon
    status_lines: list[str] = []

    def watch_status() -> None:
        try:
            while True:
                message = notify.recv(4096).decode()
                status_lines.extend(m for m in message.splitlines() if m.startswith("STATUS="))
                if f"probes: 1 bad_credentials ({reg.host})" in message:
                    break
        finally:
            daemon.stop()

    # Daemon.run() installs handlers for SIGTERM, SIGINT and SIGHUP: put pytest's back after.
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    watcher = threading.Thread(target=watch_status, daemon=True)
    try:
        with capture_logs() as logs:
            watcher.start()
            assert daemon.run() == 0
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)
        notify.close()
    watcher.join(timeout=5.0)
    assert app.probes is not None and not app.probes.running
    failing = [e for e in logs if e["event"] == FAILING_KIND]
    assert len(failing) == 1
    assert failing[0]["registry"] == reg.host
    assert failing[0]["message_id"] == CATALOGUE[FAILING_KIND].message_id.hex
    assert any(f"probes: 1 bad_credentials ({reg.host})" in line for line in status_lines)
    everything = json.dumps(logs, default=str) + "\n".join(status_lines)
    for secret in secrets_of(wrong):
        assert secret not in everything
