"""Effect floors: each effect size against scipy's, and a floor that keeps negligible shifts at
large n from drifting while real ones still do; rules that name a measure of the wrong kind."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats
from scipy.spatial.distance import jensenshannon

from mlwatchdog.detectors import Reference, effect_size
from mlwatchdog.errors import ConfigError
from mlwatchdog.rules import parse_config


def _with_gaps(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """`values` with about 5% NaN and a few inf, which every measure drops."""
    out = values.astype(np.float64).copy()
    out[rng.random(out.size) < 0.05] = np.nan
    out[rng.random(out.size) < 0.01] = np.inf
    return out


@pytest.mark.parametrize("seed", range(6))
def test_numeric_effects_match_scipy_with_ties_and_nans(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n1, n2 = rng.integers(50, 3000, size=2)
    # Rounded values: many ties, within and across the samples.
    ref = np.round(rng.normal(0, rng.uniform(0.5, 3), n1), int(rng.integers(0, 2)))
    cur = np.round(rng.normal(rng.uniform(-1, 1), rng.uniform(0.5, 3), n2), 1)
    ref_gaps, cur_gaps = _with_gaps(ref, rng), _with_gaps(cur, rng)
    r, c = ref_gaps[np.isfinite(ref_gaps)], cur_gaps[np.isfinite(cur_gaps)]

    wasserstein = stats.wasserstein_distance(r, c) / np.std(r)  # ddof=0, as documented
    assert effect_size(ref_gaps, cur_gaps, "wasserstein") == pytest.approx(wasserstein, rel=1e-9)
    d = stats.ks_2samp(r, c).statistic
    assert effect_size(ref_gaps, cur_gaps, "ks_d") == pytest.approx(d, rel=1e-12)


def test_effects_of_many_columns_at_once_match_column_by_column() -> None:
    rng = np.random.default_rng(7)
    ref = rng.normal(size=(800, 4))
    cur = rng.normal(0.2, 1.3, size=(500, 4))
    got = effect_size(ref, cur, "wasserstein")
    want = [stats.wasserstein_distance(ref[:, j], cur[:, j]) / np.std(ref[:, j]) for j in range(4)]
    np.testing.assert_allclose(got, want, rtol=1e-9)


@pytest.mark.parametrize("seed", range(4))
def test_jensen_shannon_matches_scipy_incl_new_and_missing_categories(seed: int) -> None:
    rng = np.random.default_rng(seed)
    ref = rng.choice(["a", "b", "c", "d"], 2000, p=[0.4, 0.3, 0.2, 0.1]).astype(object)
    cur = rng.choice(["a", "b", "c", "e"], 700, p=[0.25, 0.25, 0.25, 0.25]).astype(object)
    cur[rng.random(cur.size) < 0.05] = None  # missing: dropped
    labels = sorted(set(ref) | {v for v in cur if v is not None})
    present = np.array([v for v in cur if v is not None])
    p = [np.mean(ref == label) for label in labels]
    q = [np.mean(present == label) for label in labels]
    want = jensenshannon(p, q, base=2)
    assert effect_size(ref, cur, "jensen_shannon") == pytest.approx(want, rel=1e-9)


def test_a_constant_reference_gives_zero_or_infinite_wasserstein() -> None:
    ref = np.full(100, 3.0)
    assert effect_size(ref, np.full(50, 3.0), "wasserstein") == 0.0
    assert effect_size(ref, np.full(50, 3.5), "wasserstein") == np.inf


def test_at_large_n_a_floor_ignores_a_negligible_shift_but_not_a_real_one() -> None:
    rng = np.random.default_rng(20261205)
    n = 200_000
    reference = Reference(pd.DataFrame({"x": rng.normal(size=n)}))
    # 0.03 sd: far below any floor, yet significant at this n (0.01 sd is borderline at alpha 0.05)
    tiny = pd.DataFrame({"x": rng.normal(0.03, size=n)})
    real = pd.DataFrame({"x": rng.normal(0.5, size=n)})

    for measure, floor in (("wasserstein", 0.1), ("ks_d", 0.04)):
        plain = reference.test(tiny, "ks", threshold=0.05)
        floored = reference.test(tiny, "ks", threshold=0.05, effect=measure, min_effect=floor)
        assert plain.drifted().all(), "the p-value alone flags the tiny shift"
        assert not floored.drifted().any(), f"{measure} >= {floor} ignores it"
        assert floored.significant().all()  # still significant: only the floor holds it back
        big = reference.test(real, "ks", threshold=0.05, effect=measure, min_effect=floor)
        assert big.drifted().all()
        row = big.rows()[0]
        assert row.effect_measure == measure and row.min_effect == floor
        assert row.effect is not None and row.effect >= floor


def test_a_floor_applies_to_psi_too() -> None:
    rng = np.random.default_rng(3)
    reference = Reference(pd.DataFrame({"x": rng.normal(size=50_000)}))
    shifted = pd.DataFrame({"x": rng.normal(0.35, size=50_000)})
    result = reference.test(shifted, "psi", threshold=0.1, effect="wasserstein", min_effect=0.5)
    assert result.statistic[0] >= 0.1 and not result.drifted()[0]  # PSI says yes, effect 0.35 no
    assert result.effect is not None and 0.3 < result.effect[0] < 0.4


def _rules(check: dict[str, object]) -> str:
    return yaml.safe_dump({
        "version": 1,
        "sources": {"live": {"type": "files", "url": "/nonexistent/live"}},
        "targets": [{
            "name": "model",
            "samples": {"source": "live"},
            "reference": {"source": "live"},
            "columns": {"features": {"x": "numeric", "channel": "categorical"}},
            "checks": [{"name": "drift", "type": "drift", **check}],
        }],
    })  # fmt: skip


def test_rules_refuse_a_measure_of_the_wrong_kind_naming_the_check() -> None:
    for check, wrong in (
        ({"test": "chi2", "effect": {"measure": "wasserstein", "min": 0.1}}, "jensen_shannon"),
        ({"test": "psi", "columns": "features", "effect": {"measure": "ks_d", "min": 0.1}}, ""),
        ({"test": "ks", "effect": {"measure": "jensen_shannon", "min": 0.1}}, "wasserstein"),
    ):
        with pytest.raises(ConfigError) as caught:
            parse_config(_rules(check), "rules.yaml")
        text = str(caught.value)
        assert "checks[0].effect" in text and "'drift'" in text, text
        assert wrong in text
    parse_config(_rules({"test": "ks", "effect": {"measure": "wasserstein", "min": 0.1}}))
    parse_config(_rules({"test": "chi2", "effect": {"measure": "jensen_shannon", "min": 0.05}}))
    with pytest.raises(ConfigError, match=r"effect\.measure"):
        parse_config(_rules({"test": "ks", "effect": {"measure": "hellinger", "min": 0.1}}))
