"""ks_2samp against scipy.stats.ks_2samp, column by column, in both of scipy's p-value regimes.

The statistic must be bit-identical to scipy's; the p-value equal to 1e-9 relative. Samples are
drawn from continuous floats and from rounded or small-integer data (ties within and between the
samples), at sizes around scipy's exact/asymptotic switch (max(n1, n2) <= 10000 is exact).
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray
from scipy import stats

from mlwatchdog.detectors import ks as ks_module
from mlwatchdog.detectors import ks_2samp
from mlwatchdog.detectors.ks import ks_may_be_below, kstwo_sf
from mlwatchdog.detectors.sample import NumericColumn, Sample
from mlwatchdog.errors import InputError

FloatArray = NDArray[np.float64]
Pair = tuple[FloatArray, FloatArray]

KINDS = ("normal", "rounded", "integers", "shared")
SHIFTS = (0.0, 0.05, 0.3, 2.0)


def scipy_per_column(
    reference: FloatArray, current: FloatArray, method: str = "auto"
) -> tuple[FloatArray, FloatArray, NDArray[np.bool_]]:
    """scipy.stats.ks_2samp on each column's finite values (NaN where a side is empty), and
    whether scipy's p-value is exact (it warns when it has to switch to the asymptotic one)."""
    statistic = np.full(reference.shape[1], np.nan)
    pvalue = np.full(reference.shape[1], np.nan)
    exact = np.zeros(reference.shape[1], dtype=bool)
    for j in range(reference.shape[1]):
        ref = reference[:, j][np.isfinite(reference[:, j])]
        cur = current[:, j][np.isfinite(current[:, j])]
        if ref.size == 0 or cur.size == 0:
            continue
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", RuntimeWarning)
            res = stats.ks_2samp(ref, cur, method=method)
        statistic[j], pvalue[j] = float(res.statistic), float(res.pvalue)
        switched = any("Switching to" in str(w.message) for w in caught)
        wanted = method == "exact" or (method == "auto" and max(ref.size, cur.size) <= 10_000)
        exact[j] = wanted and not switched
    return statistic, pvalue, exact


def assert_matches_scipy(reference: FloatArray, current: FloatArray, method: str = "auto") -> Any:
    result = ks_2samp(reference, current, method=method)  # type: ignore[arg-type]
    statistic, pvalue, exact = scipy_per_column(reference, current, method)
    # Bitwise: the very floats scipy compares and (in the exact regime) snaps.
    np.testing.assert_array_equal(result.statistic, statistic, strict=True)
    np.testing.assert_allclose(result.pvalue, pvalue, rtol=1e-9, atol=0)
    np.testing.assert_array_equal(result.exact, exact)
    return result


def draw_block(rng: np.random.Generator, n: int, n_columns: int, kind: str, shift: float) -> Any:
    """n x n_columns samples of one kind; 'rounded' and 'integers' make ties."""
    if kind == "normal":
        return rng.normal(shift, 1.0, (n, n_columns))
    if kind == "rounded":
        return np.round(rng.normal(shift, 1.0, (n, n_columns)), 1)
    if kind == "integers":
        return (rng.integers(0, 5, (n, n_columns)) + round(shift)).astype(np.float64)
    raise AssertionError(kind)


def draw_pair(
    rng: np.random.Generator, n1: int, n2: int, n_columns: int, kind: str, shift: float
) -> Pair:
    """Reference and current blocks; kind 'shared' draws current values from the reference's."""
    if kind == "shared":
        reference = np.round(rng.normal(0.0, 1.0, (n1, n_columns)), 2)
        current = np.column_stack(
            [rng.choice(reference[:, j], n2) + shift for j in range(n_columns)]
        )
        return reference, current
    return draw_block(rng, n1, n_columns, kind, 0.0), draw_block(rng, n2, n_columns, kind, shift)


@st.composite
def ks_pairs(draw: st.DrawFn, n_min: int, n_max: int, max_columns: int = 3) -> Pair:
    seed = draw(st.integers(0, 2**32 - 1))
    n1 = draw(st.integers(n_min, n_max))
    n2 = draw(st.integers(n_min, n_max))
    n_columns = draw(st.integers(1, max_columns))
    kind = draw(st.sampled_from(KINDS))
    shift = draw(st.sampled_from(SHIFTS))
    return draw_pair(np.random.default_rng(seed), n1, n2, n_columns, kind, shift)


@st.composite
def asymptotic_pairs(draw: st.DrawFn) -> Pair:
    """At least one side just above scipy's 10000 limit, the other anywhere from tiny to large."""
    seed = draw(st.integers(0, 2**32 - 1))
    big = draw(st.integers(10_001, 10_400))
    other = draw(st.one_of(st.integers(1, 50), st.integers(500, 12_000)))
    n1, n2 = (big, other) if draw(st.booleans()) else (other, big)
    kind = draw(st.sampled_from(KINDS))
    shift = draw(st.sampled_from(SHIFTS))
    return draw_pair(np.random.default_rng(seed), n1, n2, 2, kind, shift)


# ---------------------------------------------------------------------------- exact regime


@settings(max_examples=300, deadline=None)
@given(ks_pairs(1, 40, max_columns=4))
def test_small_samples_match_scipy_exact_regime(pair: Pair) -> None:
    assert_matches_scipy(*pair)


@settings(max_examples=60, deadline=None)
@given(ks_pairs(40, 3000))
def test_medium_samples_match_scipy_exact_regime(pair: Pair) -> None:
    assert_matches_scipy(*pair)


def test_every_tiny_sample_over_three_values_matches_scipy() -> None:
    """Every reference and current of 1 to 3 values from {0, 1, 2}: all tie patterns at once.

    Shorter samples are NaN-padded to 3 rows, so this also runs one call over 1521 columns with
    different sizes per column.
    """
    samples = [s for n in (1, 2, 3) for s in itertools.product((0.0, 1.0, 2.0), repeat=n)]
    pairs = list(itertools.product(samples, samples))
    reference = np.full((3, len(pairs)), np.nan)
    current = np.full((3, len(pairs)), np.nan)
    for j, (ref, cur) in enumerate(pairs):
        reference[: len(ref), j] = ref
        current[: len(cur), j] = cur
    result = assert_matches_scipy(reference, current)
    assert result.n_reference.tolist() == [len(ref) for ref, _ in pairs]
    assert result.n_current.tolist() == [len(cur) for _, cur in pairs]


def test_current_made_of_reference_values_matches_scipy() -> None:
    rng = np.random.default_rng(20240611)
    reference = np.round(rng.normal(size=(400, 3)), 1)
    # Each current column reuses the reference column's own values (ties across the samples),
    # once unshifted, once a little shifted and once a subset of the lower half.
    current = np.column_stack(
        [
            rng.choice(reference[:, 0], 300),
            rng.choice(reference[:, 1], 300) + 0.1,
            rng.choice(np.sort(reference[:, 2])[:200], 300),
        ]
    )
    # Unequal sizes per column through NaN padding.
    current[250:, 1] = np.nan
    current[100:, 2] = np.nan
    assert_matches_scipy(reference, current)


# ----------------------------------------------------------------------- asymptotic regime


@settings(max_examples=12, deadline=None)
@given(asymptotic_pairs())
def test_large_samples_match_scipy_asymptotic_regime(pair: Pair) -> None:
    result = assert_matches_scipy(*pair)
    assert not result.exact.any()


@pytest.mark.parametrize(
    ("n1", "n2", "exact"),
    [(10_000, 10_000, True), (10_000, 7, True), (10_001, 10_000, False), (3, 10_001, False)],
)
def test_regime_switches_where_scipy_switches(n1: int, n2: int, exact: bool) -> None:
    rng = np.random.default_rng(n1 * 31 + n2)
    reference = np.round(rng.normal(size=n1), 2)
    current = np.round(rng.normal(0.02, 1.0, n2), 2)
    result = assert_matches_scipy(reference[:, None], current[:, None])
    assert result.exact.tolist() == [exact]


def test_regime_is_chosen_per_column_from_its_usable_values() -> None:
    """10050 rows, but column 1 loses 100 to NaN: it is exact, column 0 asymptotic, like scipy."""
    rng = np.random.default_rng(7)
    reference = np.round(rng.normal(size=(10_050, 2)), 2)
    current = np.round(rng.normal(0.03, 1.0, (800, 2)), 2)
    reference[::100, 1] = np.nan
    result = assert_matches_scipy(reference, current)
    assert result.n_reference.tolist() == [10_050, 9_949]
    assert result.exact.tolist() == [False, True]


# --------------------------------------------------------------------------- forced methods


# n1 = n2 = 1 gives scipy's kstwo n = round(0.5) = 0, which divides by zero inside scipy.
@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")
@settings(max_examples=80, deadline=None)
@given(ks_pairs(1, 400), st.sampled_from(["exact", "asymp"]))
def test_forced_method_matches_scipy(pair: Pair, method: str) -> None:
    result = assert_matches_scipy(*pair, method=method)
    if method == "asymp":
        assert not result.exact.any()


def test_forced_exact_above_the_auto_limit_matches_scipy() -> None:
    rng = np.random.default_rng(11)
    reference = rng.normal(size=(10_200, 1))
    current = rng.normal(0.05, 1.0, (10_150, 1))
    result = assert_matches_scipy(reference, current, method="exact")
    assert result.exact.tolist() == [True]


def test_forced_exact_with_too_large_lcm_falls_back_to_asymp_like_scipy() -> None:
    """lcm(50000, 49999) exceeds int32: scipy warns and uses the asymptotic p-value."""
    rng = np.random.default_rng(12)
    reference = rng.normal(size=(50_000, 1))
    current = rng.normal(0.02, 1.0, (49_999, 1))
    with pytest.warns(RuntimeWarning, match="Exact ks_2samp calculation not possible"):
        expected = stats.ks_2samp(reference[:, 0], current[:, 0], method="exact")
    result = assert_matches_scipy(reference, current, method="exact")
    assert result.exact.tolist() == [False]
    np.testing.assert_allclose(result.pvalue[0], expected.pvalue, rtol=1e-9)


# ------------------------------------------------------------------- cleaning and shapes


def test_nan_and_inf_are_dropped_per_column() -> None:
    rng = np.random.default_rng(3)
    reference = rng.normal(size=(200, 3))
    current = rng.normal(0.2, 1.0, (150, 3))
    reference[[0, 5, 9], 0] = [np.nan, np.inf, -np.inf]
    current[[1, 2], 2] = np.nan
    result = assert_matches_scipy(reference, current)
    assert result.n_reference.tolist() == [197, 200, 200]
    assert result.n_current.tolist() == [150, 150, 148]


def test_empty_column_gives_nan_not_an_exception() -> None:
    rng = np.random.default_rng(4)
    reference = rng.normal(size=(50, 2))
    current = rng.normal(size=(40, 2))
    current[:, 1] = np.nan
    result = ks_2samp(reference, current)
    assert np.isfinite(result.statistic[0]) and np.isfinite(result.pvalue[0])
    assert np.isnan(result.statistic[1]) and np.isnan(result.pvalue[1])
    assert result.n_current.tolist() == [40, 0]
    assert result.exact.tolist() == [True, False]


def test_one_dimensional_input_gives_scalars() -> None:
    rng = np.random.default_rng(5)
    reference, current = rng.normal(size=120), rng.normal(0.4, 1.0, 90)
    result = ks_2samp(reference, current)
    expected = stats.ks_2samp(reference, current)
    for value in (result.statistic, result.pvalue, result.n_reference, result.exact):
        assert np.ndim(value) == 0
    assert result.statistic == expected.statistic
    np.testing.assert_allclose(result.pvalue, expected.pvalue, rtol=1e-9)
    assert (result.n_reference, result.n_current) == (120, 90)


def test_axis_one_takes_samples_along_rows() -> None:
    rng = np.random.default_rng(6)
    reference = np.round(rng.normal(size=(300, 4)), 1)
    current = np.round(rng.normal(0.1, 1.0, (200, 4)), 1)
    by_rows = ks_2samp(reference.T, current.T, axis=1)
    statistic, pvalue, _ = scipy_per_column(reference, current)
    assert by_rows.statistic.tolist() == statistic.tolist()
    np.testing.assert_allclose(by_rows.pvalue, pvalue, rtol=1e-9)


def test_integer_input_matches_scipy() -> None:
    rng = np.random.default_rng(8)
    reference = rng.integers(0, 10, (500, 2))
    current = rng.integers(1, 11, (300, 2))
    assert_matches_scipy(reference.astype(np.float64), current.astype(np.float64))
    as_ints = ks_2samp(reference, current)
    statistic, _, _ = scipy_per_column(reference.astype(np.float64), current.astype(np.float64))
    assert as_ints.statistic.tolist() == statistic.tolist()


def test_identical_samples_have_statistic_zero_and_pvalue_one() -> None:
    values = np.random.default_rng(9).normal(size=(80, 2))
    result = ks_2samp(values, values.copy())
    assert result.statistic.tolist() == [0.0, 0.0]
    assert result.pvalue.tolist() == [1.0, 1.0]


def test_disjoint_samples_have_statistic_one() -> None:
    result = assert_matches_scipy(np.arange(50.0)[:, None], np.arange(100.0, 140.0)[:, None])
    assert result.statistic.tolist() == [1.0]
    assert result.pvalue[0] < 1e-20


def test_columns_of_different_counts_are_rejected() -> None:
    with pytest.raises(InputError, match="column"):
        ks_2samp(np.zeros((10, 3)), np.zeros((10, 2)))


def test_categorical_input_is_rejected() -> None:
    with pytest.raises(InputError, match="numeric"):
        ks_2samp(np.array(["a", "b"] * 10), np.array(["a"] * 10))


def test_unknown_method_is_rejected() -> None:
    with pytest.raises(InputError, match="method"):
        ks_2samp(np.zeros(10), np.zeros(10), method="bogus")  # type: ignore[arg-type]


# ------------------------------------------------------------- fallback without the kernel


def columns_of(block: FloatArray) -> list[NumericColumn]:
    return [c for c in Sample.from_data(block).columns if isinstance(c, NumericColumn)]


@st.composite
def gappy_pairs(draw: st.DrawFn) -> Pair:
    """Pairs of 1-300 values (n1 < n2, n1 > n2, n1 == n2, shared divisors), and up to a third
    of each current column dropped (NaN) at random, so one call holds columns of other sizes."""
    reference, current = draw(ks_pairs(1, 300, max_columns=5))
    if draw(st.booleans()):  # equal sizes, or one a multiple of the other
        n = reference.shape[0] * draw(st.sampled_from([1, 2, 3]))
        current = np.resize(current, (n, current.shape[1])) + 0.0
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    gaps = rng.random(current.shape) < rng.uniform(0.0, 0.33, current.shape[1])
    return reference, np.where(gaps, np.nan, current)


@settings(max_examples=200, deadline=None)
@given(gappy_pairs())
def test_exact_pvalues_of_columns_of_other_sizes_in_one_call_are_scipys_bit_for_bit(
    pair: Pair,
) -> None:
    reference, current = pair
    result = ks_2samp(reference, current)
    statistic, pvalue, exact = scipy_per_column(reference, current)
    np.testing.assert_array_equal(result.exact, exact)  # all but empty columns, at these sizes
    np.testing.assert_array_equal(result.pvalue, pvalue, strict=True)
    np.testing.assert_array_equal(result.statistic, statistic, strict=True)


@settings(max_examples=200, deadline=None)
@given(gappy_pairs(), st.sampled_from([1e-30, 1e-6, 1e-3, 0.01, 0.05, 0.5, 0.99]))
def test_the_screen_says_exactly_which_pvalues_scipy_puts_below_the_threshold(
    pair: Pair, threshold: float
) -> None:
    """`ks_may_be_below` computes few exact p-values, yet its answer is scipy's own comparison,
    down to tiny p-values and thresholds."""
    reference, current = pair
    _, pvalue, _ = scipy_per_column(reference, current)
    below = ks_may_be_below(columns_of(reference), columns_of(current), threshold)
    np.testing.assert_array_equal(below, pvalue < threshold)


def test_the_screen_computes_one_exact_pvalue_per_sizes_on_stationary_columns(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """20 columns of one window: only the largest D's p-value when it is above the threshold;
    with 3 columns shifted, theirs too (they are below), then one above settles the rest."""
    monkeypatch.setattr(ks_module, "EXACT_CACHE", ks_module._ExactCache(1_000))  # empty
    computed: list[float] = []
    kernel = ks_module._EXACT_KERNEL
    assert kernel is not None

    def counting(n1: int, n2: int, g: int, d: float, alternative: str) -> Any:
        computed.append(d)
        return kernel(n1, n2, g, d, alternative)

    monkeypatch.setattr(ks_module, "_EXACT_KERNEL", counting)
    rng = np.random.default_rng(16)
    reference = columns_of(rng.normal(size=(2_000, 20)))
    block = rng.normal(size=(300, 20))
    assert not ks_may_be_below(reference, columns_of(block), 0.001).any()
    assert len(computed) == 1
    block[:, [3, 7, 11]] += 1.0
    ks_module.EXACT_CACHE.clear()
    computed.clear()
    below = ks_may_be_below(reference, columns_of(block), 0.001)
    assert np.flatnonzero(below).tolist() == [3, 7, 11]
    assert len(computed) == 4


def test_installed_scipy_provides_the_exact_kernel() -> None:
    assert ks_module._EXACT_KERNEL is not None


def without_kernel(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Drop the private kernel as a scipy release might; count calls to public ks_2samp."""
    calls: list[int] = []
    public: Callable[..., Any] = stats.ks_2samp

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return public(*args, **kwargs)

    monkeypatch.setattr(ks_module, "_EXACT_KERNEL", None)
    monkeypatch.setattr(ks_module, "EXACT_CACHE", ks_module._ExactCache(1_000))  # empty
    monkeypatch.setattr(stats, "ks_2samp", spy)
    return calls


def test_exact_results_kept_across_calls_are_scipys(monkeypatch: pytest.MonkeyPatch) -> None:
    """The exact p-values are kept across calls (the daemon tests the same sizes all day): a
    second test of other windows of the same sizes finds some of them kept, and every p-value,
    kept or computed, is scipy's own; a full cache forgets the least recently used."""
    cache = ks_module._ExactCache(50)
    monkeypatch.setattr(ks_module, "EXACT_CACHE", cache)
    computed: list[tuple[int, int, float]] = []
    kernel = ks_module._EXACT_KERNEL
    assert kernel is not None

    def counting(n1: int, n2: int, g: int, d: float, alternative: str) -> Any:
        computed.append((n1, n2, d))
        return kernel(n1, n2, g, d, alternative)

    monkeypatch.setattr(ks_module, "_EXACT_KERNEL", counting)
    rng = np.random.default_rng(16)
    reference = rng.normal(size=(2_000, 1))
    for _ in range(40):  # 40 windows of 300 rows: D takes few values, so keys come back
        current = rng.normal(0.1, 1.0, size=(300, 1))
        result = ks_2samp(reference, current)
        expected = stats.ks_2samp(reference[:, 0], current[:, 0], method="exact")
        assert result.pvalue[0] == expected.pvalue and result.statistic[0] == expected.statistic
    assert len(computed) < 40  # some came from the cache
    assert len(cache._results) <= 50


def test_fallback_without_private_kernel_gives_identical_results(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = np.random.default_rng(10)
    cases = [
        draw_pair(rng, 300, 200, 3, "rounded", 0.05),
        draw_pair(rng, 57, 91, 2, "integers", 0.0),
        draw_pair(rng, 3, 2, 2, "integers", 2.0),
        draw_pair(rng, 400, 400, 2, "shared", 0.3),
        draw_pair(rng, 10_001, 30, 1, "normal", 0.0),  # asymptotic: no exact call at all
    ]
    with_kernel = [ks_2samp(ref, cur) for ref, cur in cases]
    calls = without_kernel(monkeypatch)
    without = [ks_2samp(ref, cur) for ref, cur in cases]

    assert calls, "the fallback must go through public scipy.stats.ks_2samp"
    for a, b in zip(with_kernel, without, strict=True):
        assert a.statistic.tolist() == b.statistic.tolist()
        assert a.pvalue.tolist() == b.pvalue.tolist()
        assert a.exact.tolist() == b.exact.tolist()


def test_fallback_reports_when_scipy_switched_to_asymp(monkeypatch: pytest.MonkeyPatch) -> None:
    """Equal sizes and a small D: scipy's exact probability rounds above 1, so scipy switches to
    the asymptotic p-value. The kernel path reports exact=False; the fallback must too."""
    reference = np.array([[0.13], [-0.13], [0.64], [0.1], [-0.54]])
    current = np.array([[0.1], [-0.54], [0.64], [0.1], [-0.54]])
    with_kernel = assert_matches_scipy(reference, current)
    assert with_kernel.exact.tolist() == [False]
    without_kernel(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        fallback = ks_2samp(reference, current)
    assert fallback.statistic.tolist() == with_kernel.statistic.tolist()
    assert fallback.pvalue.tolist() == with_kernel.pvalue.tolist()
    assert fallback.exact.tolist() == [False]


def test_kstwo_sf_equals_scipy_across_its_branches() -> None:
    """The asymptotic p-value: numpy's Smirnov sum where scipy uses 2 * smirnov(n, d) (drifted
    columns of large samples), scipy itself elsewhere; equal to scipy.stats.kstwo.sf to 1e-9."""
    rng = np.random.default_rng(42)
    # scipy's kstwo.sf takes ~0.2 s per value at n = 400,000: the largest n get fewer points.
    sizes = [141.0, 500.0, 4545.0, 9091.0, 50_000.0, 200_000.0, 400_000.0]
    n = rng.choice(sizes, 600, p=[0.24, 0.24, 0.24, 0.16, 0.06, 0.03, 0.03])
    nd2 = np.concatenate([rng.uniform(0.0, 3.0, 200), rng.uniform(2.2, 400.0, 400)])
    d = np.sqrt(nd2 / n)
    d[:20] = rng.uniform(0.5, 0.99, 20)  # scipy's d >= 0.5 branch
    expected = stats.kstwo.sf(d, n)
    got = kstwo_sf(d, n)
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=0)
    assert (got[nd2 > 2.2] < 0.03).all() and (got == 0.0).any()
