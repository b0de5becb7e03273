"""What a batch of watched-directory changes means to the daemon: configs to repair, a plan to
redo, a full rescan.

[pure] :func:`route` reads the current :class:`~regauthd.service.watchplan.WatchPlan`; its one
file-system question (is the entry that appeared under a config's name a symlink?) goes through
the :class:`~regauthd.service.watchplan.FileSystemView` it is given. The rules:

- ``WRITTEN`` to a config's name: look at the configs it is, unless ``ours(source)`` says the
  file renamed in is one of this process's own saves (its repair coming back).
- ``APPEARED`` under a config's name that is a symlink, and any change to a name that is a
  symlinked config: replan (the link's target directory must be watched), and look at the
  configs unless the name was removed.
- ``APPEARED``/``REMOVED`` of a name that a trigger matches (a directory that did not exist, a
  globbed directory such as ``/home/*``): replan.
- ``REMOVED`` of a directory that is itself watched: replan, and that directory's watch is
  replaced (``stale``); ``DIR_GONE``: replan, and the watch is forgotten (``gone``).
- ``OVERFLOW``: events were lost: ``rescan`` (replan, look at every config again).
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from dataclasses import dataclass, field

from regauthd.service.watcher.change import Change, ChangeKind
from regauthd.service.watchplan import FileSystemView, WatchPlan, glob_matches


@dataclass(slots=True)
class Routing:
    """What one batch of changes asks the daemon to do."""

    configs: dict[str, None] = field(default_factory=dict)
    """Config paths (as configured) to look at, in order, each once."""
    replan: bool = False
    """The plan may have changed: plan again and reconcile the watches."""
    rescan: bool = False
    """Events were lost (the watcher's queue overflowed): replan and look at every config."""
    gone: list[str] = field(default_factory=list)
    """Watched directories whose watch is gone (``DIR_GONE``): the watcher forgot them."""
    stale: list[str] = field(default_factory=list)
    """Watched directories removed from their parent: replace their watch."""

    def __bool__(self) -> bool:
        return bool(self.configs) or self.replan or self.rescan


def route(
    plan: WatchPlan,
    changes: list[Change],
    fs: FileSystemView,
    ours: Callable[[str], bool] | None = None,
) -> Routing:
    """What ``changes`` (one read of the watcher, in order) mean under ``plan``. ``ours(name)``:
    was a file of that name renamed onto a config by this process (asked once per such rename)?"""
    routing = Routing()
    for change in changes:
        kind = change.kind
        if kind is ChangeKind.OVERFLOW:
            routing.rescan = True
            continue
        if kind is ChangeKind.DIR_GONE:
            routing.gone.append(change.directory)
            routing.replan = True
            continue
        role = plan.dirs.get(change.directory)
        if role is None:
            continue
        name = change.name
        path = posixpath.join(change.directory, name)
        if kind is ChangeKind.REMOVED and change.is_dir and path in plan.dirs:
            routing.stale.append(path)
            routing.replan = True
        configs = role.files.get(name)
        if configs is not None:
            if kind is ChangeKind.WRITTEN and not (
                change.source and ours is not None and ours(change.source)
            ):
                routing.configs.update(dict.fromkeys(configs))
            if name in role.links or (kind is ChangeKind.APPEARED and fs.islink(path)):
                # The link's target directory must be watched; the config is looked at through
                # the link (a link to a directory watched already brings no new watch).
                routing.replan = True
                if kind is not ChangeKind.REMOVED:
                    routing.configs.update(dict.fromkeys(configs))
        if kind is not ChangeKind.WRITTEN and any(glob_matches(t, name) for t in role.triggers):
            routing.replan = True
    return routing


__all__ = ["Routing", "route"]
