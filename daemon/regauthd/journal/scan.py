"""The one-shot scan behind ``regauthd scan-journal``: what is logged now, no cursor.

A large time range can be shared between workers, each reading one slice: forked processes on
the systemd-python backend, journalctl processes on the journalctl backend. Plain log files
are read once through their follower.
"""

from __future__ import annotations

import itertools
import os
import select
from collections.abc import Iterator
from datetime import UTC, datetime

from regauthd.journal.backend import FollowOptions, JournalError
from regauthd.journal.clocksteps import Edge, stepped_back
from regauthd.journal.cursor import from_realtime_us
from regauthd.journal.journalctl import (
    JournalctlFollower,
    first_entry,
    journalctl_query,
    journalctl_source,
    matched_span,
)
from regauthd.journal.logfiles import LogFileFollower
from regauthd.journal.recognize import AuthFailure
from regauthd.journal.systemd import SystemdFollower, systemd_reader

# pickle is imported where forked workers need it; json and subprocess where the journalctl
# backend checks the clock.


def scan(
    options: FollowOptions,
    *,
    since: datetime | None = None,
    now: datetime | None = None,
    workers: int = 1,
) -> Iterator[AuthFailure]:
    """One pass over what is logged now (from ``since``, default ``max_age`` ago); no cursor.

    ``workers > 1`` splits the time range between that many forked processes (systemd-python)
    or journalctl processes read side by side, for large journals on several cores. Only for
    single-threaded callers such as the CLI: forking a threaded process (the daemon) is unsafe.
    """
    now = now or datetime.now(UTC)
    start = since or now - options.max_age
    backend = options.backend
    if backend == "auto":
        if options.log_files:
            backend = "files"
        elif systemd_reader() is not None:
            backend = "systemd"
        else:
            backend = "journalctl"
    if backend == "systemd":
        yield from _scan_systemd(options, start, now, workers)
    elif backend == "journalctl":
        yield from _scan_journalctl(options, start, now, workers)
    elif backend == "files":
        missing = [str(p) for p in options.log_files if not p.is_file()]
        if missing:
            raise JournalError(f"log file(s) not found: {', '.join(missing)}")
        files = LogFileFollower(options, None, now=now, since=start)
        try:
            yield from files.process()
        finally:
            files.close()
    else:
        raise JournalError(
            f"unknown journal backend {backend!r}: use auto, systemd, journalctl, files"
        )


def _scan_journalctl(
    options: FollowOptions, start: datetime, now: datetime, workers: int
) -> Iterator[AuthFailure]:
    """One journalctl per slice of the time range, all read side by side; the failures come
    out in slice order, the first slice's as they are found."""
    query = journalctl_query(options)
    span = matched_span(query, start) if workers > 1 else None
    if span is not None and _journalctl_stepped_back(query[0], journalctl_source(options)):
        span = None  # slices by realtime would miss entries: one journalctl, in journal order
    cuts: list[int | None] = [None, None]
    if span is not None and span[0] < span[1]:
        first, last = span
        step = (last - first) // workers + 1
        cuts = [None, *(first + i * step for i in range(1, workers)), None]
    followers: list[JournalctlFollower] = []
    try:
        for lo, hi in itertools.pairwise(cuts):
            # Both bounds are inclusive: a slice ends 1 us before the next one starts.
            followers.append(
                JournalctlFollower(
                    options,
                    None,
                    now=now,
                    since=start,
                    follow=False,
                    since_us=lo,
                    until_us=None if hi is None else hi - 1,
                    query=query,
                )
            )
        found: list[list[AuthFailure]] = [[] for _ in followers]
        head = 0  # the first slice not yet handed out whole
        while head < len(followers):
            reading = [f for f in followers if not f.finished]
            ready, _, _ = select.select(reading, [], [])
            for follower in ready:
                found[followers.index(follower)] += follower.process()
            while head < len(followers):
                yield from found[head]
                found[head] = []
                if not followers[head].finished:
                    break
                head += 1
    finally:
        for follower in followers:
            follower.close()


_MOST_BOOTS_CHECKED = 16
"""More boots than this: the journalctl backend reads with one journalctl, unchecked."""


def _journalctl_stepped_back(program: str, source: list[str]) -> bool:
    """:func:`stepped_back` for the journalctl backend: the boots from ``--list-boots``, each
    one's first and last entry from two short journalctl runs, all side by side. More than
    :data:`_MOST_BOOTS_CHECKED` boots, or an answer it cannot read: True (one reader is slower,
    never wrong)."""
    import json  # noqa: PLC0415 - see the imports
    import subprocess  # noqa: PLC0415 - see the imports

    listed = subprocess.run(
        [program, "--list-boots", "-o", "json", "--no-pager", *source],
        capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL, timeout=60,
    )  # fmt: skip
    try:
        boots = [str(boot["boot_id"]) for boot in json.loads(listed.stdout)]
    except (ValueError, TypeError, KeyError):
        return True
    if listed.returncode != 0 or len(boots) > _MOST_BOOTS_CHECKED:
        return True
    argv = [program, "-o", "export", "--output-fields=_BOOT_ID", "--no-pager", *source]
    runs = [
        subprocess.Popen(
            [*argv, f"--boot={boot}", *last],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )
        for boot in boots
        for last in ([], ["--lines=1"])
    ]
    entries = [first_entry(proc) for proc in runs]  # each run stopped and waited for
    edges: list[Edge] = []
    for entry in entries:
        if entry is None:
            return True
        try:
            edges.append(
                (int(entry[b"__REALTIME_TIMESTAMP"]), int(entry[b"__MONOTONIC_TIMESTAMP"]))
            )
        except (KeyError, ValueError):
            return True
    return stepped_back(zip(edges[0::2], edges[1::2], strict=True))


def _scan_systemd(
    options: FollowOptions, start: datetime, now: datetime, workers: int
) -> Iterator[AuthFailure]:
    probe = SystemdFollower(options, None, now=now, since=start)
    span = probe.matched_span() if workers > 1 else None
    if span is not None and (span[0] >= span[1] or probe.clock_stepped_back()):
        # Slices by realtime would miss entries (all of them when the last entry is older
        # than the first): one reader, in journal order.
        probe.close()
        probe = SystemdFollower(options, None, now=now, since=start)
        span = None
    if span is None:
        try:
            yield from probe.read_all()
        finally:
            probe.close()
        return
    probe.close()  # sd-journal objects must not cross a fork
    first, last = span
    step = (last - first) // workers + 1
    cuts = [first + i * step for i in range(workers)] + [last + 1]
    slices = list(itertools.pairwise(cuts))
    children = [_fork_slice(options, now, lo, hi) for lo, hi in slices[:-1]]
    try:
        own = _slice_failures(options, now, *slices[-1])
        while children:
            pid, fd = children.pop(0)
            yield from _collect(pid, fd)
        yield from own
    finally:
        for pid, fd in children:
            os.close(fd)
            os.waitpid(pid, 0)


def _slice_failures(options: FollowOptions, now: datetime, lo: int, hi: int) -> list[AuthFailure]:
    follower = SystemdFollower(options, None, now=now, since=from_realtime_us(lo))
    try:
        follower.seek_realtime(lo)  # exact microseconds, not via a float
        return list(follower.read_all(until=hi))
    finally:
        follower.close()


def _fork_slice(options: FollowOptions, now: datetime, lo: int, hi: int) -> tuple[int, int]:
    import pickle  # noqa: PLC0415 - see the imports

    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            os.close(read_end)
            with os.fdopen(write_end, "wb") as out:
                out.write(pickle.dumps(_slice_failures(options, now, lo, hi)))
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    return pid, read_end


def _collect(pid: int, fd: int) -> list[AuthFailure]:
    import pickle  # noqa: PLC0415 - see the imports

    with os.fdopen(fd, "rb") as result:
        payload = result.read()
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise JournalError("a journal scan worker failed; run with one worker to see why")
    failures: list[AuthFailure] = pickle.loads(payload)  # noqa: S301 - our own child wrote it
    return failures
