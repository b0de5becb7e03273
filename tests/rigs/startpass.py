"""The daemon's repair path in this process, for tests of the start-up pass.

Usage::

    with repairer(tmp_path, state_dir=tmp_path / "state") as fixer:
        reports = start_pass(fixer, configs)  # {config: FixReport}; an exception fails the test

``alert`` (optional) gets every alert the repairs raise, as the daemon's alerter would.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from regauthd.alerts.alerter import RaiseAlert
from regauthd.alerts.metrics import Metrics
from regauthd.dockerconfig.report import FixReport
from regauthd.service.loop import Loop
from regauthd.service.repair import Repairer
from regauthd.settingsfile import load_settings, with_overrides


def _ignore(kind: Any, subject: str, **fields: Any) -> bool:
    return True


@contextlib.contextmanager
def repairer(tmp_path: Path, *, state_dir: Path, alert: RaiseAlert = _ignore) -> Iterator[Repairer]:
    """A :class:`Repairer` with default settings but ``state_dir``, on a loop of its own."""
    (tmp_path / "settings.toml").write_text("")
    settings = with_overrides(load_settings(tmp_path / "settings.toml"), state_dir=state_dir)
    loop = Loop()
    try:
        yield Repairer(settings, loop=loop, alert=alert, metrics=Metrics(), retry=lambda _: None)
    finally:
        loop.close()


def start_pass(fixer: Repairer, configs: Sequence[Path | str]) -> dict[str, FixReport]:
    """``repair_all`` over ``configs``: the report of each config the fixer ran on."""
    reports: dict[str, FixReport] = {}
    fixer.repair_all(
        [str(config) for config in configs],
        done=reports.__setitem__,
        failed=lambda config, exc: pytest.fail(f"{config}: {exc!r}"),
        between=lambda: None,
    )
    return reports
