"""The three-way merge of racing writes: our save and another program's, from the same base.

Pure. :mod:`regauthd.dockerconfig.file` detects the race (it hands back the file our save
displaced); :mod:`regauthd.dockerconfig.fixer` and :mod:`regauthd.dockerconfig.races` merge with
this and save again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from regauthd.dockerconfig.jsontext import parse, render

if TYPE_CHECKING:
    from pathlib import Path

_ABSENT: Any = object()


def merge_three_way(
    base: dict[str, Any], mine: dict[str, Any], theirs: dict[str, Any]
) -> dict[str, Any]:
    """Merge two descendants of ``base`` key by key (``auths``/``credHelpers`` entry by entry).

    A key changed on one side only takes that side's value; changed on both, ``theirs`` (the
    later writer) wins. Used when our write briefly displaced another program's.
    """
    out: dict[str, Any] = {}
    for key in [*theirs, *(k for k in mine if k not in theirs)]:
        b, m, t = base.get(key, _ABSENT), mine.get(key, _ABSENT), theirs.get(key, _ABSENT)
        if key in ("auths", "credHelpers") and all(
            isinstance(v, dict) or v is _ABSENT for v in (b, m, t)
        ):
            merged = merge_three_way(
                {} if b is _ABSENT else b, {} if m is _ABSENT else m, {} if t is _ABSENT else t
            )
            if merged or _ABSENT not in (m, t):
                out[key] = merged
            continue
        value = t if m == b else m if t == b else t
        if value is not _ABSENT:
            out[key] = value
    return out


def merge_config_bytes(base: bytes, mine: bytes, theirs: bytes, path: Path | str) -> bytes:
    """:func:`merge_three_way` over config bytes, rendered in the style of ``theirs``.

    Raises :class:`regauthd.dockerconfig.jsontext.ConfigFileError` when any of them is not a
    config (the caller then keeps ``theirs`` as it is).
    """
    merged = merge_three_way(parse(base, path), parse(mine, path), parse(theirs, path))
    return render(merged, like=theirs)
