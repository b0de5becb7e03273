"""Hostile configs that Docker accepts (or refuses), through `check` and `fix` as people run them.

Each case is the real bytes: no traceback, one clear line, the exit status, and the file left
byte for byte (or, where `fix` repairs it, the parts regauthd does not own written back exactly
as they were). What Docker accepts or refuses is checked against the real docker CLI.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require_program
from tests.rigs.cli import run_in_process
from tests.rigs.clients import run_client
from tests.rigs.configs import auth

PASSWORD = "hostile-Pa55-do-not-leak"
AUTH = auth("alice", PASSWORD)
HUB_ALIAS = b'"auths": {"docker.io": {"auth": "' + AUTH.encode() + b'"}}'


def run(*args: str, path: str | None = None) -> subprocess.CompletedProcess[str]:
    proc = run_in_process(*args, path=path)
    output = proc.stdout + proc.stderr
    assert PASSWORD not in output and AUTH not in output
    return proc


def docker_loads(directory: Path) -> bool:
    """Whether the docker CLI loads ``directory/config.json`` without its parse warning."""
    require_program("docker", "docker-ce-cli")
    result = run_client(["docker", "login", "--help"], directory)
    return "Error parsing config file" not in result.output


def write(tmp_path: Path, data: bytes) -> Path:
    directory = tmp_path / "docker"
    directory.mkdir(exist_ok=True)
    config = directory / "config.json"
    config.write_bytes(data)
    config.chmod(0o600)
    return config


def check_and_fix(tmp_path: Path, config: Path) -> tuple[subprocess.CompletedProcess[str], ...]:
    state = str(tmp_path / "state")
    checked = run("check", "--docker-config", str(config))
    fixed = run("fix", "--docker-config", str(config), "--state-dir", state)
    return checked, fixed


# -- refused, file left: what regauthd will not rewrite --------------------------------------------

REFUSED = {
    # Docker accepts 2,000 levels (Go's limit is 10,000); Python's parser would overflow its stack.
    "nesting 2,000 deep": (
        b'{"x": ' + b"[" * 2000 + b"]" * 2000 + b", " + HUB_ALIAS + b"}",
        "nests values more than 200 levels deep",
        True,
    ),
    # Python's json reads NaN; Go's decoder refuses the whole file.
    "a NaN literal": (b'{"x": NaN, ' + HUB_ALIAS + b"}", "holds the bare word NaN", False),
    "an Infinity literal": (
        b'{"x": -Infinity, ' + HUB_ALIAS + b"}",
        "holds the bare word -Infinity",
        False,
    ),
}


@pytest.mark.parametrize("case", REFUSED)
def test_configs_regauthd_will_not_rewrite_are_refused_in_one_line(
    case: str, tmp_path: Path
) -> None:
    data, line, docker_accepts = REFUSED[case]
    config = write(tmp_path, data)
    assert docker_loads(config.parent) is docker_accepts
    for proc in check_and_fix(tmp_path, config):
        assert proc.returncode == 1
        refusals = [x for x in proc.stdout.splitlines() if x.startswith("  refused: ")]
        assert len(refusals) == 1 and line in refusals[0], proc.stdout
        assert config.read_bytes() == data


# -- repaired, every other byte kept ---------------------------------------------------------------

KEPT = {
    # 1e999999 is a float Python reads as inf; written back it must stay 1e999999 (not Infinity).
    "a float beyond double range": b'{"x": 1e999999, ',
    # ...and -1E-999999 as -0.0 (Go reads both; neither may change its text).
    "a float below double range": b'{"x": -1E-999999, ',
    # Python refuses to convert integers of over 4,300 digits.
    "an integer of 5,000 digits": b'{"x": ' + b"9" * 5000 + b", ",
    # A lone surrogate escape: Python holds it, but cannot encode it as UTF-8.
    "a lone surrogate escape": b'{"x": "\\ud800 and \\udfff", ',
}


@pytest.mark.parametrize("case", KEPT)
def test_values_python_cannot_hold_are_written_back_as_they_were(case: str, tmp_path: Path) -> None:
    data = KEPT[case] + HUB_ALIAS + b"}"
    config = write(tmp_path, data)
    assert docker_loads(config.parent)
    checked, fixed = check_and_fix(tmp_path, config)
    assert checked.returncode == 1 and "would fix" in checked.stdout  # the Hub alias
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    after = config.read_bytes()
    after.decode("utf-8")  # strict: valid UTF-8
    assert b"Infinity" not in after and b"NaN" not in after
    value = KEPT[case][len(b'{"x": ') : -len(b", ")]
    assert b'"x": ' + value in after  # the original text, byte for byte
    assert b'"https://index.docker.io/v1/"' in after
    assert docker_loads(config.parent)


# -- a non-object entry next to an alias -----------------------------------------------------------


@pytest.mark.parametrize(
    "auths",
    [
        b'{"docker.io": {"auth": "AUTH"}, "https://index.docker.io/v1/": 5}',
        b'{"docker.io": "x", "https://index.docker.io/v1/": {"auth": "AUTH"}}',
        b'{"https://index.docker.io/v1/": [], "registry-1.docker.io": {"auth": "AUTH"}}',
    ],
)
def test_a_non_object_entry_next_to_an_alias_never_replaces_a_credential(
    auths: bytes, tmp_path: Path
) -> None:
    """Docker refuses such a file; before, `fix` replaced the credential with the 5."""
    data = b'{"auths": ' + auths.replace(b"AUTH", AUTH.encode()) + b"}"
    config = write(tmp_path, data)
    assert not docker_loads(config.parent)
    for proc in check_and_fix(tmp_path, config):
        assert proc.returncode == 1
        errors = [x for x in proc.stdout.splitlines() if "the entry is not a JSON object" in x]
        assert len(errors) == 1, proc.stdout
        assert config.read_bytes() == data


# -- credential helpers that cannot run ------------------------------------------------------------


@pytest.mark.parametrize(
    ("helper", "content", "mode", "cause"),
    [
        ("eacces", b"#!/bin/sh\nexit 0\n", 0o644, "permission denied (EACCES)"),
        ("enoexec", b"not a program\x7fELF\n", 0o755, "Exec format error (ENOEXEC)"),
    ],
)
def test_a_helper_that_cannot_run_is_one_finding_and_the_file_stays(
    helper: str, content: bytes, mode: int, cause: str, tmp_path: Path
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    program = bin_dir / f"docker-credential-{helper}"
    program.write_bytes(content)
    program.chmod(mode)
    # The Hub entry's secret lives in the helper under docker.io: renaming needs the helper.
    data = json.dumps({"auths": {"docker.io": {}, "ghcr.io": {}}, "credsStore": helper}).encode()
    config = write(tmp_path, data)
    proc = run(
        "fix",
        "--docker-config",
        str(config),
        "--state-dir",
        str(tmp_path / "state"),
        path=str(bin_dir),
    )
    assert proc.returncode == 1
    lines = [x for x in proc.stdout.splitlines() if "could not be run" in x]
    assert len(lines) == 1 and cause in lines[0], proc.stdout
    assert f"`docker-credential-{helper}`" in lines[0]
    assert config.read_bytes() == data
    # The probe asks the same helper: one result naming the cause, no network needed for that.
    # A real process: `probe` configures logging for the whole process.
    proc = subprocess.run(
        [sys.executable, "-m", "regauthd", "probe", "--docker-config", str(config), "ghcr.io"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"},
    )
    assert "Traceback" not in proc.stderr
    assert proc.returncode == 1
    lines = [x for x in proc.stdout.splitlines() if x.startswith("ghcr.io")]
    assert len(lines) == 1 and "could not be run" in lines[0] and cause in lines[0], proc.stdout


# -- files under /proc -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "line"),
    [
        ("/proc/self/mem", "cannot be read: input/output error (EIO)"),
        ("/proc/self/pagemap", "cannot be read: Invalid argument (EINVAL)"),
        ("/proc/self/status", "invalid JSON"),
        ("/proc/self/fd/0", "is not a regular file"),
    ],
)
def test_files_under_proc_are_refused_in_one_line(path: str, line: str, tmp_path: Path) -> None:
    for proc in check_and_fix(tmp_path, Path(path)):
        assert proc.returncode == 1
        refusals = [x for x in proc.stdout.splitlines() if x.startswith("  refused: ")]
        assert len(refusals) == 1 and line in refusals[0], proc.stdout


# -- what is printed -------------------------------------------------------------------------------


def test_config_keys_cannot_put_escapes_or_fake_lines_into_the_report(tmp_path: Path) -> None:
    key = "\x1b[2J\x1b[32mghcr.io\nregauthd: all configs clean\u202e\x9b"
    data = json.dumps({"auths": {key: {"auth": "not base64!"}}}).encode()
    config = write(tmp_path, data)
    for proc in check_and_fix(tmp_path, config):
        assert proc.returncode == 1
        for char in "\x1b\u202e\x9b":
            assert char not in proc.stdout + proc.stderr
        assert not any(
            x.startswith("regauthd: all configs clean") for x in proc.stdout.splitlines()
        )
        assert "\\x1b[2J\\x1b[32mghcr.io\\x0aregauthd: all configs clean\\u202e" in proc.stdout
        assert config.read_bytes() == data
    proc = run("check", "--docker-config", str(config), "--json")
    (obj,) = map(json.loads, proc.stdout.splitlines())  # one object a line, the key intact
    assert obj["findings"][0]["key"] == key
    assert "\x1b" not in proc.stdout and "\u202e" not in proc.stdout


def test_a_lone_surrogate_key_is_printed_escaped(tmp_path: Path) -> None:
    config = write(tmp_path, b'{"auths": {"\\ud800": {"auth": "not base64!"}}}')
    for proc in check_and_fix(tmp_path, config):
        assert proc.returncode == 1
        assert "[\\ud800]" in proc.stdout
    proc = run("check", "--docker-config", str(config), "--json")
    assert json.loads(proc.stdout.splitlines()[0])["findings"][0]["key"] == "\ud800"


def test_the_dry_run_diff_redacts_strings_it_does_not_know(tmp_path: Path) -> None:
    api_key, proxy_pw = "sk-live-4f1c9a-do-not-leak", "proxy-pw-do-not-leak"
    config = write(
        tmp_path,
        json.dumps(
            {
                "auths": {"docker.io": {"auth": AUTH}},
                "HttpHeaders": {"X-Meta-Api-Key": api_key},
                "proxies": {"default": {"httpsProxy": f"http://bob:{proxy_pw}@proxy:3128"}},
                "someFutureField": {"nested": [api_key]},
            },
            indent="\t",
        ).encode(),
    )
    for args in (("fix", "--dry-run"), ("check",), ("check", "--json")):
        proc = run(*args, "--docker-config", str(config))
        assert proc.returncode == 1
        assert '+\t\t"https://index.docker.io/v1/"' in proc.stdout.replace("\\t", "\t").replace(
            '\\"', '"'
        )
        assert api_key not in proc.stdout and proc_pw_absent(proc, proxy_pw)


def proc_pw_absent(proc: subprocess.CompletedProcess[str], secret: str) -> bool:
    return secret not in proc.stdout + proc.stderr


def test_doctor_shows_a_hostile_registry_name_escaped_and_does_not_crash(tmp_path: Path) -> None:
    """Before, a registry key with a control character ended doctor in a traceback."""
    key = "\x1b[2Jreg.invalid\nOK          everything: fine"
    config = write(tmp_path, json.dumps({"auths": {key: {"auth": AUTH}}}).encode())
    proc = subprocess.run(  # a process of its own: doctor configures logging process-wide
        [sys.executable, "-m", "regauthd", "doctor", "--docker-config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output
    assert "Traceback" not in output and "\x1b" not in output
    assert not any(x.startswith("OK") for x in output.splitlines())
    connectivity = [x for x in proc.stdout.splitlines() if " connectivity \\x1b" in x]
    assert len(connectivity) == 1 and connectivity[0].startswith("PROBLEM"), proc.stdout
    assert "\\x1b[2Jreg.invalid\\x0aOK" in connectivity[0]
    assert PASSWORD not in output and AUTH not in output
