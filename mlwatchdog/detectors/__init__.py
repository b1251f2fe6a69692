"""Drift detectors: vectorised KS, PSI and chi-square over many columns; numpy and scipy only.

Pure functions and small value types, no I/O and no clock. `Reference` prepares a reference
sample once; the functional tests mirror scipy's signatures for one-off use.
"""

from mlwatchdog.detectors.chi2 import Chi2Result, chi2, chi2_counts
from mlwatchdog.detectors.corrections import Correction, adjust_pvalues, benjamini_hochberg
from mlwatchdog.detectors.effect import EFFECT_KINDS, EffectMeasure, effect_size
from mlwatchdog.detectors.ks import KSResult, ks_2samp
from mlwatchdog.detectors.psi import PSIResult, psi
from mlwatchdog.detectors.reference import DEFAULT_MIN_SAMPLES, Reference
from mlwatchdog.detectors.registry import REGISTRY, DriftTest, DriftTestSpec
from mlwatchdog.detectors.result import ColumnResult, ColumnStatus, DriftResult
from mlwatchdog.detectors.sample import ColumnKind, Sample

__all__ = [
    "DEFAULT_MIN_SAMPLES",
    "EFFECT_KINDS",
    "REGISTRY",
    "Chi2Result",
    "ColumnKind",
    "ColumnResult",
    "ColumnStatus",
    "Correction",
    "DriftResult",
    "DriftTest",
    "DriftTestSpec",
    "EffectMeasure",
    "KSResult",
    "PSIResult",
    "Reference",
    "Sample",
    "adjust_pvalues",
    "benjamini_hochberg",
    "chi2",
    "chi2_counts",
    "effect_size",
    "ks_2samp",
    "psi",
]
