"""DriftResult: one drift test over many columns, as `Reference.test` returns it.

Arrays of shape (n_columns,) like scipy's results; derived answers (which columns drifted, what
share) are methods, so the same result can be read under another threshold or correction.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from numpy.typing import NDArray

from mlwatchdog.detectors.corrections import Correction, adjust_pvalues
from mlwatchdog.detectors.effect import EffectMeasure
from mlwatchdog.detectors.registry import REGISTRY, DriftTest
from mlwatchdog.detectors.sample import FloatArray, IntArray


class ColumnStatus(StrEnum):
    """Whether a column got a test result."""

    OK = "ok"
    INSUFFICIENT = "insufficient"  # too few usable values in the reference or current window


@dataclass(frozen=True)
class ColumnResult:
    """One column's line of a DriftResult; numbers are None where the column is insufficient."""

    column: str
    test: DriftTest
    status: ColumnStatus
    n_reference: int
    n_current: int
    n_dropped: int
    statistic: float | None
    pvalue: float | None
    pvalue_adjusted: float | None
    drifted: bool | None
    # The effect size and the floor it had to reach as well (None: the check has no floor).
    effect: float | None = None
    effect_measure: EffectMeasure | None = None
    min_effect: float | None = None


@dataclass(frozen=True, eq=False)
class DriftResult:
    """Statistic and p-value (NaN for PSI) per column, with the counts that produced them.

    `n_dropped` counts the NaN, inf or missing values removed from each current column;
    `sufficient` is False where a sample had fewer than the minimum usable values. With an
    effect floor, `effect` holds each column's `effect_measure` and a column drifts only when the
    test says so and its effect is at least `min_effect`.
    """

    test: DriftTest
    columns: tuple[str, ...]
    statistic: FloatArray
    pvalue: FloatArray
    n_reference: IntArray
    n_current: IntArray
    n_dropped: IntArray
    sufficient: NDArray[np.bool_]
    threshold: float
    correction: Correction = Correction.NONE
    effect: FloatArray | None = None
    effect_measure: EffectMeasure | None = None
    min_effect: float = 0.0

    @property
    def has_pvalue(self) -> bool:
        return REGISTRY[self.test].has_pvalue

    def pvalue_adjusted(self, correction: Correction | str | None = None) -> FloatArray:
        """P-values after the correction across the sufficient columns (NaN elsewhere)."""
        p = np.where(self.sufficient, self.pvalue, np.nan)
        return adjust_pvalues(p, self.correction if correction is None else correction)

    def significant(
        self, threshold: float | None = None, correction: Correction | str | None = None
    ) -> NDArray[np.bool_]:
        """Per column: does the test alone say it drifted (the effect floor left out)?"""
        limit = self.threshold if threshold is None else threshold
        if self.has_pvalue:
            flags = self.pvalue_adjusted(correction) < limit
        else:
            flags = self.statistic >= limit
        return flags & self.sufficient

    def drifted(
        self, threshold: float | None = None, correction: Correction | str | None = None
    ) -> NDArray[np.bool_]:
        """Per column: did it drift (significant, and at the effect floor if there is one)?
        Always False for an insufficient column."""
        flags = self.significant(threshold, correction)
        if self.effect is not None:
            flags = flags & (self.effect >= self.min_effect)  # NaN effect: never drifted
        return flags

    def share_drifted(
        self, threshold: float | None = None, correction: Correction | str | None = None
    ) -> float:
        """Drifted columns over sufficient columns; NaN when no column is sufficient."""
        n = int(self.sufficient.sum())
        return float(self.drifted(threshold, correction).sum() / n) if n else float("nan")

    def rows(self) -> list[ColumnResult]:
        """One ColumnResult per column, in column order."""
        drifted = self.drifted()
        adjusted = self.pvalue_adjusted()
        return [
            ColumnResult(
                column=name,
                test=self.test,
                status=ColumnStatus.OK if ok else ColumnStatus.INSUFFICIENT,
                n_reference=int(self.n_reference[j]),
                n_current=int(self.n_current[j]),
                n_dropped=int(self.n_dropped[j]),
                statistic=float(self.statistic[j]) if ok else None,
                pvalue=float(self.pvalue[j]) if ok and self.has_pvalue else None,
                pvalue_adjusted=float(adjusted[j]) if ok and self.has_pvalue else None,
                drifted=bool(drifted[j]) if ok else None,
                effect=float(self.effect[j]) if ok and self.effect is not None else None,
                effect_measure=self.effect_measure,
                min_effect=self.min_effect if self.effect_measure is not None else None,
            )
            for j, (name, ok) in enumerate(zip(self.columns, self.sufficient, strict=True))
        ]
