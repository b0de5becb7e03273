"""The daemon's signals, for as long as :meth:`regauthd.service.daemon.Daemon.run` runs.

SIGTERM and SIGINT stop it; one arriving while it is stopping already forces the exit (status 1,
uvicorn's rule: something is stuck). SIGHUP reloads its settings. The handlers only ask: the
work is done on the loop thread. The handlers in place before are put back on the way out.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from types import FrameType
from typing import Any


class Signals:
    def __init__(
        self, *, stop: Callable[[], None], stopping: Callable[[], bool], hup: Callable[[], None]
    ) -> None:
        self._stop, self._stopping, self._hup = stop, stopping, hup
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> Signals:
        handlers = {
            signal.SIGTERM: self._on_stop,
            signal.SIGINT: self._on_stop,
            signal.SIGHUP: self._on_hup,
        }
        self._previous = {signum: signal.signal(signum, h) for signum, h in handlers.items()}
        return self

    def __exit__(self, *_: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _on_stop(self, signum: int, frame: FrameType | None) -> None:
        if self._stopping():
            os._exit(1)
        self._stop()

    def _on_hup(self, signum: int, frame: FrameType | None) -> None:
        self._hup()
