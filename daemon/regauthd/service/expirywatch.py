"""The daemon's expiry alerts: ``credential.expiring`` and ``credential.expired``, once each.

A daemon component and a repair listener (wired in :mod:`regauthd.service.app`). Every time the
daemon looked at a watched config (at start, after each write) it reads the expiry of each
stored credential (:func:`regauthd.dockerconfig.stored_expiry.stored_expiries`: inline ones from
the file, helper-held ones by asking the helper, as a client would), alerts on what is due, and
sets one loop timer per config for the next moment a credential there crosses its lead time or
its expiry. What was raised is remembered by keyed fingerprint
(:class:`regauthd.service.expirymemory.ExpiryMemory`), so a restart does not raise it again.

:meth:`ExpiryWatch.earliest_expiry_by_registry` is the callback for metrics ("seconds to
credential expiry" per registry).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

import structlog

from regauthd.alerts.alerter import RaiseAlert
from regauthd.alerts.catalogue import AlertKind
from regauthd.dockerconfig import jsontext
from regauthd.dockerconfig.expiry import (
    CredentialExpiry,
    ExpiryState,
    earliest_by_registry,
    format_duration,
    judge,
    relogin_command,
    what_carried_it,
)
from regauthd.dockerconfig.jsontext import ConfigFileError
from regauthd.dockerconfig.report import FixReport
from regauthd.dockerconfig.stored_expiry import stored_expiries
from regauthd.service.expirymemory import ExpiryMemory
from regauthd.service.loop import Loop, Timer
from regauthd.settings import Settings

log = structlog.get_logger("regauthd.expiry")

MAX_TIMER_S: Final = 6 * 3600.0
"""A far expiry is looked at again after this long anyway (a suspended host's monotonic clock
stops; the wall clock does not)."""
_LATE_S: Final = 0.05  # a timer fires this much after the instant, so the instant has passed


def _utc_now() -> datetime:
    return datetime.now(UTC)


class ExpiryWatch:
    """See the module docstring. Loop thread only, except :meth:`earliest_expiry_by_registry`."""

    name = "expiry"

    def __init__(
        self,
        settings: Settings,
        *,
        loop: Loop,
        alert: RaiseAlert,
        now: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._lead = timedelta(seconds=settings.expiry.lead_time)
        self._loop = loop
        self._alert = alert
        self._now = now
        self._memory = ExpiryMemory(settings.state_dir)
        self._items: dict[str, list[CredentialExpiry]] = {}
        self._timers: dict[str, Timer] = {}
        self.alerts_raised = 0

    # -- Component -----------------------------------------------------------------------------

    def start(self) -> None:
        self._memory.load()

    def reload(self, settings: Settings) -> None:
        self._lead = timedelta(seconds=settings.expiry.lead_time)
        for config in list(self._items):
            self._evaluate(config)

    def stop(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self._memory.save(self._now())

    def status(self) -> str | None:
        dated = sum(1 for items in self._items.values() for i in items if i.expiry.readable)
        return f"{dated} credential(s) with an expiry" if dated else None

    # -- inputs --------------------------------------------------------------------------------

    def on_repair(self, config: str, report: FixReport) -> None:
        """A repair listener: read the config's credentials again and judge them now."""
        content = report.after if report.after is not None else report.before
        if report.error is not None or content is None:
            return  # unreadable now: keep what was known (a half-written file is no news)
        try:
            data = jsontext.parse(content, report.path)
        except ConfigFileError:
            return
        items = stored_expiries(data)
        for item in items:
            if item.error is not None:  # redacted by the store; the helper's check says more
                log.info("expiry.not_read", path=config, key=item.key, reason=item.error)
        self._items[config] = [i for i in items if i.error is None]
        self._evaluate(config, exists=True)  # just read: no stat of it on the loop

    def earliest_expiry_by_registry(self) -> dict[str, datetime]:
        """The earliest readable expiry per registry over every watched config (any thread:
        the lists are replaced whole, never changed in place)."""
        out: dict[str, datetime] = {}
        for items in list(self._items.values()):
            for registry, when in earliest_by_registry(items).items():
                if registry not in out or when < out[registry]:
                    out[registry] = when
        return out

    # -- judging -------------------------------------------------------------------------------

    def _evaluate(self, config: str, *, exists: bool = False) -> None:
        timer = self._timers.pop(config, None)
        if timer is not None:
            timer.cancel()
        if not exists and not Path(config).exists():
            self._items.pop(config, None)
            return
        now = self._now()
        next_at: datetime | None = None
        for item in self._items.get(config, []):
            when = item.expiry.expires_at
            if when is None:
                continue
            state = judge(item.expiry, now, self._lead)
            if state in {ExpiryState.EXPIRED, ExpiryState.EXPIRING}:
                self._raise_once(config, item, state, when, now)
            upcoming = when - self._lead if state is ExpiryState.VALID else when
            if state is not ExpiryState.EXPIRED and (next_at is None or upcoming < next_at):
                next_at = upcoming
        self._memory.save(now)
        if next_at is not None:
            delay = min(MAX_TIMER_S, max(0.0, (next_at - now).total_seconds()) + _LATE_S)
            self._timers[config] = self._loop.call_later(delay, lambda: self._evaluate(config))

    def _raise_once(
        self,
        config: str,
        item: CredentialExpiry,
        state: ExpiryState,
        when: datetime,
        now: datetime,
    ) -> None:
        fingerprint = self._memory.fingerprint(item.registry, item.username, when)
        expired = state is ExpiryState.EXPIRED
        kind = AlertKind.CREDENTIAL_EXPIRED if expired else AlertKind.CREDENTIAL_EXPIRING
        # Once each; an expiring alert is moot once the credential has expired.
        if self._memory.raised(fingerprint, kind.value) or (
            not expired and self._memory.raised(fingerprint, AlertKind.CREDENTIAL_EXPIRED.value)
        ):
            return
        fields: dict[str, str] = {
            "path": config,
            "registry": item.registry,
            "username": item.username,
            "expires_at": when.isoformat().replace("+00:00", "Z"),
            "source": what_carried_it(item.expiry),
            "fix": f"Log in again: `{relogin_command(item.key)}`",
        }
        if not expired:
            fields["remaining"] = format_duration(when - now)
        self._alert(kind, f"{item.registry} in {config}", **fields)
        self._memory.remember(fingerprint, kind.value, when)
        self.alerts_raised += 1


__all__ = ["ExpiryWatch"]
