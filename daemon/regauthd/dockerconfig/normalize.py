"""Config in, plan out: which keys to rename or copy, which credentials conflict.

Pure: no disk, no helpers, no clock. :func:`plan` is idempotent (planning its own output changes
nothing) and never drops a credential without naming it as the loser of a :class:`Conflict`.
What is wrong with a config beyond its keys: :mod:`regauthd.dockerconfig.validate`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from regauthd.dockerconfig.auth import helper_name_for
from regauthd.dockerconfig.findings import Finding
from regauthd.dockerconfig.keys import HUB_CANONICAL, HUB_PODMAN_HELPER_KEY, KeyKind, classify
from regauthd.dockerconfig.validate import conflict_findings, entry_identity, validate

Action = Literal["rename", "copy", "drop_duplicate", "drop_empty", "replace", "helper_alias"]

_GROUPED = {KeyKind.HUB_CANONICAL, KeyKind.HUB_ALIAS, KeyKind.REGISTRY, KeyKind.REGISTRY_ALIAS}


@dataclass(frozen=True, slots=True)
class Change:
    """One edit: ``from_key`` moved/copied/dropped in favour of ``to_key`` in ``section``."""

    action: Action
    section: Literal["auths", "credHelpers"]
    from_key: str
    to_key: str
    note: str | None = None
    """Why, when another client's rules made the change (containers' auth.json)."""

    def describe(self) -> str:
        verbs = {
            "rename": "renamed to",
            "copy": "copied to",
            "drop_duplicate": "removed (same credential as)",
            "drop_empty": "removed (empty, superseded by)",
            "replace": "replaced (newest write wins)",
            "helper_alias": "helper also set for",
        }
        return (
            f"{self.section}[{self.from_key!r}] {verbs[self.action]} {self.to_key!r}: {self.reason}"
        )

    @property
    def reason(self) -> str:
        """Why the edit was needed, in words a person can check against the clients' code."""
        if self.note is not None:
            return self.note
        if self.action == "helper_alias":
            return (
                f"Docker asks the Docker Hub helper under {HUB_CANONICAL}, podman under "
                f"{HUB_PODMAN_HELPER_KEY}; the same helper is now set under both"
            )
        if self.action == "drop_duplicate":
            return "it held the same credential, so it was a second copy"
        if self.action == "drop_empty":
            return "it was empty and another spelling of the registry holds the credential"
        if self.action == "replace":
            return "it held the newest credential for the registry"
        kind = classify(self.from_key).kind
        if self.to_key == HUB_CANONICAL:
            hub = f"Docker looks Hub credentials up only under {HUB_CANONICAL}"
            if kind == KeyKind.HUB_WEBSITE:
                return f"hub.docker.com is Docker Hub's web site and no client reads it; {hub}"
            if kind == KeyKind.HUB_REGISTRY:
                return f"{hub}; the original stays for references that name {self.from_key}"
            return hub
        return (
            f"`docker login` and credential helpers use the bare host name {self.to_key}; "
            "helpers find nothing under other spellings"
        )


@dataclass(frozen=True, slots=True)
class Conflict:
    """Two spellings of one registry held different credentials; ``loser`` was removed."""

    canonical: str
    winner: str
    loser: str
    reason: str


@dataclass(frozen=True, slots=True)
class HelperMove:
    """A secret a credential helper keeps under ``source_url`` must also exist under ``target_url``.

    Helpers match URLs byte for byte, so renaming the ``auths`` placeholder alone fixes nothing.
    """

    source_helper: str
    source_url: str
    target_helper: str
    target_url: str
    keep_source: bool
    """True for copies (``registry-1.docker.io`` stays usable); False for renames."""
    source_preferred: bool = False
    """The caller said the source was written most recently: it wins a conflict in the helper."""
    sync: bool = False
    """Keep two URLs in step (Hub's Docker and podman keys); nothing under the source is fine."""


@dataclass(frozen=True, slots=True)
class NormalizationPlan:
    """The normalized config and everything done or found on the way."""

    config: dict[str, Any]
    changes: tuple[Change, ...]
    conflicts: tuple[Conflict, ...]
    findings: tuple[Finding, ...]
    helper_moves: tuple[HelperMove, ...]

    @property
    def changed(self) -> bool:
        return bool(self.changes or self.conflicts)


def _copy_json(value: Any) -> Any:
    """Deep copy of parsed JSON (dicts, lists, scalars): several times faster than deepcopy."""
    if isinstance(value, dict):
        return {k: _copy_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy_json(v) for v in value]
    return value


def _has_secret(entry: Mapping[str, Any]) -> bool:
    return any(entry.get(f) not in (None, "") for f in ("auth", "identitytoken", "password"))


def plan(
    config: Mapping[str, Any], *, path: str = "config.json", prefer: Collection[str] = ()
) -> NormalizationPlan:
    """Normalize a parsed Docker config.

    ``prefer`` names ``auths`` keys known to hold the newest credential (the daemon knows which
    key a write added); they win conflicts. Otherwise the canonical key wins.
    """
    new: dict[str, Any] = _copy_json(config)
    changes: list[Change] = []
    conflicts: list[Conflict] = []
    moves: list[HelperMove] = []

    helpers = new.get("credHelpers")
    if isinstance(helpers, dict):
        changes.extend(_normalize_cred_helpers(helpers))
        moves.extend(_sync_hub_helper_secrets(helpers))

    auths = new.get("auths")
    if isinstance(auths, dict):
        new_auths = _normalize_auths(auths, config, new, prefer, changes, conflicts, moves)
        new["auths"] = new_auths

    findings = validate(new, path=path) + conflict_findings(config, path)
    return NormalizationPlan(new, tuple(changes), tuple(conflicts), findings, tuple(moves))


def _normalize_cred_helpers(helpers: dict[str, Any]) -> list[Change]:
    hub = {
        k: v
        for k, v in helpers.items()
        if isinstance(v, str)
        and v
        and classify(k).kind in {KeyKind.HUB_CANONICAL, KeyKind.HUB_ALIAS}
    }
    names = set(hub.values())
    if len(names) != 1:
        return []  # none, or a disagreement reported by _conflict_findings
    (name,) = names
    source = next(iter(hub))
    changes = []
    for key in (HUB_CANONICAL, HUB_PODMAN_HELPER_KEY):
        if helpers.get(key) != name:
            helpers[key] = name
            changes.append(Change("helper_alias", "credHelpers", source, key))
    return changes


def _sync_hub_helper_secrets(helpers: Mapping[str, Any]) -> list[HelperMove]:
    """Docker asks the Hub helper for the canonical URL, podman for ``docker.io``: keep both."""
    name = helpers.get(HUB_CANONICAL)
    if not isinstance(name, str) or not name or helpers.get(HUB_PODMAN_HELPER_KEY) != name:
        return []
    return [
        HelperMove(name, HUB_PODMAN_HELPER_KEY, name, HUB_CANONICAL, True, sync=True),
        HelperMove(name, HUB_CANONICAL, name, HUB_PODMAN_HELPER_KEY, True, sync=True),
    ]


def _normalize_auths(
    auths: dict[str, Any],
    old_config: Mapping[str, Any],
    new_config: Mapping[str, Any],
    prefer: Collection[str],
    changes: list[Change],
    conflicts: list[Conflict],
    moves: list[HelperMove],
) -> dict[str, Any]:
    groups: dict[str, list[str]] = {}
    broken: set[str] = set()
    for key, entry in auths.items():
        info = classify(key)
        if info.kind in _GROUPED and isinstance(entry, dict):
            groups.setdefault(info.canonical, []).append(key)
        elif info.kind in _GROUPED:
            broken.add(info.canonical)
    # A spelling whose entry is not an object (Docker refuses the whole file; validate says
    # so): merging around it would replace a credential with it, or it with a credential.
    for canonical in broken:
        groups.pop(canonical, None)

    # Where each surviving key goes: canonical -> (position key, entry).
    placed: dict[str, dict[str, Any]] = {}
    removed: set[str] = set()
    for canonical, members in groups.items():
        if members == [canonical]:
            continue
        entry = _merge_group(
            canonical, members, auths, old_config, new_config, prefer, changes, conflicts, moves
        )
        placed[members[0]] = {canonical: entry}
        removed.update(members)

    out: dict[str, Any] = {}
    for key, entry in auths.items():
        if key in placed:
            out.update(placed[key])
        elif key not in removed:
            out[key] = entry

    _copy_hub_mirror(out, old_config, new_config, prefer, changes, moves)
    return out


def _merge_group(
    canonical: str,
    members: list[str],
    auths: Mapping[str, Any],
    old_config: Mapping[str, Any],
    new_config: Mapping[str, Any],
    prefer: Collection[str],
    changes: list[Change],
    conflicts: list[Conflict],
    moves: list[HelperMove],
) -> dict[str, Any]:
    nonempty = [m for m in members if entry_identity(auths[m])]
    preferred = [m for m in nonempty if m in prefer]
    if preferred:
        winner = preferred[-1]
    elif canonical in auths and (canonical in nonempty or not nonempty):
        winner = canonical
    else:
        winner = nonempty[0] if nonempty else members[0]
    entry = dict(auths[winner])
    won = entry_identity(entry)
    target_helper = helper_name_for(new_config, canonical)
    for m in members:
        if m == winner:
            continue
        other = auths[m]
        ident = entry_identity(other)
        if not ident:
            changes.append(Change("drop_empty", "auths", m, canonical))
        elif ident == won:
            for k, v in other.items():
                entry.setdefault(k, v)  # same credential: keep fields only the duplicate had
            changes.append(Change("drop_duplicate", "auths", m, canonical))
        else:
            reason = "newest write wins" if winner in prefer else "the canonical entry is kept"
            if winner not in prefer and winner != canonical:
                reason = "no canonical entry; the first spelling in the file is kept"
            conflicts.append(Conflict(canonical, winner, m, reason))
    if winner != canonical:
        action: Action = "replace" if canonical in auths else "rename"
        changes.append(Change(action, "auths", winner, canonical))
    for m in members:
        source_helper = helper_name_for(old_config, m)
        if m == canonical or source_helper is None or target_helper is None:
            continue
        if not _has_secret(auths[m]):
            moves.append(HelperMove(source_helper, m, target_helper, canonical, False, m in prefer))
    return entry


def _copy_hub_mirror(
    out: dict[str, Any],
    old_config: Mapping[str, Any],
    new_config: Mapping[str, Any],
    prefer: Collection[str],
    changes: list[Change],
    moves: list[HelperMove],
) -> None:
    """``registry-1.docker.io`` / ``hub.docker.com`` -> canonical, when Hub has no credential."""
    target_helper = helper_name_for(new_config, HUB_CANONICAL)
    current = out.get(HUB_CANONICAL)
    if current is not None and not isinstance(current, dict):
        return  # not an object: reported by validate, never overwritten
    if isinstance(current, dict) and (entry_identity(current) or target_helper is not None):
        return
    candidates = [
        k
        for k, v in out.items()
        if isinstance(v, dict) and classify(k).kind in {KeyKind.HUB_REGISTRY, KeyKind.HUB_WEBSITE}
    ]
    # registry-1 (a real API host) before the web site; the newest write first within each.
    candidates.sort(key=lambda k: (classify(k).kind != KeyKind.HUB_REGISTRY, k not in prefer))
    for key in candidates:
        entry = out[key]
        source_helper = helper_name_for(old_config, key)
        helper_backed = not _has_secret(entry) and source_helper is not None
        if not (entry_identity(entry) or helper_backed):
            continue
        items = list(out.items())
        out.clear()
        for k, v in items:
            if k == HUB_CANONICAL:
                continue
            if k == key:
                out[HUB_CANONICAL] = _copy_json(entry)
            out[k] = v
        changes.append(Change("copy", "auths", key, HUB_CANONICAL))
        if helper_backed and source_helper is not None and target_helper is not None:
            moves.append(
                HelperMove(source_helper, key, target_helper, HUB_CANONICAL, True, key in prefer)
            )
        return
