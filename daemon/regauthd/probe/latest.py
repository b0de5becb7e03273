"""The newest probe result of each registry in each watched config (pure bookkeeping).

The probe scheduler's book (:class:`~regauthd.probe.book.ProbeBook`) keeps one for
:meth:`~regauthd.probe.scheduler.ProbeScheduler.latest`; the journal watch keeps its own, fed by
the results the scheduler pushes to it.
"""

from __future__ import annotations

from regauthd.dockerconfig.keys import registry_name
from regauthd.probe.result import ProbeResult
from regauthd.probe.schedule import ProbeKey


class LatestResults:
    """The last result recorded for each :class:`~regauthd.probe.schedule.ProbeKey`.

    Every probe yields a new :class:`~regauthd.probe.result.ProbeResult` object, so identity says
    "probed again" even when a result equals the previous one.
    """

    def __init__(self) -> None:
        self._by_key: dict[ProbeKey, ProbeResult] = {}

    def record(self, key: ProbeKey, result: ProbeResult) -> None:
        self._by_key[key] = result

    def get(self, registry: str, config: str | None = None) -> ProbeResult | None:
        """The last result for ``registry`` (any spelling) in ``config`` (a normalized path), or
        in the first config holding it (in path order)."""
        name = registry_name(registry)
        for key in sorted(self._by_key):
            if key.registry == name and (config is None or key.config == config):
                return self._by_key[key]
        return None


__all__ = ["LatestResults"]
