"""Effect sizes: how far a column moved, next to whether the move is significant.

At large n a p-value flags shifts nobody cares about; an effect floor asks for a minimum size too.
Three measures, each on the columns already prepared for the tests (sorted values, counts):

- `ks_d`: the KS statistic D, the largest gap between the two ECDFs (numeric columns).
- `wasserstein`: the 1-D Wasserstein distance (the area between the ECDFs, scipy's
  `wasserstein_distance`) over the reference's population standard deviation (`np.std`, ddof=0),
  so 0.1 reads "a tenth of a reference sd". A constant reference: 0 if equal, else inf.
- `jensen_shannon`: the Jensen-Shannon distance of the category frequencies, base 2 (scipy's
  `spatial.distance.jensenshannon(p, q, base=2)`), in [0, 1] (categorical columns).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import StrEnum
from types import MappingProxyType
from typing import Any

import numpy as np
from scipy import special

from mlwatchdog.detectors.ks import ks_statistic
from mlwatchdog.detectors.psi import aligned_counts
from mlwatchdog.detectors.sample import (
    CategoricalColumn,
    Column,
    ColumnKind,
    FloatArray,
    NumericColumn,
    Sample,
)
from mlwatchdog.errors import InputError


class EffectMeasure(StrEnum):
    """An effect size's name as rules.yaml spells it."""

    KS_D = "ks_d"
    WASSERSTEIN = "wasserstein"
    JENSEN_SHANNON = "jensen_shannon"

    @classmethod
    def parse(cls, name: EffectMeasure | str) -> EffectMeasure:
        try:
            return cls(name)
        except ValueError:
            choices = ", ".join(repr(m.value) for m in cls)
            raise InputError(f"unknown effect measure {name!r}; use one of {choices}.") from None


# The column kind each measure is defined on.
EFFECT_KINDS: Mapping[EffectMeasure, ColumnKind] = MappingProxyType(
    {
        EffectMeasure.KS_D: ColumnKind.NUMERIC,
        EffectMeasure.WASSERSTEIN: ColumnKind.NUMERIC,
        EffectMeasure.JENSEN_SHANNON: ColumnKind.CATEGORICAL,
    }
)


def effect_size(reference: Any, current: Any, measure: EffectMeasure | str, axis: int = 0) -> Any:
    """The effect of each column of `current` against `reference` (a scalar for 1-D input).

    NaN and inf (or missing categories) are dropped per column, as the tests do.
    """
    how = EffectMeasure.parse(measure)
    kinds = [EFFECT_KINDS[how]] * (1 if np.ndim(reference) == 1 else _n_columns(reference, axis))
    ref = Sample.from_data(reference, kinds=kinds, axis=axis)
    cur = Sample.from_data(current, names=ref.names, kinds=kinds, axis=axis)
    out = effect_columns(how, ref.columns, cur.columns)
    return out[0] if np.ndim(reference) == 1 else out


def _n_columns(data: Any, axis: int) -> int:
    if hasattr(data, "columns"):
        return len(data.columns)
    return int(np.shape(data)[1 - axis % 2])


def effect_columns(
    measure: EffectMeasure, reference: Sequence[Column], current: Sequence[Column]
) -> FloatArray:
    """The effect per column pair; NaN where a side is empty."""
    out = np.full(len(reference), np.nan)
    want = EFFECT_KINDS[measure]
    for j, (ref, cur) in enumerate(zip(reference, current, strict=True)):
        if isinstance(ref, NumericColumn) != (want is ColumnKind.NUMERIC):
            raise InputError(
                f"effect {measure!s} takes {want!s} columns only; use "
                f"{'jensen_shannon' if want is ColumnKind.NUMERIC else 'ks_d or wasserstein'} "
                "for the others."
            )
        if ref.n == 0 or cur.n == 0:
            continue
        if isinstance(ref, CategoricalColumn) and isinstance(cur, CategoricalColumn):
            out[j] = _jensen_shannon(ref, cur)
        elif isinstance(ref, NumericColumn) and isinstance(cur, NumericColumn):
            if measure is EffectMeasure.KS_D:
                out[j] = ks_statistic(ref.values, cur.values)
            else:
                out[j] = _wasserstein_in_sd(ref.values, cur.values)
    return out


def _wasserstein_in_sd(ref: FloatArray, cur: FloatArray) -> float:
    """Area between the ECDFs of two sorted samples, over the reference's sd (ddof=0)."""
    merged = np.concatenate([ref, cur])
    order = np.argsort(merged, kind="stable")  # two sorted runs: timsort merges them linearly
    from_ref = order < ref.size
    # ECDFs just after each merged value; inside a run of ties the width to the next value is
    # 0, so only the tie's last position (where the counts are complete) adds to the area.
    gap = np.abs(np.cumsum(from_ref)[:-1] / ref.size - np.cumsum(~from_ref)[:-1] / cur.size)
    # Not np.dot: a BLAS call costs more in thread start-up than this sum of products.
    distance = float(np.sum(gap * np.diff(merged[order])))
    sd = float(np.std(ref))
    if sd == 0.0:
        return 0.0 if distance == 0.0 else float("inf")
    return distance / sd


def _jensen_shannon(ref: CategoricalColumn, cur: CategoricalColumn) -> float:
    ref_counts, cur_counts = aligned_counts(ref, cur)
    p = ref_counts / ref_counts.sum()
    q = cur_counts / cur_counts.sum()
    m = (p + q) / 2.0
    divergence = (special.rel_entr(p, m).sum() + special.rel_entr(q, m).sum()) / np.log(2.0)
    return float(np.sqrt(max(divergence, 0.0) / 2.0))
