"""Which credential a probe uses: the one Docker would, read from the config and its stores.

:func:`target_for` and :func:`targets_from_config` for one config (the ``probe`` command);
:func:`config_targets` and :func:`watched_targets` for the daemon's watched configs and
:func:`conflict_targets` for both sides of a conflict the fixer resolved (read from its backup).
All run credential helpers: blocking, so from async code call them through
``asyncio.to_thread``.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import structlog

from regauthd.dockerconfig import file as dockerconfig
from regauthd.dockerconfig import jsontext
from regauthd.dockerconfig.credhelper import HelperRunner
from regauthd.dockerconfig.jsontext import ConfigFileError, os_cause
from regauthd.dockerconfig.keys import registry_name
from regauthd.dockerconfig.stores import CredentialError, resolve, store_for
from regauthd.probe.result import ProbeTarget
from regauthd.probe.rules import registries_in_config, unread_hub_keys
from regauthd.probe.schedule import ProbeKey
from regauthd.redactor import REDACTOR, remember_config_secrets

if TYPE_CHECKING:
    from regauthd.dockerconfig.report import ReportedConflict
    from regauthd.settings import ProbeSettings

log = structlog.get_logger("regauthd.probe")


def target_for(
    config: dict[str, Any],
    registry: str,
    *,
    repository: str | None = None,
    insecure: bool = False,
    endpoint: str | None = None,
    env: Mapping[str, str] | None = None,
    runner: HelperRunner | None = None,
) -> ProbeTarget:
    """The probe target for ``registry`` with the credential Docker would use from ``config``.

    Runs a credential helper when the config names one (blocking: from async code use
    ``asyncio.to_thread``). A failing helper gives a target carrying ``credential_error``.
    """
    name = registry_name(registry)
    base = ProbeTarget(registry=name, repository=repository, insecure=insecure, endpoint=endpoint)
    try:
        found = resolve(config, name, env=env, runner=runner)
    except (CredentialError, OSError) as exc:
        return dataclasses.replace(base, credential_error=_helper_error(exc))
    if found is None:
        return dataclasses.replace(base, unread_keys=tuple(unread_hub_keys(config, name)))
    key, credential = found
    return dataclasses.replace(
        base, credential=credential, identity_token=credential.is_identity_token, credential_key=key
    )


def targets_from_config(
    config: dict[str, Any],
    *,
    registries: Sequence[str] | None = None,
    repositories: Mapping[str, str] | None = None,
    default_repository: str | None = None,
    insecure: Iterable[str] = (),
    endpoints: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
    runner: HelperRunner | None = None,
) -> list[ProbeTarget]:
    """Targets for ``registries`` (default: every registry with credentials in ``config``).

    ``repositories`` maps a registry name to the repository to check push on;
    ``default_repository`` applies to the others. Blocking (credential helpers).
    """
    names = [registry_name(r) for r in registries] if registries else registries_in_config(config)
    insecure_names = {registry_name(r) for r in insecure}
    repos = {registry_name(k): v for k, v in (repositories or {}).items()}
    ends = {registry_name(k): v for k, v in (endpoints or {}).items()}
    seen: list[str] = []
    for name in names:
        if name not in seen:
            seen.append(name)
    return [
        target_for(
            config,
            name,
            repository=repos.get(name, default_repository),
            insecure=name in insecure_names,
            endpoint=ends.get(name),
            env=env,
            runner=runner,
        )
        for name in seen
    ]


def target_fingerprint(target: ProbeTarget, key: bytes) -> bytes:
    """A keyed hash of everything that makes ``target`` (its credential included): equal
    targets hash equal under one ``key``, and nothing about the secret can be learned from it."""
    cred = target.credential
    parts = [
        target.registry,
        target.repository or "",
        target.endpoint or "",
        str(target.insecure),
        str(target.identity_token),
        target.credential_error or "",
        cred.username if cred else "",
        cred.secret if cred else "",
    ]
    data = "\0".join(parts).encode("utf-8", "surrogatepass")
    return hashlib.blake2b(data, key=key, digest_size=16).digest()


RunnerFor = Callable[[str], HelperRunner]
"""How to run the credential helpers a config names (the daemon: as the config's owner)."""


def config_targets(
    names: Iterable[str],
    settings: ProbeSettings,
    *,
    env: Mapping[str, str] | None = None,
    runner_for: RunnerFor | None = None,
) -> tuple[dict[ProbeKey, ProbeTarget], set[str]]:
    """The targets of the configs ``names`` (one per registry per config) and the configs read.

    A config that cannot be read (half-written, not UTF-8) is logged and left out of both; one
    whose helpers fail or are refused gives targets carrying ``credential_error``, and the
    other configs are read as usual. Every secret read is remembered, so alerts redact it.
    Blocking: runs credential helpers.
    """
    targets: dict[ProbeKey, ProbeTarget] = {}
    read: set[str] = set()
    for name in names:
        try:
            snapshot = dockerconfig.load(name)
            config = jsontext.parse(snapshot.data, name)
        except ConfigFileError as exc:
            log.info("probe.config_unreadable", path=name, reason=exc.reason)
            continue
        except UnicodeDecodeError:
            log.info("probe.config_unreadable", path=name, reason="not UTF-8")
            continue
        read.add(name)
        remember_config_secrets(config)
        for target in targets_from_config(
            config,
            repositories=settings.repositories,
            insecure=settings.insecure_registries,
            env=env,
            runner=runner_for(name) if runner_for is not None else None,
        ):
            if target.credential is not None:
                REDACTOR.remember([target.credential.secret])
            targets[ProbeKey(name, target.registry)] = target
    return targets, read


def watched_targets(
    watched: Sequence[str],
    known: Collection[str],
    asked: Collection[str] | None,
    settings: ProbeSettings,
    *,
    env: Mapping[str, str] | None = None,
    runner_for: RunnerFor | None = None,
) -> tuple[dict[ProbeKey, ProbeTarget], set[str]]:
    """Read the ``watched`` configs: all (``asked`` None), or those ``asked`` for plus those not
    ``known`` yet (a user's first login). Returns the targets found and the configs they fully
    describe: those read, and those no longer watched or gone. A config that cannot be read is
    not among them, so its keys stay (a half-written file raises no false alert).

    Blocking: runs credential helpers.
    """
    wanted = [p for p in watched if asked is None or p in asked or p not in known]
    fresh = (set(known) | set(asked or ())) - set(watched)
    targets, read = config_targets(wanted, settings, env=env, runner_for=runner_for)
    return targets, fresh | read


def conflict_targets(
    conflict: ReportedConflict,
    settings: ProbeSettings,
    *,
    env: Mapping[str, str] | None = None,
    runner: HelperRunner | None = None,
) -> tuple[ProbeTarget, ProbeTarget]:
    """The kept and the removed credential, both read from the backup of the original file
    (its helpers run with ``runner``: the daemon runs them as the repaired config's owner).

    Blocking: runs credential helpers.
    """
    registry = registry_name(conflict.canonical)
    insecure = registry in {registry_name(r) for r in settings.insecure_registries}
    repository = {registry_name(k): v for k, v in settings.repositories.items()}.get(registry)
    base = ProbeTarget(registry=registry, repository=repository, insecure=insecure)
    config: dict[str, Any] | None = None
    problem = "no backup of the original config was made"
    if conflict.backup is not None:
        try:
            config = jsontext.parse(dockerconfig.load(conflict.backup).data, conflict.backup)
        except ConfigFileError as exc:
            problem = f"the backup cannot be read: {exc.reason}"
        except UnicodeDecodeError:
            problem = "the backup is not UTF-8"
    out: list[ProbeTarget] = []
    for key in (conflict.winner, conflict.loser):
        if config is None:
            out.append(dataclasses.replace(base, credential_error=problem, credential_key=key))
            continue
        remember_config_secrets(config)
        try:
            cred = store_for(config, key, env=env, runner=runner).get(key)
        except (CredentialError, OSError) as exc:
            out.append(
                dataclasses.replace(base, credential_error=_helper_error(exc), credential_key=key)
            )
            continue
        if cred is not None:
            REDACTOR.remember([cred.secret])
        out.append(
            dataclasses.replace(
                base,
                credential=cred,
                identity_token=cred.is_identity_token if cred else False,
                credential_key=key,
            )
        )
    return out[0], out[1]


def _helper_error(exc: CredentialError | OSError) -> str:
    """A helper's failure in words; OSError: the helper exists but cannot run (not executable,
    not a program), which :mod:`regauthd.dockerconfig.stores` does not turn into words."""
    if isinstance(exc, CredentialError):
        return str(exc)
    name = f"`{exc.filename}` " if exc.filename else ""
    return f"the credential helper {name}could not be run: {os_cause(exc)}"
