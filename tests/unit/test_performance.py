"""Performance from labels: metrics and intervals against scikit-learn and scipy, the label joins
against pandas, CBPE against the realised metric, config errors, and the check's state machine.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats
from sklearn import metrics as skm
from sklearn.isotonic import IsotonicRegression

from mlwatchdog.core import CheckState, DataStatus, LabelledRows, Observation, measure
from mlwatchdog.core.labels import as_classes, match_ids, match_nearest
from mlwatchdog.detectors import performance as perf
from tests.unit.test_core_scenarios import (
    BASE_TARGET,
    FOR,
    SOURCES,
    at,
    make_target,
    phases,
    rollbacks,
    run,
)
from tests.unit.test_rules import issues_of

RNG = np.random.default_rng(14)
BASE_COLUMNS: dict[str, Any] = BASE_TARGET["columns"]


def classified(n: int, accuracy: float, rng: np.random.Generator) -> tuple[Any, Any, Any]:
    """Labels, scores and predicted classes of a model right on about `accuracy` of rows."""
    actual = rng.random(n) < 0.4
    right = rng.random(n) < accuracy
    predicted = np.where(right, actual, ~actual)
    score = np.clip(np.where(predicted, 0.7, 0.3) + rng.normal(0, 0.2, n), 0, 1)
    return actual, score, predicted


# ------------------------------------------------------------------------------ metrics, intervals


@pytest.mark.parametrize(
    ("metric", "oracle"),
    [
        ("accuracy", skm.accuracy_score),
        ("precision", skm.precision_score),
        ("recall", skm.recall_score),
        ("f1", skm.f1_score),
    ],
)
def test_classification_metrics_match_sklearn(metric: Any, oracle: Any) -> None:
    actual, _, predicted = classified(1_000, 0.8, RNG)
    result = perf.classification(metric, actual, predicted)
    assert result.value == pytest.approx(oracle(actual, predicted), abs=1e-12)
    assert result.low < result.value < result.high


def test_proportion_intervals_are_scipys_wilson_intervals() -> None:
    actual, _, predicted = classified(500, 0.83, RNG)
    hits = int(np.sum(actual == predicted))
    for confidence in (0.9, 0.95, 0.99):
        result = perf.classification("accuracy", actual, predicted, confidence)
        oracle = stats.binomtest(hits, 500).proportion_ci(confidence, method="wilson")
        assert (result.low, result.high) == pytest.approx((oracle.low, oracle.high), abs=1e-12)


def test_wilson_interval_covers_the_true_accuracy_95_percent_of_the_time() -> None:
    """Coverage computed exactly (every count k weighted by its binomial probability): over
    accuracies 0.70-0.95 at n = 200 it averages 95%, and never falls far below (a Wald interval
    would, near 0.95)."""
    n = 200
    bounds = np.array([perf.wilson_interval(k, n) for k in range(n + 1)])
    coverage = []
    for p in np.linspace(0.70, 0.95, 26):
        covered = (bounds[:, 0] <= p) & (p <= bounds[:, 1])
        coverage.append(float(stats.binom.pmf(np.arange(n + 1), n, p)[covered].sum()))
    assert 0.94 <= np.mean(coverage) <= 0.96
    assert min(coverage) > 0.92


def test_roc_auc_matches_sklearn_and_delong_covers_the_true_auc() -> None:
    actual, score, _ = classified(800, 0.8, RNG)
    assert perf.roc_auc(actual, score).value == pytest.approx(skm.roc_auc_score(actual, score))
    # Binormal scores: positives N(d, 1), negatives N(0, 1), so the true AUC is Phi(d / sqrt 2).
    rng = np.random.default_rng(3)
    d, covered = 1.0, []
    truth = float(stats.norm.cdf(d / np.sqrt(2)))
    for _ in range(400):
        y = rng.random(300) < 0.3
        s = rng.normal(np.where(y, d, 0.0), 1.0)
        result = perf.roc_auc(y, s)
        covered.append(result.low <= truth <= result.high)
    assert 0.92 <= np.mean(covered) <= 0.975


@pytest.mark.parametrize("metric", ["rmse", "mae"])
def test_regression_metrics_match_sklearn_and_their_intervals_cover(metric: Any) -> None:
    rng = np.random.default_rng(11)
    actual = rng.normal(10, 3, 400)
    predicted = actual + rng.normal(0, 2, 400)
    oracle = (
        np.sqrt(skm.mean_squared_error(actual, predicted))
        if metric == "rmse"
        else skm.mean_absolute_error(actual, predicted)
    )
    result = perf.regression(metric, actual, predicted)
    assert result.value == pytest.approx(oracle, rel=1e-12)
    assert perf.regression(metric, actual, predicted) == result  # seeded: reproducible
    # Errors N(0, 2): the true RMSE is 2, the true MAE 2 * sqrt(2 / pi).
    truth = 2.0 if metric == "rmse" else 2 * np.sqrt(2 / np.pi)
    covered = []
    for _ in range(150):
        errors = rng.normal(0, 2, 400)
        found = perf.regression(metric, np.zeros(400), errors)
        covered.append(found.low <= truth <= found.high)
    assert 0.88 <= np.mean(covered) <= 0.99


def test_f1_interval_covers_the_true_f1() -> None:
    rng = np.random.default_rng(5)
    # Cells TP, FP, FN, TN with these shares: the true F1 is 2TP / (2TP + FP + FN).
    shares = np.array([0.3, 0.1, 0.15, 0.45])
    truth = 2 * 0.3 / (2 * 0.3 + 0.1 + 0.15)
    covered = []
    for _ in range(300):
        cells = rng.choice(4, size=300, p=shares)
        actual, predicted = np.isin(cells, [0, 2]), np.isin(cells, [0, 1])
        result = perf.classification("f1", actual, predicted)
        covered.append(result.low <= truth <= result.high)
    assert 0.92 <= np.mean(covered) <= 0.98


def test_isotonic_fit_matches_sklearn() -> None:
    rng = np.random.default_rng(2)
    x = np.round(rng.random(2_000), 3)  # ties, as scores have
    y = (rng.random(2_000) < x**2).astype(float)
    ours = perf.isotonic_fit(x, y)
    theirs = IsotonicRegression(out_of_bounds="clip").fit(x, y)
    probe = np.linspace(-0.1, 1.1, 500)
    assert ours(probe) == pytest.approx(theirs.predict(probe), abs=1e-9)


def test_cbpe_estimates_the_realised_metrics_under_calibrated_covariate_shift() -> None:
    """The model's score is a distorted but monotone function of the true probability, the
    features shift window by window (accuracy moves), and the relation y|x stays: calibrated
    on the reference, CBPE's estimate is within a few points of the realised metric, which is
    computed from labels the estimator never sees."""
    rng = np.random.default_rng(20261205)

    def window(mean: float, n: int) -> tuple[Any, Any]:
        x = rng.normal(mean, 1.0, n)
        truth = 1 / (1 + np.exp(-2.5 * x))
        return (rng.random(n) < truth), truth**0.5  # labels, the model's (uncalibrated) score

    ref_labels, ref_score = window(0.0, 20_000)
    calibration = perf.isotonic_fit(ref_score, ref_labels)
    cutoff = 0.75  # score >= 0.75 (truth >= 0.56) is predicted positive
    realised_accuracies = []
    for mean in (0.0, 0.6, -0.6, 1.2, -1.2):
        labels, score = window(mean, 4_000)
        predicted = score >= cutoff
        for metric in ("accuracy", "precision", "recall", "f1"):
            estimate = perf.cbpe(metric, calibration(score), predicted)
            realised = perf.classification(metric, labels, predicted).value
            assert estimate.value == pytest.approx(realised, abs=0.03), (metric, mean)
            assert estimate.low - 0.01 <= realised <= estimate.high + 0.01, (metric, mean)
        realised_accuracies.append(perf.classification("accuracy", labels, predicted).value)
    assert max(realised_accuracies) - min(realised_accuracies) > 0.05  # the shift mattered


# ------------------------------------------------------------------------------------------ joins


def test_match_ids_takes_the_last_label_and_one_spelling_of_an_id() -> None:
    found = match_ids(["a", 7, "8", None, "z", 9.0], ["8", "a", 7, "a", 9])
    assert found.tolist() == [3, 2, 0, -1, -1, 4]


def test_match_nearest_agrees_with_pandas_merge_asof() -> None:
    rng = np.random.default_rng(8)
    base = pd.Timestamp("2026-12-01", tz="UTC")
    predictions = pd.DataFrame({
        "t": base + pd.to_timedelta(rng.integers(0, 3_600, 500), unit="s"),
        "customer": rng.integers(0, 20, 500),
        "row": np.arange(500),
    })  # fmt: skip
    labels = pd.DataFrame({
        "t": base + pd.to_timedelta(rng.integers(0, 3_600, 400), unit="s"),
        "customer": rng.integers(0, 20, 400),
        "label_row": np.arange(400),
    })  # fmt: skip
    tolerance = pd.Timedelta(minutes=2)
    found = match_nearest(
        predictions["t"].to_numpy("datetime64[ns]").astype(np.int64),
        labels["t"].to_numpy("datetime64[ns]").astype(np.int64),
        int(tolerance.value),
        predictions["customer"].to_numpy(),
        labels["customer"].to_numpy(),
    )
    oracle = pd.merge_asof(
        predictions.sort_values("t"),
        labels.sort_values(["t", "label_row"]),
        on="t",
        by="customer",
        tolerance=tolerance,
        direction="nearest",
    ).sort_values("row")
    expected = oracle["label_row"].fillna(-1).astype(int).to_numpy()
    matched = expected >= 0
    assert (found >= 0).tolist() == matched.tolist()
    # Where two labels are equally near, either is right: compare the distance, not the row.
    times = labels["t"].to_numpy("datetime64[ns]").astype(np.int64)
    mine = np.abs(times[found[matched]] - predictions["t"].to_numpy("datetime64[ns]")[matched]
                  .astype(np.int64))  # fmt: skip
    theirs = np.abs(times[expected[matched]] - predictions["t"].to_numpy("datetime64[ns]")
                    [matched].astype(np.int64))  # fmt: skip
    assert mine.tolist() == theirs.tolist()
    assert (labels["customer"].to_numpy()[found[matched]] == predictions["customer"][matched]).all()


def test_classes_compare_across_spellings() -> None:
    assert as_classes([1, 1.0, "1", True, 0, False, None, "yes"]).tolist() == [
        "1", "1", "1", "1", "0", "0", None, "yes",
    ]  # fmt: skip


# ----------------------------------------------------------------------------- configuration


LABELS = {"source": "live", "column": "is_fraud", "join": {"on": "request_id"}, "delay": "1m"}
ACCURACY = {
    "name": "accuracy",
    "type": "performance",
    "metric": "accuracy",
    "score": "score",
    "below": 0.85,
    "min_samples": 200,
}


def rules_with(check: dict[str, Any], labels: dict[str, Any] | None = LABELS) -> str:
    target = {**BASE_TARGET, "checks": [check], "trigger": "any"}
    if labels is not None:
        target["labels"] = labels
    return yaml.safe_dump({"version": 1, "sources": SOURCES, "targets": [target]}, sort_keys=False)


@pytest.mark.parametrize(
    ("check", "labels", "key", "message"),
    [
        ({**ACCURACY, "metric": "roc_auc", "score": None}, LABELS, "checks[0]", "needs `score:`"),
        (
            {**ACCURACY, "estimate": "cbpe", "score": None, "prediction": "score"},
            LABELS,
            "checks[0]",
            "cbpe needs `score:`",
        ),
        (ACCURACY, None, "checks[0].metric", "needs the target's `labels:`"),
        ({**ACCURACY, "score": "nope"}, LABELS, "checks[0].score", "not declared"),
        ({**ACCURACY, "estimate": "cbpe"}, None, "checks[0].estimate", "reference's labels"),
        (ACCURACY, {**LABELS, "source": "prom"}, "labels.source", "of type prometheus"),
        (ACCURACY, {**LABELS, "column": "age"}, "labels.column", "also declared"),
        (ACCURACY, {**LABELS, "join": {"on": "id", "key": "c"}}, "labels.join", "`key` goes"),
        ({**ACCURACY, "metric": "rmse"}, LABELS, "checks[0]", "needs `prediction:`"),
    ],
)
def test_config_errors_say_where_and_what(
    check: dict[str, Any], labels: dict[str, Any] | None, key: str, message: str
) -> None:
    check = {k: v for k, v in check.items() if v is not None}
    issues = issues_of(rules_with(check, labels))
    assert issues, "the config should be refused"
    assert any(key in issue.path and message in issue.message for issue in issues), [
        (issue.path, issue.message) for issue in issues
    ]
    assert all(issue.line for issue in issues)


# ------------------------------------------------------------------------------ the state machine


def labelled(n: int, accuracy: float, seed: int) -> pd.DataFrame:
    """Joined rows whose predicted class (score >= 0.5) is right on about `accuracy` of them."""
    rng = np.random.default_rng(seed)
    score = rng.random(n)
    wrong = rng.random(n) > accuracy
    label = np.where(wrong, score < 0.5, score >= 0.5)
    return pd.DataFrame({"score": score, "is_fraud": label.astype(int)})


def observation(i: int, accuracy: float | None, n: int = 600) -> Observation:
    rows = None if accuracy is None else labelled(n, accuracy, seed=i)
    status = DataStatus.NO_DATA if rows is None else DataStatus.OK
    return Observation(
        "credit-model", at(i), labels=LabelledRows(rows, status, "labels source says no rows")
    )


def performance_target() -> Any:
    return make_target({"checks": [ACCURACY], "trigger": "accuracy", "labels": LABELS})


def test_accuracy_below_the_limit_goes_pending_then_fires_after_for() -> None:
    target = performance_target()
    steps = int(FOR.total_seconds() // 10)
    healthy = [observation(i, 0.95) for i in range(3)]
    degraded = [observation(3 + i, 0.70) for i in range(steps + 2)]
    ticks = run(target, healthy + degraded)
    states = [t.state.checks["accuracy"].state for t in ticks]
    assert states[:3] == [CheckState.INACTIVE] * 3
    assert states[3] is CheckState.PENDING
    assert states[3 + steps] is CheckState.FIRING
    assert all(s is CheckState.PENDING for s in states[3 : 3 + steps])
    [result] = ticks[3].results
    assert result.interval is not None and result.interval[1] < 0.85
    assert result.reason.startswith("accuracy 0.7")
    assert "is below 0.85 (n=600 labelled rows)" in result.reason
    assert len(rollbacks(ticks)) == 1
    assert phases(ticks)[-1] is not phases(ticks)[0]


def test_too_few_labels_or_none_never_breach() -> None:
    target = performance_target()
    few = observation(0, 0.5, n=150)  # accuracy 0.5, but 150 rows < min_samples 200
    ticks = run(target, [few, observation(1, None)] * 10)
    assert [r.status for r in ticks[0].results] == [DataStatus.INSUFFICIENT]
    assert "150 labelled rows, need 200" in ticks[0].results[0].reason
    assert [r.status for r in ticks[1].results] == [DataStatus.NO_DATA]
    assert not rollbacks(ticks)
    assert all(t.state.checks["accuracy"].state is CheckState.INACTIVE for t in ticks)


def test_breach_on_interval_spares_noise_that_breach_on_value_flags() -> None:
    """A point estimate just under the limit, on a small window: the interval straddles it."""
    score = np.random.default_rng(99).random(250)
    right = np.arange(250) < 208  # accuracy 0.832
    label = np.where(right, score >= 0.5, score < 0.5).astype(int)
    rows = pd.DataFrame({"score": score, "is_fraud": label})
    hits = (rows["score"] >= 0.5).astype(int) == rows["is_fraud"]
    obs = Observation("credit-model", at(0), labels=LabelledRows(rows, DataStatus.OK))
    by_interval = make_target({"checks": [ACCURACY], "trigger": "any", "labels": LABELS})
    by_value = make_target({
        "checks": [{**ACCURACY, "breach_on": "value"}], "trigger": "any", "labels": LABELS
    })  # fmt: skip
    [spared] = measure(by_interval, obs)
    [flagged] = measure(by_value, obs)
    assert spared.status is DataStatus.OK and not spared.breaching
    assert "is not wholly below 0.85" in spared.reason
    assert flagged.breaching and flagged.value == pytest.approx(hits.mean())


def test_multiclass_accuracy_and_positive_class_from_a_prediction_column() -> None:
    """With `prediction:` accuracy counts the rows whose class is the label's (any class), and
    precision/recall take `positive` as the class; labels as text match predictions as numbers."""
    rng = np.random.default_rng(21)
    actual = rng.integers(0, 3, 900)
    predicted = np.where(rng.random(900) < 0.8, actual, rng.integers(0, 3, 900))
    rows = pd.DataFrame({"label_pred": predicted, "is_fraud": actual.astype(str)})
    checks = [
        {"name": "acc", "type": "performance", "metric": "accuracy", "prediction": "label_pred",
         "below": 0.5},
        {"name": "rec", "type": "performance", "metric": "recall", "prediction": "label_pred",
         "positive": 2, "below": 0.5},
    ]  # fmt: skip
    columns = {**BASE_COLUMNS, "predictions": {"score": "numeric", "label_pred": "categorical"}}
    target = make_target({"checks": checks, "trigger": "any", "labels": LABELS, "columns": columns})
    obs = Observation("credit-model", at(0), labels=LabelledRows(rows, DataStatus.OK))
    accuracy, recall = measure(target, obs)
    assert accuracy.value == pytest.approx(skm.accuracy_score(actual, predicted))
    assert recall.value == pytest.approx(skm.recall_score(actual == 2, predicted == 2))
    assert not accuracy.breaching and not recall.breaching
