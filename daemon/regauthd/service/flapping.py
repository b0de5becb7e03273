"""When another writer keeps undoing our repair, and which credential a write made newest (pure).

:class:`FlapTracker` tells a writer that puts back the content we replaced (Docker Desktop
restoring its own copy) from new logins, which are all repaired; :func:`newest_hub_keys` says
which Docker Hub spelling a write added or changed, so the newest credential wins.
"""

from __future__ import annotations

import hashlib
import json
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from regauthd.dockerconfig.keys import KeyKind, classify

if TYPE_CHECKING:
    # Only the type: settings.py reads files, the rules here never do.
    from regauthd.settings import FlappingSettings


@dataclass(frozen=True, slots=True)
class FlapVerdict:
    action: str
    """``repair``, ``paused`` (still in a pause) or ``pause`` (start one now: alert once)."""
    undos: int = 0
    backoff: float = 0.0


@dataclass(slots=True)
class _FlapState:
    replaced: deque[tuple[float, bytes]] = field(default_factory=deque)
    replaced_count: dict[bytes, int] = field(default_factory=dict)
    """How often each digest is in ``replaced`` (O(1) lookups: CI hosts log in all day)."""
    undos: deque[float] = field(default_factory=deque)
    paused_until: float | None = None
    backoff: float = 0.0
    relapse_until: float | None = None

    def idle(self, base_backoff: float) -> bool:
        """Nothing left to remember: the tracker can forget this file (10,000 configs on a
        runner must not each keep two deques: a file's state lives only while it matters)."""
        return (
            not self.replaced
            and not self.undos
            and self.paused_until is None
            and self.relapse_until is None
            and self.backoff == base_backoff
        )


class FlapTracker:
    """Tells a writer that undoes our repair (puts back the SAME content we replaced) from new
    logins (new content every time, which are all repaired).

    ``max_undos`` undo cycles within ``window`` seconds pause repairs of that file for the
    back-off; an undo soon after the pause ends pauses it again at twice the back-off.
    """

    def __init__(self, settings: FlappingSettings) -> None:
        self.settings = settings
        self._files: dict[str, _FlapState] = {}
        self._sweep: deque[tuple[float, str]] = deque()
        """(when to look again, file): states to drop once their window has passed."""

    def _state(self, key: str) -> _FlapState:
        state = self._files.get(key)
        if state is None:
            state = self._files[key] = _FlapState(backoff=self.settings.backoff)
        return state

    def _prune(self, state: _FlapState, now: float) -> None:
        horizon = now - self.settings.window
        while state.replaced and state.replaced[0][0] < horizon:
            _, old = state.replaced.popleft()
            left = state.replaced_count[old] - 1
            if left:
                state.replaced_count[old] = left
            else:
                del state.replaced_count[old]
        while state.undos and state.undos[0] < horizon:
            state.undos.popleft()
        if state.relapse_until is not None and now >= state.relapse_until:
            state.relapse_until = None
            state.backoff = self.settings.backoff

    def _forget_idle(self, now: float) -> None:
        """Drop the states whose window has passed and that hold nothing more (amortised O(1))."""
        while self._sweep and self._sweep[0][0] <= now:
            _, key = self._sweep.popleft()
            state = self._files.get(key)
            if state is None:
                continue
            self._prune(state, now)
            if state.idle(self.settings.backoff):
                del self._files[key]

    def _remember(self, key: str, state: _FlapState, now: float) -> None:
        self._sweep.append((now + self.settings.window, key))
        if state.paused_until is not None:
            self._sweep.append((state.paused_until + self.settings.window, key))

    def observe(self, key: str, digest: bytes, now: float) -> FlapVerdict:
        """A write of content ``digest`` to file ``key`` was seen: repair it or not?"""
        self._forget_idle(now)
        state = self._files.get(key)
        if state is None:
            return FlapVerdict("repair")  # nothing of ours to undo: a new login
        self._prune(state, now)
        if state.paused_until is not None:
            if now < state.paused_until:
                return FlapVerdict("paused")
            state.paused_until = None
        if digest not in state.replaced_count:
            return FlapVerdict("repair")
        state.undos.append(now)
        relapse = state.relapse_until is not None
        if not relapse and len(state.undos) < self.settings.max_undos:
            return FlapVerdict("repair", undos=len(state.undos))
        if relapse:
            state.backoff = min(state.backoff * 2, self.settings.backoff_max)
        undos = len(state.undos)
        state.paused_until = now + state.backoff
        state.relapse_until = None
        state.undos.clear()
        self._remember(key, state, now)
        return FlapVerdict("pause", undos=undos, backoff=state.backoff)

    def replaced(self, key: str, digest: bytes, now: float) -> None:
        """We rewrote ``key``; ``digest`` is the content we replaced."""
        self._forget_idle(now)
        state = self._state(key)
        self._prune(state, now)
        state.replaced.append((now, digest))
        state.replaced_count[digest] = state.replaced_count.get(digest, 0) + 1
        self._remember(key, state, now)

    def resume(self, key: str, now: float) -> None:
        """The pause ended: repair again, watching for a relapse during one window."""
        state = self._state(key)
        state.paused_until = None
        # What is in the file now is the writer's last undo: repair it once more, and count
        # only undos of that new repair (one of them within the window is a relapse).
        state.replaced.clear()
        state.replaced_count.clear()
        state.undos.clear()
        state.relapse_until = now + self.settings.window
        self._remember(key, state, now)

    def paused_until(self, key: str) -> float | None:
        state = self._files.get(key)
        return state.paused_until if state else None

    def forget(self, key: str) -> None:
        self._files.pop(key, None)


def digest(data: bytes) -> bytes:
    """A short fingerprint of a config's content (what the tracker compares)."""
    return hashlib.blake2b(data, digest_size=16).digest()


HubFingerprints = Mapping[str, bytes]
"""A config's non-canonical Docker Hub entries, each as a digest of its JSON: what
:func:`newest_hub_keys` compares. Kept per watched config instead of the parsed config
(10,000 parsed configs cost about 6 MB; these cost nothing for a config without such keys)."""

_NO_HUB_KEYS: HubFingerprints = {}


def hub_fingerprints(config: Mapping[str, Any] | None) -> HubFingerprints | None:
    """Fingerprints of ``config``'s non-canonical Hub entries (None: content unknown)."""
    if not isinstance(config, Mapping):
        return None
    auths = config.get("auths")
    if not isinstance(auths, Mapping):
        return _NO_HUB_KEYS
    found = {}
    for key, entry in auths.items():
        info = classify(key)
        if info.is_hub and info.kind is not KeyKind.HUB_CANONICAL:
            text = json.dumps(entry, sort_keys=True, default=str).encode()
            found[key] = digest(text)
    return found or _NO_HUB_KEYS


def newest_hub_keys(
    previous: HubFingerprints | None, current: Mapping[str, Any]
) -> tuple[str, ...]:
    """Non-canonical Docker Hub keys that this write added or changed: the newest credentials.

    ``previous`` is :func:`hub_fingerprints` of the content before; with none known, nothing
    is known to be newest.
    """
    if previous is None:
        return ()
    now = hub_fingerprints(current) or _NO_HUB_KEYS
    return tuple(key for key, fingerprint in now.items() if previous.get(key) != fingerprint)
