"""The credential helpers the watched configs name, as the daemon runs them.

One :class:`~regauthd.dockerconfig.credhelper.HelperPolicy` (the fixed PATH, the timeout, each
config's owner as the identity) and one :class:`~regauthd.dockerconfig.helperbudget.HelperBudget`
(each user's helper seconds per minute), shared by the repairs on the loop thread and the
probes on their worker thread. The repairs' runner feeds the watchdog while a helper call waits
(``tick``: the loop thread only); the probes' never does. When one user's helpers use up their
share, one ``helper.budget`` alert is raised, on the loop thread.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import Any

from regauthd.alerts.catalogue import AlertKind
from regauthd.alerts.metrics import Metrics
from regauthd.dockerconfig.credhelper import HelperPolicy, HelperRunner
from regauthd.dockerconfig.helperbudget import HelperBudget
from regauthd.service.loop import Loop
from regauthd.settings import Settings

RaiseAlert = Callable[..., Any]


class DaemonHelpers:
    """How the daemon runs credential helpers (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        *,
        loop: Loop,
        alert: RaiseAlert,
        metrics: Metrics,
        tick: Callable[[], None],
    ) -> None:
        self._loop = loop
        self._alert = alert
        self._metrics = metrics
        self.budget = HelperBudget(settings.helpers.budget, on_exhausted=self._budget_spent)
        self.policy = HelperPolicy(
            path=os.pathsep.join(settings.helpers.path),
            timeout=settings.helpers.timeout,
            budget=self.budget,
            tick=tick,
        )

    def for_repair(self, config: str) -> HelperRunner:
        """The runner for a repair of ``config`` (loop thread: feeds the watchdog while waiting)."""
        return self.policy.for_config(config)

    def for_probe(self, config: str) -> HelperRunner:
        """The runner for the probes' reading of ``config`` (a worker thread: no watchdog)."""
        return dataclasses.replace(self.policy, tick=None).for_config(config)

    def reload(self, settings: Settings) -> None:
        self.budget.seconds = settings.helpers.budget
        self.policy = dataclasses.replace(
            self.policy,
            path=os.pathsep.join(settings.helpers.path),
            timeout=settings.helpers.timeout,
        )

    def _budget_spent(self, user: str, spent: float) -> None:
        """One user's helpers used their share (any thread): one alert, on the loop thread."""
        window = f"{self.budget.window:g}s"
        self._metrics.count("helper_budget_exhausted")

        def tell() -> None:
            self._alert(
                AlertKind.HELPER_BUDGET, user, user=user, spent=f"{spent:.1f}s", window=window
            )

        self._loop.post(tell)
