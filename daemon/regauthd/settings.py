"""Daemon settings: ``config.toml`` -> frozen dataclasses, with errors that name the key.

Every option has a default (``config.example.toml`` lists them all), so ``regauthd run`` works
without a settings file. Parsing is pure: :func:`parse_settings` takes the TOML text and an
:class:`Environment` (who we run as, HOME, XDG variables), so tests need no disk and no root.
:func:`load_settings` is the thin shell that finds and reads the file.

Durations are written ``"250ms"``, ``"30s"``, ``"5m"``, ``"1h"``, ``"1d"`` or a plain number of
seconds.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

SYSTEM_SETTINGS_FILE = Path("/etc/regauthd/config.toml")
SYSTEM_STATE_DIR = Path("/var/lib/regauthd")

USER_WATCH_PATHS: tuple[str, ...] = ("~/.docker/config.json",)
"""What a user's daemon watches by default: that user's own Docker config."""

SYSTEM_WATCH_PATHS: tuple[str, ...] = (
    "~/.docker/config.json",
    "/root/.docker/config.json",
    "/home/*/.docker/config.json",
)
"""What the system service watches by default: root's config and every user's under /home."""


class OutputMode(enum.Enum):
    """Where log lines and alerts go."""

    AUTO = "auto"
    """journald when stderr is connected to it, console on a TTY, JSON lines otherwise."""
    JOURNALD = "journald"
    JSON = "json"
    CONSOLE = "console"


@dataclass(frozen=True, slots=True)
class Environment:
    """What the defaults depend on; :meth:`current` reads it from this process."""

    euid: int
    home: Path
    env: Mapping[str, str]

    @classmethod
    def current(cls) -> Environment:
        return cls(euid=os.geteuid(), home=Path.home(), env=dict(os.environ))

    @property
    def is_system(self) -> bool:
        """Root runs the system service: system paths, ``/etc`` and ``/var/lib``."""
        return self.euid == 0

    def xdg(self, variable: str, fallback: str) -> Path:
        value = self.env.get(variable, "")
        # The XDG spec says relative values are invalid and must be ignored.
        return Path(value) if value.startswith("/") else self.home / fallback


@dataclass(frozen=True, slots=True)
class WatchSettings:
    """Which Docker configs the daemon keeps repaired."""

    paths: tuple[str, ...]
    """Config file paths; ``~`` and shell globs (``/home/*/.docker/config.json``) allowed."""
    docker_config_dirs: tuple[str, ...] = ()
    """Extra ``DOCKER_CONFIG`` directories; their ``config.json`` is watched."""
    backend: str = "auto"
    """How directories are watched (:mod:`regauthd.service.watcher`): ``inotify`` (Linux),
    ``native`` (watchdog: FSEvents on macOS, kqueue on BSD), ``polling`` (NFS homes, where
    inotify never sees another client's write), or ``auto`` (inotify on Linux, else native)."""
    poll_interval: float = 2.0
    """Seconds between two looks at every watched directory, for ``backend = "polling"``."""
    auth_files: tuple[str, ...] = ()
    """podman's auth files, kept repaired by containers' key rules (not Docker's); by default
    derived from the default ``paths`` (:func:`default_auth_files`), none when ``paths`` is set."""

    def patterns(self, home: Path) -> tuple[str, ...]:
        """Every watched config path, ``~`` expanded, duplicates removed, order kept."""
        found: list[str] = []
        candidates = [*self.paths, *(str(Path(d) / "config.json") for d in self.docker_config_dirs)]
        for raw in candidates:
            expanded = str(home) + raw[1:] if raw == "~" or raw.startswith("~/") else raw
            normalized = os.path.normpath(expanded)
            if normalized not in found:
                found.append(normalized)
        return tuple(found)

    def auth_file_patterns(self, home: Path) -> tuple[str, ...]:
        """Every watched auth file, ``~`` expanded, duplicates removed, order kept."""
        found: list[str] = []
        for raw in self.auth_files:
            expanded = str(home) + raw[1:] if raw == "~" or raw.startswith("~/") else raw
            normalized = os.path.normpath(expanded)
            if normalized not in found:
                found.append(normalized)
        return tuple(found)


_DOCKER_CONFIG_SUFFIX = "/.docker/config.json"


def default_auth_files(paths: tuple[str, ...], environment: Environment) -> tuple[str, ...]:
    """Each watched user's own podman auth files, from the watched Docker configs.

    ``HOME/.docker/config.json`` gives ``HOME/.config/containers/auth.json``; a user daemon's
    own ``~`` also gives its runtime file (``$XDG_RUNTIME_DIR``, else ``/run/user/UID``), and
    ``/home/*`` gives ``/run/user/*`` (every logged-in user's runtime directory).
    """
    found: list[str] = []
    for path in paths:
        if not path.endswith(_DOCKER_CONFIG_SUFFIX):
            continue
        home = path[: -len(_DOCKER_CONFIG_SUFFIX)]
        found.append(f"{home}/.config/containers/auth.json")
        if home == "~" and not environment.is_system:
            runtime = environment.env.get("XDG_RUNTIME_DIR", "")
            base = runtime if runtime.startswith("/") else f"/run/user/{environment.euid}"
            found.append(f"{base}/containers/auth.json")
        elif home == "/home/*":
            found.append("/run/user/*/containers/auth.json")
    return tuple(dict.fromkeys(found))


@dataclass(frozen=True, slots=True)
class FlappingSettings:
    """When another writer keeps undoing our repair, stop fighting it for a while."""

    max_undos: int = 3
    """Undo cycles (the SAME content we replaced put back) that make a file flapping..."""
    window: float = 60.0
    """...when they happen within this many seconds."""
    backoff: float = 300.0
    """First pause before trying that file again; doubled on every relapse..."""
    backoff_max: float = 3600.0
    """...up to this."""


@dataclass(frozen=True, slots=True)
class AlertSettings:
    suppress_window: float = 300.0
    """Seconds during which the same alert (kind and subject) is not repeated; then one summary."""
    metrics_file: Path | None = None
    """Prometheus textfile-collector file (None: ``<state_dir>/regauthd.prom``)."""
    metrics: bool = True
    """Write the metrics file at all."""
    summary_interval: float = 60.0
    """Seconds between the console's activity summaries (repairs, suppressed alerts; only when
    something happened); 0: none."""


@dataclass(frozen=True, slots=True)
class MetricsSettings:
    listen: tuple[str, int] | None = None
    """Serve ``/metrics`` over HTTP on this ``(ip, port)`` (None: the textfile only)."""


@dataclass(frozen=True, slots=True)
class ProbeSettings:
    """Registry probes (built by :mod:`regauthd.probe.client`; the daemon schedules them)."""

    enabled: bool = False
    interval: float = 900.0
    """Seconds between two probe rounds."""
    jitter: float = 60.0
    """Up to this many seconds added at random to each interval, so fleets do not probe in step."""
    concurrency: int = 4
    """Registries probed at the same time."""
    timeout: float = 10.0
    """Per-request timeout, seconds."""
    repositories: Mapping[str, str] = field(default_factory=dict)
    """Registry -> repository the push probe asks a scope for (``"ghcr.io" = "acme/ci"``)."""
    insecure_registries: tuple[str, ...] = ()
    """Registries probed over plain HTTP or without certificate verification."""
    trusted_realms: tuple[str, ...] = ()
    """Token realm hosts, other than the registry's own, that may receive the credential."""
    ca_file: Path | None = None
    """PEM bundle of extra CAs trusted for registries (a company CA), beside the system ones."""


@dataclass(frozen=True, slots=True)
class JournalSettings:
    """Following the journal for auth failures (built by :mod:`regauthd.journal.follow`)."""

    enabled: bool = False
    units: tuple[str, ...] = ("docker.service", "containerd.service")
    """Units whose log lines are matched."""
    max_age: float = 86400.0
    """On first start (no saved cursor), how many seconds back to read."""
    extra_patterns: tuple[str, ...] = ()
    """More regular expressions that mark a line as an auth failure."""
    log_files: tuple[Path, ...] = ()
    """Plain log files followed too (hosts without journald)."""
    backend: str = "auto"
    """How the journal is read: ``systemd`` (systemd-python), ``journalctl`` (a subprocess),
    ``files`` (plain log files only), or ``auto`` (the first of these that works here)."""
    directory: Path | None = None
    """Read the journal files in this directory instead of the system journal (a host's
    journal mounted into a container)."""
    verdict_timeout: float = 5.0
    """How long an auth-failure alert waits for the registry probe's verdict."""


@dataclass(frozen=True, slots=True)
class ExpirySettings:
    """Credential expiry alerts (:mod:`regauthd.service.expirywatch`)."""

    enabled: bool = True
    lead_time: float = 3600.0
    """Seconds before a credential's expiry that ``credential.expiring`` is raised."""


@dataclass(frozen=True, slots=True)
class HelperSettings:
    """Credential helpers the configs name (run as the config's owner by the root service)."""

    path: tuple[str, ...] = (
        "/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin",
    )  # fmt: skip
    """Directories searched for ``docker-credential-<name>`` (as root: root's alone)."""
    timeout: float = 5.0
    """Hard limit for one helper call; then its process group is killed."""
    budget: float = 15.0
    """Seconds one user's helpers may take per minute; then they wait, with one alert."""


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything ``regauthd run`` is configured with."""

    watch: WatchSettings
    state_dir: Path
    output: OutputMode = OutputMode.AUTO
    log_level: str = "info"
    alerts: AlertSettings = AlertSettings()
    metrics: MetricsSettings = MetricsSettings()
    flapping: FlappingSettings = FlappingSettings()
    probe: ProbeSettings = ProbeSettings()
    journal: JournalSettings = JournalSettings()
    expiry: ExpirySettings = ExpirySettings()
    helpers: HelperSettings = HelperSettings()
    source: Path | None = None
    """The file these came from (None: defaults only)."""

    @property
    def metrics_path(self) -> Path:
        return self.alerts.metrics_file or self.state_dir / "regauthd.prom"


LOG_LEVELS = ("debug", "info", "warning", "error")
JOURNAL_BACKENDS = ("auto", "systemd", "journalctl", "files")
WATCH_BACKENDS = ("auto", "inotify", "native", "polling")
"""The same names as :data:`regauthd.service.watcher.BACKENDS` (settings import no watcher)."""


# Default instances: a slotted dataclass's class attributes are slot descriptors, not defaults.
def default_settings_file(environment: Environment) -> Path:
    """``/etc/regauthd/config.toml`` for root, ``$XDG_CONFIG_HOME/regauthd/config.toml`` else."""
    if environment.is_system:
        return SYSTEM_SETTINGS_FILE
    return environment.xdg("XDG_CONFIG_HOME", ".config") / "regauthd" / "config.toml"


def default_state_dir(environment: Environment) -> Path:
    # systemd's StateDirectory= hands the directory over in $STATE_DIRECTORY.
    state_directory = environment.env.get("STATE_DIRECTORY", "").split(":")[0]
    if state_directory.startswith("/"):
        return Path(state_directory)
    if environment.is_system:
        return SYSTEM_STATE_DIR
    return environment.xdg("XDG_STATE_HOME", ".local/state") / "regauthd"
