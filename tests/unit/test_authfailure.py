"""The pure recognizer: which log lines are registry auth failures, and what they say."""

from __future__ import annotations

import dataclasses
import json
import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from regauthd.dockerconfig.keys import registry_name
from regauthd.journal.locate import split_reference
from regauthd.journal.logline import split_log_line
from regauthd.journal.recognize import (
    DEFAULT,
    MAX_MESSAGE_CHARS,
    AuthFailure,
    FailureKind,
    PatternError,
    Recognizer,
    classify_wording,
    compile_patterns,
    recognize,
)
from regauthd.redact import redact_text as redact
from tests.rigs.journald import read_export

FIXTURES = Path(__file__).parents[1] / "fixtures" / "journal"
WHEN = datetime(2026, 11, 30, 12, 3, 1, tzinfo=UTC)


def _fixture_rows() -> list[tuple[str, str, dict[str, str | None] | None]]:
    rows = []
    for name in ("dockerd", "containerd", "runners"):
        for entry in read_export((FIXTURES / f"{name}.export").read_bytes()):
            expect = json.loads(entry["TEST_EXPECT"])
            rows.append((name, entry["MESSAGE"].decode(), expect))
    return rows


FIXTURE_ROWS = _fixture_rows()


def _summary(failure: AuthFailure | None) -> dict[str, str | None] | None:
    if failure is None:
        return None
    return {
        "kind": failure.kind.value,
        "registry": failure.registry,
        "repository": failure.repository,
        "operation": failure.operation,
    }


@pytest.mark.parametrize(("source", "message", "expect"), FIXTURE_ROWS)
def test_fixture_lines(source: str, message: str, expect: dict[str, str | None] | None) -> None:
    failure = DEFAULT.recognize(message, unit="docker.service", time=WHEN)
    assert _summary(failure) == expect
    if failure is not None:
        assert failure.unit == "docker.service"
        assert failure.time == WHEN
        assert DEFAULT.might_match(message.encode())


def test_fixtures_hold_failures_of_every_kind_and_lookalikes() -> None:
    kinds = {row[2]["kind"] for row in FIXTURE_ROWS if row[2] is not None}
    assert kinds == {k.value for k in FailureKind}
    assert sum(1 for row in FIXTURE_ROWS if row[2] is None) >= 10


# Further wordings seen from registries and clients, and look-alikes, beyond the fixture files.
EXTRA_TABLE: list[tuple[str, str | None, str | None, str | None]] = [
    # (message, kind, registry, repository)
    (
        "denied: Your authorization token has expired. Reauthenticate and try again.",
        "bad_credentials",
        None,
        None,
    ),
    (
        'Error response from daemon: Get "https://123456789012.dkr.ecr.eu-west-1.amazonaws.com/v2/'
        'acme/api/manifests/latest": no basic auth credentials',
        "unauthorized",
        "123456789012.dkr.ecr.eu-west-1.amazonaws.com",
        "acme/api",
    ),
    (
        "unauthorized: access to the requested resource is not authorized",
        "unauthorized",
        None,
        None,
    ),
    ("unauthorized: invalid username/password: unauthorized", "bad_credentials", None, None),
    (
        'msg="Not continuing with pull after error: pull access denied for alpine2, '
        "repository does not exist or may require 'docker login'\"",
        "denied",
        "docker.io",
        "library/alpine2",
    ),
    (
        "You have reached your unauthenticated pull rate limit. https://www.docker.com/increase-rate-limit",
        "rate_limited",
        None,
        None,
    ),
    (
        'error="unexpected status from GET request to https://quay.io/v2/acme/api/manifests/1: '
        '429 Too Many Requests"',
        "rate_limited",
        "quay.io",
        "acme/api",
    ),
    ("UNAUTHORIZED: authentication required", "unauthorized", None, None),
    (
        'level=error msg="x" error="failed to authorize: failed to fetch anonymous token"',
        "unauthorized",
        None,
        None,
    ),
    (
        'Get "https://localhost:5000/v2/team/app/manifests/v1": '
        "unauthorized: authentication required",
        "unauthorized",
        "localhost:5000",
        "team/app",
    ),
    (
        'level=info msg="trying next host" error="pull access denied, repository does not exist or '
        'may require authorization: server message: insufficient_scope: authorization failed" '
        "host=index.docker.io",
        "denied",
        "docker.io",
        None,
    ),
    # look-alikes
    ("open /etc/docker/daemon.json: permission denied", None, None, None),
    ("permission denied: unknown", None, None, None),
    (
        'audit: type=1400 apparmor="DENIED" operation="open" profile="docker-default"',
        None,
        None,
        None,
    ),
    (
        'level=info msg="Layer already exists" repository=docker.io/acme/unauthorized',
        None,
        None,
        None,
    ),
    ("image acme/denied:latest pulled", None, None, None),
    (
        'level=warning msg="Health check for container abc error: unauthorized: nope"',
        None,
        None,
        None,
    ),
    ("the word unauthorized_access_count=3 in a metric", None, None, None),
    ("", None, None, None),
    ('level=info msg="Pull complete" ratelimit-remaining=98', None, None, None),
]


@pytest.mark.parametrize(("message", "kind", "registry", "repository"), EXTRA_TABLE)
def test_extra_table(
    message: str, kind: str | None, registry: str | None, repository: str | None
) -> None:
    failure = recognize(message, unit="u", time=WHEN)
    if kind is None:
        assert failure is None
        return
    assert failure is not None
    assert (failure.kind.value, failure.registry, failure.repository) == (
        kind,
        registry,
        repository,
    )
    assert DEFAULT.might_match(message.encode())


def test_classify_wording_prefers_the_most_specific_kind() -> None:
    both = "unauthorized: incorrect username or password; toomanyrequests: slow down"
    assert classify_wording(both) is FailureKind.RATE_LIMITED
    assert classify_wording("unauthorized: incorrect username or password") is (
        FailureKind.BAD_CREDENTIALS
    )
    assert classify_wording("nothing to see") is None


# --- the pre-filter never hides a failure ------------------------------------------------------
FRAGMENTS = [
    "unauthorized: authentication required",
    "denied: requested access to the resource is denied",
    "toomanyrequests: You have reached your pull rate limit",
    "incorrect username or password",
    "HTTP Basic: Access denied",
    "insufficient_scope",
    "403 Forbidden",
    "401 Unauthorized",
    "429 Too Many Requests",
    "no basic auth credentials",
    "failed to authorize",
    "authorization token has expired",
    "pull access denied for acme/api",
    ": unauthorized",
    "invalid username/password",
]
noise_text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=60)


@settings(max_examples=400, deadline=None)
@given(noise_text, st.sampled_from(FRAGMENTS), noise_text, st.booleans())
def test_prefilter_accepts_every_line_the_rules_accept(
    before: str, fragment: str, after: str, upper: bool
) -> None:
    line = before + (fragment.upper() if upper else fragment) + after
    failure = DEFAULT.recognize(line, unit="u", time=WHEN)
    if failure is not None:
        assert DEFAULT.might_match(line.encode("utf-8"))


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(FRAGMENTS), st.lists(st.booleans(), min_size=60, max_size=60))
def test_prefilter_holds_for_any_ascii_casing(fragment: str, flips: list[bool]) -> None:
    line = "".join(c.swapcase() if flip else c for c, flip in zip(fragment, flips, strict=False))
    line += fragment[len(flips) :]
    assert DEFAULT.recognize(line, unit="u", time=WHEN) is not None
    assert DEFAULT.might_match(line.encode("utf-8"))


@settings(max_examples=300, deadline=None)
@given(noise_text)
def test_recognize_is_total_and_prefilter_is_a_superset(line: str) -> None:
    failure = DEFAULT.recognize(line, unit="u", time=WHEN)
    if failure is not None:
        assert DEFAULT.might_match(line.encode("utf-8"))
        assert len(failure.message) <= MAX_MESSAGE_CHARS


@settings(max_examples=200, deadline=None)
@given(st.from_regex(r"[a-z0-9]{1,12}(/[a-z0-9]{1,12}){0,2}", fullmatch=True))
def test_image_names_with_failure_words_are_not_failures(name: str) -> None:
    for word in ("unauthorized", "denied", "toomanyrequests"):
        line = f'level=info msg="Pulling repository docker.io/{name}/{word}:latest"'
        assert DEFAULT.recognize(line, unit="u", time=WHEN) is None


# --- secrets -----------------------------------------------------------------------------------
SECRET = "s3cr3t-Pa55w0rd-tok3n"


@pytest.mark.parametrize(
    "line",
    [
        f"unauthorized: authentication required Authorization: Bearer {SECRET}",
        f"unauthorized: authentication required Authorization: Basic {SECRET}",
        f'Get "https://alice:{SECRET}@registry.example.com/v2/": unauthorized',
        f'Get "https://auth.example.com/token?account=a&password={SECRET}": unauthorized',
        f'unauthorized: body={{"username":"alice","password":"{SECRET}"}}',
        f'unauthorized: {{\\"auth\\":\\"{SECRET}\\"}}',
        f"unauthorized: access_token={SECRET}&scope=x",
        "unauthorized: eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl",
    ],
)
def test_secrets_never_reach_the_failure(line: str) -> None:
    failure = DEFAULT.recognize(line, unit="u", time=WHEN)
    assert failure is not None
    rendered = json.dumps(failure.as_dict()) + repr(failure)
    assert SECRET not in rendered
    assert "c2lnbmF0dXJl" not in rendered
    assert "<redacted>" in failure.message


def test_redaction_keeps_ordinary_words() -> None:
    for line in (
        "no basic auth credentials",
        "failed to fetch oauth token: unexpected status from POST request to "
        "https://auth.docker.io/token: 401 Unauthorized",
        "unauthorized: HTTP Basic: Access denied",
    ):
        assert redact(line) == line


@settings(max_examples=200, deadline=None)
@given(st.from_regex(r"[A-Za-z0-9._~+/-]{8,40}", fullmatch=True))
def test_bearer_values_are_always_redacted(token: str) -> None:
    assert token not in redact(f"error: Bearer {token} unauthorized")
    assert token not in redact(f"https://user:{token}@host/v2/")


# --- extra patterns ----------------------------------------------------------------------------
def test_extra_patterns_with_named_groups() -> None:
    extra = compile_patterns(
        [
            r"myregistry refused (?P<repository>\S+) on (?P<registry>\S+)",
            {"pattern": r"quota exhausted", "kind": "rate_limited"},
            r"ACL says (?P<kind>denied|toomanyrequests)",
        ]
    )
    rec = Recognizer(extra)
    one = rec.recognize("myregistry refused acme/api on r.example:5000", unit="u", time=WHEN)
    assert one is not None
    assert (one.kind, one.registry, one.repository) == (
        FailureKind.UNAUTHORIZED,
        "r.example:5000",
        "acme/api",
    )
    two = rec.recognize("quota exhausted for today", unit="u", time=WHEN)
    assert two is not None and two.kind is FailureKind.RATE_LIMITED
    three = rec.recognize("ACL says toomanyrequests", unit="u", time=WHEN)
    assert three is not None and three.kind is FailureKind.RATE_LIMITED
    four = rec.recognize("ACL says denied", unit="u", time=WHEN)
    assert four is not None and four.kind is FailureKind.DENIED
    # The built-in rules still apply, and with extras the pre-filter lets everything through.
    assert rec.recognize("unauthorized: authentication required", unit="u", time=WHEN)
    assert rec.might_match(b"quota exhausted")
    assert not DEFAULT.might_match(b"quota exhausted")


@pytest.mark.parametrize(
    ("spec", "complaint"),
    [
        ("(unclosed", "not a valid regex"),
        (r"(?P<host>x)", "unknown named group"),
        ({"pattern": "x", "kind": "forbidden"}, "is not one of"),
        ({"regex": "x"}, "expected a regex string or a table"),
    ],
)
def test_bad_extra_patterns_say_what_is_wrong(spec: object, complaint: str) -> None:
    with pytest.raises(PatternError, match=re.escape(complaint)) as info:
        compile_patterns([spec])  # type: ignore[list-item]
    assert "journal pattern #1" in str(info.value)


# --- names -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("ref", "expect"),
    [
        ("alpine", ("docker.io", "library/alpine")),
        ("alpine:3.19", ("docker.io", "library/alpine")),
        ("acme/api:v1", ("docker.io", "acme/api")),
        ("docker.io/acme/api", ("docker.io", "acme/api")),
        ("index.docker.io/library/alpine@sha256:abc", ("docker.io", "library/alpine")),
        ("registry-1.docker.io/acme/api", ("docker.io", "acme/api")),
        ("ghcr.io/acme/api@sha256:abc", ("ghcr.io", "acme/api")),
        ("localhost:5000/team/app:v1", ("localhost:5000", "team/app")),
        ("localhost/app", ("localhost", "app")),
        ("127.0.0.1:5000/app", ("127.0.0.1:5000", "app")),
    ],
)
def test_split_reference(ref: str, expect: tuple[str, str]) -> None:
    assert split_reference(ref) == expect


@pytest.mark.parametrize(
    "host", ["docker.io", "index.docker.io", "registry-1.docker.io", "auth.docker.io", "DOCKER.IO"]
)
def test_every_hub_host_is_docker_io(host: str) -> None:
    assert registry_name(host) == "docker.io"


def test_other_hosts_keep_their_spelling() -> None:
    assert registry_name("Registry.Example.com:5000") == "Registry.Example.com:5000"


# --- plain log lines ---------------------------------------------------------------------------
NOW = datetime(2026, 11, 30, 13, 0, 0, tzinfo=UTC)


def test_split_syslog_line() -> None:
    when, ident, message = split_log_line(
        "Nov 30 12:03:01 build-7 dockerd[812]: level=error msg=x\n", now=NOW
    )
    assert (when, ident, message) == (
        datetime(2026, 11, 30, 12, 3, 1).astimezone().astimezone(UTC),  # local time
        "dockerd",
        "level=error msg=x",
    )


def test_logfmt_time_wins_over_syslog_prefix() -> None:
    when, ident, _ = split_log_line(
        'Nov 30 12:03:01 h dockerd[1]: time="2026-11-30T12:03:00.987654321Z" level=error', now=NOW
    )
    assert when == datetime(2026, 11, 30, 12, 3, 0, 987654, tzinfo=UTC)
    assert ident == "dockerd"


def test_docker_desktop_line() -> None:
    when, ident, message = split_log_line(
        "[2026-11-30T12:03:01.123456789Z][dockerd][I] unauthorized: authentication required",
        now=NOW,
    )
    assert when == datetime(2026, 11, 30, 12, 3, 1, 123456, tzinfo=UTC)
    assert ident == "dockerd"
    assert message == "unauthorized: authentication required"


def test_iso_offsets_are_kept() -> None:
    when, _, _ = split_log_line("2026-11-30 14:03:01+02:00 something", now=NOW)
    assert when == datetime(2026, 11, 30, 14, 3, 1, tzinfo=timezone(timedelta(hours=2)))


def test_december_line_read_in_january_is_last_year() -> None:
    january = datetime(2027, 1, 1, 12, 5).astimezone()
    when, _, _ = split_log_line("Dec 31 23:59:59 h dockerd[1]: x", now=january)
    assert when.year == 2026


def test_line_without_time_takes_now() -> None:
    assert split_log_line("plain words", now=NOW) == (NOW, None, "plain words")


# --- the value -----------------------------------------------------------------------------------
def test_failure_is_frozen_and_renders_flat_json() -> None:
    failure = recognize(
        'msg="Not continuing with push after error" error="unauthorized: authentication required"',
        unit="docker.service",
        time=WHEN,
    )
    assert failure is not None
    with pytest.raises(dataclasses.FrozenInstanceError):
        failure.kind = FailureKind.DENIED  # type: ignore[misc]
    assert failure.as_dict() == {
        "kind": "unauthorized",
        "registry": None,
        "repository": None,
        "operation": "push",
        "unit": "docker.service",
        "time": "2026-11-30T12:03:01+00:00",
        "message": 'msg="Not continuing with push after error" '
        'error="unauthorized: authentication required"',
    }


def test_long_messages_are_cut() -> None:
    failure = recognize("unauthorized: " + "x" * 10_000, unit="u", time=WHEN)
    assert failure is not None
    assert len(failure.message) == MAX_MESSAGE_CHARS


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.binary(max_size=40),
            st.sampled_from([f.encode() for f in FRAGMENTS]),
            st.builds(
                lambda a, f, b: a + f.encode() + b,
                st.binary(max_size=10),
                st.sampled_from(FRAGMENTS),
                st.binary(max_size=10),
            ),
        ),
        max_size=30,
    )
)
def test_batch_candidates_equal_the_per_message_prefilter(messages: list[bytes]) -> None:
    assert DEFAULT.candidates(messages) == [
        i for i, m in enumerate(messages) if DEFAULT.might_match(m)
    ]
    assert Recognizer(compile_patterns(["x"])).candidates(messages) == list(range(len(messages)))
