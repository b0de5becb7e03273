"""Real journald for the tests: journal files written by journal-remote, and a private journald.

Two tools, both real systemd programs (Debian: ``systemd-journal-remote``, ``systemd``):

(a) Journal files from entries, written by ``systemd-journal-remote -o DIR/NAME.journal -``::

        from tests.rigs.journald import write_journal, write_export, read_export

        path = write_journal(tmp_path / "j", [
            {"MESSAGE": 'level=error msg="..."', "_SYSTEMD_UNIT": "docker.service"},
            {"MESSAGE": b"binary\\nsafe\\x00", "_SYSTEMD_UNIT": "docker.service"},
        ])                                   # -> tmp_path/j/system.journal
        # `journal.Reader(path=str(tmp_path / "j"))`, `journalctl --file=path` read it.

    Missing ``__REALTIME_TIMESTAMP`` (default: consecutive microseconds from ``start``),
    ``__MONOTONIC_TIMESTAMP`` and ``_BOOT_ID`` are filled in. Values are ``str`` or ``bytes``;
    values with a newline or that are not UTF-8 use the binary export form. Writing again to the
    same name appends (a follower sees it). ``write_export`` takes export-format bytes as they are
    (the fixture files under ``tests/fixtures/journal/``); ``read_export`` parses them back.

(b) A real ``systemd-journald`` in a private mount namespace (its own ``/run``, volatile
    storage, nothing of the host's journal touched)::

        from tests.rigs.journald import JournaldNamespace

        with JournaldNamespace(tmp_path) as ns:
            ns.send("hello", unit="docker.service", SYSLOG_IDENTIFIER="dockerd", FOO="bar")
            ns.run([sys.executable, "-c", "..."], unit="regauthd.service", env={...})
            proc = ns.popen([...], unit="regauthd.service", stream="regauthd")
                                                # long-running; stopped by PID at exit
            ns.wait_for(MESSAGE="hello")        # -> [entry]; entries are dict[str, str]
            ns.entries(_SYSTEMD_UNIT="docker.service")
            ns.journal_dir                      # for Reader(path=...) / journalctl -D
            ns.rotate()                         # SIGUSR2: journald starts a new file

    Everything run through ``run``/``popen``/``send`` executes inside the namespace (via
    ``nsenter``), so ``journal.send`` and stdout streams reach this journald. ``unit=`` puts the
    process into a throwaway cgroup named after the unit, which is how journald derives the
    trusted ``_SYSTEMD_UNIT`` (a client-sent one is dropped). ``stream="IDENT"`` runs the
    command the way systemd runs a service: stdout and stderr connected to journald (through
    ``systemd-cat -t IDENT``) and ``JOURNAL_STREAM`` set to stderr's ``device:inode``, so a
    program that picks its log sink from ``JOURNAL_STREAM`` sees journald. ``env=`` replaces the
    environment, as with ``subprocess``.
    Needs root (mount namespace, cgroups) and the programs: the rig checks with
    ``require_root``/``require_program`` itself (skip locally, fail under CI). Exiting the
    ``with`` stops every process it started, then journald, by PID, and removes the cgroups.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.conftest import require_program, require_root, unavailable

JOURNAL_REMOTE = "systemd-journal-remote"
JOURNALD = "systemd-journald"

Value = str | bytes
_BOOT_EPOCH_US = 1_700_000_000_000_000


class RigError(RuntimeError):
    """The rig could not do what was asked; the message says what was seen."""


# --- (a) journal files -------------------------------------------------------------------------
def _encode(key: str, value: Value) -> bytes:
    data = value.encode("utf-8") if isinstance(value, str) else value
    binary = b"\n" in data
    if not binary:
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            binary = True
    if binary:
        return key.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
    return key.encode() + b"=" + data + b"\n"


def to_export(
    entries: Iterable[Mapping[str, Value]],
    *,
    start: datetime | None = None,
    boot_id: str | None = None,
) -> bytes:
    """Entries -> journal export format, filling the timestamps and boot id journal-remote needs."""
    boot = boot_id or uuid.uuid4().hex
    realtime = int((start or datetime.now(UTC)).timestamp() * 1_000_000)
    out = bytearray()
    for n, entry in enumerate(entries):
        fields: dict[str, Value] = {
            "__REALTIME_TIMESTAMP": str(realtime + n),
            # Derived from the wall clock so that separate writes into one boot stay in order.
            "__MONOTONIC_TIMESTAMP": str(max(1, realtime + n - _BOOT_EPOCH_US)),
            "_BOOT_ID": boot,
        }
        fields.update(entry)
        for key, value in fields.items():
            out += _encode(key, value)
        out += b"\n"
    return bytes(out)


def write_export(directory: Path, export: bytes, *, name: str = "system") -> Path:
    """Pipe export-format bytes into ``systemd-journal-remote``; returns the journal file."""
    program = require_program(JOURNAL_REMOTE, "systemd-journal-remote")
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"{name}.journal"
    done = subprocess.run(
        [program, "-o", str(target), "-"],
        input=export,
        capture_output=True,
        check=False,
        timeout=600,
    )
    if done.returncode != 0:
        raise RigError(f"journal-remote failed ({done.returncode}): {done.stderr.decode()[-2000:]}")
    return target


def write_journal(
    directory: Path,
    entries: Iterable[Mapping[str, Value]],
    *,
    name: str = "system",
    start: datetime | None = None,
    boot_id: str | None = None,
) -> Path:
    """Write entries as a real journal file ``directory/name.journal`` (appends if it exists)."""
    return write_export(directory, to_export(entries, start=start, boot_id=boot_id), name=name)


def dockerd(*messages: str) -> list[dict[str, str]]:
    """Journal entries as dockerd logs them under docker.service, one per message."""
    return [
        {
            "MESSAGE": m,
            "_SYSTEMD_UNIT": "docker.service",
            "SYSLOG_IDENTIFIER": "dockerd",
            "PRIORITY": "6",
        }
        for m in messages
    ]


def read_export(data: bytes) -> list[dict[str, bytes]]:
    """Parse journal export format (both the text and the binary field forms)."""
    entries: list[dict[str, bytes]] = []
    entry: dict[str, bytes] = {}
    pos = 0
    while pos < len(data):
        end = data.index(b"\n", pos)
        line = data[pos:end]
        if not line:
            if entry:
                entries.append(entry)
            entry = {}
            pos = end + 1
            continue
        if b"=" in line:
            key, _, value = line.partition(b"=")
            entry[key.decode()] = value
            pos = end + 1
        else:
            (size,) = struct.unpack("<Q", data[end + 1 : end + 9])
            entry[line.decode()] = data[end + 9 : end + 9 + size]
            pos = end + 9 + size + 1
    if entry:
        entries.append(entry)
    return entries


# --- (b) journald in a private mount namespace --------------------------------------------------
_NS_SCRIPT = """
set -e
mount --bind "$1" /run
mount --bind "$2" /etc/systemd/journald.conf
shift 2
for d in "$@"; do mount --bind "$RIG_EMPTY" "$d"; done
exec "$RIG_JOURNALD"
"""

_CG_WRAPPER = """
for d in $RIG_CGROUPS; do echo $$ > "$d/cgroup.procs" || exit 125; done
unset RIG_CGROUPS
exec "$@"
"""

_JOURNAL_STREAM_WRAPPER = """
export JOURNAL_STREAM="$(stat -L -c %d:%i /proc/self/fd/2)"
exec "$@"
"""

_SENDER = """
import json, sys
from systemd import journal
for fields in json.load(sys.stdin):
    journal.send(**fields)
"""

_counter = itertools.count()


def _cgroup_roots() -> list[Path]:
    """Writable hierarchies where journald looks up a process's unit (v2; v1 name=systemd)."""
    roots: list[Path] = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        parts = line.split()
        mountpoint, fstype, options = parts[1], parts[2], parts[3]
        if fstype == "cgroup2" or (fstype == "cgroup" and "name=systemd" in options.split(",")):
            roots.append(Path(mountpoint))
    return [r for r in roots if os.access(r, os.W_OK)]


class JournaldNamespace:
    """A real systemd-journald with its own /run; see the module docstring."""

    def __init__(self, tmp_path: Path, *, start_timeout: float = 10.0) -> None:
        self.base = tmp_path / f"journald-{next(_counter)}"
        self.run_dir = self.base / "run"
        self.conf = self.base / "journald.conf"
        self._start_timeout = start_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._children: list[subprocess.Popen[Any]] = []
        self._cgroups: list[Path] = []
        self._stderr: Any = None
        self._nsenter = "nsenter"
        self._slice = f"regauthd-test-{os.getpid()}-{next(_counter)}.slice"
        self.journal_dir = Path()

    # lifecycle
    def __enter__(self) -> JournaldNamespace:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RigError("journald is not running")
        return self._proc.pid

    def start(self) -> None:
        require_root("a private mount namespace for journald")
        journald = require_program(JOURNALD, "systemd")
        require_program("unshare", "util-linux")
        self._nsenter = require_program("nsenter", "util-linux")
        if not Path("/etc/systemd/journald.conf").exists():
            unavailable("/etc/systemd/journald.conf missing: cannot bind our config over it")
        if not Path("/etc/machine-id").exists():
            unavailable("/etc/machine-id missing: journald needs a machine id")
        self.run_dir.mkdir(parents=True)
        empty = self.base / "empty"
        empty.mkdir()
        self.conf.write_text(
            "[Journal]\nStorage=volatile\nReadKMsg=no\nForwardToSyslog=no\nForwardToKMsg=no\n"
            "ForwardToConsole=no\nForwardToWall=no\nRateLimitBurst=0\n"
        )
        # The host's drop-ins would override our settings: hide them inside the namespace.
        dropins = [
            d
            for d in ("/etc/systemd/journald.conf.d", "/usr/lib/systemd/journald.conf.d")
            if Path(d).is_dir()
        ]
        self._stderr = (self.base / "journald.stderr").open("wb")
        env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "RIG_EMPTY": str(empty),
            "RIG_JOURNALD": journald,
        }
        self._proc = subprocess.Popen(
            [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                _NS_SCRIPT,
                "rig",
                str(self.run_dir),
                str(self.conf),
                *dropins,
            ],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
        )
        deadline = time.monotonic() + self._start_timeout
        socket_path = self.run_dir / "systemd/journal/socket"
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                err = (self.base / "journald.stderr").read_text(errors="replace")
                raise RigError(f"journald exited with {self._proc.returncode}: {err[-2000:]}")
            files = list(self.run_dir.glob("log/journal/*/system.journal"))
            if socket_path.exists() and files:
                self.journal_dir = files[0].parent
                return
            time.sleep(0.02)
        self.stop()
        raise RigError(f"journald did not start within {self._start_timeout}s")

    def stop(self) -> None:
        for child in self._children:
            _stop(child)
        self._children.clear()
        if self._proc is not None:
            _stop(self._proc)
            self._proc = None
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
        for cgroup in reversed(self._cgroups):
            _rmdir_when_empty(cgroup)
        self._cgroups.clear()

    # running things inside
    def _unit_cgroups(self, unit: str) -> list[Path]:
        dirs: list[Path] = []
        for root in _cgroup_roots():
            slice_dir = root / self._slice
            unit_dir = slice_dir / unit
            try:
                unit_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise RigError(f"cannot create cgroup {unit_dir}: {exc}") from exc
            for d in (slice_dir, unit_dir):
                if d not in self._cgroups:
                    self._cgroups.append(d)
            dirs.append(unit_dir)
        if not dirs:
            unavailable("no writable cgroup hierarchy: cannot give processes a unit")
        return dirs

    def _argv(
        self,
        cmd: Sequence[str],
        unit: str | None,
        env: Mapping[str, str] | None,
        stream: str | None,
    ) -> tuple[list[str], dict[str, str]]:
        full_env = dict(os.environ if env is None else env)
        argv = [self._nsenter, f"--target={self.pid}", "--mount", "--"]
        if unit is not None:
            full_env["RIG_CGROUPS"] = " ".join(str(d) for d in self._unit_cgroups(unit))
            argv += ["/bin/sh", "-c", _CG_WRAPPER, "rig"]
        if stream is not None:
            cat = require_program("systemd-cat", "systemd")
            argv += [cat, "-t", stream, "/bin/sh", "-c", _JOURNAL_STREAM_WRAPPER, "rig"]
        return [*argv, *cmd], full_env

    def run(
        self,
        cmd: Sequence[str],
        *,
        unit: str | None = None,
        env: Mapping[str, str] | None = None,
        stream: str | None = None,
        input: bytes | None = None,
        timeout: float = 60.0,
        check: bool = True,
    ) -> subprocess.CompletedProcess[bytes]:
        """Run ``cmd`` inside the namespace (as unit ``unit`` if given) and wait for it."""
        argv, full_env = self._argv(cmd, unit, env, stream)
        done = subprocess.run(
            argv, env=full_env, input=input, capture_output=True, timeout=timeout, check=False
        )
        if check and done.returncode != 0:
            raise RigError(
                f"{list(cmd)} exited with {done.returncode}: "
                f"{done.stderr.decode(errors='replace')[-2000:]}"
            )
        return done

    def popen(
        self,
        cmd: Sequence[str],
        *,
        unit: str | None = None,
        env: Mapping[str, str] | None = None,
        stream: str | None = None,
        **kwargs: Any,
    ) -> subprocess.Popen[Any]:
        """Start ``cmd`` inside the namespace; it is stopped (by PID) when the rig stops."""
        argv, full_env = self._argv(cmd, unit, env, stream)
        proc: subprocess.Popen[Any] = subprocess.Popen(argv, env=full_env, **kwargs)
        self._children.append(proc)
        return proc

    def send_many(self, entries: Sequence[Mapping[str, str]], *, unit: str | None = None) -> None:
        """``journal.send(**fields)`` for each entry, from one process inside the namespace.

        ``SYSLOG_IDENTIFIER`` defaults to ``rig`` (systemd-python would say ``python``).
        """
        payload = [{"SYSLOG_IDENTIFIER": "rig", **e} for e in entries]
        self.run(
            [sys.executable, "-c", _SENDER], unit=unit, input=json.dumps(payload).encode("utf-8")
        )

    def send(self, message: str, *, unit: str | None = None, **fields: str) -> None:
        """One entry with ``MESSAGE=message`` and the given fields."""
        self.send_many([{"MESSAGE": message, **fields}], unit=unit)

    # reading back
    def entries(self, **match: str) -> list[dict[str, str]]:
        """Every entry (optionally ``FIELD=value`` matches, ANDed), fields as strings."""
        done = subprocess.run(
            [
                "journalctl",
                f"--directory={self.journal_dir}",
                "-o",
                "json",
                "--no-pager",
                *(f"{k}={v}" for k, v in match.items()),
            ],
            capture_output=True,
            check=False,
            timeout=60,
        )
        if done.returncode != 0:
            raise RigError(f"journalctl failed: {done.stderr.decode(errors='replace')}")
        return [
            {k: _as_text(v) for k, v in json.loads(line).items()}
            for line in done.stdout.splitlines()
            if line.strip()
        ]

    def wait_for(
        self, *, count: int = 1, timeout: float = 10.0, **match: str
    ) -> list[dict[str, str]]:
        """Entries matching ``match`` once there are at least ``count`` (journald is async)."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.entries(**match)
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise RigError(f"{len(found)} of {count} entries matching {match} after {timeout}s")
            time.sleep(0.05)

    def rotate(self, *, timeout: float = 10.0) -> None:
        """Ask journald to start new files (SIGUSR2) and wait until it has."""
        before = set(self.journal_dir.glob("*.journal"))
        os.kill(self.pid, signal.SIGUSR2)
        deadline = time.monotonic() + timeout
        while set(self.journal_dir.glob("*.journal")) == before:
            if time.monotonic() > deadline:
                raise RigError("journald did not rotate")
            time.sleep(0.02)


def _as_text(value: Any) -> str:
    if isinstance(value, list):
        if all(isinstance(b, int) for b in value):
            return bytes(value).decode("utf-8", "replace")
        return _as_text(value[0])
    return "" if value is None else str(value)


def _stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


def _rmdir_when_empty(cgroup: Path) -> None:
    deadline = time.monotonic() + 5
    while cgroup.exists():
        try:
            cgroup.rmdir()
        except OSError:
            if time.monotonic() > deadline:
                return  # a process we did not start is in it: leave it, say nothing more
            time.sleep(0.02)
