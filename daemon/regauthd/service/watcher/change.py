"""What a watcher reports: one :class:`Change` per thing that happened in a watched directory.

[pure] Plain data: the backends build these, the daemon decides what they mean.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass


class ChangeKind(enum.Enum):
    """What happened. Each backend documents how its platform's events map onto these."""

    WRITTEN = "written"
    """An entry now has new content: a file was closed after writing, or a file was renamed
    into the directory (Docker's save). Only for directories watched with ``contents=True``."""
    APPEARED = "appeared"
    """An entry (file or directory) was created or moved into the directory. A file renamed in
    gives ``APPEARED`` then ``WRITTEN`` (when the directory is watched for contents); a file
    created in place gives ``APPEARED`` now and ``WRITTEN`` when its writer closes it."""
    REMOVED = "removed"
    """An entry was deleted or moved away."""
    DIR_GONE = "dir_gone"
    """The watched directory itself was deleted, moved or unmounted: its watch is gone (the
    watcher forgot it; watch the path again if it comes back). ``name`` is empty."""
    OVERFLOW = "overflow"
    """Events were lost (the kernel's queue overflowed): rescan everything. ``directory`` and
    ``name`` are empty."""


@dataclass(frozen=True, slots=True)
class Change:
    """One thing that happened to ``name`` in the watched ``directory`` (as it was passed to
    ``watch``)."""

    kind: ChangeKind
    directory: str
    name: str
    is_dir: bool
    source: str = ""
    """For ``WRITTEN`` by a rename within the directory: the name the file had before, when the
    backend pairs the two halves of a rename (inotify's cookie); empty otherwise."""


Wants = Callable[[str, str], bool]
"""``wants(directory, name)``: could a change to this non-directory entry matter? Asked before
a :class:`Change` is built, on the thread that calls ``read()``; False drops it. Must be cheap
and must not raise."""
