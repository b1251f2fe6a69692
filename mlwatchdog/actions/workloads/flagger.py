"""Flagger Canaries: Flagger rolls a canary back by itself; the daemon only tells it to, through
the Canary's `rollback` webhook (`daemon/flagger.py`). So the plan sends nothing: it checks that
the webhook is wired and that Flagger is analysing a canary it can roll back, and says so in the
audit. Health is the Canary's status phase. Pure but for `read`.

Upstream (fluxcd/flagger):
- pkg/controller/scheduler.go advanceCanary: rollback webhooks are called only while the phase is
  Progressing, Waiting or WaitingPromotion; a 2xx answer (runRollbackHooks in
  scheduler_hooks.go) makes Flagger call `rollback`, which routes all traffic to the primary,
  scales the canary to zero and sets the phase Failed;
- pkg/apis/flagger/v1beta1/status.go: the phases (Failed: "the canary analysis failed and the
  canary deployment has been scaled to zero"; Succeeded: promoted).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from mlwatchdog.actions.kube_api import KubeApi
from mlwatchdog.actions.plan import Plan
from mlwatchdog.actions.workloads.base import Read
from mlwatchdog.core import Decision, Health, WorkloadHealth
from mlwatchdog.errors import ActionError
from mlwatchdog.rules.schema import Revisions, Target

FLAGGER = "/apis/flagger.app/v1beta1"
# Where the daemon serves Flagger's webhooks (`daemon/flagger.py`): <prefix>/<hook>[/<secret>].
WEBHOOK_PREFIX = "/flagger"
# scheduler.go advanceCanary: "check if we should rollback" only in these phases.
ANALYSING = ("Progressing", "Waiting", "WaitingPromotion")


def canary_path(target: Target) -> str:
    w = target.workload
    return f"{FLAGGER}/namespaces/{w.namespace}/canaries/{w.name}"


def webhooks(canary: dict[str, Any]) -> list[dict[str, Any]]:
    """The Canary's webhooks (spec.analysis.webhooks)."""
    analysis = (canary.get("spec") or {}).get("analysis") or {}
    hooks: list[dict[str, Any]] = analysis.get("webhooks") or []
    return hooks


def calls_mlwatchdog(hook: dict[str, Any], hook_type: str) -> bool:
    """Whether `hook` is a `hook_type` webhook whose URL is the daemon's route for it."""
    if hook.get("type") != hook_type:
        return False
    path = urlsplit(str(hook.get("url", ""))).path
    return path == f"{WEBHOOK_PREFIX}/{hook_type}" or path.startswith(
        f"{WEBHOOK_PREFIX}/{hook_type}/"
    )


def plan_flagger(
    canary: dict[str, Any], target: Target, decision: Decision, by: str, now: datetime
) -> Plan:
    """Nothing to send: why Flagger will roll the Canary back, or an error saying why it will
    not (no `rollback` webhook calling the daemon, or no analysis in progress)."""
    meta = canary["metadata"]
    name = f"{meta.get('namespace')}/{meta['name']}"
    if decision.to != "prior":
        raise ActionError(
            f"Canary {name}: Flagger rolls a canary back to its primary only; rollback.to: "
            f"{decision.to} cannot be carried out through Flagger (use to: prior)"
        )
    if not any(calls_mlwatchdog(hook, "rollback") for hook in webhooks(canary)):
        raise ActionError(
            f"Canary {name} has no `rollback` webhook calling mlwatchdog ({WEBHOOK_PREFIX}/"
            "rollback/<secret>), so Flagger will not roll it back: add one to "
            "spec.analysis.webhooks (see deploy/examples/flagger-canary.yaml)"
        )
    phase = (canary.get("status") or {}).get("phase") or "unknown"
    if phase not in ANALYSING:
        raise ActionError(
            f"Canary {name} is in phase {phase}: Flagger asks its rollback webhook only while it "
            f"analyses a canary ({', '.join(ANALYSING)}), so there is nothing it can roll back; "
            "the primary itself breaches: revert its source (the Deployment Flagger copies from) "
            "by hand"
        )
    if decision.dry_run:
        return Plan(
            (),
            None,
            f"dry-run: Canary {name} (phase {phase}) would be rolled back by Flagger; the "
            "rollback webhook does not signal it while rollback.dry_run is true",
        )
    return Plan(
        (),
        None,
        f"nothing sent: Flagger rolls Canary {name} (phase {phase}) back itself at its next "
        "analysis run, when its `rollback` webhook answers 200 (it does while this incident "
        "rolls back or is verified)",
    )


def canary_health(canary: dict[str, Any]) -> WorkloadHealth:
    """Rolled back (phase Failed: all traffic on the primary, the canary scaled to zero) is
    healthy; promoted (Succeeded) after a rollback was asked for is not; the rest is still
    moving."""
    status = canary.get("status") or {}
    phase = status.get("phase") or "unknown"
    promoted: dict[str, Any] = next(
        (c for c in status.get("conditions") or [] if c.get("type") == "Promoted"), {}
    )
    why = f"phase {phase}" + (f": {promoted['message']}" if promoted.get("message") else "")
    if phase == "Failed":
        return WorkloadHealth(Health.HEALTHY, f"Flagger rolled the canary back ({why})")
    if phase in ("Succeeded", "Terminating", "Terminated"):
        return WorkloadHealth(Health.UNHEALTHY, f"not rolled back: {why}")
    return WorkloadHealth(Health.PROGRESSING, f"Flagger has not rolled the canary back yet ({why})")


class FlaggerCanaryDriver:
    """`kind: flagger-canary`: a Flagger Canary, rolled back by Flagger when the daemon's
    `rollback` webhook says so."""

    kind = "flagger-canary"

    def path(self, target: Target) -> str:
        return canary_path(target)

    def read(self, api: KubeApi, target: Target, decision: Decision, log: Any) -> Read:
        return Read(api.get(canary_path(target)))

    def plan(self, read: Read, target: Target, decision: Decision, by: str, now: datetime) -> Plan:
        return plan_flagger(read.main, target, decision, by, now)

    def serving(self, api: KubeApi, target: Target) -> Revisions | None:
        return None  # no canary of its own that mlwatchdog can tell apart in the samples

    def health(self, obj: dict[str, Any]) -> WorkloadHealth:
        return canary_health(obj)

    def offline_plan(self, target: Target, decision: Decision) -> Plan:
        return Plan(
            (),
            None,
            "nothing to send: Flagger rolls the Canary back itself when its `rollback` webhook "
            f"({WEBHOOK_PREFIX}/rollback) answers 200",
        )
