"""config.json as text: bytes parsed into a dict, a dict rendered in Docker's style, and the
refusals (:class:`ConfigFileError`) every layer of the config code raises.

Pure: the bytes come from :mod:`regauthd.dockerconfig.file`, which does the reading and saving.
"""

from __future__ import annotations

import json
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


def parse(data: bytes, path: Path | str = "config.json") -> dict[str, Any]:
    """Parse config bytes into an insertion-ordered dict. Empty input is an empty config."""
    try:
        text = data.decode("utf-8", errors="strict") if data else ""
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ConfigSyntaxError(path, line, column, "not UTF-8 text") from None
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        # exc.doc holds the whole text (secrets included): only the position leaves here.
        raise ConfigSyntaxError(path, exc.lineno, exc.colno, exc.msg) from None
    if not isinstance(value, dict):
        raise ConfigFileError(path, "the top level is not a JSON object; Docker cannot load it")
    return value


def render(config: dict[str, Any], *, like: bytes = b"") -> bytes:
    """Docker's style: tab indentation, UTF-8; a trailing newline only if the original had one."""
    text = json.dumps(config, indent="\t", ensure_ascii=False)
    if like.endswith(b"\n"):
        text += "\n"
    return text.encode("utf-8")
