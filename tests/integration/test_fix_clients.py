"""``regauthd fix`` proven against the real clients (issue 2, "Real clients, after fix").

Every test first shows the client failing (or disagreeing) on the config as written, so it can
fail, then runs ``regauthd fix`` as a subprocess and asks the real programs again:

- ``docker login </dev/null`` names the Docker Hub user (only ever for the exact canonical key);
- ``docker manifest inspect`` against a real htpasswd registry resolves working credentials;
- ``skopeo login --get-login`` and ``podman login --get-login`` name the same user as Docker;
- with ``credsStore: pass``, the secret the real pass helper holds under an old URL is re-keyed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from regauthd.dockerconfig.keys import HUB_CANONICAL, HUB_PODMAN_HELPER_KEY
from tests.conftest import require_program
from tests.rigs.clients import (
    ClientError,
    FixRun,
    Sandbox,
    docker_hub_banner_user,
    docker_login,
    docker_login_banner_user,
    docker_manifest_inspect_ok,
    podman_get_login,
    regauthd_fix,
    skopeo_get_login,
)
from tests.rigs.configs import auth
from tests.rigs.passhelper import PassHelper
from tests.rigs.registry import RunningRegistry, push_tiny_image, start_registry

pytestmark = pytest.mark.integration

REG_USER = "alice"
REG_SECRET = "Reg-s3cret-Pa55"
HUB_USER = "hubuser"
HUB_SECRET = "Hub-s3cret-Pa55"
IMAGE = "team/app:v1"


def _require_clients() -> None:
    require_program("docker", "docker.io")
    require_program("skopeo", "skopeo")
    require_program("podman", "podman")


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    require_program("docker-registry", "docker-registry")
    require_program("htpasswd", "apache2-utils")
    reg = start_registry(tmp_path_factory.mktemp("registry"), users={REG_USER: REG_SECRET})
    try:
        repo, tag = IMAGE.split(":")
        push_tiny_image(reg, repo, tag, REG_USER, REG_SECRET)
        yield reg
    finally:
        reg.stop()


@dataclass(frozen=True, slots=True)
class Setup:
    """A config directory, a state directory and the client sandbox of one test."""

    cfg_dir: Path
    state_dir: Path
    sandbox: Sandbox

    @property
    def config_file(self) -> Path:
        return self.cfg_dir / "config.json"

    def write(self, config: dict[str, Any]) -> None:
        self.cfg_dir.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(json.dumps(config, indent="\t"))
        self.config_file.chmod(0o600)

    def read(self) -> dict[str, Any]:
        data = json.loads(self.config_file.read_text())
        assert isinstance(data, dict)
        return data

    def fix(self, *extra: str) -> FixRun:
        run = regauthd_fix(self.cfg_dir, self.state_dir, *extra, sandbox=self.sandbox)
        _assert_no_secret(run.stdout + run.stderr)
        return run


def _assert_no_secret(text: str) -> None:
    for secret in (REG_SECRET, HUB_SECRET):
        assert secret not in text
    for user, secret in ((REG_USER, REG_SECRET), (HUB_USER, HUB_SECRET)):
        assert auth(user, secret) not in text


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    _require_clients()
    return Setup(tmp_path / "docker", tmp_path / "state", Sandbox.create(tmp_path / "clients"))


@pytest.fixture
def pass_setup(tmp_path: Path, pass_helper: PassHelper) -> Setup:
    """Clients and regauthd see the real pass helper (and only that one)."""
    _require_clients()
    sandbox = Sandbox.create(tmp_path / "clients", helpers=("pass",), env=pass_helper.gpg_env)
    return Setup(tmp_path / "docker", tmp_path / "state", sandbox)


def _assert_fixed(run: FixRun, setup: Setup) -> dict[str, Any]:
    assert run.returncode == 0, run.stdout + run.stderr
    record = run.report_for(setup.config_file)
    assert record["written"] is True, record
    assert record["status"] == "fixed", record
    return record


# ---------------------------------------------------------------------------------------------
# Docker Hub aliases: Docker only reads https://index.docker.io/v1/

# Every spelling is in the pure table tests; here one of each shape, against the real clients.
HUB_ALIASES = [
    "docker.io",
    "index.docker.io",
    "http://docker.io",
    "https://index.docker.io/v1",
    "https://index.docker.io/v2/",
    "  docker.io ",
    "HTTPS://Index.Docker.IO/v1/",
]


@pytest.mark.parametrize("alias", HUB_ALIASES)
def test_docker_finds_the_hub_user_after_fix(alias: str, setup: Setup) -> None:
    other = {"ghcr.io": {"auth": auth("ghuser", "gh-password"), "email": "a@example.com"}}
    setup.write({"auths": {alias: {"auth": auth(HUB_USER, HUB_SECRET)}, **other}})
    assert docker_hub_banner_user(setup.cfg_dir, sandbox=setup.sandbox) is None

    _assert_fixed(setup.fix(), setup)

    config = setup.read()
    assert set(config["auths"]) == {HUB_CANONICAL, "ghcr.io"}
    assert config["auths"]["ghcr.io"] == other["ghcr.io"]  # unknown fields kept
    assert docker_hub_banner_user(setup.cfg_dir, sandbox=setup.sandbox) == HUB_USER
    assert skopeo_get_login(setup.cfg_dir, "docker.io", sandbox=setup.sandbox) == HUB_USER
    assert podman_get_login(setup.cfg_dir, "docker.io", sandbox=setup.sandbox) == HUB_USER


@pytest.mark.parametrize("key", ["registry-1.docker.io", "https://registry-1.docker.io/v2/"])
def test_registry_1_docker_io_is_copied_and_kept(key: str, setup: Setup) -> None:
    setup.write({"auths": {key: {"auth": auth(HUB_USER, HUB_SECRET)}}})
    assert docker_hub_banner_user(setup.cfg_dir, sandbox=setup.sandbox) is None

    _assert_fixed(setup.fix(), setup)

    assert set(setup.read()["auths"]) == {key, HUB_CANONICAL}
    assert docker_hub_banner_user(setup.cfg_dir, sandbox=setup.sandbox) == HUB_USER
    assert podman_get_login(setup.cfg_dir, "docker.io", sandbox=setup.sandbox) == HUB_USER


def test_hub_website_key_is_copied_with_a_finding(setup: Setup) -> None:
    setup.write({"auths": {"hub.docker.com": {"auth": auth(HUB_USER, HUB_SECRET)}}})
    assert docker_hub_banner_user(setup.cfg_dir, sandbox=setup.sandbox) is None
    assert podman_get_login(setup.cfg_dir, "docker.io", sandbox=setup.sandbox) is None

    run = setup.fix()

    record = run.report_for(setup.config_file)
    assert record["written"] is True, record
    assert any(f["key"] == "hub.docker.com" for f in record["findings"]), record
    assert docker_hub_banner_user(setup.cfg_dir, sandbox=setup.sandbox) == HUB_USER
    assert podman_get_login(setup.cfg_dir, "docker.io", sandbox=setup.sandbox) == HUB_USER


def test_fix_twice_changes_nothing_and_clients_still_agree(setup: Setup) -> None:
    setup.write(
        {"auths": {"index.docker.io": {"auth": auth(HUB_USER, HUB_SECRET)}}, "psFormat": "x"}
    )
    _assert_fixed(setup.fix(), setup)
    first = setup.config_file.read_bytes()

    again = setup.fix()

    assert again.returncode == 0
    record = again.report_for(setup.config_file)
    assert record["written"] is False and record["changes"] == [], record
    assert setup.config_file.read_bytes() == first
    assert setup.read()["psFormat"] == "x"
    assert docker_hub_banner_user(setup.cfg_dir, sandbox=setup.sandbox) == HUB_USER


# ---------------------------------------------------------------------------------------------
# Other registries: docker manifest inspect against the real htpasswd registry


def _ref(reg: RunningRegistry) -> str:
    return f"{reg.host}/{IMAGE}"


# Keys Docker 28's legacy hostname loop does not match: the test fails before fix.
DOCKER_BLIND = ["  {host}", "{host} "]
# Keys Docker finds (url.Parse in ConvertToHostname) but containers/image does not: podman and
# skopeo only strip a lower-case scheme, and cut the path only after stripping one.
PODMAN_BLIND = ["HTTPS://{host}/v1/", "Https://{host}", "{host}/v2/", "{host}/"]
# Found by every client before and after: fix only renames them.
EVERYONE_FINDS = ["https://{host}/v1/", "http://{host}"]


@pytest.mark.parametrize("template", DOCKER_BLIND)
def test_manifest_inspect_works_after_fix_for_keys_docker_misses(
    template: str, setup: Setup, registry: RunningRegistry
) -> None:
    _write_registry_key(setup, template.format(host=registry.host))
    assert not docker_manifest_inspect_ok(setup.cfg_dir, _ref(registry), sandbox=setup.sandbox)

    _assert_fixed_to_host(setup, registry)


@pytest.mark.parametrize("template", PODMAN_BLIND)
def test_podman_and_skopeo_agree_with_docker_after_fix(
    template: str, setup: Setup, registry: RunningRegistry
) -> None:
    _write_registry_key(setup, template.format(host=registry.host))
    assert docker_manifest_inspect_ok(setup.cfg_dir, _ref(registry), sandbox=setup.sandbox)
    assert podman_get_login(setup.cfg_dir, registry.host, sandbox=setup.sandbox) is None
    assert skopeo_get_login(setup.cfg_dir, registry.host, sandbox=setup.sandbox) is None

    _assert_fixed_to_host(setup, registry)


@pytest.mark.parametrize("template", EVERYONE_FINDS)
def test_legacy_keys_everyone_finds_keep_working(
    template: str, setup: Setup, registry: RunningRegistry
) -> None:
    _write_registry_key(setup, template.format(host=registry.host))
    _assert_all_clients_find(setup, registry)

    _assert_fixed_to_host(setup, registry)


def test_a_wrong_password_stays_wrong(setup: Setup, registry: RunningRegistry) -> None:
    # The oracle itself: a resolved but refused credential is not "works".
    setup.write({"auths": {f"  {registry.host}": {"auth": auth(REG_USER, "wrong")}}})
    setup.fix()
    assert docker_login_banner_user(setup.cfg_dir, registry.host, sandbox=setup.sandbox) == REG_USER
    assert not docker_manifest_inspect_ok(setup.cfg_dir, _ref(registry), sandbox=setup.sandbox)


def test_a_login_after_fix_is_kept_by_the_next_fix(setup: Setup, registry: RunningRegistry) -> None:
    setup.write({"auths": {"docker.io": {"auth": auth(HUB_USER, HUB_SECRET)}}})
    _assert_fixed(setup.fix(), setup)
    docker_login(setup.cfg_dir, registry.host, REG_USER, REG_SECRET, sandbox=setup.sandbox)

    run = setup.fix()

    assert run.returncode == 0
    assert set(setup.read()["auths"]) == {HUB_CANONICAL, registry.host}
    assert docker_hub_banner_user(setup.cfg_dir, sandbox=setup.sandbox) == HUB_USER
    _assert_all_clients_find(setup, registry)


def _write_registry_key(setup: Setup, key: str) -> None:
    setup.write({"auths": {key: {"auth": auth(REG_USER, REG_SECRET)}}})


def _assert_fixed_to_host(setup: Setup, registry: RunningRegistry) -> None:
    """fix renames the registry's one key to its bare host, and every client finds the login."""
    _assert_fixed(setup.fix(), setup)
    assert list(setup.read()["auths"]) == [registry.host]
    _assert_all_clients_find(setup, registry)


def _assert_all_clients_find(setup: Setup, registry: RunningRegistry) -> None:
    box = setup.sandbox
    assert docker_manifest_inspect_ok(setup.cfg_dir, _ref(registry), sandbox=box)
    assert docker_login_banner_user(setup.cfg_dir, registry.host, sandbox=box) == REG_USER
    assert skopeo_get_login(setup.cfg_dir, registry.host, sandbox=box) == REG_USER
    assert podman_get_login(setup.cfg_dir, registry.host, sandbox=box) == REG_USER


# ---------------------------------------------------------------------------------------------
# Credential helpers: the real pass helper


def test_pass_hub_secret_under_docker_io_is_rekeyed_for_docker(
    pass_setup: Setup, pass_helper: PassHelper
) -> None:
    pass_helper.store("docker.io", HUB_USER, HUB_SECRET)
    pass_setup.write({"auths": {"docker.io": {}}, "credsStore": "pass"})
    assert docker_hub_banner_user(pass_setup.cfg_dir, sandbox=pass_setup.sandbox) is None

    _assert_fixed(pass_setup.fix(), pass_setup)

    config = pass_setup.read()
    assert config["credsStore"] == "pass"
    assert HUB_CANONICAL in config["auths"]
    assert pass_helper.get(HUB_CANONICAL) == (HUB_USER, HUB_SECRET)
    assert pass_helper.get("docker.io") == (HUB_USER, HUB_SECRET)  # erased only when asked
    assert docker_hub_banner_user(pass_setup.cfg_dir, sandbox=pass_setup.sandbox) == HUB_USER


def test_pass_hub_secret_old_url_erased_when_asked(
    pass_setup: Setup, pass_helper: PassHelper
) -> None:
    pass_helper.store("https://index.docker.io/v2/", HUB_USER, HUB_SECRET)
    pass_setup.write({"auths": {"https://index.docker.io/v2/": {}}, "credsStore": "pass"})

    _assert_fixed(pass_setup.fix("--erase-old-helper-entries"), pass_setup)

    assert pass_helper.list() == {HUB_CANONICAL: HUB_USER}
    assert docker_hub_banner_user(pass_setup.cfg_dir, sandbox=pass_setup.sandbox) == HUB_USER


def test_pass_registry_secret_under_a_legacy_url_is_rekeyed(
    pass_setup: Setup, pass_helper: PassHelper, registry: RunningRegistry
) -> None:
    # Helpers match URLs exactly: Docker's legacy hostname loop only runs over the file store, so
    # a secret kept under https://HOST/v1/ is invisible to Docker until it is re-keyed.
    legacy = f"https://{registry.host}/v1/"
    pass_helper.store(legacy, REG_USER, REG_SECRET)
    pass_setup.write({"auths": {legacy: {}}, "credsStore": "pass"})
    assert not docker_manifest_inspect_ok(
        pass_setup.cfg_dir, _ref(registry), sandbox=pass_setup.sandbox
    )

    _assert_fixed(pass_setup.fix(), pass_setup)

    assert list(pass_setup.read()["auths"]) == [registry.host]
    assert pass_helper.get(registry.host) == (REG_USER, REG_SECRET)
    assert docker_manifest_inspect_ok(
        pass_setup.cfg_dir, _ref(registry), sandbox=pass_setup.sandbox
    )


def test_pass_keeps_the_canonical_secret_on_conflict(
    pass_setup: Setup, pass_helper: PassHelper
) -> None:
    pass_helper.store(HUB_CANONICAL, HUB_USER, HUB_SECRET)
    pass_helper.store("docker.io", "olduser", "old-" + HUB_SECRET)
    pass_setup.write({"auths": {HUB_CANONICAL: {}, "docker.io": {}}, "credsStore": "pass"})

    run = pass_setup.fix()

    record = run.report_for(pass_setup.config_file)
    assert record["conflicts"], record
    assert pass_helper.get(HUB_CANONICAL) == (HUB_USER, HUB_SECRET)
    assert pass_helper.get("docker.io") == ("olduser", "old-" + HUB_SECRET)  # never dropped
    assert docker_hub_banner_user(pass_setup.cfg_dir, sandbox=pass_setup.sandbox) == HUB_USER


def test_cred_helpers_hub_entry_written_by_podman_serves_docker(
    pass_setup: Setup, pass_helper: PassHelper
) -> None:
    # podman keys the Hub helper `docker.io` and asks it for "docker.io"; Docker needs the helper
    # under the canonical key and asks it for the canonical URL: the secret must be re-keyed too.
    pass_helper.store(HUB_PODMAN_HELPER_KEY, HUB_USER, HUB_SECRET)
    pass_setup.write({"auths": {}, "credHelpers": {HUB_PODMAN_HELPER_KEY: "pass"}})
    box = pass_setup.sandbox
    assert podman_get_login(pass_setup.cfg_dir, "docker.io", sandbox=box) == HUB_USER
    assert docker_hub_banner_user(pass_setup.cfg_dir, sandbox=box) is None

    _assert_hub_helper_serves_both(pass_setup)


def test_cred_helpers_hub_entry_written_by_docker_serves_podman(
    pass_setup: Setup, pass_helper: PassHelper
) -> None:
    pass_helper.store(HUB_CANONICAL, HUB_USER, HUB_SECRET)
    pass_setup.write({"auths": {}, "credHelpers": {HUB_CANONICAL: "pass"}})
    box = pass_setup.sandbox
    assert docker_hub_banner_user(pass_setup.cfg_dir, sandbox=box) == HUB_USER
    assert podman_get_login(pass_setup.cfg_dir, "docker.io", sandbox=box) is None

    _assert_hub_helper_serves_both(pass_setup)


def _assert_hub_helper_serves_both(setup: Setup) -> None:
    """After fix the Hub's helper entry is under both keys, and docker and podman log in."""
    run = setup.fix()
    assert run.returncode == 0, run.stdout + run.stderr
    helpers = setup.read()["credHelpers"]
    assert helpers == {HUB_PODMAN_HELPER_KEY: "pass", HUB_CANONICAL: "pass"}
    assert docker_hub_banner_user(setup.cfg_dir, sandbox=setup.sandbox) == HUB_USER
    assert podman_get_login(setup.cfg_dir, "docker.io", sandbox=setup.sandbox) == HUB_USER


# ---------------------------------------------------------------------------------------------
# The rigs themselves: isolation and no secret in their errors


def test_rig_docker_sees_no_helper_and_errors_hide_the_password(
    setup: Setup, registry: RunningRegistry
) -> None:
    setup.write({"auths": {}})
    docker_login(setup.cfg_dir, registry.host, REG_USER, REG_SECRET, sandbox=setup.sandbox)
    config = setup.read()
    # With a helper on PATH, Docker would have chosen it by itself for an empty config.
    assert "credsStore" not in config
    assert config["auths"] == {registry.host: {"auth": auth(REG_USER, REG_SECRET)}}

    wrong = "wrong-" + REG_SECRET
    with pytest.raises(ClientError) as info:
        docker_login(setup.cfg_dir, registry.host, REG_USER, wrong, sandbox=setup.sandbox)
    assert wrong not in str(info.value)
    assert REG_SECRET not in str(info.value)


def test_rig_offers_pass_when_asked(
    pass_setup: Setup, pass_helper: PassHelper, registry: RunningRegistry
) -> None:
    pass_setup.write({"auths": {}})
    docker_login(
        pass_setup.cfg_dir, registry.host, REG_USER, REG_SECRET, sandbox=pass_setup.sandbox
    )
    config = pass_setup.read()
    assert config == {"auths": {registry.host: {}}, "credsStore": "pass"}
    assert pass_helper.get(registry.host) == (REG_USER, REG_SECRET)
    assert docker_manifest_inspect_ok(
        pass_setup.cfg_dir, _ref(registry), sandbox=pass_setup.sandbox
    )
