"""Which watch backends exist, and :func:`open_watcher`, which opens one.

Each backend is imported only when it is opened: importing this package imports neither
watchdog nor ctypes.
"""

from __future__ import annotations

import sys

from regauthd.service.watcher.change import Wants
from regauthd.service.watcher.protocol import BackendUnavailableError, Watcher

BACKENDS = ("auto", "inotify", "native", "polling")


def open_watcher(
    backend: str = "auto", *, wants: Wants | None = None, poll_interval: float = 2.0
) -> Watcher:
    """A new watcher of the named backend.

    ``auto`` is ``inotify`` on Linux when the C library has it (see
    :data:`regauthd.service.watcher.inotify.LIBRARY`), else ``native`` (watchdog: FSEvents on
    macOS, kqueue on BSD). ``polling`` lists every watched directory each ``poll_interval``
    seconds (home directories on NFS). ``wants`` filters non-directory entries before any
    :class:`~regauthd.service.watcher.change.Change` is built. Raises
    :class:`~regauthd.service.watcher.protocol.BackendUnavailableError` when ``inotify`` is
    asked for where it does not work, ``ValueError`` for an unknown name.
    """
    if backend == "auto":
        if sys.platform.startswith("linux"):
            try:
                return _inotify(wants)
            except BackendUnavailableError:
                pass
        return _native(wants)
    if backend == "inotify":
        return _inotify(wants)
    if backend == "native":
        return _native(wants)
    if backend == "polling":
        # Lazy, like each backend: importing the package must not import watchdog.
        from regauthd.service.watcher.polling import PollingWatcher  # noqa: PLC0415

        return PollingWatcher(wants, poll_interval=poll_interval)
    raise ValueError(f"unknown watch backend {backend!r}: use one of {', '.join(BACKENDS)}")


def _inotify(wants: Wants | None) -> Watcher:
    from regauthd.service.watcher.inotify import InotifyWatcher  # noqa: PLC0415

    return InotifyWatcher(wants)


def _native(wants: Wants | None) -> Watcher:
    from regauthd.service.watcher.native import NativeWatcher  # noqa: PLC0415 - imports watchdog

    return NativeWatcher(wants)
