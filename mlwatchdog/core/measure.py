"""Measure: run each of a target's checks on an observation, giving one CheckResult per check.

Pure: the drift tests run on the observation's window against its Reference; metric checks
compare the reading with their limit. Any data problem becomes a status with its reason.
"""

from __future__ import annotations

from dataclasses import replace

from mlwatchdog.core.calibrate import calibrate
from mlwatchdog.core.model import CheckResult, DataStatus, MetricReading, Observation
from mlwatchdog.core.performance import measure_performance
from mlwatchdog.detectors import REGISTRY, ColumnResult, DriftResult, Reference, Sample
from mlwatchdog.errors import InputError
from mlwatchdog.rules import DriftCheck, MetricCheck, PerformanceCheck, Target, drift_columns

# Sub-windows: the most recent m, 2m, 4m... rows are tested besides the whole window, so a
# step change breaches within a bounded number of rows however long the window is.
DEFAULT_RECENT_ROWS = 200


def measure(target: Target, observation: Observation) -> tuple[CheckResult, ...]:
    """Every check's result, in the order of `target.checks`."""
    drift = [c for c in target.checks if isinstance(c, DriftCheck)]
    prepared, unusable = _prepare(target, observation, drift) if drift else (None, None)
    recent: dict[int, Sample] = {}  # the newest k rows prepared once for every drift check
    results = []
    for check in target.checks:
        if isinstance(check, MetricCheck):
            results.append(_metric(check, observation.metrics.get(check.name)))
        elif isinstance(check, PerformanceCheck):
            results.append(measure_performance(target, check, observation))
        elif prepared is None:
            assert unusable is not None
            results.append(CheckResult(check.name, unusable[0], reason=unusable[1]))
        else:
            results.append(_drift(target, check, observation, prepared, recent))
    if drift and observation.revisions is not None:
        results.extend(_canary(target, observation, drift))
    return tuple(results)


# A canary in progress is judged on its own rows, under these names (`drift[canary]`): against
# the reference, and against the stable revision's rows of the same window.
CANARY = "canary"
CANARY_VS_STABLE = "canary-vs-stable"


def revision_check(name: str, scope: str) -> str:
    """The name of check `name` judged on a canary's rows: `drift[canary]`."""
    return f"{name}[{scope}]"


def base_check(name: str) -> str:
    """The check a per-revision check's name is of: `drift` for `drift[canary]`."""
    return name.split("[", 1)[0]


def _canary(
    target: Target, observation: Observation, checks: list[DriftCheck]
) -> list[CheckResult]:
    """Each drift check on the canary's rows against the reference, then against the stable
    rows (same inputs, another model: prediction drift between them is the model's doing).
    min_samples holds per revision: a small canary is insufficient, never a breach."""
    windows = observation.revisions
    assert windows is not None
    rows = windows.canary_samples
    status = observation.samples_status if rows is not None else DataStatus.NO_DATA
    canary = replace(observation, samples=rows, samples_status=status, revisions=None)
    results = _judged(target, canary, checks, CANARY, f"canary {windows.canary}")
    stable_rows = windows.stable_samples
    need = target.samples.min_samples
    n_stable = 0 if stable_rows is None else len(stable_rows)
    vs_stable: Observation | tuple[DataStatus, str]
    if n_stable < need:
        vs_stable = (DataStatus.INSUFFICIENT, f"{n_stable} stable rows in the window, need {need}")
    else:
        kinds = target.columns.all
        try:
            reference = Reference(stable_rows, columns=list(kinds), kinds=list(kinds.values()))
            vs_stable = replace(canary, reference=reference, reference_status=DataStatus.OK)
        except InputError as exc:
            vs_stable = (DataStatus.ERROR, f"stable {windows.stable}: {exc}")
    label = f"canary {windows.canary} vs stable {windows.stable}"
    if isinstance(vs_stable, Observation):
        # Calibrated on the reference, not on the stable rows (new every evaluation).
        main = observation.reference
        results += _judged(target, vs_stable, checks, CANARY_VS_STABLE, label, calibrate_on=main)
    else:
        status, why = vs_stable
        for check in checks:
            name = revision_check(check.name, CANARY_VS_STABLE)
            results.append(CheckResult(name, status, reason=f"{label}: {why}"))
    return results


def _judged(
    target: Target,
    observation: Observation,
    checks: list[DriftCheck],
    scope: str,
    label: str,
    calibrate_on: Reference | None = None,
) -> list[CheckResult]:
    prepared, unusable = _prepare(target, observation, checks)
    recent: dict[int, Sample] = {}  # this revision's newest rows, prepared once
    results = []
    for check in checks:
        if prepared is None:
            assert unusable is not None
            result = CheckResult(check.name, unusable[0], reason=unusable[1])
        else:
            result = _drift(target, check, observation, prepared, recent, calibrate_on)
        name = revision_check(check.name, scope)
        results.append(replace(result, check=name, reason=f"{label}: {result.reason}"))
    return results


def _prepare(
    target: Target, observation: Observation, checks: list[DriftCheck]
) -> tuple[Sample | None, tuple[DataStatus, str] | None]:
    """The window prepared once for all drift checks, or why it cannot be tested."""
    if observation.samples_status is not DataStatus.OK or observation.samples is None:
        return None, (observation.samples_status, observation.samples_reason or "no samples")
    reference = observation.reference
    if observation.reference_status is not DataStatus.OK or reference is None:
        why = observation.reference_reason or "no reference"
        return None, (observation.reference_status, f"reference: {why}")
    n_rows = len(observation.samples)
    need = target.samples.min_samples
    if n_rows < need:
        window = target.samples.window
        return None, (DataStatus.INSUFFICIENT, f"{n_rows} rows in the {window} window, need {need}")
    columns = list(dict.fromkeys(c for check in checks for c in drift_columns(target, check)))
    try:
        return reference.prepare(observation.samples, columns), None
    except InputError as exc:
        return None, (DataStatus.ERROR, f"samples: {exc}")


def subwindow_rows(check: DriftCheck, min_samples: int, n_rows: int) -> list[int]:
    """The row counts tested, smallest first: the most recent m, 2m, 4m... rows (each at most
    half the window) and the whole window. Only the whole window for PSI (no p-value to
    correct) or `recent_rows: 0`."""
    m = (
        check.recent_rows
        if check.recent_rows is not None
        else max(min_samples, DEFAULT_RECENT_ROWS)
    )
    sizes = []
    if m > 0 and REGISTRY[check.test].has_pvalue:
        k = m
        while 2 * k <= n_rows:
            sizes.append(k)
            k *= 2
    return [*sizes, n_rows]


def _recent(
    observation: Observation, columns: list[str], k: int, cache: dict[int, Sample]
) -> Sample:
    """The newest `k` rows of the window (rows come oldest first), prepared for `columns`."""
    if k not in cache:
        assert observation.reference is not None
        samples = observation.samples
        newest = samples.iloc[-k:] if hasattr(samples, "iloc") else samples[-k:]
        cache[k] = observation.reference.prepare(newest, columns)
    return cache[k]


def _drift(
    target: Target,
    check: DriftCheck,
    observation: Observation,
    prepared: Sample,
    recent: dict[int, Sample],
    calibrate_on: Reference | None = None,
) -> CheckResult:
    assert observation.reference is not None
    n_rows = len(observation.samples)
    min_samples = target.samples.min_samples
    sizes = subwindow_rows(check, min_samples, n_rows)
    alpha = (
        check.threshold if check.threshold is not None else REGISTRY[check.test].default_threshold
    )
    calibration = calibrate(
        target,
        check,
        calibrate_on or observation.reference,
        n_rows,
        lambda n: subwindow_rows(check, min_samples, n),
    )
    if calibration is not None:
        alpha = calibration.alpha
    columns = drift_columns(target, check)
    # Bonferroni across the sub-windows: the whole check keeps its false-alarm rate.
    threshold = alpha / len(sizes)

    def test(sample: Sample) -> DriftResult:
        assert observation.reference is not None
        return observation.reference.test(
            sample,
            check.test,
            columns=columns,
            threshold=threshold,
            correction=check.correction,
            min_samples=target.samples.min_samples,
            bins=check.bins,
            binning=check.binning,
            effect=check.effect.measure if check.effect else None,
            min_effect=check.effect.min if check.effect else 0.0,
        )

    whole = test(prepared)
    result, k = whole, n_rows
    if whole.share_drifted() < check.drift_share:  # also when NaN: a recent breach may show
        for size in sizes[:-1]:
            newest = _recent(observation, list(prepared.names), size, recent)
            # Only a breaching sub-window's result is kept: one that cannot breach is not tested
            # (for KS that spares most of its exact p-values; the decision is the same).
            if not observation.reference.could_drift(
                newest,
                check.test,
                drift_share=check.drift_share,
                columns=columns,
                threshold=threshold,
                min_samples=min_samples,
            ):
                continue
            candidate = test(newest)
            if candidate.share_drifted() >= check.drift_share:
                result, k = candidate, size
                break
    rows = tuple(result.rows())
    share = result.share_drifted()
    if share != share:  # NaN: no column had enough values
        return CheckResult(
            check.name,
            DataStatus.INSUFFICIENT,
            threshold=check.drift_share,
            test_threshold=alpha,
            effect_floor=check.effect.min if check.effect else None,
            reason=f"no column has {target.samples.min_samples} usable values",
            columns=rows,
        )
    drifted = [r.column for r in rows if r.drifted]
    tested = sum(1 for r in rows if r.drifted is not None)
    return CheckResult(
        check.name,
        DataStatus.OK,
        breaching=share >= check.drift_share,
        value=share,
        threshold=check.drift_share,
        test_threshold=alpha,
        effect_floor=check.effect.min if check.effect else None,
        reason=f"{len(drifted)} of {tested} column(s) drifted by {check.test}"
        + (f": {', '.join(_with_effect(r) for r in rows if r.drifted)}" if drifted else "")
        + _below_floor(result)
        + _where(observation, sizes, k, alpha)
        + (f"; {calibration.describe()}" if calibration else ""),
        columns=rows,
    )


def _with_effect(row: ColumnResult) -> str:
    if row.effect is None or row.effect_measure is None:
        return row.column
    return f"{row.column} ({row.effect_measure} {row.effect:.3g} >= {row.min_effect:g})"


def _below_floor(result: DriftResult) -> str:
    """Columns the test flags but whose effect is under the floor: significant, negligible."""
    if result.effect is None:
        return ""
    small = result.significant() & ~result.drifted()
    shown = [
        f"{c} ({result.effect_measure} {e:.3g} < {result.min_effect:g})"
        for c, e, s in zip(result.columns, result.effect.tolist(), small.tolist(), strict=True)
        if s
    ]
    return f"; below the effect floor: {', '.join(shown)}" if shown else ""


def _where(observation: Observation, sizes: list[int], k: int, alpha: float) -> str:
    """Which window breached (rows and time span) and the multiplicity correction applied."""
    if len(sizes) == 1:
        return ""
    n = sizes[-1]
    note = f" (alpha {alpha:g}/{len(sizes)}: whole window and {len(sizes) - 1} recent sub-windows)"
    if k == n:
        return note
    span = ""
    column = observation.time_column
    samples = observation.samples
    if column is not None and hasattr(samples, "iloc") and column in samples.columns:
        stamps = samples[column].iloc[-k:]
        span = f", {stamps.iloc[0]:%Y-%m-%d %H:%M:%S} to {stamps.iloc[-1]:%Y-%m-%d %H:%M:%S}"
    return f" in the most recent {k} of {n} rows{span}" + note


def _metric(check: MetricCheck, reading: MetricReading | None) -> CheckResult:
    limit = check.above if check.above is not None else check.below
    if reading is None:
        return CheckResult(check.name, DataStatus.NO_DATA, threshold=limit, reason="no reading")
    if reading.status is not DataStatus.OK or reading.value is None:
        status = DataStatus.NO_DATA if reading.status is DataStatus.OK else reading.status
        return CheckResult(check.name, status, threshold=limit, reason=reading.reason)
    value = reading.value
    if check.above is not None:
        breaching, relation = value > check.above, f"above {check.above}"
    else:
        assert check.below is not None
        breaching, relation = value < check.below, f"below {check.below}"
    verdict = "is" if breaching else "is not"
    return CheckResult(
        check.name,
        DataStatus.OK,
        breaching=breaching,
        value=value,
        threshold=limit,
        reason=f"{value:g} {verdict} {relation}",
    )
