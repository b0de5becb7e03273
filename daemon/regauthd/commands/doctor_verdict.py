"""One check's answer in ``regauthd doctor`` (pure): the check's name, its status, the message,
the single next step, and the registry it is about.

A new check is a function returning :class:`Verdict` values; ``commands/doctor.py`` prints
each as soon as it is known (see its module docstring for where checks are called).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Status = Literal["ok", "warning", "problem", "not_checked", "not_applicable"]
FAILING: frozenset[str] = frozenset({"problem", "not_checked"})
"""Statuses that make ``doctor`` exit 1."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """One named check's answer, and the single next step when it is not ok."""

    check: str
    status: Status
    message: str
    fix: str | None = None
    registry: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        return {
            "check": self.check,
            "status": self.status,
            "registry": self.registry,
            "message": self.message,
            "fix": self.fix,
        }
