"""``check``/``fix`` on a credential document named on the command line, not a config file.

``--dockerconfigjson FILE|-``: a Kubernetes image pull secret (raw ``.dockerconfigjson``, a
Secret manifest in YAML or JSON, or ``kubectl get secret -o json`` output), judged by the
kubelet's rules (:mod:`regauthd.dockerconfig.pullsecret`). ``--env NAME``: a variable such as
``DOCKER_AUTH_CONFIG`` (the Docker CLI's and GitLab runner's), judged by Docker's rules.
``check`` prints findings; ``fix`` prints the corrected document on stdout in the form it came
in (findings and changes on stderr) and writes nothing, and never talks to a cluster.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from regauthd.commands import EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE
from regauthd.dockerconfig import audit, normalize, report
from regauthd.dockerconfig import file as dockerconfig
from regauthd.dockerconfig.findings import Finding
from regauthd.dockerconfig.jsontext import ConfigFileError

if TYPE_CHECKING:
    # YAML is loaded only when a document is named (`fix` on config files never pays for it).
    from regauthd.dockerconfig import kubelet, pullsecret


def expiry_of_entry(source: str, key: str, user: str, password: str) -> tuple[Finding, ...]:
    """The expiry findings of one pull-secret credential (an expired ECR password or JWT is an
    error: the kubelet's pulls with it fail; within the hour a warning), read from the password
    itself by :mod:`regauthd.dockerconfig.expiry` (nothing is sent anywhere)."""
    from datetime import UTC, datetime  # noqa: PLC0415 - only when a document is judged

    from regauthd.dockerconfig.expiry import (  # noqa: PLC0415
        CredentialExpiry,
        expiry_findings,
        secret_expiry,
    )

    item = CredentialExpiry(key=key, username=user, expiry=secret_expiry(password))
    return expiry_findings(source, [item], datetime.now(UTC))


EXPIRY_HOOK: pullsecret.ExpiryHook = expiry_of_entry
"""How pull secrets' credentials are judged for expiry (:func:`expiry_of_entry`)."""


def add_arguments(parser: argparse.ArgumentParser, *, fixing: bool) -> None:
    """The flags that name a document instead of Docker config files."""
    verb = "print it corrected on stdout (same form; nothing is written)" if fixing else "check it"
    parser.add_argument(
        "--dockerconfigjson",
        metavar="FILE|-",
        help="a Kubernetes image pull secret (raw .dockerconfigjson, a Secret manifest in YAML "
        f"or JSON, or `kubectl get secret -o json` output; - for stdin): {verb} by the "
        "kubelet's rules",
    )
    parser.add_argument(
        "--image",
        metavar="REF",
        action="append",
        default=[],
        help="with --dockerconfigjson: say which credential the kubelet would use for this "
        "image; none is a problem (repeatable)",
    )
    parser.add_argument(
        "--env",
        metavar="NAME",
        help=f"a variable holding a Docker config, such as DOCKER_AUTH_CONFIG: {verb} by "
        "Docker's rules",
    )


def wanted(args: argparse.Namespace) -> bool:
    return args.dockerconfigjson is not None or args.env is not None or bool(args.image)


def run(args: argparse.Namespace, *, fixing: bool) -> int:
    name = "fix" if fixing else "check"
    if args.dockerconfigjson is not None and args.env is not None:
        return _usage(name, "give either --dockerconfigjson or --env, not both")
    if args.image and args.dockerconfigjson is None:
        return _usage(name, "--image needs --dockerconfigjson (it asks the kubelet's rules)")
    if args.docker_config:
        return _usage(name, "--docker-config cannot be combined with --dockerconfigjson/--env")
    if args.env is not None:
        return _run_env(args, name, fixing=fixing)
    from regauthd.dockerconfig import pullsecret, secretdoc  # noqa: PLC0415

    try:
        source, data = _read_input(args.dockerconfigjson)
    except ConfigFileError as exc:
        return _usage(name, f"--dockerconfigjson {exc}")
    try:
        doc = secretdoc.read(data)
    except secretdoc.DocumentError as exc:
        finding = Finding(
            "not_a_pull_secret",
            "error",
            source,
            None,
            f"is not a pull secret: {exc}.",
            "pass a .dockerconfigjson, a Secret manifest or `kubectl get secret NAME -o json`",
        )
        _emit(args, source, (finding,), (), (), None)
        return EXIT_PROBLEMS
    if doc.name:
        source = f"{source} (Secret {doc.name})"
    verdict = pullsecret.judge(doc, source=source, images=args.image, expiry=EXPIRY_HOOK)
    if not fixing:
        _emit(args, source, verdict.findings, verdict.picks, (), None)
        return EXIT_OK if verdict.ok else EXIT_PROBLEMS
    after = pullsecret.judge(verdict.fixed, source=source, images=args.image, expiry=EXPIRY_HOOK)
    _emit(
        args,
        source,
        after.findings,
        after.picks,
        verdict.changes,
        secretdoc.render(verdict.fixed) if verdict.changes else doc.original,
    )
    return EXIT_OK if after.ok else EXIT_PROBLEMS


def _run_env(args: argparse.Namespace, name: str, *, fixing: bool) -> int:
    label = f"${args.env}"
    value = os.environ.get(args.env)
    if value is None:
        return _usage(name, f"--env {args.env}: the variable is not set")
    findings = audit.auth_env_findings(value, label=label)
    if not fixing:
        _emit(args, label, findings, (), (), None)
        return EXIT_OK if not _errors(findings) else EXIT_PROBLEMS
    try:
        data = json.loads(value)
    except json.JSONDecodeError:
        data = None
    if not isinstance(data, dict) or not isinstance(data.get("auths", {}), dict):
        _emit(args, label, findings, (), (), None)
        return EXIT_PROBLEMS
    planned = normalize.plan({"auths": data.get("auths", {})}, path=label)
    fixed = {**data, "auths": planned.config.get("auths", {})}
    text = json.dumps(fixed, ensure_ascii=False, separators=(",", ":"))
    after = audit.auth_env_findings(text, label=label)
    changes = tuple(c.describe() for c in planned.changes) + tuple(
        f"conflict for {k.canonical!r}: kept {k.winner!r}, dropped {k.loser!r} ({k.reason})"
        for k in planned.conflicts
    )
    _emit(args, label, after, (), changes, (text + "\n").encode() if changes else value.encode())
    return EXIT_OK if not _errors(after) else EXIT_PROBLEMS


def _read_input(name: str) -> tuple[str, bytes]:
    if name == "-":
        from regauthd.dockerconfig.secretdoc import MAX_DOCUMENT_BYTES  # noqa: PLC0415

        data = sys.stdin.buffer.read(MAX_DOCUMENT_BYTES + 1)
        return "<stdin>", data
    snap = dockerconfig.load(Path(name))
    if not snap.exists:
        raise ConfigFileError(name, "no such file")
    return name, snap.data


def _errors(findings: tuple[Finding, ...]) -> bool:
    return any(f.severity == "error" for f in findings)


def _usage(name: str, message: str) -> int:
    print(f"regauthd {name}: {message}", file=sys.stderr)
    return EXIT_USAGE


def _emit(
    args: argparse.Namespace,
    source: str,
    findings: tuple[Finding, ...],
    picks: tuple[kubelet.ImagePick, ...],
    changes: tuple[str, ...],
    document: bytes | None,
) -> None:
    """check: the report on stdout. fix: the document on stdout, the report on stderr.

    With --json every stdout line is one JSON object (fix's carries the document text).
    """
    if args.json:
        obj: dict[str, Any] = report.findings_json(source, findings)
        obj["images"] = [_pick_json(p) for p in picks]
        if document is not None:
            obj["changes"] = list(changes)
            obj["document"] = document.decode("utf-8", errors="replace")
        print(json.dumps(obj, ensure_ascii=False, separators=(",", ":")), flush=True)
        return
    out = sys.stderr if document is not None else sys.stdout
    status = "problems" if _errors(findings) else ("works, with warnings" if findings else "clean")
    if document is not None and changes:
        status = f"fixed; {status} remain" if _errors(findings) else "fixed"
    print(f"{source}: {status}", file=out)
    for change in changes:
        print(f"  changed: {change}", file=out)
    for f in findings:
        print(f.as_text(indent="  "), file=out)
    for p in picks:
        if p.keys:
            keys = ", then ".join(repr(k) for k in p.keys)
            print(f"  image {p.image} ({p.repository}): the kubelet uses {keys}", file=out)
    if document is not None:
        sys.stdout.buffer.write(document)
        sys.stdout.flush()


def _pick_json(pick: kubelet.ImagePick) -> dict[str, Any]:
    return {
        "image": pick.image,
        "repository": pick.repository,
        "keys": list(pick.keys),
        "problem": pick.problem,
    }
