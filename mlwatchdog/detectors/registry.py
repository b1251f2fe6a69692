"""The drift tests by name: which column kinds each takes, and what its threshold means.

rules.yaml and the CLI name tests explicitly from this registry; nothing picks a test from the data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

from mlwatchdog.detectors.sample import ColumnKind


class DriftTest(StrEnum):
    """A drift test's name as rules.yaml and the CLI spell it."""

    KS = "ks"
    PSI = "psi"
    CHI2 = "chi2"


@dataclass(frozen=True)
class DriftTestSpec:
    """What a test applies to and how its threshold is read.

    With a p-value, a column drifts when its (corrected) p-value is below the threshold (alpha);
    without one (PSI), when the statistic is at or above the threshold.
    """

    name: DriftTest
    kinds: frozenset[ColumnKind]
    has_pvalue: bool
    default_threshold: float
    summary: str


REGISTRY: Mapping[DriftTest, DriftTestSpec] = MappingProxyType(
    {
        DriftTest.KS: DriftTestSpec(
            DriftTest.KS,
            frozenset({ColumnKind.NUMERIC}),
            has_pvalue=True,
            default_threshold=0.05,
            summary="two-sample Kolmogorov-Smirnov, two-sided (scipy.stats.ks_2samp)",
        ),
        DriftTest.PSI: DriftTestSpec(
            DriftTest.PSI,
            frozenset({ColumnKind.NUMERIC, ColumnKind.CATEGORICAL}),
            has_pvalue=False,
            default_threshold=0.1,
            summary="population stability index over reference-quantile bins or categories",
        ),
        DriftTest.CHI2: DriftTestSpec(
            DriftTest.CHI2,
            frozenset({ColumnKind.CATEGORICAL}),
            has_pvalue=True,
            default_threshold=0.05,
            summary="chi-square test of homogeneity (scipy.stats.chi2_contingency)",
        ),
    }
)
