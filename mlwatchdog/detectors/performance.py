"""Model performance from labels, with confidence intervals, and estimated without labels (CBPE).

Pure numpy/scipy. Classification metrics take boolean arrays (`actual`, `predicted`: the row is
of the positive class) or scores; regression metrics take numbers. Every metric comes back as a
`PerformanceResult` (value, interval, n), as scipy.stats' tests come back as result objects.

Intervals: Wilson score for the proportions (accuracy, precision, recall), DeLong for ROC AUC, a
bootstrap of the confusion matrix's counts for F1 (multinomial draws: exact and O(draws), not
O(draws x rows)), and a seeded percentile bootstrap of the rows for RMSE/MAE (a normal interval
above `BOOTSTRAP_MAX_ROWS` rows, where the central limit holds and resampling would cost seconds).

CBPE (confidence-based performance estimation, as NannyML's CBPE): scores are calibrated on the
reference's labels by isotonic regression (pool adjacent violators); each current row's
calibrated probability is its chance of being positive, so the expected confusion matrix, and the
metrics from it, are known without labels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats

Metric = Literal["accuracy", "precision", "recall", "f1", "roc_auc", "rmse", "mae"]
CLASSIFICATION: tuple[Metric, ...] = ("accuracy", "precision", "recall", "f1", "roc_auc")
REGRESSION: tuple[Metric, ...] = ("rmse", "mae")
ESTIMABLE: tuple[Metric, ...] = ("accuracy", "precision", "recall", "f1")  # by CBPE
BOOTSTRAP_DRAWS = 1000
BOOTSTRAP_MAX_ROWS = 20_000
SEED = 20261205  # intervals are reproducible: the same window gives the same interval

Floats = NDArray[np.float64]
Bools = NDArray[np.bool_]


@dataclass(frozen=True)
class PerformanceResult:
    """A metric's value over `n` rows and its confidence interval [low, high] (NaN when the
    metric is undefined, e.g. precision with no predicted positive)."""

    metric: str
    value: float
    low: float
    high: float
    n: int
    confidence: float = 0.95


def _z(confidence: float) -> float:
    return float(stats.norm.ppf(0.5 + confidence / 2))


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of a proportion successes/n (NaN, NaN for n = 0)."""
    if n == 0:
        return float("nan"), float("nan")
    z = _z(confidence)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def proportion(metric: str, hits: int, n: int, confidence: float = 0.95) -> PerformanceResult:
    """A metric that is a share of rows (hits of n), with its Wilson interval."""
    low, high = wilson_interval(hits, n, confidence)
    value = hits / n if n else float("nan")
    return PerformanceResult(metric, value, low, high, n, confidence)


def _f1(tp: Floats, fp: Floats, fn: Floats) -> Floats:
    denominator = 2 * tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1e-300), np.nan)


def classification(
    metric: Metric, actual: ArrayLike, predicted: ArrayLike, confidence: float = 0.95
) -> PerformanceResult:
    """accuracy, precision, recall or F1 of boolean predictions (True: the positive class)."""
    y = np.asarray(actual, dtype=bool)
    p = np.asarray(predicted, dtype=bool)
    n = len(y)
    tp, fp = int(np.sum(y & p)), int(np.sum(~y & p))
    fn, tn = int(np.sum(y & ~p)), n - int(np.sum(y | p))
    if metric == "accuracy":
        return proportion(metric, tp + tn, n, confidence)
    if metric == "precision":
        return proportion(metric, tp, tp + fp, confidence)
    if metric == "recall":
        return proportion(metric, tp, tp + fn, confidence)
    if metric != "f1":
        raise ValueError(f"{metric} is not a label metric of predicted classes")
    counts = np.array([tp, fp, fn, tn], dtype=float)
    value = float(_f1(counts[:1], counts[1:2], counts[2:3])[0])
    if n == 0:
        return PerformanceResult(metric, value, float("nan"), float("nan"), 0, confidence)
    draws = np.random.default_rng(SEED).multinomial(n, counts / n, size=BOOTSTRAP_DRAWS)
    boot = _f1(draws[:, 0].astype(float), draws[:, 1].astype(float), draws[:, 2].astype(float))
    low, high = _percentiles(boot, confidence)
    return PerformanceResult(metric, value, low, high, n, confidence)


def _percentiles(values: Floats, confidence: float) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    if not len(finite):
        return float("nan"), float("nan")
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(finite, [tail, 100 - tail])
    return float(low), float(high)


def roc_auc(actual: ArrayLike, score: ArrayLike, confidence: float = 0.95) -> PerformanceResult:
    """ROC AUC (the Mann-Whitney probability that a positive outscores a negative, ties half)
    with DeLong's interval (DeLong, DeLong & Clarke-Pearson 1988, by midranks)."""
    y = np.asarray(actual, dtype=bool)
    s = np.asarray(score, dtype=float)
    positives, negatives = s[y], s[~y]
    m, k = len(positives), len(negatives)
    if m == 0 or k == 0:
        nan = float("nan")
        return PerformanceResult("roc_auc", nan, nan, nan, len(y), confidence)
    ranks = stats.rankdata(np.concatenate([positives, negatives]))
    ranks_pos, ranks_neg = ranks[:m], ranks[m:]
    auc = (ranks_pos.sum() - m * (m + 1) / 2) / (m * k)
    # Structural components: each positive's share of negatives below it, each negative's
    # share of positives above it (ranks within its own class remove the same-class part).
    v10 = (ranks_pos - stats.rankdata(positives)) / k
    v01 = 1 - (ranks_neg - stats.rankdata(negatives)) / m
    variance = (np.var(v10, ddof=1) if m > 1 else 0.0) / m + (
        np.var(v01, ddof=1) if k > 1 else 0.0
    ) / k
    half = _z(confidence) * float(np.sqrt(variance))
    low, high = max(0.0, auc - half), min(1.0, auc + half)
    return PerformanceResult("roc_auc", float(auc), low, high, len(y), confidence)


def regression(
    metric: Metric, actual: ArrayLike, predicted: ArrayLike, confidence: float = 0.95
) -> PerformanceResult:
    """RMSE or MAE of predicted numbers, with a seeded percentile bootstrap interval (a normal
    interval of the mean squared / absolute error above BOOTSTRAP_MAX_ROWS rows)."""
    errors = np.asarray(predicted, dtype=float) - np.asarray(actual, dtype=float)
    loss = errors**2 if metric == "rmse" else np.abs(errors)
    finish: Callable[[Floats], Floats] = np.sqrt if metric == "rmse" else np.asarray
    n = len(loss)
    if n == 0:
        nan = float("nan")
        return PerformanceResult(metric, nan, nan, nan, 0, confidence)
    value = float(finish(np.array([loss.mean()]))[0])
    if n > BOOTSTRAP_MAX_ROWS:
        half = _z(confidence) * float(loss.std(ddof=1)) / np.sqrt(n)
        bounds = finish(np.maximum(np.array([loss.mean() - half, loss.mean() + half]), 0.0))
        return PerformanceResult(metric, value, float(bounds[0]), float(bounds[1]), n, confidence)
    rng = np.random.default_rng(SEED)
    chunk = max(1, 2_000_000 // n)  # rows of indices drawn at once: bounded memory
    means = np.concatenate([
        loss[rng.integers(0, n, size=(min(chunk, BOOTSTRAP_DRAWS - start), n))].mean(axis=1)
        for start in range(0, BOOTSTRAP_DRAWS, chunk)
    ])  # fmt: skip
    low, high = _percentiles(finish(means), confidence)
    return PerformanceResult(metric, value, low, high, n, confidence)


# ------------------------------------------------------------------------------------ CBPE


@dataclass(frozen=True)
class Calibration:
    """An isotonic (non-decreasing) map from scores to probabilities: at `scores` (ascending)
    the fitted `probabilities`, interpolated linearly between them and flat beyond (as
    scikit-learn's IsotonicRegression with out_of_bounds='clip')."""

    scores: Floats
    probabilities: Floats

    def __call__(self, score: ArrayLike) -> Floats:
        fitted: Floats = np.interp(np.asarray(score, dtype=float), self.scores, self.probabilities)
        return fitted


def isotonic_fit(x: ArrayLike, y: ArrayLike) -> Calibration:
    """The least-squares non-decreasing fit of y on x, by pool adjacent violators. Rows with the
    same x are pooled first (their mean), as scikit-learn does."""
    xs = np.asarray(x, dtype=float)
    ys = np.asarray(y, dtype=float)
    keep = np.isfinite(xs) & np.isfinite(ys)
    xs, ys = xs[keep], ys[keep]
    if not len(xs):
        raise ValueError("no rows with both a score and a label to calibrate on")
    unique, inverse = np.unique(xs, return_inverse=True)
    weights = np.bincount(inverse).astype(float)
    means = np.bincount(inverse, weights=ys) / weights
    # Blocks as a stack of (sum of weight*mean, weight, count of unique x); merge while the
    # last block's mean is not above the one before it.
    sums: list[float] = []
    totals: list[float] = []
    sizes: list[int] = []
    for mean, weight in zip(means.tolist(), weights.tolist(), strict=True):
        sums.append(mean * weight)
        totals.append(weight)
        sizes.append(1)
        while len(sums) > 1 and sums[-2] / totals[-2] >= sums[-1] / totals[-1]:
            s, t, c = sums.pop(), totals.pop(), sizes.pop()
            sums[-1] += s
            totals[-1] += t
            sizes[-1] += c
    fitted = np.repeat(np.array(sums) / np.array(totals), sizes)
    return Calibration(unique, fitted)


def cbpe(
    metric: Metric,
    probability: ArrayLike,
    predicted: ArrayLike,
    confidence: float = 0.95,
    draws: int = 200,
) -> PerformanceResult:
    """The expected accuracy, precision, recall or F1 of boolean predictions whose rows are
    positive with the calibrated `probability`, as NannyML's CBPE: from the expected confusion
    matrix (TP = sum of p over predicted positives, ...). The interval is that of the realised
    metric if labels were drawn from those probabilities (seeded simulation)."""
    prob = np.clip(np.asarray(probability, dtype=float), 0.0, 1.0)
    pred = np.asarray(predicted, dtype=bool)
    n = len(prob)
    if metric not in ESTIMABLE:
        raise ValueError(f"CBPE estimates {', '.join(ESTIMABLE)}, not {metric}")
    if n == 0:
        nan = float("nan")
        return PerformanceResult(metric, nan, nan, nan, 0, confidence)
    tp = np.array([prob[pred].sum()])
    fp = np.array([(1 - prob[pred]).sum()])
    fn = np.array([prob[~pred].sum()])
    tn = np.array([(1 - prob[~pred]).sum()])
    value = float(_from_counts(metric, tp, fp, fn, tn, n)[0])
    rng = np.random.default_rng(SEED)
    chunk = max(1, 2_000_000 // n)
    simulated = []
    for start in range(0, draws, chunk):
        labels = rng.random((min(chunk, draws - start), n)) < prob
        s_tp = (labels & pred).sum(axis=1).astype(float)
        s_fp = (~labels & pred).sum(axis=1).astype(float)
        s_fn = (labels & ~pred).sum(axis=1).astype(float)
        s_tn = n - s_tp - s_fp - s_fn
        simulated.append(_from_counts(metric, s_tp, s_fp, s_fn, s_tn, n))
    low, high = _percentiles(np.concatenate(simulated), confidence)
    return PerformanceResult(metric, value, low, high, n, confidence)


def _from_counts(metric: Metric, tp: Floats, fp: Floats, fn: Floats, tn: Floats, n: int) -> Floats:
    with np.errstate(invalid="ignore", divide="ignore"):
        if metric == "accuracy":
            return np.asarray((tp + tn) / n, dtype=float)
        if metric == "precision":
            return np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1e-300), np.nan)
        if metric == "recall":
            return np.where(tp + fn > 0, tp / np.maximum(tp + fn, 1e-300), np.nan)
        return _f1(tp, fp, fn)
