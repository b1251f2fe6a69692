"""The decision core over generated timelines: one evaluation every 10 s on a virtual clock.

Targets come from small rules YAML (modelled on rules.yaml); observations are windows of the demo's
synthetic applicants, drifted or not, or a missing-data status. Each step runs `replay_step` (the
core's evaluate, plus a dry-run success for a rollback, as the daemon's dry-run actuator reports).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytest
import structlog
import yaml

from mlwatchdog.core import (
    ActionOutcome,
    CheckResult,
    CheckState,
    DataStatus,
    Decision,
    DecisionKind,
    Health,
    MetricReading,
    Observation,
    Phase,
    TargetState,
    WorkloadHealth,
    evaluate,
    from_json,
    record_action,
    to_json,
)
from mlwatchdog.daemon.state_store import StateStore
from mlwatchdog.demo import customers
from mlwatchdog.detectors import Reference
from mlwatchdog.replay import replay_step
from mlwatchdog.rules import Target, parse_config

T0 = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)
INTERVAL = timedelta(seconds=10)
ROWS = 500  # rows per window; rules.yaml's min_samples is 200

# rules.yaml's target, pointed at sources the core never reads. One deliberate difference: the
# prediction PSI threshold is 0.1 (the README default) instead of 0.2. The demo's drifted scores
# give a PSI of ~0.27 that dips below 0.2 in a few percent of 500-row windows, and clean windows
# stay under 0.07; at 0.1 every drifted window breaches, so the expected times below are exact.
SOURCES: dict[str, Any] = {
    "live": {"type": "files", "url": "/nonexistent/live", "partitioning": "dt=%Y-%m-%d/hour=%H"},
    "training": {"type": "files", "url": "/nonexistent/ref.parquet", "timestamp_column": None},
    "prom": {"type": "prometheus", "url": "http://prometheus.invalid:9090"},
}
RULES_TRIGGER = "prediction_drift and (feature_drift or channel_mix)"
DRIFT_CHECKS: list[dict[str, Any]] = [
    {
        "name": "feature_drift",
        "type": "drift",
        "test": "ks",
        "columns": "features",
        "threshold": 0.01,
        "correction": "bh",
        "drift_share": 0.3,
        "effect": {"measure": "wasserstein", "min": 0.1},
    },
    {
        "name": "channel_mix",
        "type": "drift",
        "test": "chi2",
        "columns": ["channel", "region"],
        "threshold": 0.001,
        "drift_share": 0.5,
        "effect": {"measure": "jensen_shannon", "min": 0.05},
    },
    {
        "name": "prediction_drift",
        "type": "drift",
        "test": "psi",
        "columns": "predictions",
        "threshold": 0.1,
        "drift_share": 1.0,
    },
]
BASE_TARGET: dict[str, Any] = {
    "name": "credit-model",
    "workload": {"kind": "argo-rollout", "name": "credit-model", "namespace": "models"},
    "interval": "10s",
    "samples": {"source": "live", "window": "1m", "min_samples": 200},
    "reference": {"source": "training"},
    "columns": {
        "features": {
            "age": "numeric",
            "income": "numeric",
            "credit_score": "numeric",
            "tenure_months": "numeric",
            "n_products": "numeric",
            "channel": "categorical",
            "region": "categorical",
        },
        "predictions": {"score": "numeric"},
    },
    "checks": DRIFT_CHECKS,
    "trigger": RULES_TRIGGER,
    "for": "30s",
    "resolve_after": "1m",
    "cooldown": "10m",
    "no_data": "hold",
    "rollback": {"to": "prior", "dry_run": True},
    "verify": {"window": "2m"},
}
FOR = timedelta(seconds=30)
RESOLVE_AFTER = timedelta(minutes=1)
VERIFY = timedelta(minutes=2)
COOLDOWN = timedelta(minutes=10)


def make_target(changes: Mapping[str, Any] | None = None) -> Target:
    """The target of a rules YAML made from BASE_TARGET with `changes` (top-level keys)."""
    target = {**BASE_TARGET, **(changes or {})}
    text = yaml.safe_dump({"version": 1, "sources": SOURCES, "targets": [target]}, sort_keys=False)
    return parse_config(text, "scenario.yaml").targets[0]


# ------------------------------------------------------------------------------- observations

Kind = Literal["clean", "drift"] | DataStatus
CLEAN: Kind = "clean"
DRIFT: Kind = "drift"


def script(*parts: tuple[Kind, int]) -> list[Kind]:
    """One kind per evaluation: script((CLEAN, 6), (DRIFT, 3)) is six clean then three drifted."""
    return [kind for kind, count in parts for _ in range(count)]


def at(i: int) -> datetime:
    return T0 + i * INTERVAL


@pytest.fixture(scope="module")
def reference() -> Reference:
    return Reference(customers(np.random.default_rng(20261125), 5_000, drifted=False))


class World:
    """Makes the observation of each evaluation: a fresh window, or a missing-data status."""

    def __init__(self, reference: Reference, seed: int) -> None:
        self.reference = reference
        self.rng = np.random.default_rng(seed)

    def observe(self, now: datetime, kind: Kind) -> Observation:
        ok = DataStatus.OK
        if kind in (CLEAN, DRIFT):
            frame = customers(self.rng, ROWS, drifted=kind == DRIFT)
            return Observation("credit-model", now, frame, ok, "", self.reference, ok)
        if kind is DataStatus.INSUFFICIENT:  # data, but fewer rows than min_samples
            frame = customers(self.rng, 50, drifted=True)
            return Observation("credit-model", now, frame, ok, "", self.reference, ok)
        assert isinstance(kind, DataStatus)
        return Observation(
            "credit-model", now, None, kind, f"source says {kind}", self.reference, ok
        )

    def observations(self, kinds: Sequence[Kind], start: int = 0) -> list[Observation]:
        return [self.observe(at(start + i), kind) for i, kind in enumerate(kinds)]


# ---------------------------------------------------------------------------------- the runner


@dataclass(frozen=True)
class Tick:
    """One evaluation: when, the state after it, its decisions and check results."""

    at: datetime
    state: TargetState
    decisions: tuple[Decision, ...]
    results: tuple[CheckResult, ...]


def assert_round_trips(value: Any) -> None:
    """to_json -> a JSON text -> from_json gives back an equal value."""
    data = json.loads(json.dumps(to_json(value)))
    assert from_json(type(value), data) == value


def run(
    target: Target,
    observations: Iterable[Observation],
    state: TargetState | None = None,
    *,
    act: bool = True,
) -> list[Tick]:
    """Evaluate each observation at its time, carrying the state; `act` records a dry-run
    success for every rollback (replay_step), otherwise the rollback's outcome never arrives.
    Every decision, and every state that is a transition, must survive a JSON round trip
    (test_every_state_and_decision_round_trips_through_json checks every state).
    """
    ticks = []
    for observation in observations:
        now = observation.at
        step = replay_step if act else evaluate
        evaluation = step(target, observation, state, now)
        changed = state is None or transition(evaluation.state) != transition(state)
        state = evaluation.state
        for value in (state,) * changed + evaluation.decisions:
            assert_round_trips(value)
        ticks.append(Tick(now, state, evaluation.decisions, evaluation.results))
    return ticks


def transition(state: TargetState) -> tuple[Any, ...]:
    """What makes a state change: the phase, the incident or a check's state."""
    return (state.phase, state.incident, *(r.state for r in state.checks.values()))


def decisions(ticks: Sequence[Tick], kind: DecisionKind | None = None) -> list[Decision]:
    return [d for t in ticks for d in t.decisions if kind is None or d.kind is kind]


def rollbacks(ticks: Sequence[Tick]) -> list[Decision]:
    return decisions(ticks, DecisionKind.ROLLBACK)


def escalations(ticks: Sequence[Tick]) -> list[Decision]:
    return decisions(ticks, DecisionKind.ESCALATE)


def phases(ticks: Sequence[Tick]) -> list[Phase]:
    """The phase after each evaluation, with consecutive repeats collapsed."""
    out: list[Phase] = []
    for tick in ticks:
        if not out or out[-1] is not tick.state.phase:
            out.append(tick.state.phase)
    return out


def assert_healthy_exactly_when_quiet(ticks: Sequence[Tick]) -> None:
    """The resolve delay: not healthy while any check was active within resolve_after, and
    healthy as soon as none was (for timelines that never act)."""
    for i, tick in enumerate(ticks):
        recent = [t for t in ticks[: i + 1] if t.at >= tick.at - RESOLVE_AFTER]
        quiet = all(r.state is CheckState.INACTIVE for t in recent for r in t.state.checks.values())
        assert (tick.state.phase is Phase.HEALTHY) == quiet, tick.at


def never_firing(ticks: Sequence[Tick]) -> bool:
    return all(r.state is not CheckState.FIRING for t in ticks for r in t.state.checks.values())


def first_breach(ticks: Sequence[Tick], check: str) -> datetime:
    return next(t.at for t in ticks if any(r.check == check and r.breaching for r in t.results))


# ----------------------------------------------------------------------------------- no drift


@pytest.mark.parametrize(("seed", "trigger"), [(1, RULES_TRIGGER), (2, "any")])
def test_long_no_drift_noise_never_rolls_back_and_stays_healthy(
    reference: Reference, seed: int, trigger: str
) -> None:
    target = make_target({"trigger": trigger})
    ticks = run(target, World(reference, seed).observations(script((CLEAN, 500))))

    assert decisions(ticks) == []
    assert set(phases(ticks)) <= {Phase.HEALTHY, Phase.DEGRADED}
    # rules.yaml's channel_mix (chi2 on two columns at 0.01, no correction) breaches in a few
    # percent of clean windows. Such a breach makes the check pending for an evaluation; it never
    # lasts `for`, and the target is degraded only until no check has been active for
    # resolve_after.
    assert never_firing(ticks)
    assert_healthy_exactly_when_quiet(ticks)


# --------------------------------------------------------------------------------- step drift


@pytest.mark.parametrize(("seed", "hold_for"), [(3, "30s"), (4, "1m"), (5, "2m")])
def test_step_drift_rolls_back_once_when_for_has_elapsed(
    reference: Reference, seed: int, hold_for: str
) -> None:
    target = make_target({"for": hold_for})
    ticks = run(target, World(reference, seed).observations(script((CLEAN, 30), (DRIFT, 20))))

    drift_start = at(30)
    assert first_breach(ticks, "prediction_drift") == drift_start
    [rollback] = rollbacks(ticks)
    assert rollback.at == drift_start + target.for_
    assert rollback.to == "prior"
    assert rollback.dry_run is True
    assert rollback.target == "credit-model"
    assert any(r.startswith("prediction_drift: ") for r in rollback.reasons)
    before = [t for t in ticks if t.at < drift_start]
    assert never_firing(before)
    assert {t.state.phase for t in before} <= {Phase.HEALTHY, Phase.DEGRADED}
    pending = [t for t in ticks if drift_start <= t.at < rollback.at]
    assert {t.state.phase for t in pending} == {Phase.DEGRADED}


@pytest.mark.parametrize("seed", [6, 7])
def test_drift_that_stays_after_the_rollback_escalates_once_and_never_rolls_back_again(
    reference: Reference, seed: int
) -> None:
    target = make_target()
    # 13 minutes of drift: past the 10-minute cooldown of the rollback.
    ticks = run(target, World(reference, seed).observations(script((CLEAN, 6), (DRIFT, 80))))

    [rollback] = rollbacks(ticks)
    assert rollback.at == at(6) + FOR
    [escalation] = escalations(ticks)
    assert escalation.at == rollback.at + VERIFY
    assert escalation.incident == rollback.incident
    assert "not recovered after the rollback" in escalation.reasons
    drifted = [t for t in ticks if t.at >= at(6)]
    assert phases(drifted) == [Phase.DEGRADED, Phase.VERIFYING, Phase.ESCALATED]
    assert ticks[-1].state.incident is not None
    assert ticks[-1].state.incident.id == rollback.incident


@pytest.mark.parametrize("seed", [8, 9])
def test_drift_that_recovers_after_the_rollback_returns_to_healthy(
    reference: Reference, seed: int
) -> None:
    target = make_target()
    rollback_index = 6 + 3  # drift from evaluation 6; `for` is three intervals
    kinds = script((CLEAN, 6), (DRIFT, 4), (CLEAN, 60))
    ticks = run(target, World(reference, seed).observations(kinds))

    [rollback] = rollbacks(ticks)
    assert rollback.at == at(rollback_index)
    assert escalations(ticks) == []
    after = [t for t in ticks if t.at >= rollback.at]
    assert phases(after)[:2] == [Phase.VERIFYING, Phase.HEALTHY]
    verified = next(t for t in after if t.state.phase is Phase.HEALTHY)
    assert verified.at == rollback.at + VERIFY
    assert verified.state.incident is None
    assert all(r.state is CheckState.INACTIVE for r in verified.state.checks.values())
    # Afterwards only the clean windows' noise: nothing fires or is decided again.
    assert decisions(after[1:]) == []
    assert never_firing([t for t in after if t.at >= verified.at])


@pytest.mark.parametrize(
    ("health", "recovered"),
    [(Health.HEALTHY, True), (Health.PROGRESSING, False), (Health.UNHEALTHY, False),
     (Health.UNKNOWN, False)],
)  # fmt: skip
def test_a_workload_not_healthy_at_the_end_of_verification_escalates(
    reference: Reference, health: Health, recovered: bool
) -> None:
    """The checks recover, but the reverted object must be healthy too (read while verifying)."""
    target = make_target()
    kinds = script((CLEAN, 6), (DRIFT, 4), (CLEAN, 30))
    observations = World(reference, 1).observations(kinds)
    rollback_at = at(6 + 3)
    observations = [
        replace(o, workload=WorkloadHealth(health, "phase Paused")) if o.at > rollback_at else o
        for o in observations
    ]
    ticks = run(target, observations)
    assert len(rollbacks(ticks)) == 1
    after = [t for t in ticks if t.at >= rollback_at + VERIFY]
    if recovered:
        assert after[0].state.phase is Phase.HEALTHY and escalations(ticks) == []
    else:
        [escalation] = escalations(ticks)
        assert escalation.at == rollback_at + VERIFY
        assert escalation.reasons == (f"the workload is {health} after the rollback: phase Paused",)


# ----------------------------------------------------------------------------------- flapping


@pytest.mark.parametrize("seed", [10, 11])
def test_drift_every_other_evaluation_never_fires_nor_flaps_the_target(
    reference: Reference, seed: int
) -> None:
    target = make_target()
    flapping = [DRIFT if i % 2 == 0 else CLEAN for i in range(120)]
    kinds = script((CLEAN, 6)) + flapping + script((CLEAN, 20))
    ticks = run(target, World(reference, seed).observations(kinds))

    # A pending check resets when the breach does not last, so `for` is never reached; the
    # target stays degraded through the whole flapping (the resolve delay) instead of
    # flipping with every evaluation, and is healthy once no check was active for resolve_after.
    assert decisions(ticks) == []
    assert never_firing(ticks)
    assert phases(ticks[6:126]) == [Phase.DEGRADED]
    assert_healthy_exactly_when_quiet(ticks)


@pytest.mark.parametrize("offset", [0, 1], ids=["clean-at-verify-end", "drifted-at-verify-end"])
def test_drift_flapping_after_the_rollback_does_not_roll_back_again(
    reference: Reference, offset: int
) -> None:
    target = make_target()
    # Drift from evaluation 6, rollback at 9; from 10 the drift flaps every other evaluation.
    # `offset` chooses whether the evaluation ending the verify window (15) sees drift.
    flapping = [DRIFT if (i + offset) % 2 == 0 else CLEAN for i in range(120)]
    kinds = script((CLEAN, 6), (DRIFT, 4)) + flapping
    ticks = run(target, World(reference, 12 + offset).observations(kinds))

    [rollback] = rollbacks(ticks)
    assert rollback.at == at(9)
    verify_end = rollback.at + VERIFY
    # Verification judges the last resolve_after of the window, not its last evaluation alone:
    # a model still drifting every other window is not recovered, whichever window comes last.
    # It escalates once, and stays escalated (never a second rollback) while the checks flap.
    [escalation] = escalations(ticks)
    assert escalation.at == verify_end
    assert "not recovered after the rollback" in escalation.reasons
    assert phases([t for t in ticks if t.at >= verify_end]) == [Phase.ESCALATED]


def test_metric_flapping_around_its_threshold_keeps_the_check_firing(
    reference: Reference,
) -> None:
    """Once firing, a value that dips below its limit for less than resolve_after keeps the
    check firing, so the target neither closes nor reopens its incident while it flaps."""
    target = make_target(
        {
            "workload": {"kind": "none"},
            "checks": [
                {
                    "name": "error_rate",
                    "type": "metric",
                    "source": "prom",
                    "query": "sum(rate(errors[5m]))",
                    "above": 0.02,
                }
            ],
            "trigger": "error_rate",
        }
    )
    values = [0.01] * 6 + [0.03] * 4 + [0.021, 0.019] * 30 + [0.01] * 12
    ok = DataStatus.OK
    observations = [
        Observation(
            "credit-model", at(i), reference=reference, reference_status=ok,
            metrics={"error_rate": MetricReading(ok, value)},
        )
        for i, value in enumerate(values)
    ]  # fmt: skip
    ticks = run(target, observations)

    states = [t.state.checks["error_rate"].state for t in ticks]
    changes = [(ticks[i].at, s) for i, s in enumerate(states) if i == 0 or s is not states[i - 1]]
    last_breach = at(6 + 4 + 58)  # the last 0.021
    assert changes == [
        (at(0), CheckState.INACTIVE),
        (at(6), CheckState.PENDING),
        (at(6) + FOR, CheckState.FIRING),
        (last_breach + RESOLVE_AFTER, CheckState.INACTIVE),
    ]
    # workload kind none: the one incident escalates (a human), it is never rolled back.
    assert rollbacks(ticks) == []
    assert [e.at for e in escalations(ticks)] == [at(6) + FOR]
    assert phases(ticks) == [Phase.HEALTHY, Phase.DEGRADED, Phase.ESCALATED, Phase.HEALTHY]


# ------------------------------------------------------------------------------- missing data

MISSING = [DataStatus.NO_DATA, DataStatus.ERROR, DataStatus.STALE, DataStatus.INSUFFICIENT]


def slow_prediction_target(no_data: str) -> Target:
    """prediction_drift needs 2m: feature_drift fires first, the trigger does not hold yet."""
    checks = [
        *DRIFT_CHECKS[:2],
        {**DRIFT_CHECKS[2], "for": "2m"},
    ]
    return make_target({"checks": checks, "no_data": no_data})


@pytest.mark.parametrize("status", MISSING)
def test_missing_data_while_pending_and_firing_holds_the_timers_and_never_rolls_back(
    reference: Reference, status: DataStatus
) -> None:
    target = slow_prediction_target("hold")
    # Drift from 0: feature_drift fires at 30 s, prediction_drift is pending (it needs 2m);
    # from 60 s, 10 minutes without usable data, then drifted data again.
    kinds = script((DRIFT, 6), (status, 60), (DRIFT, 6))
    ticks = run(target, World(reference, 20).observations(kinds))

    before_gap = ticks[5].state.checks
    assert before_gap["feature_drift"].state is CheckState.FIRING
    assert before_gap["prediction_drift"].state is CheckState.PENDING
    gap = ticks[6:66]
    assert decisions(gap) == []
    for tick in gap:
        assert tick.state.phase is Phase.DEGRADED
        assert {r.status for r in tick.results} == {status}
        for name, record in tick.state.checks.items():
            kept = before_gap[name]
            assert (record.state, record.active_at, record.fired_at) == (
                kept.state,
                kept.active_at,
                kept.fired_at,
            )
    # The pending timer survived the gap (2m long elapsed), so the first fresh drifted window
    # fires prediction_drift and rolls back, and not a moment earlier.
    [rollback] = rollbacks(ticks)
    assert rollback.at == at(66)


@pytest.mark.parametrize("status", MISSING)
def test_missing_data_with_reset_forgets_the_breach_and_restarts_the_timers(
    reference: Reference, status: DataStatus
) -> None:
    target = slow_prediction_target("reset")
    kinds = script((DRIFT, 6), (status, 60), (DRIFT, 20))
    ticks = run(target, World(reference, 21).observations(kinds))

    assert ticks[5].state.checks["feature_drift"].state is CheckState.FIRING
    gap = ticks[6:66]
    assert decisions(gap) == []
    for tick in gap:
        assert all(r.state is CheckState.INACTIVE for r in tick.state.checks.values())
    # Fresh data starts every timer again: the rollback waits prediction_drift's full 2m.
    [rollback] = rollbacks(ticks)
    assert rollback.at == at(66) + timedelta(minutes=2)


@pytest.mark.parametrize("status", MISSING)
def test_a_check_held_firing_through_a_gap_does_not_complete_the_trigger(
    reference: Reference, status: DataStatus
) -> None:
    """prediction_drift fires, then its samples go missing (held firing) while the metric in
    the trigger keeps its data and fires too: the rollback waits for fresh samples."""
    error_rate = {
        "name": "error_rate",
        "type": "metric",
        "source": "prom",
        "query": "sum(rate(errors[5m]))",
        "above": 0.02,
        "for": "2m",
    }
    target = make_target(
        {"checks": [DRIFT_CHECKS[2], error_rate], "trigger": "prediction_drift and error_rate"}
    )
    kinds = script((DRIFT, 6), (status, 30), (DRIFT, 3))
    observations = [
        Observation(
            o.target, o.at, o.samples, o.samples_status, o.samples_reason, o.reference,
            o.reference_status, metrics={"error_rate": MetricReading(DataStatus.OK, 0.05)},
        )
        for o in World(reference, 24).observations(kinds)
    ]  # fmt: skip
    ticks = run(target, observations)

    gap = ticks[6:36]
    assert all(t.state.checks["prediction_drift"].state is CheckState.FIRING for t in gap)
    assert gap[-1].state.checks["error_rate"].state is CheckState.FIRING  # since 120 s
    assert decisions(gap) == []
    [rollback] = rollbacks(ticks)
    assert rollback.at == at(36)


@pytest.mark.parametrize("no_data", ["hold", "reset"])
def test_clean_data_after_a_gap_ends_the_incident_without_acting(
    reference: Reference, no_data: str
) -> None:
    target = make_target({"no_data": no_data})
    kinds = script((DRIFT, 2), (DataStatus.ERROR, 60), (CLEAN, 20))
    ticks = run(target, World(reference, 22).observations(kinds))

    assert ticks[1].state.checks["prediction_drift"].state is CheckState.PENDING
    assert decisions(ticks) == []
    assert ticks[-1].state.phase is Phase.HEALTHY
    assert ticks[-1].state.incident is None


def test_missing_data_at_the_end_of_the_verify_window_escalates(reference: Reference) -> None:
    target = make_target()
    kinds = script((DRIFT, 4), (DataStatus.NO_DATA, 20))
    ticks = run(target, World(reference, 23).observations(kinds))

    [rollback] = rollbacks(ticks)
    [escalation] = escalations(ticks)
    assert escalation.at == rollback.at + VERIFY
    assert escalation.reasons[0].startswith("no data to verify the rollback")


# ------------------------------------------------------------------------------------ restarts


def restart(store: StateStore, state: TargetState) -> TargetState:
    """Save the state as the daemon does and read it back, as a restarted daemon does."""
    store.save(state)
    loaded = store.load(state.target)
    assert loaded is not None
    return loaded


@pytest.mark.parametrize("stop_at", [7, 8])  # one and two evaluations into the pending time
def test_restart_while_pending_keeps_the_timer(
    reference: Reference, tmp_path: Path, stop_at: int
) -> None:
    target = make_target({"for": "1m"})
    observations = World(reference, 30).observations(script((CLEAN, 6), (DRIFT, 30)))
    straight = run(target, observations)

    first = run(target, observations[:stop_at])
    assert first[-1].state.phase is Phase.DEGRADED
    assert first[-1].state.checks["prediction_drift"].state is CheckState.PENDING
    loaded = restart(StateStore(tmp_path, structlog.get_logger()), first[-1].state)
    assert loaded == first[-1].state
    resumed = first + run(target, observations[stop_at:], loaded)

    [rollback] = rollbacks(resumed)
    assert rollback.at == at(6) + timedelta(minutes=1)
    assert rollbacks(straight) == [rollback]
    assert [t.state for t in resumed] == [t.state for t in straight]


def test_restart_after_the_rollback_does_not_roll_back_again(
    reference: Reference, tmp_path: Path
) -> None:
    target = make_target()
    observations = World(reference, 31).observations(script((CLEAN, 6), (DRIFT, 40)))
    store = StateStore(tmp_path, structlog.get_logger())

    before = run(target, observations[:10])
    [rollback] = rollbacks(before)
    assert before[-1].state.phase is Phase.VERIFYING
    after = run(target, observations[10:], restart(store, before[-1].state))

    assert rollbacks(after) == []
    [escalation] = escalations(after)
    assert escalation.at == rollback.at + VERIFY
    assert escalation.incident == rollback.incident


def test_restart_before_the_rollback_outcome_never_decides_again(
    reference: Reference, tmp_path: Path
) -> None:
    """The daemon saves the state before acting; stopped in between, it comes back rolling
    back, and the core decides nothing more until the outcome of that incident arrives."""
    target = make_target()
    observations = World(reference, 32).observations(script((CLEAN, 6), (DRIFT, 40)))
    store = StateStore(tmp_path, structlog.get_logger())

    before = run(target, observations[:10], act=False)
    [rollback] = rollbacks(before)
    assert before[-1].state.phase is Phase.ROLLING_BACK
    waiting = run(target, observations[10:20], restart(store, before[-1].state), act=False)
    assert decisions(waiting) == []
    assert {t.state.phase for t in waiting} == {Phase.ROLLING_BACK}

    state = waiting[-1].state
    stale = ActionOutcome("another-incident", ok=True, dry_run=True)
    assert record_action(target, state, stale, at(19)) == (state, ())
    outcome = ActionOutcome(rollback.incident, ok=True, dry_run=True, detail="resumed")
    verifying, follow_ups = record_action(target, state, outcome, at(19))
    assert follow_ups == ()
    assert verifying.phase is Phase.VERIFYING
    assert verifying.verify_until == at(19) + VERIFY
    after = run(target, observations[20:], restart(store, verifying))
    assert rollbacks(after) == []
    assert [e.at for e in escalations(after)] == [at(19) + VERIFY]


def test_a_failed_rollback_escalates(reference: Reference) -> None:
    target = make_target()
    ticks = run(target, World(reference, 33).observations(script((DRIFT, 4))), act=False)
    [rollback] = rollbacks(ticks)
    outcome = ActionOutcome(rollback.incident, ok=False, dry_run=False, detail="403 Forbidden")
    state, follow_ups = record_action(target, ticks[-1].state, outcome, rollback.at)

    assert state.phase is Phase.ESCALATED
    [escalation] = follow_ups
    assert escalation.kind is DecisionKind.ESCALATE
    assert escalation.reasons == ("rollback failed: 403 Forbidden",)
    assert_round_trips(state)
    assert_round_trips(escalation)


# ------------------------------------------------------------------------- cooldown, no action


def test_second_incident_within_cooldown_escalates_and_after_it_rolls_back(
    reference: Reference,
) -> None:
    target = make_target()
    kinds = script(
        (DRIFT, 4),  # rollback at 3 (30 s)
        (CLEAN, 20),  # verified at 9, healthy
        (DRIFT, 4),  # second incident: fires at 27, 4 minutes after the rollback
        (CLEAN, 60),  # resolved; the cooldown ends at 63
        (DRIFT, 4),  # third incident: fires at 91, 14m40s after the rollback
        (CLEAN, 10),
    )
    ticks = run(target, World(reference, 40).observations(kinds))

    first, third = rollbacks(ticks)
    assert first.at == at(3)
    [second] = escalations(ticks)
    assert second.at == at(27)
    assert second.at - first.at < COOLDOWN
    assert second.incident != first.incident
    assert any("in cooldown after the rollback" in r for r in second.reasons)
    assert third.at == at(91)
    assert third.at - first.at >= COOLDOWN
    assert len({first.incident, second.incident, third.incident}) == 3


@pytest.mark.parametrize(
    "changes",
    [{"workload": {"kind": "none"}}, {"rollback": {"enabled": False}}],
    ids=["workload-none", "rollback-disabled"],
)
def test_without_a_rollback_the_trigger_escalates_once(
    reference: Reference, changes: dict[str, Any]
) -> None:
    target = make_target(changes)
    ticks = run(target, World(reference, 41).observations(script((CLEAN, 3), (DRIFT, 60))))

    assert rollbacks(ticks) == []
    [escalation] = escalations(ticks)
    assert escalation.at == at(3) + FOR
    assert "no rollback is configured for this target" in escalation.reasons
    assert phases(ticks) == [Phase.HEALTHY, Phase.DEGRADED, Phase.ESCALATED]


# ---------------------------------------------------------------------------- serialisation


def test_every_state_and_decision_round_trips_through_json(
    reference: Reference, tmp_path: Path
) -> None:
    """A timeline through every phase and decision kind: each state survives JSON and the
    state store, each decision survives JSON."""
    target = make_target()
    kinds = script((CLEAN, 2), (DRIFT, 14), (DataStatus.STALE, 3), (CLEAN, 12), (DRIFT, 5))
    observations = World(reference, 50).observations(kinds)
    waiting = run(target, observations[:6], act=False)  # the rollback outcome never arrives
    assert waiting[-1].state.phase is Phase.ROLLING_BACK
    acting = run(target, observations)
    ticks = waiting + acting

    # A person in the loop's phase and decisions: tests/unit/test_person_in_the_loop.py.
    people = {Phase.AWAITING_APPROVAL, DecisionKind.ASK_APPROVAL, DecisionKind.HOLD}
    assert {t.state.phase for t in ticks} == set(Phase) - people
    assert {d.kind for d in decisions(ticks)} == set(DecisionKind) - people
    store = StateStore(tmp_path, structlog.get_logger())
    for tick in ticks:
        assert_round_trips(tick.state)
        assert restart(store, tick.state) == tick.state
    for decision in decisions(ticks):
        assert_round_trips(decision)
