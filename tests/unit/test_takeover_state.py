"""A replica that takes a shard over (daemon/service.py `_leading_changed`) carries a target's
state on only when it evaluated the target itself less than one lease_duration ago: another
replica may have led it in between, and a stale pending timer would fire at once. Without a state
(dropped so, or a new pod), it continues the incident the workload's LAST_ACTION annotation
records (core/takeover.py `adopted`) instead of deciding it again."""

# ruff: noqa: F811  (tests take the imported `reference` fixture as a parameter of that name)

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog

from mlwatchdog.actions.dryrun import DryRunActuator
from mlwatchdog.actions.plan import LAST_ACTION, already_done, last_action, last_action_note
from mlwatchdog.core import (
    ActionOutcome,
    CheckState,
    Decision,
    DecisionKind,
    Observation,
    Phase,
    TargetState,
    WorkloadHealth,
    adopted,
    state_problems,
)
from mlwatchdog.daemon.journal import Journal
from mlwatchdog.daemon.metrics import DaemonMetrics
from mlwatchdog.daemon.runner import Actuator, TargetRunner
from mlwatchdog.daemon.state_store import StateStore
from mlwatchdog.detectors import Reference
from mlwatchdog.rules import Target
from mlwatchdog.rules.schema import Revisions
from tests.faults.test_kill_during_writes import capturing_log
from tests.unit.test_core_scenarios import (
    CLEAN,
    COOLDOWN,
    DRIFT,
    VERIFY,
    World,
    at,
    decisions,
    escalations,
    make_target,
    phases,
    reference,  # noqa: F401  the fixture
    rollbacks,
    run,
    script,
)
from tests.unit.test_reload import T0, _observation, config, metric, rules, target


class Breaching:
    """The errors metric above its threshold at every evaluation."""

    reference_builds = 0

    def observe(self, target: Target, now: datetime, serving: Any = None) -> Observation:
        return _observation(target.name, now, errors=0.2)


def runner_at(
    tmp_path: Path,
    clock: list[datetime],
    actuator: Actuator | None = None,
    log: Any = None,
    journal: Journal | None = None,
) -> TargetRunner:
    """Target `a`, its errors breaching (for: 10m), on `actuator` (default: offline dry-run)."""
    checked = config(rules(target("a", metric("errors", 0.05), **{"for": "10m"}))).target("a")
    log = log or structlog.get_logger()
    observer: Any = Breaching()
    return TargetRunner(
        checked, observer, actuator or DryRunActuator(log), StateStore(tmp_path, log),
        DaemonMetrics(), log, lambda: clock[0], journal,
    )  # fmt: skip


def pending_since(runner: TargetRunner) -> datetime | None:
    assert runner.state is not None
    record = runner.state.checks["errors"]
    assert record.state is CheckState.PENDING
    return record.active_at


def test_a_state_older_than_the_takeover_starts_afresh(tmp_path: Path) -> None:
    clock = [T0]
    runner = runner_at(tmp_path, clock)
    runner.run_once()
    assert pending_since(runner) == T0  # pending, 10 minutes to go

    # The shard was led elsewhere for an hour; taken back: the timer of then does not count.
    clock[0] = T0 + timedelta(hours=1)
    runner.forget_state_before(clock[0] - timedelta(seconds=15))
    assert runner.state is None  # no evaluation running: applied at once
    runner.run_once()
    assert pending_since(runner) == clock[0]  # not firing: the breach starts now


def test_a_state_evaluated_just_before_is_kept(tmp_path: Path) -> None:
    clock = [T0]
    runner = runner_at(tmp_path, clock)
    runner.run_once()
    clock[0] = T0 + timedelta(seconds=5)
    runner.forget_state_before(clock[0] - timedelta(seconds=15))  # evaluated 5 s ago: kept
    runner.run_once()
    assert pending_since(runner) == T0


# ---------------------------------------------------------------- the incident the heir adopts

INCIDENT = "credit-model-20261125T055800Z"


def annotated(target: Target, acted: datetime, incident: str = INCIDENT) -> dict[str, Any]:
    """The workload as a revert by replica-0 at `acted` left it: its LAST_ACTION annotation."""
    rollback = Decision(
        DecisionKind.ROLLBACK, target.name, incident, acted, ("prediction_drift: PSI 0.27",),
        to="prior", dry_run=False,
    )  # fmt: skip
    note = last_action_note(target, rollback, "replica-0", acted)
    return {"metadata": {"annotations": {LAST_ACTION: note}}}


def note_of(target: Target, acted: datetime, incident: str = INCIDENT) -> dict[str, Any]:
    """The annotation as the heir reads it (actions/plan.py `last_action`)."""
    return last_action(annotated(target, acted, incident))


def test_within_the_verify_window_the_heir_verifies_the_revert_it_did_not_make(
    reference: Reference,
) -> None:
    target, acted = make_target(), at(0)
    state = adopted(target, note_of(target, acted), at(3))  # taken over 30 s after the revert
    assert state is not None and state.incident is not None
    assert state.phase is Phase.VERIFYING and state.incident.id == INCIDENT
    assert state.incident.acted_at == state.last_action_at == acted
    assert state.verify_until == acted + VERIFY
    assert state.incident.reasons == ("prediction_drift: PSI 0.27",)
    assert state_problems(state, target.name) == []

    # Still drifting at the end of verify.window: escalated, as after its own revert; never
    # a second rollback.
    drifting = run(target, World(reference, 1).observations(script((DRIFT, 13)), start=3), state)
    assert rollbacks(drifting) == []
    (escalation,) = escalations(drifting)
    assert escalation.incident == INCIDENT and escalation.at == acted + VERIFY
    assert "not recovered after the rollback" in escalation.reasons

    # Recovered: the incident closes at the end of verify.window, nothing decided.
    clean = run(target, World(reference, 2).observations(script((CLEAN, 13)), start=3), state)
    assert decisions(clean) == []
    assert phases(clean) == [Phase.VERIFYING, Phase.HEALTHY]
    healthy = next(t for t in clean if t.state.phase is Phase.HEALTHY)
    assert healthy.at == acted + VERIFY and healthy.state.last_action_at == acted


def test_after_the_verify_window_only_the_cooldown_carries_on(reference: Reference) -> None:
    target, acted = make_target(), at(0)
    taken = at(13)  # 130 s after the revert: verify.window (2m) is over, cooldown (10m) is not
    state = adopted(target, note_of(target, acted), taken)
    assert state == TargetState(target.name, since=taken, last_action_at=acted)

    # Judged afresh: a breach lasting `for` opens an incident that escalates, in cooldown.
    ticks = run(target, World(reference, 3).observations(script((DRIFT, 6)), start=13), state)
    assert rollbacks(ticks) == []
    (escalation,) = escalations(ticks)
    assert escalation.incident != INCIDENT
    assert f"in cooldown after the rollback at {acted.isoformat()}" in escalation.reasons


@pytest.mark.parametrize("after", [timedelta(0), COOLDOWN - timedelta(seconds=1), COOLDOWN])
def test_the_note_counts_within_cooldown_exactly_as_it_stops_a_second_revert(
    after: timedelta,
) -> None:
    target, acted = make_target(), at(0)
    now = acted + after
    state = adopted(target, note_of(target, acted), now)
    # The actuator's rule for another incident's rollback at `now` (actions/plan.py).
    new_incident = Decision(DecisionKind.ROLLBACK, target.name, "other", now, ())
    skipped = already_done([annotated(target, acted)], target, new_incident, now)
    assert (state is not None) == bool(skipped) == (after < COOLDOWN)


def test_another_targets_note_is_not_adopted() -> None:
    target, other = make_target(), make_target({"name": "fraud-model"})
    assert adopted(target, note_of(other, at(0)), at(3)) is None


@pytest.mark.parametrize(
    "edit",
    [
        {"at": "yesterday"},
        {"at": "2026-11-25T06:00:00"},  # no timezone: when, then?
        {"at": None},
        {"incident": None},
        {"incident": ""},
        {"incident": 42},
        {"target": None},
    ],
)
def test_a_garbled_note_is_not_adopted(edit: dict[str, Any]) -> None:
    target = make_target()
    note = {**note_of(target, at(0)), **edit}
    assert adopted(target, note, at(3)) is None


def test_a_note_without_a_timezone_neither_adopts_nor_stops_a_revert() -> None:
    """A hand-edited `at` says no time: the heir starts afresh and the actuator reverts (it used
    to raise comparing a naive time with now)."""
    target, now = make_target(), at(3)
    workload = annotated(target, at(0))
    note = {**last_action(workload), "at": "2026-11-25T06:00:00"}
    workload["metadata"]["annotations"][LAST_ACTION] = json.dumps(note)
    rollback = Decision(DecisionKind.ROLLBACK, target.name, "other", now, ())
    assert adopted(target, note, now) is None
    assert already_done([workload], target, rollback, now) == ""


@pytest.mark.parametrize("raw", ["", "not json", "[1, 2]", '"a string"'])
def test_a_hand_edited_annotation_reads_as_no_note(raw: str) -> None:
    target = make_target()
    note = last_action({"metadata": {"annotations": {LAST_ACTION: raw}}})
    assert note == {} and adopted(target, note, at(3)) is None


class Annotated:
    """An actuator whose workload carries `note` (None: it cannot be read); nothing to act on."""

    def __init__(self, note: dict[str, Any] | None) -> None:
        self.note = note
        self.reads = 0

    def read_last_action(self, target: Target) -> dict[str, Any] | None:
        self.reads += 1
        return self.note

    def rollback(self, target: Target, decision: Decision) -> ActionOutcome:
        raise AssertionError(f"a second decision: {decision}")

    def health(self, target: Target) -> WorkloadHealth | None:
        return None

    def serving(self, target: Target) -> Revisions | None:
        return None


def test_a_taken_over_target_continues_the_incident_on_its_workload(tmp_path: Path) -> None:
    clock = [T0]
    log, capture = capturing_log()
    journal = Journal(tmp_path / "journal.jsonl")
    checked = config(rules(target("a", metric("errors", 0.05)))).target("a")
    actuator = Annotated(None)
    runner = runner_at(tmp_path, clock, actuator, log, journal)
    runner.run_once()
    assert actuator.reads == 1  # a new pod: nothing on the workload yet, started afresh
    assert pending_since(runner) == T0

    # Led elsewhere meanwhile: the other replica reverted the workload a minute ago.
    clock[0] = T0 + timedelta(hours=1)
    acted = clock[0] - timedelta(minutes=1)
    actuator.note = last_action(annotated(checked, acted, "a-20261125T065800Z"))
    runner.forget_state_before(clock[0] - timedelta(seconds=15))
    evaluation = runner.run_once()
    assert evaluation is not None and evaluation.decisions == ()
    state = runner.state
    assert state is not None and state.incident is not None
    assert state.phase is Phase.VERIFYING and state.incident.id == "a-20261125T065800Z"
    assert state.verify_until == acted + checked.verify_window

    (line,) = [e for e in capture.entries if e["event"].startswith("incident adopted")]
    assert line["event"] == "incident adopted from the workload's last-action annotation"
    assert (line["incident"], line["by"], line["at"]) == (
        "a-20261125T065800Z", "replica-0", acted.isoformat(),
    )  # fmt: skip
    kinds = [(e["kind"], e.get("phase")) for e in journal.entries()]
    assert kinds[-2:] == [("adopted", "verifying"), ("phase", "verifying")]
    adoption = next(e for e in journal.entries() if e["kind"] == "adopted")
    assert adoption["incident"] == "a-20261125T065800Z" and adoption["by"] == "replica-0"
    runner.run_once()
    assert actuator.reads == 2  # only when the state was dropped, not on every evaluation
