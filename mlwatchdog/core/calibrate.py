"""Calibrate a drift check's alpha so that a target's stated false-alarm rate holds over time.

A target with `false_alarms: {every: 28d}` evaluated every `interval` may breach, on data that has
not drifted, with probability q = interval / every per evaluation (split evenly across its
calibrated checks); a check can only start a new alarm on an evaluation where it breaches, so
alarms then come at most once per `every` on average, however the overlapping windows correlate.

The chance of a breach at a given alpha is measured, not assumed: bootstrap replicates draw a
reference and a window with no drift from the reference's own rows (`Reference.resample`, whole
rows, so correlated columns stay correlated) and run the check exactly as `measure` does (its
test, correction, drift_share and recent sub-windows). Each replicate gives the smallest alpha at
which it would breach; alpha is their q-quantile. q is usually far below 1/replicates, so the
lower tail is extrapolated with a power law fitted to the smallest tenth (P(breach) ~ a * alpha^b;
b is 1 when any one column breaches, about j when j columns must). Effect floors are left out:
they only remove breaches, so the rate stays an upper bound.

Calibrations are deterministic (seeded by the reference's fingerprint and the check) and cached by
the reference's fingerprint and the window's size, to a quarter octave.
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import numpy as np

from mlwatchdog.detectors import REGISTRY, DriftResult, Reference
from mlwatchdog.detectors.reference import KEPT_ROWS
from mlwatchdog.rules import DriftCheck, Target, drift_columns

# The smallest replicates' share that the lower tail is fitted on, and at least this many of them.
TAIL_SHARE = 0.1
TAIL_MIN = 10
_CACHE_SIZE = 256


@dataclass(frozen=True)
class Calibration:
    """A check's alpha for a stated false-alarm rate, and how it was found."""

    alpha: float
    level: float  # the chance of a breach per evaluation it is set for (q)
    every: timedelta  # the target's false_alarms.every
    replicates: int
    rows: int  # the window size the replicates had

    def describe(self) -> str:
        every = _human(self.every)
        return f"alpha {self.alpha:.3g} calibrated for at most one false alarm per {every}"


def calibrated_checks(target: Target) -> list[DriftCheck]:
    """The checks a target's false_alarms calibrates: drift checks whose test has a p-value."""
    if target.false_alarms is None:
        return []
    return [c for c in target.checks if isinstance(c, DriftCheck) and REGISTRY[c.test].has_pvalue]


def breach_level(target: Target, check: DriftCheck) -> float | None:
    """The per-evaluation chance of a false breach `check` is allowed (q), or None when the
    target states no false-alarm rate or the check has no p-value to calibrate."""
    checks = calibrated_checks(target)
    if check not in checks or target.false_alarms is None:
        return None
    q = target.interval / target.false_alarms.every
    return q / len(checks)


_cache: OrderedDict[tuple[object, ...], Calibration] = OrderedDict()


def calibrate(
    target: Target,
    check: DriftCheck,
    reference: Reference,
    n_rows: int,
    sizes_for: Callable[[int], list[int]],
) -> Calibration | None:
    """`check`'s alpha for windows of about `n_rows` rows against `reference` (cached), or None
    when it is not calibrated. `sizes_for(n)` gives the row counts `measure` tests in a window of
    n rows (the whole window last)."""
    q = breach_level(target, check)
    if q is None or target.false_alarms is None:
        return None
    replicates = target.false_alarms.bootstrap
    rows = _canonical_rows(n_rows)
    key = (
        reference.fingerprint, check.name, check.test, check.correction, check.drift_share,
        check.bins, check.binning, tuple(drift_columns(target, check)), check.recent_rows,
        target.samples.min_samples, rows, q, replicates,
    )  # fmt: skip
    if key in _cache:
        _cache.move_to_end(key)
        return _cache[key]
    levels = _replicate_levels(target, check, reference, rows, sizes_for(rows), replicates)
    alpha = alpha_for(levels, q)
    found = Calibration(alpha, q, target.false_alarms.every, replicates, rows)
    _cache[key] = found
    if len(_cache) > _CACHE_SIZE:
        _cache.popitem(last=False)
    return found


def breach_alpha(result: DriftResult, drift_share: float) -> float:
    """The smallest alpha at which `result` would have at least `drift_share` of its sufficient
    columns drifted (inf when none is sufficient): the j-th smallest adjusted p-value."""
    adjusted = result.pvalue_adjusted()[result.sufficient]
    n = adjusted.size
    if n == 0:
        return math.inf
    j = next(j for j in range(1, n + 1) if j / n >= drift_share)  # as share_drifted compares
    return float(np.partition(adjusted, j - 1)[j - 1])


def alpha_for(levels: np.ndarray, q: float) -> float:
    """The alpha at which a share q of the replicates breach: `levels` are each replicate's
    smallest breaching alpha. The empirical quantile when q * replicates >= TAIL_MIN, otherwise
    a power law a * alpha^b fitted to the lower tail and solved for q."""
    count = levels.size
    finite = np.sort(levels[np.isfinite(levels) & (levels > 0)])
    if q * count >= TAIL_MIN:
        index = int(q * count)
        return float(finite[index]) if index < finite.size else 1.0
    k = max(TAIL_MIN, int(TAIL_SHARE * count))
    if finite.size < k:
        return q  # too few replicates could breach at all: q is the safe choice
    tail = finite[:k]
    share = (np.arange(1, k + 1) - 0.5) / count  # plotting positions of the smallest k
    slope, intercept = np.polyfit(np.log(tail), np.log(share), 1)
    if not slope > 0:
        return q
    alpha = math.exp((math.log(q) - intercept) / slope)
    return float(min(alpha, tail[-1]))


def _replicate_levels(
    target: Target,
    check: DriftCheck,
    reference: Reference,
    rows: int,
    sizes: list[int],
    replicates: int,
) -> np.ndarray:
    """Each replicate's smallest breaching alpha (for the whole check: any sub-window, with the
    Bonferroni split across them that `measure` applies)."""
    seed = hashlib.sha256(f"{reference.fingerprint}:{check.name}:{rows}".encode()).digest()
    rng = np.random.default_rng(int.from_bytes(seed[:8], "little"))
    n_reference = min(reference.n_rows or rows, KEPT_ROWS)  # enough: its noise is small then
    columns = drift_columns(target, check)
    levels = np.empty(replicates)
    for i in range(replicates):
        simulated = Reference(reference.prepare(reference.resample(n_reference, rng)))
        # Draws are independent, so the first k rows of a window are a window of k rows, nested
        # as the recent sub-windows are.
        window = reference.resample(rows, rng)
        best = math.inf
        for size in sizes:
            result = simulated.test(
                simulated.prepare(window.head(size), columns),
                check.test,
                columns=columns,
                correction=check.correction,
                min_samples=target.samples.min_samples,
                bins=check.bins,
                binning=check.binning,
                method="asymp",  # within a few % of exact p-values here, at a tenth of the cost
            )
            best = min(best, breach_alpha(result, check.drift_share) * len(sizes))
        levels[i] = best
    return levels


def _canonical_rows(n_rows: int) -> int:
    """`n_rows` rounded to a quarter octave, so windows of about the same size share one
    calibration."""
    return max(1, round(2 ** (round(4 * math.log2(max(n_rows, 1))) / 4)))


def _human(every: timedelta) -> str:
    seconds = int(every.total_seconds())
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
