"""The probe thread: a reload whose stop timed out still takes effect once the old thread ends."""

from __future__ import annotations

import threading
import time

from regauthd.probe.thread import Main, ProbeThread


def stuck_main(release: threading.Event, entered: threading.Event) -> Main:
    async def main() -> None:
        entered.set()
        release.wait(10)  # blocks the loop: a cancel cannot reach it (a helper that hangs)

    return main


def marking_main(ran: threading.Event) -> Main:
    async def main() -> None:
        ran.set()

    return main


def test_a_start_after_a_stop_that_timed_out_runs_when_the_old_thread_ends() -> None:
    thread = ProbeThread("test-probes")
    release, entered, ran = threading.Event(), threading.Event(), threading.Event()
    thread.start(stuck_main(release, entered))
    assert entered.wait(5)
    assert thread.stop(timeout=0.05) is False  # still inside the stuck call
    thread.start(marking_main(ran))  # the reload's new settings
    assert not ran.wait(0.2)  # never two threads at once
    release.set()
    assert ran.wait(5)  # used to be lost: the reload's settings never ran
    deadline = time.monotonic() + 5
    while thread.running and time.monotonic() < deadline:
        time.sleep(0.01)
    assert thread.stop(timeout=1) is True


def test_a_stop_drops_a_start_that_waited_for_the_old_thread() -> None:
    thread = ProbeThread("test-probes")
    release, entered, ran = threading.Event(), threading.Event(), threading.Event()
    thread.start(stuck_main(release, entered))
    assert entered.wait(5)
    assert thread.stop(timeout=0.05) is False
    thread.start(marking_main(ran))
    assert thread.stop(timeout=0.05) is False  # shutting down: nothing is to start after
    release.set()
    assert not ran.wait(0.5)
    assert not thread.running
