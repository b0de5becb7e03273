"""Handing what the probe thread found to the daemon's loop thread (:class:`Delivery`).

Alerts reach the alerter, and every completed result each subscriber (the journal watch waits
for them), only through ``post``: on the daemon's loop thread, never on the probe thread.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import structlog

from regauthd.alerts.alerter import RaiseAlert
from regauthd.probe.result import ProbeResult
from regauthd.probe.schedule import AlertDecision, ProbeKey

log = structlog.get_logger("regauthd.probewatch")

Post = Callable[[Callable[[], None]], None]
"""Run a callback on the daemon's loop thread (safe from any thread)."""

ProbeListener = Callable[[ProbeKey, ProbeResult], None]
"""Gets every completed result of a registry in a config, on the loop thread."""


def deliver(alert: RaiseAlert, decisions: Iterable[AlertDecision]) -> None:
    """Raise ``decisions`` (loop thread)."""
    for decision in decisions:
        alert(decision.kind, decision.subject, **decision.kwargs())


class Delivery:
    """Posts alerts and results to the loop thread; there, results go to every subscriber."""

    def __init__(self, post: Post, alert: RaiseAlert) -> None:
        self._post = post
        self._alert = alert
        self._listeners: list[ProbeListener] = []

    def subscribe(self, listener: ProbeListener) -> None:
        """Have ``listener`` get every completed result (before the probe thread starts)."""
        self._listeners.append(listener)

    def result(
        self, alerts: Sequence[AlertDecision], keys: Sequence[ProbeKey], result: ProbeResult
    ) -> None:
        """Raise ``alerts``, then hand ``result`` (the latest for ``keys``) to the subscribers.
        Posted even without alerts: the daemon refreshes its STATUS= line after each callback."""
        self._post(lambda: self._deliver(alerts, keys, result))

    def alert(self, decision: AlertDecision) -> None:
        """Raise one alert (from any thread)."""
        self._post(lambda: deliver(self._alert, [decision]))

    def _deliver(
        self, alerts: Sequence[AlertDecision], keys: Sequence[ProbeKey], result: ProbeResult
    ) -> None:
        """On the loop thread: raise the alerts, then hand the result to every subscriber."""
        deliver(self._alert, alerts)
        for key in keys:
            for listener in self._listeners:
                try:
                    listener(key, result)
                except Exception:
                    # A subscriber's bug must not cost the others their result, nor the loop.
                    log.exception("probe.listener_failed", registry=key.registry)


__all__ = ["Delivery", "Post", "ProbeListener", "deliver"]
