"""Which expiry alerts were already raised, kept across restarts without keeping the credential.

A credential is remembered by a keyed fingerprint: HMAC-SHA256, under a random per-host key, of
its registry, user name and expiry. The secret itself is never part of it, and without the key
(``<state_dir>/expiry.key``, 0600) nobody can test a guess of registry, user and expiry against
the file. The raised alerts live in ``<state_dir>/expiry-alerts.json`` (0600), written through
:func:`regauthd.statefile.write_atomically`; an entry is dropped 30 days after its expiry.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from datetime import datetime, timedelta
from pathlib import Path
from typing import Final

import structlog

from regauthd.statefile import write_atomically

log = structlog.get_logger("regauthd.expiry")

KEY_FILE: Final = "expiry.key"
MEMORY_FILE: Final = "expiry-alerts.json"
KEEP_AFTER_EXPIRY: Final = timedelta(days=30)
_KEY_BYTES: Final = 32
_MAX_FILE_BYTES: Final = 8 * 1024 * 1024


def _read_small(path: Path, limit: int) -> bytes | None:
    """The file's bytes, never through a symlink, never more than ``limit``; None if absent."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    try:
        return os.read(fd, limit + 1)
    finally:
        os.close(fd)


class ExpiryMemory:
    """The fingerprints of credentials whose ``expiring`` / ``expired`` alert went out."""

    def __init__(self, state_dir: Path) -> None:
        self._dir = state_dir
        self._key = b""
        self._raised: dict[str, tuple[frozenset[str], int]] = {}
        """fingerprint -> (the kinds raised, the expiry in epoch seconds)"""
        self.dirty = False

    def load(self) -> None:
        """Read (or make) the key and read the memory. A damaged file is logged and replaced."""
        self._key = self._load_key()
        try:
            raw = _read_small(self._dir / MEMORY_FILE, _MAX_FILE_BYTES)
            data = json.loads(raw) if raw else {}
        except (OSError, ValueError) as exc:
            log.warning(
                "expiry.memory_unreadable", path=str(self._dir / MEMORY_FILE), error=str(exc)
            )
            data = {}
        raised = data.get("raised") if isinstance(data, dict) else None
        for fingerprint, entry in (raised if isinstance(raised, dict) else {}).items():
            if not isinstance(entry, dict):
                continue
            kinds, until = entry.get("kinds"), entry.get("until")
            if isinstance(kinds, list) and isinstance(until, int) and not isinstance(until, bool):
                self._raised[str(fingerprint)] = (frozenset(map(str, kinds)), until)

    def _load_key(self) -> bytes:
        path = self._dir / KEY_FILE
        try:
            key = _read_small(path, _KEY_BYTES)
            if key is not None and len(key) == _KEY_BYTES:
                return key
            key = secrets.token_bytes(_KEY_BYTES)
            write_atomically(path, key, mode=0o600)
            return key
        except OSError as exc:
            # Alerts still go out once per run; only the memory across restarts is lost.
            log.warning("expiry.key_unavailable", path=str(path), error=str(exc))
            return secrets.token_bytes(_KEY_BYTES)

    def fingerprint(self, registry: str, username: str, expires_at: datetime) -> str:
        data = "\0".join((registry, username, str(int(expires_at.timestamp())))).encode(
            "utf-8", "surrogatepass"
        )
        return hmac.new(self._key, data, hashlib.sha256).hexdigest()

    def raised(self, fingerprint: str, kind: str) -> bool:
        entry = self._raised.get(fingerprint)
        return entry is not None and kind in entry[0]

    def remember(self, fingerprint: str, kind: str, expires_at: datetime) -> None:
        kinds, _ = self._raised.get(fingerprint, (frozenset(), 0))
        self._raised[fingerprint] = (kinds | {kind}, int(expires_at.timestamp()))
        self.dirty = True

    def save(self, now: datetime) -> None:
        """Write the memory if it changed (dropping long-expired entries). Never raises: a
        failure is logged and tried again at the next save."""
        if not self.dirty:
            return
        horizon = (now - KEEP_AFTER_EXPIRY).timestamp()
        self._raised = {k: v for k, v in self._raised.items() if v[1] >= horizon}
        raised = {
            k: {"kinds": sorted(kinds), "until": until}
            for k, (kinds, until) in self._raised.items()
        }
        data = json.dumps({"version": 1, "raised": raised}, sort_keys=True).encode()
        try:
            self._dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            write_atomically(self._dir / MEMORY_FILE, data, mode=0o600)
        except OSError as exc:
            log.warning(
                "expiry.memory_not_saved", path=str(self._dir / MEMORY_FILE), error=str(exc)
            )
            return
        self.dirty = False

    def __len__(self) -> int:
        return len(self._raised)


__all__ = ["ExpiryMemory"]
