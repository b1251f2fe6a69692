"""The dry-run actuator: logs the exact requests a rollback would send, sends nothing."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from mlwatchdog.actions.plan import plan_rollback
from mlwatchdog.core import ActionOutcome, Decision
from mlwatchdog.rules import Target


class DryRunActuator:
    """Carries a rollback out by logging its plan; the outcome is always a dry-run success."""

    def __init__(self, log: Any) -> None:
        self.log = log

    def rollback(self, target: Target, decision: Decision) -> ActionOutcome:
        plan = plan_rollback(target, decision)
        workload = target.workload
        for request in plan:
            self.log.warning(
                "dry-run rollback: would send",
                target=target.name,
                incident=decision.incident,
                workload=f"{workload.kind}/{workload.namespace}/{workload.name}",
                to=decision.to,
                **asdict(request),
            )
        detail = f"dry-run: {len(plan)} request(s) logged, none sent"
        return ActionOutcome(decision.incident, ok=True, dry_run=True, detail=detail)
