"""The Kubernetes requests that carry out a rollback, as data: what the actuators send and what
dry-run logs. Pure; the real actuators fill in what can only be read from the cluster.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mlwatchdog.core import Decision
from mlwatchdog.rules import Target

ARGO = "/apis/argoproj.io/v1alpha1"
KSERVE = "/apis/serving.kserve.io/v1beta1"
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"


@dataclass(frozen=True)
class PlannedRequest:
    """One HTTP request to the Kubernetes API; `body` None means it is read from the cluster."""

    method: str
    path: str
    content_type: str
    body: Any
    purpose: str


def plan_rollback(target: Target, decision: Decision) -> list[PlannedRequest]:
    """The requests that revert `target` as `decision` says (to prior, or to the fallback)."""
    workload = target.workload
    ns, name = workload.namespace, workload.name
    if workload.kind == "argo-rollout":
        rollout = f"{ARGO}/namespaces/{ns}/rollouts/{name}"
        abort = PlannedRequest(
            "PATCH",
            f"{rollout}/status",
            MERGE_PATCH,
            {"status": {"abort": True}},
            "abort the rollout: traffic goes back to the stable ReplicaSet",
        )
        if decision.to == "fallback":
            return [abort, _argo_fallback(rollout, target)]
        undo = PlannedRequest(
            "PATCH",
            rollout,
            JSON_PATCH,
            None,
            "undo: replace /spec/template with the ReplicaSet of the second-highest "
            "rollout.argoproj.io/revision, without its rollouts-pod-template-hash label",
        )
        return [abort, undo]
    if workload.kind == "kserve":
        isvc = f"{KSERVE}/namespaces/{ns}/inferenceservices/{name}"
        if decision.to == "fallback":
            fallback = target.rollback.fallback
            assert fallback is not None
            model = {
                k: v
                for k, v in {
                    "storageUri": fallback.storage_uri,
                    "runtime": fallback.runtime,
                }.items()
                if v is not None
            }
            body = {"spec": {"predictor": {"model": model, "canaryTrafficPercent": None}}}
            return [PlannedRequest("PATCH", isvc, MERGE_PATCH, body, "serve the fallback model")]
        body = {"spec": {"predictor": {"canaryTrafficPercent": 0}}}
        purpose = "all traffic to status.components.predictor.previousRolledoutRevision"
        return [PlannedRequest("PATCH", isvc, MERGE_PATCH, body, purpose)]
    return []


def _argo_fallback(rollout: str, target: Target) -> PlannedRequest:
    fallback = target.rollback.fallback
    assert fallback is not None
    container = "/spec/template/spec/containers/0"
    ops: list[dict[str, Any]] = []
    if fallback.image:
        ops.append({"op": "replace", "path": f"{container}/image", "value": fallback.image})
    if fallback.env:
        env = [{"name": k, "value": v} for k, v in fallback.env.items()]
        ops.append({"op": "add", "path": f"{container}/env", "value": env})
    if fallback.args is not None:
        ops.append({"op": "add", "path": f"{container}/args", "value": fallback.args})
    return PlannedRequest("PATCH", rollout, JSON_PATCH, ops, "install the fallback pod template")
