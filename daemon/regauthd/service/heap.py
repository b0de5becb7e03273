"""The daemon's heap after start-up and each replan: long-lived objects out of the cyclic
collector's reach, the C heap's free pages back to the system."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import sys


def settle_heap() -> None:
    """Move what start-up and a replan built (the watch plan, one state per config: about 80,000
    objects at 10,000 configs) out of the cyclic collector's reach. They live as long as the
    plan; left in the youngest generations, each full collection walks them all (115 ms at
    10,000 configs, measured), a pause that lands on whichever repair is running. Unfrozen
    first, so cycles the previous plan left are still collected once."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    trim_malloc()


def trim_malloc() -> None:
    """Give the C heap's free pages back (glibc keeps them, in one arena per thread that ever
    allocated: the start-up pass's repair threads leave theirs behind)."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)  # glibc only: musl has none (AttributeError)


__all__ = ["settle_heap", "trim_malloc"]
