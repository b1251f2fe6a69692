"""The offline dry-run actuator (`daemon.kubernetes.mode: offline`, or no cluster to read): logs
the requests a rollback would send, described without reading the cluster, and audits them.

With a cluster, dry-run is the KubeActuator's: it reads the objects and logs the exact patch.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from mlwatchdog.actions.audit import AuditLog
from mlwatchdog.actions.plan import Plan
from mlwatchdog.actions.workloads import driver_for
from mlwatchdog.core import ActionOutcome, Decision, WorkloadHealth
from mlwatchdog.rules import Target
from mlwatchdog.rules.schema import Revisions


class DryRunActuator:
    """Carries a rollback out by logging its plan; the outcome is always a dry-run success."""

    def __init__(self, log: Any, audit: AuditLog | None = None) -> None:
        self.log = log
        self.audit = audit

    def rollback(self, target: Target, decision: Decision) -> ActionOutcome:
        plan = (
            Plan(())
            if target.workload.kind == "none"
            else driver_for(target.workload.kind).offline_plan(target, decision)
        )
        workload = target.workload
        requests = [asdict(r) for r in plan.requests]
        for request in requests:
            self.log.warning(
                "dry-run rollback: would send",
                target=target.name,
                incident=decision.incident,
                workload=f"{workload.kind}/{workload.namespace}/{workload.name}",
                to=decision.to,
                **request,
            )
        detail = f"dry-run: {len(requests)} request(s) logged, none sent (offline)"
        if self.audit is not None:
            self.audit.append({
                "at": datetime.now(UTC).isoformat(),
                "who": "offline",
                "target": target.name,
                "workload": workload.model_dump(),
                "incident": decision.incident,
                "to": decision.to,
                "reasons": list(decision.reasons),
                "dry_run": True,
                "requests": requests,
                "result": "dry_run",
                "detail": detail,
            })  # fmt: skip
        return ActionOutcome(decision.incident, ok=True, dry_run=True, detail=detail)

    def health(self, target: Target) -> WorkloadHealth | None:
        return None  # nothing was changed, nothing to verify on the object

    def read_last_action(self, target: Target) -> dict[str, Any] | None:
        return None  # no cluster: no workload's note to read

    def serving(self, target: Target) -> Revisions | None:
        return None  # no cluster: only revisions stated in samples.revisions split the window
