"""Whether a TargetState read back from disk could have been written by the core: a state file
that is valid JSON but says something `decide` never produces (verifying without a deadline,
rolling back without an incident) is set aside by the daemon like a corrupt one, rather than
steering the next decision."""

from __future__ import annotations

from dataclasses import fields, is_dataclass
from datetime import datetime
from typing import Any

from mlwatchdog.core.model import CheckState, Phase, TargetState

_NEEDS_INCIDENT = (
    Phase.DEGRADED,
    Phase.ROLLING_BACK,
    Phase.VERIFYING,
    Phase.ESCALATED,
    Phase.AWAITING_APPROVAL,
)


def state_problems(state: TargetState, target: str) -> list[str]:
    """What is inconsistent in `state` of `target`; empty when it is sound."""
    problems = []
    if state.target != target:
        problems.append(f"it is the state of {state.target!r}, not of {target!r}")
    naive = sorted(set(_naive_times(state)))
    if naive:
        problems.append(f"time(s) without a timezone: {', '.join(naive)}")
    if state.phase in _NEEDS_INCIDENT and state.incident is None:
        problems.append(f"phase {state.phase} without an incident")
    if state.phase is Phase.HEALTHY and state.incident is not None:
        problems.append("phase healthy with an open incident")
    acted = state.incident is not None and state.incident.acted_at is not None
    if state.phase is Phase.ROLLING_BACK and not acted:
        problems.append("rolling back, but the incident never acted")
    if state.phase is Phase.VERIFYING and (state.verify_until is None or not state.last_action_at):
        problems.append("verifying without a verify deadline or a last action")
    problems += _people_problems(state)
    for name, record in state.checks.items():
        if record.state is not CheckState.INACTIVE and record.active_at is None:
            problems.append(f"check {name!r} is {record.state.name.lower()} without active_at")
        if record.state is CheckState.FIRING and record.fired_at is None:
            problems.append(f"check {name!r} fires without fired_at")
    return problems


def _people_problems(state: TargetState) -> list[str]:
    """Pause, silence and approval as `core.people` and `decide` write them."""
    problems = []
    if state.silenced is not None and state.silenced.until is None:
        problems.append("silenced without an end (a silence always expires)")
    incident = state.incident
    asked = incident.confirmation if incident is not None else None
    if state.phase is Phase.AWAITING_APPROVAL:
        if asked is None:
            problems.append("awaiting approval without an approval asked for")
        if incident is not None and incident.acted_at is not None:
            problems.append("awaiting approval for an incident that already acted")
    if asked is not None:
        if asked.deadline <= asked.asked_at:
            problems.append("an approval deadline not after it was asked for")
        if (asked.answer is None) != (asked.by is None or asked.answered_at is None):
            problems.append("an approval answer without who and when (or the reverse)")
    return problems


def _naive_times(value: Any, path: str = "") -> list[str]:
    if isinstance(value, datetime):
        return [path or "(state)"] if value.tzinfo is None else []
    if is_dataclass(value) and not isinstance(value, type):
        found = []
        for field in fields(value):
            found += _naive_times(getattr(value, field.name), f"{path}.{field.name}".lstrip("."))
        return found
    if isinstance(value, dict):
        return [p for key, item in value.items() for p in _naive_times(item, f"{path}.{key}")]
    return []
