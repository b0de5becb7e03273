"""``regauthd ARGS`` run in the test's own process: what a person sees, at no start-up cost.

A traceback would fail the test itself (the command raised); the output is returned as a
:class:`subprocess.CompletedProcess` so tests read it as they read a real run's.
"""

from __future__ import annotations

import io
import os
import subprocess
from contextlib import redirect_stderr, redirect_stdout
from unittest import mock

from regauthd.cli import main


def run_in_process(*args: str, path: str | None = None) -> subprocess.CompletedProcess[str]:
    """``regauthd ARGS`` with ``path`` (if given) first on PATH and no DOCKER_AUTH_CONFIG."""
    out, err = io.StringIO(), io.StringIO()
    env = {"PATH": f"{path}:{os.environ['PATH']}"} if path is not None else {}
    with mock.patch.dict(os.environ, env), redirect_stdout(out), redirect_stderr(err):
        os.environ.pop("DOCKER_AUTH_CONFIG", None)
        code = main(list(args))
    return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())
