"""The catalogue of alert kinds: the single list of things regauthd tells people about (pure).

Each kind has a stable journald ``MESSAGE_ID`` (the same IDs are in ``systemd/regauthd.catalog``,
so ``journalctl -x`` explains the alert and its fix), a syslog priority, a message template and
the fix. :class:`AlertKind` names the kinds (a typo is a type error, not a ``KeyError`` at the
moment an alert should go out); :func:`alert_event` turns one alert into the flat event dict
every sink gets.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

# syslog priorities, as journald's PRIORITY field wants them.
PRIORITY_ERR: Final = 3
PRIORITY_WARNING: Final = 4
PRIORITY_NOTICE: Final = 5
PRIORITY_INFO: Final = 6
PRIORITY_DEBUG: Final = 7

_SEVERITY = {
    PRIORITY_ERR: "error",
    PRIORITY_WARNING: "warning",
    PRIORITY_NOTICE: "notice",
    PRIORITY_INFO: "info",
}


class AlertKind(enum.StrEnum):
    """Every kind of alert regauthd raises. The values are the namespaced event names people
    and log-based alerting see (``config.normalized``): never change one."""

    CONFIG_NORMALIZED = "config.normalized"
    CONFIG_CONFLICT = "config.conflict"
    CONFIG_UNFIXABLE = "config.unfixable"
    CONFIG_FLAPPING = "config.flapping"
    CONFIG_SAVE_FAILED = "config.save_failed"
    SETTINGS_RELOAD_FAILED = "settings.reload_failed"
    PROBE_FAILING = "probe.failing"
    PROBE_RECOVERED = "probe.recovered"
    PROBE_CONFLICT = "probe.conflict"
    PROBE_RATE_LIMITED = "probe.rate_limited"
    JOURNAL_AUTH_FAILURE = "journal.auth_failure"
    JOURNAL_UNAVAILABLE = "journal.unavailable"
    WATCH_OVERFLOW = "watch.overflow"
    WATCH_LIMIT = "watch.limit"
    CREDENTIAL_EXPIRING = "credential.expiring"
    CREDENTIAL_EXPIRED = "credential.expired"
    HELPER_BUDGET = "helper.budget"


@dataclass(frozen=True, slots=True)
class CatalogueEntry:
    """One kind of alert, as people and log-based alerting see it."""

    name: AlertKind
    """The kind; its value is the namespaced event name (``config.normalized``)."""
    message_id: uuid.UUID
    """Stable journald MESSAGE_ID: never change it, alerting rules match on it."""
    priority: int
    """syslog priority: 3 error, 4 warning, 5 notice."""
    title: str
    """One line saying what happened (the catalog's Subject)."""
    template: str
    """The human message; ``{field}`` placeholders are filled from the alert's fields."""
    fix: str
    """What a person does about it; ``{field}`` placeholders as in :attr:`template`."""
    fields: tuple[str, ...]
    """Fields every alert of this kind carries (the template uses only these)."""

    @property
    def severity(self) -> str:
        return _SEVERITY[self.priority]


def _entry(
    name: AlertKind,
    message_id: str,
    priority: int,
    title: str,
    template: str,
    fix: str,
    fields: tuple[str, ...],
) -> CatalogueEntry:
    return CatalogueEntry(name, uuid.UUID(message_id), priority, title, template, fix, fields)


CATALOGUE: Final[Mapping[AlertKind, CatalogueEntry]] = {
    k.name: k
    for k in (
        _entry(
            AlertKind.CONFIG_NORMALIZED,
            "8fb9ffe68f95460caebf1095f6a057ab",
            PRIORITY_NOTICE,
            "A Docker config was repaired",
            "{path}: repaired so every client finds the credentials ({changes})",
            "Nothing to do. To stop the writer from using the wrong key, log in the way current "
            "Docker does: `docker login` (no argument) for Docker Hub, `docker login HOST` with "
            "the bare host name for other registries.",
            ("path", "changes"),
        ),
        _entry(
            AlertKind.CONFIG_CONFLICT,
            "bd77fba0b802472c984a312b2da10fdf",
            PRIORITY_WARNING,
            "Two spellings of one registry held different credentials",
            "{path}: {canonical} had two different credentials; kept the one from {winner}, "
            "the one from {loser} is in the backup {backup}",
            "Check that pushes work (`regauthd probe`). If the kept credential is the stale one, "
            "log in again; the other one can be restored from the backup.",
            ("path", "canonical", "winner", "loser", "backup"),
        ),
        _entry(
            AlertKind.CONFIG_UNFIXABLE,
            "30ce21089d064f31a9fb02dbbbccde57",
            PRIORITY_ERR,
            "A Docker config cannot be repaired",
            "{path}: left unchanged: {reason}",
            "Run `regauthd check --docker-config {path}` for the details, fix the file by hand "
            "(or log in again to have it rewritten), then regauthd repairs it by itself.",
            ("path", "reason"),
        ),
        _entry(
            AlertKind.CONFIG_FLAPPING,
            "91a97ed8f59d4c18b9e385bf0cadcd57",
            PRIORITY_WARNING,
            "Another program keeps undoing the repair of a Docker config",
            "{path}: another program put back the content regauthd replaced {undos} times "
            "within {window}; not rewriting it for {backoff}",
            "Find the program that rewrites the file (Docker Desktop restores its own copy; "
            "a configuration-management run may too) and have it write the canonical key, "
            "or stop it. regauthd tries again after the pause.",
            ("path", "undos", "window", "backoff"),
        ),
        _entry(
            AlertKind.CONFIG_SAVE_FAILED,
            "d969edb2182a472f8a04f03787092708",
            PRIORITY_ERR,
            "A repaired Docker config could not be saved",
            "{path}: not repaired, the file is unchanged: {reason}; retrying in {retry} "
            "(the pause doubles up to {last_retry})",
            "Free space on the filesystem of the file (or of the state directory, for a failed "
            "backup), make it writable, or give the daemon permission. regauthd retries by "
            "itself and repairs the file once it can.",
            ("path", "reason", "retry", "last_retry"),
        ),
        _entry(
            AlertKind.WATCH_OVERFLOW,
            "c7b3703054064c04af73bbd6ba842ecb",
            PRIORITY_WARNING,
            "File events were lost; every watched Docker config was checked again",
            "the {backend} watcher lost file events (its queue overflowed); every watched "
            "config ({configs}) was checked again",
            "Nothing to do when it is rare: no change goes unrepaired. If it repeats, raise "
            "the kernel's queue (`sysctl -w fs.inotify.max_queued_events=65536`, and in "
            "/etc/sysctl.d/ to keep it) or find the program flooding the watched directories.",
            ("backend", "configs"),
        ),
        _entry(
            AlertKind.WATCH_LIMIT,
            "83ca1b49fd904891b7a58acbc5c3787c",
            PRIORITY_ERR,
            "The kernel's watch limit is reached: some Docker configs are not watched",
            "{count} director(ies) not watched, the kernel's limit {sysctl} (now {limit}) is "
            "reached: {directories}; their configs ({configs}) are repaired only when regauthd "
            "retries (next in {retry})",
            "Raise the limit named in the alert (`sysctl -w fs.inotify.max_user_watches=524288`, "
            "and the same line in /etc/sysctl.d/ to keep it). regauthd retries by itself and "
            "watches those directories as soon as the kernel lets it.",
            ("count", "directories", "configs", "sysctl", "limit", "retry"),
        ),
        _entry(
            AlertKind.HELPER_BUDGET,
            "a275b9d3551b4a6d96df3de63d4704a5",
            PRIORITY_WARNING,
            "One user's credential helpers are too slow: their helper work waits",
            "credential helpers of user {user} took {spent} of the last {window}; their "
            "helpers are not run again until that share frees up (other users are not delayed)",
            "Make that user's credential helper answer (unlock the keychain, start gpg-agent, "
            "or fix the credsStore/credHelpers name in their Docker config). regauthd tries "
            "again on the next change to their config.",
            ("user", "spent", "window"),
        ),
        _entry(
            AlertKind.SETTINGS_RELOAD_FAILED,
            "e1d288d5a93b4ddf871438868fcf706e",
            PRIORITY_ERR,
            "New regauthd settings were rejected; the previous ones stay in force",
            "settings not reloaded, the previous ones stay in force: {reason}",
            "Correct the settings file (config.example.toml lists every option), then reload "
            "again with `systemctl reload regauthd` (SIGHUP).",
            ("reason",),
        ),
        _entry(
            AlertKind.PROBE_FAILING,
            "15adec7240c14fb487313812a9067002",
            PRIORITY_ERR,
            "A registry probe with the stored credential fails",
            "{registry}: probe failed ({status}): {reason}",
            "Log in again (`docker login REGISTRY`) when the credential is refused or may not "
            "push; when the registry cannot be reached or its TLS fails, check the network, the "
            "name and `[probe] ca_file`. `regauthd probe REGISTRY` shows the details.",
            ("registry", "status", "reason"),
        ),
        _entry(
            AlertKind.PROBE_RECOVERED,
            "24362ed9636d4f5888df64de114582ff",
            PRIORITY_NOTICE,
            "A registry accepts the stored credential again",
            "{registry}: the stored credential works again",
            "Nothing to do.",
            ("registry",),
        ),
        _entry(
            AlertKind.PROBE_CONFLICT,
            "4903823f81eb478696864e13246628f0",
            PRIORITY_WARNING,
            "A probe checked both credentials of a repaired conflict",
            "{path}: {canonical} was stored twice with different credentials: {verdict} "
            "(original file in {backup})",
            "When the kept credential does not work, restore the other entry from the backup or "
            "log in again (`docker login REGISTRY`); otherwise nothing to do.",
            ("path", "canonical", "verdict", "backup"),
        ),
        _entry(
            AlertKind.PROBE_RATE_LIMITED,
            "9058a30c181446778e40914dcf40878e",
            PRIORITY_WARNING,
            "A registry is rate-limiting this host",
            "{registry}: rate limit reached ({remaining} of {limit} pulls left)",
            "Log in to the registry (authenticated pulls have a higher limit), use a pull-through "
            "mirror, or spread the pulls out.",
            ("registry", "remaining", "limit"),
        ),
        _entry(
            AlertKind.CREDENTIAL_EXPIRING,
            "a446529a90b54d0f9a5afdb5eaaadad4",
            PRIORITY_WARNING,
            "A stored registry credential expires soon",
            "{path}: the credential for {registry} (user {username}) expires in {remaining}, at "
            "{expires_at} (read from {source})",
            "Log in to {registry} again before it expires (the alert's fix names the command). "
            "For a token that a job renews (ECR, ACR), check that the job still runs.",
            ("path", "registry", "username", "expires_at", "remaining", "source"),
        ),
        _entry(
            AlertKind.CREDENTIAL_EXPIRED,
            "10d486dd635849d59e659315d2628860",
            PRIORITY_ERR,
            "A stored registry credential has expired",
            "{path}: the credential for {registry} (user {username}) expired at {expires_at} "
            "(read from {source}); pulls and pushes with it fail",
            "Log in to {registry} again (the alert's fix names the command). For a token that a "
            "job renews (ECR, ACR), fix the job that should have renewed it.",
            ("path", "registry", "username", "expires_at", "source"),
        ),
        _entry(
            AlertKind.JOURNAL_AUTH_FAILURE,
            "25dbf2da990f44b7a3467891ca4105de",
            PRIORITY_ERR,
            "A container engine logged a registry authentication failure",
            "{unit}: {reason}",
            "Check the credential for that registry with `regauthd probe REGISTRY` and log in "
            "again for the user the engine runs as (root's ~/.docker for dockerd).",
            ("unit", "reason"),
        ),
        _entry(
            AlertKind.JOURNAL_UNAVAILABLE,
            "57e637542dc446859c2130d4283a7b82",
            PRIORITY_ERR,
            "regauthd cannot follow the journal",
            "cannot follow the journal for registry auth failures: {reason}",
            "Run regauthd as root or in the systemd-journal group; on a host without journald "
            'set `[journal] log_files` (or `backend = "files"`); for a journal mounted from '
            "elsewhere set `[journal] directory`. regauthd keeps retrying meanwhile.",
            ("reason",),
        ),
    )
}


class _Missing(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "?"


def format_message(kind: CatalogueEntry, fields: Mapping[str, Any]) -> str:
    """The human message of an alert; a missing field shows as ``?`` rather than failing."""
    return kind.template.format_map(_Missing(fields))


def format_fix(kind: CatalogueEntry, fields: Mapping[str, Any]) -> str:
    """What a person does about one alert: the raiser's own ``fix`` field when it gave one
    (advice that depends on what happened), else the catalogue's, filled from the fields."""
    own = fields.get("fix")
    return own if isinstance(own, str) and own else kind.fix.format_map(_Missing(fields))


def alert_event(
    kind: CatalogueEntry, subject: str, fields: Mapping[str, Any], *, suppressed: int = 0
) -> dict[str, Any]:
    """The flat event dict logged for an alert (or, with ``suppressed``, its window's summary)."""
    message = format_message(kind, fields)
    if suppressed:
        message = f"{kind.name.value} for {subject}: suppressed {suppressed} more (last: {message})"
    event: dict[str, Any] = {
        "event": kind.name.value,
        "message": message,
        "message_id": kind.message_id.hex,
        "priority": kind.priority,
        "severity": kind.severity,
        "subject": subject,
        **fields,
        "fix": format_fix(kind, fields),
    }
    if suppressed:
        event["suppressed"] = suppressed
    return event
