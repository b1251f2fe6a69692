"""Freed memory handed back to the system, on a timer (`Daemon.start`, job `:release-memory`).

glibc's malloc keeps what the process frees inside its heaps: a window's arrays, a parsed
file's buffers, freed amid long-lived objects (states, metrics, cached files), stay in the
process's RSS as free chunks that only `malloc_trim` returns (measured: about a third of the
daemon's RSS at 240 targets, benchmarks/README.md, "2,000 targets: memory"). pyarrow's memory
pool keeps freed blocks of its own. Neither changes what the process holds or computes.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable

import pyarrow as pa  # type: ignore[import-untyped]

RELEASE_EVERY = 15  # seconds: a trim takes ~20 ms at 300 MB of heap, and holds malloc's locks


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's `malloc_trim`, or None where the C library has none (musl, macOS)."""
    try:
        trim: Callable[[int], int] = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


_TRIM = _malloc_trim()


def release_freed_memory() -> None:
    """Return the free pages of every malloc arena and pyarrow's unused blocks to the system."""
    if _TRIM is not None:
        _TRIM(0)
    pa.default_memory_pool().release_unused()
