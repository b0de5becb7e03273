"""What the daemon hosts beside its watcher, and the callbacks it hands out (types only).

:class:`Component` is the protocol every hosted part follows (the probe scheduler, the journal
watch, the expiry watch, the summary, the status file, the metrics listener);
:data:`RepairListener` is told what each repair did; :data:`SettingsLoader` reads the settings
again on SIGHUP. :mod:`regauthd.service.app` builds and wires them; :mod:`regauthd.service.daemon`
runs them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from regauthd.dockerconfig.report import FixReport
from regauthd.settings import Settings


class Component(Protocol):
    """Something the daemon runs beside the watcher (the probe scheduler, the journal watch).

    Built and wired before the daemon runs (:func:`regauthd.service.app.build`). ``start`` runs
    on the loop thread before ``READY=1``, in the order the components were hosted; a component
    that needs a thread starts its own and hands results to the loop with the ``post`` it was
    given. ``reload`` gets new settings after a successful SIGHUP (the watch plan is already
    new). ``stop`` runs in reverse order and must return promptly (the whole shutdown has well
    under 1 s). ``name`` names it in logs.
    """

    name: str

    def start(self) -> None: ...

    def reload(self, settings: Settings) -> None: ...

    def stop(self) -> None: ...

    def status(self) -> str | None:
        """A few words for the STATUS= line (None: nothing to say)."""
        ...


SettingsLoader = Callable[[], Settings]

RepairListener = Callable[[str, FixReport], None]
"""Told on the loop thread what the fixer did with a watched config (its path as configured)
each time the daemon looked at it: after a write, at start-up, on a re-check."""
