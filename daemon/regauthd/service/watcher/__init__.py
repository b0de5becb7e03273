"""The daemon's file-watch layer: non-recursive directory watches behind one small interface.

``open_watcher(backend, wants=..., poll_interval=...)`` gives a :class:`Watcher` with
``watch(directory, contents=...)``, ``unwatch``, ``fileno`` (select on it), ``read`` (a list of
:class:`Change`) and ``close``. Backends, one module each: :mod:`.inotify` (Linux: our own
reader, no thread), :mod:`.native` (watchdog's public API: FSEvents, kqueue), :mod:`.polling`
(one thread, for NFS homes). Importing this package imports no backend (and so not watchdog).
"""

from regauthd.service.watcher.backends import BACKENDS, open_watcher
from regauthd.service.watcher.change import Change, ChangeKind, Wants
from regauthd.service.watcher.protocol import (
    BackendUnavailableError,
    Watcher,
    WatchLimitError,
)

__all__ = [
    "BACKENDS",
    "BackendUnavailableError",
    "Change",
    "ChangeKind",
    "Wants",
    "WatchLimitError",
    "Watcher",
    "open_watcher",
]
