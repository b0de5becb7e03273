"""What is gathered about a logged auth failure before a verdict is given. Pure.

When a failure is logged, the journal watch (:mod:`regauthd.journal.watch`) collects the repairs
made to the watched configs (:class:`FixEvent`), what each config holds for the failing registry
after a re-check (:class:`ConfigSight`, as the Docker CLI looks the credential up: :func:`sight`)
and a probe of the registry, into one :class:`Evidence`, which
:func:`regauthd.journal.correlate.correlate` weighs.

Nothing here ever holds a secret: fix events keep keys and actions, config sightings keep the
key and the user name, probe results hold none by contract.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from regauthd.dockerconfig.auth import (
    convert_to_hostname,
    credential_from_entry,
    helper_name_for,
)
from regauthd.dockerconfig.keys import (
    HUB_CANONICAL,
    HUB_NAME,
    KeyKind,
    auths_key_for_registry,
    classify,
    registry_name,
)
from regauthd.dockerconfig.normalize import Change
from regauthd.dockerconfig.report import FixReport
from regauthd.probe.result import ProbeResult


class ProbeNote(enum.StrEnum):
    """Where the probe evidence came from, or why there is none."""

    FRESH = "fresh"
    """The probe ran after the failure was seen."""
    STALE = "stale"
    """No new result in time: this is the last result from before the failure."""
    TIMEOUT = "timeout"
    """The probe did not answer in time and there is no earlier result."""
    OFF = "off"
    """Probes are not enabled."""
    NOT_PROBED = "not_probed"
    """The failure does not name its registry: nothing to probe."""


def registry_of_key(key: str) -> str:
    """The registry an ``auths``/``credHelpers`` key is for, as failures name it (Hub: docker.io).

    >>> registry_of_key("https://index.docker.io/v1/"), registry_of_key("https://ghcr.io/v2/")
    ('docker.io', 'ghcr.io')
    """
    # Unlike a probe target, credentials under hub.docker.com are (misplaced) Hub credentials.
    return HUB_NAME if classify(key).kind is KeyKind.HUB_WEBSITE else registry_name(key)


@dataclass(frozen=True, slots=True)
class ConflictNote:
    """A conflict a repair resolved (no secrets: keys only)."""

    canonical: str
    winner: str
    loser: str


@dataclass(frozen=True, slots=True)
class FixEvent:
    """One repair (or refusal) of a watched config, and when it happened."""

    path: str
    at: datetime
    changes: tuple[Change, ...] = ()
    conflicts: tuple[ConflictNote, ...] = ()
    error: str | None = None
    """Why the file was refused (it is left as it is), when it was."""

    @classmethod
    def from_report(cls, report: FixReport, at: datetime) -> FixEvent:
        """Keep what a verdict needs from a :class:`FixReport`: keys and actions, no contents."""
        return cls(
            path=str(report.path),
            at=at,
            changes=tuple(report.changes) if report.written else (),
            conflicts=tuple(ConflictNote(c.canonical, c.winner, c.loser) for c in report.conflicts),
            error=report.error.reason if report.error is not None else None,
        )

    @property
    def noteworthy(self) -> bool:
        """Worth remembering: something was changed, or the file was refused."""
        return bool(self.changes or self.conflicts or self.error)

    def registries(self) -> frozenset[str]:
        """Every registry a change or conflict of this repair touched."""
        found = {registry_of_key(c.to_key) for c in self.changes}
        found |= {registry_of_key(c.from_key) for c in self.changes}
        found |= {registry_of_key(c.canonical) for c in self.conflicts}
        return frozenset(found)


class Where(enum.StrEnum):
    """Where a config keeps the credential Docker would use for a registry."""

    INLINE = "inline"
    """In config.json itself (``auth``, or ``username``/``password``, or an identity token)."""
    HELPER = "helper"
    """In a credential helper (``credHelpers``/``credsStore``); not asked whether it has one."""
    NONE = "none"


@dataclass(frozen=True, slots=True)
class ConfigSight:
    """What one watched config holds for the failing registry, as the Docker CLI looks it up."""

    path: str
    where: Where
    key: str | None = None
    """The key Docker finds it under."""
    username: str | None = None
    helper: str | None = None


def sight(path: str, config: Mapping[str, Any], registry: str) -> ConfigSight:
    """Where ``config`` keeps the credential Docker uses for ``registry`` (Docker CLI's rules:
    ``credHelpers[key]``, then ``credsStore``, then ``auths[key]``, then for other registries
    than Docker Hub the legacy host-name match). Reads no helper: a helper counts as "maybe"."""
    key = auths_key_for_registry(registry)
    helper = helper_name_for(config, key)
    if helper is not None:
        return ConfigSight(path, Where.HELPER, key, helper=helper)
    auths = config.get("auths")
    if not isinstance(auths, Mapping):
        return ConfigSight(path, Where.NONE)
    candidates = [key]
    if key != HUB_CANONICAL:
        candidates += [k for k in auths if k != key and convert_to_hostname(k) == key]
    for candidate in candidates:
        entry = auths.get(candidate)
        if isinstance(entry, Mapping):
            credential = credential_from_entry(entry)
            if credential is not None:
                user = None if credential.is_identity_token else credential.username
                return ConfigSight(path, Where.INLINE, candidate, username=user)
    return ConfigSight(path, Where.NONE)


@dataclass(frozen=True, slots=True)
class Evidence:
    """Everything gathered about one failure (or a burst of them for one registry and kind)."""

    fixes: tuple[FixEvent, ...] = ()
    """Recent repairs of watched configs (any registry; :func:`correlate` picks the relevant)."""
    configs: tuple[ConfigSight, ...] | None = None
    """What each watched config holds for the registry after the re-check (None: unknown)."""
    probe: ProbeResult | None = None
    probe_note: ProbeNote = ProbeNote.OFF
    failures: int = 1
    """How many failures this verdict stands for."""
    first_time: datetime | None = None
    """When the first of them was logged (the failure given is the latest)."""


__all__ = [
    "ConfigSight",
    "ConflictNote",
    "Evidence",
    "FixEvent",
    "ProbeNote",
    "Where",
    "registry_of_key",
    "sight",
]
