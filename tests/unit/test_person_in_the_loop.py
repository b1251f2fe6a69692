"""A person in the loop, in the pure core: pause, silence and rollback.confirm.

One metric check (`errors`, above 0.05) on a virtual clock, one evaluation every 10 s; its results
are given directly to `decide` (the measuring half is tested elsewhere). `for: 30s`, so a breach
from T0 fires at T0+30s and the trigger holds from then.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog
import yaml

from mlwatchdog.core import (
    ActionOutcome,
    CheckResult,
    DataStatus,
    Decision,
    DecisionKind,
    Hold,
    Phase,
    TargetState,
    decide,
    from_json,
    record_action,
    state_problems,
    to_json,
)
from mlwatchdog.core.people import NotCurrent, answer, pause, resume, silence, unsilence
from mlwatchdog.daemon.auth import route_role
from mlwatchdog.daemon.reload import carry_state
from mlwatchdog.daemon.state_store import StateStore
from mlwatchdog.errors import ConfigError
from mlwatchdog.rules import Target, parse_config

T0 = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)
STEP = timedelta(seconds=10)
FOR = timedelta(seconds=30)
FIRES = T0 + FOR  # the first evaluation where the trigger holds, for a breach from T0


def make_target(**rollback: Any) -> Target:
    rules = {
        "version": 1,
        "sources": {
            "live": {"type": "files", "url": "/nonexistent/live"},
            "prom": {"type": "prometheus", "url": "http://prometheus.invalid:9090"},
        },
        "targets": [
            {
                "name": "credit-model",
                "workload": {"kind": "argo-rollout", "name": "credit-model", "namespace": "m"},
                "samples": {"source": "live", "window": "1m"},
                "reference": {
                    "source": "live",
                    "start": "2026-01-01T00:00Z",
                    "end": "2026-01-02T00:00Z",
                },
                "columns": {"predictions": {"score": "numeric"}},
                "checks": [
                    {
                        "name": "errors",
                        "type": "metric",
                        "source": "prom",
                        "query": "e",
                        "above": 0.05,
                    },
                ],
                "for": "30s",
                "resolve_after": "1m",
                "cooldown": "10m",
                "verify": {"window": "2m"},
                "rollback": {"to": "prior", "dry_run": True, **rollback},
            }
        ],
    }
    return parse_config(yaml.safe_dump(rules, sort_keys=False), "people.yaml").targets[0]


def result(kind: str) -> CheckResult:
    if kind == "breach":
        return CheckResult("errors", DataStatus.OK, breaching=True, value=0.2, threshold=0.05)
    if kind == "clean":
        return CheckResult("errors", DataStatus.OK, breaching=False, value=0.0, threshold=0.05)
    return CheckResult("errors", DataStatus.NO_DATA, reason="no samples")


@dataclass
class Run:
    """Evaluations of one target as the daemon makes them: decide, then a dry-run outcome for
    each rollback (as the dry-run actuator reports), between them a person's commands."""

    target: Target
    now: datetime = T0
    state: TargetState | None = None
    decisions: list[Decision] = field(default_factory=list)
    phases: list[Phase] = field(default_factory=list)

    def tick(self, kind: str = "breach", n: int = 1) -> list[Decision]:
        made: list[Decision] = []
        for _ in range(n):
            state, decided = decide(self.target, [result(kind)], self.state, self.now)
            made += decided
            for decision in decided:
                if decision.kind is DecisionKind.ROLLBACK:
                    outcome = ActionOutcome(decision.incident, ok=True, dry_run=True)
                    state, follow_ups = record_action(self.target, state, outcome, self.now)
                    made += follow_ups
            assert state_problems(state, self.target.name) == []
            self.state = state
            self.phases.append(state.phase)
            self.now += STEP
        self.decisions += made
        return made

    def until(self, when: datetime, kind: str = "breach") -> list[Decision]:
        made = []
        while self.now < when:
            made += self.tick(kind)
        return made

    def person(self, change: Any) -> None:
        """A person's command between two evaluations, at the clock's now."""
        base = self.state or TargetState(target=self.target.name, since=self.now)
        self.state = change(base, self.now)
        assert state_problems(self.state, self.target.name) == []

    def kinds(self, decisions: list[Decision] | None = None) -> list[DecisionKind]:
        return [d.kind for d in (self.decisions if decisions is None else decisions)]

    @property
    def phase(self) -> Phase:
        assert self.state is not None
        return self.state.phase

    @property
    def incident(self) -> str:
        assert self.state is not None and self.state.incident is not None
        return self.state.incident.id


# ------------------------------------------------------------------------------------ pause


def test_a_paused_target_holds_its_rollback_once_then_acts_when_resumed() -> None:
    run = Run(make_target())
    run.person(lambda s, now: pause(s, "alice", now, reason="release freeze"))
    run.until(FIRES + 5 * STEP)

    # Evaluated and truthful: the check fires, the target is degraded, one hold recorded.
    assert run.state is not None
    assert run.state.checks["errors"].fired_at == FIRES
    assert run.phase is Phase.DEGRADED
    [held] = run.decisions
    assert held.kind is DecisionKind.HOLD and held.held is DecisionKind.ROLLBACK
    assert held.at == FIRES and held.incident == run.incident
    assert held.to == "prior"
    assert "paused by alice until resumed: release freeze" in held.reasons
    assert run.state.last_action_at is None and run.state.incident is not None
    assert run.state.incident.acted_at is None

    run.person(lambda s, _: resume(s))
    [rollback] = run.tick()
    assert rollback.kind is DecisionKind.ROLLBACK and rollback.incident == held.incident
    assert run.phase is Phase.VERIFYING
    run.tick(n=5)  # one incident, one action
    assert run.kinds().count(DecisionKind.ROLLBACK) == 1


def test_a_pause_with_an_end_expires_by_itself() -> None:
    run = Run(make_target())
    run.person(lambda s, now: pause(s, "bob", now, until=now + timedelta(seconds=50)))
    held = run.until(T0 + timedelta(seconds=50))
    assert run.kinds(held) == [DecisionKind.HOLD]
    assert run.state is not None and run.state.paused is not None
    [rollback] = run.tick()  # at T0+50s the pause is over
    assert rollback.kind is DecisionKind.ROLLBACK
    assert run.state.paused is None


def test_a_pause_does_not_hold_escalations() -> None:
    run = Run(make_target(enabled=False))
    run.person(lambda s, now: pause(s, "alice", now))
    run.until(FIRES + STEP)
    [escalation] = run.decisions
    assert escalation.kind is DecisionKind.ESCALATE
    assert run.phase is Phase.ESCALATED


def test_pausing_never_makes_a_rollback_out_of_missing_data() -> None:
    run = Run(make_target())
    run.person(lambda s, now: pause(s, "alice", now))
    run.until(FIRES + STEP)
    run.person(lambda s, _: resume(s))
    assert run.tick("no_data", 3) == []  # held, then no data: nothing is done on held state
    [rollback] = run.tick("breach")
    assert rollback.kind is DecisionKind.ROLLBACK


# ---------------------------------------------------------------------------------- silence


def test_a_silence_holds_rollbacks_and_escalations_and_announces_after_it_ends() -> None:
    run = Run(make_target(enabled=False))
    end = T0 + timedelta(minutes=2)
    run.person(lambda s, now: silence(s, "carol", now, end, "known incident INC-7"))
    run.until(end)
    assert run.phase is Phase.ESCALATED  # truthful
    [held] = run.decisions
    assert held.kind is DecisionKind.HOLD and held.held is DecisionKind.ESCALATE
    assert any(r.startswith("silenced by carol until") for r in held.reasons)
    assert run.state.incident is not None and run.state.incident.escalated_at is None

    [announced] = run.tick()  # the silence is over; the incident still open: announce it now
    assert announced.kind is DecisionKind.ESCALATE and announced.at == end
    assert "while silenced" in announced.reasons[0]
    assert run.tick(n=3) == []


def test_an_incident_that_ends_during_its_silence_is_never_announced() -> None:
    run = Run(make_target(enabled=False))
    end = T0 + timedelta(minutes=5)
    run.person(lambda s, now: silence(s, "carol", now, end))
    run.until(FIRES + STEP)
    run.until(end + STEP, kind="clean")
    assert run.kinds() == [DecisionKind.HOLD]
    assert run.phase is Phase.HEALTHY


def test_a_silence_holds_the_rollback_and_ends_early_on_unsilence() -> None:
    run = Run(make_target())
    run.person(lambda s, now: silence(s, "carol", now, now + timedelta(hours=1)))
    run.until(FIRES + 3 * STEP)
    assert [(d.kind, d.held) for d in run.decisions] == [(DecisionKind.HOLD, DecisionKind.ROLLBACK)]
    run.person(lambda s, _: unsilence(s))
    assert run.kinds(run.tick()) == [DecisionKind.ROLLBACK]


def test_a_silence_must_end_and_a_pause_must_end_in_the_future() -> None:
    state = TargetState(target="credit-model", since=T0)
    with pytest.raises(ValueError, match="end after now"):
        silence(state, "carol", T0, T0)
    with pytest.raises(ValueError, match="end after now"):
        pause(state, "carol", T0, T0 - STEP)
    assert state_problems(silence(state, "carol", T0, T0 + STEP), "credit-model") == []
    endless = replace(state, silenced=Hold(by="carol", at=T0, until=None))
    assert "silenced without an end" in " ".join(state_problems(endless, "credit-model"))


# ---------------------------------------------------------------------------------- confirm


def confirming(on_timeout: str = "escalate", timeout: str = "2m") -> Target:
    return make_target(confirm={"timeout": timeout, "on_timeout": on_timeout})


def test_a_confirmed_rollback_waits_for_approval_and_acts_once_approved() -> None:
    run = Run(confirming())
    run.until(FIRES + STEP)
    [asked] = run.decisions
    assert asked.kind is DecisionKind.ASK_APPROVAL
    assert asked.deadline == FIRES + timedelta(minutes=2)
    assert run.phase is Phase.AWAITING_APPROVAL
    assert run.tick(n=3) == []  # waiting: nothing more is asked, nothing done

    incident = run.incident
    run.person(lambda s, now: answer(s, incident, True, "dave", now, "checked the canary"))
    [rollback] = run.tick()
    assert rollback.kind is DecisionKind.ROLLBACK and rollback.incident == incident
    assert "approved by dave: checked the canary" in rollback.reasons
    assert run.phase is Phase.VERIFYING

    # An approval for an incident that acted is refused, saying why; nothing acts twice.
    with pytest.raises(NotCurrent, match="does not wait for approval: the target is verifying"):
        answer(run.state, incident, True, "erin", run.now)
    run.tick(n=20)
    assert run.kinds().count(DecisionKind.ROLLBACK) == 1


def test_a_rejected_rollback_escalates_without_acting() -> None:
    run = Run(confirming(on_timeout="act"))
    run.until(FIRES + STEP)
    incident = run.incident
    run.person(lambda s, now: answer(s, incident, False, "dave", now, "a bad reference"))
    assert run.tick(n=30) == []
    assert run.phase is Phase.ESCALATED
    assert DecisionKind.ROLLBACK not in run.kinds()
    with pytest.raises(NotCurrent, match="does not wait for approval: the target is escalated"):
        answer(run.state, incident, True, "erin", run.now)


@pytest.mark.parametrize("on_timeout", ["act", "escalate"])
def test_without_an_answer_the_deadline_acts_or_escalates(on_timeout: str) -> None:
    run = Run(confirming(on_timeout=on_timeout))
    run.until(FIRES + STEP)
    deadline = FIRES + timedelta(minutes=2)
    assert run.until(deadline) == []
    [then] = run.tick()
    assert then.at == deadline
    if on_timeout == "act":
        assert then.kind is DecisionKind.ROLLBACK
        assert any("on_timeout: act" in r for r in then.reasons)
    else:
        assert then.kind is DecisionKind.ESCALATE
        assert any("no answer by" in r for r in then.reasons)
        assert run.phase is Phase.ESCALATED
    # Too late to answer now.
    with pytest.raises(NotCurrent):
        answer(run.state, then.incident, True, "dave", run.now)


def test_an_answer_after_the_deadline_is_refused_before_the_next_evaluation() -> None:
    run = Run(confirming())
    run.until(FIRES + STEP)
    incident = run.incident
    with pytest.raises(NotCurrent, match="deadline for an answer passed"):
        answer(run.state, incident, True, "dave", FIRES + timedelta(minutes=2))


def test_an_approved_rollback_waits_for_data_on_which_the_trigger_holds() -> None:
    run = Run(confirming(on_timeout="act"))
    run.until(FIRES + STEP)
    incident = run.incident
    run.person(lambda s, now: answer(s, incident, True, "dave", now))
    assert run.tick("no_data", 20) == []  # past the deadline too: never on missing data
    assert run.phase is Phase.AWAITING_APPROVAL
    assert run.kinds(run.tick("breach")) == [DecisionKind.ROLLBACK]


def test_answers_for_other_or_answered_incidents_are_refused_saying_why() -> None:
    run = Run(confirming())
    with pytest.raises(NotCurrent, match="no open incident"):
        answer(run.state, "credit-model-x", True, "dave", run.now)
    run.until(FIRES + STEP)
    incident = run.incident
    with pytest.raises(NotCurrent, match=f"the target's incident is '{incident}'"):
        answer(run.state, "credit-model-20260101T000000Z", True, "dave", run.now)
    run.person(lambda s, now: answer(s, incident, False, "dave", now))
    with pytest.raises(NotCurrent, match="already rejected by dave"):
        answer(run.state, incident, True, "erin", run.now)


def test_a_waiting_incident_that_recovers_closes_and_withdraws_the_question() -> None:
    run = Run(confirming(timeout="1h"))
    run.until(FIRES + STEP)
    incident = run.incident
    run.until(run.now + timedelta(minutes=3), kind="clean")
    assert run.phase is Phase.HEALTHY
    with pytest.raises(NotCurrent, match="no open incident"):
        answer(run.state, incident, True, "dave", run.now)
    assert run.kinds() == [DecisionKind.ASK_APPROVAL]


def test_a_pause_holds_an_approved_rollback_until_resumed() -> None:
    run = Run(confirming())
    run.until(FIRES + STEP)
    incident = run.incident
    run.person(lambda s, now: answer(s, incident, True, "dave", now))
    run.person(lambda s, now: pause(s, "alice", now))
    held = run.tick(n=3)
    assert [(d.kind, d.held) for d in held] == [(DecisionKind.HOLD, DecisionKind.ROLLBACK)]
    run.person(lambda s, _: resume(s))
    assert run.kinds(run.tick()) == [DecisionKind.ROLLBACK]


def test_a_paused_target_with_confirm_does_not_ask_until_resumed() -> None:
    run = Run(confirming())
    run.person(lambda s, now: pause(s, "alice", now))
    run.until(FIRES + 3 * STEP)
    assert [(d.kind, d.held) for d in run.decisions] == [
        (DecisionKind.HOLD, DecisionKind.ASK_APPROVAL)
    ]
    run.person(lambda s, _: resume(s))
    assert run.kinds(run.tick()) == [DecisionKind.ASK_APPROVAL]


def test_confirm_is_validated_in_rules_yaml() -> None:
    assert confirming().rollback.confirm is not None
    assert make_target(confirm={}).rollback.confirm.on_timeout == "escalate"  # type: ignore[union-attr]
    with pytest.raises(ConfigError, match="on_timeout"):
        make_target(confirm={"on_timeout": "maybe"})
    with pytest.raises(ConfigError, match=r"confirm\.timeout must be positive"):
        make_target(confirm={"timeout": "0s"})


# ------------------------------------------------------------------------------ persistence


def test_every_new_state_and_decision_survives_json_and_a_restart(tmp_path: Path) -> None:
    run = Run(confirming())
    states = []
    run.person(lambda s, now: pause(s, "alice", now, now + timedelta(seconds=40), "freeze"))
    run.person(lambda s, now: silence(s, "carol", now, now + timedelta(seconds=20), "noisy"))
    for _ in range(12):
        run.tick()
        assert run.state is not None
        states.append(run.state)
    incident = run.incident
    run.person(lambda s, now: answer(s, incident, True, "dave", now, "ok"))
    assert run.state is not None
    states.append(run.state)
    assert {s.phase for s in states} >= {Phase.DEGRADED, Phase.AWAITING_APPROVAL}
    assert {d.kind for d in run.decisions} == {DecisionKind.HOLD, DecisionKind.ASK_APPROVAL}
    store = StateStore(tmp_path, structlog.get_logger())
    for state in states:
        assert from_json(TargetState, json.loads(json.dumps(to_json(state)))) == state
        store.save(state)
        assert store.load(state.target) == state
    for decision in run.decisions:
        assert from_json(Decision, json.loads(json.dumps(to_json(decision)))) == decision


def test_a_state_file_awaiting_approval_that_acted_is_set_aside(tmp_path: Path) -> None:
    run = Run(confirming())
    run.until(FIRES + STEP)
    assert run.state is not None and run.state.incident is not None
    acted = replace(run.state, incident=replace(run.state.incident, acted_at=run.now))
    assert "awaiting approval for an incident that already acted" in state_problems(
        acted, "credit-model"
    )
    store = StateStore(tmp_path, structlog.get_logger())
    store.path("credit-model").write_text(json.dumps(to_json(acted)))
    assert store.load("credit-model") is None


def test_a_config_reload_keeps_the_pause_silence_and_waiting_approval() -> None:
    run = Run(confirming())
    run.person(lambda s, now: silence(s, "carol", now, now + timedelta(hours=1)))
    run.person(lambda s, now: pause(s, "alice", now))
    run.until(FIRES + STEP)
    run.person(lambda s, _: unsilence(resume(s)))
    run.tick()
    assert run.phase is Phase.AWAITING_APPROVAL
    run.person(lambda s, now: pause(s, "alice", now, reason="kept"))
    assert run.state is not None
    kept = carry_state(run.state, confirming(timeout="5m"))
    assert kept is not None
    assert kept.paused == run.state.paused and kept.incident == run.state.incident


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/targets/credit-model/pause",
        "/api/v1/targets/credit-model/resume",
        "/api/v1/targets/credit-model/silence",
        "/api/v1/targets/credit-model/unsilence",
        "/api/v1/incidents/credit-model-20261125T060000Z/approve",
        "/api/v1/incidents/credit-model-20261125T060000Z/reject",
    ],
)
def test_a_persons_commands_need_the_operate_role(path: str) -> None:
    assert route_role("POST", path) == "operate"
    assert route_role("GET", "/api/v1/targets") == "read"
