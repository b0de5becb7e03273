"""Every Hub alias and registry spelling from the semantics doc, mapped to its canonical key."""

from __future__ import annotations

import pytest

from regauthd.dockerconfig.keys import (
    HUB_CANONICAL,
    KeyKind,
    auths_key_for_registry,
    canonical_key,
    classify,
    registry_name,
)

HUB_ALIASES = [
    "docker.io",
    "index.docker.io",
    "https://docker.io",
    "http://docker.io",
    "https://index.docker.io/v1",
    "https://index.docker.io/v2/",
    "http://index.docker.io/v1/",
    "https://index.docker.io",
    "DOCKER.IO",
    "Index.Docker.IO",
    " docker.io ",
    "\thttps://index.docker.io/v1/ ",
    "HTTPS://INDEX.DOCKER.IO/V1/",
    "https://docker.io/v1/",
    "index.docker.io/v1/",
]


@pytest.mark.parametrize("key", HUB_ALIASES)
def test_hub_aliases_are_renamed_to_the_canonical_key(key: str) -> None:
    info = classify(key)
    assert info.kind == KeyKind.HUB_ALIAS
    assert canonical_key(key) == HUB_CANONICAL


def test_the_canonical_key_is_left_alone() -> None:
    info = classify(HUB_CANONICAL)
    assert info.kind == KeyKind.HUB_CANONICAL
    assert info.canonical == HUB_CANONICAL


@pytest.mark.parametrize(
    "key",
    ["registry-1.docker.io", "https://registry-1.docker.io/v2/", "REGISTRY-1.docker.io"],
)
def test_registry_1_is_copied_not_renamed(key: str) -> None:
    info = classify(key)
    assert info.kind == KeyKind.HUB_REGISTRY
    assert info.canonical == HUB_CANONICAL


@pytest.mark.parametrize("key", ["hub.docker.com", "https://hub.docker.com/", "HUB.DOCKER.COM"])
def test_hub_website_is_recognised(key: str) -> None:
    assert classify(key).kind == KeyKind.HUB_WEBSITE


@pytest.mark.parametrize(
    ("key", "canonical"),
    [
        ("https://myreg:5000/v1/", "myreg:5000"),
        ("https://myreg:5000/v2/", "myreg:5000"),
        ("http://myreg", "myreg"),
        ("https://ghcr.io", "ghcr.io"),
        ("https://MyReg.Example.com/v2", "MyReg.Example.com"),  # host case kept
        (" quay.io ", "quay.io"),
        ("127.0.0.1:5000/v2/", "127.0.0.1:5000"),
    ],
)
def test_other_registries_become_bare_host_and_port(key: str, canonical: str) -> None:
    info = classify(key)
    assert info.kind == KeyKind.REGISTRY_ALIAS
    assert info.canonical == canonical


@pytest.mark.parametrize("key", ["myreg:5000", "ghcr.io", "MyReg.Example.com", "localhost:5000"])
def test_bare_hosts_are_already_canonical(key: str) -> None:
    info = classify(key)
    assert info.kind == KeyKind.REGISTRY
    assert info.canonical == key


@pytest.mark.parametrize(
    "key",
    [
        "ghcr.io/acme",
        "docker.io/library",
        "docker.io/acme/api",
        "https://quay.io/org/repo",
        "registry-1.docker.io/acme",
    ],
)
def test_keys_with_a_repository_path_are_never_collapsed(key: str) -> None:
    info = classify(key)
    assert info.kind == KeyKind.NAMESPACED
    assert info.canonical == key


@pytest.mark.parametrize("key", ["", "   ", "https://", "/v2/"])
def test_keys_without_a_host_are_invalid(key: str) -> None:
    assert classify(key).kind == KeyKind.INVALID


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("docker.io", "docker.io"),
        ("https://index.docker.io/v1/", "docker.io"),
        ("registry-1.docker.io", "docker.io"),
        ("docker.io/acme", "docker.io"),
        ("hub.docker.com", "hub.docker.com"),
        ("https://ghcr.io/v2/", "ghcr.io"),
        ("127.0.0.1:5000", "127.0.0.1:5000"),
    ],
)
def test_registry_name(text: str, name: str) -> None:
    assert registry_name(text) == name


def test_auths_key_for_registry_maps_only_hub() -> None:
    assert auths_key_for_registry("docker.io") == HUB_CANONICAL
    assert auths_key_for_registry("index.docker.io") == HUB_CANONICAL
    assert auths_key_for_registry("ghcr.io") == "ghcr.io"
