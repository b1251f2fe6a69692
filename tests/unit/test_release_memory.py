"""The daemon's timer hands freed memory back to the system (`daemon.memory`)."""

from __future__ import annotations

import platform

import psutil
import pytest

from mlwatchdog.daemon.memory import release_freed_memory


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_memory_freed_amid_kept_memory_leaves_the_process_rss() -> None:
    """96 MB freed between small blocks still in use (as a window's arrays are freed amid the
    states and caches that stay) stay in the RSS until released: then most of it leaves."""
    kept, freed = [], []
    for _ in range(2_000):
        freed.append(bytearray(48_000))  # below malloc's mmap threshold: in its heap
        kept.append(bytearray(600))  # above Python's small-object allocator: malloc's too
    freed.clear()
    before = psutil.Process().memory_info().rss
    release_freed_memory()
    after = psutil.Process().memory_info().rss
    assert before - after > 64 * 2**20, (before - after) / 2**20
    assert len(kept) == 2_000
