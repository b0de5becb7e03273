"""The directory watches in place, kept matching the daemon's :class:`WatchPlan`.

A :class:`WatchSet` owns one :class:`~regauthd.service.watcher.Watcher` (the backend the
``[watch]`` settings name), watches each planned directory with it (for contents only where
the directory holds configs, so a home directory's other files wake nothing), and has the
daemon's loop read it: changes are filtered by :meth:`WatchSet.wants` before the watcher builds
them, then turned into a :class:`~regauthd.service.routing.Routing` for the daemon, all on the
loop thread.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import structlog

from regauthd.dockerconfig import ownwrites
from regauthd.dockerconfig.configdir import config_owner, guarded, user_name
from regauthd.dockerconfig.file import TEMP_PREFIX
from regauthd.dockerconfig.fsidentity import Owner, acting_as
from regauthd.service.fsview import LOCAL
from regauthd.service.loop import Loop
from regauthd.service.routing import Routing, route
from regauthd.service.watcher import (
    BackendUnavailableError,
    Watcher,
    WatchLimitError,
    open_watcher,
)
from regauthd.service.watchplan import WatchPlan, glob_matches
from regauthd.settings import WatchSettings

log = structlog.get_logger("regauthd")

_OTHER_TEMP_NAME = re.compile(
    r"""\.tmp-config\.json   # podman's (containers/image) temp file
      | .+\.json\d+\Z        # the Docker CLI's: os.CreateTemp(dir, "config.json")
    """,
    re.VERBOSE,
)


def is_temp_name(name: str) -> bool:
    """Is ``name`` a temp file a config is saved through (ours, Docker's, podman's)?"""
    return name.startswith(TEMP_PREFIX) or _OTHER_TEMP_NAME.match(name) is not None


@dataclass(slots=True)
class _Watched:
    inode: tuple[int, int]
    contents: bool


class WatchSet:
    """One watch per planned directory; what they report goes to ``on_change`` (loop thread).

    :meth:`open` (again after a reload: a changed backend reopens it) and :meth:`reconcile` with
    each new plan. Directories the kernel refused a watch for (its per-user limit) are kept in
    :attr:`refused` and tried again at every reconcile. Loop thread only.
    """

    def __init__(self, on_change: Callable[[Routing], None]) -> None:
        self._on_change = on_change
        self._watcher: Watcher | None = None
        self._opened_with: tuple[str, float] | None = None
        self._plan = WatchPlan({}, ())
        self._watched: dict[str, _Watched] = {}
        self._stale: set[str] = set()
        self.refused: dict[str, WatchLimitError] = {}
        """Planned directories left unwatched because the kernel's watch limit is reached."""
        self._not_owned: set[str] = set()
        """Directories already reported as not their configs' owner's (said once each)."""

    def __len__(self) -> int:
        return len(self._watched)

    @property
    def backend(self) -> str:
        return self._watcher.backend if self._watcher is not None else "none"

    def open(self, loop: Loop, settings: WatchSettings) -> bool:
        """Open the watcher ``settings`` name and have ``loop`` read it (a no-op when it is open
        with these settings already). True when it was (re)opened: nothing is watched yet."""
        # The interval matters to the poller only: changing it alone reopens nothing else.
        interval = settings.poll_interval if settings.backend == "polling" else 0.0
        wanted = (settings.backend, interval)
        if self._opened_with == wanted:
            return False
        self.close(loop)
        try:
            watcher = open_watcher(
                settings.backend, wants=self.wants, poll_interval=settings.poll_interval
            )
        except BackendUnavailableError as exc:
            # A daemon that will not start cannot repair anything: watch the way that works.
            watcher = open_watcher("auto", wants=self.wants, poll_interval=settings.poll_interval)
            log.error(
                "watch.backend_unavailable",
                requested=settings.backend,
                reason=str(exc),
                backend=watcher.backend,
            )
        self._watcher = watcher
        self._opened_with = wanted
        ownwrites.record(watcher.backend == "inotify")  # the one that names a rename's source
        loop.add_reader(watcher.fileno(), self._read)
        log.info(
            "watch.opened",
            backend=watcher.backend,
            requested=settings.backend,
            **({"poll_interval": settings.poll_interval} if watcher.backend == "polling" else {}),
        )
        return True

    def close(self, loop: Loop) -> None:
        """Stop watching (the watcher's descriptor and any thread are released)."""
        watcher, self._watcher, self._opened_with = self._watcher, None, None
        self._watched.clear()
        self._stale.clear()
        self.refused.clear()
        self._not_owned.clear()
        if watcher is not None:
            loop.remove_reader(watcher.fileno())
            watcher.close()
            ownwrites.record(False)

    def wants(self, directory: str, name: str) -> bool:
        """Could a change to this (non-directory) entry matter? Asked by the watcher before it
        builds a change: temp files and names the plan does not care about are dropped."""
        role = self._plan.dirs.get(directory)
        if role is None:
            return False
        if name in role.files:
            return True
        # Temp files are most of the events (a `docker login` and our repair make ~10 each).
        if not role.triggers or is_temp_name(name):
            return False
        return any(glob_matches(t, name) for t in role.triggers)

    def read_pending(self) -> None:
        """Read what the watcher has queued, now (loop thread): a long pass calls this between
        its steps, so that the events its own writes cause never overflow the kernel's queue."""
        if self._watcher is None:
            return
        ready, _, _ = select.select([self._watcher.fileno()], [], [], 0)
        if ready:
            self._read()

    def _read(self) -> None:
        if self._watcher is None:
            return
        changes = self._watcher.read()
        if not changes:
            return
        try:
            routing = route(self._plan, changes, LOCAL, ownwrites.claim)
        except Exception:
            # The daemon outlives a bad event: say so, keep reading the others.
            log.exception("watch.event_failed", changes=len(changes))
            return
        for directory in routing.gone:
            self._watched.pop(directory, None)  # the watcher forgot it already
        self._stale.update(routing.stale)
        if routing:
            log.debug("watch.event", configs=list(routing.configs), replan=routing.replan)
            self._on_change(routing)

    def reconcile(self, plan: WatchPlan, look_at: Callable[[str], None]) -> bool:
        """Make the watches match ``plan``; False when the file system moved under us (plan
        again). ``look_at(config)`` for each config in a directory watched anew, and in a
        directory newly refused a watch (it is repaired now, if not at each change)."""
        self._plan = plan
        watcher = self._watcher
        if watcher is None:
            return True
        for directory in list(self._watched):
            current = self._watched[directory]
            role = plan.dirs.get(directory)
            if role is None or directory in self._stale or _inode(directory) != current.inode:
                watcher.unwatch(directory)
                del self._watched[directory]
                log.debug("watch.removed", directory=directory)
            elif bool(role.files) != current.contents:
                del self._watched[directory]  # watched again below, for the new contents
        self._stale.clear()
        refused_before, self.refused = self.refused, {}
        limit: WatchLimitError | None = None
        stable = True
        for directory, role in plan.dirs.items():
            if directory in self._watched:
                continue
            if limit is None:
                try:
                    watched, still = self._add(watcher, directory, bool(role.files))
                except WatchLimitError as exc:
                    limit = exc
                else:
                    stable = stable and still
                    if watched:
                        # Anything written before the watch existed is looked at once now.
                        _look_at_all(role.files, look_at)
                    continue
            # Once the kernel said no, the rest wait for the retry timer as well.
            self.refused[directory] = limit
            if directory not in refused_before:
                _look_at_all(role.files, look_at)
        return stable

    def _add(self, watcher: Watcher, directory: str, contents: bool) -> tuple[bool, bool]:
        """Watch ``directory``: (watched now, the file system held still meanwhile). Raises
        :class:`WatchLimitError`."""
        inode = _inode(directory)
        owner = self._owner_for(directory)
        if owner is False:
            return False, True
        try:
            with acting_as(owner):
                watcher.watch(directory, contents=contents)
        except WatchLimitError:
            raise
        except (FileNotFoundError, NotADirectoryError):
            return False, False
        except OSError as exc:
            log.warning("watch.failed", directory=directory, reason=exc.strerror or str(exc))
            return False, True
        if inode is None:
            watcher.unwatch(directory)  # gone already: plan again
            return False, False
        still = _inode(directory) == inode
        self._watched[directory] = _Watched(inode, contents)
        log.debug("watch.added", directory=directory)
        return True, still

    def _owner_for(self, directory: str) -> Owner | Literal[False] | None:
        """As root: whose identity adds the watch on a directory holding configs (None: the
        daemon's own), or False when the directory is not its configs' owner's (a symlinked
        ``~/.docker`` leading to ``/etc`` or to root's directory is not watched)."""
        role = self._plan.dirs.get(directory)
        if role is None or not role.files or not guarded():
            return None
        try:
            uid = os.lstat(directory).st_uid
            owners = {config_owner(Path(c)) for cs in role.files.values() for c in cs}
        except OSError:
            return None  # gone: the watch fails and the plan is made again
        others = sorted({user_name(o.uid) for o in owners if o.uid != uid})
        if others and directory not in self._not_owned:
            # Said once. Each config's repair refuses the directory for those owners as well.
            self._not_owned.add(directory)
            log.warning(
                "watch.not_owned",
                directory=directory,
                reason=f"belongs to {user_name(uid)}, not to {', '.join(others)} whose config "
                "leads there through a symlink; regauthd, running as root, does not watch it "
                "for them",
            )
        mine = [owner for owner in owners if owner.uid == uid]
        return mine[0] if mine else False

    def refused_configs(self) -> Iterator[str]:
        """The configs in directories the kernel refused a watch for."""
        for directory in self.refused:
            role = self._plan.dirs.get(directory)
            if role is not None:
                for configs in role.files.values():
                    yield from configs


def _look_at_all(files: Mapping[str, tuple[str, ...]], look_at: Callable[[str], None]) -> None:
    for configs in files.values():
        for config in configs:
            look_at(config)


def _inode(directory: str) -> tuple[int, int] | None:
    with contextlib.suppress(OSError):
        st = os.stat(directory)
        return (st.st_dev, st.st_ino)
    return None
