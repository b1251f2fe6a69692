"""Measure: run each of a target's checks on an observation, giving one CheckResult per check.

Pure: the drift tests run on the observation's window against its Reference; metric checks
compare the reading with their limit. Any data problem becomes a status with its reason.
"""

from __future__ import annotations

from dataclasses import replace

from mlwatchdog.core.model import CheckResult, DataStatus, MetricReading, Observation
from mlwatchdog.detectors import Reference, Sample
from mlwatchdog.errors import InputError
from mlwatchdog.rules import DriftCheck, MetricCheck, Target, drift_columns


def measure(target: Target, observation: Observation) -> tuple[CheckResult, ...]:
    """Every check's result, in the order of `target.checks`."""
    drift = [c for c in target.checks if isinstance(c, DriftCheck)]
    prepared, unusable = _prepare(target, observation, drift) if drift else (None, None)
    results = []
    for check in target.checks:
        if isinstance(check, MetricCheck):
            results.append(_metric(check, observation.metrics.get(check.name)))
        elif prepared is None:
            assert unusable is not None
            results.append(CheckResult(check.name, unusable[0], reason=unusable[1]))
        else:
            results.append(_drift(target, check, observation, prepared))
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
        results += _judged(target, vs_stable, checks, CANARY_VS_STABLE, label)
    else:
        status, why = vs_stable
        for check in checks:
            name = revision_check(check.name, CANARY_VS_STABLE)
            results.append(CheckResult(name, status, reason=f"{label}: {why}"))
    return results


def _judged(
    target: Target, observation: Observation, checks: list[DriftCheck], scope: str, label: str
) -> list[CheckResult]:
    prepared, unusable = _prepare(target, observation, checks)
    results = []
    for check in checks:
        if prepared is None:
            assert unusable is not None
            result = CheckResult(check.name, unusable[0], reason=unusable[1])
        else:
            result = _drift(target, check, observation, prepared)
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
