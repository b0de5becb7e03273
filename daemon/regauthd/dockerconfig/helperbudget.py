"""How many seconds of credential helpers each user may use (:class:`HelperBudget`).

Each call of a helper has a hard timeout; the budget bounds the seconds one user's helpers take
in a sliding window, so one user's locked keychain cannot take the daemon's loop from everybody
else (``[helpers] budget``; shared by repairs and probes).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable


class HelperBudget:
    """Seconds of helper time each user may use in a sliding window (thread-safe).

    ``on_exhausted(user, spent)`` is called once each time a user's spending reaches the
    limit (from the thread that ran the helper).
    """

    def __init__(
        self,
        seconds: float,
        *,
        window: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        on_exhausted: Callable[[str, float], None] | None = None,
    ) -> None:
        self.seconds = seconds
        self.window = window
        self._clock = clock
        self._on_exhausted = on_exhausted
        self._spent: dict[str, deque[tuple[float, float]]] = {}
        self._exhausted: set[str] = set()
        self._lock = threading.Lock()

    def _total(self, user: str, now: float) -> float:
        entries = self._spent.get(user)
        if entries is None:
            return 0.0
        while entries and entries[0][0] <= now - self.window:
            entries.popleft()
        if not entries:
            del self._spent[user]
            self._exhausted.discard(user)
            return 0.0
        return sum(spent for _, spent in entries)

    def remaining(self, user: str) -> float:
        with self._lock:
            return self.seconds - self._total(user, self._clock())

    def spend(self, user: str, seconds: float) -> None:
        with self._lock:
            now = self._clock()
            self._spent.setdefault(user, deque()).append((now, seconds))
            total = self._total(user, now)
            tell = total >= self.seconds and user not in self._exhausted
            if tell:
                self._exhausted.add(user)
        if tell and self._on_exhausted is not None:
            self._on_exhausted(user, total)


__all__ = ["HelperBudget"]
