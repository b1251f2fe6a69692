"""mlwatchdog's KS p-values against evidently 0.7's "ks" drift method, column by column.

evidently's KS stat test is scipy.stats.ks_2samp (auto method) on each column's finite values, so
mlwatchdog's p-value must equal it to 1e-9 relative, in scipy's exact regime (both samples at most
10000 values) and its asymptotic one, with ties and with unequal sample sizes. Checked twice: the
stat test looked up by name in evidently's registry, and the public Report API with
DataDriftPreset(num_method="ks"), whose per-column ValueDrift value is that p-value.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlwatchdog.detectors import Reference, ks_2samp

RTOL = 1e-9
ALPHA = 0.05


# ------------------------------------------------------------------------------ data


@dataclass(frozen=True)
class Frames:
    """A reference and a current frame with the same numeric columns."""

    name: str
    reference: pd.DataFrame
    current: pd.DataFrame
    asymptotic: bool  # scipy's auto method takes the asymptotic p-value (a sample > 10000)


def continuous(rng: np.random.Generator) -> Frames:
    """Continuous data, equal sizes; no drift, a small and a large shift, a scale change."""
    n = 600
    reference = pd.DataFrame({c: rng.normal(size=n) for c in ("same", "small", "large", "wide")})
    current = pd.DataFrame(
        {
            "same": rng.normal(size=n),
            "small": rng.normal(0.15, 1.0, n),
            "large": rng.normal(1.0, 1.0, n),
            "wide": rng.normal(0.0, 1.5, n),
        }
    )
    return Frames("continuous, 600 vs 600", reference, current, asymptotic=False)


def ties(rng: np.random.Generator) -> Frames:
    """Ties within and between samples: rounded floats, small integers (int dtype), values the
    current draws from the reference's, 0/1; unequal sizes."""
    n1, n2 = 900, 350
    rounded = np.round(rng.normal(size=n1), 1)
    reference = pd.DataFrame(
        {
            "rounded": rounded,
            "integers": rng.integers(0, 6, n1),
            "shared": rounded,
            "binary": rng.integers(0, 2, n1).astype(np.float64),
        }
    )
    current = pd.DataFrame(
        {
            "rounded": np.round(rng.normal(0.2, 1.0, n2), 1),
            "integers": rng.integers(0, 6, n2),
            "shared": rng.choice(rounded, n2),
            "binary": (rng.random(n2) < 0.6).astype(np.float64),
        }
    )
    return Frames("ties, 900 vs 350", reference, current, asymptotic=False)


def lopsided(rng: np.random.Generator) -> Frames:
    """A small current window against a larger reference, sizes with a gcd above 1."""
    n1, n2 = 2000, 48
    reference = pd.DataFrame({"a": rng.normal(size=n1), "b": rng.exponential(size=n1)})
    current = pd.DataFrame({"a": rng.normal(0.4, 1.0, n2), "b": rng.exponential(size=n2)})
    return Frames("unequal sizes, 2000 vs 48", reference, current, asymptotic=False)


def large(rng: np.random.Generator) -> Frames:
    """More than 10000 reference rows: scipy's asymptotic p-value; ties in one column."""
    n1, n2 = 15_000, 4_000
    reference = pd.DataFrame(
        {
            "same": rng.normal(size=n1),
            "shifted": rng.normal(size=n1),
            "rounded": np.round(rng.normal(size=n1), 1),
        }
    )
    current = pd.DataFrame(
        {
            "same": rng.normal(size=n2),
            "shifted": rng.normal(0.08, 1.0, n2),
            "rounded": np.round(rng.normal(0.05, 1.0, n2), 1),
        }
    )
    return Frames("asymptotic, 15000 vs 4000", reference, current, asymptotic=True)


def with_missing(rng: np.random.Generator) -> Frames:
    """NaN and inf in both frames: both libraries test each column's finite values only."""
    n1, n2 = 500, 300
    reference = pd.DataFrame({"x": rng.normal(size=n1), "y": rng.normal(size=n1)})
    current = pd.DataFrame({"x": rng.normal(0.3, 1.0, n2), "y": rng.normal(size=n2)})
    reference.loc[rng.choice(n1, 25, replace=False), "x"] = np.nan
    reference.loc[rng.choice(n1, 5, replace=False), "y"] = np.inf
    current.loc[rng.choice(n2, 10, replace=False), "y"] = -np.inf
    current.loc[rng.choice(n2, 7, replace=False), "x"] = np.nan
    return Frames("NaN and inf, 500 vs 300", reference, current, asymptotic=False)


BUILDERS: list[Callable[[np.random.Generator], Frames]] = [
    continuous,
    ties,
    lopsided,
    large,
    with_missing,
]


def build(builder: Callable[[np.random.Generator], Frames]) -> Frames:
    """The case with its own fixed seed."""
    return builder(np.random.default_rng(sum(map(ord, builder.__name__))))


@pytest.fixture(scope="module", params=BUILDERS, ids=lambda b: b.__name__)
def frames(request: pytest.FixtureRequest) -> Frames:
    return build(request.param)


# ------------------------------------------------------------------------------ evidently


def finite(series: pd.Series) -> pd.Series:
    return series.replace([np.inf, -np.inf], np.nan).dropna()


def evidently_stattest_pvalues(frames: Frames) -> dict[str, float]:
    """evidently's registered "ks" stat test on each column's finite values (as its data drift
    calculation hands them over)."""
    from evidently.legacy.calculations.stattests.registry import get_stattest
    from evidently.legacy.core import ColumnType

    out = {}
    for column in frames.reference.columns:
        reference = finite(frames.reference[column])
        current = finite(frames.current[column])
        stattest = get_stattest(reference, current, ColumnType.Numerical, "ks")
        assert stattest.name == "ks"
        result = stattest(reference, current, ColumnType.Numerical, ALPHA)
        out[str(column)] = float(result.drift_score)
    return out


def value_drift_scores(snapshot: Any) -> dict[str, float]:
    """Per-column drift score of a Report result: its ValueDrift metrics, read from the JSON
    (as tests/unit/test_psi.py reads them)."""
    scores = {}
    for metric in json.loads(snapshot.json())["metrics"]:
        if metric["config"]["type"] == "evidently:metric_v2:ValueDrift":
            scores[metric["config"]["column"]] = float(metric["value"])
    return scores


def evidently_report_pvalues(frames: Frames) -> dict[str, float]:
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(numerical_columns=[str(c) for c in frames.reference.columns])
    snapshot = Report([DataDriftPreset(num_method="ks")]).run(
        Dataset.from_pandas(frames.current, data_definition=definition),
        Dataset.from_pandas(frames.reference, data_definition=definition),
    )
    return value_drift_scores(snapshot)


# ------------------------------------------------------------------------------ tests


def assert_pvalues_match(ours: Any, theirs: dict[str, float], columns: list[str]) -> None:
    assert sorted(theirs) == sorted(columns)
    expected = np.array([theirs[c] for c in columns])
    np.testing.assert_allclose(np.asarray(ours), expected, rtol=RTOL, atol=0, err_msg=str(columns))


def test_ks_2samp_matches_evidently_stattest(frames: Frames) -> None:
    columns = [str(c) for c in frames.reference.columns]
    result = ks_2samp(frames.reference, frames.current)
    assert_pvalues_match(result.pvalue, evidently_stattest_pvalues(frames), columns)
    # The regime the case is meant to cover is the one taken.
    assert not result.exact.any() if frames.asymptotic else result.exact.all()
    n_finite = np.isfinite(frames.reference.to_numpy(dtype=np.float64)).sum(axis=0)
    assert result.n_reference.tolist() == n_finite.tolist()


# evidently's own histograms warn on the case with NaN and inf; its drift scores are unaffected.
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_reference_test_matches_evidently_report(frames: Frames) -> None:
    columns = [str(c) for c in frames.reference.columns]
    result = Reference(frames.reference).test(frames.current, "ks")
    assert list(result.columns) == columns
    assert_pvalues_match(result.pvalue, evidently_report_pvalues(frames), columns)


def test_cases_cover_drift_and_no_drift() -> None:
    """The cases hold columns on both sides of alpha, and p-values far from 0 and 1, so agreeing
    with evidently is not agreeing on trivial values."""
    cases = [build(b) for b in BUILDERS]
    pvalues = np.concatenate([ks_2samp(f.reference, f.current).pvalue for f in cases])
    assert (pvalues < ALPHA).sum() >= 4
    assert (pvalues > ALPHA).sum() >= 4
    assert ((pvalues > 1e-6) & (pvalues < 0.5)).sum() >= 3
