"""Alerts land in a real journald (private mount namespace) as native entries with their fields,
and nothing is printed on the stdout stream beside them."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from regauthd.alerts.catalogue import CATALOGUE
from tests.rigs.configs import HUB, auth, auths_keys, docker_style_write, wait_until
from tests.rigs.journald import JournaldNamespace

ROOT = Path(__file__).resolve().parents[2]
SECRET = "journal-secret-pw-77"


def test_alerts_are_native_journald_entries(tmp_path: Path) -> None:
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    settings = tmp_path / "config.toml"
    settings.write_text("[alerts]\nsuppress_window = 0\n")  # output = "auto": picks journald
    with JournaldNamespace(tmp_path / "journald") as ns:
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": str(tmp_path),
            "PYTHONPATH": str(ROOT / "daemon"),
        }
        ns.popen(
            [
                sys.executable, "-m", "regauthd", "run", "--config", str(settings),
                "--docker-config", str(cfg), "--state-dir", str(tmp_path / "state"),
            ],
            unit="regauthd.service",
            stream="regauthd",
            env=env,
            cwd=ROOT,
        )  # fmt: skip
        ns.wait_for(REGAUTHD_EVENT="daemon.ready", timeout=30)

        docker_style_write(
            cfg, json.dumps({"auths": {"docker.io": {"auth": auth("ci", SECRET)}}}).encode()
        )
        wait_until(lambda: auths_keys(cfg / "config.json") == [HUB], "normalized")
        normalized = CATALOGUE["config.normalized"]
        (entry,) = ns.wait_for(MESSAGE_ID=normalized.message_id.hex, timeout=30)
        assert entry["SYSLOG_IDENTIFIER"] == "regauthd"
        assert entry["PRIORITY"] == "5"
        assert entry["REGAUTHD_EVENT"] == "config.normalized"
        assert entry["REGAUTHD_PATH"] == str(cfg / "config.json")
        assert entry["REGAUTHD_CHANGES"] == f"docker.io -> {HUB} (rename)"
        assert entry["MESSAGE"].startswith(f"{cfg / 'config.json'}: repaired")
        assert entry["_TRANSPORT"] == "journal"
        assert entry["_SYSTEMD_UNIT"] == "regauthd.service"

        docker_style_write(cfg, b'{"auths": {', 1)
        unfixable = CATALOGUE["config.unfixable"]
        (entry,) = ns.wait_for(MESSAGE_ID=unfixable.message_id.hex, timeout=30)
        assert entry["PRIORITY"] == "3"
        assert "invalid JSON" in entry["REGAUTHD_REASON"]

        # Every entry of ours is native: nothing came through the stdout/stderr stream, so
        # no event is logged twice.
        ours = ns.entries(_SYSTEMD_UNIT="regauthd.service")
        assert ours
        assert {e["_TRANSPORT"] for e in ours} == {"journal"}
        assert all(SECRET not in json.dumps(e) for e in ns.entries())
