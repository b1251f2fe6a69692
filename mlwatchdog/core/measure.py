"""Measure: run each of a target's checks on an observation, giving one CheckResult per check.

Pure: the drift tests run on the observation's window against its Reference; metric checks
compare the reading with their limit. Any data problem becomes a status with its reason.
"""

from __future__ import annotations

from mlwatchdog.core.model import CheckResult, DataStatus, MetricReading, Observation
from mlwatchdog.core.performance import measure_performance
from mlwatchdog.detectors import Sample
from mlwatchdog.errors import InputError
from mlwatchdog.rules import DriftCheck, MetricCheck, PerformanceCheck, Target, drift_columns


def measure(target: Target, observation: Observation) -> tuple[CheckResult, ...]:
    """Every check's result, in the order of `target.checks`."""
    drift = [c for c in target.checks if isinstance(c, DriftCheck)]
    prepared, unusable = _prepare(target, observation, drift) if drift else (None, None)
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
            results.append(_drift(target, check, observation, prepared))
    return tuple(results)


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


def _drift(
    target: Target, check: DriftCheck, observation: Observation, prepared: Sample
) -> CheckResult:
    assert observation.reference is not None
    result = observation.reference.test(
        prepared,
        check.test,
        columns=drift_columns(target, check),
        threshold=check.threshold,
        correction=check.correction,
        min_samples=target.samples.min_samples,
        bins=check.bins,
        binning=check.binning,
    )
    rows = tuple(result.rows())
    share = result.share_drifted()
    if share != share:  # NaN: no column had enough values
        return CheckResult(
            check.name,
            DataStatus.INSUFFICIENT,
            threshold=check.drift_share,
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
        reason=f"{len(drifted)} of {tested} column(s) drifted by {check.test}"
        + (f": {', '.join(drifted)}" if drifted else ""),
        columns=rows,
    )


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
