"""The daemon raises ``credential.expiring`` and ``credential.expired`` once per credential: at
start, on a config change and on its own timers, and not again after a restart (issue 10)."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.rigs.configs import auth, docker_style_write, wait_until
from tests.rigs.daemon import Daemon
from tests.rigs.tokens import ecr_password, jwt_token

ECR_HOST = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
SETTINGS = '[expiry]\nlead_time = "3s"\n'


def config(entries: dict[str, dict[str, str]]) -> bytes:
    return json.dumps({"auths": entries}, indent="\t").encode()


def expiry_alerts(daemon: Daemon) -> list[tuple[str, str]]:
    return [
        (e["event"], e["registry"])
        for e in daemon.events()
        if e["event"] in {"credential.expiring", "credential.expired"}
    ]


def test_each_alert_once_on_timers_changes_and_restarts(
    tmp_path: Path, start_daemon: Callable[..., Daemon]
) -> None:
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    # Expires 5 s from now: valid at start, expiring 3 s before (a timer), expired at 5 s.
    soon = jwt_token(datetime.now(UTC) + timedelta(seconds=5))
    opaque = "plain-password-never-expires"
    entries = {"ghcr.io": {"auth": auth("bot", soon)}, "quay.io": {"auth": auth("q", opaque)}}
    docker_style_write(cfg, config(entries))
    daemon = start_daemon(SETTINGS, docker_configs=[cfg])
    expiring = daemon.wait_event("credential.expiring")[0]
    assert expiring["registry"] == "ghcr.io"
    assert expiring["username"] == "bot"
    assert expiring["path"] == str(cfg / "config.json")
    assert expiring["source"] == "the `exp` claim of the JWT in its password"
    assert expiring["fix"] == "Log in again: `docker login ghcr.io`"
    expired = daemon.wait_event("credential.expired")[0]
    assert expired["registry"] == "ghcr.io"
    assert expired["priority"] == 3

    # A config change: an expired ECR password arrives; the JWT's alerts are not repeated.
    stale = ecr_password(datetime.now(UTC) - timedelta(hours=2))
    docker_style_write(
        cfg,
        config({"ghcr.io": {"auth": auth("bot", soon)}, ECR_HOST: {"auth": auth("AWS", stale)}}),
        seq=1,
    )
    daemon.wait_event("credential.expired", count=2)
    time.sleep(0.5)  # time for a wrong second alert to show
    assert expiry_alerts(daemon) == [
        ("credential.expiring", "ghcr.io"),
        ("credential.expired", "ghcr.io"),
        ("credential.expired", ECR_HOST),
    ]
    ecr = daemon.named("credential.expired")[1]
    assert "aws ecr get-login-password --region eu-west-1" in ecr["fix"]
    assert daemon.stop() == 0

    # A restart: the same credentials are already told; nothing is raised again.
    again = start_daemon(SETTINGS, docker_configs=[cfg])
    again.wait_event("daemon.ready")
    time.sleep(1.0)
    assert expiry_alerts(again) == []
    assert again.stop() == 0

    # The secret is in no output, no alert and no state file.
    state_files = [p for p in (tmp_path / "state").rglob("*") if p.is_file()]
    assert {p.name for p in state_files} >= {"expiry.key", "expiry-alerts.json"}
    assert (tmp_path / "state" / "expiry.key").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "state" / "expiry-alerts.json").stat().st_mode & 0o777 == 0o600
    outputs = [again.out, again.err, *state_files]
    for path in outputs:
        data = path.read_bytes()
        for secret in (soon, stale, opaque, soon.split(".")[1], stale[30:80]):
            assert secret.encode() not in data, path


def test_an_expired_credential_at_start_raises_expired_only(
    tmp_path: Path, start_daemon: Callable[..., Daemon]
) -> None:
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    token = jwt_token(datetime.now(UTC) - timedelta(minutes=5))
    entry = {"auth": auth("00000000-0000-0000-0000-000000000000", ""), "identitytoken": token}
    docker_style_write(cfg, config({"acme.azurecr.io": entry}))
    daemon = start_daemon(SETTINGS, docker_configs=[cfg])
    (event,) = daemon.wait_event("credential.expired")
    assert event["registry"] == "acme.azurecr.io"
    assert event["fix"] == "Log in again: `az acr login --name acme`"
    assert "identitytoken" in event["source"]
    time.sleep(0.3)
    assert expiry_alerts(daemon) == [("credential.expired", "acme.azurecr.io")]

    # The fleet metrics carry the same expiry, per registry (a Unix time; rules subtract time()).
    textfile = tmp_path / "state" / "regauthd.prom"
    series = 'regauthd_credential_expiry_timestamp_seconds{registry="acme.azurecr.io"}'
    line = wait_until(
        lambda: (
            next((x for x in textfile.read_text().splitlines() if x.startswith(series + " ")), None)
            if textfile.exists()
            else None
        ),
        "the expiry series in the metrics textfile",
    )
    exp = int(json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))["exp"])
    assert float(line.split()[-1]) == exp
