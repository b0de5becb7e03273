"""The root daemon runs the credential helpers a user's config names as that user (issue 12,
"Privilege" items 3 and 4).

Unprivileged users are made for each test (:mod:`tests.rigs.users`) and act on their own
files; the daemon runs as root (this process) and repairs and probes their configs. Helpers are
real: ``pass`` + ``docker-credential-pass`` (the private copies in ``.tools/``) initialised in
the user's own home, and small scripts in a private root-owned directory on the helper PATH the
daemon is given (``[helpers] path``).
"""

from __future__ import annotations

import base64
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require_program, require_tool, unavailable
from tests.rigs.configs import HUB, auth, mis_keyed, wait_until
from tests.rigs.daemon import Daemon
from tests.rigs.registry import start_registry
from tests.rigs.tools import TOOLS_BIN
from tests.rigs.users import UserFactory, reachable_tmpdir

REG_USER = "team-ci"
REG_SECRET = "helper-as-user-pw-7Qx"


def _settings(patterns: list[str], helper_dirs: list[Path], extra: str = "") -> str:
    paths = ", ".join(f'"{p}"' for p in patterns)
    dirs = ", ".join(f'"{d}"' for d in [*helper_dirs, TOOLS_BIN, Path("/usr/bin"), Path("/bin")])
    return f"""
[daemon]
output = "json"
log_level = "debug"
[alerts]
suppress_window = 0
[watch]
paths = [{paths}]
[helpers]
path = [{dirs}]
{extra}
"""


@pytest.fixture
def helper_dir() -> Iterator[Path]:
    """A private directory for test helpers: root's (0755), so root may run what is in it."""
    # Not under tmp_path: pytest keeps /tmp/pytest-of-root 0700 (every session run as root
    # sets it again), and the users must reach the scripts.
    with reachable_tmpdir("rgd-helpers-") as directory:
        yield directory


def _script(directory: Path, name: str, body: str) -> Path:
    path = directory / f"docker-credential-{name}"
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for daemon in started:
        daemon.stop()


def _start(tmp_path: Path, started: list[Daemon], text: str, **kwargs: Any) -> Daemon:
    daemon = Daemon(tmp_path, settings=text, **kwargs)
    started.append(daemon)
    daemon.wait_ready()
    return daemon


def _auths(path: Path) -> list[str]:
    return list(json.loads(path.read_bytes()).get("auths", {}))


def test_a_users_own_pass_store_serves_the_root_daemons_repair_and_probe(
    tmp_path: Path, test_users: UserFactory, daemons: list[Daemon], helper_dir: Path
) -> None:
    require_program("gpg", "gnupg")
    require_program("docker-registry", "docker-registry")
    require_tool("pass")
    require_tool("docker-credential-pass")
    reg = start_registry(tmp_path, users={REG_USER: REG_SECRET})
    try:
        alice, bob = test_users.create(), test_users.create()
        alice.init_pass()
        # What an old `docker login` left: the secret under a URL Docker no longer asks for.
        legacy = f"https://{reg.host}/v1/"
        alice.pass_store(legacy, REG_USER, REG_SECRET)
        alice_cfg = alice.write(
            ".docker/config.json",
            json.dumps({"auths": {legacy: {}}, "credsStore": "pass"}).encode(),
        )
        # bob's config names a "helper" that is a path: refused, and only his probe says so.
        marker = tmp_path / "evil-ran"
        _script(helper_dir, "x", f"touch {marker}\n")
        bob_cfg = bob.write(
            ".docker/config.json",
            json.dumps({"auths": {reg.host: {}}, "credsStore": f"../../{helper_dir}/x"}).encode(),
        )
        text = _settings(
            [f"{test_users.base}/home/*/.docker/config.json"],
            [helper_dir],
            '[probe]\nenabled = true\ninterval = "1s"\njitter = 0\ntimeout = "5s"\n',
        )
        daemon = _start(tmp_path, daemons, text)

        # The repair moved the secret inside alice's own store, run as alice.
        wait_until(lambda: _auths(alice_cfg) == [reg.host], "alice's config re-keyed")
        assert alice.pass_get(reg.host) == (REG_USER, REG_SECRET)

        # The probe read it from her store too, and it works against the registry.
        def results(event: str, config: Path) -> list[dict[str, Any]]:
            return [e for e in daemon.named(event) if e["path"] == str(config)]

        wait_until(
            lambda: any(e["status"] == "ok" for e in daemon.named("probe.scheduled_result")),
            f"an ok probe: {daemon.out.read_text()[-3000:]}",
        )
        (failing,) = wait_until(lambda: results("probe.failing", bob_cfg), "bob's probe failing")
        assert "refused" in failing["reason"] and "letters, digits" in failing["reason"]
        # (Probes start before the first repair pass, so alice's config may be probed once
        # before its secret is re-keyed: then it recovers.)
        wait_until(
            lambda: (
                len(results("probe.recovered", alice_cfg))
                == len(results("probe.failing", alice_cfg))
            ),
            "alice's probe working",
        )
        assert len(results("probe.failing", alice_cfg)) <= 1
        assert not marker.exists()
        # Root's own pass store (the daemon's HOME) was never touched.
        assert not (daemon.home / ".password-store").exists()
        assert not (daemon.home / ".gnupg").exists()
        daemon.stop()
        output = daemon.out.read_text() + daemon.err.read_text()
        assert REG_SECRET not in output
        assert auth(REG_USER, REG_SECRET) not in output
    finally:
        reg.stop()


def test_a_hanging_helper_costs_its_user_a_bounded_share_and_others_are_repaired_at_once(
    tmp_path: Path, test_users: UserFactory, daemons: list[Daemon], helper_dir: Path
) -> None:
    # Unique durations name the two sleepers (GNU sleep adds its arguments up).
    hang_marker, child_marker = f"sleep 7000 {os.getpid()}", f"sleep 8000 {os.getpid()}"
    # The helper forks a child that sleeps "forever" too: the whole process group must go.
    _script(helper_dir, "hang", f"{child_marker} &\nexec {hang_marker}\n")
    alice, bob = test_users.create(), test_users.create()
    alice_cfg = alice.home / ".docker" / "config.json"
    bob_cfg = bob.home / ".docker" / "config.json"
    # Present before the daemon starts, so the watches are in place at once.
    alice.write(".docker/config.json", b"{}")
    bob.write(".docker/config.json", b"{}")
    text = _settings(
        [f"{test_users.base}/home/*/.docker/config.json"],
        [helper_dir],
        'timeout = "1s"\nbudget = "2s"\n',
    )
    daemon = _start(tmp_path, daemons, text, watchdog_usec=1_000_000)  # a ping every 0.5 s
    # alice's config needs three helper moves: each get would hang.
    hub_keys = ["docker.io", "https://docker.io", "http://127.0.0.1:5000/"]
    alice.write(
        ".docker/config.json",
        json.dumps({"auths": {k: {} for k in hub_keys}, "credsStore": "hang"}).encode(),
    )
    started = time.monotonic()
    pings: list[float] = []
    seen = len(daemon.notify.poll())

    def watch_pings() -> None:
        nonlocal seen
        messages = daemon.notify.poll()
        pings.extend(time.monotonic() for m in messages[seen:] if m == "WATCHDOG=1")
        seen = len(messages)

    # While alice's helper hangs, bob logs in (a mis-keyed inline credential).
    wait_until(lambda: _sleepers(hang_marker), "alice's helper running")
    bob.write(
        ".docker/config.json",
        json.dumps({"auths": {"https://index.docker.io/v1/": {"auth": auth("b", "pw")},
                              "docker.io": {"auth": auth("b", "pw")}}}).encode(),
    )  # fmt: skip
    bob_written = time.monotonic()

    def bob_repaired() -> bool:
        watch_pings()
        return _auths(bob_cfg) == ["https://index.docker.io/v1/"]

    wait_until(bob_repaired, f"bob's repair: {daemon.out.read_text()[-3000:]}")
    bob_after = time.monotonic() - bob_written
    (budget,) = wait_until(lambda: daemon.named("helper.budget"), "the helper.budget alert")
    assert budget["user"] == alice.name
    # Keep listening a little: the pings keep coming all along.
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        watch_pings()
        time.sleep(0.05)
    gaps = [b - a for a, b in zip([started, *pings], pings, strict=False)]
    assert pings and max(gaps) < 1.0, f"watchdog gaps {gaps}"
    # Bounded: bob waited at most one helper timeout plus what his own repair takes.
    assert bob_after < 6.0, bob_after
    # alice's file is left as it was (the moves could not run); one alert, no stray process.
    assert sorted(_auths(alice_cfg)) == sorted(hub_keys)
    wait_until(lambda: not _sleepers(hang_marker), "the helper's process group killed")
    wait_until(lambda: not _sleepers(child_marker), "the helper's child killed")
    unfixable = [e for e in daemon.named("config.normalized") if e["path"] == str(alice_cfg)]
    assert unfixable == []
    assert len(daemon.named("helper.budget")) == 1
    assert daemon.proc.poll() is None


def _sleepers(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if cmdline.strip() == marker:
            found.append(int(entry.name))
    return found


def test_with_only_the_units_capabilities_a_users_hung_helper_is_killed(
    tmp_path: Path, test_users: UserFactory, daemons: list[Daemon], helper_dir: Path
) -> None:
    """The daemon run with the unit's capability bounding set, nothing more: it reads a user's
    config in her 0700 home (CAP_DAC_READ_SEARCH), runs her helper as her (CAP_SETUID,
    CAP_SETGID) and kills it and its child when it hangs (CAP_KILL: they are hers)."""
    setpriv = require_program("setpriv", "util-linux")
    unit = (Path(__file__).resolve().parents[2] / "systemd" / "regauthd.service").read_text()
    (bounding,) = [
        line.split("=", 1)[1] for line in unit.splitlines() if line.startswith("CapabilityBounding")
    ]
    caps = ",".join(["-all", *(f"+{c.removeprefix('CAP_').lower()}" for c in bounding.split())])
    hang_marker, child_marker = f"sleep 7100 {os.getpid()}", f"sleep 8100 {os.getpid()}"
    _script(helper_dir, "hang", f"{child_marker} &\nexec {hang_marker}\n")
    alice = test_users.create()
    alice.home.chmod(0o700)
    cfg = alice.write(
        ".docker/config.json",
        json.dumps({"auths": {"127.0.0.1:1": {}}, "credsStore": "hang"}).encode(),
    )
    text = _settings(
        [f"{test_users.base}/home/*/.docker/config.json"],
        [helper_dir],
        'timeout = "1s"\n[probe]\nenabled = true\ninterval = "1h"\njitter = 0\n',
    )
    prefix = [setpriv, "--bounding-set", caps, "--inh-caps", "-all", "--"]
    daemon = _start(tmp_path, daemons, text, command_prefix=prefix)
    status = Path(f"/proc/{daemon.proc.pid}/status").read_text()
    (bnd,) = [line.split()[1] for line in status.splitlines() if line.startswith("CapBnd:")]
    assert int(bnd, 16) == sum(1 << n for n in (2, 5, 6, 7))  # DAC_READ_SEARCH KILL SETGID SETUID
    (failing,) = wait_until(lambda: daemon.named("probe.failing"), "the probe's verdict")
    assert failing["path"] == str(cfg)
    assert "did not answer within 1 s and was killed" in failing["reason"]
    wait_until(lambda: not _sleepers(hang_marker), "the hung helper killed")
    wait_until(lambda: not _sleepers(child_marker), "the helper's child killed")


def test_with_only_the_units_capabilities_a_users_config_is_repaired_as_hers(
    tmp_path: Path, test_users: UserFactory, daemons: list[Daemon], helper_dir: Path
) -> None:
    """The unit gives no CAP_DAC_OVERRIDE, CAP_CHOWN or CAP_FOWNER: the root daemon repairs a
    user's config in her 0700 home only through her file-system identity (setfsuid/setfsgid
    need CAP_SETUID/CAP_SETGID), and the result is still hers, 0600."""
    setpriv = require_program("setpriv", "util-linux")
    unit = (Path(__file__).resolve().parents[2] / "systemd" / "regauthd.service").read_text()
    (bounding,) = [
        line.split("=", 1)[1] for line in unit.splitlines() if line.startswith("CapabilityBounding")
    ]
    caps = ",".join(["-all", *(f"+{c.removeprefix('CAP_').lower()}" for c in bounding.split())])
    alice = test_users.create()
    alice.home.chmod(0o700)
    cfg = alice.write(".docker/config.json", mis_keyed())
    text = _settings([f"{test_users.base}/home/*/.docker/config.json"], [helper_dir])
    prefix = [setpriv, "--bounding-set", caps, "--inh-caps", "-all", "--"]
    daemon = _start(tmp_path, daemons, text, command_prefix=prefix)
    wait_until(lambda: _auths(cfg) == [HUB], "her config repaired")
    st = cfg.stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (alice.uid, alice.gid, 0o600)
    assert daemon.named("config.normalized")
    assert not daemon.named("config.save_failed") and not daemon.named("config.unfixable")


def test_one_users_event_flood_does_not_make_another_users_write_be_missed(
    tmp_path: Path, test_users: UserFactory, daemons: list[Daemon]
) -> None:
    """alice floods her own watched directory until the shared inotify queue overflows (the
    daemon is stopped meanwhile, so nothing is read); bob's login in that time is lost as an
    event, and still repaired (the overflow rescan); his next login is repaired as usual."""
    queue = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
    if queue > 200_000:
        unavailable(f"max_queued_events is {queue}: too many events to overflow")
    alice, bob = test_users.create(), test_users.create()
    alice.write(".docker/a", b"")
    bob_cfg = bob.write(".docker/config.json", b"{}")
    daemon = _start(
        tmp_path, daemons, _settings([f"{test_users.base}/home/*/.docker/config.json"], [])
    )
    flood = (
        "import os, sys\n"
        "a, b = sys.argv[1] + '/a', sys.argv[1] + '/b'\n"
        f"for _ in range({queue // 2 + 64}):\n"
        "    os.rename(a, b)\n"
        "    os.rename(b, a)\n"
    )
    daemon.signal(signal.SIGSTOP)
    try:
        alice.run(["/usr/bin/python3", "-c", flood, str(alice.home / ".docker")])
        bob.write(".docker/config.json", mis_keyed(password="pw-in-the-flood"))
    finally:
        daemon.signal(signal.SIGCONT)
    (alert,) = daemon.wait_event("watch.overflow")
    assert alert["configs"] == 2
    wait_until(lambda: _auths(bob_cfg) == [HUB], "bob's login repaired after the overflow")
    bob.write(".docker/config.json", mis_keyed(password="pw-after-the-flood"))
    wait_until(
        lambda: _auths(bob_cfg) == [HUB] and b"pw-after" in _decoded(bob_cfg),
        "bob's next login repaired",
    )
    assert len(daemon.named("watch.overflow")) == 1


def _decoded(path: Path) -> bytes:
    entries = json.loads(path.read_bytes()).get("auths", {}).values()
    return b" ".join(base64.b64decode(e["auth"]) for e in entries if "auth" in e)
