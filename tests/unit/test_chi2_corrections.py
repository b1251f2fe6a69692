"""chi2 / chi2_counts against scipy.stats.chi2_contingency; p-value corrections against scipy."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray
from scipy import stats

from mlwatchdog.detectors import (
    Correction,
    adjust_pvalues,
    benjamini_hochberg,
    chi2,
    chi2_counts,
)
from mlwatchdog.errors import InputError

IntArray = NDArray[np.int64]


def scipy_chi2(
    ref_counts: Sequence[int], cur_counts: Sequence[int], correction: bool = True
) -> tuple[float, float, int]:
    """chi2_contingency on the 2 x K table, leaving out categories absent from both samples."""
    table = np.vstack([ref_counts, cur_counts])
    table = table[:, table.sum(axis=0) > 0]
    res = stats.chi2_contingency(table, correction=correction)
    return float(res.statistic), float(res.pvalue), int(res.dof)


def label_counts(reference: Sequence[Any], current: Sequence[Any]) -> tuple[list[int], list[int]]:
    """Counts of both samples over the union of their (non-missing) labels, compared as text."""
    ref = Counter(str(v) for v in reference if v is not None)
    cur = Counter(str(v) for v in current if v is not None)
    labels = sorted(set(ref) | set(cur))
    return [ref[v] for v in labels], [cur[v] for v in labels]


def assert_chi2_equal(actual: tuple[float, float, int], expected: tuple[float, float, int]) -> None:
    np.testing.assert_allclose(actual[0], expected[0], rtol=1e-12, atol=0)
    np.testing.assert_allclose(actual[1], expected[1], rtol=1e-9, atol=0)
    assert actual[2] == expected[2]


count_tables = st.integers(2, 10).flatmap(
    lambda k: st.tuples(
        st.lists(st.integers(0, 300), min_size=k, max_size=k),
        st.lists(st.integers(0, 300), min_size=k, max_size=k),
    )
)


# ---------------------------------------------------------------------------- chi2_counts


@settings(max_examples=300, deadline=None)
@given(count_tables, st.booleans())
def test_chi2_counts_matches_scipy(table: tuple[list[int], list[int]], correction: bool) -> None:
    ref, cur = table
    assume(sum(ref) > 0 and sum(cur) > 0)
    actual = chi2_counts(np.array(ref), np.array(cur), correction=correction)
    assert_chi2_equal(actual, scipy_chi2(ref, cur, correction))


@pytest.mark.parametrize("correction", [True, False])
def test_two_categories_use_yates_only_when_asked(correction: bool) -> None:
    ref, cur = np.array([30, 10]), np.array([18, 22])
    actual = chi2_counts(ref, cur, correction=correction)
    assert_chi2_equal(actual, scipy_chi2(ref.tolist(), cur.tolist(), correction))
    other = chi2_counts(ref, cur, correction=not correction)
    assert (actual[0] < other[0]) == correction  # Yates shrinks the statistic


def test_yates_correction_never_moves_a_count_past_its_expectation() -> None:
    """Observed within 0.5 of expected: scipy corrects by the distance, not by 0.5."""
    ref, cur = np.array([50, 51]), np.array([50, 50])
    assert_chi2_equal(chi2_counts(ref, cur), scipy_chi2(ref.tolist(), cur.tolist()))
    assert chi2_counts(ref, cur)[0] == 0.0


@pytest.mark.parametrize(("ref", "cur"), [([7], [3]), ([0, 12, 0], [0, 5, 0])])
def test_single_category_gives_zero_one_zero(ref: list[int], cur: list[int]) -> None:
    assert chi2_counts(np.array(ref), np.array(cur)) == (0.0, 1.0, 0)
    assert scipy_chi2(ref, cur) == (0.0, 1.0, 0)


def test_categories_absent_from_both_samples_are_left_out() -> None:
    with_gaps = chi2_counts(np.array([10, 0, 20, 0, 5]), np.array([12, 0, 9, 0, 14]))
    without = chi2_counts(np.array([10, 20, 5]), np.array([12, 9, 14]))
    assert with_gaps == without
    assert with_gaps[2] == 2


def test_empty_sample_gives_nan() -> None:
    statistic, pvalue, _ = chi2_counts(np.array([0, 0, 0]), np.array([4, 5, 6]))
    assert np.isnan(statistic) and np.isnan(pvalue)


def test_counts_over_different_categories_are_rejected() -> None:
    with pytest.raises(InputError, match="categories"):
        chi2_counts(np.array([1, 2, 3]), np.array([1, 2]))


# ---------------------------------------------------------------------------------- chi2


@settings(max_examples=100, deadline=None)
@given(
    st.integers(0, 2**32 - 1),
    st.integers(1, 300),
    st.integers(1, 300),
    st.integers(1, 8),
    st.booleans(),
)
def test_chi2_on_labels_matches_scipy_on_counts(
    seed: int, n1: int, n2: int, k: int, correction: bool
) -> None:
    rng = np.random.default_rng(seed)
    pool = np.array([f"cat{i}" for i in range(k + 2)], dtype=object)
    ref = rng.choice(pool[:k], n1)
    cur = rng.choice(pool[1:], n2)  # one category lost, two possibly new
    result = chi2(ref, cur, correction=correction)
    expected = scipy_chi2(*label_counts(ref, cur), correction=correction)
    assert_chi2_equal((result.statistic, result.pvalue, result.dof), expected)
    assert (result.n_reference, result.n_current) == (n1, n2)


def test_chi2_columns_missing_values_and_scalars() -> None:
    rng = np.random.default_rng(1)
    ref = rng.choice(np.array(["a", "b", "c"], dtype=object), (200, 2))
    cur = rng.choice(np.array(["a", "b", "c", "d"], dtype=object), (150, 2))
    ref[:5, 0] = None
    cur[:9, 1] = np.nan
    result = chi2(ref, cur)
    for j in range(2):
        cur_j = [v for v in cur[:, j] if isinstance(v, str)]
        expected = scipy_chi2(*label_counts(ref[:, j], cur_j))
        assert_chi2_equal((result.statistic[j], result.pvalue[j], result.dof[j]), expected)
    assert result.n_reference.tolist() == [195, 200]
    assert result.n_current.tolist() == [150, 141]
    one = chi2(ref[:, 0], cur[:, 0])
    assert np.ndim(one.statistic) == 0
    assert one.statistic == result.statistic[0]


def test_chi2_integer_labels_match_whole_float_labels() -> None:
    """An int label column that became float because of NaN still has labels 1, 2, 3."""
    rng = np.random.default_rng(2)
    ref = rng.integers(1, 4, 300)
    cur = rng.integers(1, 4, 200).astype(float)
    cur[:10] = np.nan
    result = chi2(ref, cur)
    expected = scipy_chi2(*label_counts(ref.tolist(), cur[10:].astype(int).tolist()))
    assert_chi2_equal((result.statistic, result.pvalue, result.dof), expected)
    assert result.dof == 2  # not six categories "1", "2", "3", "1.0", "2.0", "3.0"
    assert result.n_current == 190


# ---------------------------------------------------------------------------- corrections

pvalue_lists = st.lists(
    st.one_of(
        st.floats(0.0, 1.0, allow_nan=False),
        st.sampled_from([0.0, 1e-12, 0.01, 0.04, 0.05, 0.5, 1.0]),  # ties and boundaries
    ),
    min_size=1,
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(pvalue_lists)
def test_benjamini_hochberg_matches_scipy(pvalues: list[float]) -> None:
    p = np.array(pvalues)
    expected = stats.false_discovery_control(p, method="bh")
    np.testing.assert_allclose(benjamini_hochberg(p), expected, rtol=1e-12, atol=0)
    np.testing.assert_allclose(adjust_pvalues(p, "bh"), expected, rtol=1e-12, atol=0)
    np.testing.assert_allclose(adjust_pvalues(p, Correction.BH), expected, rtol=1e-12, atol=0)


@settings(max_examples=200, deadline=None)
@given(pvalue_lists, st.lists(st.booleans(), min_size=60, max_size=60))
def test_nan_pvalues_are_ignored_and_stay_nan(pvalues: list[float], missing: list[bool]) -> None:
    p = np.array(pvalues)
    p[np.array(missing[: p.size])] = np.nan
    present = ~np.isnan(p)
    m = int(present.sum())
    bh = adjust_pvalues(p, "bh")
    bonferroni = adjust_pvalues(p, "bonferroni")
    none = adjust_pvalues(p, "none")
    for adjusted in (bh, bonferroni, none):
        assert np.isnan(adjusted).tolist() == (~present).tolist()
    if m:
        expected = stats.false_discovery_control(p[present], method="bh")
        np.testing.assert_allclose(bh[present], expected, rtol=1e-12, atol=0)
    np.testing.assert_allclose(bonferroni[present], np.minimum(p[present] * m, 1.0), rtol=1e-15)
    np.testing.assert_array_equal(none, p)


@settings(max_examples=200, deadline=None)
@given(pvalue_lists)
def test_bonferroni_is_p_times_m_capped_at_one(pvalues: list[float]) -> None:
    m = len(pvalues)
    expected = [min(p * m, 1.0) for p in pvalues]
    np.testing.assert_allclose(adjust_pvalues(pvalues, "bonferroni"), expected, rtol=1e-15)


def test_adjusted_pvalues_are_returned_in_input_order() -> None:
    p = np.array([0.04, 0.001, 0.8, 0.03])
    # Ranked: 0.001*4/1 = 0.004, 0.03*4/2 = 0.06, 0.04*4/3 = 0.0533.., 0.8*4/4 = 0.8; then each
    # takes the minimum of itself and everything ranked above it, so 0.03 gets 0.0533.. too.
    np.testing.assert_allclose(
        adjust_pvalues(p, "bh"), [0.16 / 3, 0.004, 0.8, 0.16 / 3], rtol=1e-12
    )


def test_no_correction_returns_a_copy() -> None:
    p = np.array([0.2, np.nan, 0.7])
    out = adjust_pvalues(p, "none")
    out[0] = 1.0
    assert p[0] == 0.2


def test_all_nan_stays_nan() -> None:
    for method in ("bh", "bonferroni", "none"):
        assert np.isnan(adjust_pvalues([np.nan, np.nan], method)).all()
