"""A target taken over without a state of its own (a shard won from a killed replica, a new pod):
the incident the workload's LAST_ACTION note records is continued, not started again. Pure; the
daemon reads the note (daemon/runner.py `_adopted`), this decides what it means.

The note is what the revert wrote in its own patch (actions/plan.py `last_action_note`): target,
incident, by, at, to, reasons. It counts under the rule that keeps a revert from being sent
twice (actions/plan.py `already_done`): this target's, less than `cooldown` ago.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from mlwatchdog.core.decide import verifying
from mlwatchdog.core.model import Incident, TargetState
from mlwatchdog.rules import Target


def adopted(target: Target, note: Mapping[str, Any], now: datetime) -> TargetState | None:
    """The state a target without one starts from, given its workload's LAST_ACTION `note` at
    `now`; None (start afresh) when the note is not a revert of this target less than `cooldown`
    ago, or not one a revert wrote (hand-edited, garbled).

    Within verify.window of the revert, the incident is verified as after the target's own
    action: recovered by the window's end closes it, not recovered escalates. After that, only
    the time of the revert carries on: the checks are judged afresh, and within `cooldown` a new
    breach escalates instead of reverting again.
    """
    at = note_time(note)
    incident = note.get("incident")
    if note.get("target") != target.name or at is None or not isinstance(incident, str):
        return None
    if not incident or now - at >= target.cooldown:
        return None
    if now >= at + target.verify_window:
        return TargetState(target=target.name, since=now, last_action_at=at)
    reasons = note.get("reasons")
    acted = Incident(
        id=incident,
        started_at=at,  # the note says when the incident acted, not when it began
        acted_at=at,
        reasons=tuple(str(r) for r in reasons) if isinstance(reasons, list) else (),
    )
    return verifying(target, TargetState(target.name, incident=acted, last_action_at=at), at)


def note_time(note: Mapping[str, Any]) -> datetime | None:
    """When the revert that wrote `note` happened: its `at` as a timezone-aware datetime, or None
    (absent, not ISO 8601, or without a timezone: a hand-edited note says no time at all). The
    one reading of it, for adopting an incident and for refusing a second revert."""
    try:
        at = datetime.fromisoformat(note.get("at"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return at if at.tzinfo is not None else None
