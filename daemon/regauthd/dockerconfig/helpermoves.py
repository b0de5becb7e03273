"""Re-keying credential-helper secrets when a fix moves a key: each old URL's secret is read
from its helper and stored under the new URL (:func:`move_helper_secrets`), for
:func:`regauthd.dockerconfig.fixer.fix_file`. The helpers run through a
:class:`regauthd.dockerconfig.credhelper.HelperRunner` (the daemon: as the config's owner).
"""

from __future__ import annotations

from collections.abc import Mapping

from regauthd.dockerconfig.credhelper import HelperRunner
from regauthd.dockerconfig.findings import Finding
from regauthd.dockerconfig.jsontext import os_cause
from regauthd.dockerconfig.keys import HUB_CANONICAL, classify
from regauthd.dockerconfig.normalize import Conflict, HelperMove, NormalizationPlan
from regauthd.dockerconfig.stores import CredentialError, HelperStore
from regauthd.dockerconfig.validate import login_command


def move_helper_secrets(
    result: NormalizationPlan,
    env: Mapping[str, str] | None,
    erase_old: bool,
    runner: HelperRunner | None = None,
) -> tuple[list[Conflict], list[Finding], list[tuple[HelperStore, str]]]:
    """Get each old URL's secret from its helper and store it under the new URL.

    Returns conflicts (the helper already held a different secret under the new URL), findings,
    and the (store, url) pairs to erase once the config is saved (only when asked to).
    """
    conflicts: list[Conflict] = []
    findings: list[Finding] = []
    erase: list[tuple[HelperStore, str]] = []
    for move in result.helper_moves:
        try:
            _move_one(move, env, erase_old, conflicts, findings, erase, runner)
        except (CredentialError, OSError) as exc:
            # OSError: the helper exists but cannot run (not executable, not a program).
            reason = str(exc) if isinstance(exc, CredentialError) else _exec_error(move, exc)
            findings.append(
                Finding(
                    "helper_sync_failed" if move.sync else "helper_failed",
                    "error",
                    "credential helper",
                    move.source_url,
                    reason,
                    "make the helper work (unlock it), then run `regauthd fix` again",
                )
            )
    return conflicts, findings, erase


def _exec_error(move: HelperMove, exc: OSError) -> str:
    names = sorted({move.source_helper, move.target_helper})
    programs = " or ".join(f"`docker-credential-{n}`" for n in names)
    return f"credential helper {programs} could not be run: {os_cause(exc)}"


def _move_one(
    move: HelperMove,
    env: Mapping[str, str] | None,
    erase_old: bool,
    conflicts: list[Conflict],
    findings: list[Finding],
    erase: list[tuple[HelperStore, str]],
    runner: HelperRunner | None = None,
) -> None:
    source = HelperStore(move.source_helper, env=env, runner=runner)
    target = HelperStore(move.target_helper, env=env, runner=runner)
    secret = source.get(move.source_url)
    if secret is None and move.sync:
        return
    if secret is None:
        findings.append(
            Finding(
                "helper_missing_secret",
                "warning",
                f"docker-credential-{move.source_helper}",
                move.source_url,
                f"config.json has a placeholder for {move.source_url} but the helper holds no "
                "credential under that URL.",
                f"`{login_command(classify(move.source_url))}` again",
            )
        )
        return
    existing = target.get(move.target_url)
    if existing is not None and existing != secret and move.sync:
        if move.target_url == HUB_CANONICAL:  # report the pair once
            findings.append(
                Finding(
                    "helper_hub_mismatch",
                    "warning",
                    f"docker-credential-{move.target_helper}",
                    move.source_url,
                    "the helper holds different Docker Hub credentials under "
                    f"{HUB_CANONICAL!r} (used by Docker) and 'docker.io' (used by podman).",
                    "log in to Docker Hub again with `docker login` so both are the same",
                )
            )
        return
    if existing is not None and existing != secret and not move.source_preferred:
        conflicts.append(
            Conflict(
                move.target_url,
                move.target_url,
                move.source_url,
                "the helper already holds a different credential under the "
                "canonical URL; it is kept and the other stays in the helper",
            )
        )
        return
    if existing != secret:
        target.store(move.target_url, secret)
    if erase_old and not move.keep_source:
        erase.append((source, move.source_url))
