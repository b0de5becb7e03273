"""Findings: problems in a Docker config that a person (or the daemon's alerts) must hear about."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from regauthd.terminal import printable

Severity = Literal["error", "warning"]
"""``error``: a client fails or a credential is at risk. ``warning``: works, but risky or odd."""


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem, named by a stable ``code``, located by file and key, with the fix."""

    code: str
    severity: Severity
    path: str
    key: str | None
    message: str
    fix: str

    def as_dict(self) -> dict[str, str | None]:
        return {
            "code": self.code,
            "severity": self.severity,
            "path": self.path,
            "key": self.key,
            "message": self.message,
            "fix": self.fix,
        }

    def as_text(self, *, indent: str = "") -> str:
        """The one text rendering: ``severity [key]: message``, then ``fix: ...`` indented below.

        Shown under a heading that names :attr:`path` (a report's, or the source's).
        """
        where = f" [{printable(self.key)}]" if self.key is not None else ""
        return (
            f"{indent}{self.severity}{where}: {printable(self.message)}\n"
            f"{indent}  fix: {printable(self.fix)}"
        )
