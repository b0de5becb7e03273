"""Docker configs as tests write them: the one base64 ``auth`` helper, Docker-style saves."""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HUB = "https://index.docker.io/v1/"
WAIT_S = 20.0


def auth(user: str, password: str) -> str:
    """An ``auth`` value as Docker writes it: base64 of ``user:password``."""
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def mis_keyed(user: str = "ci", password: str = "pw-1", key: str = "docker.io") -> bytes:  # noqa: S107
    return json.dumps({"auths": {key: {"auth": auth(user, password)}}}, indent="\t").encode()


def docker_style_write(directory: Path, data: bytes, seq: int = 0) -> None:
    """Temp file in the same directory, then rename over config.json (as the Docker CLI saves)."""
    tmp = directory / f"config.json{os.getpid()}{seq:06d}"
    tmp.write_bytes(data)
    tmp.chmod(0o600)
    tmp.rename(directory / "config.json")


def auths_keys(path: Path) -> list[str]:
    try:
        return sorted(json.loads(path.read_bytes()).get("auths", {}))
    except (OSError, ValueError):
        return []


def wait_until(check: Callable[[], Any], what: str, timeout: float = WAIT_S) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)
