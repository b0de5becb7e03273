"""Kubernetes pull secrets judged by the kubelet's rules, and repaired in the form they came in.

The kubelet's side: kubernetes/kubernetes ``pkg/credentialprovider/secrets/secrets.go``
(``secretsToTrackedDockerConfigs``: only type dockerconfigjson + key .dockerconfigjson, or
type dockercfg + key .dockercfg; a ``json.Unmarshal`` error fails the whole keyring),
``config.go`` (``DockerConfigJSON{Auths}``, ``decodeDockerConfigFieldAuth``) and
``keyring.go`` (which key serves an image; see tests/unit/test_kubelet.py).
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from regauthd.dockerconfig import pullsecret, secretdoc
from regauthd.dockerconfig.findings import Finding

PASSWORD = "kube-Pa55-do-not-leak"
AUTH = base64.b64encode(f"robot:{PASSWORD}".encode()).decode()
SECRETS = (PASSWORD, AUTH)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def secret_yaml(
    payload: str,
    *,
    type_: str | None = "kubernetes.io/dockerconfigjson",
    key: str = ".dockerconfigjson",
    field: str = "data",
) -> bytes:
    manifest: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "regcred", "namespace": "ci"},
    }
    if type_ is not None:
        manifest["type"] = type_
    manifest[field] = {key: b64(payload) if field == "data" else payload}
    return yaml.safe_dump(manifest, sort_keys=False).encode()


def judge(data: bytes, images: tuple[str, ...] = ()) -> pullsecret.Verdict:
    verdict = pullsecret.judge(secretdoc.read(data), source="s", images=images)
    for f in verdict.findings:
        for secret in SECRETS:
            assert secret not in f.message and secret not in f.fix
    return verdict


def codes(findings: tuple[Finding, ...]) -> set[str]:
    return {f.code for f in findings}


def fixed_payload(verdict: pullsecret.Verdict) -> dict[str, Any]:
    assert verdict.fixed.payload is not None
    value = json.loads(verdict.fixed.payload)
    assert isinstance(value, dict)
    return value


GOOD = json.dumps({"auths": {"docker.io": {"auth": AUTH}}})


def test_a_docker_io_key_is_no_problem_for_the_kubelet() -> None:
    verdict = judge(secret_yaml(GOOD), images=("alpine", "docker.io/bob/app"))
    assert verdict.findings == ()
    assert [p.keys for p in verdict.picks] == [("docker.io",), ("docker.io",)]
    assert verdict.changes == ()


def test_a_glob_host_serves_the_image() -> None:
    raw = json.dumps({"auths": {"*.example.com": {"auth": AUTH}}}).encode()
    verdict = judge(raw, images=("reg.example.com/team/app:1",))
    assert verdict.ok
    assert verdict.picks[0].keys == ("*.example.com",)


def test_no_credential_for_an_image_is_a_problem() -> None:
    raw = json.dumps({"auths": {"registry-1.docker.io": {"auth": AUTH}}}).encode()
    verdict = judge(raw, images=("alpine",))
    assert codes(verdict.findings) == {"no_credential_for_image"}
    assert "docker.io/library/alpine" in verdict.findings[0].message


def test_opaque_type_is_skipped_by_the_kubelet_and_fixed() -> None:
    verdict = judge(secret_yaml(GOOD, type_="Opaque"), images=("alpine",))
    assert codes(verdict.findings) == {"secret_wrong_type", "no_credential_for_image"}
    assert verdict.fixed.manifest is not None
    assert verdict.fixed.manifest["type"] == "kubernetes.io/dockerconfigjson"
    assert judge(secretdoc.render(verdict.fixed), images=("alpine",)).findings == ()


def test_a_missing_type_is_opaque() -> None:
    verdict = judge(secret_yaml(GOOD, type_=None))
    assert codes(verdict.findings) == {"secret_wrong_type"}
    assert "missing" in verdict.findings[0].message


def test_dockercfg_key_under_the_dockerconfigjson_type_moves_and_unwraps() -> None:
    legacy = json.dumps({"ghcr.io": {"auth": AUTH}})
    verdict = judge(secret_yaml(legacy, key=".dockercfg"))
    assert "secret_wrong_key" in codes(verdict.findings)
    assert verdict.fixed.data_key == ".dockerconfigjson"
    assert fixed_payload(verdict) == {"auths": {"ghcr.io": {"auth": AUTH}}}
    manifest = verdict.fixed.manifest
    assert manifest is not None and list(manifest["data"]) == [".dockerconfigjson"]


def test_legacy_format_under_dockerconfigjson_is_wrapped() -> None:
    verdict = judge(secret_yaml(json.dumps({"ghcr.io": {"auth": AUTH}})), images=("ghcr.io/a/b",))
    assert codes(verdict.findings) == {"legacy_format", "no_credential_for_image"}
    assert fixed_payload(verdict) == {"auths": {"ghcr.io": {"auth": AUTH}}}
    again = judge(secretdoc.render(verdict.fixed), images=("ghcr.io/a/b",))
    assert again.findings == () and again.picks[0].keys == ("ghcr.io",)


def test_auths_wrapper_under_dockercfg_is_unwrapped() -> None:
    verdict = judge(secret_yaml(GOOD, type_="kubernetes.io/dockercfg", key=".dockercfg"))
    assert codes(verdict.findings) == {"auths_under_dockercfg"}
    assert fixed_payload(verdict) == {"docker.io": {"auth": AUTH}}


def test_double_base64_payload_breaks_every_pull_and_is_decoded() -> None:
    verdict = judge(secret_yaml(b64(GOOD)), images=("alpine",))
    assert codes(verdict.findings) == {"double_base64", "no_credential_for_image"}
    assert "EVERY pull" in verdict.findings[0].message
    assert verdict.picks[0].problem == "the kubelet cannot read this Secret at all"
    assert fixed_payload(verdict) == json.loads(GOOD)


def test_double_base64_auth_is_decoded_once() -> None:
    verdict = judge(secret_yaml(json.dumps({"auths": {"ghcr.io": {"auth": b64(AUTH)}}})))
    assert codes(verdict.findings) == {"auth_double_base64"}
    assert fixed_payload(verdict) == {"auths": {"ghcr.io": {"auth": AUTH}}}


@pytest.mark.parametrize(
    ("auth", "code"),
    [("!!not-base64!!", "auth_not_base64"), (b64("robot-without-colon"), "auth_no_colon")],
)
def test_an_auth_the_kubelet_cannot_split_breaks_every_pull(auth: str, code: str) -> None:
    payload = json.dumps({"auths": {"ghcr.io": {"auth": auth}, "docker.io": {"auth": AUTH}}})
    verdict = judge(secret_yaml(payload), images=("alpine",))
    assert codes(verdict.findings) == {code, "no_credential_for_image"}
    assert verdict.changes == ()


def test_an_identity_token_gives_the_kubelet_nothing() -> None:
    payload = json.dumps({"auths": {"myacr.azurecr.io": {"identitytoken": "tok"}}})
    verdict = judge(payload.encode(), images=("myacr.azurecr.io/app",))
    assert codes(verdict.findings) == {"kubelet_no_credential", "no_credential_for_image"}
    assert verdict.findings[0].severity == "warning"


def test_invalid_json_payload_is_reported_by_position() -> None:
    verdict = judge(secret_yaml('{"auths": {"ghcr.io": {"auth": "' + AUTH + '"'))
    assert codes(verdict.findings) == {"payload_invalid_json"}
    assert "line 1 column" in verdict.findings[0].message


def test_data_that_is_not_base64_is_refused() -> None:
    manifest = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": "{not base64"},
    }
    verdict = judge(json.dumps(manifest).encode())
    assert codes(verdict.findings) == {"secret_data_not_base64"}


def test_no_pull_secret_key() -> None:
    manifest = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "stringData": {"password": "x"},
    }
    assert codes(judge(json.dumps(manifest).encode()).findings) == {"no_pull_secret_key"}


def test_stringdata_stays_stringdata_and_data_stays_base64() -> None:
    plain = json.dumps({"ghcr.io": {"auth": AUTH}})
    verdict = judge(secret_yaml(plain, field="stringData"))
    manifest = verdict.fixed.manifest
    assert manifest is not None
    assert json.loads(manifest["stringData"][".dockerconfigjson"]) == {
        "auths": {"ghcr.io": {"auth": AUTH}}
    }
    verdict = judge(secret_yaml(plain))
    manifest = verdict.fixed.manifest
    assert manifest is not None
    decoded = base64.b64decode(manifest["data"][".dockerconfigjson"]).decode()
    assert json.loads(decoded) == {"auths": {"ghcr.io": {"auth": AUTH}}}


def test_kubectl_json_output_stays_json_and_keeps_its_metadata() -> None:
    manifest = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "regcred", "namespace": "ci", "resourceVersion": "42"},
        "type": "Opaque",
        "data": {".dockerconfigjson": b64(GOOD)},
    }
    verdict = judge(json.dumps(manifest, indent=4).encode())
    out = json.loads(secretdoc.render(verdict.fixed))
    assert out["type"] == "kubernetes.io/dockerconfigjson"
    assert out["metadata"] == manifest["metadata"]
    assert out["data"] == manifest["data"]  # only the type needed fixing


@pytest.mark.parametrize(
    ("text", "why"),
    [
        (b"", "empty"),
        (b"- a\n- b\n", "not an object"),
        (b"kind: ConfigMap\napiVersion: v1\n", "ConfigMap"),
        (b"a: 1\n---\nb: 2\n", "2 YAML documents"),
        (b"foo: [unclosed\n", "nor YAML"),
        (b"auths: {}\n", "YAML but not a Secret"),
    ],
)
def test_what_is_no_document_says_why(text: bytes, why: str) -> None:
    with pytest.raises(secretdoc.DocumentError, match=why):
        secretdoc.read(text)


KEYS = ["docker.io", "https://index.docker.io/v1/", "ghcr.io", "*.example.com", "quay.io/acme"]


@st.composite
def documents(draw: st.DrawFn) -> bytes:
    """Pull secrets in every form, with the repairable mistakes people make."""
    keys = draw(st.lists(st.sampled_from(KEYS), min_size=1, max_size=4, unique=True))
    entries = {}
    for key in keys:
        value = AUTH if draw(st.booleans()) else b64(AUTH)  # once, or twice encoded
        entries[key] = {"auth": value}
    wrapped = draw(st.booleans())
    payload = json.dumps({"auths": entries} if wrapped else entries)
    if draw(st.booleans()):
        payload = b64(payload)  # double base64 of the whole payload
    form = draw(st.sampled_from(["raw", "data", "stringData"]))
    if form == "raw":
        return json.dumps({"auths": entries}).encode()
    type_ = draw(st.sampled_from(["kubernetes.io/dockerconfigjson", "Opaque", None]))
    return secret_yaml(payload, type_=type_, field=form)


@settings(max_examples=60, deadline=None)
@given(documents())
def test_a_fixed_document_is_clean_and_fixing_it_again_changes_nothing(data: bytes) -> None:
    verdict = judge(data, images=("alpine", "ghcr.io/a/b"))
    again = judge(secretdoc.render(verdict.fixed), images=("alpine", "ghcr.io/a/b"))
    assert again.changes == ()
    assert {f.code for f in again.findings} <= {"no_credential_for_image"}
    if verdict.ok:
        assert verdict.changes == ()
