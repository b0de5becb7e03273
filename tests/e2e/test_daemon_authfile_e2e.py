"""`regauthd run` keeps podman's auth files repaired by containers' rules, beside Docker configs
kept by Docker's: the same ``docker.io`` key is renamed in config.json and left in auth.json."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from tests.rigs.configs import HUB, auth, auths_keys, wait_until
from tests.rigs.daemon import Daemon


def write(path: Path, auths: dict[str, object]) -> None:
    tmp = path.with_name(".tmp-" + path.name)  # podman saves through a temp file + rename
    tmp.write_text(json.dumps({"auths": auths}, indent="\t"))
    tmp.chmod(0o600)
    tmp.rename(path)


def test_the_daemon_repairs_auth_json_by_containers_rules(
    tmp_path: Path, start_daemon: Callable[..., Daemon]
) -> None:
    cfg = tmp_path / "home" / ".docker"
    cfg.mkdir(parents=True)
    runtime = tmp_path / "run" / "containers"
    runtime.mkdir(parents=True)
    auth_json = runtime / "auth.json"
    write(cfg / "config.json", {"docker.io": {"auth": auth("d", "pw-d")}})
    write(
        auth_json,
        {
            "docker.io": {"auth": auth("p", "pw-p")},
            "https://ghcr.io/v2/": {"auth": auth("p", "pw-g")},
        },
    )

    daemon = start_daemon(
        f'[watch]\npaths = ["{cfg / "config.json"}"]\nauth_files = ["{auth_json}"]\n'
    )

    # Repaired before READY=1, each by its own client's rules.
    assert auths_keys(cfg / "config.json") == [HUB]
    assert auths_keys(auth_json) == ["docker.io", "ghcr.io"]
    (watching,) = daemon.named("daemon.watching_auth_file")
    assert watching["pattern"] == str(auth_json) and watching["rules"] == "containers"
    # A later write of Docker's Hub key into auth.json becomes podman's Hub key.
    write(auth_json, {"https://index.docker.io/v1/": {"auth": auth("p2", "pw-p2")}})
    wait_until(lambda: auths_keys(auth_json) == ["docker.io"], "auth.json repaired")
    assert json.loads(auth_json.read_text())["auths"]["docker.io"]["auth"] == auth("p2", "pw-p2")
    assert daemon.named("config.unfixable") == []
    for line in daemon.out.read_text().splitlines():
        assert "pw-p2" not in line and auth("p2", "pw-p2") not in line
