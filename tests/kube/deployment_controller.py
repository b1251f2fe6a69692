"""A Deployment with its ReplicaSets to seed FakeKubeAPI with, and a reactor that does what the
upstream deployment controller does with a Deployment write (pods are not emulated: a rollout
completes, or stalls, at once).

Every rule is read from kubernetes/kubernetes:
- pkg/controller/deployment/util/deployment_util.go
  - ListReplicaSets: the Deployment's ReplicaSets are those its selector lists whose controller
    ownerReference is the Deployment;
  - FindNewReplicaSet / EqualIgnoreHash: the "new" ReplicaSet is the oldest whose pod template
    equals the Deployment's, ignoring the `pod-template-hash` label, so a template equal to an
    old ReplicaSet's re-uses that ReplicaSet (no new one is created);
  - MaxRevision over the old ReplicaSets; SetNewReplicaSetAnnotations: the new ReplicaSet takes
    the Deployment's annotations but annotationsToSkip, its revision becomes maxOldRevision + 1
    when that is higher, and a re-used ReplicaSet's previous revision is appended to
    `deployment.kubernetes.io/revision-history`;
  - SetDeploymentRevision: the Deployment's revision annotation is the new ReplicaSet's;
  - DeploymentComplete: updated == replicas == available, generation observed.
- pkg/controller/deployment/sync.go getNewReplicaSet: a missing new ReplicaSet is created, named
  `<deployment>-<pod-template-hash>`, with the hash in its labels, selector and template labels;
  calculateStatus / syncDeploymentStatus: the status counts come from the ReplicaSets.
- pkg/controller/deployment/progress.go syncRolloutStatus: Progressing is NewReplicaSetAvailable
  `ReplicaSet "<name>" has successfully progressed.` when complete, ReplicaSetUpdated
  `ReplicaSet "<name>" is progressing.` while not, ProgressDeadlineExceeded when timed out.
- pkg/controller/deployment/deployment_controller.go syncDeployment: a paused Deployment is only
  scaled (sync), never rolled out.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.kube.apiserver import FakeKubeAPI
from tests.kube.objects import CREATED_AT, pod_template, uid
from tests.kube.resources import DEPLOYMENTS, REPLICA_SETS, object_path

Object = dict[str, Any]

HASH_LABEL = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED = "deployment.kubernetes.io/desired-replicas"
MAX = "deployment.kubernetes.io/max-replicas"
CHANGE_CAUSE = "kubernetes.io/change-cause"
# deployment_util.go annotationsToSkip
SKIPPED = {
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    REVISION_HISTORY,
    DESIRED,
    MAX,
    "deprecated.deployment.rollback.to",
}


def without_hash(template: Object) -> Object:
    template = copy.deepcopy(template)
    (template.get("metadata") or {}).get("labels", {}).pop(HASH_LABEL, None)
    return template


def template_hash(template: Object) -> str:
    """Deterministic stand-in for controller.ComputeHash (fnv of the template), 10 hex digits."""
    canonical = json.dumps(without_hash(template), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:10]


@dataclass
class DeploymentSeed:
    deployment: Object
    replicasets: list[Object]  # oldest revision first

    @property
    def objects(self) -> list[Object]:
        return [self.deployment, *self.replicasets]


def _replicaset(deployment: Object, template: Object, revision: int, replicas: int) -> Object:
    meta = deployment["metadata"]
    name, ns = meta["name"], meta["namespace"]
    pod_hash = template_hash(template)
    rs_template = copy.deepcopy(template)
    rs_template.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = pod_hash
    match = deployment["spec"]["selector"]["matchLabels"]
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k not in SKIPPED}
    annotations.update({
        REVISION: str(revision),
        DESIRED: str(deployment["spec"]["replicas"]),
        MAX: str(deployment["spec"]["replicas"] + 1),
    })  # fmt: skip
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": f"{name}-{pod_hash}",
            "namespace": ns,
            "uid": uid(ns, "replicaset", name, pod_hash),
            "creationTimestamp": CREATED_AT,
            "labels": {**(template["metadata"].get("labels") or {}), HASH_LABEL: pod_hash},
            "annotations": annotations,
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "name": name,
                    "uid": meta["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {**match, HASH_LABEL: pod_hash}},
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


def deployment_with_history(
    images: list[str],
    causes: list[str] | None = None,
    name: str = "fraud-model",
    ns: str = "models",
    replicas: int = 3,
    paused: bool = False,
) -> DeploymentSeed:
    """A Deployment rolled out once per image (revision 1 = images[0]), complete on the last,
    each ReplicaSet carrying the change-cause of its revision (`causes`)."""
    causes = causes or [f"deploy {image}" for image in images]
    template = pod_template(name, images[-1])
    deployment: Object = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": ns,
            "uid": uid(ns, "deployment", name),
            "creationTimestamp": CREATED_AT,
            "generation": 1,
            "labels": {"app": name},
            "annotations": {REVISION: str(len(images)), CHANGE_CAUSE: causes[-1]},
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": template,
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"},
            },
            "revisionHistoryLimit": 10,
            "progressDeadlineSeconds": 600,
            **({"paused": True} if paused else {}),
        },
    }
    replicasets = []
    for i, image in enumerate(images):
        version = copy.deepcopy(deployment)
        version["metadata"]["annotations"][CHANGE_CAUSE] = causes[i]
        last = i == len(images) - 1
        rs = _replicaset(version, pod_template(name, image), i + 1, replicas if last else 0)
        replicasets.append(rs)
    deployment["status"] = _status(deployment, replicasets[-1], replicasets, available=True)
    return DeploymentSeed(deployment, replicasets)


def _status(deployment: Object, new_rs: Object, all_rs: list[Object], available: bool) -> Object:
    """calculateStatus + syncRolloutStatus for a rollout that completed (or stalled: the new
    ReplicaSet's pods never become available)."""
    replicas = deployment["spec"]["replicas"]
    total = sum(rs["status"]["replicas"] for rs in all_rs)
    ready = replicas if available else 0
    name = new_rs["metadata"]["name"]
    if available:
        reason, message = (
            "NewReplicaSetAvailable",
            f'ReplicaSet "{name}" has successfully progressed.',
        )
    else:
        reason, message = "ReplicaSetUpdated", f'ReplicaSet "{name}" is progressing.'
    stamp = "2026-01-15T09:30:00Z"
    return {
        "observedGeneration": deployment["metadata"].get("generation", 1),
        "replicas": total,
        "updatedReplicas": new_rs["status"]["replicas"],
        "readyReplicas": ready,
        "availableReplicas": ready,
        **({} if available else {"unavailableReplicas": replicas}),
        "conditions": [
            {
                "type": "Available",
                "status": "True" if available else "False",
                "reason": "MinimumReplicasAvailable" if available else "MinimumReplicasUnavailable",
                "message": "Deployment has minimum availability."
                if available
                else "Deployment does not have minimum availability.",
                "lastUpdateTime": stamp,
                "lastTransitionTime": stamp,
            },
            {
                "type": "Progressing",
                "status": "True",
                "reason": reason,
                "message": message,
                "lastUpdateTime": stamp,
                "lastTransitionTime": stamp,
            },
        ],
    }


def _owned(api: FakeKubeAPI, deployment: Object) -> list[Object]:
    """ListReplicaSets: by the selector, then only those the Deployment controls."""
    ns, owner = deployment["metadata"]["namespace"], deployment["metadata"]["uid"]
    match = deployment["spec"]["selector"]["matchLabels"]
    return [
        rs
        for rs in api.list_objects("apps/v1", "replicasets", ns)
        if all(rs["metadata"].get("labels", {}).get(k) == v for k, v in match.items())
        and any(
            o.get("controller") and o.get("uid") == owner
            for o in rs["metadata"].get("ownerReferences", [])
        )
    ]


def _revision(rs: Object) -> int:
    value = (rs["metadata"].get("annotations") or {}).get(REVISION, "0")
    return int(value) if value.isdigit() else 0


def deployment_controller(
    available: Callable[[Object], bool] = lambda template: True,
) -> Callable[[FakeKubeAPI, Object | None, Object | None], None]:
    """The reactor; `available(template)` says whether a template's pods become available (a
    bad image stalls the rollout: Progressing stays ReplicaSetUpdated)."""

    def react(api: FakeKubeAPI, obj: Object | None, before: Object | None) -> None:
        if obj is None or obj["spec"].get("paused"):  # paused: scaled only, never rolled out
            return
        ns, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
        owned = _owned(api, obj)
        template = obj["spec"]["template"]
        # FindNewReplicaSet: the oldest ReplicaSet whose template equals, ignoring the hash.
        same = [
            rs for rs in owned if without_hash(rs["spec"]["template"]) == without_hash(template)
        ]
        same.sort(key=lambda rs: rs["metadata"].get("creationTimestamp", ""))
        new_rs = same[0] if same else None
        old = [
            rs
            for rs in owned
            if new_rs is None or rs["metadata"]["uid"] != new_rs["metadata"]["uid"]
        ]
        new_revision = max((_revision(rs) for rs in old), default=0) + 1
        replicas = obj["spec"]["replicas"]
        if new_rs is None:
            created = _replicaset(obj, without_hash(template), new_revision, replicas)
            created["metadata"]["creationTimestamp"] = "2026-11-25T12:00:00Z"
            new_rs = api.create(created)
        else:

            def annotate(rs: Object) -> None:
                # SetNewReplicaSetAnnotations: copy the Deployment's annotations, then the
                # revision (only ever raised), keeping the one it had in the history.
                notes = rs["metadata"].setdefault("annotations", {})
                for key, value in (obj["metadata"].get("annotations") or {}).items():
                    if key not in SKIPPED:
                        notes[key] = value
                had = _revision(rs)
                if had < new_revision:
                    notes[REVISION] = str(new_revision)
                    history = [h for h in notes.get(REVISION_HISTORY, "").split(",") if h]
                    notes[REVISION_HISTORY] = ",".join([*history, str(had)])
                rs["spec"]["replicas"] = replicas
                rs["status"].update(
                    replicas=replicas, fullyLabeledReplicas=replicas,
                    readyReplicas=replicas, availableReplicas=replicas,
                )  # fmt: skip

            meta = new_rs["metadata"]
            new_rs = api.mutate(object_path(REPLICA_SETS, ns, meta["name"]), annotate)
        ok = available(template)
        for rs in old:  # the rolling update finished: old ReplicaSets scaled to zero
            if rs["spec"].get("replicas") and ok:
                path = object_path(REPLICA_SETS, ns, rs["metadata"]["name"])
                api.mutate(path, _scale_to_zero)
        owned = _owned(api, obj)
        revision = (new_rs["metadata"].get("annotations") or {}).get(REVISION)

        def set_revision(d: Object) -> None:  # SetDeploymentRevision
            d["metadata"].setdefault("annotations", {})[REVISION] = revision

        path = object_path(DEPLOYMENTS, ns, name)
        if (obj["metadata"].get("annotations") or {}).get(REVISION) != revision:
            obj = api.mutate(path, set_revision)
        status = _status(obj, new_rs, owned, available=ok)
        api.mutate(f"{path}/status", lambda d: {**d, "status": status})

    return react


def _scale_to_zero(rs: Object) -> None:
    rs["spec"]["replicas"] = 0
    rs["status"].update(replicas=0, fullyLabeledReplicas=0, readyReplicas=0, availableReplicas=0)


def install_deployment_controller(
    api: FakeKubeAPI, available: Callable[[Object], bool] = lambda template: True
) -> None:
    api.on_write("deployments", deployment_controller(available))


def replicaset(api: FakeKubeAPI, name: str, ns: str = "models") -> Object:
    obj = api.get("apps/v1", "replicasets", ns, name)
    assert obj is not None, name
    return obj
