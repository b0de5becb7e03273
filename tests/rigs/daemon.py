"""A running ``regauthd run`` for end-to-end tests: started with its own settings, a datagram
socket for sd_notify and JSON output to a file; stopped by PID. A pytest plugin (``start_daemon``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.rigs.configs import (
    WAIT_S,
    wait_until,
)
from tests.rigs.notify import NotifySocket

ROOT = Path(__file__).resolve().parent.parent.parent


class Daemon:
    """A running ``regauthd run``; stopped by PID in :meth:`stop`."""

    def __init__(
        self,
        tmp_path: Path,
        *,
        settings: str,
        docker_configs: list[Path] | None = None,
        env: dict[str, str] | None = None,
        watchdog_usec: int | None = None,
        command_prefix: list[str] | None = None,
    ) -> None:
        """``command_prefix`` runs the daemon under another program (``unshare ...``)."""
        self.dir = tmp_path / "daemon"
        self.dir.mkdir(exist_ok=True)
        self.home = tmp_path / "home"
        self.home.mkdir(exist_ok=True)
        self.state = tmp_path / "state"
        self.settings_file = self.dir / "config.toml"
        self.settings_file.write_text(settings)
        self.notify = NotifySocket(self.dir / "notify.sock")
        self.out = self.dir / "stdout.jsonl"
        self.err = self.dir / "stderr.txt"
        argv = [
            *(command_prefix or []), sys.executable, "-m", "regauthd", "run",
            "--config", str(self.settings_file), "--state-dir", str(self.state),
        ]  # fmt: skip
        for d in docker_configs or []:
            argv += ["--docker-config", str(d)]
        environ = {
            k: v
            for k, v in os.environ.items()
            if k not in {"JOURNAL_STREAM", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"}
            and not k.startswith("DOCKER_")
        }
        environ.update(HOME=str(self.home), **self.notify.env(watchdog_usec=watchdog_usec))
        environ.update(env or {})
        with self.out.open("wb") as out, self.err.open("wb") as err:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=err, env=environ, cwd=ROOT)

    def wait_ready(self) -> None:
        try:
            self.notify.wait_for("READY=1", WAIT_S)
        except TimeoutError:
            raise AssertionError(f"no READY=1; stderr: {self.err.read_text()}") from None

    def events(self) -> list[dict[str, Any]]:
        lines = self.out.read_text().splitlines()
        return [json.loads(line) for line in lines if line.endswith("}")]

    def named(self, event: str) -> list[dict[str, Any]]:
        return [e for e in self.events() if e["event"] == event]

    def wait_event(self, event: str, count: int = 1) -> list[dict[str, Any]]:
        return wait_until(
            lambda: len(self.named(event)) >= count and self.named(event),
            f"{count} x {event} in {self.out.read_text()[-3000:]}",
        )

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.notify.close()
        return self.proc.returncode


@pytest.fixture
def start_daemon(tmp_path: Path) -> Iterator[Callable[..., Daemon]]:
    started: list[Daemon] = []

    def start(settings: str = "", **kwargs: Any) -> Daemon:
        base = '[daemon]\noutput = "json"\nlog_level = "debug"\n[alerts]\nsuppress_window = 0\n'
        daemon = Daemon(tmp_path, settings=base + settings, **kwargs)
        started.append(daemon)
        daemon.wait_ready()
        return daemon

    yield start
    for daemon in started:
        daemon.stop()


def watch_settings(*patterns: Path) -> str:
    return "[watch]\npaths = [" + ", ".join(f'"{p}"' for p in patterns) + "]\n"


# -- life ----------------------------------------------------------------------------------------
