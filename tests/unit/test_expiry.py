"""Reading the expiry a credential carries (regauthd.dockerconfig.expiry, pure) and remembering
which expiry alerts went out (regauthd.service.expirymemory)."""

from __future__ import annotations

import base64
import json
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from regauthd.dockerconfig.auth import Credential
from regauthd.dockerconfig.expiry import (
    NO_EXPIRY,
    CredentialExpiry,
    Expiry,
    ExpiryState,
    credential_expiry,
    describe,
    earliest_by_registry,
    expiry_findings,
    expiry_note,
    format_duration,
    judge,
    read_expiry,
    secret_expiry,
)
from regauthd.service.expirymemory import KEY_FILE, MEMORY_FILE, ExpiryMemory
from tests.rigs.configs import auth
from tests.rigs.tokens import ecr_password, jwt_token

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
IN_12H = NOW + timedelta(hours=12)
ECR_HOST = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# -- Amazon ECR ----------------------------------------------------------------------------------


def test_ecr_password_in_auth_as_docker_login_stores_it() -> None:
    password = ecr_password(IN_12H)
    # The shape of a real one: `aws ecr get-login-password` output starts like this.
    assert password.startswith("eyJwYXlsb2FkIjoi")
    found = read_expiry({"auth": auth("AWS", password)})
    assert found == Expiry(IN_12H, "ecr", "password")
    assert describe(found, NOW) == "expires in 12 h"


def test_ecr_password_without_padding_and_in_username_password_fields() -> None:
    password = ecr_password(IN_12H).rstrip("=")
    assert read_expiry({"username": "AWS", "password": password}).expires_at == IN_12H


def test_ecr_shaped_json_without_its_fields_is_not_read() -> None:
    doc = {"payload": "x", "version": "2", "expiration": int(IN_12H.timestamp())}  # no datakey
    assert secret_expiry(b64(json.dumps(doc).encode())) == NO_EXPIRY


def test_ecr_expiration_in_milliseconds_is_not_guessed() -> None:
    doc = {"payload": "x", "datakey": "y", "expiration": int(IN_12H.timestamp()) * 1000}
    assert secret_expiry(b64(json.dumps(doc).encode())) == NO_EXPIRY


# -- JWTs ----------------------------------------------------------------------------------------


def test_jwt_exp_in_a_password() -> None:
    found = read_expiry({"auth": auth("u", jwt_token(NOW + timedelta(hours=2, minutes=10)))})
    assert (found.source, found.field) == ("jwt exp", "password")
    assert describe(found, NOW) == "expires in 2 h 10 m"


def test_acr_identity_token_is_read_rather_than_the_empty_password() -> None:
    entry = {
        "auth": auth("00000000-0000-0000-0000-000000000000", ""),
        "identitytoken": jwt_token(NOW - timedelta(hours=3)),
    }
    found = read_expiry(entry)
    assert (found.source, found.field) == ("jwt exp", "identitytoken")
    assert describe(found, NOW) == "expired 3 h ago"


def test_only_the_secret_the_client_sends_is_read() -> None:
    # identitytoken is sent instead of the password: an expiry in the password is no alarm.
    entry = {"auth": auth("AWS", ecr_password(NOW)), "identitytoken": "opaque-refresh-token"}
    assert read_expiry(entry) == NO_EXPIRY
    # registrytoken is sent before either.
    entry["registrytoken"] = jwt_token(IN_12H)
    assert read_expiry(entry) == Expiry(IN_12H, "jwt exp", "registrytoken")


def test_signature_is_not_verified_and_rs256_reads_the_same() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode({"exp": int(IN_12H.timestamp())}, key, algorithm="RS256")
    assert secret_expiry(token).expires_at == IN_12H
    forged = token.rsplit(".", 1)[0] + ".c2lnbmF0dXJl"
    assert secret_expiry(forged).expires_at == IN_12H  # what the token says, not proven


def test_fractional_exp_and_helper_credentials() -> None:
    claims = b64url(json.dumps({"exp": IN_12H.timestamp() + 0.5}).encode())
    header = b64url(b'{"alg":"none"}')
    token = f"{header}.{claims}."
    assert secret_expiry(token).expires_at == IN_12H + timedelta(seconds=0.5)
    helper_answer = Credential("<token>", jwt_token(IN_12H))
    assert credential_expiry(helper_answer).field == "identitytoken"
    assert credential_expiry(Credential("AWS", ecr_password(IN_12H))).source == "ecr"


def test_tokens_without_a_readable_expiry_are_not_guessed() -> None:
    no_exp = jwt.encode({"sub": "x", "iat": int(NOW.timestamp())}, "k" * 32, algorithm="HS256")
    for secret in (
        "hunter2",
        "dckr_pat_2Vsq0Tk1lHqz9L8mAOL4cH0BvXk",
        "ghp_16C7e42F292c6912E7710c838347Ae178B4a",
        no_exp,
        "a.b.c",
        "eyJ.eyJ.x",
        "",
    ):
        assert read_expiry({"auth": auth("u", secret)}) == NO_EXPIRY, secret
    assert read_expiry({}) == NO_EXPIRY
    assert read_expiry({"auth": "not base64!"}) == NO_EXPIRY


# -- hostile input -------------------------------------------------------------------------------


def _jwt_with_claims(raw_claims: bytes) -> str:
    header = b64url(b'{"alg":"HS256"}')
    return f"{header}.{b64url(raw_claims)}.sig"


def test_hostile_values_give_no_expiry_and_no_exception() -> None:
    hostile_claims = [
        b'{"exp": ' + b"9" * 5000 + b"}",  # over Python's int digit limit
        b'{"exp": 1e400}',
        b'{"exp": NaN}',
        b'{"exp": Infinity}',
        b'{"exp": -1}',
        b'{"exp": true}',
        b'{"exp": "1900000000"}',
        b'{"exp": [1900000000]}',
        b"[" * 100_000 + b"]" * 100_000,
        b"\xff\xfe not utf-8",
        b"{" + b'"a":{' * 5000,
    ]
    for raw in hostile_claims:
        assert secret_expiry(_jwt_with_claims(raw)) == NO_EXPIRY, raw[:40]
        ecr_like = b64(raw.replace(b'"exp"', b'"payload":"","datakey":"","expiration"'))
        assert secret_expiry(ecr_like) == NO_EXPIRY
    assert secret_expiry("eyJ" + "A" * 5_000_000) == NO_EXPIRY  # too long: not decoded
    assert secret_expiry("eyJ====") == NO_EXPIRY
    assert secret_expiry(None) == NO_EXPIRY
    assert read_expiry({"auth": 12, "identitytoken": ["x"]}) == NO_EXPIRY


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.text(max_size=300),
        st.builds(lambda b: "eyJ" + b64(b), st.binary(max_size=300)),
        st.builds(lambda a, b: f"eyJ{b64url(a)}.{b64url(b)}.x", st.binary(), st.binary()),
    )
)
def test_any_text_reads_without_raising(secret: str) -> None:
    found = secret_expiry(secret)
    assert found == NO_EXPIRY or found.expires_at is not None


# -- what it means -------------------------------------------------------------------------------


def test_judge_and_durations() -> None:
    lead = timedelta(hours=1)
    at = Expiry(NOW + timedelta(minutes=40), "jwt exp", "password")
    assert judge(at, NOW, lead) is ExpiryState.EXPIRING
    assert judge(at, NOW, timedelta(minutes=30)) is ExpiryState.VALID
    assert judge(at, NOW + timedelta(hours=1), lead) is ExpiryState.EXPIRED
    assert judge(NO_EXPIRY, NOW, lead) is ExpiryState.UNKNOWN
    assert format_duration(timedelta(days=3, hours=4, minutes=5)) == "3 d 4 h"
    assert format_duration(timedelta(hours=2)) == "2 h"
    assert format_duration(timedelta(seconds=45)) == "45 s"
    assert format_duration(timedelta(seconds=-5)) == "0 s"


def test_findings_and_note_name_the_credential_never_the_secret() -> None:
    expired_pw = ecr_password(NOW - timedelta(hours=3))
    soon_pw = jwt_token(NOW + timedelta(minutes=40))
    items = [
        CredentialExpiry(ECR_HOST, "AWS", secret_expiry(expired_pw)),
        CredentialExpiry("ghcr.io", "bot", secret_expiry(soon_pw)),
        CredentialExpiry("quay.io", "q", NO_EXPIRY),
        CredentialExpiry("a.azurecr.io", "<token>", secret_expiry(jwt_token(IN_12H), "password")),
    ]
    found = expiry_findings("/c.json", items, NOW)
    assert [(f.code, f.severity, f.key) for f in found] == [
        ("credential_expired", "error", ECR_HOST),
        ("credential_expiring", "warning", "ghcr.io"),
    ]
    assert "expired 3 h ago" in found[0].message
    assert "aws ecr get-login-password --region eu-west-1" in found[0].fix
    assert "expires in 40 m" in found[1].message
    note = expiry_note(items, NOW)
    assert note is not None
    assert "1 with no readable expiry (quay.io" in note
    assert "a.azurecr.io, expires in 12 h" in note
    text = (
        note
        + json.dumps([f.as_dict() for f in found])
        + json.dumps([i.as_dict(NOW) for i in items])
    )
    for secret in (expired_pw, soon_pw, expired_pw[20:60], soon_pw.split(".")[1]):
        assert secret not in text
    assert earliest_by_registry(items) == {
        ECR_HOST: NOW - timedelta(hours=3),
        "ghcr.io": NOW + timedelta(minutes=40),
        "a.azurecr.io": IN_12H,
    }


# -- the memory of raised alerts ----------------------------------------------------------------


def test_memory_is_keyed_private_and_survives_a_restart(tmp_path: Path) -> None:
    memory = ExpiryMemory(tmp_path)
    memory.load()
    fp = memory.fingerprint(ECR_HOST, "AWS", IN_12H)
    assert not memory.raised(fp, "credential.expiring")
    memory.remember(fp, "credential.expiring", IN_12H)
    memory.save(NOW)
    for name in (KEY_FILE, MEMORY_FILE):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600
    content = (tmp_path / MEMORY_FILE).read_text()
    assert ECR_HOST not in content
    assert "AWS" not in content
    again = ExpiryMemory(tmp_path)
    again.load()
    assert again.fingerprint(ECR_HOST, "AWS", IN_12H) == fp
    assert again.raised(fp, "credential.expiring")
    assert not again.raised(fp, "credential.expired")
    # Another host's key gives another fingerprint: the file cannot be matched elsewhere.
    other = ExpiryMemory(tmp_path / "other")
    other.load()
    assert other.fingerprint(ECR_HOST, "AWS", IN_12H) != fp
    # Entries are dropped a month after their expiry.
    again.remember(again.fingerprint("x", "y", NOW), "credential.expired", NOW)
    again.save(NOW + timedelta(days=31))
    assert len(again) == 0


def test_memory_tolerates_a_damaged_file(tmp_path: Path) -> None:
    (tmp_path / MEMORY_FILE).write_text('{"raised": {"ab": 1, "cd": {"kinds": 3}}')
    memory = ExpiryMemory(tmp_path)
    memory.load()
    assert len(memory) == 0
