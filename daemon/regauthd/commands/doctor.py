"""``regauthd doctor``: walk through the five steps of troubleshooting ``unauthorized:
authentication required``, each a named check with a verdict and the next step.

1. which credential file each client uses (``config_file``, ``podman_auth_file``,
   ``root_config``), 2. where the secret lives and whether it answers (``credential_helper``),
3. key format (``config_keys``), 4. per registry: logged in as whom (``login``), reachable
(``connectivity``), accepted, may push, rate limit (``authentication``), 5. recent auth failures
in the journal (``journal``). The registries are probed concurrently and each one's lines are
printed as soon as its probe ends. Never changes a file.

Exit 0 when every check is ok, warning or not_applicable; 1 when one is a problem or could not
be checked (``not_checked``); 2 on usage errors.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from regauthd.commands import doctor_clients
from regauthd.commands.fix import ROOT_CONFIG
from regauthd.commands.probe import (
    add_network_arguments,
)
from regauthd.probe.result import (
    DEFAULT_TIMEOUT_S,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--docker-config",
        metavar="PATH",
        help="config.json or the directory holding it (default: $DOCKER_CONFIG or ~/.docker)",
    )
    parser.add_argument(
        "--registry",
        metavar="NAME",
        action="append",
        default=[],
        help="check this registry (repeatable; default: every registry with credentials)",
    )
    parser.add_argument(
        "--repository",
        metavar="NAME",
        action="append",
        default=[],
        help="also check push to this repository (`team/app`, or `ghcr.io/team/app`)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per check per line")
    parser.add_argument(
        "--root-docker-config",
        metavar="FILE",
        type=Path,
        default=ROOT_CONFIG,
        help="root's config, to catch `sudo docker login` (default: %(default)s)",
    )
    parser.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        help=f"per-request timeout of the probes (default {DEFAULT_TIMEOUT_S:g})",
    )
    add_network_arguments(parser)
    parser.add_argument(
        "--journal-directory",
        metavar="DIR",
        type=Path,
        help="read the journal files in DIR instead of the system journal",
    )
    doctor_clients.add_arguments(parser)


def command(args: argparse.Namespace) -> int:
    # Imported here: the probes' HTTP client and the journal readers are for a real run only.
    from regauthd.commands.doctor_run import run  # noqa: PLC0415

    return run(args)
