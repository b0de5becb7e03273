"""Reading the settings: ``config.toml`` text or file -> :class:`~regauthd.settings.Settings`.

:func:`parse_settings` is pure (the TOML text and an :class:`~regauthd.settings.Environment` in,
frozen dataclasses out, or a :class:`~regauthd.tomltable.SettingsError` that names the key);
:func:`load_settings` finds and reads the file; :func:`resolve_state_dir` is the one state
directory every command uses; :func:`with_overrides` applies the command line.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path

from regauthd.settings import (
    JOURNAL_BACKENDS,
    LOG_LEVELS,
    SYSTEM_WATCH_PATHS,
    USER_WATCH_PATHS,
    WATCH_BACKENDS,
    AlertSettings,
    Environment,
    ExpirySettings,
    FlappingSettings,
    HelperSettings,
    JournalSettings,
    MetricsSettings,
    OutputMode,
    ProbeSettings,
    Settings,
    WatchSettings,
    default_auth_files,
    default_settings_file,
    default_state_dir,
)
from regauthd.tomltable import SettingsError, TomlTable

_ALERTS = AlertSettings()
_FLAP = FlappingSettings()
_PROBE = ProbeSettings()
_JOURNAL = JournalSettings()
_EXPIRY = ExpirySettings()
_HELPERS = HelperSettings()
_WATCH = WatchSettings(paths=())


def default_settings(environment: Environment) -> Settings:
    return parse_settings("", environment)


def _expiry_settings(table: TomlTable) -> ExpirySettings:
    expiry = ExpirySettings(
        enabled=table.boolean("enabled", _EXPIRY.enabled),
        lead_time=table.duration("lead_time", _EXPIRY.lead_time, positive=True),
    )
    table.check_unknown()
    return expiry


def _watch_settings(top: TomlTable, environment: Environment) -> WatchSettings:
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
    # Listing `paths` means exactly those files: podman's are then watched only when listed too.
    derived = default_auth_files(paths, environment) if paths == default_paths else ()
    auth_files = watch_table.strings("auth_files", derived)
    for watched in auth_files:
        if not watched.startswith(("/", "~/")):
            raise watch_table.error("auth_files", 'absolute paths ("/..." or "~/...")', watched)
    watch = WatchSettings(
        paths=paths,
        auth_files=auth_files,
        docker_config_dirs=dirs,
        backend=watch_table.string("backend", _WATCH.backend, choices=WATCH_BACKENDS),
        poll_interval=watch_table.duration("poll_interval", _WATCH.poll_interval, positive=True),
    )
    watch_table.check_unknown()
    return watch


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

    watch = _watch_settings(top, environment)

    a = top.table("alerts")
    alerts = AlertSettings(
        suppress_window=a.duration("suppress_window", _ALERTS.suppress_window),
        metrics_file=a.path("metrics_file"),
        metrics=a.boolean("metrics", _ALERTS.metrics),
        summary_interval=a.duration("summary_interval", _ALERTS.summary_interval),
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
    expiry = _expiry_settings(top.table("expiry"))
    helpers = _helper_settings(top.table("helpers"))
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
        expiry=expiry,
        helpers=helpers,
        source=source,
    )


def _helper_settings(h: TomlTable) -> HelperSettings:
    path = h.strings("path", _HELPERS.path)
    if not path or not all(d.startswith("/") for d in path):
        raise h.error("path", 'absolute directories ("/usr/bin")', list(path))
    helpers = HelperSettings(
        path=path,
        timeout=h.duration("timeout", _HELPERS.timeout, positive=True),
        budget=h.duration("budget", _HELPERS.budget, positive=True),
    )
    h.check_unknown()
    return helpers


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


def expiry_lead_time(environment: Environment | None = None) -> float:
    """``[expiry] lead_time`` of the standard settings file, for ``check`` and ``doctor``
    (seconds): they warn when the daemon would. A settings file that cannot be read gives the
    default (the daemon itself refuses it)."""
    try:
        return load_settings(None, environment).expiry.lead_time
    except SettingsError:
        return ExpirySettings().lead_time


def with_overrides(
    settings: Settings,
    *,
    docker_configs: tuple[str, ...] = (),
    state_dir: Path | None = None,
    output: OutputMode | None = None,
    log_level: str | None = None,
) -> Settings:
    """Command-line overrides: ``--docker-config`` REPLACES the watched paths (and watches no
    podman auth file); ``--output``
    and ``--log-level`` replace ``[daemon] output`` and ``log_level``.

    Each value is a ``config.json`` path (ends in ``.json``) or a ``DOCKER_CONFIG`` directory.
    """
    if docker_configs:
        files = tuple(c for c in docker_configs if c.endswith(".json"))
        dirs = tuple(c for c in docker_configs if not c.endswith(".json"))
        settings = dataclasses.replace(
            settings,
            watch=dataclasses.replace(
                settings.watch, paths=files, docker_config_dirs=dirs, auth_files=()
            ),
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
