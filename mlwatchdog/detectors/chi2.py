"""Chi-square test of homogeneity for categorical columns (reference vs current category counts).

The 2 x K contingency test of `scipy.stats.chi2_contingency` (Yates' correction when K = 2, as
scipy does by default), on category counts; `Reference.test` calls `chi2_counts` per column.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from mlwatchdog.detectors.psi import aligned_counts
from mlwatchdog.detectors.sample import CategoricalColumn, IntArray, Sample
from mlwatchdog.errors import InputError


@dataclass(frozen=True, eq=False)
class Chi2Result:
    """Per-column chi-square results: arrays of shape (n_columns,), scalars for 1-D input."""

    statistic: Any
    pvalue: Any
    dof: Any
    n_reference: Any
    n_current: Any


def chi2(reference: Any, current: Any, axis: int = 0, correction: bool = True) -> Chi2Result:
    """Chi-square homogeneity test of each column's categories, current against reference.

    Values are category labels (compared as strings); missing values are dropped and counted.
    """
    ref = Sample.from_data(reference, axis=axis, kinds=_all_categorical(reference, axis))
    cur = Sample.from_data(current, names=ref.names, kinds=ref.kinds, axis=axis)
    rows = [
        chi2_counts(*aligned_counts(r, c), correction=correction)
        for r, c in zip(_categorical(ref), _categorical(cur), strict=True)
    ]
    stat, pvalue, dof = (np.array(v) for v in zip(*rows, strict=True))
    n_ref = np.array([c.n for c in ref.columns], dtype=np.int64)
    n_cur = np.array([c.n for c in cur.columns], dtype=np.int64)
    if np.ndim(reference) == 1:
        return Chi2Result(stat[0], pvalue[0], dof[0], n_ref[0], n_cur[0])
    return Chi2Result(stat, pvalue, dof.astype(np.int64), n_ref, n_cur)


def _all_categorical(data: Any, axis: int) -> list[str] | None:
    if hasattr(data, "columns"):
        return ["categorical"] * len(data.columns)
    shape = np.shape(data)
    return ["categorical"] * (1 if len(shape) == 1 else shape[1 - axis % 2])


def _categorical(sample: Sample) -> list[CategoricalColumn]:
    return [c for c in sample.columns if isinstance(c, CategoricalColumn)]


def chi2_counts(
    ref_counts: IntArray, cur_counts: IntArray, correction: bool = True
) -> tuple[float, float, int]:
    """Statistic, p-value and degrees of freedom of the 2 x K table [ref_counts; cur_counts].

    Categories absent from both samples are left out. An empty sample gives NaN.
    """
    if ref_counts.shape != cur_counts.shape:
        raise InputError("reference and current counts must cover the same categories.")
    observed = np.vstack([ref_counts, cur_counts]).astype(np.float64)
    observed = observed[:, observed.sum(axis=0) > 0]
    row_sums = observed.sum(axis=1, keepdims=True)
    if (row_sums == 0).any():
        return np.nan, np.nan, 0
    dof = observed.shape[1] - 1
    if dof == 0:
        return 0.0, 1.0, 0  # one category: both samples are identical in distribution
    expected = row_sums * observed.sum(axis=0, keepdims=True) / observed.sum()
    if dof == 1 and correction:
        # Yates' continuity correction, never moving a count past its expectation (as scipy).
        diff = expected - observed
        observed = observed + np.sign(diff) * np.minimum(0.5, np.abs(diff))
    statistic = float(np.sum((observed - expected) ** 2 / expected))
    return statistic, float(stats.chi2.sf(statistic, dof)), dof
