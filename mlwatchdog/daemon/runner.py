"""One target's evaluation loop body: observe, evaluate, persist, act, record (the shell's steps).

The scheduler calls `run_once` at the target's interval, never twice at a time for one target.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Any, Protocol

from mlwatchdog.core import (
    ActionOutcome,
    Decision,
    DecisionKind,
    Evaluation,
    Phase,
    TargetState,
    WorkloadHealth,
    evaluate,
    record_action,
)
from mlwatchdog.daemon.metrics import DaemonMetrics
from mlwatchdog.daemon.state_store import StateStore
from mlwatchdog.rules import Target
from mlwatchdog.sources.observe import Observer


class Actuator(Protocol):
    def rollback(self, target: Target, decision: Decision) -> ActionOutcome: ...

    def health(self, target: Target) -> WorkloadHealth | None: ...


class TargetRunner:
    """Evaluates one target and carries out its decisions."""

    def __init__(
        self,
        target: Target,
        observer: Observer,
        actuator: Actuator,
        store: StateStore,
        metrics: DaemonMetrics,
        log: Any,
        clock: Callable[[], datetime],
    ) -> None:
        self.target = target
        self.observer = observer
        self.actuator = actuator
        self.store = store
        self.metrics = metrics
        self.log = log.bind(target=target.name)
        self.clock = clock
        self.state: TargetState | None = store.load(target.name)
        self.last: Evaluation | None = None
        if self.state is not None:
            self.log.info(
                "state restored", state=self.state.phase, incident=_incident_id(self.state)
            )
            metrics.phase(target.name, self.state.phase)

    def run_once(self) -> Evaluation | None:
        """One evaluation at the clock's now; failures are logged and counted, never raised."""
        now = self.clock()
        started = time.perf_counter()
        builds = self.observer.reference_builds
        try:
            if self.state is not None and self.state.phase is Phase.ROLLING_BACK:
                self._resume(now)
            observation = self.observer.observe(self.target, now)
            if self._verifying_a_sent_rollback():
                observation = replace(observation, workload=self.actuator.health(self.target))
            evaluation = evaluate(self.target, observation, self.state, now)
        except Exception:
            # A bug or an unexpected source failure must not stop the daemon, nor act.
            self.log.exception("evaluation failed")
            self.metrics.failed(self.target.name)
            return None
        self.metrics.reference_builds.inc(self.observer.reference_builds - builds)
        state = evaluation.state
        self._save(state)  # before acting: a restart never repeats a decision already made
        for decision in evaluation.decisions:
            state = self._carry_out(decision, state, now)
        evaluation = Evaluation(state, evaluation.decisions, evaluation.results)
        self.last = evaluation
        seconds = time.perf_counter() - started
        self.metrics.record(self.target.name, evaluation, seconds, now.timestamp())
        self.log.info(
            "evaluated",
            at=now.isoformat(),
            state=state.phase,
            seconds=round(seconds, 4),
            checks={
                r.check: {
                    "state": state.checks[r.check].state.name.lower(),
                    "status": r.status,
                    "value": r.value,
                    "breaching": r.breaching,
                    "reason": r.reason,
                }
                for r in evaluation.results
            },
        )
        return evaluation

    def _carry_out(self, decision: Decision, state: TargetState, now: datetime) -> TargetState:
        self.metrics.decision(decision)
        self.log.warning(
            f"decision: {decision.kind}",
            incident=decision.incident,
            to=decision.to,
            dry_run=decision.dry_run if decision.kind is DecisionKind.ROLLBACK else None,
            reasons=list(decision.reasons),
        )
        if decision.kind is not DecisionKind.ROLLBACK:
            return state
        outcome = self.actuator.rollback(self.target, decision)
        self.metrics.action(self.target.name, outcome)
        state, follow_ups = record_action(self.target, state, outcome, now)
        self._save(state)
        self.log.info("action outcome", ok=outcome.ok, detail=outcome.detail, state=state.phase)
        for follow_up in follow_ups:
            state = self._carry_out(follow_up, state, now)
        return state

    def _resume(self, now: datetime) -> None:
        """A rollback was decided but its outcome never recorded (the daemon stopped in between):
        carry it out again; actuators are idempotent, so an object already reverted is left alone.
        """
        assert self.state is not None and self.state.incident is not None
        incident = self.state.incident
        decision = Decision(
            DecisionKind.ROLLBACK,
            self.target.name,
            incident.id,
            incident.acted_at or now,
            incident.reasons,
            to=self.target.rollback.to,
            dry_run=self.target.rollback.dry_run,
        )
        self.log.warning("resuming an interrupted rollback", incident=incident.id)
        outcome = self.actuator.rollback(self.target, decision)
        self.metrics.action(self.target.name, outcome)
        state, follow_ups = record_action(self.target, self.state, outcome, now)
        self._save(state)
        for follow_up in follow_ups:
            self._carry_out(follow_up, state, now)

    def _verifying_a_sent_rollback(self) -> bool:
        """The workload's own health matters once a rollback was really sent (not in dry-run)."""
        state = self.state
        return (
            state is not None
            and state.phase is Phase.VERIFYING
            and not self.target.rollback.dry_run
        )

    def _save(self, state: TargetState) -> None:
        self.state = state
        self.store.save(state)


def _incident_id(state: TargetState) -> str | None:
    return state.incident.id if state.incident else None
