"""Daemon settings: ``config.toml`` -> frozen dataclasses, with errors that name the key.

Every option has a default (``config.example.toml`` lists them all), so ``regauthd run`` works
without a settings file. Parsing is pure: :func:`parse_settings` takes the TOML text and an
:class:`Environment` (who we run as, HOME, XDG variables), so tests need no disk and no root.
:func:`load_settings` is the thin shell that finds and reads the file.

Durations are written ``"250ms"``, ``"30s"``, ``"5m"``, ``"1h"``, ``"1d"`` or a plain number of
seconds.
"""

from __future__ import annotations

import dataclasses
import enum
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from regauthd.tomltable import SettingsError, TomlTable

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
_ALERTS = AlertSettings()
_FLAP = FlappingSettings()
_PROBE = ProbeSettings()
_JOURNAL = JournalSettings()
_WATCH = WatchSettings(paths=())


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


def default_settings(environment: Environment) -> Settings:
    return parse_settings("", environment)


def parse_settings(text: str, environment: Environment, *, source: Path | None = None) -> Settings:
    """Settings from TOML text; missing keys take their defaults. Raises :class:`SettingsError`."""
    where = str(source) if source else "settings"
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{where}: not valid TOML: {exc}") from None
    top = TomlTable(data, "", where)

    daemon = top.table("daemon")
    state_dir = daemon.path("state_dir") or default_state_dir(environment)
    output = OutputMode(daemon.string("output", "auto", choices=tuple(m.value for m in OutputMode)))
    log_level = daemon.string("log_level", "info", choices=LOG_LEVELS)
    daemon.check_unknown()

    watch_table = top.table("watch")
    default_paths = SYSTEM_WATCH_PATHS if environment.is_system else USER_WATCH_PATHS
    docker_config_env = environment.env.get("DOCKER_CONFIG", "")
    default_dirs = (docker_config_env,) if docker_config_env.startswith("/") else ()
    paths = watch_table.strings("paths", default_paths)
    for watched in paths:
        if not watched.startswith(("/", "~/")):
            raise watch_table.error("paths", 'absolute paths ("/..." or "~/...")', watched)
        if any(c in watched.rsplit("/", 1)[-1] for c in "*?["):
            raise watch_table.error(
                "paths", "file paths with globs in directory names only", watched
            )
    dirs = watch_table.strings("docker_config_dirs", default_dirs)
    for d in dirs:
        if not d.startswith(("/", "~/")):
            raise watch_table.error("docker_config_dirs", 'absolute directories ("/...")', d)
    watch = WatchSettings(
        paths=paths,
        docker_config_dirs=dirs,
        backend=watch_table.string("backend", _WATCH.backend, choices=WATCH_BACKENDS),
        poll_interval=watch_table.duration("poll_interval", _WATCH.poll_interval, positive=True),
    )
    watch_table.check_unknown()

    a = top.table("alerts")
    alerts = AlertSettings(
        suppress_window=a.duration("suppress_window", _ALERTS.suppress_window),
        metrics_file=a.path("metrics_file"),
        metrics=a.boolean("metrics", _ALERTS.metrics),
    )
    a.check_unknown()
    metrics = _metrics_settings(top.table("metrics"))

    f = top.table("flapping")
    flapping = FlappingSettings(
        max_undos=f.integer("max_undos", _FLAP.max_undos, minimum=1),
        window=f.duration("window", _FLAP.window, positive=True),
        backoff=f.duration("backoff", _FLAP.backoff, positive=True),
        backoff_max=f.duration("backoff_max", _FLAP.backoff_max, positive=True),
    )
    f.check_unknown()
    if flapping.backoff_max < flapping.backoff:
        raise f.error("backoff_max", f"at least flapping.backoff ({flapping.backoff:g}s)")

    p = top.table("probe")
    probe = ProbeSettings(
        enabled=p.boolean("enabled", _PROBE.enabled),
        interval=p.duration("interval", _PROBE.interval, positive=True),
        jitter=p.duration("jitter", _PROBE.jitter),
        concurrency=p.integer("concurrency", _PROBE.concurrency, minimum=1),
        timeout=p.duration("timeout", _PROBE.timeout, positive=True),
        repositories=p.string_map("repositories"),
        insecure_registries=p.strings("insecure_registries", ()),
        trusted_realms=p.strings("trusted_realms", ()),
        ca_file=p.path("ca_file"),
    )
    p.check_unknown()

    j = top.table("journal")
    patterns = j.strings("extra_patterns", ())
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise j.error("extra_patterns", f"valid regular expressions ({exc})", pattern) from None
    log_files = j.strings("log_files", ())
    for log_file in log_files:
        if not log_file.startswith("/"):
            raise j.error("log_files", 'absolute paths ("/var/log/...")', log_file)
    journal = JournalSettings(
        enabled=j.boolean("enabled", _JOURNAL.enabled),
        units=j.strings("units", _JOURNAL.units),
        max_age=j.duration("max_age", _JOURNAL.max_age),
        extra_patterns=patterns,
        log_files=tuple(Path(x) for x in log_files),
        backend=j.string("backend", _JOURNAL.backend, choices=JOURNAL_BACKENDS),
        directory=j.path("directory"),
        verdict_timeout=j.duration("verdict_timeout", _JOURNAL.verdict_timeout, positive=True),
    )
    j.check_unknown()
    top.check_unknown()

    return Settings(
        watch=watch,
        state_dir=state_dir,
        output=output,
        log_level=log_level,
        alerts=alerts,
        metrics=metrics,
        flapping=flapping,
        probe=probe,
        journal=journal,
        source=source,
    )


def _metrics_settings(m: TomlTable) -> MetricsSettings:
    metrics = MetricsSettings(listen=m.address("listen"))
    m.check_unknown()
    return metrics


def load_settings(path: Path | None = None, environment: Environment | None = None) -> Settings:
    """Read ``path`` (must exist), else the standard location (may be absent: defaults).

    Raises :class:`SettingsError` for an unreadable or invalid file.
    """
    env = environment or Environment.current()
    explicit = path is not None
    file = path if path is not None else default_settings_file(env)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        if explicit:
            raise SettingsError(f"{file}: settings file not found") from None
        return default_settings(env)
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise SettingsError(f"{file}: cannot read the settings file: {reason}") from None
    return parse_settings(text, env, source=file)


def resolve_state_dir(explicit: Path | None = None, environment: Environment | None = None) -> Path:
    """The state directory every command uses, so ``fix`` and the daemon share backups and race
    memory: ``explicit`` (``--state-dir``), else ``[daemon] state_dir`` of the standard settings
    file, else :func:`default_state_dir` (``$STATE_DIRECTORY`` under systemd, ``/var/lib/regauthd``
    for root, ``$XDG_STATE_HOME/regauthd`` otherwise).

    A settings file that cannot be read does not stop a one-shot repair: the default applies.
    """
    if explicit is not None:
        return explicit.absolute()
    env = environment or Environment.current()
    try:
        return load_settings(None, env).state_dir
    except SettingsError:
        return default_state_dir(env)


def with_overrides(
    settings: Settings,
    *,
    docker_configs: tuple[str, ...] = (),
    state_dir: Path | None = None,
    output: OutputMode | None = None,
    log_level: str | None = None,
) -> Settings:
    """Command-line overrides: ``--docker-config`` REPLACES the watched paths; ``--output``
    and ``--log-level`` replace ``[daemon] output`` and ``log_level``.

    Each value is a ``config.json`` path (ends in ``.json``) or a ``DOCKER_CONFIG`` directory.
    """
    if docker_configs:
        files = tuple(c for c in docker_configs if c.endswith(".json"))
        dirs = tuple(c for c in docker_configs if not c.endswith(".json"))
        settings = dataclasses.replace(
            settings,
            watch=dataclasses.replace(settings.watch, paths=files, docker_config_dirs=dirs),
        )
    if state_dir is not None:
        settings = dataclasses.replace(settings, state_dir=state_dir)
    if output is not None:
        settings = dataclasses.replace(settings, output=output)
    if log_level is not None:
        if log_level not in LOG_LEVELS:
            raise SettingsError(f"log level {log_level!r}: use one of {', '.join(LOG_LEVELS)}")
        settings = dataclasses.replace(settings, log_level=log_level)
    return settings
