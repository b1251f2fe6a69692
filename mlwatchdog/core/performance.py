"""Performance checks: a metric from the labelled rows (or estimated by CBPE) against a limit.

Pure. The value is judged through its confidence interval by default (`breach_on: interval`):
"accuracy below 0.85" breaches when the whole interval is below 0.85, so a small window's noise
is no outage; `breach_on: value` judges the point estimate. Too few rows is `insufficient`.
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np

from mlwatchdog.core.labels import as_classes
from mlwatchdog.core.model import CheckResult, DataStatus, LabelledRows, Observation
from mlwatchdog.detectors import performance as perf
from mlwatchdog.rules import PerformanceCheck, Target


def measure_performance(
    target: Target, check: PerformanceCheck, observation: Observation
) -> CheckResult:
    """The check's result on the observation (labels joined, or the window for CBPE)."""
    limit = check.above if check.above is not None else check.below
    try:
        result, what = _result(target, check, observation)
    except _Unusable as why:
        return CheckResult(check.name, why.status, threshold=limit, reason=why.reason)
    if result.n < check.min_samples or result.value != result.value:
        got = f"{result.n:,} {what}"
        if result.n >= check.min_samples:  # undefined: no positive predicted or labelled
            reason = f"{check.metric} is undefined on {got} (no positive class among them)"
        else:
            reason = f"{got}, need {check.min_samples:,}"
        return CheckResult(check.name, DataStatus.INSUFFICIENT, threshold=limit, reason=reason)
    low, high = result.low, result.high
    bound = high if check.below is not None else low
    judged = result.value if check.breach_on == "value" or bound != bound else bound
    if check.below is not None:
        breaching, relation = judged < check.below, f"below {check.below:g}"
    else:
        assert check.above is not None
        breaching, relation = judged > check.above, f"above {check.above:g}"
    wholly = "" if check.breach_on == "value" else "wholly "
    verdict = "is" if breaching else f"is not {wholly}".rstrip()
    label = f"{check.metric}" + (" (cbpe estimate)" if check.estimate else "")
    return CheckResult(
        check.name,
        DataStatus.OK,
        breaching=bool(breaching),  # numpy's bool is not JSON (the state is saved as JSON)
        value=float(result.value),
        threshold=limit,
        reason=f"{label} {result.value:.3g} [{low:.3g}, {high:.3g}] {verdict} {relation} "
        f"(n={result.n:,} {what})",
        interval=(float(low), float(high)),
    )


class _Unusable(Exception):
    def __init__(self, status: DataStatus, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


def _result(
    target: Target, check: PerformanceCheck, observation: Observation
) -> tuple[perf.PerformanceResult, str]:
    labels = observation.labels or LabelledRows(reason="the target has no labels")
    assert target.labels is not None  # the config's cross-checks require it
    label = target.labels.column
    if check.estimate == "cbpe":
        if observation.samples_status is not DataStatus.OK or observation.samples is None:
            raise _Unusable(observation.samples_status, observation.samples_reason or "no rows")
        if labels.reference_status is not DataStatus.OK or labels.reference is None:
            reason = f"reference labels: {labels.reference_reason or 'not read'}"
            raise _Unusable(labels.reference_status, reason)
        assert check.score is not None
        score, ref_score, ref_label = (
            _column(observation.samples, check.score, float),
            (_column(labels.reference, check.score, float)),
            _column(labels.reference, label, object),
        )
        known = np.isfinite(ref_score) & np.array([v is not None for v in as_classes(ref_label)])
        if not known.any():
            raise _Unusable(DataStatus.INSUFFICIENT, "no reference row has a score and a label")
        positive = as_classes([check.positive])[0]
        calibration = perf.isotonic_fit(ref_score[known], as_classes(ref_label[known]) == positive)
        rows = np.isfinite(score)
        predicted = _predicted(check, observation.samples, rows)
        estimated = perf.cbpe(check.metric, calibration(score[rows]), predicted, check.confidence)
        return estimated, "rows, labels estimated"
    if labels.status is not DataStatus.OK or labels.rows is None:
        raise _Unusable(labels.status, f"labels: {labels.reason or 'none joined'}")
    frame = labels.rows
    if check.metric in perf.REGRESSION:
        assert check.prediction is not None
        actual = _column(frame, label, float)
        predicted_values = _column(frame, check.prediction, float)
        rows = np.isfinite(actual) & np.isfinite(predicted_values)
        found = perf.regression(
            check.metric, actual[rows], predicted_values[rows], check.confidence
        )
        return found, "labelled rows"
    classes = as_classes(_column(frame, label, object))
    rows = np.array([c is not None for c in classes], dtype=bool)
    positive = as_classes([check.positive])[0]
    if check.metric == "roc_auc":
        assert check.score is not None
        score = _column(frame, check.score, float)
        rows &= np.isfinite(score)
        return perf.roc_auc(classes[rows] == positive, score[rows], check.confidence), (
            "labelled rows"
        )
    if check.prediction is None:
        assert check.score is not None
        rows &= np.isfinite(_column(frame, check.score, float))
    else:
        rows &= np.array(
            [c is not None for c in as_classes(_column(frame, check.prediction, object))]
        )
    predicted = _predicted(check, frame, rows)
    if check.metric == "accuracy" and check.prediction is not None:
        # Multi-class accuracy: the predicted class equals the label (not only "positive").
        hits = as_classes(_column(frame, check.prediction, object))[rows] == classes[rows]
        found = perf.proportion("accuracy", int(hits.sum()), len(hits), check.confidence)
        return found, "labelled rows"
    actual = classes[rows] == positive
    return perf.classification(check.metric, actual, predicted, check.confidence), "labelled rows"


def _predicted(check: PerformanceCheck, frame: Any, rows: Any) -> Any:
    """Whether each of `rows` was predicted positive: its class, or its score >= cutoff."""
    if check.prediction is not None:
        return (
            as_classes(_column(frame, check.prediction, object))[rows]
            == (as_classes([check.positive])[0])
        )
    assert check.score is not None
    return _column(frame, check.score, float)[rows] >= check.cutoff


def _column(frame: Any, column: str, kind: type) -> Any:
    if column not in frame.columns:
        raise _Unusable(DataStatus.ERROR, f"column {column!r} is missing from the rows read")
    if kind is float:
        try:
            return np.asarray(frame[column].to_numpy(dtype=float, na_value=np.nan), dtype=float)
        except (TypeError, ValueError):  # text among numbers: convert one by one below
            pass
    values = np.asarray(frame[column].to_numpy(dtype=object))
    if kind is float:
        floats = np.full(len(values), np.nan)
        for i, v in enumerate(values.tolist()):
            with contextlib.suppress(TypeError, ValueError):  # not a number: stays NaN
                floats[i] = float(v) if v is not None and not isinstance(v, bool) else np.nan
        return floats
    return values
