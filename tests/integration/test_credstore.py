"""regauthd.dockerconfig.stores against the real ``docker-credential-pass`` helper, the file
store, and the Docker CLI itself as the oracle for :func:`resolve`.

Small shell-script helpers written by the tests stand in only where the real helper cannot be
made to misbehave: hanging, printing garbage, echoing the secret back.
"""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path
from typing import Any

import pytest

from regauthd.dockerconfig.auth import (
    IDENTITY_TOKEN_USERNAME,
    Credential,
    credential_from_entry,
    decode_auth,
    encode_auth,
)
from regauthd.dockerconfig.keys import HUB_CANONICAL
from regauthd.dockerconfig.stores import (
    CredentialError,
    CredentialHelperError,
    FileStore,
    HelperStore,
    resolve,
    store_for,
)
from tests.conftest import require_program, require_tool
from tests.rigs.clients import Sandbox, docker_hub_banner_user, docker_login_banner_user
from tests.rigs.configs import auth
from tests.rigs.passhelper import PassHelper, start_pass

SECRET = "Sup3r-s3cret-Pa55word"
TOKEN = "eyJhbGciOiJSUzI1NiJ9.identity-refresh-token-value"


@pytest.fixture
def pass_store(pass_helper: PassHelper) -> HelperStore:
    return HelperStore("pass", env=pass_helper.env)


def _script_helper(directory: Path, name: str, body: str) -> dict[str, str]:
    """Write ``docker-credential-<name>`` as a sh script; return an env whose PATH finds it."""
    directory.mkdir(parents=True, exist_ok=True)
    script = directory / f"docker-credential-{name}"
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return {"PATH": f"{directory}:/usr/bin:/bin", "HOME": str(directory)}


# ---------------------------------------------------------------------------------------------
# HelperStore with the real pass helper


def test_pass_store_get_list_erase_roundtrip(
    pass_store: HelperStore, pass_helper: PassHelper
) -> None:
    pass_store.store("registry.example:5000", Credential("alice", SECRET))

    assert pass_store.get("registry.example:5000") == Credential("alice", SECRET)
    assert pass_store.list() == {"registry.example:5000": "alice"}
    # The rig reads the store on its own: the secret really went into pass.
    assert pass_helper.get("registry.example:5000") == ("alice", SECRET)

    pass_store.erase("registry.example:5000")
    assert pass_helper.get("registry.example:5000") is None
    assert pass_store.list() == {}


def test_pass_store_overwrites_an_existing_entry(pass_store: HelperStore) -> None:
    pass_store.store("ghcr.io", Credential("alice", "old-password"))
    pass_store.store("ghcr.io", Credential("bob", SECRET))
    assert pass_store.get("ghcr.io") == Credential("bob", SECRET)


def test_pass_store_keeps_identity_tokens(pass_store: HelperStore, pass_helper: PassHelper) -> None:
    pass_store.store(HUB_CANONICAL, Credential(IDENTITY_TOKEN_USERNAME, TOKEN))

    got = pass_store.get(HUB_CANONICAL)
    assert got is not None
    assert got.is_identity_token
    assert got.secret == TOKEN
    assert pass_helper.get(HUB_CANONICAL) == ("<token>", TOKEN)


def test_pass_store_get_of_a_missing_url_is_none(
    pass_store: HelperStore, pass_helper: PassHelper
) -> None:
    # docker-credential-helpers 0.6 (Debian 12) answers a missing entry with exit 0 and empty
    # Username/Secret; later versions say "credentials not found". Both mean "no credential".
    pass_helper.store("docker.io", "alice", SECRET)
    assert pass_store.get("never-stored.example") is None
    # pass matches the URL byte for byte: another spelling of the same registry is not found.
    assert pass_store.get(HUB_CANONICAL) is None


def test_pass_store_erase_of_a_missing_url_is_not_an_error(pass_store: HelperStore) -> None:
    # FileStore.erase ignores a missing key; re-keying erases an old URL that a concurrent
    # `docker logout` may already have removed. The helper store must behave the same.
    pass_store.erase("never-stored.example")


def test_pass_store_matches_urls_exactly(pass_store: HelperStore, pass_helper: PassHelper) -> None:
    pass_helper.store("https://index.docker.io/v1/", "alice", SECRET)
    pass_helper.store("docker.io", "bob", "other-" + SECRET)
    assert pass_store.get("docker.io") == Credential("bob", "other-" + SECRET)
    assert pass_store.get(HUB_CANONICAL) == Credential("alice", SECRET)
    assert pass_store.list() == {HUB_CANONICAL: "alice", "docker.io": "bob"}


# ---------------------------------------------------------------------------------------------
# HelperStore failure modes


def test_missing_helper_program_is_a_typed_error(tmp_path: Path) -> None:
    store = HelperStore("regauthd-no-such-helper", env={"PATH": str(tmp_path)})
    with pytest.raises(CredentialHelperError, match="docker-credential-regauthd-no-such-helper"):
        store.get("ghcr.io")
    with pytest.raises(CredentialHelperError, match="not installed"):
        store.store("ghcr.io", Credential("alice", SECRET))


def test_a_hanging_helper_times_out_with_an_actionable_error(tmp_path: Path) -> None:
    # exec: the process the timeout kills is the sleep itself, so nothing is left behind.
    env = _script_helper(tmp_path / "bin", "hang", "exec sleep 60\n")
    store = HelperStore("hang", timeout=0.3, env=env)
    with pytest.raises(CredentialHelperError, match="did not answer") as info:
        store.get("ghcr.io")
    assert "docker-credential-hang get" in str(info.value)


def test_a_helper_printing_garbage_is_a_typed_error(tmp_path: Path) -> None:
    env = _script_helper(tmp_path / "bin", "garbage", f"cat >/dev/null; echo 'oops {SECRET}'\n")
    store = HelperStore("garbage", env=env)
    with pytest.raises(CredentialHelperError, match="not the helper protocol") as info:
        store.get("ghcr.io")
    assert SECRET not in str(info.value)
    with pytest.raises(CredentialHelperError, match="did not print JSON"):
        store.list()


def test_helper_json_without_the_protocol_fields_is_a_typed_error(tmp_path: Path) -> None:
    env = _script_helper(tmp_path / "bin", "partial", 'cat >/dev/null; echo \'{"Secret": "x"}\'\n')
    with pytest.raises(CredentialHelperError, match="not the helper protocol"):
        HelperStore("partial", env=env).get("ghcr.io")


def test_helper_errors_never_carry_the_secret(tmp_path: Path) -> None:
    # A buggy helper that echoes what it was given (the store payload holds the secret) and a
    # secret of its own, then fails.
    env = _script_helper(tmp_path / "bin", "echoer", f"cat; echo ' {SECRET}'; exit 1\n")
    store = HelperStore("echoer", env=env)
    errors: list[CredentialError] = []
    for call in (
        lambda: store.store("ghcr.io", Credential("alice", SECRET)),
        lambda: store.get("ghcr.io"),
        lambda: store.erase("ghcr.io"),
        store.list,
    ):
        with pytest.raises(CredentialHelperError) as info:
            call()
        errors.append(info.value)
    for error in errors:
        assert "docker-credential-echoer" in str(error)
        assert SECRET not in str(error)
        assert SECRET not in repr(error)
        assert error.__cause__ is None or SECRET not in str(error.__cause__)


def test_the_secret_travels_on_stdin_never_on_the_command_line(tmp_path: Path) -> None:
    log = tmp_path / "argv.log"
    env = _script_helper(
        tmp_path / "bin",
        "recorder",
        f'echo "$0 $*" >> {log}; env >> {log}; cat > /dev/null; exit 0\n',
    )
    HelperStore("recorder", env=env).store("ghcr.io", Credential("alice", SECRET))
    recorded = log.read_text()
    assert "recorder store" in recorded
    assert SECRET not in recorded


def test_store_failure_is_a_typed_error(tmp_path: Path) -> None:
    env = _script_helper(tmp_path / "bin", "readonly", "cat >/dev/null; echo denied; exit 1\n")
    with pytest.raises(
        CredentialHelperError, match=r"store` failed for ghcr.io \(exit status 1\): denied$"
    ):
        HelperStore("readonly", env=env).store("ghcr.io", Credential("alice", SECRET))


def test_a_failing_helper_is_quoted_verbatim_with_the_secret_redacted(tmp_path: Path) -> None:
    env = _script_helper(
        tmp_path / "bin",
        "uninit",
        'read -r line; echo "pass not initialized: $line" ; exit 1\n',
    )
    with pytest.raises(CredentialHelperError) as caught:
        HelperStore("uninit", env=env).store("ghcr.io", Credential("alice", SECRET))
    text = str(caught.value)
    assert "failed for ghcr.io (exit status 1): pass not initialized:" in text
    assert SECRET not in text
    assert "<redacted>" in text


# ---------------------------------------------------------------------------------------------
# Credential, decode_auth, FileStore


def test_credential_repr_and_str_hide_the_secret() -> None:
    cred = Credential("alice", SECRET)
    assert SECRET not in repr(cred)
    assert SECRET not in str(cred)
    assert SECRET not in repr([cred, {"k": cred}])
    assert "alice" in repr(cred)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("not base64 at all!!", "not valid base64"),
        (base64.b64encode(SECRET.encode()).decode(), "without a ':'"),
        (base64.b64encode(f":{SECRET}".encode()).decode(), "empty user name"),
    ],
)
def test_decode_auth_errors_name_the_problem_not_the_secret(value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        decode_auth(value)
    assert SECRET not in str(info.value)
    assert value not in str(info.value)


def test_decode_auth_splits_at_the_first_colon_and_trims_nul_bytes() -> None:
    raw = base64.b64encode(b"alice:pa:ss\x00\x00").decode()
    assert decode_auth(raw) == ("alice", "pa:ss")
    assert decode_auth(encode_auth("bob", SECRET)) == ("bob", SECRET)


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ({"auth": auth("alice", SECRET)}, Credential("alice", SECRET)),
        ({"username": "bob", "password": SECRET}, Credential("bob", SECRET)),
        ({"identitytoken": TOKEN}, Credential(IDENTITY_TOKEN_USERNAME, TOKEN)),
        (
            {"auth": auth("carol", ""), "identitytoken": TOKEN},
            Credential("carol", TOKEN, identity_token=True),
        ),
        ({}, None),
        ({"auth": "%%%"}, None),
        ({"email": "a@example.com"}, None),
    ],
)
def test_credential_from_entry(entry: dict[str, Any], expected: Credential | None) -> None:
    assert credential_from_entry(entry) == expected


def test_file_store_get_store_erase_list() -> None:
    config: dict[str, Any] = {"auths": {"ghcr.io": {"auth": auth("alice", SECRET), "email": "x"}}}
    store = FileStore(config)

    assert store.get("ghcr.io") == Credential("alice", SECRET)
    assert store.get("quay.io") is None
    store.store("quay.io", Credential("bob", SECRET))
    store.store(HUB_CANONICAL, Credential(IDENTITY_TOKEN_USERNAME, TOKEN))

    assert config["auths"]["quay.io"] == {"auth": auth("bob", SECRET)}
    assert config["auths"][HUB_CANONICAL] == {"identitytoken": TOKEN}
    assert store.list() == {"ghcr.io": "alice", "quay.io": "bob", HUB_CANONICAL: "<token>"}

    store.erase("quay.io")
    store.erase("never-there")
    assert set(config["auths"]) == {"ghcr.io", HUB_CANONICAL}


def test_file_store_refuses_auths_that_is_not_an_object() -> None:
    with pytest.raises(CredentialError, match="`auths`"):
        FileStore({"auths": ["ghcr.io"]}).get("ghcr.io")


def test_store_for_follows_docker_precedence(pass_helper: PassHelper) -> None:
    config: dict[str, Any] = {
        "auths": {},
        "credsStore": "pass",
        "credHelpers": {"gcr.io": "gcloud"},
    }
    assert isinstance(store_for(config, "ghcr.io"), HelperStore)
    gcr = store_for(config, "gcr.io")
    assert isinstance(gcr, HelperStore) and gcr.name == "gcloud"
    del config["credsStore"]
    assert isinstance(store_for(config, "ghcr.io"), FileStore)


# ---------------------------------------------------------------------------------------------
# resolve(), with the real Docker CLI as the oracle


@pytest.fixture
def docker_sandbox(tmp_path: Path) -> Sandbox:
    require_program("docker", "docker.io")
    return Sandbox.create(tmp_path / "clients")


def _write_config(directory: Path, config: dict[str, Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config))
    return directory


HUB_KEYS = [
    HUB_CANONICAL,
    "docker.io",
    "index.docker.io",
    "https://docker.io",
    "https://index.docker.io/v1",
    "https://index.docker.io/v2/",
    "registry-1.docker.io",
]


@pytest.mark.parametrize("key", HUB_KEYS)
def test_resolve_finds_hub_credentials_exactly_where_docker_does(
    key: str, tmp_path: Path, docker_sandbox: Sandbox
) -> None:
    config = {"auths": {key: {"auth": auth("hubuser", SECRET)}}}
    cfg = _write_config(tmp_path / "cfg", config)

    found = resolve(config, "docker.io")
    docker_user = docker_hub_banner_user(cfg, sandbox=docker_sandbox)

    assert (found[1].username if found else None) == docker_user
    assert (found is not None) == (key == HUB_CANONICAL)


LEGACY_KEYS = [
    "127.0.0.1:5000",
    "https://127.0.0.1:5000/v1/",
    "http://127.0.0.1:5000",
    "https://127.0.0.1:5000/v2/",
    "127.0.0.1:5000/",
    " 127.0.0.1:5000",
    "127.0.0.1:5001",
]


@pytest.mark.parametrize("key", LEGACY_KEYS)
def test_resolve_follows_dockers_legacy_host_loop(
    key: str, tmp_path: Path, docker_sandbox: Sandbox
) -> None:
    config = {"auths": {key: {"auth": auth("reguser", SECRET)}}}
    cfg = _write_config(tmp_path / "cfg", config)

    found = resolve(config, "127.0.0.1:5000")
    docker_user = docker_login_banner_user(cfg, "127.0.0.1:5000", sandbox=docker_sandbox)

    assert (found[1].username if found else None) == docker_user
    if found is not None:
        assert found[0] == key


def test_resolve_prefers_the_exact_key(tmp_path: Path) -> None:
    config = {
        "auths": {
            "https://127.0.0.1:5000/v1/": {"auth": auth("legacy", SECRET)},
            "127.0.0.1:5000": {"auth": auth("exact", SECRET)},
        }
    }
    assert resolve(config, "127.0.0.1:5000") == ("127.0.0.1:5000", Credential("exact", SECRET))


def test_resolve_reads_the_helper_under_the_exact_key_only(
    tmp_path: Path, pass_helper: PassHelper
) -> None:
    require_program("docker", "docker.io")
    sandbox = Sandbox.create(tmp_path / "clients", helpers=("pass",), env=pass_helper.gpg_env)
    pass_helper.store(HUB_CANONICAL, "hubuser", SECRET)
    pass_helper.store("https://127.0.0.1:5000/v1/", "legacy", SECRET)
    config: dict[str, Any] = {
        "auths": {HUB_CANONICAL: {}, "https://127.0.0.1:5000/v1/": {}},
        "credsStore": "pass",
    }
    cfg = _write_config(tmp_path / "cfg", config)

    assert resolve(config, "docker.io", env=pass_helper.env) == (
        HUB_CANONICAL,
        Credential("hubuser", SECRET),
    )
    assert docker_hub_banner_user(cfg, sandbox=sandbox) == "hubuser"
    # Docker asks the helper for the exact key only: the legacy spelling is invisible to it.
    assert docker_login_banner_user(cfg, "127.0.0.1:5000", sandbox=sandbox) is None
    assert resolve(config, "127.0.0.1:5000", env=pass_helper.env) is None


def test_resolve_uses_cred_helpers_before_the_file(tmp_path: Path, pass_helper: PassHelper) -> None:
    pass_helper.store("ghcr.io", "from-pass", SECRET)
    config: dict[str, Any] = {
        "auths": {"ghcr.io": {"auth": auth("from-file", SECRET)}},
        "credHelpers": {"ghcr.io": "pass"},
    }
    assert resolve(config, "ghcr.io", env=pass_helper.env) == (
        "ghcr.io",
        Credential("from-pass", SECRET),
    )


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if text.encode() in cmdline:
            found.append(int(entry.name))
    return found


def test_pass_rig_stops_its_gpg_agent(tmp_path: Path) -> None:
    require_program("gpg", "gnupg")
    require_tool("pass")
    require_tool("docker-credential-pass")
    helper = start_pass(tmp_path / "pass")
    helper.store("ghcr.io", "alice", SECRET)
    assert helper.get("ghcr.io") == ("alice", SECRET)  # decrypting needs the agent
    assert _processes_mentioning(str(helper.gnupg_home)), "no gpg-agent for the rig's GNUPGHOME"
    helper.stop()
    assert _processes_mentioning(str(helper.gnupg_home)) == []
    assert not helper.gnupg_home.exists()
