"""Population Stability Index for numeric and categorical columns, with two binning policies.

`binning="quantile"` (the default): bins are the reference's quantiles, fixed per reference so a
`Reference` computes them once; outer bins are open, so values beyond the reference range count.
Empty bins: a bin with no values in one sample counts as half an observation there (0.5 / n), the
usual continuity correction. PSI stays finite, and an empty bin never weighs more than one value.
A bin empty in both samples is left out. Categories use the same policy over the label union.

`binning="evidently"`: evidently 0.7's PSI exactly: Sturges equal-width bins over the combined
sample for numeric columns with more than 20 distinct reference values, one bin per value
otherwise (and for categories), and its zero-proportion replacement.

PSI = sum((p_ref - p_cur) * ln(p_ref / p_cur)); it has no p-value. Called by `Reference.test`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from mlwatchdog.detectors.sample import (
    CategoricalColumn,
    Column,
    FloatArray,
    IntArray,
    NumericColumn,
    Sample,
)
from mlwatchdog.errors import InputError

Binning = Literal["quantile", "evidently"]

# evidently bins numeric columns by value (not by width) up to this many distinct reference values.
EVIDENTLY_MAX_VALUE_BINS = 20


@dataclass(frozen=True, eq=False)
class QuantileBins:
    """A reference column's interior bin edges (its quantiles) and its counts in those bins."""

    edges: FloatArray
    counts: IntArray


@dataclass(frozen=True, eq=False)
class PSIResult:
    """Per-column PSI: arrays of shape (n_columns,), scalars for 1-D input; NaN if a side is empty.

    Keeps only what a user reads: the statistic and the sizes used.
    """

    statistic: Any
    n_reference: Any
    n_current: Any


def psi(
    reference: Any,
    current: Any,
    bins: int = 10,
    binning: Binning = "quantile",
    axis: int = 0,
) -> PSIResult:
    """PSI of each column of `current` against `reference` (arrays or DataFrames).

    `bins` is the number of quantile bins; `binning="evidently"` picks its own and ignores it.
    """
    ref = Sample.from_data(reference, axis=axis)
    cur = Sample.from_data(current, names=ref.names, kinds=ref.kinds, axis=axis)
    quantiles = [
        quantile_bins(c, bins) if isinstance(c, NumericColumn) and binning == "quantile" else None
        for c in ref.columns
    ]
    stat = psi_columns(ref.columns, cur.columns, quantiles, binning)
    n_ref = np.array([c.n for c in ref.columns], dtype=np.int64)
    n_cur = np.array([c.n for c in cur.columns], dtype=np.int64)
    if np.ndim(reference) == 1:
        return PSIResult(stat[0], n_ref[0], n_cur[0])
    return PSIResult(stat, n_ref, n_cur)


def psi_columns(
    reference: Sequence[Column],
    current: Sequence[Column],
    quantiles: Sequence[QuantileBins | None],
    binning: Binning,
) -> FloatArray:
    """PSI per column pair; `quantiles[j]` are column j's reference bins (numeric, quantile)."""
    if binning not in ("quantile", "evidently"):
        raise InputError(f"unknown PSI binning {binning!r}; use 'quantile' or 'evidently'.")
    out = np.full(len(reference), np.nan)
    for j, (ref, cur, qbins) in enumerate(zip(reference, current, quantiles, strict=True)):
        if ref.n == 0 or cur.n == 0:
            continue
        if isinstance(ref, CategoricalColumn) and isinstance(cur, CategoricalColumn):
            ref_counts, cur_counts = aligned_counts(ref, cur)
            out[j] = _psi_from_counts(ref_counts, cur_counts, binning)
        elif isinstance(ref, NumericColumn) and isinstance(cur, NumericColumn):
            if binning == "evidently":
                out[j] = _psi_evidently_numeric(ref, cur)
            else:
                assert qbins is not None, "quantile binning needs the reference's bins"
                counts = bin_counts(cur.values, qbins.edges)
                out[j] = _psi_from_counts(qbins.counts, counts, binning)
        else:
            raise InputError(f"column {j}: reference and current kinds differ.")
    return out


def quantile_bins(column: NumericColumn, bins: int) -> QuantileBins:
    """Interior edges at the reference's quantiles 1/bins .. (bins-1)/bins, duplicates merged.

    A quantile that falls on a data point (numpy's linear method: virtual index (n-1)*i/bins is a
    whole number) is that point exactly, not a float one ulp away, so a tie group is never split.
    When the last edge is the reference maximum, one more edge just above it keeps values beyond
    the reference range out of the bin that holds the maximum (a constant column that moves up
    must show as drift, as one that moves down does).
    """
    if bins < 2:
        raise InputError(f"PSI needs at least 2 bins, got bins={bins}.")
    values = column.values
    n = column.n
    if n == 0:
        return QuantileBins(np.empty(0), np.zeros(1, dtype=np.int64))
    levels = np.arange(1, bins)
    index, remainder = np.divmod((n - 1) * levels, bins)
    upper = np.minimum(index + 1, n - 1)
    on_point = (remainder == 0) | (values[index] == values[upper])
    interpolated = np.quantile(values, levels / bins)
    edges = np.unique(np.where(on_point, values[index], interpolated))
    if edges[-1] == values[-1]:
        edges = np.append(edges, np.nextafter(values[-1], np.inf))
    return QuantileBins(edges, bin_counts(values, edges))


def bin_counts(sorted_values: FloatArray, edges: FloatArray) -> IntArray:
    """Counts in (-inf, e0), [e0, e1), ..., [e_last, inf) of ascending `sorted_values`."""
    cuts = np.searchsorted(sorted_values, edges, side="left")
    return np.diff(cuts, prepend=0, append=sorted_values.size).astype(np.int64)


def aligned_counts(ref: CategoricalColumn, cur: CategoricalColumn) -> tuple[IntArray, IntArray]:
    """Counts of both samples over the union of their labels (0 where a label is absent)."""
    return _on_union(ref.labels, ref.counts, cur.labels, cur.counts)


def _on_union(
    ref_values: Any, ref_counts: IntArray, cur_values: Any, cur_counts: IntArray
) -> tuple[IntArray, IntArray]:
    """Counts of two (sorted unique values, counts) pairs spread over the union of the values."""
    union = np.union1d(ref_values, cur_values)
    spread = np.zeros((2, union.size), dtype=np.int64)
    spread[0, np.searchsorted(union, ref_values)] = ref_counts
    spread[1, np.searchsorted(union, cur_values)] = cur_counts
    return spread[0], spread[1]


def _psi_from_counts(ref_counts: IntArray, cur_counts: IntArray, binning: Binning) -> float:
    if binning == "quantile":
        # A bin empty on both sides says nothing; filling it with 0.5/n on each side would make
        # PSI depend on the window sizes alone.
        used = (ref_counts > 0) | (cur_counts > 0)
        ref_counts, cur_counts = ref_counts[used], cur_counts[used]
    fill = _evidently_fill if binning == "evidently" else _half_count_fill
    p_ref = fill(ref_counts / ref_counts.sum(), int(ref_counts.sum()))
    p_cur = fill(cur_counts / cur_counts.sum(), int(cur_counts.sum()))
    return float(np.sum((p_ref - p_cur) * np.log(p_ref / p_cur)))


def _half_count_fill(p: FloatArray, n: int) -> FloatArray:
    return np.where(p == 0, 0.5 / n, p)


def _evidently_fill(p: FloatArray, n: int) -> FloatArray:
    # evidently: zeros become 1e-4, or a millionth of the smallest share if that is below 1e-4.
    smallest = p[p != 0].min()
    return np.where(p == 0, smallest / 10**6 if smallest <= 0.0001 else 0.0001, p)


def _psi_evidently_numeric(ref: NumericColumn, cur: NumericColumn) -> float:
    if ref.n_distinct <= EVIDENTLY_MAX_VALUE_BINS:
        ref_counts, cur_counts = _on_union(
            *np.unique(ref.values, return_counts=True), *np.unique(cur.values, return_counts=True)
        )
        return _psi_from_counts(ref_counts, cur_counts, "evidently")
    edges = _sturges_edges(ref, cur)
    return _psi_from_counts(
        _histogram(ref.values, edges), _histogram(cur.values, edges), "evidently"
    )


def _sturges_edges(ref: NumericColumn, cur: NumericColumn) -> FloatArray:
    """np.histogram_bin_edges(concat(ref, cur), bins='sturges'), from the extremes alone."""
    first = min(ref.values[0], cur.values[0])
    last = max(ref.values[-1], cur.values[-1])
    width = (last - first) / (np.log2(ref.n + cur.n) + 1.0)
    if first == last:
        first, last = first - 0.5, last + 0.5
    if ref.integer and cur.integer and width < 1:
        width = 1.0  # numpy never makes bins narrower than 1 for integer data
    n_bins = int(np.ceil((last - first) / width)) if width else 1
    return np.linspace(first, last, n_bins + 1)


def _histogram(sorted_values: FloatArray, edges: FloatArray) -> IntArray:
    """np.histogram(values, edges)[0]: half-open bins, the last one closed."""
    cuts = np.searchsorted(sorted_values, edges, side="left")
    cuts[-1] = np.searchsorted(sorted_values, edges[-1], side="right")
    return np.diff(cuts).astype(np.int64)
