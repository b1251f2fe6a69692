"""core/verdict.py judge: the pass/fail/inconclusive answered to Argo Rollouts and Flagger, from
one evaluation of rules.yaml's target (trigger: prediction_drift and (feature_drift or
channel_mix)). Never a pass without data; fail exactly when the trigger holds (or escalated)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

import pytest

from mlwatchdog.core import (
    CheckRecord,
    CheckResult,
    CheckState,
    DataStatus,
    Evaluation,
    Incident,
    Phase,
    TargetState,
)
from mlwatchdog.core.verdict import Verdict, judge
from tests.unit.test_core_scenarios import T0, make_target

TARGET = make_target()
MAX_AGE = timedelta(seconds=30)
OK, NONE = DataStatus.OK, DataStatus.NO_DATA
QUIET, PENDING, FIRING = CheckState.INACTIVE, CheckState.PENDING, CheckState.FIRING


def evaluation(
    checks: Mapping[str, tuple[CheckState, DataStatus]], phase: Phase = Phase.HEALTHY
) -> Evaluation:
    """An evaluation at T0 in which each check has this state and data status."""
    records = {n: CheckRecord(state=s, status=d) for n, (s, d) in checks.items()}
    results = tuple(
        CheckResult(n, d, breaching=s is not QUIET and d is OK, reason=f"{n} says {d}")
        for n, (s, d) in checks.items()
    )
    incident = None if phase is Phase.HEALTHY else Incident("credit-model-1", T0, reasons=("x",))
    state = TargetState(TARGET.name, phase, checks=records, incident=incident, evaluated_at=T0)
    return Evaluation(state, (), results)


def all_(state: CheckState, status: DataStatus = OK) -> dict[str, tuple[CheckState, DataStatus]]:
    return dict.fromkeys(("feature_drift", "channel_mix", "prediction_drift"), (state, status))


@pytest.mark.parametrize(
    "checks, verdict",
    [
        (all_(QUIET), Verdict.PASS),
        (all_(PENDING), Verdict.PASS),  # `for` not elapsed: a shorter breach is noise
        (all_(FIRING), Verdict.FAIL),
        (
            {**all_(QUIET), "prediction_drift": (FIRING, OK), "channel_mix": (FIRING, OK)},
            Verdict.FAIL,
        ),
        # Firing, but not enough for the trigger: what would not roll back does not fail.
        ({**all_(QUIET), "prediction_drift": (FIRING, OK)}, Verdict.PASS),
        # No data for a check of the trigger: unknown, never a pass ...
        (all_(QUIET, NONE), Verdict.INCONCLUSIVE),
        ({**all_(QUIET), "channel_mix": (QUIET, DataStatus.STALE)}, Verdict.INCONCLUSIVE),
        ({**all_(QUIET), "prediction_drift": (FIRING, DataStatus.ERROR)}, Verdict.INCONCLUSIVE),
        # ... but a trigger that holds on the checks with data fails even so.
        ({**all_(FIRING), "channel_mix": (QUIET, NONE)}, Verdict.FAIL),
    ],
)
def test_the_verdict_is_the_trigger_on_checks_with_data(
    checks: dict[str, tuple[CheckState, DataStatus]], verdict: Verdict
) -> None:
    assert judge(TARGET, evaluation(checks), T0, MAX_AGE).verdict is verdict


def test_a_check_outside_the_trigger_without_data_does_not_block_a_pass() -> None:
    target = make_target({"trigger": "prediction_drift"})
    checks = {**all_(QUIET), "feature_drift": (QUIET, NONE)}
    assert judge(target, evaluation(checks), T0, MAX_AGE).verdict is Verdict.PASS


@pytest.mark.parametrize(
    "phase, verdict",
    [
        (Phase.DEGRADED, Verdict.PASS),
        (Phase.ESCALATED, Verdict.FAIL),  # a person must look: do not promote
        # The daemon reverting: neither promote nor abort behind its back.
        (Phase.ROLLING_BACK, Verdict.INCONCLUSIVE),
        (Phase.VERIFYING, Verdict.INCONCLUSIVE),
        (Phase.AWAITING_APPROVAL, Verdict.INCONCLUSIVE),
    ],
)
def test_the_targets_phase(phase: Phase, verdict: Verdict) -> None:
    judgment = judge(TARGET, evaluation(all_(QUIET), phase), T0, MAX_AGE)
    assert judgment.verdict is verdict and str(phase) in judgment.reason


def test_no_evaluation_or_an_old_one_is_inconclusive() -> None:
    assert judge(TARGET, None, T0, MAX_AGE).verdict is Verdict.INCONCLUSIVE
    firing = evaluation(all_(FIRING))
    assert judge(TARGET, firing, T0 + MAX_AGE, MAX_AGE).verdict is Verdict.FAIL
    old = judge(TARGET, firing, T0 + MAX_AGE + timedelta(seconds=1), MAX_AGE)
    assert old.verdict is Verdict.INCONCLUSIVE and "31s old, more than 30s" in old.reason
