"""Large windows on several threads: the same answers as one thread and as scipy, whatever the
split; errors of any chunk reach the caller; `workers` is read as scipy reads it."""

from __future__ import annotations

import multiprocessing
import os
import threading

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from mlwatchdog.detectors import Reference, ks_2samp
from mlwatchdog.detectors.threads import MIN_VALUES_PER_THREAD, run_chunks, thread_count
from mlwatchdog.errors import InputError


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    reference = rng.normal(size=(20_000, 23))
    current = rng.normal(size=(12_000, 23))
    current[:, :6] += 0.05  # some columns drift
    current[::97, 4] = np.nan  # columns of different lengths after NaN are dropped
    current[:, 9] = np.round(current[:, 9], 1)  # ties with the reference
    reference[:, 9] = np.round(reference[:, 9], 1)
    return reference, current


@pytest.mark.parametrize("workers", [2, 3, 5, -1, None])
def test_every_split_gives_the_single_thread_results(
    data: tuple[np.ndarray, np.ndarray], workers: int | None
) -> None:
    reference, current = data
    ref = Reference(reference, workers=1)
    for test in ("ks", "psi"):
        one = ref.test(current, test, workers=1)
        many = ref.test(current, test, workers=workers)
        np.testing.assert_array_equal(many.statistic, one.statistic)
        np.testing.assert_array_equal(many.pvalue, one.pvalue)
        np.testing.assert_array_equal(many.n_current, one.n_current)
    assert Reference(reference, workers=workers).fingerprint == ref.fingerprint


def test_a_large_window_split_by_default_matches_scipy(data: tuple[np.ndarray, np.ndarray]) -> None:
    reference, current = data
    big = np.tile(current, (1, 1 + 2 * MIN_VALUES_PER_THREAD // current.size))  # >= 2 threads
    assert thread_count(big.size, None) >= min(2, thread_count(0, -1))
    result = ks_2samp(np.tile(reference, (1, big.shape[1] // reference.shape[1])), big)
    for j in range(0, big.shape[1], 11):
        ref_j = reference[:, j % reference.shape[1]]
        cur_j = big[:, j][np.isfinite(big[:, j])]
        expected = stats.ks_2samp(ref_j, cur_j)
        assert result.statistic[j] == expected.statistic
        assert result.pvalue[j] == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-300)


def test_a_frame_is_split_as_an_array_is(data: tuple[np.ndarray, np.ndarray]) -> None:
    reference, current = data
    names = [f"c{j}" for j in range(reference.shape[1])]
    ref = Reference(pd.DataFrame(reference, columns=names))
    one = ref.test(pd.DataFrame(current, columns=names), "ks", workers=1)
    many = ref.test(pd.DataFrame(current, columns=names), "ks", workers=4)
    np.testing.assert_array_equal(many.statistic, one.statistic)


def test_automatic_threads_follow_the_window_size() -> None:
    cpus = thread_count(0, -1)
    assert thread_count(20 * 1_000, None) == 1  # a daemon's usual window stays in its thread
    assert thread_count(2 * MIN_VALUES_PER_THREAD, None) == min(2, cpus)
    assert thread_count(10**9, None) == cpus
    assert thread_count(10**9, 3) == 3


@pytest.mark.parametrize("workers", [0, -2])
def test_a_meaningless_workers_value_is_refused(
    data: tuple[np.ndarray, np.ndarray], workers: int
) -> None:
    reference, current = data
    with pytest.raises(InputError, match=r"workers=.*None \(automatic\), -1 \(every CPU\)"):
        Reference(reference).test(current, "ks", workers=workers)


def test_chunks_cover_the_range_once_and_run_on_other_threads() -> None:
    seen: list[tuple[int, int, str]] = []
    lock = threading.Lock()

    def work(start: int, stop: int) -> None:
        with lock:
            seen.append((start, stop, threading.current_thread().name))

    run_chunks(work, 10, 3)
    spans = sorted((a, b) for a, b, _ in seen)
    assert spans == [(0, 3), (3, 6), (6, 10)]
    assert {name for _, _, name in seen} - {threading.current_thread().name}
    seen.clear()
    run_chunks(work, 2, 8)  # never more chunks than items
    assert sorted((a, b) for a, b, _ in seen) == [(0, 1), (1, 2)]


def test_an_error_in_any_chunk_reaches_the_caller_after_every_chunk_ended() -> None:
    ended: list[int] = []

    def work(start: int, stop: int) -> None:
        if start > 0:
            raise ValueError(f"chunk {start}")
        ended.append(start)

    with pytest.raises(ValueError, match="chunk"):
        run_chunks(work, 9, 3)
    assert ended == [0]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_gets_threads_of_its_own(data: tuple[np.ndarray, np.ndarray]) -> None:
    reference, current = data
    ref = Reference(reference)
    expected = ref.test(current, "ks", workers=1).statistic
    ref.test(current, "ks", workers=2)  # the parent's pool now has its threads
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(1) as pool:  # a child that inherited the pool object, not its threads
        got = pool.apply_async(_ks_on_two_threads, (reference, current)).get(timeout=60)
    np.testing.assert_array_equal(got, expected)


def _ks_on_two_threads(reference: np.ndarray, current: np.ndarray) -> np.ndarray:
    return Reference(reference).test(current, "ks", workers=2).statistic
