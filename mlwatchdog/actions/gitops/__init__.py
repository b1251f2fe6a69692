"""GitOps awareness (issue 13): Argo CD self-heal or a Flux reconciliation puts a patched Rollout
or InferenceService back to what Git says within seconds, so a revert must not only be patched.

`intercept` is the actuator's one hook, between the policy and sending: it tells from the object
read whether a GitOps controller manages it (`detect`) and then, by `rollback.gitops.mode`,
- none set: refuses (audited, Event, the incident escalates like a policy refusal), saying why
  and what to set;
- `patch`: the plan goes as it is (noted);
- `pause-sync`: the plan gets a first request that pauses the controller's sync, recording what
  it was (`pause_sync`); `resolve` restores it when a person resolves the incident;
- `git`: nothing is patched; the revert is committed to the manifests repository and a pull or
  merge request opened (`git_revert`, `pull_requests`).
"""

from __future__ import annotations

from dataclasses import asdict, replace
from typing import TYPE_CHECKING, Any

from mlwatchdog.actions.gitops.detect import Manager, manager_of, unmanaged_refusal
from mlwatchdog.actions.gitops.pause_sync import PAUSED, plan_pause, plan_restore
from mlwatchdog.actions.plan import Plan, with_precondition
from mlwatchdog.actions.workloads import Read, driver_for
from mlwatchdog.core import ActionOutcome, Decision
from mlwatchdog.errors import ActionError
from mlwatchdog.rules import Target

if TYPE_CHECKING:
    from mlwatchdog.actions.actuator import KubeActuator

ATTEMPTS = 3

__all__ = ["PAUSED", "Manager", "intercept", "manager_of", "resolve"]


def intercept(
    actuator: KubeActuator,
    target: Target,
    decision: Decision,
    read: Read,
    plan: Plan,
    record: dict[str, Any],
) -> Plan | ActionOutcome:
    """The plan to carry out (maybe with a pause first), or the outcome when the revert is not
    patched here (refused, or written to Git). Adds `gitops` and notes to `record` (the audit
    record the actuator writes next)."""
    gitops = target.rollback.gitops
    manager = manager_of(read.main, gitops.argocd_namespace if gitops else "argocd")
    if manager is not None:
        record["gitops"] = {**asdict(manager), "mode": gitops.mode if gitops else None}
    if gitops is not None and gitops.mode == "git":
        from mlwatchdog.actions.gitops.git_revert import carry_out

        return carry_out(actuator, target, decision, read, plan, record)
    if manager is None:
        return plan
    if gitops is None:
        meta = read.main["metadata"]
        workload = (
            f"{read.main.get('kind', target.workload.kind)} {meta.get('namespace')}/{meta['name']}"
        )
        refused = unmanaged_refusal(manager, workload)
        actuator._audit(record, "refused", refused)
        actuator.log.warning("rollback refused: GitOps-managed", target=target.name, reason=refused)
        if not decision.dry_run:
            actuator._event(read.main, "MlwatchdogRollbackRefused", refused, warning=True)
        return ActionOutcome(
            decision.incident, ok=False, dry_run=decision.dry_run, detail=refused, refused=True
        )
    if gitops.mode == "patch":
        note = f"managed by {manager.describe()}; rollback.gitops.mode patch: patched anyway"
        return _noted(plan, record, note)
    obj = _get_manager(actuator, manager)
    request, why = plan_pause(
        manager, obj, target.name, decision.incident, actuator.identity, actuator.clock(),
        decision.reasons,
    )  # fmt: skip
    plan = _noted(plan, record, why)
    if request is None:
        return plan
    return replace(plan, requests=(request, *plan.requests))


def resolve(
    actuator: KubeActuator, targets: list[Target], incident: str, by: str
) -> list[dict[str, Any]]:
    """Restore the sync paused for `incident` on every pause-sync target's controller object.
    One result per object looked at (restored, already_enabled, not_paused, failed), audited."""
    results: list[dict[str, Any]] = []
    for target in targets:
        gitops = target.rollback.gitops
        if gitops is None or gitops.mode != "pause-sync" or target.workload.kind == "none":
            continue
        result = _resolve_one(actuator, target, gitops.argocd_namespace, incident, by)
        if result is not None:
            results.append(result)
    return results


def _resolve_one(
    actuator: KubeActuator, target: Target, argocd_ns: str, incident: str, by: str
) -> dict[str, Any] | None:
    record: dict[str, Any] = {
        "who": actuator.identity,
        "by": by,
        "target": target.name,
        "workload": target.workload.model_dump(),
        "incident": incident,
        "action": "resolve",
    }
    try:
        workload = actuator.api.get(driver_for(target.workload.kind).path(target))
        manager = manager_of(workload, argocd_ns)
        if manager is None:
            return None  # nothing manages it now: nothing was (or can be) paused for it
        record["gitops"] = asdict(manager)
        for attempt in range(1, ATTEMPTS + 1):
            obj = _get_manager(actuator, manager)
            restore = plan_restore(manager, obj, incident)
            if restore.request is None:
                break
            try:
                actuator.api.patch(
                    restore.request.path,
                    with_precondition(restore.request),
                    restore.request.content_type,
                )
            except ActionError as exc:
                if exc.kind == "conflict" and attempt < ATTEMPTS:
                    continue
                raise
            break
    except ActionError as exc:
        detail = f"could not restore the sync for incident {incident}: {exc}"
        actuator._audit(record, "sync_restore_failed", detail)
        actuator.log.error("GitOps sync not restored", target=target.name, error=str(exc))
        return {"target": target.name, "object": record.get("gitops"), "result": "failed",
                "detail": detail}  # fmt: skip
    actuator._audit(record, f"sync_{restore.result}", restore.detail)
    actuator.log.warning(
        "GitOps sync resolved", target=target.name, incident=incident, by=by,
        result=restore.result, detail=restore.detail,
    )  # fmt: skip
    return {
        "target": target.name,
        "object": manager.describe(),
        "result": restore.result,
        "detail": restore.detail,
    }


def _get_manager(actuator: KubeActuator, manager: Manager) -> dict[str, Any]:
    try:
        return actuator.api.get(manager.path)
    except ActionError as exc:
        if exc.status != 404:
            raise
        where = (
            "set rollback.gitops.argocd_namespace to the namespace of Argo CD's Applications"
            if manager.controller == "argocd"
            else f"check that Flux's {manager.kind} exists"
        )
        raise ActionError(
            f"{manager.describe()}, named by the workload's {manager.evidence}, not found "
            f"(HTTP 404): {where}",
            "permanent",
            404,
        ) from exc


def _noted(plan: Plan, record: dict[str, Any], note: str) -> Plan:
    notes = (*plan.notes, note)
    record["notes"] = list(notes)
    return replace(plan, notes=notes)
