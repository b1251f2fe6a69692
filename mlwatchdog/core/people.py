"""A person in the loop: pause, resume, silence and answer a rollback waiting for approval.

Pure functions from a target's state to its next state, with `now` and who given; the daemon
saves, audits and exports what they return. They change what the next `decide` may do (a pause
holds rollbacks, a silence holds rollbacks and escalations, an answer lets an incident waiting
for approval act or escalate), never the checks: states and metrics stay what the data says.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from mlwatchdog.core.model import Answer, Hold, Phase, TargetState


class NotCurrent(ValueError):
    """The request does not apply to the target as it is now (the API answers 409 with why)."""


def fresh(target: str, state: TargetState | None, now: datetime) -> TargetState:
    """`state`, or the state of a target never evaluated yet."""
    return state if state is not None else TargetState(target=target, since=now)


def pause(
    state: TargetState, by: str, now: datetime, until: datetime | None = None, reason: str = ""
) -> TargetState:
    """Pause the target's actions from `now` until `until` (None: until resumed). A pause that
    is already on is replaced (new end, reason and author)."""
    if until is not None and until <= now:
        raise ValueError(f"a pause must end after now ({now.isoformat()})")
    return replace(state, paused=Hold(by=by, at=now, until=until, reason=reason))


def resume(state: TargetState) -> TargetState:
    """End the pause; the next evaluation may act again."""
    return replace(state, paused=None)


def silence(
    state: TargetState, by: str, now: datetime, until: datetime, reason: str = ""
) -> TargetState:
    """Silence the target until `until` (it always ends by itself): no action, no escalation."""
    if until <= now:
        raise ValueError(f"a silence must end after now ({now.isoformat()})")
    return replace(state, silenced=Hold(by=by, at=now, until=until, reason=reason))


def unsilence(state: TargetState) -> TargetState:
    """End the silence before its time; an escalation it held is announced next evaluation."""
    return replace(state, silenced=None)


def answer(
    state: TargetState | None,
    incident: str,
    approved: bool,
    by: str,
    now: datetime,
    note: str = "",
) -> TargetState:
    """Record a person's answer to `incident`'s rollback waiting for approval; the next
    evaluation acts on it. NotCurrent (with why) when the incident is not the target's current
    one, does not wait for approval, was answered already, or its deadline has passed."""
    current = state.incident if state is not None else None
    if state is None or current is None:
        raise NotCurrent(f"incident {incident!r} is not current: the target has no open incident")
    if current.id != incident:
        raise NotCurrent(
            f"incident {incident!r} is not current: the target's incident is {current.id!r}"
        )
    asked = current.confirmation
    if asked is None or state.phase is not Phase.AWAITING_APPROVAL:
        acted = f", it acted at {current.acted_at.isoformat()}" if current.acted_at else ""
        raise NotCurrent(
            f"incident {incident!r} does not wait for approval: the target is {state.phase}{acted}"
        )
    if asked.answer is not None:
        when = asked.answered_at.isoformat() if asked.answered_at else "?"
        raise NotCurrent(
            f"incident {incident!r} was already {asked.answer} by {asked.by} at {when}"
        )
    if now >= asked.deadline:
        raise NotCurrent(
            f"incident {incident!r}: the deadline for an answer passed at "
            f"{asked.deadline.isoformat()}; rollback.confirm.on_timeout applies"
        )
    choice = Answer.APPROVED if approved else Answer.REJECTED
    answered = replace(asked, answer=choice, by=by, answered_at=now, note=note)
    return replace(state, incident=replace(current, confirmation=answered))
