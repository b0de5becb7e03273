"""A stand-in for systemd's notify socket: an AF_UNIX datagram socket that collects sd_notify
messages.

Usage::

    from tests.rigs.notify import NotifySocket

    with NotifySocket(tmp_path / "notify.sock") as notify:
        proc = subprocess.Popen([...], env={**os.environ, **notify.env()})
        notify.wait_for("READY=1", timeout=20)
        ...
        assert any(m.startswith("STATUS=") for m in notify.messages)

Each datagram may hold several ``KEY=value`` lines (``READY=1\\nSTATUS=...``); :attr:`messages`
lists the lines in arrival order.
"""

from __future__ import annotations

import select
import socket
import time
from pathlib import Path


class NotifySocket:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self._sock.bind(str(self.path))
        self.messages: list[str] = []

    def env(self, *, watchdog_usec: int | None = None) -> dict[str, str]:
        """Variables a service manager would set for the daemon."""
        env = {"NOTIFY_SOCKET": str(self.path)}
        if watchdog_usec is not None:
            env["WATCHDOG_USEC"] = str(watchdog_usec)
        return env

    def _drain(self, timeout: float) -> None:
        ready, _, _ = select.select([self._sock], [], [], max(0.0, timeout))
        while ready:
            data = self._sock.recv(65536)
            self.messages.extend(line for line in data.decode().split("\n") if line)
            ready, _, _ = select.select([self._sock], [], [], 0)

    def poll(self) -> list[str]:
        """Collect what has arrived so far; returns all messages."""
        self._drain(0)
        return self.messages

    def wait_for(self, line: str, timeout: float = 20.0, *, count: int = 1) -> list[str]:
        """Wait until ``line`` (exact, or a prefix ending in ``=``) arrived ``count`` times."""

        def seen() -> int:
            if line.endswith("="):
                return sum(1 for m in self.messages if m.startswith(line))
            return self.messages.count(line)

        deadline = time.monotonic() + timeout
        while seen() < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no {line!r} x{count} within {timeout} s: {self.messages}")
            self._drain(remaining)
        return self.messages

    def close(self) -> None:
        self._sock.close()
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> NotifySocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
