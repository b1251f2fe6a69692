"""Decide: a target's lifecycle, healthy -> degraded -> rolling_back -> verifying -> healthy or
escalated, and the decisions it makes on the way. Pure; called by the daemon and by replay.

Safety rules, each enforced here once:
- a rollback needs the trigger to hold on checks that fire *with data in this evaluation*; a
  check without data in it is unknown (never quiet), so no `not` holds on it;
- one incident acts at most once, and a new incident within `cooldown` of the last action
  escalates instead of acting again;
- after acting, the checks must recover within `verify.window`, with data, or the target escalates
  and nothing more is done automatically;
- a person in the loop: with `rollback.confirm` a rollback first waits for approval
  (awaiting_approval, with its deadline in the incident); a paused target holds its rollbacks, a
  silenced one its rollbacks and escalations. What is held is one `hold` decision per incident
  and kind (recorded, never carried out); the phases stay what the checks say.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from mlwatchdog.core.checks import step
from mlwatchdog.core.measure import CANARY, base_check, measure
from mlwatchdog.core.model import (
    ActionOutcome,
    Answer,
    CheckRecord,
    CheckResult,
    CheckState,
    Confirmation,
    DataStatus,
    Decision,
    DecisionKind,
    Health,
    Hold,
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

    def holds_on_firing(self, *, canary: bool = True) -> bool:
        """The trigger holds on checks that fire and had data now. A check without data now is
        unknown, neither firing nor quiet: held state alone never completes the trigger, and a
        check without data never satisfies a `not` either. A check judged on a canary's rows
        (`drift[canary]`) stands for its check when it fires (unless `canary` is False)."""
        return self.trigger.holds(
            _folded(
                {
                    name: record.state is CheckState.FIRING
                    if self.results[name].status is DataStatus.OK
                    else None
                    for name, record in self.state.checks.items()
                    if canary or name == base_check(name)
                }
            )
        )

    def scope(self) -> str | None:
        """ "canary" when the trigger holds only thanks to checks of the canary's rows: then only
        the canary is aborted; None when it holds on the whole window's checks."""
        return None if self.holds_on_firing(canary=False) else CANARY

    def holds_on_recent_breach(self, since: datetime) -> bool:
        """The trigger holds on the checks that breached (with data) after `since`. Read only
        once every check of the trigger has data now (`trigger_has_data`), so none is unknown
        here; one without data for a while counts as not breaching then, which for a check under
        `not` can only make the trigger hold (escalate), never declare a recovery."""
        return self.trigger.holds(
            _folded(
                {
                    name: record.last_breach_at is not None and record.last_breach_at > since
                    for name, record in self.state.checks.items()
                }
            )
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

    def actions_held(self) -> Hold | None:
        """The pause or silence that holds this target's actions now, if any."""
        return self.state.silenced or self.state.paused

    def firing_reasons(self) -> tuple[str, ...]:
        names = sorted(n for n in self.state.checks if base_check(n) in self.trigger.names)
        return self.reasons([n for n in names if self.state.checks[n].state is CheckState.FIRING])


def _folded(values: Mapping[str, bool | None]) -> dict[str, bool | None]:
    """Per check of the trigger: its own value, or True when one of its per-revision checks
    (`drift[canary]`, `drift[canary-vs-stable]`) is. Those only ever add a breach: one without
    data does not make its check unknown."""
    folded = {name: value for name, value in values.items() if name == base_check(name)}
    for name, value in values.items():
        if name != base_check(name) and value is True:
            folded[base_check(name)] = True
    return folded


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
    # Checks of a canary's rows step as their check does, while the canary runs; when it ends
    # (promoted or aborted) they are gone with it.
    for result in results:
        if result.check not in checks:
            check = target.check(base_check(result.check))
            checks[result.check] = step(
                prev.checks.get(result.check, CheckRecord()),
                result,
                now,
                hold_for=check.for_ if check.for_ is not None else target.for_,
                resolve_after=target.resolve_after,
                no_data=target.no_data,
            )
    active = any(r.state is not CheckState.INACTIVE for r in checks.values())
    quiet_since = None if active else (prev.quiet_since or now)
    updated = replace(
        prev,
        checks=checks,
        quiet_since=quiet_since,
        evaluated_at=now,
        # A pause or silence past its end is over (the daemon records that it expired).
        paused=prev.paused if prev.paused and prev.paused.active(now) else None,
        silenced=prev.silenced if prev.silenced and prev.silenced.active(now) else None,
    )
    trigger = parse_trigger(target.trigger, [c.name for c in target.checks])
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
        return verifying(target, state, now), ()
    verb = "refused by policy" if outcome.refused else "failed"
    reasons = (f"rollback {verb}: {outcome.detail}",)
    silenced = state.silenced if state.silenced and state.silenced.active(now) else None
    return _escalate(replace(state, since=now), now, reasons, silenced)


def verifying(target: Target, state: TargetState, acted_at: datetime) -> TargetState:
    """`state` verifying the rollback carried out at `acted_at`: the checks must have recovered
    by the end of verify.window (`_verifying`)."""
    until = acted_at + target.verify_window
    return replace(state, phase=Phase.VERIFYING, since=acted_at, verify_until=until)


# ------------------------------------------------------------------------------------ phases

Handled = tuple[TargetState, tuple[Decision, ...]]


def _watching(s: _Step) -> Handled:
    """healthy or degraded: open an incident on activity, act when the trigger holds."""
    state, now, target = s.state, s.now, s.target
    if s.holds_on_firing():
        incident = state.incident or _new_incident(target.name, now)
        reasons = s.firing_reasons()
        state = replace(state, incident=incident)
        refused = _may_not_act(s, reasons)
        if refused:
            return _escalate(state, now, refused, state.silenced)
        confirm = target.rollback.confirm
        kind = DecisionKind.ROLLBACK if confirm is None else DecisionKind.ASK_APPROVAL
        hold = s.actions_held()
        if hold is not None:  # what it would decide is recorded, not done; resumed, it decides
            return _hold(s, replace(state, phase=Phase.DEGRADED), kind, reasons, hold)
        if confirm is None:
            return _rollback(s, state, reasons)
        deadline = now + confirm.timeout
        asked = Confirmation(asked_at=now, deadline=deadline, reasons=reasons)
        decision = Decision(
            DecisionKind.ASK_APPROVAL,
            target.name,
            incident.id,
            now,
            (*reasons, f"rollback.confirm: approve or reject by {deadline.isoformat()}, "
             f"else {confirm.on_timeout}"),
            to=target.rollback.to,
            dry_run=target.rollback.dry_run,
            deadline=deadline,
            scope=s.scope(),
        )  # fmt: skip
        waiting = replace(incident, confirmation=asked)
        return replace(state, phase=Phase.AWAITING_APPROVAL, incident=waiting), (decision,)
    if s.any_active():
        incident = state.incident or _new_incident(target.name, now)
        return replace(state, phase=Phase.DEGRADED, incident=incident), ()
    if state.phase is Phase.DEGRADED and not s.quiet_long_enough():
        return state, ()  # resolve delay: a flapping check does not flap the target
    return replace(state, phase=Phase.HEALTHY, incident=None), ()


def _awaiting_approval(s: _Step) -> Handled:
    """rollback.confirm: the rollback waits for a person's answer until the deadline.

    Approved (or, without an answer by the deadline, `on_timeout: act`), it rolls back at the
    first evaluation where the trigger holds on firing checks with data, as any rollback; never
    on missing data. Rejected, the incident is escalated: nothing automatic any more. Without an
    answer by the deadline and `on_timeout: escalate`, it escalates. When every check has been
    quiet for resolve_after the incident closes and the question is withdrawn.
    """
    state, now, target = s.state, s.now, s.target
    incident = state.incident
    assert incident is not None and incident.confirmation is not None
    asked = incident.confirmation
    if not s.any_active() and s.quiet_long_enough():
        return replace(state, phase=Phase.HEALTHY, incident=None), ()
    if asked.answer is Answer.REJECTED:
        # The person who rejected it is the human an escalation would call: nothing to announce.
        rejected = replace(incident, escalated_at=incident.escalated_at or now)
        return replace(state, phase=Phase.ESCALATED, incident=rejected), ()
    confirm = target.rollback.confirm
    late = now >= asked.deadline
    if asked.answer is Answer.APPROVED:
        why = f"approved by {asked.by}" + (f": {asked.note}" if asked.note else "")
    elif confirm is None:
        why = "rollback.confirm was removed from the config: no approval needed any more"
    elif late and confirm.on_timeout == "act":
        why = f"no answer by {asked.deadline.isoformat()}; rollback.confirm.on_timeout: act"
    elif late:
        reasons = (f"no answer by {asked.deadline.isoformat()} to the rollback's approval "
                   "(rollback.confirm.on_timeout: escalate)", *asked.reasons)  # fmt: skip
        return _escalate(state, now, reasons, state.silenced)
    else:
        return state, ()  # waiting for an answer
    if not s.holds_on_firing():
        return state, ()  # acts only on fresh data on which the trigger still holds
    reasons = (*s.firing_reasons(), why)
    refused = _may_not_act(s, reasons)
    if refused:
        return _escalate(state, now, refused, state.silenced)
    hold = s.actions_held()
    if hold is not None:
        return _hold(s, state, DecisionKind.ROLLBACK, reasons, hold)
    return _rollback(s, state, reasons)


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
        reason = f"no data to verify the rollback: {', '.join(missing)}"
        return _escalate(state, now, (reason,), state.silenced)
    workload = s.workload
    if workload is not None and workload.status is not Health.HEALTHY:
        reason = f"the workload is {workload.status} after the rollback: {workload.reason}"
        return _escalate(state, now, (reason,), state.silenced)
    acted = state.last_action_at or now
    since = max(acted + target.samples.window, now - target.resolve_after)
    if s.holds_on_recent_breach(since):
        recent = f"breached after {since.isoformat()} (windows wholly after the rollback)"
        reasons = ("not recovered after the rollback", recent, *s.reasons())
        return _escalate(state, now, reasons, state.silenced)
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
    """Needs a human; nothing automatic. Closes when every check has been quiet long enough.
    An escalation held by a silence is announced once the silence is over (as Alertmanager
    notifies an alert still firing when its silence expires)."""
    state, incident = s.state, s.state.incident
    if not s.any_active() and s.quiet_long_enough():
        return replace(state, phase=Phase.HEALTHY, incident=None, verify_until=None), ()
    if incident is not None and incident.escalated_at is None and state.silenced is None:
        since = state.since.isoformat() if state.since else "?"
        reasons = (f"escalated at {since} while silenced; the silence is over",)
        decision = Decision(DecisionKind.ESCALATE, state.target, incident.id, s.now, reasons)
        return replace(state, incident=replace(incident, escalated_at=s.now)), (decision,)
    return state, ()


_HANDLERS: dict[Phase, Callable[[_Step], Handled]] = {
    Phase.HEALTHY: _watching,
    Phase.DEGRADED: _watching,
    Phase.ROLLING_BACK: _rolling_back,
    Phase.VERIFYING: _verifying,
    Phase.ESCALATED: _escalated,
    Phase.AWAITING_APPROVAL: _awaiting_approval,
}


def _new_incident(target: str, now: datetime) -> Incident:
    return Incident(id=f"{target}-{now:%Y%m%dT%H%M%SZ}", started_at=now)


def _may_not_act(s: _Step, reasons: tuple[str, ...]) -> tuple[str, ...]:
    """Why this target may not roll back now (escalate instead); empty when it may."""
    target, last = s.target, s.state.last_action_at
    if target.workload.kind == "none" or not target.rollback.enabled:
        return (*reasons, "no rollback is configured for this target")
    if last is not None and s.now - last < target.cooldown:
        return (*reasons, f"in cooldown after the rollback at {last.isoformat()}")
    return ()


def _rollback(s: _Step, state: TargetState, reasons: tuple[str, ...]) -> Handled:
    """Decide the incident's one rollback (it acts at most once: `acted_at`)."""
    target, now = s.target, s.now
    incident = state.incident
    assert incident is not None and incident.acted_at is None
    decision = Decision(
        DecisionKind.ROLLBACK,
        target.name,
        incident.id,
        now,
        reasons,
        to=target.rollback.to,
        dry_run=target.rollback.dry_run,
        scope=s.scope(),
    )
    acted = replace(incident, acted_at=now, reasons=reasons)
    return (
        replace(state, phase=Phase.ROLLING_BACK, incident=acted, last_action_at=now),
        (decision,),
    )


def _why_held(hold: Hold, what: str) -> str:
    until = f" until {hold.until.isoformat()}" if hold.until else " until resumed"
    return f"{what} by {hold.by}{until}" + (f": {hold.reason}" if hold.reason else "")


def _hold(
    s: _Step, state: TargetState, kind: DecisionKind, reasons: tuple[str, ...], hold: Hold
) -> Handled:
    """Record (once per incident and kind) the decision a pause or silence holds back."""
    incident = state.incident
    assert incident is not None
    if kind in incident.held:
        return state, ()
    what = "silenced" if hold is state.silenced else "paused"
    decision = Decision(
        DecisionKind.HOLD,
        s.target.name,
        incident.id,
        s.now,
        (*reasons, _why_held(hold, what)),
        to=s.target.rollback.to if kind is not DecisionKind.ESCALATE else None,
        dry_run=s.target.rollback.dry_run,
        held=kind,
        scope=s.scope() if kind is not DecisionKind.ESCALATE else None,
    )
    return replace(state, incident=replace(incident, held=(*incident.held, kind))), (decision,)


def _escalate(
    state: TargetState, now: datetime, reasons: tuple[str, ...], silenced: Hold | None = None
) -> Handled:
    """Escalate the incident, announcing it once; a silence holds the announcement (recorded as
    a hold) until it is over (`_escalated`)."""
    incident = state.incident or _new_incident(state.target, now)
    escalated = replace(state, phase=Phase.ESCALATED, verify_until=None)
    if incident.escalated_at is not None:
        return replace(escalated, incident=incident), ()
    if silenced is not None:
        if DecisionKind.ESCALATE in incident.held:
            return replace(escalated, incident=incident), ()
        held = (*incident.held, DecisionKind.ESCALATE)
        decision = Decision(
            DecisionKind.HOLD,
            state.target,
            incident.id,
            now,
            (*reasons, _why_held(silenced, "silenced")),
            held=DecisionKind.ESCALATE,
        )
        return replace(escalated, incident=replace(incident, held=held)), (decision,)
    decision = Decision(DecisionKind.ESCALATE, state.target, incident.id, now, reasons)
    return replace(escalated, incident=replace(incident, escalated_at=now)), (decision,)
