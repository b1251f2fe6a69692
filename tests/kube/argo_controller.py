"""The Argo Rollouts controller, emulated: what it does with a Rollout (or workloadRef Deployment)
write, rule by rule as argoproj/argo-rollouts does it (snapshot 9f8d111d8f8e, the commit
tests/kube/crds/SOURCES.md vendors the Rollout CRD from). Register with
`install_argo_controller(api)`.

Each rule names the upstream file and function it follows:

- A Rollout created with a template and no stable ReplicaSet is deployed at once ("Initial
  deploy", rollout/sync.go shouldFullPromote).
- A new pod template resets the status as for a new update (rollout/sync.go resetRolloutStatus:
  abort, promoteFull, pause conditions and analysis runs cleared, currentStepIndex 0), reusing a
  ReplicaSet with that template if one exists and giving it the next revision
  (rollout/sync.go syncReplicaSetRevision), creating one otherwise.
- It is fast-tracked (all steps skipped, no analysis, promoted at once) only when
  rollout/sync.go isFastRollback says so: going back to the stable ReplicaSet
  (rollout/canary.go syncRolloutStatusCanary, "Rollback to stable ReplicaSets"), or to a
  ReplicaSet created before the stable one within `spec.rollbackWindow.revisions`
  (rollout/sync.go isRollbackWithinWindow), or, for blue-green, to one whose
  `scale-down-deadline` has not passed (rollout/controller.go newRSWithinDelay). Otherwise it
  is a new update at step 0 (Progressing, the first setWeight's share of the replicas);
  `complete_step` moves it on as the controller does when a step completes: a pause step is
  Paused (CanaryPauseStep: rollout/canary.go reconcileCanaryPause), an analysis step
  Progressing with its AnalysisRun Running (rollout/analysis.go reconcileAnalysisRuns).
  Blue-green: preview on the new ReplicaSet, paused before promotion with
  autoPromotionEnabled false (rollout/bluegreen.go reconcileBlueGreenPause).
- `status.promoteFull` promotes the current ReplicaSet, skipping the remaining steps and analysis
  (rollout/sync.go shouldFullPromote "Full promotion requested"; rollout/analysis.go
  reconcileAnalysisRuns cancels runs), also after an abort (rollout/canary.go
  syncRolloutStatusCanary removes the abort first). When nothing is being updated
  (currentPodHash == stableRS) it is cleared and does nothing (rollout/sync.go
  calculateBaseStatus).
- `status.abort` sends all traffic back to stable (utils/replicaset/canary.go
  GetCurrentSetWeight: 0 while aborted), cancels analysis and marks the Rollout Degraded
  (utils/rollout/rolloututil.go CalculateRolloutPhase, RolloutAborted).
- Promotion makes the current ReplicaSet stable (rollout/sync.go promoteStable); a canary scales
  the others to zero, a blue-green keeps the previous active one up with a `scale-down-deadline`
  of now + scaleDownDelaySeconds (default 30 s, utils/defaults
  GetScaleDownDelaySecondsOrDefault; rollout/bluegreen.go scaleDownOldReplicaSetsForBlueGreen).

Simplifications: steps never complete by themselves (no pods, no clock: tests call
`complete_step`, or promote with promoteFull as `kubectl argo rollouts promote --full` does),
AnalysisRuns are status entries only, and an abort keeps currentStepIndex (upstream resets it
to 0, rollout/canary.go syncRolloutStatusCanary; tests/kube/test_apiserver.py asserts the index
is kept).
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.kube.apiserver import FakeKubeAPI
from tests.kube.objects import (
    HASH_LABEL,
    REVISION_ANNOTATION,
    ROLLOUT_API,
    _abort,
    _conditions,
    _replicaset,
    _scale,
    pod_template_hash,
    without_hash,
)
from tests.kube.resources import REPLICA_SETS, ROLLOUTS, object_path

Object = dict[str, Any]

UPSTREAM = "argoproj/argo-rollouts@9f8d111d8f8e"
# v1alpha1.DefaultReplicaSetScaleDownDeadlineAnnotationKey
SCALE_DOWN_DEADLINE = "scale-down-deadline"
EXPERIMENT_NAME = "experiment.argoproj.io/name"  # v1alpha1.ExperimentNameAnnotationKey
DEFAULT_SCALE_DOWN_DELAY = 30  # utils/defaults DefaultScaleDownDelaySeconds


def install_argo_controller(api: FakeKubeAPI) -> None:
    api.on_write("rollouts", argo_controller)
    api.on_write("deployments", argo_controller)


def argo_controller(api: FakeKubeAPI, obj: Object | None, before: Object | None) -> None:
    """What the Argo Rollouts controller does with a Rollout (or workloadRef Deployment) write."""
    if obj is None:
        return
    if obj["kind"] == "Deployment":
        if before is None or without_hash(before["spec"]["template"]) == without_hash(
            obj["spec"]["template"]
        ):
            return
        ns = obj["metadata"]["namespace"]
        for rollout in api.list_objects(ROLLOUT_API, "rollouts", ns):
            ref = rollout["spec"].get("workloadRef") or {}
            if ref.get("kind") == "Deployment" and ref.get("name") == obj["metadata"]["name"]:
                reconcile_template(api, rollout, obj["spec"]["template"])
        return
    template = obj["spec"].get("template")
    if before is None:
        if template is not None:
            reconcile_template(api, obj, template)
        return
    status = obj.get("status") or {}
    old_status = before.get("status") or {}
    if status.get("abort") and not old_status.get("abort"):
        _on_abort(api, obj)
    old_template = (before.get("spec") or {}).get("template")
    if template is not None and without_hash(template) != without_hash(old_template or {}):
        reconcile_template(api, obj, template)
    elif status.get("promoteFull") and not old_status.get("promoteFull"):
        _on_promote_full(api, obj)


# --- the rules -----------------------------------------------------------------------------------


def owned_replicasets(api: FakeKubeAPI, rollout: Object) -> list[Object]:
    ns, rollout_uid = rollout["metadata"]["namespace"], rollout["metadata"]["uid"]
    return [
        rs
        for rs in api.list_objects("apps/v1", "replicasets", ns)
        if any(o.get("uid") == rollout_uid for o in rs["metadata"].get("ownerReferences", []))
    ]


def created(obj: Object) -> datetime:
    return datetime.strptime(obj["metadata"]["creationTimestamp"], "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=UTC
    )


def rs_hash(rs: Object) -> str:
    return str(rs["metadata"]["labels"].get(HASH_LABEL, ""))


def rollback_within_window(
    rollout: Object, replicasets: list[Object], new_rs: Object, stable_rs: Object
) -> bool:
    """rollout/sync.go isRollbackWithinWindow: the new ReplicaSet was created before the stable
    one, and fewer than `spec.rollbackWindow.revisions` ReplicaSets (experiments' not counted)
    were created between them."""
    if not created(new_rs) < created(stable_rs):
        return False
    revisions = int(((rollout["spec"].get("rollbackWindow") or {}).get("revisions")) or 0)
    if revisions <= 0:
        return False
    between = [
        rs
        for rs in replicasets
        if not (rs["metadata"].get("annotations") or {}).get(EXPERIMENT_NAME)
        and created(new_rs) < created(rs) < created(stable_rs)
    ]
    return len(between) < revisions


def within_scale_down_delay(rs: Object, now: datetime) -> bool:
    """rollout/controller.go newRSWithinDelay (utils/replicaset
    GetTimeRemainingBeforeScaleDownDeadline): its scale-down-deadline is still ahead."""
    deadline = (rs["metadata"].get("annotations") or {}).get(SCALE_DOWN_DEADLINE)
    if not deadline:
        return False
    at = datetime.strptime(deadline, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    return at > now


def fast_rollback(
    rollout: Object, replicasets: list[Object], new_rs: Object, stable_rs: Object, now: datetime
) -> str:
    """rollout/sync.go isFastRollback (with isRollback): why the update to `new_rs` skips every
    step and analysis, or "" when it is a new update."""
    if rs_hash(new_rs) == rs_hash(stable_rs):
        return "Rollback to stable ReplicaSets"
    if not created(new_rs) < created(stable_rs):  # isRollback: not an older ReplicaSet
        return ""
    if rollback_within_window(rollout, replicasets, new_rs, stable_rs):
        return "Rollback within window"
    if "blueGreen" in rollout["spec"]["strategy"] and within_scale_down_delay(new_rs, now):
        return "Fast rollback"
    return ""


def reconcile_template(api: FakeKubeAPI, rollout: Object, template: Object) -> None:
    """A pod template the controller has not yet rolled out: the ReplicaSet for it (reused or
    new, with the next revision), then fast-tracked, or a new update from step 0."""
    now = datetime.now(UTC)
    owned = owned_replicasets(api, rollout)
    next_revision = max((_revision(rs) for rs in owned), default=0) + 1
    new_rs = next(
        (rs for rs in owned if without_hash(rs["spec"]["template"]) == without_hash(template)), None
    )
    if new_rs is None:
        new_rs, _ = _replicaset(rollout, template, next_revision, 0)
        latest = max((created(rs) for rs in owned), default=now - timedelta(seconds=1))
        at = max(now, latest + timedelta(seconds=1))  # creation order is what isRollback reads
        new_rs["metadata"]["creationTimestamp"] = at.strftime("%Y-%m-%dT%H:%M:%SZ")
        new_rs = api.create(new_rs)
        owned.append(new_rs)
    else:  # rollout/sync.go syncReplicaSetRevision: the max revision of the others, plus one
        meta = new_rs["metadata"]
        others = [_revision(rs) for rs in owned if rs["metadata"]["name"] != meta["name"]]
        revision = str(max(others, default=0) + 1)

        def bump(rs: Object) -> None:
            rs["metadata"]["annotations"][REVISION_ANNOTATION] = revision

        new_rs = api.mutate(object_path(REPLICA_SETS, meta["namespace"], meta["name"]), bump)
    status = rollout.get("status") or {}
    stable_rs = next((rs for rs in owned if rs_hash(rs) == status.get("stableRS")), None)
    if stable_rs is None:
        _promote(api, rollout, new_rs, "Initial deploy")
        return
    reason = fast_rollback(rollout, owned, new_rs, stable_rs, now)
    if reason:
        _promote(api, rollout, new_rs, reason)
    else:
        _start_update(api, rollout, new_rs)


def _reset(status: Object) -> None:
    """rollout/sync.go resetRolloutStatus: as at the beginning of a new update."""
    status["abort"] = False
    status["promoteFull"] = False
    for key in ("pauseConditions", "controllerPause", "abortedAt", "message"):
        status.pop(key, None)
    canary = status.get("canary") or {}
    canary.pop("currentStepAnalysisRunStatus", None)
    canary.pop("currentBackgroundAnalysisRunStatus", None)
    blue_green = status.get("blueGreen") or {}
    blue_green.pop("prePromotionAnalysisRunStatus", None)
    blue_green.pop("postPromotionAnalysisRunStatus", None)


def _counts(status: Object, replicas: int, updated: int, total: int) -> None:
    status.update(
        replicas=total,
        updatedReplicas=updated,
        readyReplicas=total,
        availableReplicas=total,
        HPAReplicas=replicas,
    )


def _promote(api: FakeKubeAPI, rollout: Object, new_rs: Object, reason: str) -> None:
    """rollout/sync.go promoteStable: the current ReplicaSet becomes stable, all steps done."""
    now = datetime.now(UTC)
    new_hash, replicas = rs_hash(new_rs), int(rollout["spec"].get("replicas", 1))
    strategy = rollout["spec"]["strategy"]
    steps = (strategy.get("canary") or {}).get("steps") or []
    previous = (rollout.get("status") or {}).get("stableRS")
    kept = 0
    for rs in owned_replicasets(api, rollout):
        meta = rs["metadata"]
        path = object_path(REPLICA_SETS, meta["namespace"], meta["name"])
        if rs_hash(rs) == new_hash:
            api.mutate(path, lambda o: _scale(o, replicas))
        elif "blueGreen" in strategy and rs_hash(rs) == previous and previous != new_hash:
            blue_green = strategy["blueGreen"]
            delay = int(blue_green.get("scaleDownDelaySeconds", DEFAULT_SCALE_DOWN_DELAY))
            deadline = (now + timedelta(seconds=delay)).strftime("%Y-%m-%dT%H:%M:%SZ")

            def keep(o: Object, deadline: str = deadline) -> None:
                o["metadata"].setdefault("annotations", {})[SCALE_DOWN_DEADLINE] = deadline
                _scale(o, replicas)

            api.mutate(path, keep)
            kept = replicas
        elif rs["spec"].get("replicas"):
            api.mutate(path, lambda o: _scale(o, 0))

    def promote(obj: Object) -> None:
        status = obj.setdefault("status", {})
        _reset(status)
        status.update(currentPodHash=new_hash, stableRS=new_hash, phase="Healthy")
        if "canary" in strategy:
            status["currentStepIndex"] = len(steps)
            status.setdefault("canary", {})
        if "blueGreen" in strategy:
            status["blueGreen"] = {"activeSelector": new_hash, "previewSelector": new_hash}
            status["selector"] = f"{_selector(obj)},{HASH_LABEL}={new_hash}"
        else:
            status["selector"] = _selector(obj)
        status["currentStepHash"] = pod_template_hash({"steps": steps})
        status["message"] = reason  # what the RolloutCompleted Event says (promoteStable)
        _counts(status, replicas, replicas, replicas + kept)
        status["conditions"] = _conditions("NewReplicaSetAvailable", False, True)
        status["observedGeneration"] = str(obj["metadata"]["generation"])

    api.mutate(_status_path(rollout), promote)


def _start_update(api: FakeKubeAPI, rollout: Object, new_rs: Object) -> None:
    """A new update: canary steps from 0 (setWeight reached at once, stopping at the first pause
    or analysis), or a blue-green preview."""
    new_hash, replicas = rs_hash(new_rs), int(rollout["spec"].get("replicas", 1))
    strategy = rollout["spec"]["strategy"]
    stable = (rollout.get("status") or {}).get("stableRS")
    if "canary" in strategy:
        _enter_step(api, rollout, new_rs, 0, reset=True)
        return
    blue_green = strategy["blueGreen"]
    if blue_green.get("autoPromotionEnabled", True) and not blue_green.get("prePromotionAnalysis"):
        _promote(api, rollout, new_rs, "Completed blue-green update")
        return
    preview = int(blue_green.get("previewReplicaCount", replicas))
    _scale_pair(api, rollout, new_hash, preview, stable, replicas)

    def preview_update(obj: Object) -> None:
        status = obj.setdefault("status", {})
        _reset(status)
        status["currentPodHash"] = new_hash
        status["blueGreen"] = {"activeSelector": stable, "previewSelector": new_hash}
        status["selector"] = f"{_selector(obj)},{HASH_LABEL}={stable}"
        _counts(status, replicas, preview, replicas + preview)
        paused = not blue_green.get("autoPromotionEnabled", True)
        if paused:
            status["phase"], status["message"] = "Paused", "BlueGreenPause"
            status["pauseConditions"] = [
                {"reason": "BlueGreenPause", "startTime": _stamp(datetime.now(UTC))}
            ]
            status["controllerPause"] = True
        else:
            status["phase"], status["message"] = "Progressing", "active service cutover pending"
            status["blueGreen"]["prePromotionAnalysisRunStatus"] = {
                "name": f"{obj['metadata']['name']}-{new_hash}-pre",
                "status": "Running",
            }
        status["conditions"] = _conditions("ReplicaSetUpdated", paused, False)
        status["observedGeneration"] = str(obj["metadata"]["generation"])

    api.mutate(_status_path(rollout), preview_update)


def _enter_step(api: FakeKubeAPI, rollout: Object, new_rs: Object, index: int, reset: bool) -> None:
    """The canary at step `index`: the weight in force scaled onto the ReplicaSets
    (utils/replicaset/canary.go GetCurrentSetWeight), Paused at a pause step
    (rollout/canary.go reconcileCanaryPause), an AnalysisRun Running at an analysis step
    (rollout/analysis.go reconcileStepBasedAnalysisRun); past the last step, promoted."""
    steps = rollout["spec"]["strategy"]["canary"].get("steps") or []
    if index >= len(steps):
        _promote(api, rollout, new_rs, f"Completed all {len(steps)} canary steps")
        return
    new_hash, replicas = rs_hash(new_rs), int(rollout["spec"].get("replicas", 1))
    stable = (rollout.get("status") or {}).get("stableRS")
    weights = [int(s["setWeight"]) for s in steps[: index + 1] if "setWeight" in s]
    weight = weights[-1] if weights else 0
    canary_replicas = min(replicas, -(-replicas * weight // 100))  # ceil, as Argo rounds up
    _scale_pair(api, rollout, new_hash, canary_replicas, stable, replicas - canary_replicas)
    step = steps[index]
    name = rollout["metadata"]["name"]

    def enter(obj: Object) -> None:
        status = obj.setdefault("status", {})
        if reset:
            _reset(status)
        for key in ("pauseConditions", "controllerPause", "message"):
            status.pop(key, None)
        status.setdefault("canary", {}).pop("currentStepAnalysisRunStatus", None)
        status.update(currentPodHash=new_hash, currentStepIndex=index)
        status["currentStepHash"] = pod_template_hash({"steps": steps})
        status["selector"] = _selector(obj)
        _counts(status, replicas, canary_replicas, replicas)
        paused = "pause" in step
        if paused:
            status["phase"], status["message"] = "Paused", "CanaryPauseStep"
            status["pauseConditions"] = [
                {"reason": "CanaryPauseStep", "startTime": _stamp(datetime.now(UTC))}
            ]
            status["controllerPause"] = True
        else:
            status["phase"] = "Progressing"
            status["message"] = "more replicas need to be updated"
            if "analysis" in step:
                revision = new_rs["metadata"]["annotations"][REVISION_ANNOTATION]
                status["canary"]["currentStepAnalysisRunStatus"] = {
                    "name": f"{name}-{new_hash}-{revision}-{index}",
                    "status": "Running",
                }
        status["conditions"] = _conditions("ReplicaSetUpdated", paused, False)
        status["observedGeneration"] = str(obj["metadata"]["generation"])

    api.mutate(_status_path(rollout), enter)


def complete_step(api: FakeKubeAPI, namespace: str, name: str) -> Object:
    """The current canary step completes (its weight reached, its pause over, its AnalysisRun
    Successful: rollout/canary.go completedCurrentCanaryStep) and the next one starts. Returns
    the Rollout afterwards."""
    rollout = api.get(ROLLOUT_API, "rollouts", namespace, name)
    assert rollout is not None, f"no Rollout {namespace}/{name}"
    status = rollout["status"]
    if status.get("abort") or status.get("currentPodHash") == status.get("stableRS"):
        return rollout  # aborted or nothing in progress: no step to complete
    current = status["currentPodHash"]
    new_rs = next(rs for rs in owned_replicasets(api, rollout) if rs_hash(rs) == current)
    _enter_step(api, rollout, new_rs, int(status.get("currentStepIndex", 0)) + 1, reset=False)
    after = api.get(ROLLOUT_API, "rollouts", namespace, name)
    assert after is not None
    return after


def _on_promote_full(api: FakeKubeAPI, rollout: Object) -> None:
    """rollout/sync.go shouldFullPromote ("Full promotion requested"); calculateBaseStatus clears
    a promoteFull with nothing to promote."""
    status = rollout["status"]
    current = status.get("currentPodHash")
    if current == status.get("stableRS"):
        api.mutate(_status_path(rollout), lambda o: o["status"].update(promoteFull=False))
        return
    new_rs = next(rs for rs in owned_replicasets(api, rollout) if rs_hash(rs) == current)
    _promote(api, rollout, new_rs, "Full promotion requested")


def _on_abort(api: FakeKubeAPI, rollout: Object) -> None:
    """Traffic back to stable (utils/replicaset/canary.go GetCurrentSetWeight is 0 while
    aborted), analysis cancelled, Degraded (utils/rollout/rolloututil.go)."""
    status = rollout["status"]
    current, stable = status.get("currentPodHash"), status.get("stableRS")
    revision = max(
        (_revision(rs) for rs in owned_replicasets(api, rollout) if rs_hash(rs) == current),
        default=0,
    )
    replicas = int(rollout["spec"].get("replicas", 1))
    if "canary" in rollout["spec"]["strategy"] and current != stable:
        _scale_pair(api, rollout, current, 0, stable, replicas)

    def degrade(obj: Object) -> None:
        _abort(obj["status"], revision)
        canary = obj["status"].get("canary") or {}
        canary.pop("currentStepAnalysisRunStatus", None)
        canary.pop("currentBackgroundAnalysisRunStatus", None)
        obj["status"]["observedGeneration"] = str(obj["metadata"]["generation"])

    api.mutate(_status_path(rollout), degrade)


# --- helpers -------------------------------------------------------------------------------------


def _scale_pair(
    api: FakeKubeAPI,
    rollout: Object,
    new_hash: str | None,
    new_replicas: int,
    stable_hash: str | None,
    stable_replicas: int,
) -> None:
    for rs in owned_replicasets(api, rollout):
        wanted = {new_hash: new_replicas, stable_hash: stable_replicas}.get(rs_hash(rs), 0)
        if rs["spec"].get("replicas") != wanted:
            meta = rs["metadata"]
            path = object_path(REPLICA_SETS, meta["namespace"], meta["name"])
            api.mutate(path, lambda o, n=wanted: _scale(o, n))


def _revision(rs: Object) -> int:
    return int(rs["metadata"].get("annotations", {}).get(REVISION_ANNOTATION, "0"))


def _status_path(rollout: Object) -> str:
    meta = rollout["metadata"]
    return object_path(ROLLOUTS, meta["namespace"], meta["name"], "status")


def _selector(rollout: Object) -> str:
    labels = (rollout["spec"].get("selector") or {}).get("matchLabels") or {}
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def _stamp(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def copy_template(rs: Object) -> Object:
    """The pod template `kubectl argo rollouts undo` puts back: the ReplicaSet's, without its
    rollouts-pod-template-hash label (pkg/kubectl-argo-rollouts/cmd/undo RunUndoRollout)."""
    return without_hash(copy.deepcopy(rs["spec"]["template"]))
