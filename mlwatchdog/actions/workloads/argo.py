"""Argo Rollouts: the plan that reverts a Rollout, and how healthy it is afterwards. Pure.

Revert, as `kubectl argo rollouts abort` and `undo` do it:
- abort (merge patch `{"status":{"abort":true}}` on the status subresource) while an update is in
  progress, so traffic goes back to the stable ReplicaSet at once; not sent when already aborted,
  nor after full promotion, when there is nothing to abort;
- a paused rollout (`spec.paused`) is unpaused in the next patch: an aborted rollout that stays
  paused never finishes the revert (the known upstream trap);
- undo: JSON-patch `/spec/template` with the template of the ReplicaSet to go back to, without its
  `rollouts-pod-template-hash` label (for a `workloadRef` rollout, the referenced Deployment's).
  To prior, that is the stable ReplicaSet while an update is in progress (what the abort already
  serves) and the second-highest `rollout.argoproj.io/revision` after full promotion; or a
  named revision; or the rules.yaml fallback applied to the current template.
The LAST_ACTION annotation goes into the same patch as the template, so a revert is recorded on
the object exactly when it happened, and is never sent twice (see `plan.already_done`).

An undo is sent only when Argo will complete it at once (`fast_tracked`, as argo-rollouts
rollout/sync.go isFastRollback): back to the stable ReplicaSet, within `spec.rollbackWindow`, or
(blue-green) to a ReplicaSet still within its scaleDownDelay. Any other old template is a new
update to Argo, through every canary step and analysis while the bad version stays stable, so it
is refused (`ActionError` naming the `spec.rollbackWindow` to add). Undo plus
`status.promoteFull` is no way around it: the controller clears promoteFull when it picks up the
new template (rollout/sync.go resetRolloutStatus), and `kubectl argo rollouts promote --full`
sends it only once status.currentPodHash shows the new template, which a plan sent at once
cannot wait for.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

from mlwatchdog.actions.kube_api import KubeApi
from mlwatchdog.actions.plan import (
    APPS,
    ARGO,
    JSON_PATCH,
    LAST_ACTION,
    MERGE_PATCH,
    Candidate,
    Plan,
    PlannedRequest,
    already_done,
    last_action,
    last_action_note,
    object_name,
    resource_version,
)
from mlwatchdog.actions.workloads.base import Read
from mlwatchdog.core import CANARY, Decision, Health, WorkloadHealth
from mlwatchdog.errors import ActionError
from mlwatchdog.rules.schema import Fallback, Revisions, Target

REVISION = "rollout.argoproj.io/revision"
HASH_LABEL = "rollouts-pod-template-hash"
SCALE_DOWN_DEADLINE = "scale-down-deadline"  # on a ReplicaSet Argo keeps up for a while
EXPERIMENT_NAME = "experiment.argoproj.io/name"  # an Experiment's ReplicaSet


def rollout_path(target: Target) -> str:
    return f"{ARGO}/namespaces/{target.workload.namespace}/rollouts/{target.workload.name}"


def abort_body() -> dict[str, Any]:
    return {"status": {"abort": True}}


def plan_argo(
    rollout: dict[str, Any],
    replicasets: list[dict[str, Any]],
    deployment: dict[str, Any] | None,
    target: Target,
    decision: Decision,
    by: str,
    now: Any,
) -> Plan:
    """The requests that revert `rollout` as `decision` says, given its ReplicaSets (and the
    Deployment of a workloadRef rollout)."""
    meta, spec, status = rollout["metadata"], rollout.get("spec") or {}, rollout.get("status") or {}
    path = rollout_path(target)
    done = already_done([o for o in (rollout, deployment) if o], target, decision, now)
    if done:
        return Plan((), None, done)
    stable, current = status.get("stableRS"), status.get("currentPodHash")
    updating = bool(stable and current and stable != current)
    requests: list[PlannedRequest] = []
    notes: list[str] = []
    if updating and not status.get("abort"):
        purpose = f"abort the update to {current}: traffic back to the stable ReplicaSet {stable}"
        requests.append(
            PlannedRequest(
                "PATCH",
                f"{path}/status",
                MERGE_PATCH,
                abort_body(),
                purpose,
                resource_version(rollout),
            )
        )
    elif status.get("abort"):
        notes.append("already aborted: no abort sent")
    if decision.scope == CANARY:  # only the canary's checks breached: the stable stays
        stable_rs = f"the stable ReplicaSet {stable}"
        if not requests:
            return Plan((), None, f"no canary to abort: {stable_rs} serves", tuple(notes))
        rs = next((r for r in replicasets if _hash(r) == stable), None)
        template = (rs or {}).get("spec", {}).get("template") or {}
        candidate = Candidate(stable_rs, images=_images(template))
        return Plan(tuple(requests), candidate, "", ("abort only: the canary breached",))

    holder = deployment if spec.get("workloadRef") else rollout
    if holder is None:
        raise ActionError(
            f"Rollout {object_name(rollout)} has a workloadRef but no Deployment was read"
        )
    template = (holder.get("spec") or {}).get("template") or {}
    if decision.to == "fallback":
        fallback = target.rollback.fallback
        assert fallback is not None
        ops = fallback_ops(fallback, "/spec/template", template)
        images = (fallback.image,) if fallback.image else _images(template)
        candidate = Candidate("the fallback of rules.yaml", images=images, from_config=True)
        details: dict[str, Any] = {  # as JSON: env values are secrets, shown as ***
            "fallback": fallback.model_dump(mode="json", exclude_defaults=True)
        }
        if not ops:
            notes.append("the pod template is already the fallback")
        else:
            notes.append(
                "the fallback is a new pod template: Argo rolls it out as a new update, through "
                "every canary step and analysis; verify.window must cover them"
            )
    else:
        rs = _replicaset_to(rollout, replicasets, target, decision, updating)
        rs_hash = rs["metadata"].get("labels", {}).get(HASH_LABEL)
        revision = rs["metadata"].get("annotations", {}).get(REVISION)
        rs_template = copy.deepcopy(rs["spec"]["template"])
        rs_template.get("metadata", {}).get("labels", {}).pop(HASH_LABEL, None)
        candidate = Candidate(
            f"ReplicaSet {rs['metadata']['name']} (revision {revision})",
            images=_images(rs_template),
            labels={**rs["metadata"].get("labels", {}), **_template_meta(rs, "labels")},
            annotations={
                **rs["metadata"].get("annotations", {}),
                **_template_meta(rs, "annotations"),
            },
        )
        details = {"revision": revision, "hash": rs_hash}
        if rs_hash == current and not updating:
            return Plan((), candidate, f"already on revision {revision} ({rs_hash})")
        why = fast_tracked(rollout, replicasets, rs, now)
        if not why:
            raise ActionError(not_fast_tracked(rollout, replicasets, rs), kind="permanent")
        if rs_hash != status.get("stableRS"):
            notes.append(f"the controller fast-tracks it: {why}")
        ops = [{"op": "replace", "path": "/spec/template", "value": rs_template}]

    note = last_action_note(target, decision, by, now, **details)
    unpause = spec.get("paused") is True
    if holder is rollout:
        if unpause:
            ops.insert(0, {"op": "replace", "path": "/spec/paused", "value": False})
        if ops:
            ops.append(_annotate_op(rollout, note))
            requests.append(
                PlannedRequest(
                    "PATCH", path, JSON_PATCH, ops, _purpose(decision), resource_version(rollout)
                )
            )
        return Plan(tuple(requests), candidate, _done(requests, notes), tuple(notes))
    # A workloadRef rollout: the template lives in the Deployment; annotate both, the Rollout last.
    assert deployment is not None
    if ops:
        ops.append(_annotate_op(deployment, note))
        deployment_path = (
            f"{APPS}/namespaces/{meta['namespace']}/deployments/{deployment['metadata']['name']}"
        )
        requests.append(
            PlannedRequest(
                "PATCH",
                deployment_path,
                JSON_PATCH,
                ops,
                _purpose(decision),
                resource_version(deployment),
            )
        )
    if ops or unpause:
        body: dict[str, Any] = {"metadata": {"annotations": {LAST_ACTION: note}}}
        if unpause:
            body["spec"] = {"paused": False}
        purpose = "record the revert on the Rollout" + (" and unpause it" if unpause else "")
        requests.append(
            PlannedRequest("PATCH", path, MERGE_PATCH, body, purpose, resource_version(rollout))
        )
    return Plan(tuple(requests), candidate, _done(requests, notes), tuple(notes))


def fallback_ops(fallback: Fallback, prefix: str, template: dict[str, Any]) -> list[dict[str, Any]]:
    """JSON-patch operations that put the fallback into the first container of `template`
    (empty when it is there already). Env entries are set by name; the others are kept."""
    container = f"{prefix}/spec/containers/0"
    first = ((template.get("spec") or {}).get("containers") or [{}])[0]
    ops: list[dict[str, Any]] = []
    if fallback.image and first.get("image") != fallback.image:
        ops.append({"op": "replace", "path": f"{container}/image", "value": fallback.image})
    if fallback.env:
        env = [dict(e) for e in first.get("env") or []]
        for key, value in fallback.env.items():
            entry = next((e for e in env if e.get("name") == key), None)
            if entry is None:
                env.append({"name": key, "value": value.reveal()})
            else:
                entry.clear()
                entry.update({"name": key, "value": value.reveal()})
        if env != (first.get("env") or []):
            ops.append({"op": "add", "path": f"{container}/env", "value": env})
    if fallback.args is not None and first.get("args") != fallback.args:
        ops.append({"op": "add", "path": f"{container}/args", "value": fallback.args})
    return ops


def argo_health(rollout: dict[str, Any]) -> WorkloadHealth:
    """The Rollout's health after a revert: Healthy on the reverted ReplicaSet, as recorded in
    its LAST_ACTION annotation."""
    meta, status = rollout["metadata"], rollout.get("status") or {}
    observed = str(status.get("observedGeneration", ""))
    generation = str(meta.get("generation", ""))
    if observed.isdigit() and generation and observed != generation:
        return WorkloadHealth(
            Health.PROGRESSING, f"the controller has not yet observed generation {generation}"
        )
    phase, message = status.get("phase", "unknown"), status.get("message", "")
    stable, current = status.get("stableRS"), status.get("currentPodHash")
    if status.get("abort") and stable and current != stable:
        # A canary aborted (scope: canary, or by hand): all traffic on the stable ReplicaSet.
        # Argo calls that Degraded (RolloutAborted) until the next update; the revert held. A
        # full rollback's undo clears the abort (a new template), so it never stops here.
        return WorkloadHealth(Health.HEALTHY, f"canary {current} aborted: traffic on {stable}")
    wanted = last_action(rollout).get("hash")
    if phase == "Degraded":
        return WorkloadHealth(Health.UNHEALTHY, f"phase Degraded: {message}")
    if wanted and current != wanted:
        return WorkloadHealth(
            Health.UNHEALTHY,
            f"the Rollout is on {current}, not the reverted {wanted}: someone changed its template",
        )
    if phase == "Healthy" and stable == current and (not wanted or stable == wanted):
        return WorkloadHealth(Health.HEALTHY, f"phase Healthy on {stable}")
    if stable != current:
        # Not a completed revert: an update of `current` in progress (e.g. an undo outside
        # spec.rollbackWindow, which Argo runs through every step and analysis).
        step = status.get("currentStepIndex")
        at = f" at step {step}" if step is not None else ""
        return WorkloadHealth(
            Health.PROGRESSING,
            f"an update to {current} is in progress{at} (stable is still {stable}); "
            f"phase {phase}: {message}".rstrip(": "),
        )
    return WorkloadHealth(Health.PROGRESSING, f"phase {phase}: {message}".rstrip(": "))


def fast_tracked(
    rollout: dict[str, Any], replicasets: list[dict[str, Any]], rs: dict[str, Any], now: Any
) -> str:
    """Why Argo Rollouts takes a new `spec.template` equal to `rs`'s as a rollback that skips
    every step and analysis, or "" when it would run it as a new update (argo-rollouts
    rollout/sync.go isFastRollback): back to the stable ReplicaSet; to one created before it
    with fewer than `spec.rollbackWindow.revisions` created in between (isRollbackWithinWindow);
    blue-green, to one whose `scale-down-deadline` is still ahead (newRSWithinDelay)."""
    stable = (rollout.get("status") or {}).get("stableRS")
    if _hash(rs) == stable:
        return f"back to the stable ReplicaSet {stable}"
    stable_rs = next((r for r in replicasets if _hash(r) == stable and owned_by(r, rollout)), None)
    if stable_rs is None or not _created(rs) < _created(stable_rs):
        return ""
    revisions = _window(rollout)
    between = _between(rollout, replicasets, rs, stable_rs)
    if revisions > 0 and between < revisions:
        return (
            f"within spec.rollbackWindow ({between} ReplicaSet(s) in between, "
            f"fewer than {revisions})"
        )
    deadline = (rs["metadata"].get("annotations") or {}).get(SCALE_DOWN_DEADLINE)
    if "blueGreen" in ((rollout.get("spec") or {}).get("strategy") or {}) and deadline:
        at = _parse_time(deadline)
        if at is not None and isinstance(now, datetime) and at > now:
            return f"blue-green, within scaleDownDelaySeconds (until {deadline})"
    return ""


def not_fast_tracked(
    rollout: dict[str, Any], replicasets: list[dict[str, Any]], rs: dict[str, Any]
) -> str:
    """Why the revert is refused: what Argo would do instead, and the spec.rollbackWindow that
    would let it through."""
    stable = (rollout.get("status") or {}).get("stableRS")
    stable_rs = next((r for r in replicasets if _hash(r) == stable and owned_by(r, rollout)), None)
    revision = rs["metadata"].get("annotations", {}).get(REVISION)
    needed = _between(rollout, replicasets, rs, stable_rs) + 1 if stable_rs else 1
    window = _window(rollout) or "not set"
    return (
        f"Rollout {object_name(rollout)}: going back to revision {revision} ({_hash(rs)}) "
        "would not revert it now. Argo Rollouts fast-tracks only a rollback to the stable "
        "ReplicaSet or one within spec.rollbackWindow (argo-rollouts rollout/sync.go "
        "isFastRollback); anything else is a new update that runs every canary step and analysis "
        f"again while the bad version stays stable. spec.rollbackWindow is {window}: add "
        f"`spec.rollbackWindow: {{revisions: {needed}}}` (or more) to the Rollout, or revert by "
        "hand (kubectl argo rollouts undo, then promote --full once it shows the new revision)"
    )


def _window(rollout: dict[str, Any]) -> int:
    window = ((rollout.get("spec") or {}).get("rollbackWindow") or {}).get("revisions")
    return int(window) if isinstance(window, int) else 0


def _between(
    rollout: dict[str, Any],
    replicasets: list[dict[str, Any]],
    older: dict[str, Any],
    newer: dict[str, Any],
) -> int:
    """ReplicaSets of the rollout created after `older` and before `newer` (not experiments')."""
    return sum(
        1
        for r in replicasets
        if owned_by(r, rollout)
        and not (r["metadata"].get("annotations") or {}).get(EXPERIMENT_NAME)
        and _created(older) < _created(r) < _created(newer)
    )


def _created(rs: dict[str, Any]) -> datetime:
    at = _parse_time(rs["metadata"].get("creationTimestamp", ""))
    return at or datetime.min.replace(tzinfo=UTC)


def _parse_time(value: str) -> datetime | None:
    try:
        at = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _hash(rs: dict[str, Any]) -> str:
    return str(rs["metadata"].get("labels", {}).get(HASH_LABEL, ""))


def owned_by(obj: dict[str, Any], owner: dict[str, Any]) -> bool:
    uid = owner["metadata"].get("uid")
    return any(ref.get("uid") == uid for ref in obj["metadata"].get("ownerReferences") or [])


def _replicaset_to(
    rollout: dict[str, Any],
    replicasets: list[dict[str, Any]],
    target: Target,
    decision: Decision,
    updating: bool,
) -> dict[str, Any]:
    owned = [rs for rs in replicasets if owned_by(rs, rollout)]
    by_revision = sorted(owned, key=_revision, reverse=True)
    known = ", ".join(str(_revision(rs)) for rs in by_revision) or "none"
    if decision.to == "revision":
        wanted = target.rollback.revision
        for rs in owned:
            if _revision(rs) == wanted:
                return rs
        raise ActionError(
            f"Rollout {object_name(rollout)} has no ReplicaSet of revision {wanted} "
            f"(it has {known}; older ones are deleted beyond spec.revisionHistoryLimit): "
            "fix rollback.revision"
        )
    if updating:
        stable = (rollout.get("status") or {}).get("stableRS")
        for rs in owned:
            if rs["metadata"].get("labels", {}).get(HASH_LABEL) == stable:
                return rs
        raise ActionError(f"Rollout {object_name(rollout)}: its stable ReplicaSet {stable} is gone")
    if len(by_revision) < 2:
        raise ActionError(
            f"Rollout {object_name(rollout)} has no prior revision to go back to "
            f"(revisions: {known})"
        )
    return by_revision[1]


def _revision(rs: dict[str, Any]) -> int:
    value = rs["metadata"].get("annotations", {}).get(REVISION, "")
    return int(value) if str(value).isdigit() else -1


def _template_meta(rs: dict[str, Any], key: str) -> dict[str, str]:
    meta: dict[str, str] = (rs["spec"]["template"].get("metadata") or {}).get(key) or {}
    return meta


def _images(template: dict[str, Any]) -> tuple[str, ...]:
    containers = (template.get("spec") or {}).get("containers") or []
    return tuple(c.get("image", "") for c in containers)


def _annotate_op(obj: dict[str, Any], note: str) -> dict[str, Any]:
    if obj["metadata"].get("annotations") is None:
        return {"op": "add", "path": "/metadata/annotations", "value": {LAST_ACTION: note}}
    return {
        "op": "add",
        "path": "/metadata/annotations/" + LAST_ACTION.replace("/", "~1"),
        "value": note,
    }


def _done(requests: list[PlannedRequest], notes: list[str]) -> str:
    return "" if requests else (notes[-1] if notes else "nothing to change")


def _purpose(decision: Decision) -> str:
    return "install the fallback pod template" if decision.to == "fallback" else "undo"


class ArgoRolloutDriver:
    """`kind: argo-rollout`: an Argo Rollouts Rollout (canary or blue-green, inline template or
    workloadRef)."""

    kind = "argo-rollout"

    def path(self, target: Target) -> str:
        return rollout_path(target)

    def read(self, api: KubeApi, target: Target, decision: Decision, log: Any) -> Read:
        ns = target.workload.namespace
        rollout = api.get(rollout_path(target))
        spec = rollout.get("spec") or {}
        match = (spec.get("selector") or {}).get("matchLabels") or {}
        selector = ",".join(f"{k}={v}" for k, v in sorted(match.items()))
        replicasets = api.list(f"{APPS}/namespaces/{ns}/replicasets", selector or None)
        related: dict[str, Any] = {"replicasets": replicasets, "deployment": None}
        ref = spec.get("workloadRef")
        if ref:
            related["deployment"] = api.get(f"{APPS}/namespaces/{ns}/deployments/{ref['name']}")
        return Read(rollout, related)

    def plan(self, read: Read, target: Target, decision: Decision, by: str, now: datetime) -> Plan:
        return plan_argo(
            read.main,
            read.related["replicasets"],
            read.related["deployment"],
            target,
            decision,
            by,
            now,
        )

    def health(self, obj: dict[str, Any]) -> WorkloadHealth:
        return argo_health(obj)

    def serving(self, api: KubeApi, target: Target) -> Revisions | None:
        """The canary and stable pod-template-hashes while an update is in progress (the
        value a model server logs from its `rollouts-pod-template-hash` label)."""
        status = api.get(rollout_path(target)).get("status") or {}
        stable, current = status.get("stableRS"), status.get("currentPodHash")
        if not stable or not current or stable == current or status.get("abort"):
            return None
        return Revisions(canary=str(current), stable=str(stable))

    def offline_plan(self, target: Target, decision: Decision) -> Plan:
        rollout = rollout_path(target)
        abort = PlannedRequest(
            "PATCH",
            f"{rollout}/status",
            MERGE_PATCH,
            abort_body(),
            "abort the update: traffic goes back to the stable ReplicaSet",
        )
        if decision.to == "fallback":
            fallback = target.rollback.fallback
            assert fallback is not None
            ops = fallback_ops(fallback, "/spec/template", {})
            return Plan((abort, PlannedRequest("PATCH", rollout, JSON_PATCH, ops, "fallback")))
        which = (
            f"revision {target.rollback.revision}"
            if decision.to == "revision"
            else "the stable ReplicaSet (or, after full promotion, the second-highest revision)"
        )
        undo = PlannedRequest(
            "PATCH",
            rollout,
            JSON_PATCH,
            None,
            f"undo: /spec/template from the ReplicaSet of {which}, without its "
            "rollouts-pod-template-hash label",
        )
        return Plan((abort, undo))
