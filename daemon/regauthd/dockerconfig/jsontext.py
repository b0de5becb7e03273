"""config.json as text: bytes parsed into a dict, a dict rendered in Docker's style, and the
refusals (:class:`ConfigFileError`) every layer of the config code raises.

Pure: the bytes come from :mod:`regauthd.dockerconfig.file`, which does the reading and saving.
"""

from __future__ import annotations

import errno
import json
import math
import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path


class ConfigFileError(Exception):
    """The config file was refused. Nothing was changed; the message says why and what to do."""

    def __init__(self, path: Path | str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


class ConfigSyntaxError(ConfigFileError):
    """The config is not valid JSON. Carries the position, never the text around it."""

    def __init__(self, path: Path | str, line: int, column: int, problem: str) -> None:
        super().__init__(
            path,
            f"line {line} column {column}: invalid JSON ({problem}); Docker ignores the whole "
            "file with only a warning and its next login overwrites it: repair the JSON by hand "
            "or restore a backup",
        )
        self.line = line
        self.column = column


MAX_DEPTH = 200
"""Nesting deeper than this is refused: Python's recursive parser and renderer would exhaust
their stack (docker itself reads 2,000 levels, tests/integration/test_hostile_configs.py), and
no Docker config field nests more than four levels."""

MAX_INT_DIGITS = 4000
"""Integers with more digits than this are kept as their text (Python refuses to convert ints
of over 4,300 digits); :func:`render` writes them back unchanged."""


@dataclass(frozen=True, slots=True)
class RawNumber:
    """A JSON number Python cannot hold without changing it (a float that overflows to
    infinity or underflows to zero, an integer too long to convert): kept as its original
    text and written back verbatim, so ``1e999999`` never becomes ``Infinity`` (which Go's
    decoder refuses)."""

    text: str


def _parse_float(text: str) -> float | RawNumber:
    value = float(text)
    if not math.isfinite(value) or (value == 0.0 and _NONZERO_MANTISSA.match(text)):
        return RawNumber(text)  # overflow or underflow: writing the value would change it
    return value


_NONZERO_MANTISSA = re.compile(r"-?[0.]*[1-9]")


def _parse_int(text: str) -> int | RawNumber:
    return int(text) if len(text) <= MAX_INT_DIGITS else RawNumber(text)


class _NotJSON(ValueError):
    """NaN, Infinity: Python's extension of JSON, which Go's decoder refuses."""


def _parse_constant(name: str) -> Any:
    raise _NotJSON(name)


def _depth_exceeds(text: str, limit: int) -> bool:
    """Whether brackets outside strings nest deeper than ``limit`` (a linear scan)."""
    if text.count("[") + text.count("{") <= limit:
        return False
    depth = 0
    for token in _STRUCTURE.finditer(text):
        ch = token.group()
        if ch in "[{":
            depth += 1
            if depth > limit:
                return True
        elif ch in "]}":
            depth -= 1
    return False


_STRUCTURE = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


class ConfigSaveError(ConfigFileError):
    """The file could not be saved (no space, read-only filesystem, permission): it is unchanged.

    A fault of the machine, not of the file: the daemon tries again later.
    """

    def __init__(self, path: Path | str, what: str, exc: OSError) -> None:
        # The directory that refused, when it is not the file's own (the backups' directory);
        # never the name of a temp file, which is gone by now.
        folder = str(PurePosixPath(str(exc.filename)).parent) if exc.filename else ""
        where = f" in {folder}" if folder and folder != str(PurePosixPath(path).parent) else ""
        super().__init__(
            path,
            f"{what} failed: {os_cause(exc)}{where}; the file was left unchanged",
        )
        self.errno = exc.errno


def os_cause(exc: OSError) -> str:
    """A system error in words a person can act on (never a traceback)."""
    words = {
        errno.ENOSPC: "no space left on the device: free some space",
        errno.EDQUOT: "disk quota exceeded: free some space",
        errno.EROFS: "the filesystem is read-only",
        errno.EACCES: "permission denied",
        errno.EPERM: "operation not permitted",
        errno.EIO: "input/output error",
    }
    code = exc.errno or 0
    name = errno.errorcode.get(code, str(code))
    return f"{words.get(code, exc.strerror or 'system error')} ({name})"


def parse(data: bytes, path: Path | str = "config.json") -> dict[str, Any]:
    """Parse config bytes into an insertion-ordered dict. Empty input is an empty config.

    Numbers Python would change are kept as :class:`RawNumber`; ``NaN``/``Infinity`` literals
    (not JSON) and nesting deeper than :data:`MAX_DEPTH` are refused.
    """
    try:
        text = data.decode("utf-8", errors="strict") if data else ""
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ConfigSyntaxError(path, line, column, "not UTF-8 text") from None
    if not text.strip():
        return {}
    if _depth_exceeds(text, MAX_DEPTH):
        raise ConfigFileError(
            path,
            f"nests values more than {MAX_DEPTH} levels deep; regauthd leaves such a file "
            "alone (no Docker config field nests that deep: remove the deep value by hand)",
        )
    try:
        value = json.loads(
            text,
            parse_float=_parse_float,
            parse_int=_parse_int,
            parse_constant=_parse_constant,
        )
    except json.JSONDecodeError as exc:
        # exc.doc holds the whole text (secrets included): only the position leaves here.
        raise ConfigSyntaxError(path, exc.lineno, exc.colno, exc.msg) from None
    except _NotJSON as exc:
        raise ConfigFileError(
            path,
            f"holds the bare word {exc} where a value belongs, which is not JSON; Docker "
            "refuses the whole file: replace it with a number or a string",
        ) from None
    except RecursionError:
        raise ConfigFileError(path, "nests values too deeply to read; regauthd leaves it") from None
    if not isinstance(value, dict):
        raise ConfigFileError(path, "the top level is not a JSON object; Docker cannot load it")
    return value


def render(config: dict[str, Any], *, like: bytes = b"") -> bytes:
    """Docker's style: tab indentation, UTF-8; a trailing newline only if the original had one."""
    raw: list[str] = []

    marker = ""

    def placeholder(value: object) -> str:
        nonlocal marker
        if not isinstance(value, RawNumber):
            raise TypeError(f"not JSON: {type(value).__name__}")
        marker = marker or _unused_marker(config)
        raw.append(value.text)
        return f"{marker}{len(raw) - 1}"

    # allow_nan=False: NaN and Infinity are never written (Go's decoder refuses them).
    text = json.dumps(config, indent="\t", ensure_ascii=False, allow_nan=False, default=placeholder)
    if raw:
        text = re.sub(f'"{re.escape(marker)}([0-9]+)"', lambda m: raw[int(m.group(1))], text)
    if like.endswith(b"\n"):
        text += "\n"
    return escape_surrogates(text).encode("utf-8")


def escape_surrogates(text: str) -> str:
    """Lone surrogates (from ``\\ud800`` escapes, which Docker accepts) back as escapes: they
    only occur inside JSON strings, cannot be encoded as UTF-8, and mean the same escaped."""
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


_SURROGATE = re.compile("[\ud800-\udfff]")


def _unused_marker(config: dict[str, Any]) -> str:
    """A string no value in ``config`` contains (deterministic: pure)."""
    text = repr(config)
    n = 0
    while f"regauthd-raw-number-{n}-" in text:
        n += 1
    return f"regauthd-raw-number-{n}-"
