"""Race: a stream of real ``docker login``s while ``regauthd fix`` loops on the same file.

Docker writes config.json without a lock (temp file + rename), so any normalizer that reads,
edits and renames can silently undo a login that landed in between. The stream of logins is
sequential on purpose: two concurrent ``docker login``s lose entries by themselves.

``docker login`` always writes the bare ``host:port`` key, which leaves ``fix`` nothing to do.
So that ``fix`` keeps rewriting the file while the logins land, the stream also drops in, after
each login and in the same sequential stream, a legacy-spelled key for a made-up registry, the
way an old client would (temp file + rename, no lock). Every one of those must end up under its
canonical key, and every login's entry, with the user of that round, must be present.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import regauthd
from regauthd.dockerconfig.keys import HUB_CANONICAL
from tests.conftest import require_program
from tests.rigs.clients import Sandbox, docker_login, regauthd_fix
from tests.rigs.configs import auth
from tests.rigs.registry import RunningRegistry, start_registry

pytestmark = pytest.mark.integration

REGISTRIES = 3
ROUNDS = 4
PASSES = 3
"""Times each round logs in to every host (and drops in a legacy key after each login)."""
PASSWORD = "Race-s3cret-Pa55"


@pytest.fixture(scope="module")
def registries(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[RunningRegistry]]:
    require_program("docker-registry", "docker-registry")
    require_program("htpasswd", "apache2-utils")
    require_program("docker", "docker.io")
    users = {f"user{r}": PASSWORD for r in range(ROUNDS)}
    started: list[RunningRegistry] = []
    try:
        for i in range(REGISTRIES):
            started.append(
                start_registry(tmp_path_factory.mktemp(f"reg{i}"), users=users, name=f"reg{i}")
            )
        yield started
    finally:
        for reg in started:
            reg.stop()


def _hosts(registries: list[RunningRegistry]) -> list[str]:
    """Each registry under two names: two distinct ``auths`` keys for the same server."""
    hosts = []
    for reg in registries:
        hosts += [reg.host, f"localhost:{reg.port}"]
    return hosts


def _drop_in_legacy_key(config_file: Path, key: str, user: str) -> None:
    """Add one entry the way Docker saves: whole file to a temp file, then rename, no lock."""
    data = json.loads(config_file.read_text())
    data.setdefault("auths", {})[key] = {"auth": auth(user, PASSWORD)}
    tmp = config_file.with_name(f"config.json.dropin{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent="\t")
    tmp.replace(config_file)


# The fast loop: one process calling the function `regauthd fix` runs for each file, as fast as it
# can, until the stop file appears; it prints how often it ran, wrote and re-planned.
_TIGHT_LOOP = """
import json, sys
from pathlib import Path
from regauthd.dockerconfig.fixer import fix_file
from regauthd.dockerconfig.backups import BackupStore

config, state, stop = (Path(a) for a in sys.argv[1:4])
backups = BackupStore(state)
runs = writes = retries = 0
errors = []
while not stop.exists():
    report = fix_file(config, backups=backups)
    runs += 1
    writes += report.written
    retries += report.retries
    if report.error is not None:
        errors.append(str(report.error))
print(json.dumps({"runs": runs, "writes": writes, "retries": retries, "errors": errors}))
"""


class FixLoop:
    """``regauthd fix`` again and again while the logins run, in one of two ways.

    ``cli``: a new ``python -m regauthd fix --json`` process each time (a few per second).
    ``tight``: one process calling :func:`regauthd.dockerconfig.fixer.fix_file` in a loop
    (hundreds per second), so that its writes overlap Docker's far more often.
    """

    def __init__(self, kind: str, cfg_dir: Path, state_dir: Path, sandbox: Sandbox) -> None:
        self.kind = kind
        self.cfg_dir = cfg_dir
        self.state_dir = state_dir
        self.sandbox = sandbox
        self.runs = 0
        self.writes = 0
        self.retries = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._stop_file = sandbox.root / "stop-fix-loop"
        self._thread = threading.Thread(target=self._cli_loop, daemon=True)
        self._proc: subprocess.Popen[str] | None = None

    def _cli_loop(self) -> None:
        config_file = self.cfg_dir / "config.json"
        while not self._stop.is_set():
            run = regauthd_fix(self.cfg_dir, self.state_dir, sandbox=self.sandbox)
            self.runs += 1
            record = run.report_for(config_file)
            self.writes += bool(record["written"])
            self.retries += int(record["retries"])
            if run.returncode != 0 or PASSWORD in run.stdout + run.stderr:
                self.errors.append(run.stdout + run.stderr)

    def __enter__(self) -> FixLoop:
        if self.kind == "cli":
            self._thread.start()
            return self
        env = self.sandbox.environ(self.cfg_dir)
        env["PYTHONPATH"] = str(Path(regauthd.__file__).resolve().parent.parent)
        self._proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                _TIGHT_LOOP,
                str(self.cfg_dir / "config.json"),
                str(self.state_dir),
                str(self._stop_file),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        return self

    def __exit__(self, *exc: object) -> None:
        if self._proc is None:
            self._stop.set()
            self._thread.join(timeout=120)
            return
        self._stop_file.touch()
        try:
            out, err = self._proc.communicate(timeout=60)
        finally:
            if self._proc.poll() is None:
                self._proc.kill()
                self._proc.wait()
        if self._proc.returncode != 0:
            self.errors.append(f"fix loop exited {self._proc.returncode}: {err[-3000:]}")
            return
        summary = json.loads(out)
        self.runs, self.writes = summary["runs"], summary["writes"]
        self.retries = summary["retries"]
        self.errors += summary["errors"]
        if PASSWORD in out + err:
            self.errors.append("the fix loop printed a password")


# padding: other registries' entries already in the file. They make every read-plan-write of fix
# (and every save of Docker) take milliseconds, so that the two overlap often; a small file
# gives the fast loop more rounds instead.
@pytest.mark.parametrize(
    ("kind", "padding", "round_no"),
    [("cli", 1500, 0), ("cli", 300, 1), ("tight", 300, 2), ("tight", 1500, 3)],
)
def test_no_login_is_lost_while_fix_loops(
    kind: str,
    padding: int,
    round_no: int,
    registries: list[RunningRegistry],
    tmp_path: Path,
) -> None:
    user = f"user{round_no}"
    sandbox = Sandbox.create(tmp_path / "clients")
    cfg_dir = tmp_path / "docker"
    cfg_dir.mkdir()
    config_file = cfg_dir / "config.json"
    # Start from a config fix must rewrite, holding an older user for every host.
    stale = {host: {"auth": auth("stale", "old")} for host in _hosts(registries)}
    hub = {"docker.io": {"auth": auth("hub", "x")}}
    others = {f"reg{n}.example:5000": {"auth": auth(f"u{n}", "p")} for n in range(padding)}
    config_file.write_text(json.dumps({"auths": {**hub, **stale, **others}}))
    config_file.chmod(0o600)

    legacy: dict[str, str] = {}
    with FixLoop(kind, cfg_dir, tmp_path / "state", sandbox) as loop:
        for n in range(PASSES):
            for i, host in enumerate(_hosts(registries)):
                docker_login(cfg_dir, host, user, PASSWORD, sandbox=sandbox)
                made_up = f"legacy-{round_no}-{n}-{i}.example:5000"
                _drop_in_legacy_key(config_file, f"https://{made_up}/v1/", user)
                legacy[made_up] = user
    final = regauthd_fix(cfg_dir, tmp_path / "state", sandbox=sandbox)

    assert loop.errors == []
    assert final.returncode == 0, final.stdout + final.stderr
    assert loop.writes > 0, "fix never rewrote the file while the logins ran: proves nothing"
    auths = json.loads(config_file.read_text())["auths"]
    story = (
        f"{kind} loop: {loop.runs} runs, {loop.writes} writes, {loop.retries} re-plans after a "
        f"race; final keys: {sorted(k for k in auths if not k.startswith('reg'))}"
    )
    for host in _hosts(registries):
        assert auths.get(host) == {"auth": auth(user, PASSWORD)}, (host, story)
    for made_up, owner in legacy.items():
        assert auths.get(made_up) == {"auth": auth(owner, PASSWORD)}, (made_up, story)
    assert auths.get(HUB_CANONICAL) == {"auth": auth("hub", "x")}, story
    assert not [key for key in auths if "://" in key and key != HUB_CANONICAL], story
