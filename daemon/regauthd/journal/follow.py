"""Follow the journal (or plain log files) and turn registry auth failures into events.

For the daemon
--------------
A follower is a source of :class:`~regauthd.journal.recognize.AuthFailure` values with a select-loop
shape::

    options = FollowOptions(units=("docker.service", "containerd.service"), max_age=...)
    follower = open_follower(options, state_dir)      # picks systemd-python, journalctl or files
    try:
        while running:
            select([follower.fileno(), ...], [], [], follower.timeout())
            for failure in follower.process():       # never blocks
                handle(failure)                       # re-check configs, probe, alert
    finally:
        follower.close()                              # saves the cursor

or, in a thread, ``follow(follower, handle, stop_event)``, which runs that loop until the event is
set. ``fileno()`` is ``None`` for the file-tail backend (it has no descriptor to wait on): use
``timeout()`` alone then. The first ``process()`` reads what is already logged (``timeout()`` is
0 until then); ``process()`` reads at most ``options.batch`` entries per call so a burst cannot
starve the caller's other work, and ``timeout()`` is 0 while more is waiting. ``process()``
raises :class:`~regauthd.journal.backend.JournalError` when the journal can no longer be read
(journalctl exited): close the follower and open a new one; the cursor makes that seamless.
``FollowOptions`` and ``AuthFailure`` are frozen and picklable; ``AuthFailure.as_dict()`` gives
the alert's fields. The options, the ``Follower`` interface and the error live in
:mod:`regauthd.journal.backend`. Settings map onto ``FollowOptions`` one to one; extra patterns
come in through ``Recognizer(compile_patterns(...))``, whose
:class:`~regauthd.journal.recognize.PatternError` is a settings error.

Guarantees
----------
- Matches only entries of the configured units (``_SYSTEMD_UNIT``; globs such as
  ``actions.runner.*`` are expanded against the journal, again when files come and go), skips
  container output that came through the journald log driver (it carries ``CONTAINER_ID``).
- The fast path (:func:`regauthd.journal.systemd.read_failures`) uses systemd-python's C
  ``_Reader`` directly and reads only ``MESSAGE`` and the time of each matched entry; the
  messages of a batch are pre-filtered together in one buffer; only entries that are failures
  are visited again (by time) for their unit and ``CONTAINER_ID``; a cursor is built only when
  it is saved. The default ``Reader`` converts every field of every entry: several times slower
  (see ``bench/journal.py``).
- The cursor (:mod:`regauthd.journal.cursor`) lives in ``state_dir/journal.cursor``, written
  atomically (temp file, fsync, rename), at most once a ``save_interval`` while entries flow (so
  also during long bursts) and at ``close()``. It is saved only after the failures read before
  it were handed out by ``process()`` (the next call or ``close()`` saves it): a crash re-reads,
  it never skips.
- Restart resumes after the saved cursor (that entry is not read again; if it was vacuumed, the
  first newer entry is read), but never from further back than ``max_age``; with no cursor it
  starts ``max_age`` ago.
- INVALIDATE (journal files rotated, vacuumed, appearing) is treated as "read on".

Backends, one module each: :class:`~regauthd.journal.systemd.SystemdFollower` (systemd-python),
:class:`~regauthd.journal.journalctl.JournalctlFollower` (``journalctl --follow -o json
--cursor ...`` when systemd-python is missing; same cursor file; ``--cursor`` rather than
``--after-cursor`` because the latter skips one entry blindly, losing one when the cursor's entry
was vacuumed) and :class:`~regauthd.journal.logfiles.LogFileFollower` (plain files such as
Docker Desktop's log or ``/var/log/messages``; survives rotation and truncation; positions kept
in ``state_dir/logtail.json``; polls every ``poll_interval``). :func:`regauthd.journal.scan.scan`
is the one-shot reader behind ``regauthd scan-journal``; it can share a large range between
forked workers.
"""

from __future__ import annotations

import select
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from regauthd.journal.backend import Follower, FollowOptions, JournalError
from regauthd.journal.journalctl import JournalctlFollower, journalctl_present
from regauthd.journal.logfiles import LogFileFollower
from regauthd.journal.recognize import AuthFailure
from regauthd.journal.systemd import SystemdFollower, systemd_reader

if TYPE_CHECKING:
    import threading


def open_follower(
    options: FollowOptions, state_dir: Path | None, *, now: datetime | None = None
) -> Follower:
    """The best backend for this host, or the one ``options.backend`` names."""
    backend = options.backend
    if backend == "auto":
        if options.log_files and not journalctl_present():
            backend = "files"
        elif systemd_reader() is not None:
            backend = "systemd"
        elif journalctl_present():
            backend = "journalctl"
        elif options.log_files:
            backend = "files"
        else:
            raise JournalError(
                "no journal here (neither systemd-python nor journalctl), so no auth failures "
                "are read: set [journal] log_files to follow a log file instead, e.g. Docker "
                "Desktop's ~/Library/Containers/com.docker.docker/Data/log/vm/init.log on macOS "
                "(vm/dockerd.log in older releases), or /var/log/messages"
            )
    if backend == "systemd":
        return SystemdFollower(options, state_dir, now=now)
    if backend == "journalctl":
        return JournalctlFollower(options, state_dir, now=now)
    if backend == "files":
        return LogFileFollower(options, state_dir, now=now)
    raise JournalError(f"unknown journal backend {backend!r}: use auto, systemd, journalctl, files")


def follow(
    follower: Follower,
    on_failure: Callable[[AuthFailure], None],
    stop: threading.Event,
    *,
    stop_check: float = 0.5,
) -> None:
    """Run ``follower`` until ``stop`` is set, calling ``on_failure`` for each failure, in order.

    Waits on the follower's descriptor; ``stop_check`` only bounds how long a set ``stop`` goes
    unnoticed. Does not close the follower.
    """
    while not stop.is_set():
        fd = follower.fileno()
        wait = follower.timeout()
        wait = stop_check if wait is None else min(wait, stop_check)
        if fd is None:
            stop.wait(wait)
        elif wait > 0:
            select.select([fd], [], [], wait)
        for failure in follower.process():
            on_failure(failure)
