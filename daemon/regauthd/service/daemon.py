"""The daemon: watch every Docker config, repair it within milliseconds, alert.

Its life in four steps (as uvicorn's ``server.py`` reads): install signal handlers -> start up
(every watch in place, one repair pass, ``READY=1``) -> main loop -> shut down (``STOPPING=1``).

Flow runs one way. Sources (inotify events through watchdog, timers, the probe scheduler and the
journal follower once wired) produce observations; the main loop, the only thread that owns
state, turns them into actions (:func:`regauthd.dockerconfig.fixer.fix_file`, alerts); the sinks
carry them out. Other threads only :meth:`Daemon.post` to the loop.

The pure parts are at the top: :func:`plan_watches` (which directories to watch for a set of path
patterns), :class:`FlapTracker` (when another writer keeps undoing our repair) and
:func:`newest_hub_keys` (which spelling was written last, so the newest credential wins).
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import hashlib
import heapq
import itertools
import json
import os
import select
import signal
import socket
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

import structlog
from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers.api import BaseObserver, ObservedWatch
from watchdog.observers.inotify import InotifyFullEmitter, InotifyWatchGroup
from watchdog.observers.inotify_c import InotifyFD
from watchdog.observers.inotify_move_event_grouper import (
    InotifyMoveEventGrouper,
    PathedInotifyEvent,
)

from regauthd.alerts.alerter import Alerter
from regauthd.alerts.catalogue import CATALOGUE
from regauthd.alerts.metrics import Metrics
from regauthd.alerts.output import configure_logging
from regauthd.dockerconfig import file as dockerconfig
from regauthd.dockerconfig.file import TEMP_PREFIX
from regauthd.dockerconfig.fixer import BackupStore, FixReport, fix_file
from regauthd.dockerconfig.keys import KeyKind, classify
from regauthd.redact import remember_config_secrets
from regauthd.settings import FlappingSettings, Settings, SettingsError

log = structlog.get_logger("regauthd")

_GLOB_CHARS = frozenset("*?[")
_METRICS_FLUSH_DELAY = 1.0
_MAX_REPLAN_ROUNDS = 5
_STATUS_INTERVAL = 1.0


# ---------------------------------------------------------------------------------------------
# Pure core: what to watch


@dataclass(frozen=True, slots=True)
class DirWatch:
    """What one watched directory (a real path, symlinks resolved) is watched for."""

    files: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Entry name -> the watched config paths (as configured) that this file is."""
    triggers: tuple[str, ...] = ()
    """Entry names or globs whose appearance or disappearance changes the plan."""
    links: frozenset[str] = frozenset()
    """Entries that are symlinked configs: replacing the link changes the plan."""


@dataclass(frozen=True, slots=True)
class WatchPlan:
    dirs: Mapping[str, DirWatch]
    """Real directory path -> what it is watched for."""
    configs: tuple[str, ...]
    """Config paths (as configured, symlinks not resolved) that exist now or may appear."""

    def config_count(self) -> int:
        return len({p for d in self.dirs.values() for ps in d.files.values() for p in ps})


def _is_glob(component: str) -> bool:
    return any(c in _GLOB_CHARS for c in component)


def _glob_matches(pattern: str, name: str) -> bool:
    # Shell semantics: a wildcard does not match a leading dot.
    if name.startswith(".") and not pattern.startswith("."):
        return False
    return fnmatch.fnmatchcase(name, pattern)


class _PlanBuilder:
    def __init__(self) -> None:
        self.files: dict[str, dict[str, list[str]]] = {}
        self.triggers: dict[str, list[str]] = {}
        self.links: dict[str, set[str]] = {}
        self.configs: list[str] = []

    def add_file(self, directory: str, name: str, config: str) -> None:
        real = os.path.realpath(directory)
        paths = self.files.setdefault(real, {}).setdefault(name, [])
        if config not in paths:
            paths.append(config)

    def add_trigger(self, directory: str, pattern: str) -> None:
        real = os.path.realpath(directory)
        triggers = self.triggers.setdefault(real, [])
        if pattern not in triggers:
            triggers.append(pattern)

    def add_link(self, directory: str, name: str) -> None:
        self.links.setdefault(os.path.realpath(directory), set()).add(name)

    def build(self) -> WatchPlan:
        dirs = {}
        for real in sorted(set(self.files) | set(self.triggers)):
            dirs[real] = DirWatch(
                files={k: tuple(v) for k, v in self.files.get(real, {}).items()},
                triggers=tuple(self.triggers.get(real, ())),
                links=frozenset(self.links.get(real, ())),
            )
        return WatchPlan(dirs, tuple(dict.fromkeys(self.configs)))


def plan_watches(patterns: Iterable[str]) -> WatchPlan:
    """The directories to watch so that every config matching ``patterns`` is seen.

    Patterns are absolute paths whose directory components may be globs
    (``/home/*/.docker/config.json``). A directory that does not exist yet is waited for in its
    nearest existing ancestor; a symlinked config file is also watched in its target's directory
    (Docker renames into the target's directory). Reads the file system, changes nothing.
    """
    builder = _PlanBuilder()
    for pattern in patterns:
        parts = Path(pattern).parts
        if len(parts) < 2 or parts[0] != "/":
            continue
        _expand(builder, "/", parts[1:])
    return builder.build()


def _expand(builder: _PlanBuilder, directory: str, rest: tuple[str, ...]) -> None:
    name = rest[0]
    if len(rest) == 1:
        config = os.path.join(directory, name)
        builder.configs.append(config)
        builder.add_file(directory, name, config)
        if os.path.islink(config):
            builder.add_link(directory, name)
            target = os.path.realpath(config)
            target_dir, target_name = os.path.split(target)
            if os.path.isdir(target_dir):
                builder.add_file(target_dir, target_name, config)
        return
    if _is_glob(name):
        builder.add_trigger(directory, name)
        try:
            entries = sorted(os.listdir(directory))
        except OSError:
            return
        for entry in entries:
            child = os.path.join(directory, entry)
            if _glob_matches(name, entry) and os.path.isdir(child):
                _expand(builder, child, rest[1:])
        return
    child = os.path.join(directory, name)
    if os.path.isdir(child):
        _expand(builder, child, rest[1:])
    else:
        # Not there yet (a runner user's first login): wait for it in the nearest ancestor.
        builder.add_trigger(directory, name)


# ---------------------------------------------------------------------------------------------
# Pure core: flapping writers and newest credentials


@dataclass(frozen=True, slots=True)
class FlapVerdict:
    action: str
    """``repair``, ``paused`` (still in a pause) or ``pause`` (start one now: alert once)."""
    undos: int = 0
    backoff: float = 0.0


@dataclass(slots=True)
class _FlapState:
    replaced: deque[tuple[float, bytes]] = field(default_factory=deque)
    replaced_count: dict[bytes, int] = field(default_factory=dict)
    """How often each digest is in ``replaced`` (O(1) lookups: CI hosts log in all day)."""
    undos: deque[float] = field(default_factory=deque)
    paused_until: float | None = None
    backoff: float = 0.0
    relapse_until: float | None = None


class FlapTracker:
    """Tells a writer that undoes our repair (puts back the SAME content we replaced) from new
    logins (new content every time, which are all repaired).

    ``max_undos`` undo cycles within ``window`` seconds pause repairs of that file for the
    back-off; an undo soon after the pause ends pauses it again at twice the back-off.
    """

    def __init__(self, settings: FlappingSettings) -> None:
        self.settings = settings
        self._files: dict[str, _FlapState] = {}

    def _state(self, key: str) -> _FlapState:
        state = self._files.get(key)
        if state is None:
            state = self._files[key] = _FlapState(backoff=self.settings.backoff)
        return state

    def _prune(self, state: _FlapState, now: float) -> None:
        horizon = now - self.settings.window
        while state.replaced and state.replaced[0][0] < horizon:
            _, old = state.replaced.popleft()
            left = state.replaced_count[old] - 1
            if left:
                state.replaced_count[old] = left
            else:
                del state.replaced_count[old]
        while state.undos and state.undos[0] < horizon:
            state.undos.popleft()
        if state.relapse_until is not None and now >= state.relapse_until:
            state.relapse_until = None
            state.backoff = self.settings.backoff

    def observe(self, key: str, digest: bytes, now: float) -> FlapVerdict:
        """A write of content ``digest`` to file ``key`` was seen: repair it or not?"""
        state = self._state(key)
        self._prune(state, now)
        if state.paused_until is not None:
            if now < state.paused_until:
                return FlapVerdict("paused")
            state.paused_until = None
        if digest not in state.replaced_count:
            return FlapVerdict("repair")
        state.undos.append(now)
        relapse = state.relapse_until is not None
        if not relapse and len(state.undos) < self.settings.max_undos:
            return FlapVerdict("repair", undos=len(state.undos))
        if relapse:
            state.backoff = min(state.backoff * 2, self.settings.backoff_max)
        undos = len(state.undos)
        state.paused_until = now + state.backoff
        state.relapse_until = None
        state.undos.clear()
        return FlapVerdict("pause", undos=undos, backoff=state.backoff)

    def replaced(self, key: str, digest: bytes, now: float) -> None:
        """We rewrote ``key``; ``digest`` is the content we replaced."""
        state = self._state(key)
        self._prune(state, now)
        state.replaced.append((now, digest))
        state.replaced_count[digest] = state.replaced_count.get(digest, 0) + 1

    def resume(self, key: str, now: float) -> None:
        """The pause ended: repair again, watching for a relapse during one window."""
        state = self._state(key)
        state.paused_until = None
        # What is in the file now is the writer's last undo: repair it once more, and count
        # only undos of that new repair (one of them within the window is a relapse).
        state.replaced.clear()
        state.replaced_count.clear()
        state.undos.clear()
        state.relapse_until = now + self.settings.window

    def paused_until(self, key: str) -> float | None:
        state = self._files.get(key)
        return state.paused_until if state else None

    def forget(self, key: str) -> None:
        self._files.pop(key, None)


def digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


def _auths(config: Mapping[str, Any] | None) -> Mapping[str, Any]:
    auths = config.get("auths") if isinstance(config, Mapping) else None
    return auths if isinstance(auths, Mapping) else {}


def newest_hub_keys(
    previous: Mapping[str, Any] | None, current: Mapping[str, Any]
) -> tuple[str, ...]:
    """Non-canonical Docker Hub keys that this write added or changed: the newest credentials.

    With no previous content known, nothing is known to be newest.
    """
    if previous is None:
        return ()
    before = _auths(previous)
    found = []
    for key, entry in _auths(current).items():
        info = classify(key)
        if not info.is_hub or info.kind is KeyKind.HUB_CANONICAL:
            continue
        if key not in before or before[key] != entry:
            found.append(key)
    return tuple(found)


def _parse_json(data: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(data)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def describe_changes(report: FixReport) -> str:
    return "; ".join(f"{c.from_key} -> {c.to_key} ({c.action})" for c in report.changes)


# ---------------------------------------------------------------------------------------------
# Shell: watchdog, minus the half-second move pairing and three thread hops


class _DirectGrouper(InotifyMoveEventGrouper):
    """Hands every event on at once, on the inotify reader thread.

    watchdog's grouper holds each IN_MOVED_FROM for 0.5 s waiting for its IN_MOVED_TO, and its
    reader sleeps the whole delay even when the pair came together: a rename (every ``docker
    login``) then reaches the handler 0.5 s late whenever the emitter thread saw the
    IN_MOVED_FROM first. We need only destinations, so nothing is paired or held: an
    IN_MOVED_TO arrives as a move with no source. Skipping the queue also skips two thread
    hops (emitter, dispatcher) that each cost a GIL hand-over while the loop is rewriting.
    """

    def __init__(self, sink: Callable[[PathedInotifyEvent], None]) -> None:
        super().__init__()
        self._sink = sink

    def put_event(self, event: PathedInotifyEvent) -> None:
        self._sink(event)


@dataclass
class _DirectWatchGroup(InotifyWatchGroup):
    sink: Callable[[PathedInotifyEvent], None] | None = None

    def __post_init__(self) -> None:
        if self.sink is not None:
            self._move_event_grouper = _DirectGrouper(self.sink)
        super().__post_init__()


class _DirectEmitter(InotifyFullEmitter):
    """Builds watchdog events on the reader thread and gives them straight to the handler.

    Its own thread only waits on the (always empty) grouper queue until it is stopped.
    """

    def __init__(self, *args: Any, handler: FileSystemEventHandler, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._handler = handler

    def on_thread_start(self) -> None:
        self._inotify = _DirectWatchGroup(
            self._inotify_fd,
            os.fsencode(self.watch.path),
            is_recursive=self.watch.is_recursive,
            event_mask=self.get_event_mask_from_filter(),
            follow_symlink=self.watch.follow_symlink,
            sink=self._deliver,
        )

    def _deliver(self, event: PathedInotifyEvent) -> None:
        wants = getattr(self._handler, "wants", None)
        if not event.ev.is_directory and wants is not None and not wants(event.path):
            # Temp files (Docker's, ours) and unrelated files: ~10 of every 11 events of a
            # `docker login` plus our repair. Dropped before watchdog builds an event object.
            return
        if event.ev.is_delete_self:
            # watchdog would stop this emitter here, under the watch group's lock that the
            # reader thread holds now (a deadlock); the loop unschedules the watch instead.
            self._handler.dispatch(DirDeletedEvent(self.watch.path))
            return
        self.build_and_queue_event(event, full_events=True)

    def queue_event(self, event: FileSystemEvent) -> None:
        if self._event_filter is None or isinstance(event, tuple(self._event_filter)):
            self._handler.dispatch(event)


class ImmediateInotifyObserver(BaseObserver):
    """A watchdog inotify observer whose events reach ``handler`` as soon as the kernel reports
    them (see :class:`_DirectGrouper`), on the thread that calls :meth:`read_ready`.

    watchdog's ``InotifyFD`` normally reads in a thread of its own; here it is not started:
    the daemon's loop selects on :meth:`fileno` and reads when it is readable, so an event
    reaches the repair with no thread hand-over at all. ``schedule(handler, path, ...)`` places
    a watch as usual; every watch's events go to the handler given here.
    """

    def __init__(self, handler: FileSystemEventHandler) -> None:
        self._inotify_fd = InotifyFD()
        super().__init__(_DirectEmitter, inotify_fd=self._inotify_fd, handler=handler)

    def fileno(self) -> int:
        return int(self._inotify_fd._inotify_fd)

    def read_ready(self) -> None:
        """Read and dispatch what the kernel has (call only when :meth:`fileno` is readable)."""
        for event in self._inotify_fd.read_events():
            self._inotify_fd.handle_event(event)

    def on_thread_stop(self) -> None:
        super().on_thread_stop()
        self._inotify_fd.close()
        with contextlib.suppress(OSError):
            self._inotify_fd._close_resources()  # no reader thread will do it


# Only what can change a config or the plan: no opened/closed_no_write (our own reads would
# wake us), no modified (a half-written file; its close_write follows).
EVENT_FILTER: list[type[FileSystemEvent]] = [
    FileClosedEvent,
    FileMovedEvent,
    DirMovedEvent,
    FileCreatedEvent,
    DirCreatedEvent,
    FileDeletedEvent,
    DirDeletedEvent,
]
"""Events of a directory that holds a watched config."""

STRUCTURE_FILTER: list[type[FileSystemEvent]] = [
    e for e in EVENT_FILTER if e is not FileClosedEvent
]
"""Events of a directory watched only for a name to appear (a home without .docker yet): no
close_write, so saving any other file there (shell history, editors) wakes nothing."""


def event_filter_for(role: DirWatch) -> list[type[FileSystemEvent]]:
    return EVENT_FILTER if role.files else STRUCTURE_FILTER


# ---------------------------------------------------------------------------------------------
# Shell: sd_notify


class Notifier:
    """sd_notify(3) over ``NOTIFY_SOCKET`` (a path or ``@abstract``); a no-op without it."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        environ = os.environ if env is None else env
        address = environ.get("NOTIFY_SOCKET", "")
        self._address = "\0" + address[1:] if address.startswith("@") else address
        self._sock: socket.socket | None = None
        if self._address:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        usec = environ.get("WATCHDOG_USEC", "")
        pid = environ.get("WATCHDOG_PID", "")
        ours = not pid or (pid.isdigit() and int(pid) == os.getpid())
        self.watchdog_interval: float | None = (
            int(usec) / 2e6 if usec.isdigit() and int(usec) > 0 and ours else None
        )

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def notify(self, *lines: str) -> bool:
        if self._sock is None:
            return False
        try:
            # Never block the daemon on a manager that does not read (datagrams are dropped).
            self._sock.sendto("\n".join(lines).encode(), socket.MSG_DONTWAIT, self._address)
        except OSError:
            return False
        return True

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()


# ---------------------------------------------------------------------------------------------
# Shell: the main loop


class Timer:
    """A callback scheduled on the loop; :meth:`cancel` it any time before it runs."""

    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Loop:
    """Single-threaded loop: timers and callbacks posted from other threads (and from signal
    handlers). It sleeps in ``select`` with no timeout when no timer is due: an idle daemon
    never wakes up."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._read, self._write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._posted: deque[Callable[[], None]] = deque()
        self._timers: list[tuple[float, int, Timer]] = []
        self._seq = itertools.count()
        self._readers: dict[int, Callable[[], None]] = {}
        self.stopped = False

    def add_reader(self, fd: int, callback: Callable[[], None]) -> None:
        """Call ``callback`` on the loop thread whenever ``fd`` is readable (loop thread only)."""
        self._readers[fd] = callback

    def remove_reader(self, fd: int) -> None:
        self._readers.pop(fd, None)

    def post(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` on the loop thread soon. Safe from any thread and signal handler."""
        self._posted.append(callback)
        with contextlib.suppress(BlockingIOError):
            os.write(self._write, b"\0")

    def call_at(self, when: float, callback: Callable[[], None]) -> Timer:
        """Only from the loop thread (others: post a callback that calls this)."""
        timer = Timer(when, callback)
        heapq.heappush(self._timers, (when, next(self._seq), timer))
        return timer

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        return self.call_at(self.clock() + delay, callback)

    def _timeout(self) -> float | None:
        while self._timers and self._timers[0][2].cancelled:
            heapq.heappop(self._timers)
        if not self._timers:
            return None
        return max(0.0, self._timers[0][0] - self.clock())

    def run_once(self, idle: Callable[[], None]) -> None:
        """Wait for work, run posted callbacks, then ``idle`` (coalesced work), then due timers."""
        ready: list[int] = []
        with contextlib.suppress(InterruptedError):
            ready, _, _ = select.select(
                [self._read, *self._readers], [], [], 0 if self._posted else self._timeout()
            )
        for fd in ready:
            reader = self._readers.get(fd)
            if reader is not None:
                reader()
        with contextlib.suppress(BlockingIOError):
            while os.read(self._read, 4096):
                pass
        while self._posted:
            self._posted.popleft()()
        idle()
        now = self.clock()
        while self._timers and (self._timers[0][0] <= now or self._timers[0][2].cancelled):
            _, _, timer = heapq.heappop(self._timers)
            if not timer.cancelled:
                timer.callback()

    def close(self) -> None:
        os.close(self._read)
        os.close(self._write)


# ---------------------------------------------------------------------------------------------
# Hook points for the probe scheduler and the journal follower


class Component(Protocol):
    """Something the daemon runs beside the watcher (the probe scheduler, the journal follower).

    ``start`` runs on the loop thread before ``READY=1``; a component that needs a thread starts
    its own and hands results back with ``daemon.post(...)``. ``reload`` gets new settings after
    a successful SIGHUP; ``stop`` must return promptly (the whole shutdown has well under 1 s).

    Optional: ``config_changed(path, report)`` is called on the loop thread after the daemon
    looked at a new write to a watched config (``report``: what the fixer did with it).
    The daemon offers ``post``, ``call_later``, ``alert`` and ``recheck`` to components.
    """

    name: str

    def start(self, daemon: Daemon) -> None: ...

    def reload(self, settings: Settings) -> None: ...

    def stop(self) -> None: ...

    def status(self) -> str | None:
        """A few words for the STATUS= line (None: nothing to say)."""
        ...


# ---------------------------------------------------------------------------------------------
# The daemon


@dataclass(slots=True)
class _Watched:
    watch: ObservedWatch
    inode: tuple[int, int]
    holds_configs: bool


@dataclass(slots=True)
class _FileState:
    last_seen: bytes | None = None
    """Digest of the content last looked at (after our write: what we wrote). Seeing it again
    is our own write coming back, or a second event for one write: nothing to do, no loop."""
    last_config: dict[str, Any] | None = None
    """The content last seen or written, parsed: tells which keys a new write added."""


class _EventHandler(FileSystemEventHandler):
    """Runs on watchdog's inotify reader thread: routes an event to the loop, owns no state."""

    def __init__(self, daemon: Daemon) -> None:
        self._daemon = daemon

    def dispatch(self, event: FileSystemEvent) -> None:
        self._daemon.on_fs_event(event)

    def wants(self, path: bytes) -> bool:
        """Could an event on this (non-directory) path matter? Cheap, before any event object."""
        return self._daemon.wants_path(path)


SettingsLoader = Callable[[], Settings]


class Daemon:
    """``regauthd run``: see the module docstring. Construct, then :meth:`run` (blocks)."""

    def __init__(
        self,
        settings: Settings,
        *,
        reload_settings: SettingsLoader | None = None,
        components: Iterable[Component] = (),
        configure_output: bool = True,
    ) -> None:
        self.settings = settings
        self._reload_settings = reload_settings
        self._configure_output = configure_output
        self.components: list[Component] = list(components)
        self.loop = Loop()
        self.notifier = Notifier()
        self.metrics = Metrics()
        self.alerter = Alerter(
            suppress_window=settings.alerts.suppress_window, metrics=self.metrics
        )
        self.flaps = FlapTracker(settings.flapping)
        self._observer: ImmediateInotifyObserver | None = None
        self._handler = _EventHandler(self)
        self._plan = WatchPlan({}, ())
        self._watched: dict[str, _Watched] = {}
        self._dirty: dict[str, None] = {}
        self._dead_watches: set[str] = set()
        self._replan_requested = False
        self._files: dict[str, _FileState] = {}
        self._backups = BackupStore(settings.state_dir)
        self._stopping = False
        self._exit_status = 0
        self._flush_timer: Timer | None = None
        self._metrics_timer: Timer | None = None
        self._resume_timers: dict[str, Timer] = {}
        self._status = ""
        self._status_timer: Timer | None = None
        self.repairs = 0

    # -- hook points ---------------------------------------------------------------------------

    def post(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` on the daemon's loop thread (safe from any thread)."""
        self.loop.post(callback)

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        """Schedule ``callback`` on the loop (loop thread only; from elsewhere post first)."""
        return self.loop.call_later(delay, callback)

    def alert(self, kind: str, subject: str, **fields: Any) -> bool:
        """Raise a catalogued alert (loop thread only). Schedules the suppression summary."""
        emitted = self.alerter.alert(kind, subject, **fields)
        self._schedule_alert_flush()
        self._schedule_metrics()
        return emitted

    # -- life ----------------------------------------------------------------------------------

    def run(self) -> int:
        """Install signal handlers, start up, loop until SIGTERM/SIGINT, shut down."""
        previous = self._install_signal_handlers()
        try:
            self._startup()
            while not self._stopping:
                self.loop.run_once(self._work)
        finally:
            self._shutdown()
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        return self._exit_status

    def _install_signal_handlers(self) -> dict[int, Any]:
        handlers = {
            signal.SIGTERM: self._on_stop_signal,
            signal.SIGINT: self._on_stop_signal,
            signal.SIGHUP: self._on_hup_signal,
        }
        return {signum: signal.signal(signum, handler) for signum, handler in handlers.items()}

    def _on_stop_signal(self, signum: int, frame: FrameType | None) -> None:
        if self._stopping:
            # A second request forces the exit (uvicorn's rule): something is stuck.
            os._exit(1)
        self._stopping = True
        self.loop.post(lambda: None)

    def _on_hup_signal(self, signum: int, frame: FrameType | None) -> None:
        self.loop.post(self.reload)

    def _startup(self) -> None:
        self.settings.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        log.info(
            "daemon.starting",
            pid=os.getpid(),
            settings=str(self.settings.source) if self.settings.source else "defaults",
            patterns=list(self.settings.watch.patterns(Path.home())),
        )
        self._observer = ImmediateInotifyObserver(self._handler)
        self._observer.start()
        self.loop.add_reader(self._observer.fileno(), self._observer.read_ready)
        self._replan()
        for component in self.components:
            component.start(self)
        self._work()
        # The start-up pass is finished (displaced files gone, directories fsync'd) before
        # READY=1. Later, finishing runs beside the next repair: a displaced file lives ~1 ms.
        dockerconfig.flush_cleanup(timeout=5.0)
        self.notifier.notify("READY=1", self._status_line())
        if self.notifier.watchdog_interval:
            self._schedule_watchdog(self.notifier.watchdog_interval)
        log.info(
            "daemon.ready",
            watched_dirs=len(self._watched),
            configs=self._plan.config_count(),
        )

    def _shutdown(self) -> None:
        self.notifier.notify("STOPPING=1", "STATUS=stopping")
        log.info("daemon.stopping", repairs=self.repairs)
        for component in self.components:
            try:
                component.stop()
            except Exception:
                log.exception("daemon.component_stop_failed", component=component.name)
        if self._observer is not None:
            self.loop.remove_reader(self._observer.fileno())
            self._observer.stop()
            self._observer.join(timeout=0.5)
        dockerconfig.flush_cleanup(timeout=0.5)
        if self.metrics.dirty and self.settings.alerts.metrics:
            self._write_metrics()
        self.notifier.close()
        self.loop.close()

    def stop(self) -> None:
        """Ask the loop to stop (thread-safe), as SIGTERM does."""
        self._stopping = True
        self.loop.post(lambda: None)

    # -- reload --------------------------------------------------------------------------------

    def reload(self) -> None:
        """SIGHUP: read the settings again; bad ones keep the current settings and alert."""
        if self._reload_settings is None:
            return
        try:
            new = self._reload_settings()
        except SettingsError as exc:
            self.alert("settings.reload_failed", str(self.settings.source), reason=str(exc))
            return
        old = self.settings
        self.settings = new
        if self._configure_output and (new.output, new.log_level) != (old.output, old.log_level):
            configure_logging(new.output, new.log_level)
        self.alerter.suppressor.window = new.alerts.suppress_window
        self.flaps.settings = new.flapping
        if new.state_dir != old.state_dir:
            new.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._backups = BackupStore(new.state_dir)
        self._replan()
        for component in self.components:
            component.reload(new)
        log.info("settings.reloaded", patterns=list(new.watch.patterns(Path.home())))
        self._update_status()

    # -- watching ------------------------------------------------------------------------------

    def wants_path(self, path: bytes) -> bool:
        directory, name = os.path.split(os.fsdecode(path))
        role = self._plan.dirs.get(directory)
        if role is None or name.startswith(TEMP_PREFIX):
            return False
        return name in role.files or any(_glob_matches(t, name) for t in role.triggers)

    def on_fs_event(self, event: FileSystemEvent) -> None:
        """watchdog's reader thread: decide cheaply what the event means, hand it to the loop.

        Must never raise: an exception here would end the thread that reads every watch."""
        try:
            self._route(event)
        except Exception:
            log.exception("watch.event_failed", event_type=event.event_type)

    def _route(self, event: FileSystemEvent) -> None:
        plan = self._plan
        kind = event.event_type
        src = os.fsdecode(event.src_path)
        dest = os.fsdecode(getattr(event, "dest_path", "") or "")
        replan = False
        changed: list[str] = []
        dead = ""
        if kind == "deleted" and event.is_directory and src in plan.dirs:
            replan = True  # a watched directory itself went away: its watch is gone
            dead = src
        for path, appeared in ((dest, True), (src, kind not in {"moved", "deleted"})):
            if not path:
                continue
            directory, name = os.path.split(path)
            role = plan.dirs.get(directory)
            if role is None or name.startswith(TEMP_PREFIX):
                continue
            if name in role.files:
                if name in role.links or (kind in ("created", "moved") and os.path.islink(path)):
                    replan = True
                elif appeared and kind in ("closed", "moved"):
                    changed.extend(role.files[name])
            if kind != "closed" and any(_glob_matches(t, name) for t in role.triggers):
                replan = True
        if changed or replan:
            self.loop.post(lambda: self._observe(changed, replan, dead))

    def _observe(self, configs: list[str], replan: bool, dead: str = "") -> None:
        if dead:
            # Inode numbers are reused at once (rmdir; mkdir): only this says the watch died.
            self._dead_watches.add(dead)
        log.debug("watch.event", configs=configs, replan=replan)
        for config in configs:
            self._dirty[config] = None
        self._replan_requested = self._replan_requested or replan

    def _work(self) -> None:
        """Coalesced work after each batch of posted callbacks: replan, then repair."""
        if self._replan_requested:
            self._replan_requested = False
            self._replan()
        while self._dirty:
            config = next(iter(self._dirty))
            del self._dirty[config]
            try:
                self._repair(config)
            except Exception as exc:
                # The daemon outlives any one file: say so loudly, keep watching the others.
                log.exception("config.repair_failed", path=config)
                self.alert(
                    "config.unfixable",
                    config,
                    path=config,
                    reason=f"regauthd failed while repairing it ({type(exc).__name__}: {exc})",
                )
        self._update_status()

    def _replan(self) -> None:
        patterns = self.settings.watch.patterns(Path.home())
        plan = plan_watches(patterns)
        for _ in range(_MAX_REPLAN_ROUNDS):
            self._plan = plan
            stable = self._reconcile(plan)
            # A directory that appeared between planning and the watch being in place sent
            # its event to nobody: plan again until the file system holds still.
            again = plan_watches(patterns)
            if stable and again == plan:
                break
            plan = again
        self.metrics.gauge("watched_directories", len(self._watched))
        self.metrics.gauge("watched_configs", plan.config_count())
        self._schedule_metrics()

    def _reconcile(self, plan: WatchPlan) -> bool:
        """Make the scheduled watches match ``plan``; False when the file system moved under us
        (plan again)."""
        observer = self._observer
        if observer is None:
            return True
        for directory in list(self._watched):
            current = self._watched[directory]
            if (
                directory not in plan.dirs
                or directory in self._dead_watches
                or _inode(directory) != current.inode
                or bool(plan.dirs[directory].files) != current.holds_configs
            ):
                with contextlib.suppress(KeyError):
                    observer.unschedule(current.watch)
                del self._watched[directory]
                log.debug("watch.removed", directory=directory)
        self._dead_watches.clear()
        stable = True
        for directory, role in plan.dirs.items():
            if directory in self._watched:
                continue
            inode = _inode(directory)
            try:
                watch = observer.schedule(
                    self._handler, directory, event_filter=event_filter_for(role)
                )
            except OSError as exc:
                if exc.errno in (errno.ENOENT, errno.ENOTDIR):
                    stable = False
                    continue
                log.warning("watch.failed", directory=directory, reason=exc.strerror)
                continue
            if inode is None or _inode(directory) != inode:
                stable = False
            if inode is None:
                observer.unschedule(watch)  # gone already: plan again
                continue
            self._watched[directory] = _Watched(watch, inode, bool(role.files))
            log.debug("watch.added", directory=directory)
            # Anything written before the watch existed is looked at once now.
            for configs in role.files.values():
                for config in configs:
                    self._dirty[config] = None
        return stable

    # -- repairing -----------------------------------------------------------------------------

    def recheck(self, registry: str | None = None) -> list[FixReport]:
        """Look at every watched config again now, even if unchanged (loop thread only).

        The journal follower calls this when an engine failed to authenticate (``registry``
        says to which; every config is checked either way). Files in a flapping pause stay
        paused. Returns what the fixer did with each file it ran on.
        """
        reports = []
        for config in self._plan.configs:
            state = self._files.get(str(dockerconfig.real_path(Path(config))))
            if state is not None:
                state.last_seen = None
            report = self._repair(config)
            if report is not None:
                reports.append(report)
        return reports

    def _repair(self, config: str) -> FixReport | None:
        real = str(dockerconfig.real_path(Path(config)))
        now = self.loop.clock()
        state = self._files.setdefault(real, _FileState())
        # dockerconfig.load never blocks (a FIFO named config.json must not hang the daemon)
        # and its snapshot is handed to the fixer, which then does not read the file again.
        snapshot: dockerconfig.Snapshot | None
        try:
            snapshot = dockerconfig.load(Path(config))
            data = snapshot.data
        except dockerconfig.ConfigFileError:
            snapshot, data = None, b""
        if snapshot is not None and not snapshot.exists:
            self._files.pop(real, None)
            return None
        seen = digest(data)
        if seen == state.last_seen:
            log.debug("config.unchanged", path=config)
            return None
        state.last_seen = seen
        current = _parse_json(data)
        if current is not None:
            remember_config_secrets(current)
        verdict = self.flaps.observe(real, seen, now)
        if verdict.action == "paused":
            log.debug("config.paused", path=config)
            return None
        if verdict.action == "pause":
            self.alert(
                "config.flapping",
                config,
                path=config,
                undos=verdict.undos,
                window=f"{self.settings.flapping.window:g}s",
                backoff=f"{verdict.backoff:g}s",
            )
            self.metrics.count("flapping_pauses")
            self._schedule_resume(real, config, verdict.backoff)
            return None
        prefer = newest_hub_keys(state.last_config, current) if current is not None else ()
        report = fix_file(
            Path(config),
            backups=self._backups,
            prefer=prefer,
            defer_cleanup=True,
            snapshot=snapshot,
        )
        self._account(config, real, state, report, current, now)
        self._tell_components(config, report)
        return report

    def _tell_components(self, config: str, report: FixReport) -> None:
        for component in self.components:
            changed = getattr(component, "config_changed", None)
            if changed is None:
                continue
            try:
                changed(config, report)
            except Exception:
                log.exception("daemon.component_failed", component=component.name)

    def _account(
        self,
        config: str,
        real: str,
        state: _FileState,
        report: FixReport,
        current: dict[str, Any] | None,
        now: float,
    ) -> None:
        if report.error is not None:
            self.alert("config.unfixable", config, path=config, reason=report.error.reason)
            state.last_config = current
            return
        if report.written and report.after is not None:
            state.last_seen = digest(report.after)
            state.last_config = _parse_json(report.after)
            if report.before is not None:
                self.flaps.replaced(real, digest(report.before), now)
            self.repairs += 1
            self.metrics.count("repairs")
            self.alert("config.normalized", config, path=config, changes=describe_changes(report))
            for conflict in report.conflicts:
                self.alert(
                    "config.conflict",
                    f"{config}#{conflict.canonical}",
                    path=config,
                    canonical=conflict.canonical,
                    winner=conflict.winner,
                    loser=conflict.loser,
                    backup=str(conflict.backup) if conflict.backup else "none",
                )
        else:
            state.last_config = current

    def _schedule_resume(self, real: str, config: str, delay: float) -> None:
        old = self._resume_timers.pop(real, None)
        if old is not None:
            old.cancel()

        def resume() -> None:
            self._resume_timers.pop(real, None)
            self.flaps.resume(real, self.loop.clock())
            state = self._files.get(real)
            if state is not None:
                state.last_seen = None  # look at the writer's content again
            log.info("config.flapping_retry", path=config)
            self._dirty[config] = None
            self._work()

        self._resume_timers[real] = self.loop.call_later(delay, resume)

    # -- timers --------------------------------------------------------------------------------

    def _schedule_alert_flush(self) -> None:
        deadline = self.alerter.next_deadline()
        if deadline is None:
            return
        if self._flush_timer is not None and not self._flush_timer.cancelled:
            if self._flush_timer.when <= deadline:
                return
            self._flush_timer.cancel()

        def flush() -> None:
            self._flush_timer = None
            self.alerter.flush_due()
            self._schedule_alert_flush()
            self._schedule_metrics()

        self._flush_timer = self.loop.call_at(deadline, flush)

    def _schedule_metrics(self) -> None:
        if not self.settings.alerts.metrics or self._metrics_timer is not None:
            return

        def write() -> None:
            self._metrics_timer = None
            self._write_metrics()

        self._metrics_timer = self.loop.call_later(_METRICS_FLUSH_DELAY, write)

    def _write_metrics(self) -> None:
        try:
            self.metrics.write(self.settings.metrics_path)
        except OSError as exc:
            log.warning(
                "metrics.write_failed", path=str(self.settings.metrics_path), reason=exc.strerror
            )

    def _schedule_watchdog(self, interval: float) -> None:
        def ping() -> None:
            self.notifier.notify("WATCHDOG=1")
            self.loop.call_later(interval, ping)

        self.loop.call_later(interval, ping)

    def _status_line(self) -> str:
        parts = [
            f"watching {self._plan.config_count()} config(s) in {len(self._watched)} dir(s)",
            f"{self.repairs} repair(s)",
            f"{int(sum(self.metrics.value('alerts', k) for k in CATALOGUE))} alert(s)",
        ]
        for component in self.components:
            text = component.status()
            if text:
                parts.append(text)
        return "STATUS=" + "; ".join(parts)

    def _update_status(self) -> None:
        """Send STATUS= when it changed, at most once per second (bursts send one at the end)."""
        if not self.notifier.enabled or self._status_timer is not None:
            return
        line = self._status_line()
        if line == self._status:
            return
        self._status = line
        self.notifier.notify(line)

        def again() -> None:
            self._status_timer = None
            self._update_status()

        self._status_timer = self.loop.call_later(_STATUS_INTERVAL, again)


def _inode(directory: str) -> tuple[int, int] | None:
    try:
        st = os.stat(directory)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def run_daemon(
    settings: Settings,
    *,
    reload_settings: SettingsLoader | None = None,
    components: Iterable[Component] = (),
) -> int:
    """Configure output, then run the daemon until it is stopped. Returns the exit status."""
    configure_logging(settings.output, settings.log_level)
    daemon = Daemon(settings, reload_settings=reload_settings, components=components)
    try:
        return daemon.run()
    except KeyboardInterrupt:
        return 130


__all__ = [
    "EVENT_FILTER",
    "STRUCTURE_FILTER",
    "Component",
    "Daemon",
    "DirWatch",
    "FlapTracker",
    "FlapVerdict",
    "ImmediateInotifyObserver",
    "Loop",
    "Notifier",
    "Timer",
    "WatchPlan",
    "event_filter_for",
    "newest_hub_keys",
    "plan_watches",
    "run_daemon",
]
