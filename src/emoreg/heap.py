"""Giving freed memory back to the system.

glibc's allocator keeps freed memory inside the process for reuse; on a long run that interleaves
large short-lived buffers (a forward pass's activations) with small long-lived ones (cached
states), the heap fragments and the process keeps gigabytes it no longer uses (BENCHMARKS.md,
"Memory of one fold"). ``trim()`` asks glibc to return every free page of the heap (``malloc_trim``;
elsewhere it does nothing); ``release()`` first collects unreachable Python objects (a fitted
model in a reference cycle holds its weights until then).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import itertools


@functools.cache
def _malloc_trim():
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to call
        return None


def trim() -> bool:
    """Return the heap's free pages to the system; True where glibc did it."""
    call = _malloc_trim()
    if call is None:
        return False
    call(0)
    return True


def release() -> bool:
    """Collect garbage, then ``trim()``."""
    gc.collect()
    return trim()


def trimmer(every: int):
    """A function to call once per batch of a loop: it trims the heap on every ``every``-th call."""
    calls = itertools.count(1)

    def tick() -> None:
        if next(calls) % every == 0:
            trim()

    return tick
