"""The daemon's expiry component on a fake clock: which timer it sets, what it raises and when
(the end-to-end run is tests/e2e/test_daemon_expiry.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from regauthd.alerts.catalogue import AlertKind
from regauthd.dockerconfig.report import FixReport
from regauthd.service.expirywatch import MAX_TIMER_S, ExpiryWatch
from regauthd.service.loop import Loop
from regauthd.settings import ExpirySettings, Settings, WatchSettings
from tests.rigs.configs import auth
from tests.rigs.tokens import ecr_password, jwt_token

START = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


class Clocks:
    """One fake time for both the loop's monotonic clock and the wall clock."""

    def __init__(self) -> None:
        self.elapsed = 0.0

    def monotonic(self) -> float:
        return self.elapsed

    def wall(self) -> datetime:
        return START + timedelta(seconds=self.elapsed)


def make(tmp_path: Path, lead_s: float = 3600.0) -> tuple[ExpiryWatch, Loop, Clocks, list[Any]]:
    settings = Settings(
        watch=WatchSettings(paths=()),
        state_dir=tmp_path / "state",
        expiry=ExpirySettings(lead_time=lead_s),
    )
    (tmp_path / "state").mkdir()
    clocks = Clocks()
    loop = Loop(clock=clocks.monotonic)
    raised: list[Any] = []

    def alert(kind: AlertKind, subject: str, **fields: Any) -> bool:
        raised.append((kind, fields["registry"]))
        return True

    watch = ExpiryWatch(settings, loop=loop, alert=alert, now=clocks.wall)
    watch.start()
    return watch, loop, clocks, raised


def repaired(path: Path, entries: dict[str, Any]) -> FixReport:
    data = json.dumps({"auths": entries}).encode()
    path.write_bytes(data)
    return FixReport(path=path, before=data)


def advance(loop: Loop, clocks: Clocks, seconds: float) -> None:
    clocks.elapsed += seconds
    loop.run_once(lambda: None)


def test_timer_at_lead_time_then_at_expiry(tmp_path: Path) -> None:
    watch, loop, clocks, raised = make(tmp_path)
    cfg = tmp_path / "config.json"
    token = ecr_password(START + timedelta(hours=12))
    watch.on_repair(
        str(cfg), repaired(cfg, {"1.dkr.ecr.x-1.amazonaws.com": {"auth": auth("AWS", token)}})
    )
    assert raised == []
    (when, _, _) = loop._timers[0]
    assert when == MAX_TIMER_S  # 11 h to the lead time: looked at again after 6 h
    advance(loop, clocks, MAX_TIMER_S)
    assert raised == []
    (when, _, _) = loop._timers[0]
    assert abs(when - (11 * 3600 + 0.05)) < 1e-6  # now exactly at the lead time
    advance(loop, clocks, 11 * 3600 - clocks.elapsed + 0.05)
    assert raised == [(AlertKind.CREDENTIAL_EXPIRING, "1.dkr.ecr.x-1.amazonaws.com")]
    advance(loop, clocks, 3600.0)
    assert [k for k, _ in raised] == [AlertKind.CREDENTIAL_EXPIRING, AlertKind.CREDENTIAL_EXPIRED]
    assert loop._timeout() is None  # nothing left to wait for
    assert watch.earliest_expiry_by_registry() == {
        "1.dkr.ecr.x-1.amazonaws.com": START + timedelta(hours=12)
    }
    watch.stop()
    loop.close()


def test_same_credential_rewritten_is_not_raised_again_a_new_one_is(tmp_path: Path) -> None:
    watch, loop, clocks, raised = make(tmp_path)
    cfg = tmp_path / "config.json"
    old = jwt_token(START + timedelta(minutes=30))
    watch.on_repair(str(cfg), repaired(cfg, {"ghcr.io": {"auth": auth("bot", old)}}))
    watch.on_repair(str(cfg), repaired(cfg, {"ghcr.io": {"auth": auth("bot", old)}, "x.io": {}}))
    assert raised == [(AlertKind.CREDENTIAL_EXPIRING, "ghcr.io")]
    # A new login: a new expiry, a new credential, told again when its time comes.
    new = jwt_token(START + timedelta(minutes=50))
    watch.on_repair(str(cfg), repaired(cfg, {"ghcr.io": {"auth": auth("bot", new)}}))
    assert raised == [(AlertKind.CREDENTIAL_EXPIRING, "ghcr.io")] * 2
    # The config is gone: its timer goes, nothing more is raised for it.
    cfg.unlink()
    advance(loop, clocks, 3600.0)
    assert len(raised) == 2
    assert watch.earliest_expiry_by_registry() == {}
    watch.stop()
    loop.close()
