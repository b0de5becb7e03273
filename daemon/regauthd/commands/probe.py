"""``regauthd probe``: ask each registry whether the stored credentials work and can push.

One-shot. Probes every registry that has credentials in the Docker config (or those named with
``--registry``), concurrently. A table for people on stdout, or with ``--json`` one JSON object
per registry per line, each printed as soon as that registry has answered (completion order).
Exit 0 only when every probed registry is ``ok``; 1 otherwise (also when
there is nothing to probe); 2 on usage errors or an unreadable config.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from regauthd.commands import EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE
from regauthd.dockerconfig import file as dockerconfig
from regauthd.dockerconfig import jsontext
from regauthd.dockerconfig.keys import registry_name
from regauthd.probe.result import (
    DEFAULT_TIMEOUT_S,
    ProbePolicy,
    ProbeResult,
    ProbeStatus,
    ProbeTarget,
)
from regauthd.probe.rules import DEFAULT_CONCURRENCY
from regauthd.probe.targets import targets_from_config
from regauthd.terminal import json_line, printable


class UsageError(Exception):
    """A command-line value that cannot work; the message says which and why."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--docker-config",
        metavar="PATH",
        help="config.json or the directory holding it (default: $DOCKER_CONFIG or ~/.docker)",
    )
    parser.add_argument(
        "registries",
        metavar="REGISTRY",
        nargs="*",
        help="same as --registry (`regauthd probe ghcr.io`)",
    )
    parser.add_argument(
        "--registry",
        metavar="NAME",
        action="append",
        default=[],
        help="probe only this registry (repeatable; default: every registry with credentials)",
    )
    parser.add_argument(
        "--repository",
        metavar="NAME",
        action="append",
        default=[],
        help="check push to this repository: `team/app` for every registry, or "
        "`ghcr.io/team/app` for one (repeatable)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per registry per line")
    add_network_arguments(parser)
    parser.add_argument(
        "--trust-realm",
        metavar="HOST",
        action="append",
        default=[],
        help="a token service host, other than the registry's own, that may receive "
        "credentials (repeatable)",
    )
    parser.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        help=f"per-request timeout (default {DEFAULT_TIMEOUT_S:g}); a whole probe gets 3 times it",
    )
    parser.add_argument(
        "--concurrency",
        metavar="N",
        type=int,
        default=DEFAULT_CONCURRENCY,
        help=f"registries probed at the same time (default {DEFAULT_CONCURRENCY})",
    )


def add_network_arguments(parser: argparse.ArgumentParser) -> None:
    """How registries are reached: shared by ``probe`` and ``doctor``."""
    parser.add_argument(
        "--insecure-registry",
        metavar="NAME",
        action="append",
        default=[],
        help="allow plain HTTP and unverified TLS for this registry (repeatable)",
    )
    parser.add_argument(
        "--ca-file", metavar="PATH", help="extra CA certificates (PEM) to trust for TLS"
    )
    parser.add_argument(
        "--endpoint",
        metavar="NAME=URL",
        action="append",
        default=[],
        help="reach registry NAME at URL instead (a mirror or a test server; repeatable)",
    )


def split_repositories(values: Sequence[str]) -> tuple[dict[str, str], str | None]:
    """``--repository`` values -> (registry -> repository, repository for all others).

    ``team/app`` applies to every registry; ``HOST/team/app`` (the first part has a dot, a colon,
    or is ``localhost``) to that registry only, as in an image reference.
    """
    per_registry: dict[str, str] = {}
    default: str | None = None
    for value in values:
        text = value.strip()
        if not text.strip("/"):
            raise UsageError("--repository: empty name")
        first, sep, rest = text.partition("/")
        rest = rest.strip("/")
        if sep and ("." in first or ":" in first or first == "localhost"):
            if not rest:
                raise UsageError(f"--repository {value}: no repository after the registry")
            per_registry[registry_name(first)] = rest
        elif default is not None and default != text.strip("/"):
            raise UsageError(
                "--repository: two repositories without a registry "
                f"({default}, {text}); prefix them with their registry"
            )
        else:
            default = text.strip("/")
    return per_registry, default


def split_endpoints(values: Sequence[str]) -> dict[str, str]:
    endpoints: dict[str, str] = {}
    for value in values:
        name, sep, url = value.partition("=")
        if not sep or not name or not url.startswith(("http://", "https://")):
            raise UsageError(f"--endpoint {value}: expected NAME=http(s)://HOST[:PORT]")
        endpoints[registry_name(name)] = url.rstrip("/")
    return endpoints


def load_config(location: str | None) -> tuple[Path, dict[str, Any]]:
    path = dockerconfig.config_path(location)
    snapshot = dockerconfig.load(path)
    return path, jsontext.parse(snapshot.data, path)


def _push_text(result: ProbeResult) -> str:
    return {True: "yes", False: "NO", None: "-"}[result.push_allowed]


def _rate_text(result: ProbeResult) -> str:
    if result.rate_limit_remaining is None:
        return "-"
    return f"{result.rate_limit_remaining}/{result.rate_limit_limit}"


_HEADER = ("REGISTRY", "STATUS", "PUSH", "PULLS LEFT", "MS", "DETAIL")


class Table:
    """Columns for people, one row printed as soon as each registry's result is known.

    The widths are fixed before the first result (registry names are known up front), so rows
    printed in completion order still line up; the detail comes last so it may run long.
    """

    def __init__(self, registries: Sequence[str], out: TextIO) -> None:
        self._out = out
        self._widths = [
            max([len(_HEADER[0]), *(len(r) for r in registries)]),
            max(len(s.value) for s in ProbeStatus),
            len(_HEADER[2]),
            len(_HEADER[3]),
            6,
        ]

    def header(self) -> None:
        self._row(_HEADER)

    def add(self, r: ProbeResult) -> None:
        self._row(
            (r.registry, r.status.value, _push_text(r), _rate_text(r), str(r.latency_ms), r.detail)
        )

    def _row(self, row: Sequence[str]) -> None:
        cells = [cell.ljust(self._widths[i]) for i, cell in enumerate(row[:-1])]
        print(printable("  ".join([*cells, row[-1]]).rstrip()), file=self._out, flush=True)


def render_table(results: Sequence[ProbeResult], out: TextIO) -> None:
    """All results at once, in the given order."""
    table = Table([r.registry for r in results], out)
    table.header()
    for r in results:
        table.add(r)


def _print_json(result: ProbeResult) -> None:
    print(json_line(result.to_dict()), flush=True)


async def _run(
    targets: Sequence[ProbeTarget],
    args: argparse.Namespace,
    insecure_hosts: Sequence[str],
    on_result: Callable[[ProbeResult], None],
) -> list[ProbeResult]:
    policy = ProbePolicy(
        trusted_realm_hosts=frozenset(h.lower() for h in args.trust_realm),
        timeout_s=3 * args.timeout,
    )
    from regauthd.probe.client import make_client, probe_many  # noqa: PLC0415 - httpx: see command

    async with make_client(
        ca_file=args.ca_file, insecure_hosts=insecure_hosts, request_timeout_s=args.timeout
    ) as client:
        return await probe_many(
            client, targets, concurrency=args.concurrency, policy=policy, on_result=on_result
        )


def command(args: argparse.Namespace) -> int:
    # httpx and structlog are imported only here, not for `probe --help` (see regauthd.cli).
    import structlog  # noqa: PLC0415

    # Probe events are for the daemon's log; this command prints its own results.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    try:
        if args.timeout <= 0:
            raise UsageError("--timeout must be positive")
        if args.concurrency < 1:
            raise UsageError("--concurrency must be at least 1")
        if args.ca_file and not Path(args.ca_file).is_file():
            raise UsageError(f"--ca-file {args.ca_file}: no such file")
        repositories, default_repository = split_repositories(args.repository)
        endpoints = split_endpoints(args.endpoint)
        path, config = load_config(args.docker_config)
    except UsageError as exc:
        print(f"regauthd probe: {printable(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except jsontext.ConfigFileError as exc:
        print(f"regauthd probe: {printable(exc)}", file=sys.stderr)
        return EXIT_USAGE

    targets = targets_from_config(
        config,
        registries=[*args.registries, *args.registry] or None,
        repositories=repositories,
        default_repository=default_repository,
        insecure=args.insecure_registry,
        endpoints=endpoints,
    )
    if not targets:
        print(
            f"regauthd probe: no registry has credentials in {path}; log in first or name one "
            "with --registry",
            file=sys.stderr,
        )
        return EXIT_PROBLEMS
    insecure_hosts = [t.host for t in targets if t.insecure]
    if args.json:
        on_result: Callable[[ProbeResult], None] = _print_json
    else:
        table = Table([t.registry for t in targets], sys.stdout)
        table.header()
        on_result = table.add
    results = asyncio.run(_run(targets, args, insecure_hosts, on_result))
    return EXIT_OK if all(r.ok for r in results) else EXIT_PROBLEMS
