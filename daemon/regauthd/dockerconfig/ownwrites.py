"""The temp names of this process's recent saves: our own writes, told from everyone else's.

A save renames its temp file (a fresh random name) onto the config. A watcher that pairs the two
halves of a rename (inotify's cookie) reports the name the file came from, and the daemon asks
:func:`claim`: True exactly once per name this process renamed into place, so the event of our
own repair coming back is not read again, while any other program's write, even one moved in
from a name we used before, is. Names a watcher never reported are forgotten oldest first.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Final

LIMIT: Final = 4096
"""Names remembered (the start-up pass saves 256 configs between two reads of the events)."""

_names: OrderedDict[str, None] = OrderedDict()
_lock = threading.Lock()
_recording = False


def record(on: bool) -> None:
    """Remember names only while a watcher that reports them reads (inotify): with no one to
    claim them (polling, a one-shot command) they would only take memory."""
    global _recording  # noqa: PLW0603 - one switch for the process
    with _lock:
        _recording = on
        if not on:
            _names.clear()


def add(name: str) -> None:
    """``name`` is about to be renamed onto a config by this process (any thread)."""
    if not _recording:
        return
    with _lock:
        _names[name] = None
        while len(_names) > LIMIT:
            _names.popitem(last=False)


def discard(name: str) -> None:
    """The rename of ``name`` did not happen."""
    with _lock:
        _names.pop(name, None)


def claim(name: str) -> bool:
    """Was ``name`` renamed onto a config by this process, and not claimed before?"""
    with _lock:
        return _names.pop(name, False) is None
