"""Text safe to print: what a config, a journal or a registry said, unable to pose as output.

Pure. Config keys, journal messages and registry answers are written by others; printed raw, a
key holding ``\\x1b[2J`` or ``\\nregauthd: all good`` would clear the screen or add a fake line
to a report. Every text line ``check``, ``fix``, ``doctor``, ``probe`` and ``scan-journal``
print goes through :func:`printable`, and every JSON line through :func:`json_line`.
"""

from __future__ import annotations

import json
import re
from typing import Any

_UNPRINTABLE = re.compile(
    "[\x00-\x1f\x7f-\x9f"  # C0 (newline, escape) and C1 controls (0x9b is a CSI)
    "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"  # bidirectional overrides
    "\u2028\u2029"  # line and paragraph separators
    "\ud800-\udfff]"  # lone surrogates (from \\ud800 escapes): not encodable
)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: object) -> str:
    """``text`` as one line of plain characters: control characters, bidirectional overrides
    and lone surrogates become escapes (``\\x1b``, ``\\x0a``, ``\\u202e``) as :func:`repr` shows
    them. Apply it to each single-line piece, before joining pieces with newlines."""
    s = str(text)
    return _UNPRINTABLE.sub(_escape, s) if _UNPRINTABLE.search(s) else s


def json_line(obj: Any) -> str:
    """``obj`` as one compact JSON line: UTF-8 text kept, but every character
    :func:`printable` escapes written as a ``\\uXXXX`` escape (same JSON value)."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    return _UNPRINTABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
