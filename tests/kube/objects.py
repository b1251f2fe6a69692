"""Realistic Argo Rollouts and KServe objects to seed FakeKubeAPI with, and controller reactors.

Everything is deterministic: pod-template hashes are the first 10 hex digits of the sha256 of the
pod template, uids are uuid5 of the object's identity, timestamps are fixed. Every factory's
objects validate against the vendored CRD schemas (tests/kube/test_apiserver.py checks it).

The reactors stand in for the controllers, so a test sees what a rollback does on a cluster:
- `argo_controller`: an abort degrades the rollout; a pod template equal to an existing
  ReplicaSet's is a rollback to it (fast-tracked, as Argo skips the steps); a new template
  starts a new revision. Register with `install_argo_controller(api)`.
- `kserve_controller`: `canaryTrafficPercent: 0` pins traffic to the previous revision; a new
  storageUri rolls out a new revision. Register with `install_kserve_controller(api)`.
"""

from __future__ import annotations

import copy
import hashlib
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from tests.kube.apiserver import FakeKubeAPI
from tests.kube.resources import INFERENCE_SERVICES, REPLICA_SETS, ROLLOUTS, object_path

Object = dict[str, Any]

CREATED_AT = "2026-01-15T09:00:00Z"
UPDATED_AT = "2026-01-15T09:30:00Z"
HASH_LABEL = "rollouts-pod-template-hash"
REVISION_ANNOTATION = "rollout.argoproj.io/revision"
ROLLOUT_API = "argoproj.io/v1alpha1"
ISVC_API = "serving.kserve.io/v1beta1"
KNATIVE_API = "serving.knative.dev/v1"
SOURCE_URI_ANNOTATION = "serving.kserve.io/storage-initializer-sourceuri"
DEPLOYMENT_MODE_ANNOTATION = "serving.kserve.io/deploymentMode"
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
            "creationTimestamp": CREATED_AT,
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
) -> ArgoSeed:
    """A fully promoted canary Rollout; the previous revision's ReplicaSet is scaled to zero."""
    step_list = canary_steps(steps)
    rollout = _rollout(
        name, ns, replicas, {"canary": {"steps": step_list}}, pod_template(name, image)
    )
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


# --- KServe -----------------------------------------------------------------------------------


@dataclass
class KServeSeed:
    isvc: Object
    revisions: list[Object] = field(default_factory=list)  # Knative Revisions, oldest first

    @property
    def objects(self) -> list[Object]:
        return [self.isvc, *self.revisions]

    @property
    def path(self) -> str:
        meta = self.isvc["metadata"]
        return object_path(INFERENCE_SERVICES, meta["namespace"], meta["name"])


def revision_name(name: str, number: int) -> str:
    return f"{name}-predictor-{number:05d}"


def knative_revision(name: str, ns: str, number: int, storage_uri: str) -> Object:
    rev = revision_name(name, number)
    return {
        "apiVersion": KNATIVE_API,
        "kind": "Revision",
        "metadata": {
            "name": rev,
            "namespace": ns,
            "uid": uid(ns, "revision", rev),
            "creationTimestamp": CREATED_AT,
            "labels": {
                "serving.kserve.io/inferenceservice": name,
                "component": "predictor",
                "serving.knative.dev/configuration": f"{name}-predictor",
                "serving.knative.dev/configurationGeneration": str(number),
                "serving.knative.dev/service": f"{name}-predictor",
            },
            "annotations": {SOURCE_URI_ANNOTATION: storage_uri},
        },
        "spec": {
            "containerConcurrency": 0,
            "timeoutSeconds": 300,
            "containers": [
                {
                    "name": "kserve-container",
                    "image": "kserve/sklearnserver:v0.15.0",
                    "args": ["--model_name=" + name, "--model_dir=/mnt/models"],
                }
            ],
        },
        "status": {
            "observedGeneration": 1,
            "conditions": [
                {"type": "Ready", "status": "True", "lastTransitionTime": UPDATED_AT},
                {"type": "Active", "status": "True", "lastTransitionTime": UPDATED_AT},
            ],
        },
    }


def _isvc(name: str, ns: str, mode: str, storage_uri: str, percent: int | None) -> Object:
    predictor: Object = {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": storage_uri}}
    if percent is not None:
        predictor["canaryTrafficPercent"] = percent
    conditions = [
        {"type": kind, "status": "True", "lastTransitionTime": UPDATED_AT}
        for kind in ("IngressReady", "PredictorReady", "Ready")
    ]
    return {
        "apiVersion": ISVC_API,
        "kind": "InferenceService",
        "metadata": {
            "name": name,
            "namespace": ns,
            "uid": uid(ns, "inferenceservice", name),
            "creationTimestamp": CREATED_AT,
            "annotations": {DEPLOYMENT_MODE_ANNOTATION: mode},
        },
        "spec": {"predictor": predictor},
        "status": {
            "observedGeneration": 1,
            "url": f"http://{name}.{ns}.example.com",
            "address": {"url": f"http://{name}.{ns}.svc.cluster.local"},
            "conditions": conditions,
            "deploymentMode": mode,
            "modelStatus": {
                "transitionStatus": "UpToDate",
                "states": {"activeModelState": "Loaded", "targetModelState": "Loaded"},
                "copies": {"failedCopies": 0, "totalCopies": 1},
            },
            "components": {"predictor": {"url": f"http://{name}-predictor.{ns}.example.com"}},
        },
    }


def _traffic(name: str, ns: str, latest: str, percent: int, previous: str | None) -> list[Object]:
    entries = [
        {
            "revisionName": latest,
            "percent": percent,
            "latestRevision": True,
            "tag": "latest",
            "url": f"http://latest-{name}-predictor.{ns}.example.com",
        }
    ]
    if previous is not None:
        entries.append(
            {
                "revisionName": previous,
                "percent": 100 - percent,
                "latestRevision": False,
                "tag": "prev",
                "url": f"http://prev-{name}-predictor.{ns}.example.com",
            }
        )
    return entries


def kserve_canary(
    name: str = "fraud-model",
    ns: str = "models",
    percent: int = 10,
    prev_uri: str = "s3://models/fraud/v1",
    new_uri: str = "s3://models/fraud/v2",
) -> KServeSeed:
    """A Serverless InferenceService with a canary at `percent` on revision 2, and both Knative
    Revisions (each annotated with its storageUri)."""
    isvc = _isvc(name, ns, "Serverless", new_uri, percent)
    previous, latest = revision_name(name, 1), revision_name(name, 2)
    isvc["status"]["components"]["predictor"].update(
        {
            "latestCreatedRevision": latest,
            "latestReadyRevision": latest,
            "latestRolledoutRevision": latest,
            "previousRolledoutRevision": previous,
            "traffic": _traffic(name, ns, latest, percent, previous),
        }
    )
    revisions = [knative_revision(name, ns, 1, prev_uri), knative_revision(name, ns, 2, new_uri)]
    return KServeSeed(isvc, revisions)


def kserve_raw(
    name: str = "fraud-model", ns: str = "models", storage_uri: str = "s3://models/fraud/v2"
) -> KServeSeed:
    """A RawDeployment InferenceService: no Knative revisions, no traffic split."""
    return KServeSeed(_isvc(name, ns, "RawDeployment", storage_uri, None))


# --- reactors ---------------------------------------------------------------------------------


def install_argo_controller(api: FakeKubeAPI) -> None:
    api.on_write("rollouts", argo_controller)
    api.on_write("deployments", argo_controller)


def install_kserve_controller(api: FakeKubeAPI) -> None:
    api.on_write("inferenceservices", kserve_controller)


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
                _on_template(api, rollout, obj["spec"]["template"])
        return
    status = obj.get("status") or {}
    old_status = (before or {}).get("status") or {}
    if status.get("abort") and not old_status.get("abort"):
        _on_abort(api, obj)
    template = obj["spec"].get("template")
    old_template = ((before or {}).get("spec") or {}).get("template")
    if (
        before is not None
        and template is not None
        and without_hash(template) != without_hash(old_template or {})
    ):
        _on_template(api, obj, template)


def _owned_replicasets(api: FakeKubeAPI, rollout: Object) -> list[Object]:
    ns, rollout_uid = rollout["metadata"]["namespace"], rollout["metadata"]["uid"]
    return [
        rs
        for rs in api.list_objects("apps/v1", "replicasets", ns)
        if any(o.get("uid") == rollout_uid for o in rs["metadata"].get("ownerReferences", []))
    ]


def _revision(rs: Object) -> int:
    return int(rs["metadata"].get("annotations", {}).get(REVISION_ANNOTATION, "0"))


def _status_path(rollout: Object) -> str:
    meta = rollout["metadata"]
    return object_path(ROLLOUTS, meta["namespace"], meta["name"], "status")


def _on_abort(api: FakeKubeAPI, rollout: Object) -> None:
    current = rollout["status"].get("currentPodHash")
    revision = max(
        (
            _revision(rs)
            for rs in _owned_replicasets(api, rollout)
            if rs["metadata"]["labels"].get(HASH_LABEL) == current
        ),
        default=0,
    )

    def degrade(obj: Object) -> None:
        _abort(obj["status"], revision)
        obj["status"]["observedGeneration"] = str(obj["metadata"]["generation"])

    api.mutate(_status_path(rollout), degrade)


def _on_template(api: FakeKubeAPI, rollout: Object, template: Object) -> None:
    owned = _owned_replicasets(api, rollout)
    next_revision = max((_revision(rs) for rs in owned), default=0) + 1
    match = next(
        (rs for rs in owned if without_hash(rs["spec"]["template"]) == without_hash(template)), None
    )
    steps = ((rollout["spec"].get("strategy") or {}).get("canary") or {}).get("steps") or []
    if match is not None:
        pod_hash = match["metadata"]["labels"][HASH_LABEL]
        meta = match["metadata"]

        def bump(rs: Object) -> None:
            rs["metadata"]["annotations"][REVISION_ANNOTATION] = str(next_revision)
            rs["spec"]["replicas"] = rollout["spec"].get("replicas", 1)

        api.mutate(object_path(REPLICA_SETS, meta["namespace"], meta["name"]), bump)

        def promote(obj: Object) -> None:
            status = obj.setdefault("status", {})
            status.update(currentPodHash=pod_hash, stableRS=pod_hash, abort=False, phase="Healthy")
            for key in ("pauseConditions", "controllerPause", "abortedAt", "message"):
                status.pop(key, None)
            if "canary" in obj["spec"]["strategy"]:
                status["currentStepIndex"] = len(steps)
            if "blueGreen" in obj["spec"]["strategy"]:
                status["blueGreen"] = {"activeSelector": pod_hash, "previewSelector": pod_hash}
            status["conditions"] = _conditions("NewReplicaSetAvailable", False, True)
            status["observedGeneration"] = str(obj["metadata"]["generation"])

        api.mutate(_status_path(rollout), promote)
        return
    new_rs, pod_hash = _replicaset(rollout, template, next_revision, 0)
    api.create(new_rs)

    def progress(obj: Object) -> None:
        status = obj.setdefault("status", {})
        status.update(currentPodHash=pod_hash, abort=False, phase="Progressing")
        status["message"] = "more replicas need to be updated"
        for key in ("pauseConditions", "controllerPause", "abortedAt"):
            status.pop(key, None)
        if "canary" in obj["spec"]["strategy"]:
            status["currentStepIndex"] = 0
        if "blueGreen" in obj["spec"]["strategy"]:
            status.setdefault("blueGreen", {})["previewSelector"] = pod_hash
        status["conditions"] = _conditions("ReplicaSetUpdated", False, False)
        status["observedGeneration"] = str(obj["metadata"]["generation"])

    api.mutate(_status_path(rollout), progress)


def kserve_controller(api: FakeKubeAPI, isvc: Object | None, before: Object | None) -> None:
    """What KServe (Serverless mode) does with an InferenceService write."""
    if isvc is None or before is None:
        return
    meta = isvc["metadata"]
    name, ns = meta["name"], meta["namespace"]
    predictor = isvc["spec"].get("predictor") or {}
    old_predictor = before["spec"].get("predictor") or {}
    serverless = (isvc.get("status") or {}).get("deploymentMode", "Serverless") == "Serverless"
    uri = (predictor.get("model") or {}).get("storageUri")
    old_uri = (old_predictor.get("model") or {}).get("storageUri")
    percent = predictor.get("canaryTrafficPercent")
    old_percent = old_predictor.get("canaryTrafficPercent")
    path = object_path(INFERENCE_SERVICES, ns, name, "status")

    def observe(obj: Object) -> None:
        obj.setdefault("status", {})["observedGeneration"] = obj["metadata"]["generation"]

    if not serverless:
        api.mutate(path, observe)
        return
    if uri != old_uri:
        existing = [
            r
            for r in api.list_objects(KNATIVE_API, "revisions", ns)
            if r["metadata"]["labels"].get("serving.kserve.io/inferenceservice") == name
        ]
        new = revision_name(name, len(existing) + 1)
        api.create(knative_revision(name, ns, len(existing) + 1, uri or ""))

        def roll_out(obj: Object) -> None:
            comp = obj["status"].setdefault("components", {}).setdefault("predictor", {})
            comp["latestCreatedRevision"] = comp["latestReadyRevision"] = new
            rolled_out = comp.get("latestRolledoutRevision")
            if percent is None or percent >= 100:
                if rolled_out:
                    comp["previousRolledoutRevision"] = rolled_out
                comp["latestRolledoutRevision"] = new
                comp["traffic"] = _traffic(name, ns, new, 100, None)
            else:  # a canary of the new revision against the one rolled out
                comp["traffic"] = _traffic(name, ns, new, percent, rolled_out)
            observe(obj)

        api.mutate(path, roll_out)
    elif percent == 0 and old_percent != 0:

        def pin_previous(obj: Object) -> None:
            comp = obj["status"].setdefault("components", {}).setdefault("predictor", {})
            comp["traffic"] = [
                {
                    "revisionName": comp.get("previousRolledoutRevision"),
                    "percent": 100,
                    "latestRevision": False,
                },
                {
                    "revisionName": comp.get("latestCreatedRevision"),
                    "percent": 0,
                    "latestRevision": True,
                    "tag": "latest",
                },
            ]
            observe(obj)  # condition Ready stays True

        api.mutate(path, pin_previous)
    elif percent is None and old_percent is not None:

        def promote(obj: Object) -> None:  # canaryTrafficPercent removed: the latest takes all
            comp = obj["status"].setdefault("components", {}).setdefault("predictor", {})
            latest = comp.get("latestReadyRevision")
            if comp.get("latestRolledoutRevision") != latest:
                comp["previousRolledoutRevision"] = comp.get("latestRolledoutRevision")
            comp["latestRolledoutRevision"] = latest
            comp["traffic"] = _traffic(name, ns, str(latest), 100, None)
            observe(obj)

        api.mutate(path, promote)
    else:
        api.mutate(path, observe)
