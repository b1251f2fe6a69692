"""psi against an independent numpy PSI (quantile binning) and against evidently 0.7 (its binning).

Quantile binning: interior edges at the reference's quantiles i/bins (numpy's default linear
interpolation), de-duplicated; bins (-inf, e0), [e0, e1), ..., [e_last, inf); a bin empty in a
sample counts 0.5/n there. `binning="evidently"` must give evidently's own PSI, both through its
stat test function and through its public Report API.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from mlwatchdog.detectors import psi
from mlwatchdog.detectors.psi import quantile_bins
from mlwatchdog.detectors.sample import NumericColumn
from mlwatchdog.errors import InputError

FloatArray = NDArray[np.float64]

# ---------------------------------------------------------------------- reference formulae


def reference_edges(reference: FloatArray, bins: int) -> tuple[FloatArray, FloatArray]:
    """Unique interior quantile edges i/bins of the finite reference, and the interpolated ones.

    numpy's linear method puts the i/bins quantile at virtual index (n - 1) * i / bins. Where that
    index is a whole number the quantile IS that data point, so it is taken directly (exact integer
    arithmetic, not a float index that can land one ulp past the point). Elsewhere np.quantile's
    value lies strictly between two data points; those are returned too so callers can avoid
    values that sit within rounding of such an edge (there either bin is defensible).
    """
    ref = np.sort(reference[np.isfinite(reference)])
    n = ref.size
    edges: list[float] = []
    interpolated: list[float] = []
    for i in range(1, bins):
        k, rem = divmod((n - 1) * i, bins)
        if rem == 0 or ref[k] == ref[k + 1]:
            edges.append(float(ref[k]))
        else:
            edge = float(np.quantile(ref, i / bins))
            edges.append(edge)
            interpolated.append(edge)
    unique = np.unique(np.array(edges))
    if unique[-1] == ref[-1]:  # values beyond the reference maximum get a bin of their own
        unique = np.append(unique, np.nextafter(ref[-1], np.inf))
    return unique, np.array(interpolated)


def bin_counts(values: FloatArray, edges: FloatArray) -> NDArray[np.int64]:
    """Counts in (-inf, e0), [e0, e1), ..., [e_last, inf)."""
    index = np.searchsorted(edges, values, side="right")  # number of edges <= value
    return np.bincount(index, minlength=edges.size + 1)


def psi_from_counts(ref_counts: Sequence[int], cur_counts: Sequence[int]) -> float:
    """PSI with an empty bin counted as half an observation (0.5 / n) in that sample; bins empty
    in both samples left out."""
    a, b = np.asarray(ref_counts, float), np.asarray(cur_counts, float)
    used = (a > 0) | (b > 0)
    a, b = a[used], b[used]
    p_ref = np.where(a == 0, 0.5 / a.sum(), a / a.sum())
    p_cur = np.where(b == 0, 0.5 / b.sum(), b / b.sum())
    return float(np.sum((p_ref - p_cur) * np.log(p_ref / p_cur)))


def reference_psi(reference: FloatArray, current: FloatArray, bins: int = 10) -> float:
    ref = reference[np.isfinite(reference)]
    cur = current[np.isfinite(current)]
    edges, _ = reference_edges(ref, bins)
    return psi_from_counts(bin_counts(ref, edges), bin_counts(cur, edges))


def near_interpolated_edge(values: FloatArray, reference: FloatArray, bins: int) -> bool:
    _, interpolated = reference_edges(reference, bins)
    if interpolated.size == 0:
        return False
    gap = np.abs(values[:, None] - interpolated[None, :])
    return bool((gap <= 1e-9 * np.maximum(1.0, np.abs(interpolated))).any())


def evidently_psi(reference: Any, current: Any, categorical: bool = False) -> float:
    from evidently.legacy.calculations.stattests.psi import _psi
    from evidently.legacy.core import ColumnType

    kind = ColumnType.Categorical if categorical else ColumnType.Numerical
    return float(_psi(pd.Series(reference), pd.Series(current), kind, 0.1)[0])


# ------------------------------------------------------------------------------ data


@dataclass(frozen=True)
class NumericCase:
    """A reproducible pair of numeric samples (hypothesis prints this, not the arrays)."""

    seed: int
    n1: int
    n2: int
    bins: int
    kind: str
    shift: float

    def build(self) -> tuple[FloatArray, FloatArray]:
        rng = np.random.default_rng(self.seed)
        n1, n2, shift = self.n1, self.n2, self.shift
        if self.kind == "normal":
            return rng.normal(size=n1), rng.normal(shift, 1.0, n2)
        if self.kind == "rounded":
            return np.round(rng.normal(size=n1), 1), np.round(rng.normal(shift, 1.0, n2), 1)
        if self.kind == "integers":
            ref = rng.integers(0, 6, n1).astype(float)
            return ref, rng.integers(0, 6, n2).astype(float) + round(shift)
        ref = np.round(rng.normal(size=n1), 2)
        return ref, rng.choice(ref, n2) + shift


def numeric_cases(quantile_on_data_point: bool | None = None) -> st.SearchStrategy[NumericCase]:
    """Cases; `quantile_on_data_point` picks reference sizes where some (n1 - 1) * i / bins is
    (True) or no such product is (False) a whole number, i.e. where a quantile is a data point."""

    def for_bins(bins: int) -> st.SearchStrategy[NumericCase]:
        n1 = st.integers(2, 400)
        if quantile_on_data_point is True:  # n1 - 1 a multiple of bins' smallest prime factor
            factor = next(f for f in range(2, bins + 1) if bins % f == 0)
            n1 = st.integers(1, 400 // factor).map(lambda m: 1 + factor * m)
        elif quantile_on_data_point is False:  # the next size up with n1 - 1 coprime to bins
            n1 = n1.map(lambda n: next(k for k in range(n, n + bins) if math.gcd(k - 1, bins) == 1))
        return st.builds(
            NumericCase,
            seed=st.integers(0, 2**32 - 1),
            n1=n1,
            n2=st.integers(1, 400),
            bins=st.just(bins),
            kind=st.sampled_from(["normal", "rounded", "integers", "shared"]),
            shift=st.sampled_from([0.0, 0.2, 1.0, 5.0]),
        )

    return st.integers(2, 20).flatmap(for_bins)


# ----------------------------------------------------------------------- quantile binning


def assert_matches_reference(case: NumericCase) -> None:
    ref, cur = case.build()
    assume(not near_interpolated_edge(np.concatenate([ref, cur]), ref, case.bins))
    result = psi(ref, cur, bins=case.bins)
    np.testing.assert_allclose(result.statistic, reference_psi(ref, cur, case.bins), rtol=1e-12)
    assert (result.n_reference, result.n_current) == (ref.size, cur.size)


@settings(max_examples=400, deadline=None)
@given(numeric_cases(quantile_on_data_point=False))
def test_quantile_psi_matches_numpy_reference(case: NumericCase) -> None:
    """Reference sizes where no quantile i/bins falls exactly on a data point."""
    assert_matches_reference(case)


@settings(max_examples=300, deadline=None)
@given(numeric_cases(quantile_on_data_point=True))
def test_quantile_psi_matches_numpy_reference_when_quantiles_hit_data_points(
    case: NumericCase,
) -> None:
    """Reference sizes where (n - 1) * i / bins is a whole number for some i: an edge IS a point."""
    assert_matches_reference(case)


def test_value_at_an_exact_quantile_is_the_edge_itself() -> None:
    """With 1001 values 0..1000 the deciles ARE the data points 100, 200, ..., 900.

    Every edge must be that value, so each of them opens its bin; a float quantile level one ulp
    above 3/10 (np.linspace's 0.30000000000000004) puts the 30% edge one ulp above 300 instead, and
    300 (with all its ties) falls into the bin below.
    """
    reference = np.arange(1001.0)
    edges = quantile_bins(NumericColumn(reference, 0), 10).edges
    assert edges.tolist() == [100.0, 200.0, 300.0, 400.0, 500.0, 600.0, 700.0, 800.0, 900.0]


def test_tie_group_ending_at_an_exact_quantile_stays_in_one_bin() -> None:
    """301 zeros then 1..700 (1001 values): the 30% quantile is the last zero, so the edges are
    0, 100, ..., 600 and the zeros share the bin [0, 100) with 1..99.

    The current keeps the reference's share in every one of those bins (only the mix of zeros
    and 1..99 inside [0, 100) changes), so PSI is ~0. An edge one ulp above zero instead splits
    the zeros into a bin of their own and reports drift.
    """
    reference = np.concatenate([np.zeros(301), np.arange(1.0, 701.0)])
    current = np.concatenate(
        [np.zeros(100), np.tile(np.arange(1.0, 100.0), 3), np.arange(100.0, 701.0)]
    )
    statistic = psi(reference, current).statistic
    np.testing.assert_allclose(statistic, reference_psi(reference, current), rtol=1e-12)
    assert statistic < 0.1


@settings(max_examples=100, deadline=None)
@given(numeric_cases())
def test_identical_samples_give_zero(case: NumericCase) -> None:
    ref, _ = case.build()
    shuffled = np.random.default_rng(case.seed).permutation(ref)
    assert psi(ref, shuffled, bins=case.bins).statistic == 0.0


def test_psi_is_finite_with_empty_bins() -> None:
    rng = np.random.default_rng(1)
    reference = rng.normal(size=1000)
    current = np.full(200, np.median(reference))  # all in one bin: nine empty ones
    result = psi(reference, current).statistic
    assert np.isfinite(result)
    np.testing.assert_allclose(result, reference_psi(reference, current), rtol=1e-12)
    assert result > 1.0


def test_values_beyond_the_reference_range_count_in_the_outer_bins() -> None:
    rng = np.random.default_rng(2)
    reference = rng.normal(size=2000)
    inside = rng.normal(size=500)
    above = rng.normal(size=500) + 10.0  # every value beyond the reference maximum
    below = rng.normal(size=500) - 10.0
    edges, _ = reference_edges(reference, 10)
    ref_counts = bin_counts(reference, edges)
    last_only = [0] * (edges.size) + [500]
    first_only = [500] + [0] * (edges.size)
    np.testing.assert_allclose(
        psi(reference, above).statistic, psi_from_counts(ref_counts, last_only), rtol=1e-12
    )
    np.testing.assert_allclose(
        psi(reference, below).statistic, psi_from_counts(ref_counts, first_only), rtol=1e-12
    )
    assert psi(reference, above).statistic > psi(reference, inside).statistic
    # A partial shift moves mass into the outer bin and raises PSI monotonically.
    shifts = [psi(reference, inside + s).statistic for s in (0.0, 0.5, 1.0, 3.0)]
    assert shifts == sorted(shifts)


def test_constant_equal_columns_give_zero() -> None:
    statistic = psi(np.full(500, 3.0), np.full(500, 3.0)).statistic
    assert statistic == 0.0


def test_constant_equal_columns_of_different_sizes_give_zero() -> None:
    """The same single value on both sides is no drift, whatever the window sizes.

    The bin below the only edge is empty in both samples; counting it as 0.5/n on each side adds
    (0.5/n1 - 0.5/n2) * ln(n2/n1) > 0 for no change in the data.
    """
    statistic = psi(np.full(1000, 3.0), np.full(200, 3.0)).statistic
    assert statistic == 0.0


@pytest.mark.parametrize("current_value", [2.0, 4.0])
def test_constant_but_different_columns_drift(current_value: float) -> None:
    """A column stuck at 3 that moves to 2 or to 4 has drifted, by PSI's default 0.1 or more."""
    statistic = psi(np.full(300, 3.0), np.full(300, current_value)).statistic
    assert statistic >= 0.1


def test_categorical_quantile_psi_uses_the_label_union_and_half_counts() -> None:
    rng = np.random.default_rng(3)
    ref = rng.choice(["a", "b", "c", "d"], 400, p=[0.4, 0.3, 0.2, 0.1])
    cur = rng.choice(["a", "b", "c", "e"], 300, p=[0.1, 0.3, 0.3, 0.3])  # d gone, e new
    labels = sorted(set(ref) | set(cur))
    ref_n, cur_n = Counter(ref.tolist()), Counter(cur.tolist())
    expected = psi_from_counts([ref_n[v] for v in labels], [cur_n[v] for v in labels])
    result = psi(pd.DataFrame({"c": ref}), pd.DataFrame({"c": cur})).statistic
    np.testing.assert_allclose(result, [expected], rtol=1e-12)


def test_columns_axis_nan_and_scalars() -> None:
    rng = np.random.default_rng(4)
    reference = rng.normal(size=(300, 3))
    current = rng.normal(0.3, 1.0, (200, 3))
    reference[:7, 1] = np.nan
    current[:3, 2] = np.inf
    result = psi(reference, current, bins=8)
    expected = [reference_psi(reference[:, j], current[:, j], 8) for j in range(3)]
    np.testing.assert_allclose(result.statistic, expected, rtol=1e-12)
    assert result.n_reference.tolist() == [300, 293, 300]
    assert result.n_current.tolist() == [200, 200, 197]
    np.testing.assert_allclose(psi(reference.T, current.T, bins=8, axis=1).statistic, expected)
    one = psi(reference[:, 0], current[:, 0], bins=8)
    assert np.ndim(one.statistic) == 0
    np.testing.assert_allclose(one.statistic, expected[0], rtol=1e-12)


def test_empty_side_gives_nan() -> None:
    result = psi(np.random.default_rng(5).normal(size=(50, 1)), np.full((10, 1), np.nan))
    assert np.isnan(result.statistic[0])
    assert result.n_current.tolist() == [0]


def test_bad_bins_and_binning_are_rejected() -> None:
    with pytest.raises(InputError, match="bins"):
        psi(np.arange(10.0), np.arange(10.0), bins=1)
    with pytest.raises(InputError, match="binning"):
        psi(np.arange(10.0), np.arange(10.0), binning="equal")  # type: ignore[arg-type]


# ---------------------------------------------------------------------- evidently binning


@dataclass(frozen=True)
class EvidentlyCase:
    """More than 20 distinct reference values (Sturges bins) or at most 20 (one bin per value)."""

    seed: int
    n1: int
    n2: int
    kind: str
    k: int
    shift: float

    def build(self) -> tuple[Any, Any]:
        rng = np.random.default_rng(self.seed)
        n1, n2, k, shift = self.n1, self.n2, self.k, self.shift
        if self.kind == "normal":
            return rng.normal(size=n1), rng.normal(shift, 1.0 + shift, n2)
        if self.kind == "wide_integers":
            return rng.integers(0, 200, n1), rng.integers(0, 200, n2) + int(50 * shift)
        if self.kind == "few_integers":  # the current may have values the reference never had
            return rng.integers(0, k, n1), rng.integers(0, k + 2, n2) + round(shift)
        return rng.integers(0, k, n1) * 0.25, (rng.integers(0, k, n2) + round(shift)) * 0.25


@settings(max_examples=150, deadline=None)
@given(
    st.builds(
        EvidentlyCase,
        seed=st.integers(0, 2**32 - 1),
        n1=st.integers(25, 400),
        n2=st.integers(1, 400),
        kind=st.sampled_from(["normal", "wide_integers", "few_integers", "few_floats"]),
        k=st.integers(1, 20),
        shift=st.sampled_from([0.0, 0.3, 2.0]),
    )
)
def test_evidently_binning_matches_evidently_numeric(case: EvidentlyCase) -> None:
    ref, cur = case.build()
    expected = evidently_psi(ref, cur)
    from_frame = psi(pd.DataFrame({"x": ref}), pd.DataFrame({"x": cur}), binning="evidently")
    np.testing.assert_allclose(from_frame.statistic, [expected], rtol=1e-12)
    from_array = psi(ref, cur, binning="evidently")
    np.testing.assert_allclose(from_array.statistic, expected, rtol=1e-12)


def test_evidently_binning_covers_both_numeric_branches() -> None:
    """The generator above really produces both of evidently's branches."""
    rng = np.random.default_rng(6)
    many, few = rng.normal(size=300), rng.integers(0, 20, 300)
    assert pd.Series(many).nunique() > 20 >= pd.Series(few).nunique()
    for ref in (many, few):
        cur = ref[:150] + 1
        expected = evidently_psi(ref, cur)
        np.testing.assert_allclose(psi(ref, cur, binning="evidently").statistic, expected, 1e-12)


@settings(max_examples=80, deadline=None)
@given(
    st.integers(0, 2**32 - 1),
    st.integers(1, 400),
    st.integers(1, 400),
    st.lists(st.sampled_from(["red", "green", "blue", "cyan", "x", "y z"]), min_size=2),
)
def test_evidently_binning_matches_evidently_categorical(
    seed: int, n1: int, n2: int, pool: list[str]
) -> None:
    rng = np.random.default_rng(seed)
    labels = sorted(set(pool))
    ref = rng.choice(labels, n1).astype(object)
    cur = rng.choice(labels + ["unseen"], n2).astype(object)
    expected = evidently_psi(ref, cur, categorical=True)
    result = psi(pd.DataFrame({"c": ref}), pd.DataFrame({"c": cur}), binning="evidently")
    np.testing.assert_allclose(result.statistic, [expected], rtol=1e-12)


def value_drift_scores(snapshot: Any) -> dict[str, float]:
    """Per-column drift score of a Report result: its ValueDrift metrics, read from the JSON."""
    scores = {}
    for metric in json.loads(snapshot.json())["metrics"]:
        if metric["config"]["type"] == "evidently:metric_v2:ValueDrift":
            scores[metric["config"]["column"]] = float(metric["value"])
    return scores


def test_psi_and_ks_match_evidently_report_api() -> None:
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    from mlwatchdog.detectors import Reference

    rng = np.random.default_rng(7)
    ref = pd.DataFrame(
        {
            "x": rng.normal(size=300),
            "k": rng.integers(0, 6, 300),
            "c": rng.choice(["a", "b", "c"], 300).astype(object),
        }
    )
    cur = pd.DataFrame(
        {
            "x": rng.normal(0.3, 1.2, 200),
            "k": rng.integers(0, 7, 200),
            "c": rng.choice(["a", "b", "c", "d"], 200).astype(object),
        }
    )
    definition = DataDefinition(numerical_columns=["x", "k"], categorical_columns=["c"])

    def scores(num_method: str) -> dict[str, float]:
        report = Report([DataDriftPreset(num_method=num_method, cat_method="psi")])
        snapshot = report.run(
            Dataset.from_pandas(cur, data_definition=definition),
            Dataset.from_pandas(ref, data_definition=definition),
        )
        return value_drift_scores(snapshot)

    reference = Reference(ref)
    psi_scores = scores("psi")
    assert set(psi_scores) == {"x", "k", "c"}
    ours = reference.test(cur, "psi", binning="evidently")
    for column, statistic in zip(ours.columns, ours.statistic, strict=True):
        np.testing.assert_allclose(statistic, psi_scores[column], rtol=1e-12, err_msg=column)

    ks_scores = scores("ks")
    ks = reference.test(cur, "ks")
    assert ks.columns == ("x", "k")
    for column, pvalue in zip(ks.columns, ks.pvalue, strict=True):
        np.testing.assert_allclose(pvalue, ks_scores[column], rtol=1e-9, err_msg=column)
    np.testing.assert_allclose(ks_scores["c"], psi_scores["c"], rtol=1e-12)
