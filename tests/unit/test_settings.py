"""Settings: defaults, every option parsed, and errors that name the key and the form wanted."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from regauthd.service.watcher import BACKENDS
from regauthd.settings import (
    SYSTEM_SETTINGS_FILE,
    WATCH_BACKENDS,
    Environment,
    OutputMode,
    default_settings_file,
)
from regauthd.settingsfile import default_settings, load_settings, parse_settings, with_overrides
from regauthd.tomltable import SettingsError, parse_duration

ROOT = Path(__file__).resolve().parents[2]
USER = Environment(euid=1000, home=Path("/home/ci"), env={})
ROOT_ENV = Environment(euid=0, home=Path("/root"), env={})


def test_user_defaults_watch_only_the_users_own_config() -> None:
    s = default_settings(USER)
    assert s.watch.patterns(USER.home) == ("/home/ci/.docker/config.json",)
    assert s.state_dir == Path("/home/ci/.local/state/regauthd")
    assert s.output is OutputMode.AUTO
    assert not s.probe.enabled and not s.journal.enabled
    assert s.metrics_path == Path("/home/ci/.local/state/regauthd/regauthd.prom")


def test_system_defaults_watch_root_and_every_home() -> None:
    s = default_settings(ROOT_ENV)
    assert s.watch.patterns(ROOT_ENV.home) == (
        "/root/.docker/config.json",
        "/home/*/.docker/config.json",
    )
    assert s.state_dir == Path("/var/lib/regauthd")
    assert default_settings_file(ROOT_ENV) == SYSTEM_SETTINGS_FILE


def test_docker_config_and_xdg_variables_are_honoured() -> None:
    env = Environment(
        euid=1000,
        home=Path("/home/ci"),
        env={
            "DOCKER_CONFIG": "/srv/ci/docker",
            "XDG_CONFIG_HOME": "/cfg",
            "XDG_STATE_HOME": "relative/ignored",
        },
    )
    s = default_settings(env)
    assert s.watch.patterns(env.home) == (
        "/home/ci/.docker/config.json",
        "/srv/ci/docker/config.json",
    )
    assert default_settings_file(env) == Path("/cfg/regauthd/config.toml")
    assert s.state_dir == Path("/home/ci/.local/state/regauthd")


def test_systemd_state_directory_wins() -> None:
    env = Environment(euid=0, home=Path("/root"), env={"STATE_DIRECTORY": "/var/lib/regauthd2"})
    assert default_settings(env).state_dir == Path("/var/lib/regauthd2")


def test_every_option_is_read() -> None:
    text = """
        [daemon]
        state_dir = "/srv/state"
        output = "json"
        log_level = "debug"

        [watch]
        paths = ["/ci/*/.docker/config.json", "~/.docker/config.json"]
        docker_config_dirs = ["/opt/runner/docker"]
        backend = "polling"
        poll_interval = "500ms"

        [alerts]
        suppress_window = "2m"
        metrics_file = "/var/lib/node_exporter/regauthd.prom"
        metrics = false

        [flapping]
        max_undos = 5
        window = "90s"
        backoff = "10m"
        backoff_max = "2h"

        [probe]
        enabled = true
        interval = "30m"
        jitter = "90s"
        concurrency = 2
        timeout = "5s"
        insecure_registries = ["127.0.0.1:5000"]
        trusted_realms = ["auth.example.com"]
        ca_file = "/etc/ssl/company-ca.pem"
        [probe.repositories]
        "ghcr.io" = "acme/ci"

        [journal]
        enabled = true
        units = ["docker.service"]
        max_age = "1h"
        extra_patterns = ["pull access denied"]
        log_files = ["/var/log/docker.log"]
        backend = "journalctl"
        directory = "/host/var/log/journal"
        verdict_timeout = "2s"
    """
    s = parse_settings(text, USER)
    assert s.state_dir == Path("/srv/state")
    assert (s.output, s.log_level) == (OutputMode.JSON, "debug")
    assert s.watch.patterns(USER.home) == (
        "/ci/*/.docker/config.json",
        "/home/ci/.docker/config.json",
        "/opt/runner/docker/config.json",
    )
    assert (s.watch.backend, s.watch.poll_interval) == ("polling", 0.5)
    assert s.alerts.suppress_window == 120
    assert s.alerts.metrics_file == Path("/var/lib/node_exporter/regauthd.prom")
    assert s.alerts.metrics is False
    assert (s.flapping.max_undos, s.flapping.window) == (5, 90)
    assert (s.flapping.backoff, s.flapping.backoff_max) == (600, 7200)
    assert s.probe.enabled and s.probe.interval == 1800 and s.probe.jitter == 90
    assert (s.probe.concurrency, s.probe.timeout) == (2, 5)
    assert s.probe.repositories == {"ghcr.io": "acme/ci"}
    assert s.probe.insecure_registries == ("127.0.0.1:5000",)
    assert s.probe.trusted_realms == ("auth.example.com",)
    assert s.journal.enabled and s.journal.units == ("docker.service",)
    assert s.journal.max_age == 3600
    assert s.journal.extra_patterns == ("pull access denied",)
    assert s.journal.log_files == (Path("/var/log/docker.log"),)
    assert s.probe.ca_file == Path("/etc/ssl/company-ca.pem")
    assert (s.journal.backend, s.journal.directory) == ("journalctl", Path("/host/var/log/journal"))
    assert s.journal.verdict_timeout == 2


def test_example_file_parses_to_exactly_the_defaults() -> None:
    """config.example.toml documents every option with its default: uncommented, it must give
    the same settings as no file at all."""
    text = (ROOT / "config.example.toml").read_text()
    option = re.compile(r"^# ([a-z_]+ = .*)$")
    uncommented = "\n".join(
        m.group(1) if (m := option.match(line)) else line for line in text.splitlines()
    )
    data = tomllib.loads(uncommented)
    keys = {f"{t}.{k}" for t, v in data.items() for k in v}
    every = {
        "daemon.state_dir", "daemon.output", "daemon.log_level", "watch.paths",
        "watch.docker_config_dirs", "watch.backend", "watch.poll_interval", "watch.auth_files",
        "alerts.suppress_window", "alerts.metrics_file", "alerts.metrics", "metrics.listen",
        "alerts.summary_interval", "flapping.max_undos", "flapping.window", "flapping.backoff",
        "flapping.backoff_max", "probe.enabled", "probe.interval", "probe.jitter",
        "probe.concurrency", "probe.timeout", "probe.insecure_registries",
        "probe.trusted_realms", "probe.repositories", "probe.ca_file", "journal.enabled",
        "journal.units", "journal.max_age", "journal.extra_patterns", "journal.log_files",
        "journal.backend", "journal.directory", "journal.verdict_timeout", "expiry.enabled",
        "expiry.lead_time", "helpers.path",
        "helpers.timeout", "helpers.budget",
    }  # fmt: skip
    assert keys == every
    parsed = parse_settings(uncommented, USER)
    default = default_settings(USER)
    # state_dir is "" in the example (meaning: the default for who runs it).
    assert parsed == default


@pytest.mark.parametrize(
    ("text", "key", "form"),
    [
        ("[flapping]\nwindow = 'soon'", "flapping.window", "a duration like"),
        ("[flapping]\nmax_undos = 0", "flapping.max_undos", "a whole number >= 1"),
        ("[flapping]\nmax_undos = true", "flapping.max_undos", "a whole number >= 1"),
        ("[flapping]\nbackoff = '1h'\nbackoff_max = '1m'", "flapping.backoff_max", "at least"),
        ("[daemon]\noutput = 'syslog'", "daemon.output", 'one of "auto", "journald"'),
        ("[daemon]\nstate_dir = 'relative'", "daemon.state_dir", "an absolute path"),
        ("[watch]\npaths = 'x'", "watch.paths", "a list of non-empty strings"),
        ("[watch]\npaths = ['relative/config.json']", "watch.paths", "absolute paths"),
        ("[watch]\npaths = ['/home/u/.docker/*.json']", "watch.paths", "globs in directory"),
        ("[watch]\nbackend = 'kqueue'", "watch.backend", 'one of "auto", "inotify", "native"'),
        ("[watch]\npoll_interval = 0", "watch.poll_interval", "a non-zero duration"),
        ("[watch]\npoll_interval = 'often'", "watch.poll_interval", "a duration like"),
        ("[probe]\nenabled = 'yes'", "probe.enabled", "true or false"),
        ("[probe]\nrepositories = { 'ghcr.io' = 1 }", "probe.repositories", "a table of strings"),
        ("[journal]\nextra_patterns = ['(']", "journal.extra_patterns", "valid regular exp"),
        ("[journal]\nlog_files = ['x.log']", "journal.log_files", "absolute paths"),
        ("[journal]\nbackend = 'syslog'", "journal.backend", 'one of "auto", "systemd"'),
        ("[journal]\ndirectory = 'journal'", "journal.directory", "an absolute path"),
        ("[journal]\nverdict_timeout = 0", "journal.verdict_timeout", "a non-zero duration"),
        ("[probe]\nca_file = 'ca.pem'", "probe.ca_file", "an absolute path"),
        ("probe = 3", "probe", "a table"),
        ("[probe]\nintervall = '1m'", "probe.intervall", "unknown setting"),
        ("colour = 'blue'", "colour", "unknown setting"),
    ],
)
def test_bad_values_name_the_key_and_the_form(text: str, key: str, form: str) -> None:
    with pytest.raises(SettingsError) as info:
        parse_settings(text, USER, source=Path("/etc/regauthd/config.toml"))
    message = str(info.value)
    assert message.startswith("/etc/regauthd/config.toml: ")
    assert f"`{key}`" in message
    assert form in message


def test_invalid_toml_says_where() -> None:
    with pytest.raises(SettingsError, match=r"x\.toml: not valid TOML: .*line 1"):
        parse_settings("[daemon\n", USER, source=Path("x.toml"))


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("250ms", 0.25), ("30s", 30), ("5m", 300), ("1h", 3600), ("1d", 86400), (12, 12), (1.5, 1.5)],
)
def test_durations(value: object, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["", "5 minutes", "-1s", True, [1], "1w"])
def test_bad_durations(value: object) -> None:
    with pytest.raises(ValueError, match="a duration like"):
        parse_duration(value)


def test_load_settings_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="settings file not found"):
        load_settings(tmp_path / "nope.toml", USER)


def test_load_settings_without_a_file_gives_defaults(tmp_path: Path) -> None:
    env = Environment(euid=1000, home=tmp_path, env={"XDG_CONFIG_HOME": str(tmp_path / "c")})
    assert load_settings(None, env) == default_settings(env)
    (tmp_path / "c" / "regauthd").mkdir(parents=True)
    (tmp_path / "c" / "regauthd" / "config.toml").write_text("[alerts]\nsuppress_window = 9\n")
    loaded = load_settings(None, env)
    assert loaded.alerts.suppress_window == 9
    assert loaded.source == tmp_path / "c" / "regauthd" / "config.toml"


def test_command_line_overrides_replace_watch_paths() -> None:
    s = with_overrides(
        default_settings(USER),
        docker_configs=("/a/docker", "/b/config.json"),
        state_dir=Path("/st"),
    )
    assert s.watch.patterns(USER.home) == ("/b/config.json", "/a/docker/config.json")
    assert s.state_dir == Path("/st")


def test_command_line_overrides_keep_the_watch_backend() -> None:
    settings = parse_settings('[watch]\nbackend = "polling"\npoll_interval = "1s"', USER)
    s = with_overrides(settings, docker_configs=("/a/docker",))
    assert (s.watch.backend, s.watch.poll_interval) == ("polling", 1.0)


def test_watch_backends_are_the_watch_layers() -> None:
    assert WATCH_BACKENDS == BACKENDS


def test_run_exits_2_with_one_clear_message(tmp_path: Path) -> None:
    bad = tmp_path / "config.toml"
    bad.write_text("[flapping]\nwindow = 'soon'\n")
    proc = subprocess.run(
        [sys.executable, "-m", "regauthd", "run", "--config", str(bad)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "`flapping.window` must be a duration like" in lines[0]


def test_each_watched_users_podman_auth_files_are_watched_too() -> None:
    """podman's auth files follow from the watched Docker configs (containers' rules apply)."""
    user = default_settings(Environment(1000, Path("/home/ci"), {"XDG_RUNTIME_DIR": "/run/u"}))
    assert user.watch.auth_file_patterns(Path("/home/ci")) == (
        "/home/ci/.config/containers/auth.json",
        "/run/u/containers/auth.json",
    )
    system = default_settings(ROOT_ENV)
    assert system.watch.auth_file_patterns(ROOT_ENV.home) == (
        "/root/.config/containers/auth.json",
        "/home/*/.config/containers/auth.json",
        "/run/user/*/containers/auth.json",
    )
    none = parse_settings("[watch]\nauth_files = []\n", USER)
    assert none.watch.auth_file_patterns(USER.home) == ()


@pytest.mark.parametrize(
    ("listen", "address"),
    [
        ("127.0.0.1:9464", ("127.0.0.1", 9464)),
        ("[::1]:9464", ("::1", 9464)),
        ("0.0.0.0:9464", ("0.0.0.0", 9464)),  # noqa: S104 - explicit: served to the network
        ("", None),
    ],
)
def test_metrics_listen_takes_an_ip_and_a_port(listen: str, address: object) -> None:
    s = parse_settings(f'[metrics]\nlisten = "{listen}"\n', USER)
    assert s.metrics.listen == address


@pytest.mark.parametrize(
    "listen", ["localhost:9464", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:70000", "::1:9464", "9464"]
)
def test_metrics_listen_refuses_names_and_bad_ports(listen: str) -> None:
    with pytest.raises(SettingsError) as caught:
        parse_settings(f'[metrics]\nlisten = "{listen}"\n', USER, source=Path("/etc/r.toml"))
    message = str(caught.value)
    assert "`metrics.listen` must be an IP address and port" in message
    assert repr(listen) in message and "\n" not in message
