"""regauthd.redact: one marker, whole values only, every string a config view does not know."""

from __future__ import annotations

import json
import string

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from regauthd.redact import REDACTED, redact_config, redact_text, secret_values
from regauthd.redactor import Redactor

SECRETS = ("x", "pass", "Zx9-aB7_cD5.eF3+gH1/iJ0=kL2~mN4pQ6rS8tU0v")
"""1, 4 and 40 characters (the last with every character a token may hold)."""

POSITIONS = (
    ('{{"password": "{s}"}}', '{{"password": "{r}"}}'),  # a JSON string value
    ("password={s}&next=1", "password={r}&next=1"),  # key=value
    ("Authorization: {s}", "Authorization: {r}"),  # a header line
    ("user:{s}", "user:{r}"),  # a user:password pair
    ("basic {s}", "basic {r}"),  # a header value
    # URL user info: the whole user info goes, the password because it is known
    ("https://alice:{s}@registry.example/v2/", "https://{r}@registry.example/v2/"),
    ("https://{s}@registry.example/v2/", "https://{r}@registry.example/v2/"),
    ("the registry said {s} is wrong", "the registry said {r} is wrong"),  # a token alone
    ("{s}", "{r}"),  # a whole value (a log field)
)
ORDINARY = (
    "wrong password",
    "passing bypasses passports",
    "expected xml, got max",
    "no basic auth credentials",
)


@pytest.mark.parametrize("secret", SECRETS, ids=["1-char", "4-char", "40-char"])
@pytest.mark.parametrize(("position", "expected"), POSITIONS)
def test_a_secret_is_replaced_where_it_stands_as_a_value(
    secret: str, position: str, expected: str
) -> None:
    assert redact_text(position.format(s=secret), [secret]) == expected.format(r=REDACTED)


@pytest.mark.parametrize("secret", SECRETS, ids=["1-char", "4-char", "40-char"])
@pytest.mark.parametrize("line", ORDINARY)
def test_ordinary_words_stay_readable_whatever_the_secret(secret: str, line: str) -> None:
    assert redact_text(line, [secret]) == line


def test_the_reported_defect_reads_whole() -> None:
    assert redact_text("login failed: wrong password for pass", ["pass"]) == (
        f"login failed: wrong password for {REDACTED}"
    )


def test_secrets_by_place_need_no_memory() -> None:
    jwt = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"
    line = f'token={jwt} "password": "hunter2" Bearer abcdefgh12 https://u:p@h/'
    out = redact_text(line)
    for secret in (jwt, "hunter2", "abcdefgh12", "u:p@"):
        assert secret not in out
    assert out.count(REDACTED) == 4


def test_a_key_glued_to_a_word_still_hides_its_value() -> None:
    """Found by the journal fuzz target: `requiredpassword=...`, `db_password=...`."""
    for line in (
        "authentication requiredpassword=hunter2x",
        "db_password=hunter2x",
        "XTOKEN=hunter2x",
    ):
        assert "hunter2x" not in redact_text(line)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=string.ascii_letters + string.digits + "-._~+/=!#$%", min_size=1))
def test_a_remembered_secret_never_survives_as_a_whole_value(secret: str) -> None:
    assume(secret not in "note .")
    redactor = Redactor()
    redactor.remember([secret])
    assert redactor.text(secret) == REDACTED
    assert redactor.text(f'"{secret}"') == f'"{REDACTED}"'
    assert redactor.text(f"note {secret}.") == f"note {REDACTED}."


TOKEN = string.ascii_letters + string.digits + "-._~+/="


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.text(alphabet=TOKEN, min_size=1, max_size=12), min_size=1, max_size=4),
    st.lists(
        st.one_of(
            st.integers(0, 3),
            st.text(alphabet=TOKEN + " :@\"'/?&,;()\n", max_size=8),
        ),
        max_size=12,
    ),
)
def test_the_redactor_replaces_exactly_what_the_rule_does(
    secrets: list[str], pieces: list[int | str]
) -> None:
    """The redactor looks only where a secret may start (no word character before it) and
    remembers its answers: the text it gives is still the rule's (:func:`redact_text`)."""
    text = "".join(secrets[p % len(secrets)] if isinstance(p, int) else p for p in pieces)
    redactor = Redactor()
    redactor.remember(secrets)
    expected = redact_text(text, secrets)
    assert redactor.text(text) == expected
    assert redactor.text(text) == expected  # the answer remembered


def test_a_text_redacted_before_its_secret_was_known_is_redacted_after() -> None:
    redactor = Redactor()
    line = "login as ci-bot with s3cr3t-Token-42 failed"
    assert redactor.text(line) == line  # nothing known yet
    redactor.remember(["s3cr3t-Token-42"])
    assert redactor.text(line) == f"login as ci-bot with {REDACTED} failed"
    redactor.remember(["s3cr3t-Token-42"])  # known already: the answer stays
    assert redactor.text(line) == f"login as ci-bot with {REDACTED} failed"
    redactor.remember(["ci-bot"])
    assert redactor.text(line) == f"login as {REDACTED} with {REDACTED} failed"


def test_config_views_keep_names_and_hide_every_unknown_string() -> None:
    config = {
        "auths": {"ghcr.io": {"auth": "YWxpY2U6aHVudGVyMg==", "email": "a@example.com"}},
        "credHelpers": {"gcr.io": "gcloud"},
        "credsStore": "pass",
        "HttpHeaders": {"X-Api-Key": "sk-live-123", "User-Agent": "ci"},
        "proxies": {"default": {"httpsProxy": "http://bob:proxy-pw@proxy:3128"}},
        "psFormat": "table {{.ID}}",
    }
    view = redact_config(config)
    text = json.dumps(view)
    for secret in ("hunter2", "YWxpY2U6aHVudGVyMg==", "sk-live-123", "proxy-pw"):
        assert secret not in text
    assert view["auths"]["ghcr.io"]["auth"] == "<redacted auth for user alice>"
    assert view["auths"]["ghcr.io"]["email"] == "a@example.com"
    assert view["credHelpers"] == {"gcr.io": "gcloud"}
    assert view["credsStore"] == "pass"
    assert view["psFormat"] == "table {{.ID}}"
    assert view["HttpHeaders"] == {"X-Api-Key": REDACTED, "User-Agent": REDACTED}
    assert config["HttpHeaders"]["X-Api-Key"] == "sk-live-123"  # the original is untouched


def test_secret_values_include_the_decoded_password() -> None:
    found = set(secret_values({"auths": {"h": {"auth": "YWxpY2U6aHVudGVyMg==", "x": "y"}}}))
    assert found == {"YWxpY2U6aHVudGVyMg==", "hunter2"}
