"""The kubelet's keyring, as regauthd models it (``dockerconfig/kubelet.py``).

Line numbers cite kubernetes/kubernetes ``pkg/credentialprovider/keyring.go`` as of the
``TrackedAuthConfig`` version (v1.33+): ``Add`` L131-183, ``isDefaultRegistryMatch`` L193-215,
``URLsMatch`` L262-290, ``Lookup`` L295-318; and ``pkg/util/parsers/parsers.go``
``ParseImageName`` (distribution's ``ParseNormalizedNamed``).
"""

from __future__ import annotations

import pytest

from regauthd.dockerconfig import kubelet
from regauthd.dockerconfig.kubelet import keyring, keyring_location, lookup, normalized_repository


@pytest.mark.parametrize(
    ("key", "location"),
    [
        # keyring.go L144-146: no http(s):// -> "https://" is put in front, then parsed.
        ("docker.io", "docker.io"),
        ("ghcr.io", "ghcr.io"),
        # L159-162: a path starting /v1/ or /v2/ loses the version; "/" alone means the host.
        ("https://index.docker.io/v1/", "index.docker.io"),
        ("http://reg.example.com:5000/v2/", "reg.example.com:5000"),
        ("https://reg.example.com/v1/team", "reg.example.com/team"),
        # L164-165: any other path stays: a namespace-scoped credential.
        ("quay.io/coreos", "quay.io/coreos"),
        ("https://reg.example.com/v1", "reg.example.com/v1"),
        # L147-151: url.Parse refuses a non-numeric port: the entry is ignored.
        ("reg.example.com:port", None),
    ],
)
def test_where_add_files_each_key(key: str, location: str | None) -> None:
    assert keyring_location(key) == location


@pytest.mark.parametrize(
    ("image", "repository"),
    [
        ("alpine", "docker.io/library/alpine"),
        ("alpine:3.20", "docker.io/library/alpine"),
        ("bob/app", "docker.io/bob/app"),
        ("docker.io/alpine", "docker.io/library/alpine"),
        ("index.docker.io/bob/app:1", "docker.io/bob/app"),
        ("ghcr.io/org/app@sha256:" + "a" * 64, "ghcr.io/org/app"),
        ("localhost:5000/app:dev", "localhost:5000/app"),
        ("localhost/app", "localhost/app"),
    ],
)
def test_the_repository_the_kubelet_looks_up(image: str, repository: str) -> None:
    assert normalized_repository(image) == repository


def test_an_image_the_kubelet_refuses_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="lower case"):
        normalized_repository("ghcr.io/Org/App")


def picks(keys: list[str], image: str) -> list[str]:
    return [e.key for e in lookup(keyring({key: {} for key in keys}), image)]


def test_a_docker_io_key_serves_hub_images_directly() -> None:
    """Lookup L298-303: "docker.io" matches "docker.io/library/alpine" (same host parts,
    empty path is a prefix), so the Docker CLI's complaint about this key does not apply."""
    assert picks(["docker.io"], "alpine") == ["docker.io"]
    assert picks(["docker.io"], "bob/app") == ["docker.io"]


def test_the_docker_cli_key_serves_hub_images_through_the_fallback() -> None:
    """Lookup L310-315: no key matched, the image is Hub's (isDefaultRegistryMatch L205),
    so the credentials filed under "index.docker.io" (L186) are used."""
    assert picks(["https://index.docker.io/v1/"], "alpine") == ["https://index.docker.io/v1/"]
    assert picks(["index.docker.io"], "docker.io/bob/app") == ["index.docker.io"]


def test_the_fallback_is_only_used_when_nothing_matched() -> None:
    """Lookup L306-308 returns the direct matches before the fallback is looked at."""
    assert picks(["https://index.docker.io/v1/", "docker.io"], "alpine") == ["docker.io"]


def test_registry_1_and_the_web_site_serve_no_hub_image() -> None:
    """URLsMatch L269-272: "registry-1.docker.io" has three host parts, "docker.io" two;
    and neither is the fallback key."""
    assert picks(["registry-1.docker.io", "hub.docker.com"], "alpine") == []


def test_glob_hosts_match_one_part_each() -> None:
    """URLsMatch L277-287: each dot-separated part is a filepath.Match glob; the number of
    parts must be equal (L269), so *.example.com is not example.com nor a.b.example.com."""
    ring = ["*.example.com"]
    assert picks(ring, "reg.example.com/app") == ["*.example.com"]
    assert picks(ring, "example.com/app") == []
    assert picks(ring, "a.b.example.com/app") == []
    # "?" never reaches the glob: url.Parse (Add L147) reads it as the start of a query.
    assert picks(["reg-?.example.com"], "reg-1.example.com/x") == []
    assert picks(["reg-[0-9].example.com"], "reg-7.example.com/x") == ["reg-[0-9].example.com"]
    assert picks(["reg-[^0-9].example.com"], "reg-7.example.com/x") == []


def test_ports_must_be_equal() -> None:
    """URLsMatch L265-268."""
    assert picks(["reg.example.com"], "reg.example.com:5000/app") == []
    assert picks(["reg.example.com:5000"], "reg.example.com:5000/app") == ["reg.example.com:5000"]


def test_a_path_key_is_a_prefix_and_the_most_specific_comes_first() -> None:
    """URLsMatch L273-276 (path prefix) and Add L182 (index reverse-sorted): every matching key
    is returned, "quay.io/coreos" before "quay.io"."""
    assert picks(["quay.io", "quay.io/coreos"], "quay.io/coreos/etcd") == [
        "quay.io/coreos",
        "quay.io",
    ]
    assert picks(["quay.io/coreos"], "quay.io/other/app") == []


def test_hub_user_images_fall_back_but_dotted_hosts_do_not() -> None:
    """isDefaultRegistryMatch L214: a first part with "." or ":" is a registry host."""
    assert kubelet.is_default_registry_match("docker.io/bob/app")
    assert not kubelet.is_default_registry_match("ghcr.io/bob/app")
    assert picks(["https://index.docker.io/v1/"], "ghcr.io/bob/app") == []


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("Ym9iOnB3", True),  # "bob:pw", unpadded: RawStdEncoding (config.go)
        ("Ym9iOnB3ZA==", True),  # "bob:pwd", padded: StdEncoding
        ("OnB3", True),  # ":pw": the kubelet accepts an empty user name (Docker does not)
        ("Ym9i", False),  # "bob": no colon
        ("not base64!", False),
    ],
)
def test_auth_decoding_follows_config_go(value: str, ok: bool) -> None:
    if ok:
        kubelet.decode_auth(value)
    else:
        with pytest.raises(ValueError):
            kubelet.decode_auth(value)
