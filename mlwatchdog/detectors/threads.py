"""Columns in chunks on threads, for windows large enough to gain from more than one core.

numpy's sort and searchsorted release the GIL, so chunks of columns run in parallel on threads of
one process. A small window stays in the calling thread: a hand-off costs more than it saves, and
the daemon already evaluates targets on several threads.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise

from mlwatchdog.errors import InputError

# Values (rows x columns of the current window) each thread gets at least: below about this,
# splitting costs more than it saves (measured with benchmarks/drift_bench.py).
MIN_VALUES_PER_THREAD = 100_000

_pool: ThreadPoolExecutor | None = None
_pool_pid = 0  # the process that made _pool: a forked child has the object but not its threads
_pool_lock = threading.Lock()


def cpu_count() -> int:
    """CPUs this process may run on (its affinity, as a container's cpuset limits it)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def thread_count(values: int, workers: int | None) -> int:
    """Threads for a job of `values` values: `workers` as scipy reads it (-1 every CPU, n that
    many), or None for one thread per MIN_VALUES_PER_THREAD values, at most one per CPU."""
    if workers is None:
        return max(1, min(cpu_count(), values // MIN_VALUES_PER_THREAD))
    if workers == -1:
        return cpu_count()
    if workers < 1:
        raise InputError(f"workers={workers}: use None (automatic), -1 (every CPU) or 1 or more.")
    return workers


def run_chunks(work: Callable[[int, int], None], n: int, threads: int) -> None:
    """`work(start, stop)` over [0, n) in `threads` contiguous chunks; the calling thread takes
    the first, and any exception of any chunk is raised here."""
    threads = min(threads, n)
    if threads <= 1:
        work(0, n)
        return
    chunks = list(pairwise(n * i // threads for i in range(threads + 1)))
    pool = _shared_pool()
    futures = [pool.submit(work, start, stop) for start, stop in chunks[1:]]
    try:
        work(*chunks[0])
    finally:
        errors = [f.exception() for f in futures]  # waits for every chunk, even after an error
    for error in errors:
        if error is not None:
            raise error


def _shared_pool() -> ThreadPoolExecutor:
    # One pool for the process, made on first use: threads are not started for small windows.
    global _pool, _pool_pid
    with _pool_lock:
        if _pool is None or _pool_pid != os.getpid():
            _pool = ThreadPoolExecutor(cpu_count(), thread_name_prefix="mlwatchdog-columns")
            _pool_pid = os.getpid()
        return _pool
