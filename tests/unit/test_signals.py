"""The daemon's signals: SIGTERM/SIGINT ask it to stop, a second one while it stops forces the
exit (status 1), SIGHUP asks for a reload, and the handlers before are put back afterwards."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from regauthd.service.signals import Signals


def test_stop_reload_and_the_handlers_put_back() -> None:
    asked: list[str] = []
    before = signal.getsignal(signal.SIGHUP)
    with Signals(
        stop=lambda: asked.append("stop"), stopping=lambda: False, hup=lambda: asked.append("hup")
    ):
        os.kill(os.getpid(), signal.SIGHUP)
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGINT)
    assert asked == ["hup", "stop", "stop"]
    assert signal.getsignal(signal.SIGHUP) is before


def test_a_stop_signal_while_stopping_forces_the_exit() -> None:
    script = (
        "import os, signal, time\n"
        "from regauthd.service.signals import Signals\n"
        "with Signals(stop=lambda: None, stopping=lambda: True, hup=lambda: None):\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    time.sleep(5)\n"
        "print('not forced')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=30
    )
    assert (done.returncode, done.stdout) == (1, "")
