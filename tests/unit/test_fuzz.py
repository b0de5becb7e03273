"""A fuzz target per parser of outside input (:mod:`tests.rigs.fuzz`), run briefly here;
``bench/fuzz.py`` runs them for longer. Each: no exception but the documented ones, no secret
of the input in any message."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given

from tests.rigs.fuzz import CI, TARGETS, FuzzTarget


@pytest.mark.parametrize("target", TARGETS, ids=[t.name for t in TARGETS])
def test_fuzz(target: FuzzTarget) -> None:
    @CI
    @given(target.strategy)
    def case(value: Any) -> None:
        target.run(value)

    case()
