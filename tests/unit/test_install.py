"""What `regauthd service install` writes: the unit template, the launchd plist, the layout."""

from __future__ import annotations

import plistlib
from pathlib import Path, PurePosixPath

import pytest

from regauthd.install import launchd
from regauthd.install.layout import Machine, Manager, plan
from regauthd.install.units import DEFAULT_EXEC_START, Scope, quote_exec_arg, render_systemd_unit

ROOT = Path(__file__).resolve().parents[2]
SYSTEM_ONLY = (
    "ReadWritePaths=",
    "CapabilityBoundingSet=",
    "StateDirectory=",
    "ConfigurationDirectory=",
    "ProtectSystem=",
    "PrivateTmp=",
    "WantedBy=multi-user.target",
    "network-online.target",
)
BOTH = (
    "Type=notify",
    "WatchdogSec=60s",
    "RestartPreventExitStatus=2",
    "ExecReload=/bin/kill -HUP $MAINPID",
    "NoNewPrivileges=yes",
    "SystemCallFilter=@chown",
    "UMask=0077",
)


def test_the_shipped_unit_is_the_template_rendered_for_the_documented_exec_start() -> None:
    assert DEFAULT_EXEC_START == ("/usr/local/bin/regauthd", "run")
    shipped = (ROOT / "systemd" / "regauthd.service").read_text()
    assert shipped == render_systemd_unit(DEFAULT_EXEC_START, Scope.SYSTEM)


def test_system_and_user_units_come_from_one_template() -> None:
    system = render_systemd_unit(("/opt/regauthd/bin/regauthd", "run"), Scope.SYSTEM)
    user = render_systemd_unit(("/home/ci/.local/bin/regauthd", "run"), Scope.USER)
    assert "ExecStart=/opt/regauthd/bin/regauthd run\n" in system
    assert "ExecStart=/home/ci/.local/bin/regauthd run\n" in user
    for line in BOTH:
        assert line in system
        assert line in user
    for line in SYSTEM_ONLY:
        assert line in system
        assert line not in user, line
    assert "WantedBy=default.target" in user
    assert "loginctl enable-linger" in user
    for unit in (system, user):
        assert "S|" not in unit
        assert "U|" not in unit
        assert "@EXEC_START@" not in unit


@pytest.mark.parametrize(
    ("arg", "quoted"),
    [
        ("/usr/bin/regauthd", "/usr/bin/regauthd"),
        ("/opt/my tools/regauthd", '"/opt/my tools/regauthd"'),
        ("/opt/100%/regauthd", "/opt/100%%/regauthd"),
        ("/opt/$HOME/regauthd", "/opt/$$HOME/regauthd"),
        ('/opt/a"b', '"/opt/a\\"b"'),
        ("/opt/a\\b", '"/opt/a\\\\b"'),
    ],
)
def test_exec_start_words_are_quoted_for_systemd(arg: str, quoted: str) -> None:
    assert quote_exec_arg(arg) == quoted


def test_exec_start_must_be_absolute() -> None:
    with pytest.raises(ValueError, match="absolute"):
        render_systemd_unit(("regauthd", "run"), Scope.SYSTEM)
    with pytest.raises(ValueError, match="absolute"):
        launchd.render_plist(("regauthd",), PurePosixPath("/Users/ann"))


PLIST_TYPES: dict[str, type] = {
    "Label": str,
    "ProgramArguments": list,
    "RunAtLoad": bool,
    "KeepAlive": dict,
    "ThrottleInterval": int,
    "ProcessType": str,
    "EnvironmentVariables": dict,
    "StandardOutPath": str,
    "StandardErrorPath": str,
    "ExitTimeOut": int,
}


def test_the_launchd_plist_parses_and_every_key_has_its_type() -> None:
    home = PurePosixPath("/Users/ann")
    data = launchd.render_plist(("/Users/ann/.local/bin/regauthd",), home)
    job = plistlib.loads(data)
    assert set(job) == set(PLIST_TYPES)
    for key, kind in PLIST_TYPES.items():
        assert type(job[key]) is kind, key
    assert launchd.plist_name() == job["Label"] + ".plist"
    assert job["ProgramArguments"] == [
        "/Users/ann/.local/bin/regauthd",
        "run",
        "--settings-error-exit",
        "0",
    ]
    assert all(isinstance(a, str) for a in job["ProgramArguments"])
    assert job["ProgramArguments"][0].startswith("/")
    assert job["RunAtLoad"] is True
    # restarted after a failure, not after a clean exit (a settings error exits 0 here)
    assert job["KeepAlive"] == {"SuccessfulExit": False}
    assert job["ThrottleInterval"] >= 10
    assert job["ProcessType"] == "Background"
    path = job["EnvironmentVariables"]["PATH"].split(":")
    assert "/opt/homebrew/bin" in path
    assert "/Applications/Docker.app/Contents/Resources/bin" in path
    assert "/usr/bin" in path
    for key in ("StandardOutPath", "StandardErrorPath"):
        assert job[key].startswith("/Users/ann/Library/Logs/regauthd/")
    assert b"settings error" in data  # the comment says how a restart loop is avoided


def _machine() -> Machine:
    return Machine(
        exec_start=("/opt/regauthd/bin/regauthd",),
        home=PurePosixPath("/home/ci"),
        config_home=PurePosixPath("/home/ci/.config"),
        uid=1001,
        user="ci",
        settings_file=PurePosixPath("/home/ci/.config/regauthd/config.toml"),
        state_dir=PurePosixPath("/home/ci/.local/state/regauthd"),
        settings_example=b"# example\n",
    )


def test_layouts_name_the_files_and_the_commands() -> None:
    system = plan(Manager.SYSTEMD, Scope.SYSTEM, _machine())
    assert system.service_file.path == PurePosixPath("/etc/systemd/system/regauthd.service")
    assert [str(c) for c in system.start] == [
        "systemctl daemon-reload",
        "systemctl enable regauthd.service",
        "systemctl restart regauthd.service",
    ]
    assert [str(c) for c in system.stop] == ["systemctl disable --now regauthd.service"]
    assert system.settings.keep

    user = plan(Manager.SYSTEMD, Scope.USER, _machine())
    assert user.service_file.path == PurePosixPath("/home/ci/.config/systemd/user/regauthd.service")
    assert all(c.argv[:2] == ("systemctl", "--user") for c in user.start)
    assert any("loginctl enable-linger ci" in n for n in user.notes)

    agent = plan(Manager.LAUNCHD, Scope.USER, _machine())
    assert agent.service_file.path == PurePosixPath(
        "/home/ci/Library/LaunchAgents/io.github.regauthd.plist"
    )
    assert [str(c) for c in agent.start] == [
        "launchctl bootout gui/1001/io.github.regauthd",
        "launchctl bootstrap gui/1001 /home/ci/Library/LaunchAgents/io.github.regauthd.plist",
    ]
    assert agent.start[0].may_fail
    assert agent.log_dir == PurePosixPath("/home/ci/Library/Logs/regauthd")
    with pytest.raises(ValueError, match="launchd"):
        plan(Manager.LAUNCHD, Scope.SYSTEM, _machine())


def test_rerooting_moves_every_path_and_keeps_the_commands() -> None:
    agent = plan(Manager.LAUNCHD, Scope.USER, _machine())
    moved = agent.rerooted(PurePosixPath("/img"))
    assert moved.service_file.path == PurePosixPath(
        "/img/home/ci/Library/LaunchAgents/io.github.regauthd.plist"
    )
    assert moved.settings.path == PurePosixPath("/img/home/ci/.config/regauthd/config.toml")
    assert moved.state_dir == PurePosixPath("/img/home/ci/.local/state/regauthd")
    assert moved.log_dir == PurePosixPath("/img/home/ci/Library/Logs/regauthd")
    assert moved.start == agent.start
