"""The normalization rules, as tables and as properties over generated configs."""

from __future__ import annotations

import base64
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from regauthd.dockerconfig.auth import decode_auth
from regauthd.dockerconfig.keys import HUB_CANONICAL, KeyKind, classify
from regauthd.dockerconfig.normalize import plan
from regauthd.dockerconfig.validate import validate
from tests.rigs.configs import auth as b64auth


def auth(user: str, password: str) -> dict[str, str]:
    return {"auth": b64auth(user, password)}


# ---------------------------------------------------------------- tables


def test_alias_is_renamed_in_place_and_everything_else_kept() -> None:
    config = {
        "auths": {
            "ghcr.io": auth("g", "1"),
            "docker.io": {**auth("alice", "pw"), "email": "a@example.com"},
            "quay.io": auth("q", "2"),
        },
        "psFormat": "table {{.ID}}",
        "proxies": {"default": {"httpProxy": "http://proxy:3128"}},
    }
    result = plan(config)
    assert list(result.config["auths"]) == ["ghcr.io", HUB_CANONICAL, "quay.io"]
    assert result.config["auths"][HUB_CANONICAL] == config["auths"]["docker.io"]
    assert result.config["psFormat"] == "table {{.ID}}"
    assert result.config["proxies"] == config["proxies"]
    assert [(c.action, c.from_key, c.to_key) for c in result.changes] == [
        ("rename", "docker.io", HUB_CANONICAL)
    ]


def test_same_credential_under_two_spellings_collapses_without_conflict() -> None:
    config = {"auths": {HUB_CANONICAL: auth("a", "p"), "index.docker.io": auth("a", "p")}}
    result = plan(config)
    assert result.config["auths"] == {HUB_CANONICAL: auth("a", "p")}
    assert result.conflicts == ()
    assert result.changes[0].action == "drop_duplicate"


def test_different_credentials_canonical_wins_and_loser_is_reported() -> None:
    config = {"auths": {"docker.io": auth("new", "p2"), HUB_CANONICAL: auth("old", "p1")}}
    result = plan(config)
    assert result.config["auths"] == {HUB_CANONICAL: auth("old", "p1")}
    (conflict,) = result.conflicts
    assert (conflict.winner, conflict.loser) == (HUB_CANONICAL, "docker.io")


def test_newest_write_wins_when_the_caller_knows_it() -> None:
    config = {"auths": {"docker.io": auth("new", "p2"), HUB_CANONICAL: auth("old", "p1")}}
    result = plan(config, prefer={"docker.io"})
    assert result.config["auths"] == {HUB_CANONICAL: auth("new", "p2")}
    (conflict,) = result.conflicts
    assert (conflict.winner, conflict.loser) == ("docker.io", HUB_CANONICAL)
    assert conflict.reason == "newest write wins"


def test_registry_1_is_copied_when_hub_has_no_credential() -> None:
    config = {"auths": {"registry-1.docker.io": auth("r", "p")}}
    result = plan(config)
    assert result.config["auths"] == {
        HUB_CANONICAL: auth("r", "p"),
        "registry-1.docker.io": auth("r", "p"),
    }
    assert plan(result.config).changed is False


def test_registry_1_is_not_copied_over_an_existing_hub_credential() -> None:
    config = {"auths": {HUB_CANONICAL: auth("a", "1"), "registry-1.docker.io": auth("r", "2")}}
    assert plan(config).changed is False


def test_hub_website_is_copied_and_reported() -> None:
    config = {"auths": {"hub.docker.com": auth("w", "p")}}
    result = plan(config)
    assert result.config["auths"][HUB_CANONICAL] == auth("w", "p")
    assert "hub.docker.com" in result.config["auths"]
    assert any(f.code == "hub_website_key" for f in result.findings)


def test_namespaced_keys_and_host_case_are_kept() -> None:
    config = {
        "auths": {
            "docker.io/acme": auth("n", "1"),
            "https://MyReg.Example.com/v2/": auth("m", "2"),
        }
    }
    result = plan(config)
    assert list(result.config["auths"]) == ["docker.io/acme", "MyReg.Example.com"]


def test_hub_cred_helper_is_set_for_docker_and_podman() -> None:
    result = plan({"credHelpers": {"docker.io": "pass"}})
    assert result.config["credHelpers"] == {"docker.io": "pass", HUB_CANONICAL: "pass"}
    result = plan({"credHelpers": {HUB_CANONICAL: "pass"}})
    assert result.config["credHelpers"] == {HUB_CANONICAL: "pass", "docker.io": "pass"}


def test_disagreeing_hub_cred_helpers_are_a_finding_not_a_guess() -> None:
    config = {"credHelpers": {"docker.io": "pass", HUB_CANONICAL: "secretservice"}}
    result = plan(config)
    assert result.config["credHelpers"] == config["credHelpers"]
    assert [f.code for f in result.findings] == ["credhelpers_hub_disagree"]


def test_helper_placeholders_produce_a_helper_move() -> None:
    config = {"auths": {"docker.io": {}}, "credsStore": "pass"}
    result = plan(config)
    assert result.config["auths"] == {HUB_CANONICAL: {}}
    (move,) = result.helper_moves
    assert (move.source_helper, move.source_url, move.target_url) == (
        "pass",
        "docker.io",
        HUB_CANONICAL,
    )
    assert move.keep_source is False
    assert result.findings == ()


def test_registry_1_placeholder_with_helper_is_copied_in_the_helper() -> None:
    result = plan({"auths": {"registry-1.docker.io": {}}, "credsStore": "pass"})
    (move,) = result.helper_moves
    assert move.keep_source is True
    assert HUB_CANONICAL in result.config["auths"]


def test_empty_placeholder_without_helper_is_a_finding() -> None:
    result = plan({"auths": {"quay.io": {}}})
    assert [(f.code, f.key) for f in result.findings] == [("empty_placeholder", "quay.io")]


def test_empty_alias_is_dropped_when_canonical_holds_the_credential() -> None:
    result = plan({"auths": {"docker.io": {}, HUB_CANONICAL: auth("a", "p")}})
    assert result.config["auths"] == {HUB_CANONICAL: auth("a", "p")}
    assert result.conflicts == ()


def test_validate_reports_what_docker_refuses() -> None:
    config: dict[str, Any] = {
        "auths": {
            "a.io": {"auth": "%%%not-base64"},
            "b.io": {"auth": base64.b64encode(b"nocolon").decode()},
            "c.io": {"auth": base64.b64encode(b":pw").decode()},
            "d.io": {"username": "u", "password": "plain"},
            "e.io": "not an object",
            "f.io": {"auth": 42},
        }
    }
    codes = {(f.key, f.code, f.severity) for f in validate(config)}
    assert codes == {
        ("a.io", "auth_not_base64", "error"),
        ("b.io", "auth_no_colon", "error"),
        ("c.io", "auth_empty_username", "error"),
        ("d.io", "plaintext_password", "warning"),
        ("e.io", "wrong_type", "error"),
        ("f.io", "wrong_type", "error"),
    }


def test_findings_never_contain_secrets() -> None:
    config = {
        "auths": {
            "a.io": {"auth": base64.b64encode(b"nocolonsecretvalue").decode()},
            "d.io": {"username": "u", "password": "plainsecretvalue"},
        }
    }
    text = json.dumps([f.as_dict() for f in plan(config).findings])
    assert "secretvalue" not in text
    assert config["auths"]["a.io"]["auth"] not in text


def test_wrong_top_level_types_do_not_crash_and_change_nothing() -> None:
    for config in ({"auths": []}, {"auths": "x"}, {"credHelpers": ["x"]}, {"credsStore": 1}):
        result = plan(config)
        assert result.config == config
        assert result.changed is False
        assert result.findings[0].code == "wrong_type"


# ---------------------------------------------------------------- properties

KEYS = [
    HUB_CANONICAL,
    "docker.io",
    "index.docker.io",
    "https://index.docker.io/v1",
    "HTTPS://DOCKER.IO",
    " docker.io ",
    "registry-1.docker.io",
    "hub.docker.com",
    "ghcr.io",
    "https://ghcr.io/v2/",
    "http://ghcr.io",
    "myreg:5000",
    "https://myreg:5000/v1/",
    "MyReg:5000",
    "docker.io/acme",
    "quay.io/org",
]
USERS = st.sampled_from(["alice", "bob", "carol"])
PASSWORDS = st.sampled_from(["pw1", "pw2", "s3cr:et"])


@st.composite
def entries(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["auth", "auth", "token", "empty", "plain"]))
    entry: dict[str, Any] = {}
    if kind == "auth":
        entry = auth(draw(USERS), draw(PASSWORDS))
    elif kind == "token":
        entry = {"identitytoken": draw(st.sampled_from(["tok-a", "tok-b"]))}
    elif kind == "plain":
        entry = {"username": draw(USERS), "password": draw(PASSWORDS)}
    if draw(st.booleans()):
        entry["email"] = draw(st.sampled_from(["x@example.com", "y@example.com"]))
    if draw(st.booleans()):
        entry["x-custom"] = draw(st.integers(0, 3))
    return entry


@st.composite
def configs(draw: st.DrawFn) -> dict[str, Any]:
    keys = draw(st.lists(st.sampled_from(KEYS), unique=True, max_size=8))
    config: dict[str, Any] = {"auths": {k: draw(entries()) for k in keys}}
    if draw(st.booleans()):
        config["currentContext"] = "default"
    if draw(st.booleans()):
        config["credHelpers"] = {
            draw(st.sampled_from(["docker.io", HUB_CANONICAL, "gcr.io"])): "gcr"
        }
    return config


def identity(entry: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    fields = ("auth", "identitytoken", "registrytoken", "username", "password")
    return tuple((f, entry[f]) for f in fields if entry.get(f) not in (None, ""))


def docker_would_load(config: dict[str, Any]) -> bool:
    """docker/cli configfile.LoadFromReader: object types, and every `auth` decodable."""
    auths = config.get("auths", {})
    if not isinstance(auths, dict):
        return False
    for entry in auths.values():
        if not isinstance(entry, dict):
            return False
        if entry.get("auth"):
            try:
                decode_auth(entry["auth"])
            except ValueError:
                return False
    return True


@settings(max_examples=400, deadline=None)
@given(configs(), st.sets(st.sampled_from(KEYS), max_size=2))
def test_fix_twice_is_fix_once(config: dict[str, Any], prefer: set[str]) -> None:
    once = plan(config, prefer=prefer)
    twice = plan(once.config, prefer=prefer)
    assert twice.changed is False
    assert twice.config == once.config


@settings(max_examples=400, deadline=None)
@given(configs(), st.sets(st.sampled_from(KEYS), max_size=2))
def test_no_credential_is_lost(config: dict[str, Any], prefer: set[str]) -> None:
    result = plan(config, prefer=prefer)
    before = {identity(e) for e in config["auths"].values() if identity(e)}
    after = {identity(e) for e in result.config["auths"].values() if identity(e)}
    losers = {identity(config["auths"][c.loser]) for c in result.conflicts}
    assert before <= after | losers
    # A loser is only ever a credential that differs from the one kept.
    for c in result.conflicts:
        assert identity(config["auths"][c.loser]) != identity(result.config["auths"][c.canonical])


@settings(max_examples=300, deadline=None)
@given(configs())
def test_unknown_fields_are_kept(config: dict[str, Any]) -> None:
    result = plan(config)
    for key, value in config.items():
        if key not in {"auths", "credHelpers"}:
            assert result.config[key] == value
    losers = {c.loser for c in result.conflicts}
    for key, entry in config["auths"].items():
        if key in losers or not identity(entry):
            continue
        out = result.config["auths"]
        survivor = out[key] if key in out else out[classify(key).canonical]
        assert identity(survivor) == identity(entry)
        for field in entry:
            assert field in survivor, (key, field)


@settings(max_examples=300, deadline=None)
@given(configs())
def test_output_is_what_every_client_reads(config: dict[str, Any]) -> None:
    result = plan(config)
    out = result.config
    assert docker_would_load(out)
    kinds = {classify(k).kind for k in out["auths"]}
    assert KeyKind.HUB_ALIAS not in kinds
    assert KeyKind.REGISTRY_ALIAS not in kinds
    hub_had_credential = any(classify(k).is_hub and identity(e) for k, e in config["auths"].items())
    hub_helper = (out.get("credHelpers") or {}).get(HUB_CANONICAL)
    if hub_had_credential and not hub_helper:
        assert identity(out["auths"].get(HUB_CANONICAL, {}))


def test_hub_helper_secrets_are_kept_in_step_for_docker_and_podman() -> None:
    result = plan({"credHelpers": {"docker.io": "pass"}})
    pairs = {(m.source_url, m.target_url, m.sync, m.keep_source) for m in result.helper_moves}
    assert pairs == {
        ("docker.io", HUB_CANONICAL, True, True),
        (HUB_CANONICAL, "docker.io", True, True),
    }
    assert plan({"credHelpers": {"ghcr.io": "pass"}}).helper_moves == ()
