"""containers' auth.json rules (``dockerconfig/authfile.py``); the real skopeo and podman confirm
them in tests/integration/test_authfile_clients.py."""

from __future__ import annotations

from regauthd.dockerconfig import authfile
from regauthd.dockerconfig.authfile import AuthFileLocation, podman_auth_files
from tests.rigs.configs import auth

A = auth("alice", "pw-a")
B = auth("bob", "pw-b")


def test_docker_io_stays_and_is_the_hub_key() -> None:
    result = authfile.plan({"auths": {"docker.io": {"auth": A}}})
    assert not result.changed and result.findings == ()


def test_the_exact_key_podman_uses_today_wins_a_conflict() -> None:
    result = authfile.plan(
        {"auths": {"https://index.docker.io/v1/": {"auth": B}, "docker.io": {"auth": A}}}
    )
    assert result.config["auths"] == {"docker.io": {"auth": A}}
    (conflict,) = result.conflicts
    assert (conflict.winner, conflict.loser) == ("docker.io", "https://index.docker.io/v1/")


def test_the_newest_write_wins_when_named() -> None:
    result = authfile.plan(
        {"auths": {"https://index.docker.io/v1/": {"auth": B}, "docker.io": {"auth": A}}},
        prefer=("https://index.docker.io/v1/",),
    )
    assert result.config["auths"] == {"docker.io": {"auth": B}}


def test_namespace_keys_and_registry_1_are_kept() -> None:
    config = {"auths": {"quay.io/acme": {"auth": A}, "registry-1.docker.io": {"auth": B}}}
    assert not authfile.plan(config).changed


def test_an_empty_exact_key_is_dropped_for_a_spelling_with_a_credential() -> None:
    result = authfile.plan({"auths": {"docker.io": {}, "index.docker.io": {"auth": A}}})
    assert result.config["auths"] == {"docker.io": {"auth": A}}
    assert not result.conflicts


def test_where_podman_looks_depends_on_docker_config_and_registry_auth_file() -> None:
    home = "/home/u"
    plain = podman_auth_files({"XDG_RUNTIME_DIR": "/run/user/7"}, 7, home)
    assert plain == [
        AuthFileLocation("/run/user/7/containers/auth.json", True),
        AuthFileLocation("/home/u/.config/containers/auth.json", True),
    ]
    docker = podman_auth_files({"DOCKER_CONFIG": "/ci/docker"}, 7, home)
    assert docker == [
        AuthFileLocation("/home/u/.config/containers/auth.json", False),
        AuthFileLocation("/run/containers/7/auth.json", False, read=False),
    ]
    explicit = podman_auth_files({"REGISTRY_AUTH_FILE": "/x/auth.json"}, 7, home)
    assert explicit[0] == AuthFileLocation("/x/auth.json", True)


def test_disagreement_is_only_about_inline_credentials_that_differ() -> None:
    docker = {"auths": {"https://index.docker.io/v1/": {"auth": A}, "ghcr.io": {"auth": A}}}
    podman = {"auths": {"docker.io": {"auth": A}, "ghcr.io": {"auth": B}}}
    (finding,) = authfile.disagreement_findings("c.json", docker, "a.json", podman)
    assert finding.key == "ghcr.io" and "user 'bob' there, 'alice' here" in finding.message
    assert "pw-" not in finding.message + finding.fix
    helper = {"auths": {"ghcr.io": {}}, "credsStore": "pass"}
    assert authfile.disagreement_findings("c.json", helper, "a.json", podman) == ()


def test_which_watched_files_follow_containers_rules() -> None:
    from regauthd.service.watchplan import follows_containers_rules

    patterns = ("/run/user/*/containers/auth.json", "/home/ci/.config/containers/auth.json")
    assert follows_containers_rules("/run/user/1000/containers/auth.json", patterns)
    assert follows_containers_rules("/home/ci/.config/containers/auth.json", patterns)
    assert not follows_containers_rules("/home/ci/.docker/config.json", patterns)
    assert not follows_containers_rules("/run/user/1000/x/containers/auth.json", patterns)
