"""What a workload driver is: one per `workload.kind`, chosen from the registry
(`actions.workloads.DRIVERS`), so no kind can take another's code path.

A driver knows where its object lives, what to read from the cluster to plan a revert, the pure
plan itself, how healthy the object is afterwards, and the plan described without a cluster
(offline dry-run). The actuator does the rest the same way for every kind: policy, dry-run,
preconditions, sending, audit, Events.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from mlwatchdog.actions.kube_api import KubeApi
from mlwatchdog.actions.plan import Plan
from mlwatchdog.core import Decision, WorkloadHealth
from mlwatchdog.rules import Target
from mlwatchdog.rules.schema import Revisions


@dataclass
class Read:
    """The objects a plan is made from: `main` is the object the target names (the Rollout, the
    InferenceService, ...); `related` holds whatever else its driver read, by its own keys."""

    main: dict[str, Any]
    related: dict[str, Any] = field(default_factory=dict)


class WorkloadDriver(Protocol):
    """One workload kind: read, plan, health and the offline plan. Plans and health are pure."""

    kind: str

    def path(self, target: Target) -> str:
        """The API path of the object the target names."""
        ...

    def read(self, api: KubeApi, target: Target, decision: Decision, log: Any) -> Read:
        """The objects the plan needs, read from the cluster (raises ActionError)."""
        ...

    def plan(self, read: Read, target: Target, decision: Decision, by: str, now: datetime) -> Plan:
        """The requests that revert the workload as `decision` says, or why none are needed."""
        ...

    def health(self, obj: dict[str, Any]) -> WorkloadHealth:
        """How healthy the reverted object is now."""
        ...

    def offline_plan(self, target: Target, decision: Decision) -> Plan:
        """The requests a revert would send, described without reading the cluster."""
        ...

    def serving(self, api: KubeApi, target: Target) -> Revisions | None:
        """The canary and stable revisions the workload serves now, as its samples' revision
        column names them; None when no canary is in progress (or the kind has none)."""
        ...
