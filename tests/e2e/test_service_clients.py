"""`regauthd run` while the real clients write the config: the Docker CLI and podman logging in
to a real registry. Each run ends normalized, and the Docker CLI then finds every credential.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from tests.conftest import require_program
from tests.rigs.clients import (
    Sandbox,
    docker_hub_banner_user,
    docker_login,
    docker_login_banner_user,
    docker_manifest_inspect_ok,
    podman_get_login,
    podman_login,
)
from tests.rigs.configs import HUB, auths_keys, docker_style_write, mis_keyed, wait_until
from tests.rigs.daemon import Daemon
from tests.rigs.registry import RegistryFactory, push_tiny_image

USER, PASSWORD = "alice", "alice-registry-pw"


def _hub_user_written_by_podman(cfg: Path) -> None:
    """A config as podman leaves it after `podman login docker.io` (no network needed here)."""
    docker_style_write(cfg, mis_keyed("hubuser", "hub-pw"))


def test_docker_login_to_a_real_registry_keeps_everything_found(
    tmp_path: Path,
    registry_factory: RegistryFactory,
    start_daemon: Callable[..., Daemon],
) -> None:
    require_program("docker", "docker.io")
    reg = registry_factory(users={USER: PASSWORD})
    push_tiny_image(reg, "team/app", "v1", USER, PASSWORD)
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    sandbox = Sandbox.create(tmp_path / "clients")
    daemon = start_daemon(docker_configs=[cfg])
    _hub_user_written_by_podman(cfg)
    wait_until(lambda: auths_keys(cfg / "config.json") == [HUB], "Hub entry normalized")

    docker_login(cfg, reg.host, USER, PASSWORD, sandbox=sandbox)
    wait_until(lambda: auths_keys(cfg / "config.json") == sorted([HUB, reg.host]), "both kept")
    assert docker_login_banner_user(cfg, reg.host, sandbox=sandbox) == USER
    assert docker_manifest_inspect_ok(cfg, f"{reg.host}/team/app:v1", sandbox=sandbox)
    assert docker_hub_banner_user(cfg, sandbox=sandbox) == "hubuser"
    assert daemon.named("config.unfixable") == []


def test_hub_credential_written_under_docker_io_is_found_by_docker(
    tmp_path: Path, start_daemon: Callable[..., Daemon]
) -> None:
    require_program("docker", "docker.io")
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    sandbox = Sandbox.create(tmp_path / "clients")
    start_daemon(docker_configs=[cfg])
    assert docker_hub_banner_user(cfg, sandbox=sandbox) is None
    content = json.dumps({"auths": {"docker.io": {"auth": "cm9ib3Q6cm9ib3QtcHc="}}})
    (cfg / "config.json").write_text(content)  # a plain write, as `echo ... > config.json`
    wait_until(lambda: auths_keys(cfg / "config.json") == [HUB], "normalized")
    assert docker_hub_banner_user(cfg, sandbox=sandbox) == "robot"


def test_podman_login_while_the_daemon_runs(
    tmp_path: Path,
    registry_factory: RegistryFactory,
    start_daemon: Callable[..., Daemon],
) -> None:
    require_program("podman", "podman")
    require_program("docker", "docker.io")
    reg = registry_factory(users={USER: PASSWORD})
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    sandbox = Sandbox.create(tmp_path / "clients")
    start_daemon(docker_configs=[cfg])
    _hub_user_written_by_podman(cfg)
    wait_until(lambda: auths_keys(cfg / "config.json") == [HUB], "Hub entry normalized")

    podman_login(cfg, reg.host, USER, PASSWORD, sandbox=sandbox)
    wait_until(lambda: auths_keys(cfg / "config.json") == sorted([HUB, reg.host]), "both kept")
    assert podman_get_login(cfg, reg.host, sandbox=sandbox) == USER
    assert podman_get_login(cfg, "docker.io", sandbox=sandbox) == "hubuser"
    assert docker_login_banner_user(cfg, reg.host, sandbox=sandbox) == USER
    assert docker_hub_banner_user(cfg, sandbox=sandbox) == "hubuser"


def test_docker_login_through_a_symlinked_config(
    tmp_path: Path,
    registry_factory: RegistryFactory,
    start_daemon: Callable[..., Daemon],
) -> None:
    require_program("docker", "docker.io")
    reg = registry_factory(users={USER: PASSWORD})
    cfg, real = tmp_path / "cfg", tmp_path / "dotfiles"
    cfg.mkdir()
    real.mkdir()
    (real / "docker-config.json").write_bytes(mis_keyed("hubuser", "hub-pw"))
    (cfg / "config.json").symlink_to(real / "docker-config.json")
    sandbox = Sandbox.create(tmp_path / "clients")
    start_daemon(docker_configs=[cfg])
    target = real / "docker-config.json"
    assert auths_keys(target) == [HUB]  # repaired at start, through the link
    # The CLI writes its temp file beside the link and renames it into the target's directory.
    docker_login(cfg, reg.host, USER, PASSWORD, sandbox=sandbox)
    assert (cfg / "config.json").is_symlink()
    wait_until(lambda: auths_keys(target) == sorted([HUB, reg.host]), "login kept, Hub found")
    assert docker_login_banner_user(cfg, reg.host, sandbox=sandbox) == USER
    assert docker_hub_banner_user(cfg, sandbox=sandbox) == "hubuser"
    assert sorted(p.name for p in cfg.iterdir()) == ["config.json"]
