"""A stated false-alarm rate (`false_alarms: {every: ...}`): each drift check's alpha is calibrated
on the reference so that, on data that has not drifted, an evaluation breaches with probability
q = interval / every; a drift is still caught; the reason says what alpha was used and why."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats

from mlwatchdog.core import DataStatus, Observation
from mlwatchdog.core.calibrate import alpha_for, breach_alpha
from mlwatchdog.core.measure import measure
from mlwatchdog.detectors import Reference
from mlwatchdog.errors import ConfigError
from mlwatchdog.replay import alarm_rates
from mlwatchdog.rules import Target, parse_config

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
FEATURES = 3


def rules(check: dict[str, Any] | None = None, **target: Any) -> str:
    return yaml.safe_dump({
        "version": 1,
        "sources": {"live": {"type": "files", "url": "/nonexistent"}},
        "targets": [{
            "name": "model",
            "interval": "1h",
            "samples": {"source": "live", "window": "1d", "min_samples": 30},
            "reference": {"source": "live"},
            "columns": {"features": {f"x{i}": "numeric" for i in range(FEATURES)}},
            "checks": [{"name": "drift", "type": "drift", "test": "ks",
                        "correction": "bonferroni", "drift_share": 0.3, **(check or {})}],
            **target,
        }],
    })  # fmt: skip


def make_target(check: dict[str, Any] | None = None, **target: Any) -> Target:
    return parse_config(rules(check, **target), "rules.yaml").targets[0]


def rows(rng: np.random.Generator, n: int, rho: float = 0.0) -> pd.DataFrame:
    """N(0, 1) features with correlation `rho` between any two (one common factor)."""
    common = rng.standard_normal((n, 1))
    x = math.sqrt(rho) * common + math.sqrt(1 - rho) * rng.standard_normal((n, FEATURES))
    return pd.DataFrame(x, columns=[f"x{i}" for i in range(FEATURES)])


def observe(reference: Reference, window: pd.DataFrame) -> Observation:
    return Observation(
        "model", NOW, samples=window, samples_status=DataStatus.OK,
        reference=reference, reference_status=DataStatus.OK,
    )  # fmt: skip


def breach_rate(
    target: Target, rho: float, references: int, windows: int, seed: int
) -> tuple[float, list[float]]:
    """The share of stationary windows that breach, over `references` references (the rate is
    stated over the reference one could have drawn, as a test's level is) and the alphas used.
    References of 12,000 rows: KS p-values are asymptotic beyond 10,000, which keeps this fast."""
    rng = np.random.default_rng(seed)
    breaches, alphas = 0, []
    for _ in range(references):
        reference = Reference(rows(rng, 12_000, rho))
        for _ in range(windows):
            (result,) = measure(target, observe(reference, rows(rng, 480, rho)))
            breaches += result.breaching
        assert result.test_threshold is not None
        alphas.append(result.test_threshold)
    return breaches / (references * windows), alphas


@pytest.mark.parametrize(
    ("rho", "drift_share"),
    [(0.0, 0.3), (0.6, 0.3), (0.6, 1.0)],
    ids=["independent-any-column", "correlated-any-column", "correlated-every-column"],
)
def test_stationary_windows_breach_at_the_stated_rate(rho: float, drift_share: float) -> None:
    """q = 1h / 10h = 0.1 per evaluation. Bonferroni over 3 columns and 2 sub-windows would give
    well under q when the tests are correlated (and nearly 0 when every column must drift): the
    calibration finds the alpha at which the rate is q."""
    every = {"every": "10h", "bootstrap": 200}
    target = make_target({"drift_share": drift_share}, false_alarms=every)
    q = 0.1
    n = 8 * 40
    rate, alphas = breach_rate(target, rho, references=8, windows=40, seed=7)
    low, high = stats.binom.ppf([0.0005, 0.9995], n, q) / n
    # The binomial band, widened by a third for the references' own luck and the calibration's
    # bootstrap error.
    assert low * 0.67 <= rate <= high * 1.33, (rate, q, alphas)
    if drift_share == 1.0:
        assert min(alphas) > q  # every column at once is rarer than any one: alpha grows


def test_small_rates_come_from_the_fitted_tail() -> None:
    """q * replicates < 10: the lower tail is extrapolated. At q = 0.01 the stationary rate
    stays within a factor of two of q (1,600 windows: ~16 breaches expected; seeded)."""
    target = make_target(false_alarms={"every": "100h", "bootstrap": 200})
    rate, alphas = breach_rate(target, 0.0, references=8, windows=200, seed=11)
    assert 0.005 <= rate <= 0.02, (rate, alphas)


def test_the_calibrated_alpha_is_deterministic_and_in_the_reason() -> None:
    target = make_target(false_alarms={"every": "28d"})
    rng = np.random.default_rng(3)
    data = rows(rng, 4_000)
    window = rows(rng, 480)
    first = measure(target, observe(Reference(data), window))[0]
    again = measure(target, observe(Reference(data.copy()), window))[0]
    assert first.test_threshold == again.test_threshold
    assert first.test_threshold is not None and first.test_threshold < 0.05
    assert "calibrated for at most one false alarm per 28d" in first.reason
    assert f"alpha {first.test_threshold:.3g} calibrated" in first.reason


def test_a_step_is_still_caught() -> None:
    """Calibrated for one false alarm a month, a 0.5 sd shift in one of three features in the
    newest 200 rows of a day's window breaches."""
    target = make_target(false_alarms={"every": "30d"})
    rng = np.random.default_rng(5)
    reference = Reference(rows(rng, 4_000))
    window = rows(rng, 1_440)
    window.loc[1_240:, "x1"] += 0.5
    (result,) = measure(target, observe(reference, window))
    assert result.breaching, result.reason
    assert "x1" in result.reason


def test_breach_alpha_is_where_the_share_is_reached() -> None:
    """The j-th smallest adjusted p-value: at any alpha above it the check breaches, below it
    not (compared with DriftResult's own share_drifted)."""
    rng = np.random.default_rng(9)
    reference = Reference(rows(rng, 2_000))
    window = rows(rng, 300)
    window["x0"] += 0.2
    window["x2"] += 0.1
    result = reference.test(window, "ks", correction="bonferroni")
    for share in (0.3, 0.6, 1.0):
        level = breach_alpha(result, share)
        assert result.share_drifted(threshold=level * 1.0001) >= share
        assert result.share_drifted(threshold=level * 0.9999) < share


def test_alpha_for_reads_the_quantile_or_the_fitted_tail() -> None:
    """Uniform levels (a single test): alpha = q, read off the sample or from the tail fit."""
    levels = np.random.default_rng(1).uniform(size=4_000)
    assert alpha_for(levels, 0.05) == pytest.approx(0.05, rel=0.15)
    assert alpha_for(levels, 0.001) == pytest.approx(0.001, rel=0.5)
    squared = levels**0.5  # the larger of two uniforms: P(level < a) = a^2
    assert alpha_for(squared, 0.0004) == pytest.approx(0.02, rel=0.5)


def test_a_check_threshold_beside_false_alarms_is_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        make_target({"threshold": 0.01}, false_alarms={"every": "28d"})
    assert "remove one of the two" in str(caught.value)
    assert "rules.yaml" in str(caught.value)


def test_every_must_be_longer_than_the_interval() -> None:
    with pytest.raises(ConfigError) as caught:
        make_target(false_alarms={"every": "30m"})
    assert "longer than the interval" in str(caught.value)


def test_psi_checks_keep_their_limit() -> None:
    """PSI has no p-value: its limit is an effect size, not a level, and is not calibrated."""
    target = make_target({"test": "psi", "threshold": 0.2}, false_alarms={"every": "28d"})
    rng = np.random.default_rng(2)
    (result,) = measure(target, observe(Reference(rows(rng, 2_000)), rows(rng, 480)))
    assert result.test_threshold == 0.2
    assert "calibrated" not in result.reason


def test_uncalibrated_targets_are_unchanged() -> None:
    target = make_target({"threshold": 0.01})
    rng = np.random.default_rng(2)
    (result,) = measure(target, observe(Reference(rows(rng, 2_000)), rows(rng, 480)))
    assert result.test_threshold == 0.01
    assert "calibrated" not in result.reason
    assert timedelta(hours=1) == target.interval


def test_replay_counts_drift_alarms_over_the_period() -> None:
    """A drift check's transitions to firing are alarms (a canary check's too); a metric
    check's are not; the rate is stated beside false_alarms.every."""
    config = parse_config(
        rules(
            false_alarms={"every": "28d"},
            checks=[
                {"name": "drift", "type": "drift", "test": "ks"},
                {"name": "errors", "type": "metric", "source": "prom", "query": "q", "above": 1},
            ],
        ).replace("sources:\n", "sources:\n  prom: {type: prometheus, url: 'http://p:9090'}\n"),
        "rules.yaml",
    )
    states = {
        "drift": ["inactive", "pending", "firing", "firing", "inactive", "firing", "firing"],
        "drift[canary]": ["inactive", "firing", "inactive", "inactive", "inactive", "inactive",
                          "inactive"],
        "errors": ["firing", "inactive", "firing", "inactive", "firing", "inactive", "firing"],
    }  # fmt: skip
    timeline = pd.DataFrame(
        [
            {
                "time": NOW + timedelta(days=day),
                "target": "model",
                "check": check,
                "check_state": state,
            }
            for check, history in states.items()
            for day, state in enumerate(history)
        ]
    )
    (rate,) = alarm_rates(timeline, config)
    assert (rate.alarms, rate.span, rate.stated) == (3, timedelta(days=6), timedelta(days=28))
    assert str(rate) == (
        "model: 3 drift alarm(s) in 6 days, one per 2 days (false_alarms states one per 28 at most)"
    )
