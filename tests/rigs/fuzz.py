"""Fuzz targets, one per parser of outside input, shared by ``tests/unit/test_fuzz.py`` (brief,
in CI) and ``bench/fuzz.py`` (long runs).

Each :class:`FuzzTarget` draws an input (hypothesis strategies; for the config, mutations of real
configs: bit flips, truncation, splices, nesting, hostile numbers and escapes, the way a
mutation fuzzer works) and runs the parser. The property everywhere: no exception other than
the documented error types, and no secret of the input in any message the parser produces.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from regauthd.dockerconfig.jsontext import ConfigFileError, parse, render
from regauthd.dockerconfig.normalize import plan
from regauthd.dockerconfig.report import FixReport, as_json, as_text, redacted_diff
from regauthd.journal.recognize import Recognizer
from regauthd.probe.challenge import parse_challenges, parse_scope
from regauthd.probe.rules import decode_claims, granted_actions, parse_token_answer
from regauthd.settings import Environment
from regauthd.settingsfile import parse_settings
from regauthd.terminal import json_line, printable
from regauthd.tomltable import SettingsError

CI = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
    derandomize=False,
)
"""The brief profile ``tests/unit/test_fuzz.py`` runs (all targets together: a few seconds)."""


class SecretLeak(AssertionError):
    """A message showed a secret of the input."""


@dataclass(frozen=True, slots=True)
class FuzzTarget:
    name: str
    strategy: st.SearchStrategy[Any]
    run: Callable[[Any], None]
    """Raises only :class:`SecretLeak` or an undocumented exception (a finding)."""


def _no_secret(text: str, secrets: set[str], where: str) -> None:
    for secret in secrets:
        if secret in text:
            raise SecretLeak(f"{where} shows a secret of the input ({len(secret)} chars)")


# -- config.json -----------------------------------------------------------------------------------

_PASSWORDS = ("fuzz-Pa55word-1", "ghp_fuzzTokenABCDEF123", "s3cr3t-proxy-pw")


def _b64(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


SEEDS: tuple[dict[str, Any], ...] = (
    {"auths": {"docker.io": {"auth": _b64("alice", _PASSWORDS[0])}}},
    {
        "auths": {
            "https://index.docker.io/v1/": {"auth": _b64("alice", _PASSWORDS[0])},
            "registry-1.docker.io": {"auth": _b64("bob", _PASSWORDS[1])},
            "ghcr.io": {"identitytoken": _PASSWORDS[1]},
            "https://quay.io/v1/": {"username": "u", "password": _PASSWORDS[2]},
        },
        "credsStore": "desktop",
        "currentContext": "default",
    },
    {
        "auths": {"docker.io": {}, "index.docker.io": {}, "hub.docker.com": {}},
        "credHelpers": {"docker.io": "pass", "gcr.io": "gcloud", "index.docker.io": "pass"},
        "HttpHeaders": {"X-Meta-Api-Key": _PASSWORDS[1]},
        "proxies": {"default": {"httpsProxy": f"http://bob:{_PASSWORDS[2]}@proxy:3128"}},
    },
    {
        "auths": {
            "localhost:5000": {"auth": _b64("ci", _PASSWORDS[0]), "email": "ci@example.com"},
            "http://localhost:5000/v2/": {"auth": _b64("ci", _PASSWORDS[2])},
        },
        "psFormat": "table {{.ID}}",
        "plugins": {"x": {"n": [1, 2.5, -3e-7, True, None]}},
        "experimental": "enabled",
    },
)
SEED_CONFIGS: tuple[bytes, ...] = tuple(json.dumps(c, indent="\t").encode() for c in SEEDS)
"""Real configs as Docker writes them: the mutation fuzzer's starting points."""

_HOSTILE_VALUES = st.one_of(
    st.sampled_from(
        [
            b"1e999999",
            b"-1e-999999",
            b"9" * 4400,
            b"NaN",
            b"-Infinity",
            b'"\\ud800"',
            b'"\\u001b[2J\\nregauthd: ok"',
            b"5",
            b'"x"',
            b"[]",
            b"{}",
            b"null",
            b"true",
            b'{"auth": "' + _b64("eve", _PASSWORDS[0]).encode() + b'"}',
            b'{"auth": "not base64!"}',
            b'{"auth": 1e999999}',
        ]
    ),
    st.integers(1, 3000).map(lambda n: b"[" * n + b"]" * n),
    st.integers(1, 1500).map(lambda n: b'{"a": ' * n + b"1" + b"}" * n),
)
_HOSTILE_KEYS = st.sampled_from(
    [
        "docker.io",
        "https://index.docker.io/v1/",
        "index.docker.io",
        "registry-1.docker.io",
        "ghcr.io",
        "https://ghcr.io/v2/",
        "\x1b[31mghcr.io\nregauthd: ok",
        "\ud800",
        "",
        "x",
    ]
)
_PIECES = (
    b"[" * 300,
    b"]" * 300,
    b"1e999999",
    b"9" * 4400,
    b"NaN",
    b'"\\ud800"',
    b"\xff\xfe",
    b"null",
    b"\x00",
)


@st.composite
def mutated_configs(draw: st.DrawFn) -> bytes:
    """A real config, mutated the way a mutation fuzzer does: hostile values and keys put at
    value positions (still JSON Docker may accept), then a few byte-level mutations (bit
    flips, truncation, splices, deletions, hostile pieces)."""
    config = json.loads(draw(st.sampled_from(SEED_CONFIGS)))
    raw: list[bytes] = []
    for _ in range(draw(st.integers(0, 3))):
        containers: list[dict[str, Any]] = [config]
        for section in ("auths", "credHelpers"):
            value = config.get(section)
            if isinstance(value, dict):
                containers.append(value)
                containers.extend(v for v in value.values() if isinstance(v, dict))
        where = draw(st.sampled_from(containers))
        key = draw(_HOSTILE_KEYS | st.sampled_from(sorted(where) or ["x"]))
        where[key] = f"@@raw-{len(raw)}@@"
        raw.append(draw(_HOSTILE_VALUES))
    text = json.dumps(config, indent="\t").encode()
    for i, value in enumerate(raw):
        text = text.replace(f'"@@raw-{i}@@"'.encode(), value)
    data = bytearray(text)
    for _ in range(draw(st.integers(0, 2))):
        kind = draw(st.sampled_from(("flip", "truncate", "splice", "insert", "delete")))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "truncate":
            del data[at:]
        elif kind == "splice" and data:
            start = draw(st.integers(0, len(data) - 1))
            data[at:at] = data[start : start + draw(st.integers(1, 64))]
        elif kind == "insert":
            data[at:at] = draw(st.sampled_from(_PIECES) | st.binary(max_size=8))
        elif kind == "delete" and data:
            del data[at : at + draw(st.integers(1, 16))]
    return bytes(data)


def _config_secrets(value: Any, out: set[str], keys: set[str]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            keys.add(str(k))
            if isinstance(v, str) and str(k).lower() in _SECRET_FIELDS and len(v) >= 8:
                out.add(v)
                if str(k).lower() == "auth":
                    try:
                        decoded = base64.b64decode(v, validate=True).decode()
                    except (binascii.Error, ValueError):
                        continue
                    password = decoded.partition(":")[2]
                    if len(password) >= 8:
                        out.add(password)
            _config_secrets(v, out, keys)
    elif isinstance(value, list):
        for v in value:
            _config_secrets(v, out, keys)


_SECRET_FIELDS = {"auth", "password", "identitytoken", "registrytoken", "x-meta-api-key"}


def run_config(data: bytes) -> None:
    """parse -> plan -> render, then every rendering a person or a machine sees."""
    path = Path("/home/u/.docker/config.json")
    try:
        config = parse(data, path)
    except ConfigFileError as exc:
        message = printable(str(exc)) + json_line({"error": str(exc)})
        _no_secret(message, {p for p in _PASSWORDS if p.encode() in data}, "a refusal")
        return
    secrets: set[str] = set()
    keys: set[str] = set()
    _config_secrets(config, secrets, keys)
    secrets -= {s for s in secrets if any(s in k for k in keys)}  # a key is no secret
    result = plan(config, path=str(path))
    after = render(result.config, like=data)
    parse(after, path)  # what is written is JSON regauthd (and Go) read: no NaN, no Infinity
    report = FixReport(
        path=path,
        changes=result.changes,
        findings=tuple(result.findings),
        before=data,
        after=after,
    )
    shown = "\n".join(
        (
            as_text(report, dry_run=True),
            redacted_diff(report),
            json_line(as_json(report, dry_run=True, with_diff=False)),
        )
    )
    _no_secret(shown, secrets, "the report")
    for line in as_text(report, dry_run=True).splitlines():
        if any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in line.replace("\t", "")):
            raise AssertionError(f"a control character in a printed line: {line!r}")


# -- settings TOML ---------------------------------------------------------------------------------

_SETTINGS_SEED = """
[daemon]
log_level = "info"
state_dir = "/var/lib/regauthd"
[watch]
paths = ["/home/*/.docker/config.json"]
backend = "auto"
[probe]
enabled = true
interval = "15m"
registries = ["ghcr.io"]
[journal]
enabled = false
[flapping]
window = "1m"
"""
_TOML_PIECES = st.sampled_from(
    [
        '"x"',
        "1",
        "-1",
        "1e999",
        "nan",
        "inf",
        "true",
        "[]",
        "{}",
        '"1s"',
        '"-5m"',
        '"99999999999h"',
        '"\\u0000"',
        "[[x]]",
        "2026-01-01T00:00:00Z",
        '["a", 1]',
        '"' + "9" * 5000 + 's"',
    ]
)


@st.composite
def settings_texts(draw: st.DrawFn) -> str:
    lines = _SETTINGS_SEED.splitlines()
    for _ in range(draw(st.integers(0, 4))):
        at = draw(st.integers(0, len(lines)))
        kind = draw(st.sampled_from(("value", "line", "delete", "text")))
        if kind == "value" and at < len(lines) and "=" in lines[at]:
            key = lines[at].split("=")[0]
            lines[at] = f"{key}= {draw(_TOML_PIECES)}"
        elif kind == "line":
            section = draw(st.sampled_from(["daemon", "watch", "probe", "journal", "flapping"]))
            key = draw(st.sampled_from(["interval", "paths", "backend", "x", "window", "limit"]))
            lines.insert(at, f"[{section}]\n{key} = {draw(_TOML_PIECES)}")
        elif kind == "delete" and at < len(lines):
            del lines[at]
        else:
            lines.insert(at, draw(st.text(max_size=30)))
    return "\n".join(lines)


def run_settings(text: str) -> None:
    env = Environment(euid=1000, home=Path("/home/u"), env={})
    with contextlib.suppress(SettingsError):
        parse_settings(text, env)


# -- WWW-Authenticate ------------------------------------------------------------------------------

_CHALLENGE_PIECES = st.sampled_from(
    [
        "Bearer",
        "Basic",
        " ",
        ",",
        "=",
        '"',
        "\\",
        'realm="https://auth.example/token"',
        'service="registry"',
        'scope="repository:a/b:pull,push"',
        "error=insufficient_scope",
        "token68==",
        'realm="',
        "scope=repository:x:*",
    ]
)
challenge_headers = st.lists(
    st.lists(_CHALLENGE_PIECES | st.text(max_size=6), max_size=12).map("".join), max_size=3
)


def run_challenges(headers: list[str]) -> None:
    for challenge in parse_challenges(headers):
        _ = (challenge.realm, challenge.service, challenge.error)
        for scope in challenge.scopes:
            parse_scope(scope)


# -- token answers and JWTs ------------------------------------------------------------------------


def _jwt(claims: bytes) -> str:
    def enc(b: bytes) -> str:
        return base64.urlsafe_b64encode(b).rstrip(b"=").decode()

    return f"{enc(b'{}')}.{enc(claims)}.sig"


_CLAIMS = st.sampled_from(
    [
        b'{"access": [{"type": "repository", "name": "a/b", "actions": ["pull", "push"]}]}',
        b'{"access": {"x": 1}}',
        b'{"access": [1, "x", {"type": "repository", "name": "a/b", "actions": "push"}]}',
        b"[" * 5000 + b"]" * 5000,
        b'{"access": ' + b"9" * 5000 + b"}",
        b"\xff",
        b"null",
    ]
)
token_answers = st.one_of(
    st.builds(lambda c: json.dumps({"token": _jwt(c)}).encode(), _CLAIMS),
    st.builds(lambda c: b'{"access_token": ' + c + b"}", _CLAIMS),
    st.binary(max_size=64),
    _CLAIMS,
)


def run_token(body: bytes) -> None:
    token, _refresh = parse_token_answer(body)
    for candidate in (token, body.decode("latin-1")):
        if candidate is not None:
            granted_actions(decode_claims(candidate), "a/b")


# -- journal lines ---------------------------------------------------------------------------------

_JOURNAL_SECRET = "jrnlSecretValue42"
_JOURNAL_PIECES = st.sampled_from(
    [
        "Error response from daemon: ",
        "unauthorized: authentication required",
        "denied: requested access to the resource is denied",
        "pull access denied for ghcr.io/a/b",
        'Head "https://ghcr.io/v2/a/b/manifests/latest": ',
        "no basic auth credentials",
        f"Authorization: Basic {base64.b64encode(f'u:{_JOURNAL_SECRET}'.encode()).decode()}",
        f"password={_JOURNAL_SECRET}",
        f"https://user:{_JOURNAL_SECRET}@registry.example/v2/",
        f'"password": "{_JOURNAL_SECRET}"',
        " ",
        "\n",
        "\x1b[31m",
        "docker.io",
        "toomanyrequests: rate limit",
    ]
)
journal_lines = st.lists(_JOURNAL_PIECES | st.text(max_size=10), max_size=10).map("".join)
_RECOGNIZER = Recognizer()
_WHEN = datetime(2026, 1, 1, tzinfo=UTC)


def run_journal(line: str) -> None:
    failure = _RECOGNIZER.recognize(line, unit="docker.service", time=_WHEN)
    if failure is not None:
        shown = json_line(failure.as_dict()) + printable(failure.message)
        encoded = base64.b64encode(f"u:{_JOURNAL_SECRET}".encode()).decode()
        _no_secret(shown, {_JOURNAL_SECRET, encoded}, "a recognized journal line")


TARGETS: tuple[FuzzTarget, ...] = (
    FuzzTarget("config", mutated_configs(), run_config),
    FuzzTarget("settings", settings_texts(), run_settings),
    FuzzTarget("challenge", challenge_headers, run_challenges),
    FuzzTarget("token", token_answers, run_token),
    FuzzTarget("journal", journal_lines, run_journal),
)
