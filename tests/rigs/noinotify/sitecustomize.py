"""A Python that looks like one on a platform without inotify (macOS, BSD): for tests only.

Put this directory first on a subprocess's ``PYTHONPATH``; Python imports this module at start.

- ``ctypes.CDLL`` hides every ``inotify_*`` symbol, as a C library without them does: watchdog's
  inotify module then raises ``UnsupportedLibcError`` at import and ``watchdog.observers.Observer``
  falls back to polling; regauthd's own inotify reader reports its backend unavailable.
- The ``os`` functions that exist on Linux only (``pipe2``, ``eventfd``, the xattr calls, ...)
  are removed, so code that relies on them fails here as it would on macOS.
- With ``REGAUTHD_TEST_NO_JOURNALD=1`` there is no journald either: ``systemd`` (systemd-python)
  cannot be imported and ``shutil.which("journalctl")`` finds nothing.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import sys
from typing import Any

_RealCDLL = ctypes.CDLL


class _CDLLWithoutInotify(_RealCDLL):
    def __getattr__(self, name: str) -> Any:
        if name.startswith("inotify_"):
            raise AttributeError(f"{self._name}: undefined symbol: {name}")
        return super().__getattr__(name)

    def __getitem__(self, name_or_ordinal: Any) -> Any:
        if isinstance(name_or_ordinal, str) and name_or_ordinal.startswith("inotify_"):
            raise AttributeError(f"{self._name}: undefined symbol: {name_or_ordinal}")
        return super().__getitem__(name_or_ordinal)


ctypes.CDLL = _CDLLWithoutInotify  # type: ignore[misc]

LINUX_ONLY = (
    "pipe2", "eventfd", "eventfd_read", "eventfd_write", "memfd_create", "pidfd_open",
    "splice", "copy_file_range", "sched_getaffinity", "sched_setaffinity", "posix_fallocate",
    "getxattr", "setxattr", "listxattr", "removexattr",
)  # fmt: skip
for _name in LINUX_ONLY:
    if hasattr(os, _name):
        delattr(os, _name)

if os.environ.get("REGAUTHD_TEST_NO_JOURNALD") == "1":
    sys.modules["systemd"] = None  # type: ignore[assignment]  # import raises ImportError
    _which = shutil.which

    def _which_but_journalctl(cmd: str, *args: Any, **kwargs: Any) -> str | None:
        if os.path.basename(cmd) == "journalctl":
            return None
        return _which(cmd, *args, **kwargs)

    shutil.which = _which_but_journalctl
