"""One check's state machine, as Prometheus steps an alerting rule: inactive -> pending -> firing.

`step` is pure: the previous record, this evaluation's result and `now` give the next record.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Literal

from mlwatchdog.core.model import CheckRecord, CheckResult, CheckState, DataStatus


def step(
    previous: CheckRecord,
    result: CheckResult,
    now: datetime,
    *,
    hold_for: timedelta,
    resolve_after: timedelta,
    no_data: Literal["hold", "reset"],
) -> CheckRecord:
    """The check's record after `result` at `now`."""
    seen = replace(previous, status=result.status, value=result.value)

    # No data: the check can neither start nor finish a breach on it. "hold" keeps the state and
    # its timers (a pending timer survives a gap); "reset" forgets the breach.
    if result.status is not DataStatus.OK:
        if no_data == "reset" and previous.state is not CheckState.INACTIVE:
            return CheckRecord(resolved_at=now, status=result.status, value=result.value)
        return seen

    if result.breaching:
        active_at = previous.active_at if previous.state is not CheckState.INACTIVE else now
        assert active_at is not None
        # `for`: pending until the breach has lasted hold_for, then firing.
        if previous.state is CheckState.FIRING or now - active_at >= hold_for:
            fired_at = previous.fired_at if previous.state is CheckState.FIRING else now
            return replace(
                seen, state=CheckState.FIRING, active_at=active_at, fired_at=fired_at,
                last_breach_at=now, resolved_at=None,
            )  # fmt: skip
        return replace(
            seen,
            state=CheckState.PENDING,
            active_at=active_at,
            last_breach_at=now,
            resolved_at=None,
        )

    # Not breaching. A pending check resets at once (the breach did not last); a firing one keeps
    # firing until it has been clear for resolve_after, so a value that flaps around its
    # threshold does not flap the check.
    if previous.state is CheckState.FIRING:
        last = previous.last_breach_at or now
        if now - last < resolve_after:
            return seen
    if previous.state is CheckState.INACTIVE:
        return seen
    return CheckRecord(resolved_at=now, status=result.status, value=result.value)
