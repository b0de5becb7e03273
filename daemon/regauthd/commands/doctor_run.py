"""``regauthd doctor`` at work: the checks, the probes and the journal, printed as they come.

:mod:`regauthd.commands.doctor` holds its arguments and imports this module only to run it (the
probes' HTTP client and the journal readers are loaded only by a real run, never by ``--help``).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import sys
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from regauthd.commands import EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE, doctor_clients, mirrors
from regauthd.commands import doctor_checks as checks
from regauthd.commands.doctor_checks import FAILING, Verdict
from regauthd.commands.doctor_journal import journal_verdicts, scan_failures
from regauthd.commands.doctor_network import network_verdicts, proxy_note
from regauthd.commands.fix import ROOT_CONFIG
from regauthd.commands.probe import (
    UsageError,
    split_endpoints,
    split_repositories,
)
from regauthd.dockerconfig import file as dockerconfig
from regauthd.dockerconfig.auth import helper_name_for
from regauthd.dockerconfig.keys import classify
from regauthd.dockerconfig.validate import login_command
from regauthd.journal.recognize import AuthFailure
from regauthd.probe.client import make_client, probe_many, tls_context
from regauthd.probe.connectivity import endpoint_of, examine, trust_stores, variable_name
from regauthd.probe.proxyrules import choose_proxy
from regauthd.probe.result import (
    ProbePolicy,
    ProbeResult,
    ProbeStatus,
    ProbeTarget,
)
from regauthd.probe.rules import registries_in_config
from regauthd.probe.targets import targets_from_config
from regauthd.probe.url import InvalidURL
from regauthd.terminal import json_line, printable

_MARKS = {
    "ok": "ok",
    "warning": "WARNING",
    "problem": "PROBLEM",
    "not_checked": "NOT CHECKED",
    "not_applicable": "n/a",
}


class Printer:
    """Prints each verdict as it is known; remembers whether any failed."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.failed = False

    def __call__(self, verdict: Verdict) -> None:
        self.failed |= verdict.status in FAILING
        if self.as_json:
            print(json_line(verdict.as_dict()), flush=True)
            return
        where = f" {verdict.registry}" if verdict.registry else ""
        print(printable(f"{_MARKS[verdict.status]:<11} {verdict.check}{where}: {verdict.message}"))
        if verdict.fix and verdict.status in {"problem", "not_checked", "warning"}:
            print(f"{'':<11}   next step: {printable(verdict.fix)}")
        sys.stdout.flush()


def login_verdict(target: ProbeTarget, config: dict[str, Any]) -> Verdict:
    """Logged in as whom, and where the secret lives."""
    name = target.registry
    if target.credential_error is not None:
        return Verdict(
            "login",
            "problem",
            f"the credential cannot be read: {target.credential_error}",
            "make the credential helper work in this session, then log in again",
            name,
        )
    if target.credential is None:
        if target.unread_keys:
            return Verdict(
                "login",
                "problem",
                f"the credential is stored under {', '.join(target.unread_keys)}, a key Docker "
                "never reads for Docker Hub",
                "run `regauthd fix`",
                name,
            )
        return Verdict(
            "login",
            "problem",
            "no credential for this registry",
            f"`{login_command(classify(name))}`",
            name,
        )
    key = target.credential_key or name
    helper = helper_name_for(config, key)
    where = f"in credential helper `{helper}`" if helper else "in the config file itself"
    who = "an identity token" if target.identity_token else f"user {target.credential.username}"
    return Verdict("login", "ok", f"logged in as {who}, stored under {key} {where}", None, name)


def _proxy_note(target: ProbeTarget) -> str:
    endpoint = endpoint_of(target)
    choice = choose_proxy(
        urllib.request.getproxies(), endpoint.scheme, endpoint.host, endpoint.port
    )
    if choice.variable is not None:
        choice = dataclasses.replace(choice, variable=variable_name(choice.variable))
    return proxy_note(choice)


def probe_verdicts(result: ProbeResult, target: ProbeTarget) -> list[Verdict]:
    """``connectivity`` and ``authentication`` from one probe."""
    name, status, detail = result.registry, result.status, result.detail
    try:
        network = _proxy_note(target)
    except InvalidURL as exc:  # a key no URL can hold (a control character, a space)
        why = f"the registry name is no address, so it was not asked ({exc})"
        return [
            Verdict("connectivity", "problem", why, "remove the entry for it (a typo?)", name),
            Verdict("authentication", "not_checked", why, "see the connectivity check", name),
        ]
    if status is ProbeStatus.NO_CREDENTIALS:
        why = "no credential to test, so the registry was not asked"
        return [
            Verdict("connectivity", "not_applicable", why, None, name),
            Verdict("authentication", "not_checked", why, "see the login check", name),
        ]
    if status in {ProbeStatus.UNREACHABLE, ProbeStatus.TLS_ERROR}:
        fix = (
            "check DNS, the firewall and the proxy variables (HTTPS_PROXY, NO_PROXY)"
            if status is ProbeStatus.UNREACHABLE
            else "trust the registry's CA (--ca-file, or [probe] ca_file for the daemon)"
        )
        return [
            Verdict("connectivity", "problem", f"{detail} ({network})", fix, name),
            Verdict(
                "authentication", "not_checked", "the registry could not be reached", fix, name
            ),
        ]
    reached = Verdict(
        "connectivity", "ok", f"reached in {result.latency_ms} ms ({network})", None, name
    )
    if status is ProbeStatus.OK:
        return [reached, Verdict("authentication", "ok", detail, None, name)]
    fix = {
        ProbeStatus.BAD_CREDENTIALS: f"`{login_command(classify(name))}` again",
        ProbeStatus.PUSH_DENIED: "log in with a token or account that has write access",
        ProbeStatus.RATE_LIMITED: "log in (higher limits) or wait for the window to move on",
    }.get(status, "see the message")
    return [reached, Verdict("authentication", "problem", detail, fix, name)]


async def _per_registry(
    targets: list[ProbeTarget], args: argparse.Namespace, emit: Printer
) -> tuple[dict[str, ProbeResult], tuple[list[AuthFailure] | None, str]]:
    now = datetime.now(UTC)
    journal = asyncio.create_task(asyncio.to_thread(scan_failures, now, args.journal_directory))
    by_name = {t.registry: t for t in targets}
    results: dict[str, ProbeResult] = {}

    def done(result: ProbeResult) -> None:
        results[result.registry] = result
        for verdict in probe_verdicts(result, by_name[result.registry]):
            emit(verdict)

    # Loading the system's CA store costs CPU: once per run, shared by the probes and the checks.
    context = tls_context(args.ca_file)
    trust = trust_stores(args.ca_file, context)

    async def network(target: ProbeTarget) -> None:
        try:
            report = await examine(target, trust=trust, timeout_s=args.timeout)
        except InvalidURL:
            return  # a name no URL can hold: its connectivity line already says so

        for verdict in network_verdicts(report, time.time()):
            emit(verdict)

    insecure = [t.host for t in targets if t.insecure]
    policy = ProbePolicy(timeout_s=3 * args.timeout)
    async with make_client(
        context=context, insecure_hosts=insecure, request_timeout_s=args.timeout
    ) as client:
        await asyncio.gather(
            probe_many(client, targets, policy=policy, on_result=done),
            *(network(t) for t in targets),
        )
    return results, await journal


def run(args: argparse.Namespace) -> int:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    try:
        if args.timeout <= 0:
            raise UsageError("--timeout must be positive")
        repositories, default_repository = split_repositories(args.repository)
        endpoints = split_endpoints(args.endpoint)
        if args.ca_file and not Path(args.ca_file).is_file():
            raise UsageError(f"--ca-file {args.ca_file}: no such file")
        mirrors.configured(args.daemon_json, args.containerd_certs)
    except (UsageError, mirrors.MirrorUsageError) as exc:
        print(f"regauthd doctor: {printable(exc)}", file=sys.stderr)
        return EXIT_USAGE
    emit = Printer(args.json)
    path = dockerconfig.config_path(args.docker_config)
    verdict, config = checks.config_file(path, args.docker_config is not None)
    emit(verdict)
    emit(checks.podman_auth_file())
    for clients_verdict in doctor_clients.auth_file_verdicts(path, config):
        emit(clients_verdict)
    explicit_root = args.root_docker_config != ROOT_CONFIG
    emit(checks.root_config(path, config, args.root_docker_config, explicit_root))
    if config is not None:
        emit(checks.config_keys(path))
    for helper in checks.credential_helpers(config):
        emit(helper)
    for expiry in checks.credential_expiry(config):
        emit(expiry)
    for mirror_verdict in doctor_clients.mirror_verdicts(args):
        emit(mirror_verdict)
    names = args.registry or registries_in_config(config or {})
    if not names:
        emit(
            Verdict(
                "login",
                "problem",
                "no registry has credentials in the Docker config, so none was checked",
                "`docker login` (Docker Hub) or `docker login HOST`, or name one with --registry",
            )
        )
        return EXIT_PROBLEMS
    targets = targets_from_config(
        config or {},
        registries=names,
        repositories=repositories,
        default_repository=default_repository,
        insecure=args.insecure_registry,
        endpoints=endpoints,
    )
    for target in targets:
        emit(login_verdict(target, config or {}))
    results, (failures, why) = asyncio.run(_per_registry(targets, args, emit))
    names = [t.registry for t in targets]
    for verdict in journal_verdicts(names, failures, why, results, str(path), config):
        emit(verdict)
    return EXIT_PROBLEMS if emit.failed else EXIT_OK
