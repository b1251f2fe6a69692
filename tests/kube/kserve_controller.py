"""KServe InferenceService objects to seed FakeKubeAPI with, and the controller that reacts to
their writes, following kserve/kserve (read at aaac4e294, v0.20.0-rc0-104, the commit the
vendored CRD comes from). Each rule names its upstream file and function:

- Deployment mode: status.deploymentMode first, then the serving.kserve.io/deploymentMode
  annotation; Serverless = Knative, RawDeployment = Standard
  (pkg/controller/v1beta1/inferenceservice/utils/utils.go GetDeploymentMode).
- What is served carries the InferenceService's labels and annotations, plus
  internal.serving.kserve.io/storage-initializer-sourceuri = the storageUri
  (components/predictor.go buildPredictorResources, buildObjectMeta,
  addStorageInitializerAnnotations). In Knative mode a change of that template makes Knative
  create a new Revision.
- Knative traffic: canaryTrafficPercent set and latestRolledoutRevision known: the latest
  revision gets canaryTrafficPercent, latestRolledoutRevision (tag prev) the rest; otherwise the
  latest gets 100 (reconcilers/knative/ksvc_reconciler.go createKnativeService).
- Rolled-out revisions (pkg/apis/serving/v1beta1/inference_service_status.go PropagateStatus):
  the latest ready revision at 100% becomes latestRolledoutRevision (the old one
  previousRolledoutRevision); when the latest ready revision is already latestRolledoutRevision,
  is the latest created one, gets < 100% as latest while 100% of traffic is on it (split over
  itself), latestRolledoutRevision goes back to previousRolledoutRevision. status.traffic and
  status.observedGeneration are the Knative Service's. The controller reconciles again on each
  Knative Service status change: this fake repeats the two steps until nothing changes.
- Standard (RawDeployment): the predictor Deployment `<isvc>-predictor` gets the rendered pod
  template (reconcilers/deployment/deployment_reconciler.go createRawDefaultDeployment); a new
  template is a new ReplicaSet with the next deployment.kubernetes.io/revision (the Kubernetes
  Deployment controller); the status (PropagateRawStatus): PredictorReady from the Deployment's
  Available / Progressing conditions (Progressing reason NewReplicaSetAvailable once complete)
  and observedGeneration = the Deployment's status.observedGeneration. The rollout finishes when
  a test calls `complete_raw_rollout` (the Deployment controller's part).
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from tests.kube.apiserver import FakeKubeAPI
from tests.kube.resources import DEPLOYMENTS, INFERENCE_SERVICES, object_path

Object = dict[str, Any]

CREATED_AT = "2026-01-15T09:00:00Z"
UPDATED_AT = "2026-01-15T09:30:00Z"
ISVC_API = "serving.kserve.io/v1beta1"
KNATIVE_API = "serving.knative.dev/v1"
SOURCE_URI_ANNOTATION = "internal.serving.kserve.io/storage-initializer-sourceuri"
DEPLOYMENT_MODE_ANNOTATION = "serving.kserve.io/deploymentMode"
DEPLOYMENT_REVISION = "deployment.kubernetes.io/revision"
ISVC_LABEL = "serving.kserve.io/inferenceservice"
MODES = {"Serverless": "Knative", "RawDeployment": "Standard"}
# constants.go ServiceAnnotationDisallowedList (not propagated from the InferenceService)
DISALLOWED_ANNOTATIONS = {
    "autoscaling.knative.dev/min-scale",
    "autoscaling.knative.dev/max-scale",
    SOURCE_URI_ANNOTATION,
    "kubectl.kubernetes.io/last-applied-configuration",
    "modelFormat",
}


def _uid(*parts: str) -> str:
    from tests.kube.objects import uid  # one uid scheme for every fake object

    return uid(*parts)


# --- objects ----------------------------------------------------------------------------------


@dataclass
class KServeSeed:
    isvc: Object
    revisions: list[Object] = field(default_factory=list)  # Knative Revisions, oldest first
    others: list[Object] = field(default_factory=list)  # Deployment and ReplicaSets (Standard)

    @property
    def objects(self) -> list[Object]:
        return [self.isvc, *self.revisions, *self.others]

    @property
    def path(self) -> str:
        meta = self.isvc["metadata"]
        return object_path(INFERENCE_SERVICES, meta["namespace"], meta["name"])


def revision_name(name: str, number: int) -> str:
    return f"{name}-predictor-{number:05d}"


def _model(isvc: Object) -> Object:
    predictor = isvc["spec"].get("predictor") or {}
    if "model" in predictor:
        return dict(predictor["model"])
    for value in predictor.values():
        if isinstance(value, dict) and "storageUri" in value:
            return dict(value)
    return {}


def rendered(isvc: Object) -> tuple[Object, Object, str]:
    """The served template's labels, annotations and image (predictor.go buildObjectMeta)."""
    meta = isvc["metadata"]
    model = _model(isvc)
    labels = {**(meta.get("labels") or {}), ISVC_LABEL: meta["name"], "component": "predictor"}
    annotations = {
        k: v for k, v in (meta.get("annotations") or {}).items() if k not in DISALLOWED_ANNOTATIONS
    }
    if model.get("storageUri"):
        annotations[SOURCE_URI_ANNOTATION] = model["storageUri"]
    image = f"kserve/{model.get('runtime') or 'sklearnserver'}:v0.15.0"
    return labels, annotations, image


def knative_revision(isvc: Object, number: int) -> Object:
    meta = isvc["metadata"]
    name, ns = meta["name"], meta["namespace"]
    rev = revision_name(name, number)
    labels, annotations, image = rendered(isvc)
    return {
        "apiVersion": KNATIVE_API,
        "kind": "Revision",
        "metadata": {
            "name": rev,
            "namespace": ns,
            "uid": _uid(ns, "revision", rev),
            "creationTimestamp": CREATED_AT,
            "labels": {
                **labels,
                "serving.knative.dev/configuration": f"{name}-predictor",
                "serving.knative.dev/configurationGeneration": str(number),
                "serving.knative.dev/service": f"{name}-predictor",
            },
            "annotations": annotations,
        },
        "spec": {
            "containerConcurrency": 0,
            "timeoutSeconds": 300,
            "containers": [
                {
                    "name": "kserve-container",
                    "image": image,
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


def _isvc(
    name: str, ns: str, mode: str, storage_uri: str, percent: int | None, labels: Object
) -> Object:
    predictor: Object = {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": storage_uri}}
    if percent is not None:
        predictor["canaryTrafficPercent"] = percent
    conditions = [
        {"type": kind, "status": "True", "lastTransitionTime": UPDATED_AT}
        for kind in ("IngressReady", "PredictorReady", "Ready")
    ]
    isvc: Object = {
        "apiVersion": ISVC_API,
        "kind": "InferenceService",
        "metadata": {
            "name": name,
            "namespace": ns,
            "uid": _uid(ns, "inferenceservice", name),
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
    if labels:
        isvc["metadata"]["labels"] = dict(labels)
    return isvc


def _at(isvc: Object, uri: str, labels: Object | None = None) -> Object:
    """`isvc` as it was when it served `uri` (with `labels`): what a past revision rendered."""
    past = copy.deepcopy(isvc)
    past["spec"]["predictor"]["model"]["storageUri"] = uri
    if labels is not None:
        past["metadata"]["labels"] = dict(labels)
    return past


def kserve_canary(
    name: str = "fraud-model",
    ns: str = "models",
    percent: int = 10,
    prev_uri: str = "s3://models/fraud/v1",
    new_uri: str = "s3://models/fraud/v2",
    history: tuple[str, ...] = (),
    prev_labels: Object | None = None,
    labels: Object | None = None,
) -> KServeSeed:
    """A Knative InferenceService: `history` then `prev_uri` rolled out, one after the other,
    and a canary of `new_uri` at `percent` (its revision the latest). As PropagateStatus leaves
    it: latestRolledoutRevision is `prev_uri`'s revision; previousRolledoutRevision the one
    before (absent without `history`)."""
    isvc = _isvc(name, ns, "Serverless", new_uri, percent, labels or {})
    uris = [*history, prev_uri]
    revisions = [
        knative_revision(_at(isvc, uri, prev_labels if uri == prev_uri else None), i + 1)
        for i, uri in enumerate(uris)
    ]
    revisions.append(knative_revision(isvc, len(uris) + 1))
    n = len(uris)
    comp = isvc["status"]["components"]["predictor"]
    latest, rolled_out = revision_name(name, n + 1), revision_name(name, n)
    comp.update(
        latestCreatedRevision=latest,
        latestReadyRevision=latest,
        latestRolledoutRevision=rolled_out,
        traffic=ksvc_traffic(name, ns, latest, percent, rolled_out),
    )
    if n > 1:
        comp["previousRolledoutRevision"] = revision_name(name, n - 1)
    return KServeSeed(isvc, revisions)


def kserve_promoted(
    name: str = "fraud-model",
    ns: str = "models",
    prev_uri: str = "s3://models/fraud/v1",
    new_uri: str = "s3://models/fraud/v2",
    prev_labels: Object | None = None,
    labels: Object | None = None,
) -> KServeSeed:
    """A Knative InferenceService whose `new_uri` is fully rolled out (no canaryTrafficPercent),
    `prev_uri`'s revision the previous rolled-out one."""
    isvc = _isvc(name, ns, "Serverless", new_uri, None, labels or {})
    revisions = [knative_revision(_at(isvc, prev_uri, prev_labels), 1), knative_revision(isvc, 2)]
    latest = revision_name(name, 2)
    isvc["status"]["components"]["predictor"].update(
        latestCreatedRevision=latest,
        latestReadyRevision=latest,
        latestRolledoutRevision=latest,
        previousRolledoutRevision=revision_name(name, 1),
        traffic=ksvc_traffic(name, ns, latest, None, latest),
    )
    return KServeSeed(isvc, revisions)


def kserve_raw(
    name: str = "fraud-model",
    ns: str = "models",
    storage_uri: str = "s3://models/fraud/v2",
    history: tuple[str, ...] = ("s3://models/fraud/v1",),
    mode: str = "RawDeployment",
    labels: Object | None = None,
    history_labels: Object | None = None,
) -> KServeSeed:
    """A Standard (RawDeployment) InferenceService, its predictor Deployment rolled out to
    `storage_uri`, and one ReplicaSet per model of `history` then `storage_uri` (revisions 1..)."""
    isvc = _isvc(name, ns, mode, storage_uri, None, labels or {})
    deployment = _deployment(isvc)
    replicasets = [
        _replicaset(deployment, _pod_template(_at(isvc, uri, history_labels)), i + 1, 0)
        for i, uri in enumerate(history)
    ]
    replicasets.append(_replicaset(deployment, deployment["spec"]["template"], len(history) + 1, 1))
    deployment["metadata"]["annotations"] = {DEPLOYMENT_REVISION: str(len(replicasets))}
    isvc["status"]["components"]["predictor"] = {"url": f"http://{name}-predictor.{ns}"}
    _set_condition(isvc, "PredictorReady", "True", "NewReplicaSetAvailable")
    return KServeSeed(isvc, others=[deployment, *replicasets])


def ksvc_traffic(
    name: str, ns: str, latest: str, percent: int | None, rolled_out: str | None
) -> list[Object]:
    """Route status of the traffic createKnativeService sets (latestRevision resolved to
    `latest`, the latest ready revision, as Knative does)."""
    entries: list[Object] = []
    if percent is not None and rolled_out:
        entries.append({"revisionName": latest, "percent": percent, "latestRevision": True})
        if percent < 100:
            entries.append(
                {
                    "revisionName": rolled_out,
                    "percent": 100 - percent,
                    "latestRevision": False,
                    "tag": "prev",
                    "url": f"http://prev-{name}-predictor.{ns}.example.com",
                }
            )
    else:
        entries.append({"revisionName": latest, "percent": 100, "latestRevision": True})
    return entries


def propagate_status(comp: Object, traffic: list[Object], ready: str, created: str) -> Object:
    """inference_service_status.go PropagateStatus, the revision bookkeeping."""
    comp = {**comp, "latestCreatedRevision": created}
    per_revision: dict[str, int] = {}
    for t in traffic:
        per_revision[t["revisionName"]] = per_revision.get(t["revisionName"], 0) + t["percent"]
    for t in traffic:
        if t["revisionName"] != ready or not t.get("latestRevision"):
            continue
        if comp.get("latestRolledoutRevision") != ready:
            if t["percent"] == 100:
                if comp.get("latestRolledoutRevision"):
                    comp["previousRolledoutRevision"] = comp["latestRolledoutRevision"]
                comp["latestRolledoutRevision"] = ready
        elif (
            ready == created
            and t["percent"] < 100
            and per_revision.get(ready) == 100
            and comp.get("previousRolledoutRevision")
        ):  # split over the same revision: the rollback of a fully rolled-out revision
            comp["latestRolledoutRevision"] = comp["previousRolledoutRevision"]
    comp["latestReadyRevision"] = ready
    comp["traffic"] = traffic
    return comp


# --- Standard mode: Deployment and ReplicaSets --------------------------------------------------


def _pod_template(isvc: Object) -> Object:
    labels, annotations, image = rendered(isvc)
    dep = f"{isvc['metadata']['name']}-predictor"
    return {
        "metadata": {"labels": {**labels, "app": f"isvc.{dep}"}, "annotations": annotations},
        "spec": {"containers": [{"name": "kserve-container", "image": image}]},
    }


def _hash(template: Object) -> str:
    return hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:10]


def _deployment(isvc: Object) -> Object:
    meta = isvc["metadata"]
    dep, ns = f"{meta['name']}-predictor", meta["namespace"]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": dep,
            "namespace": ns,
            "uid": _uid(ns, "deployment", dep),
            "creationTimestamp": CREATED_AT,
            "generation": 1,
            "ownerReferences": [
                {
                    "apiVersion": ISVC_API,
                    "kind": "InferenceService",
                    "name": meta["name"],
                    "uid": meta["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": f"isvc.{dep}"}},
            "template": _pod_template(isvc),
        },
        "status": {"observedGeneration": 1, "conditions": _deployment_conditions(True)},
    }


def _deployment_conditions(complete: bool) -> list[Object]:
    reason = "NewReplicaSetAvailable" if complete else "ReplicaSetUpdated"
    return [
        {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
        {"type": "Progressing", "status": "True", "reason": reason},
    ]


def _replicaset(deployment: Object, template: Object, revision: int, replicas: int) -> Object:
    name, ns = deployment["metadata"]["name"], deployment["metadata"]["namespace"]
    pod_hash = _hash(template)
    rs_template = copy.deepcopy(template)
    rs_template["metadata"]["labels"]["pod-template-hash"] = pod_hash
    selector = {**deployment["spec"]["selector"]["matchLabels"], "pod-template-hash": pod_hash}
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": f"{name}-{pod_hash}",
            "namespace": ns,
            "uid": _uid(ns, "replicaset", name, pod_hash),
            "creationTimestamp": CREATED_AT,
            "labels": selector,
            "annotations": {DEPLOYMENT_REVISION: str(revision)},
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "name": name,
                    "uid": deployment["metadata"]["uid"],
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
        "status": {"replicas": replicas, "readyReplicas": replicas, "availableReplicas": replicas},
    }


def _set_condition(isvc: Object, kind: str, status: str, reason: str) -> None:
    conditions = isvc["status"].setdefault("conditions", [])
    entry = {"type": kind, "status": status, "reason": reason, "lastTransitionTime": UPDATED_AT}
    for i, c in enumerate(conditions):
        if c["type"] == kind:
            conditions[i] = entry
            return
    conditions.append(entry)


# --- the controller ---------------------------------------------------------------------------


def install_kserve_controller(api: FakeKubeAPI) -> None:
    api.on_write("inferenceservices", kserve_controller)


def kserve_controller(api: FakeKubeAPI, isvc: Object | None, before: Object | None) -> None:
    """What KServe does with an InferenceService write (see the module docstring)."""
    if isvc is None or before is None:
        return
    status = isvc.get("status") or {}
    mode = status.get("deploymentMode") or (isvc["metadata"].get("annotations") or {}).get(
        DEPLOYMENT_MODE_ANNOTATION
    )
    mode = MODES.get(mode, mode)
    if mode == "Knative":
        _reconcile_knative(api, isvc)
    elif mode == "Standard":
        _reconcile_raw(api, isvc)


def _same_template(revision: Object, isvc: Object) -> bool:
    labels, annotations, image = rendered(isvc)
    meta = revision["metadata"]
    own = {k: v for k, v in meta["labels"].items() if not k.startswith("serving.knative.dev/")}
    return (
        own == labels
        and meta.get("annotations", {}) == annotations
        and revision["spec"]["containers"][0]["image"] == image
    )


def _reconcile_knative(api: FakeKubeAPI, isvc: Object) -> None:
    meta = isvc["metadata"]
    name, ns = meta["name"], meta["namespace"]
    revisions = sorted(
        (
            r
            for r in api.list_objects(KNATIVE_API, "revisions", ns)
            if r["metadata"]["labels"].get(ISVC_LABEL) == name
        ),
        key=lambda r: int(r["metadata"]["labels"]["serving.knative.dev/configurationGeneration"]),
    )
    template_changed = not revisions or not _same_template(revisions[-1], isvc)
    if template_changed:  # Knative: a new template is a new Revision (ready at once here)
        api.create(knative_revision(isvc, len(revisions) + 1))
    latest = revision_name(name, len(revisions) + (1 if template_changed else 0))
    percent = (isvc["spec"].get("predictor") or {}).get("canaryTrafficPercent")

    def reconcile(obj: Object) -> None:
        status = obj["status"]
        comp = status.setdefault("components", {}).setdefault("predictor", {})
        before_traffic = comp.get("traffic")
        for _ in range(5):  # one reconcile per Knative Service status change, until stable
            traffic = ksvc_traffic(name, ns, latest, percent, comp.get("latestRolledoutRevision"))
            new = propagate_status(comp, traffic, latest, latest)
            if new == comp:
                break
            comp = new
        status["components"]["predictor"] = comp
        if template_changed or comp.get("traffic") != before_traffic:  # the ksvc's generation
            status["observedGeneration"] = int(status.get("observedGeneration") or 0) + 1

    api.mutate(object_path(INFERENCE_SERVICES, ns, name, "status"), reconcile)


def _reconcile_raw(api: FakeKubeAPI, isvc: Object) -> None:
    meta = isvc["metadata"]
    name, ns = meta["name"], meta["namespace"]
    dep_path = object_path(DEPLOYMENTS, ns, f"{name}-predictor")
    deployment = api.get("apps/v1", "deployments", ns, f"{name}-predictor")
    if deployment is None:
        return
    template = _pod_template(isvc)
    if deployment["spec"]["template"] != template:

        def update(obj: Object) -> None:
            obj["spec"]["template"] = template

        deployment = api.mutate(dep_path, update)
        replicasets = [
            rs
            for rs in api.list_objects("apps/v1", "replicasets", ns)
            if any(
                o["uid"] == deployment["metadata"]["uid"]
                for o in rs["metadata"].get("ownerReferences", [])
            )
        ]
        top = max(int(rs["metadata"]["annotations"][DEPLOYMENT_REVISION]) for rs in replicasets)
        api.create(_replicaset(deployment, template, top + 1, 0))

        def progressing(obj: Object) -> None:
            obj["metadata"]["annotations"] = {DEPLOYMENT_REVISION: str(top + 1)}
            obj["status"] = {
                "observedGeneration": obj["metadata"]["generation"],
                "conditions": _deployment_conditions(False),
            }

        deployment = api.mutate(dep_path, progressing)
    _propagate_raw(api, isvc, deployment)


def _propagate_raw(api: FakeKubeAPI, isvc: Object, deployment: Object) -> None:
    """PropagateRawStatus: PredictorReady True from Available (reason kept), or from Progressing
    NewReplicaSetAvailable; observedGeneration is the Deployment's."""
    conditions = {c["type"]: c for c in deployment["status"]["conditions"]}
    progressing = conditions["Progressing"]
    reason = (
        progressing["reason"]
        if progressing["reason"] == "NewReplicaSetAvailable"
        else conditions["Available"]["reason"]
    )

    def propagate(obj: Object) -> None:
        _set_condition(obj, "PredictorReady", "True", reason)
        obj["status"]["observedGeneration"] = deployment["status"]["observedGeneration"]

    meta = isvc["metadata"]
    api.mutate(
        object_path(INFERENCE_SERVICES, meta["namespace"], meta["name"], "status"), propagate
    )


def complete_raw_rollout(api: FakeKubeAPI, ns: str = "models", name: str = "fraud-model") -> None:
    """The Deployment controller finishing the rollout (the newest ReplicaSet scaled up, the
    older ones down, Progressing NewReplicaSetAvailable), and KServe propagating it."""
    dep_path = object_path(DEPLOYMENTS, ns, f"{name}-predictor")

    def complete(obj: Object) -> None:
        obj["status"]["conditions"] = _deployment_conditions(True)

    deployment = api.mutate(dep_path, complete)
    isvc = api.get(ISVC_API, "inferenceservices", ns, name)
    assert isvc is not None
    _propagate_raw(api, isvc, deployment)
