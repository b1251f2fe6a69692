"""Multiple-testing corrections across columns: Bonferroni and Benjamini-Hochberg.

Adjusted p-values, as `scipy.stats.false_discovery_control(method="bh")` gives; NaN p-values
(columns without a result) are ignored and stay NaN. Called by `DriftResult.drifted`.
"""

from __future__ import annotations

from enum import StrEnum

import numpy as np
from numpy.typing import ArrayLike

from mlwatchdog.detectors.sample import FloatArray
from mlwatchdog.errors import InputError


class Correction(StrEnum):
    """How p-values of many columns are adjusted before comparing them with alpha."""

    NONE = "none"
    BONFERRONI = "bonferroni"
    BH = "bh"  # Benjamini-Hochberg: controls the false discovery rate

    @classmethod
    def parse(cls, name: Correction | str) -> Correction:
        """The correction called `name`, or an InputError listing the choices."""
        try:
            return cls(name)
        except ValueError:
            choices = ", ".join(repr(c.value) for c in cls)
            raise InputError(f"unknown correction {name!r}; use one of {choices}.") from None


def adjust_pvalues(pvalues: ArrayLike, correction: Correction | str) -> FloatArray:
    """Adjusted p-values in the input order; `correction` is a `Correction` or its name."""
    p = np.asarray(pvalues, dtype=np.float64)
    method = Correction.parse(correction)
    out = p.copy()
    present = ~np.isnan(p)
    m = int(present.sum())
    if method is Correction.NONE or m == 0:
        return out
    if method is Correction.BONFERRONI:
        out[present] = np.minimum(p[present] * m, 1.0)
        return out
    out[present] = benjamini_hochberg(p[present])
    return out


def benjamini_hochberg(pvalues: FloatArray) -> FloatArray:
    """BH-adjusted p-values: p_(i) * m / i, made monotone from the largest down, capped at 1."""
    order = np.argsort(pvalues)
    m = pvalues.size
    ranked = pvalues[order] * (m / np.arange(1, m + 1))
    ranked = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.clip(ranked, 0.0, 1.0)
    return out
