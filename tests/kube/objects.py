"""Realistic Argo Rollouts and KServe objects to seed FakeKubeAPI with, and controller reactors.

Everything is deterministic: pod-template hashes are the first 10 hex digits of the sha256 of the
pod template, uids are uuid5 of the object's identity, timestamps are fixed. Every factory's
objects validate against the vendored CRD schemas (tests/kube/test_apiserver.py checks it).

The reactors stand in for the controllers, so a test sees what a rollback does on a cluster:
- `argo_controller` (in tests/kube/argo_controller.py, re-exported here): the Argo Rollouts
  controller's rules, each from the upstream source. Register with `install_argo_controller(api)`.
- `kserve_controller` and the KServe factories (in tests/kube/kserve_controller.py, re-exported
  here): KServe's rules, each from the upstream source. Register with
  `install_kserve_controller(api)`.
"""

from __future__ import annotations

import copy
import hashlib
import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from tests.kube.kserve_controller import (  # noqa: F401  re-exported: tests import them from here
    DEPLOYMENT_MODE_ANNOTATION,
    ISVC_API,
    KNATIVE_API,
    SOURCE_URI_ANNOTATION,
    KServeSeed,
    install_kserve_controller,
    knative_revision,
    kserve_canary,
    kserve_controller,
    kserve_promoted,
    kserve_raw,
    revision_name,
)
from tests.kube.resources import ROLLOUTS, object_path

Object = dict[str, Any]

CREATED_AT = "2026-01-15T09:00:00Z"
UPDATED_AT = "2026-01-15T09:30:00Z"
HASH_LABEL = "rollouts-pod-template-hash"
REVISION_ANNOTATION = "rollout.argoproj.io/revision"
ROLLOUT_API = "argoproj.io/v1alpha1"
_UID_NAMESPACE = uuid.UUID("6f1c7f8e-4b7a-4d3e-9a57-1f1f2b9c0a11")


def uid(*parts: str) -> str:
    return str(uuid.uuid5(_UID_NAMESPACE, "/".join(parts)))


def pod_template(name: str, image: str) -> Object:
    return {
        "metadata": {"labels": {"app": name}},
        "spec": {
            "containers": [
                {
                    "name": "model",
                    "image": image,
                    # protocol spelled out: the CRD defaults it, and templates are compared.
                    "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                }
            ]
        },
    }


def without_hash(template: Object) -> Object:
    """A pod template without the `rollouts-pod-template-hash` label Argo adds to its RSs."""
    template = copy.deepcopy(template)
    labels = template.get("metadata", {}).get("labels", {})
    labels.pop(HASH_LABEL, None)
    return template


def pod_template_hash(template: Object) -> str:
    canonical = json.dumps(without_hash(template), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:10]


def canary_steps(steps: int) -> list[Object]:
    """setWeight / pause alternating: 4 steps are 20, pause {}, 50, pause 10m."""
    out: list[Object] = []
    for i in range(steps):
        if i % 2 == 0:
            out.append({"setWeight": min(20 + 30 * (i // 2), 100)})
        else:
            out.append({"pause": {} if i == 1 else {"duration": "10m"}})
    return out


def weight_at(steps: list[Object], index: int) -> int:
    """The canary weight in force at step `index` (100 once all steps are done)."""
    if index >= len(steps):
        return 100
    weights = [s["setWeight"] for s in steps[: index + 1] if "setWeight" in s]
    return weights[-1] if weights else 0


@dataclass
class ArgoSeed:
    """A Rollout with its ReplicaSets (oldest revision first), and its Deployment if workloadRef."""

    rollout: Object
    replicasets: list[Object]
    deployment: Object | None = None
    hashes: list[str] = field(default_factory=list)  # per ReplicaSet, oldest first

    @property
    def objects(self) -> list[Object]:
        return [*([self.deployment] if self.deployment else []), self.rollout, *self.replicasets]

    @property
    def stable_hash(self) -> str:
        return str(self.rollout["status"]["stableRS"])

    @property
    def current_hash(self) -> str:
        return str(self.rollout["status"]["currentPodHash"])

    @property
    def path(self) -> str:
        meta = self.rollout["metadata"]
        return object_path(ROLLOUTS, meta["namespace"], meta["name"])


def _created_at(revision: int) -> str:
    at = datetime.strptime(CREATED_AT, "%Y-%m-%dT%H:%M:%SZ") + timedelta(minutes=revision)
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def _replicaset(
    rollout: Object, template: Object, revision: int, replicas: int
) -> tuple[Object, str]:
    name, ns = rollout["metadata"]["name"], rollout["metadata"]["namespace"]
    pod_hash = pod_template_hash(template)
    rs_template = copy.deepcopy(template)
    rs_template["metadata"].setdefault("labels", {})[HASH_LABEL] = pod_hash
    selector = {**rollout["spec"]["selector"]["matchLabels"], HASH_LABEL: pod_hash}
    rs = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": f"{name}-{pod_hash}",
            "namespace": ns,
            "uid": uid(ns, "replicaset", name, pod_hash),
            # One minute apart, oldest revision first: Argo tells a rollback from an update by
            # creation order (rollout/sync.go isRollback, isRollbackWithinWindow).
            "creationTimestamp": _created_at(revision),
            "labels": {**rollout["spec"]["selector"]["matchLabels"], HASH_LABEL: pod_hash},
            "annotations": {
                REVISION_ANNOTATION: str(revision),
                "rollout.argoproj.io/desired-replicas": str(rollout["spec"]["replicas"]),
            },
            "ownerReferences": [
                {
                    "apiVersion": ROLLOUT_API,
                    "kind": "Rollout",
                    "name": name,
                    "uid": rollout["metadata"]["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector},
            "template": rs_template,
        },
        "status": {
            "replicas": replicas,
            "fullyLabeledReplicas": replicas,
            "readyReplicas": replicas,
            "availableReplicas": replicas,
            "observedGeneration": 1,
        },
    }
    return rs, pod_hash


def _rollout(
    name: str, ns: str, replicas: int, strategy: Object, template: Object | None
) -> Object:
    spec: Object = {
        "replicas": replicas,
        "revisionHistoryLimit": 10,
        "selector": {"matchLabels": {"app": name}},
        "strategy": strategy,
    }
    if template is not None:
        spec["template"] = template
    return {
        "apiVersion": ROLLOUT_API,
        "kind": "Rollout",
        "metadata": {
            "name": name,
            "namespace": ns,
            "uid": uid(ns, "rollout", name),
            "creationTimestamp": CREATED_AT,
            "labels": {"app": name},
        },
        "spec": spec,
    }


_PROGRESSING_MESSAGES = {
    "ReplicaSetUpdated": "Rollout is progressing",
    "NewReplicaSetAvailable": "Rollout has completed updating",
    "RolloutAborted": "Rollout aborted update",
}


def _conditions(progressing_reason: str, paused: bool, healthy: bool) -> list[Object]:
    """Argo's condition set: Available, Progressing, Healthy (reason RolloutHealthy either way),
    and Paused while paused."""

    def condition(kind: str, status: bool, reason: str, message: str) -> Object:
        return {
            "type": kind,
            "status": "True" if status else "False",
            "reason": reason,
            "message": message,
            "lastTransitionTime": UPDATED_AT,
            "lastUpdateTime": UPDATED_AT,
        }

    out = [
        condition("Available", True, "AvailableReason", "Rollout has minimum availability"),
        condition(
            "Progressing",
            progressing_reason != "RolloutAborted",
            progressing_reason,
            _PROGRESSING_MESSAGES[progressing_reason],
        ),
        condition(
            "Healthy",
            healthy,
            "RolloutHealthy",
            "Rollout is healthy" if healthy else "Rollout is not healthy",
        ),
    ]
    if paused:
        out.append(condition("Paused", True, "RolloutPaused", "Rollout is paused"))
    return out


def _history(
    rollout: Object, images: list[str], current: int, templates: list[Object] | None = None
) -> tuple[list[Object], list[str]]:
    """ReplicaSets for revisions 1..len(images); all but the last two are scaled to zero."""
    name = rollout["metadata"]["name"]
    replicasets, hashes = [], []
    for revision, image in enumerate(images, start=1):
        template = templates[revision - 1] if templates else pod_template(name, image)
        replicas = current if revision == len(images) else 0
        rs, pod_hash = _replicaset(rollout, template, revision, replicas)
        replicasets.append(rs)
        hashes.append(pod_hash)
    return replicasets, hashes


def _scale(rs: Object, replicas: int) -> None:
    rs["spec"]["replicas"] = replicas
    for key in ("replicas", "fullyLabeledReplicas", "readyReplicas", "availableReplicas"):
        rs["status"][key] = replicas


def argo_canary(
    name: str = "fraud-model",
    ns: str = "models",
    step: int = 2,
    steps: int = 4,
    stable_image: str = "registry.example.com/fraud:1.4.0",
    canary_image: str = "registry.example.com/fraud:1.5.0",
    paused: bool = False,
    aborted: bool = False,
    weight: int | None = None,
    history: list[str] | tuple[str, ...] = (),
    replicas: int = 5,
) -> ArgoSeed:
    """A canary Rollout at `step` (currentStepIndex), its stable and canary ReplicaSets (the
    revisions before the last two), and `history` images as older revisions (1..N)."""
    step_list = canary_steps(steps)
    strategy = {"canary": {"steps": step_list}}
    rollout = _rollout(name, ns, replicas, strategy, pod_template(name, canary_image))
    weight = weight_at(step_list, step) if weight is None else weight
    canary_replicas = min(replicas, -(-replicas * weight // 100))  # ceil, as Argo rounds up
    images = [*history, stable_image, canary_image]
    replicasets, hashes = _history(rollout, images, canary_replicas)
    _scale(replicasets[-2], replicas - canary_replicas)
    stable_hash, canary_hash = hashes[-2], hashes[-1]
    if paused:
        rollout["spec"]["paused"] = True
    at_pause = step < len(step_list) and "pause" in step_list[step]
    status: Object = {
        "observedGeneration": "1",
        "replicas": replicas,
        "updatedReplicas": canary_replicas,
        "readyReplicas": replicas,
        "availableReplicas": replicas,
        "HPAReplicas": replicas,
        "selector": f"app={name}",
        "currentPodHash": canary_hash,
        "currentStepHash": pod_template_hash({"steps": step_list}),
        "currentStepIndex": step,
        "stableRS": stable_hash,
        "canary": {},
        "phase": "Progressing",
        "message": "more replicas need to be updated",
        "conditions": _conditions("ReplicaSetUpdated", at_pause or paused, False),
    }
    if paused:  # a user's pause (spec.paused): no pause condition, the controller did not pause
        status["phase"], status["message"] = "Paused", "manually paused"
    if at_pause:
        status["phase"], status["message"] = "Paused", "CanaryPauseStep"
        status["pauseConditions"] = [{"reason": "CanaryPauseStep", "startTime": UPDATED_AT}]
        status["controllerPause"] = True
    if aborted:
        _abort(status, revision=len(images))
    rollout["status"] = status
    return ArgoSeed(rollout, replicasets, hashes=hashes)


def _abort(status: Object, revision: int) -> None:
    status["abort"] = True
    status["abortedAt"] = UPDATED_AT
    status["phase"] = "Degraded"
    status["message"] = f"RolloutAborted: Rollout aborted update to revision {revision}"
    status.pop("pauseConditions", None)
    status.pop("controllerPause", None)
    status["conditions"] = _conditions("RolloutAborted", False, False)


def argo_blue_green(
    name: str = "fraud-model",
    ns: str = "models",
    stable_image: str = "registry.example.com/fraud:1.4.0",
    preview_image: str = "registry.example.com/fraud:1.5.0",
    aborted: bool = False,
    history: list[str] | tuple[str, ...] = (),
    replicas: int = 3,
) -> ArgoSeed:
    """A blue-green Rollout paused before promotion: active = stable, preview = new."""
    strategy = {
        "blueGreen": {
            "activeService": f"{name}-active",
            "previewService": f"{name}-preview",
            "autoPromotionEnabled": False,
        }
    }
    rollout = _rollout(name, ns, replicas, strategy, pod_template(name, preview_image))
    images = [*history, stable_image, preview_image]
    replicasets, hashes = _history(rollout, images, replicas)
    _scale(replicasets[-2], replicas)
    stable_hash, preview_hash = hashes[-2], hashes[-1]
    status: Object = {
        "observedGeneration": "1",
        "replicas": replicas * 2,
        "updatedReplicas": replicas,
        "readyReplicas": replicas * 2,
        "availableReplicas": replicas,
        "HPAReplicas": replicas,
        "selector": f"app={name},{HASH_LABEL}={stable_hash}",
        "currentPodHash": preview_hash,
        "stableRS": stable_hash,
        "blueGreen": {"activeSelector": stable_hash, "previewSelector": preview_hash},
        "phase": "Paused",
        "message": "BlueGreenPause",
        "pauseConditions": [{"reason": "BlueGreenPause", "startTime": UPDATED_AT}],
        "controllerPause": True,
        "conditions": _conditions("ReplicaSetUpdated", True, False),
    }
    if aborted:
        _abort(status, revision=len(images))
    rollout["status"] = status
    return ArgoSeed(rollout, replicasets, hashes=hashes)


def argo_promoted(
    name: str = "fraud-model",
    ns: str = "models",
    image: str = "registry.example.com/fraud:1.5.0",
    previous_image: str = "registry.example.com/fraud:1.4.0",
    steps: int = 4,
    history: list[str] | tuple[str, ...] = (),
    replicas: int = 5,
    rollback_window: int | None = None,
) -> ArgoSeed:
    """A fully promoted canary Rollout; the previous revision's ReplicaSet is scaled to zero.
    `rollback_window`: spec.rollbackWindow.revisions (none by default, as Argo's)."""
    step_list = canary_steps(steps)
    rollout = _rollout(
        name, ns, replicas, {"canary": {"steps": step_list}}, pod_template(name, image)
    )
    if rollback_window is not None:
        rollout["spec"]["rollbackWindow"] = {"revisions": rollback_window}
    images = [*history, previous_image, image]
    replicasets, hashes = _history(rollout, images, replicas)
    rollout["status"] = {
        "observedGeneration": "1",
        "replicas": replicas,
        "updatedReplicas": replicas,
        "readyReplicas": replicas,
        "availableReplicas": replicas,
        "HPAReplicas": replicas,
        "selector": f"app={name}",
        "currentPodHash": hashes[-1],
        "currentStepHash": pod_template_hash({"steps": step_list}),
        "currentStepIndex": len(step_list),
        "stableRS": hashes[-1],
        "canary": {},
        "phase": "Healthy",
        "conditions": _conditions("NewReplicaSetAvailable", False, True),
    }
    return ArgoSeed(rollout, replicasets, hashes=hashes)


def argo_workload_ref(
    name: str = "fraud-model",
    ns: str = "models",
    step: int = 2,
    steps: int = 4,
    stable_image: str = "registry.example.com/fraud:1.4.0",
    canary_image: str = "registry.example.com/fraud:1.5.0",
    history: list[str] | tuple[str, ...] = (),
    replicas: int = 5,
) -> ArgoSeed:
    """A canary Rollout whose pod template lives in a Deployment (spec.workloadRef), that
    Deployment (replicas 0, template with the canary image) and the Rollout's ReplicaSets."""
    seed = argo_canary(
        name, ns, step, steps, stable_image, canary_image, history=history, replicas=replicas
    )
    rollout = seed.rollout
    del rollout["spec"]["template"]
    rollout["spec"]["workloadRef"] = {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
    rollout["status"]["workloadObservedGeneration"] = "1"
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": ns,
            "uid": uid(ns, "deployment", name),
            "creationTimestamp": CREATED_AT,
            "labels": {"app": name},
        },
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": name}},
            "template": pod_template(name, canary_image),
        },
        "status": {"observedGeneration": 1},
    }
    return ArgoSeed(rollout, seed.replicasets, deployment, seed.hashes)


def __getattr__(name: str) -> Any:
    """`install_argo_controller` and `argo_controller` live in tests/kube/argo_controller.py
    (which imports this module's factories); still importable from here."""
    if name in ("install_argo_controller", "argo_controller"):
        from tests.kube import argo_controller

        return getattr(argo_controller, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
