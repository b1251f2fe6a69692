"""Decide: a target's lifecycle, healthy -> degraded -> rolling_back -> verifying -> healthy or
escalated, and the decisions it makes on the way. Pure; called by the daemon and by replay.

Safety rules, each enforced here once:
- a rollback needs the trigger to hold on checks that fire *with data in this evaluation*; a
  check without data in it is unknown (never quiet), so no `not` holds on it;
- one incident acts at most once, and a new incident within `cooldown` of the last action
  escalates instead of acting again;
- after acting, the checks must recover within `verify.window`, with data, or the target escalates
  and nothing more is done automatically.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from mlwatchdog.core.checks import step
from mlwatchdog.core.measure import measure
from mlwatchdog.core.model import (
    ActionOutcome,
    CheckRecord,
    CheckResult,
    CheckState,
    DataStatus,
    Decision,
    DecisionKind,
    Health,
    Incident,
    Observation,
    Phase,
    TargetState,
    WorkloadHealth,
)
from mlwatchdog.rules import Target, Trigger, parse_trigger


@dataclass(frozen=True)
class Evaluation:
    """The outcome of one evaluation: the next state, the decisions, and the check results."""

    state: TargetState
    decisions: tuple[Decision, ...]
    results: tuple[CheckResult, ...]


def evaluate(
    target: Target, observation: Observation, state: TargetState | None, now: datetime
) -> Evaluation:
    """Measure the observation and decide; `state` is None for a target never evaluated."""
    results = measure(target, observation)
    next_state, decisions = decide(target, results, state, now, observation.workload)
    return Evaluation(next_state, decisions, results)


@dataclass(frozen=True)
class _Step:
    """What the phase handlers read: the target, the updated state, and this evaluation's facts."""

    target: Target
    state: TargetState
    trigger: Trigger
    results: Mapping[str, CheckResult]
    now: datetime
    workload: WorkloadHealth | None

    def holds_on_firing(self) -> bool:
        """The trigger holds on checks that fire and had data now. A check without data now is
        unknown, neither firing nor quiet: held state alone never completes the trigger, and a
        check without data never satisfies a `not` either."""
        return self.trigger.holds(
            {
                name: record.state is CheckState.FIRING
                if self.results[name].status is DataStatus.OK
                else None
                for name, record in self.state.checks.items()
            }
        )

    def holds_on_recent_breach(self, since: datetime) -> bool:
        """The trigger holds on the checks that breached (with data) after `since`. Read only
        once every check of the trigger has data now (`trigger_has_data`), so none is unknown
        here; one without data for a while counts as not breaching then, which for a check under
        `not` can only make the trigger hold (escalate), never declare a recovery."""
        return self.trigger.holds(
            {
                name: record.last_breach_at is not None and record.last_breach_at > since
                for name, record in self.state.checks.items()
            }
        )

    def trigger_has_data(self) -> bool:
        return all(self.results[n].status is DataStatus.OK for n in self.trigger.names)

    def reasons(self, names: Sequence[str] | None = None) -> tuple[str, ...]:
        chosen = sorted(self.trigger.names) if names is None else names
        return tuple(f"{n}: {self.results[n].reason}" for n in chosen if self.results[n].reason)

    def any_active(self) -> bool:
        return any(r.state is not CheckState.INACTIVE for r in self.state.checks.values())

    def quiet_long_enough(self) -> bool:
        quiet = self.state.quiet_since
        return quiet is not None and self.now - quiet >= self.target.resolve_after


def decide(
    target: Target,
    results: Sequence[CheckResult],
    previous: TargetState | None,
    now: datetime,
    workload: WorkloadHealth | None = None,
) -> tuple[TargetState, tuple[Decision, ...]]:
    """The target's next state and decisions, given this evaluation's check results (and, while
    a rollback is verified, the reverted workload's health)."""
    prev = previous or TargetState(target=target.name, since=now)
    by_name = {r.check: r for r in results}
    checks = {
        check.name: step(
            prev.checks.get(check.name, CheckRecord()),
            by_name[check.name],
            now,
            hold_for=check.for_ if check.for_ is not None else target.for_,
            resolve_after=target.resolve_after,
            no_data=target.no_data,
        )
        for check in target.checks
    }
    active = any(r.state is not CheckState.INACTIVE for r in checks.values())
    quiet_since = None if active else (prev.quiet_since or now)
    updated = replace(prev, checks=checks, quiet_since=quiet_since, evaluated_at=now)
    trigger = parse_trigger(target.trigger, list(checks))
    step_ = _Step(target, updated, trigger, by_name, now, workload)
    next_state, decisions = _HANDLERS[prev.phase](step_)
    if next_state.phase is not prev.phase:
        next_state = replace(next_state, since=now)
    return next_state, decisions


def record_action(
    target: Target, state: TargetState, outcome: ActionOutcome, now: datetime
) -> tuple[TargetState, tuple[Decision, ...]]:
    """Fold the actuator's outcome in: verify after success, escalate after failure.

    An outcome for another incident, or when no rollback is under way, changes nothing.
    """
    incident = state.incident
    if state.phase is not Phase.ROLLING_BACK or incident is None or incident.id != outcome.incident:
        return state, ()
    if outcome.ok:
        until = now + target.verify_window
        return replace(state, phase=Phase.VERIFYING, since=now, verify_until=until), ()
    verb = "refused by policy" if outcome.refused else "failed"
    reasons = (f"rollback {verb}: {outcome.detail}",)
    return _escalate(replace(state, since=now), now, reasons)


# ------------------------------------------------------------------------------------ phases

Handled = tuple[TargetState, tuple[Decision, ...]]


def _watching(s: _Step) -> Handled:
    """healthy or degraded: open an incident on activity, act when the trigger holds."""
    state, now, target = s.state, s.now, s.target
    if s.holds_on_firing():
        incident = state.incident or _new_incident(target.name, now)
        firing = [n for n in sorted(s.trigger.names) if state.checks[n].state is CheckState.FIRING]
        reasons = s.reasons(firing)
        state = replace(state, incident=incident)
        if target.workload.kind == "none" or not target.rollback.enabled:
            return _escalate(state, now, (*reasons, "no rollback is configured for this target"))
        last = state.last_action_at
        if last is not None and now - last < target.cooldown:
            return _escalate(
                state, now, (*reasons, f"in cooldown after the rollback at {last.isoformat()}")
            )
        decision = Decision(
            DecisionKind.ROLLBACK,
            target.name,
            incident.id,
            now,
            reasons,
            to=target.rollback.to,
            dry_run=target.rollback.dry_run,
        )
        acted = replace(incident, acted_at=now, reasons=reasons)
        return (
            replace(state, phase=Phase.ROLLING_BACK, incident=acted, last_action_at=now),
            (decision,),
        )
    if s.any_active():
        incident = state.incident or _new_incident(target.name, now)
        return replace(state, phase=Phase.DEGRADED, incident=incident), ()
    if state.phase is Phase.DEGRADED and not s.quiet_long_enough():
        return state, ()  # resolve delay: a flapping check does not flap the target
    return replace(state, phase=Phase.HEALTHY, incident=None), ()


def _rolling_back(s: _Step) -> Handled:
    """Waiting for the actuator's outcome (`record_action`); nothing is decided meanwhile."""
    return s.state, ()


def _verifying(s: _Step) -> Handled:
    """Acted: at the end of verify.window the checks must have recovered, with data.

    Recovered means the trigger would not hold on the checks that breached in the last
    `resolve_after` of the window, counting only windows of samples taken wholly after the action:
    one clean window at the end of a still flapping model is not a recovery, and windows that
    still hold samples from before the revert are forgiven. (`check` requires verify.window to be
    longer than samples.window, so such windows exist.) The workload itself, when it was read,
    must be healthy on the reverted version by then too.
    """
    state, now, target = s.state, s.now, s.target
    assert state.verify_until is not None
    if now < state.verify_until:
        return state, ()
    if not s.trigger_has_data():
        missing = [n for n in sorted(s.trigger.names) if s.results[n].status is not DataStatus.OK]
        return _escalate(state, now, (f"no data to verify the rollback: {', '.join(missing)}",))
    workload = s.workload
    if workload is not None and workload.status is not Health.HEALTHY:
        reason = f"the workload is {workload.status} after the rollback: {workload.reason}"
        return _escalate(state, now, (reason,))
    acted = state.last_action_at or now
    since = max(acted + target.samples.window, now - target.resolve_after)
    if s.holds_on_recent_breach(since):
        recent = f"breached after {since.isoformat()} (windows wholly after the rollback)"
        return _escalate(state, now, ("not recovered after the rollback", recent, *s.reasons()))
    # Recovered: checks that no longer breach resolve now, without waiting out resolve_after,
    # so their firing state cannot open a new incident straight away.
    checks = {
        name: record if s.results[name].breaching else CheckRecord(
            resolved_at=now, status=s.results[name].status, value=s.results[name].value
        )
        for name, record in state.checks.items()
    }  # fmt: skip
    return replace(
        state, phase=Phase.HEALTHY, checks=checks, incident=None, verify_until=None, quiet_since=now
    ), ()


def _escalated(s: _Step) -> Handled:
    """Needs a human; nothing automatic. Closes when every check has been quiet long enough."""
    if not s.any_active() and s.quiet_long_enough():
        return replace(s.state, phase=Phase.HEALTHY, incident=None, verify_until=None), ()
    return s.state, ()


_HANDLERS: dict[Phase, Callable[[_Step], Handled]] = {
    Phase.HEALTHY: _watching,
    Phase.DEGRADED: _watching,
    Phase.ROLLING_BACK: _rolling_back,
    Phase.VERIFYING: _verifying,
    Phase.ESCALATED: _escalated,
}


def _new_incident(target: str, now: datetime) -> Incident:
    return Incident(id=f"{target}-{now:%Y%m%dT%H%M%SZ}", started_at=now)


def _escalate(state: TargetState, now: datetime, reasons: tuple[str, ...]) -> Handled:
    """Escalate the incident, announcing it once."""
    incident = state.incident or _new_incident(state.target, now)
    escalated = replace(state, phase=Phase.ESCALATED, verify_until=None)
    if incident.escalated_at is not None:
        return replace(escalated, incident=incident), ()
    decision = Decision(DecisionKind.ESCALATE, state.target, incident.id, now, reasons)
    return replace(escalated, incident=replace(incident, escalated_at=now)), (decision,)
