"""Plain Kubernetes Deployments: the plan that reverts one, as `kubectl rollout undo` does, and
how healthy it is afterwards, as `kubectl rollout status` judges it. Pure but for `read`.

Upstream (kubernetes/kubectl pkg/polymorphichelpers/rollback.go, DeploymentRollbacker.Rollback):
- the ReplicaSets are the Deployment's: listed by its selector, kept only when their controller
  ownerReference is the Deployment (deploymentutil.ListReplicaSets, metav1.IsControlledBy);
- to prior: the ReplicaSet of the second-highest `deployment.kubernetes.io/revision`
  (deploymentRevision with toRevision 0); to a revision: the ReplicaSet of exactly that revision;
- a paused Deployment is refused ("resume it first"): the controller would not roll it out;
- a template already equal to the chosen one (ignoring `pod-template-hash`, equalIgnoreHash) is
  skipped, nothing sent;
- the patch is a JSON patch of `/spec/template` (the ReplicaSet's, without its
  `pod-template-hash` label) and `/metadata/annotations` (the Deployment's own of
  annotationsToSkip, then the ReplicaSet's others, so `kubernetes.io/change-cause` follows the
  revision; getDeploymentPatch), here with the LAST_ACTION annotation in the same write.
The deployment controller then re-uses that old ReplicaSet and gives it the next revision
(kubernetes pkg/controller/deployment/sync.go getNewReplicaSet, util SetNewReplicaSetAnnotations):
the revision gone back to is not a revision number any more after the undo, which is one more
reason the LAST_ACTION annotation (not the revision) is what stops a second revert.
To fallback: the rules.yaml fallback applied to the current template, as for Argo.
"""

from __future__ import annotations

import copy
from datetime import datetime
from typing import Any

from mlwatchdog.actions.kube_api import KubeApi
from mlwatchdog.actions.plan import (
    APPS,
    JSON_PATCH,
    LAST_ACTION,
    Candidate,
    Plan,
    PlannedRequest,
    already_done,
    last_action,
    last_action_note,
    object_name,
    resource_version,
)
from mlwatchdog.actions.workloads.argo import fallback_ops
from mlwatchdog.actions.workloads.base import Read
from mlwatchdog.core import Decision, Health, WorkloadHealth
from mlwatchdog.errors import ActionError
from mlwatchdog.rules.schema import Revisions, Target

REVISION = "deployment.kubernetes.io/revision"
HASH_LABEL = "pod-template-hash"  # apps/v1 DefaultDeploymentUniqueLabelKey
# kubectl's annotationsToSkip (pkg/polymorphichelpers/rollback.go): kept from the Deployment,
# never copied from the ReplicaSet.
ANNOTATIONS_TO_SKIP = frozenset(
    {
        "kubectl.kubernetes.io/last-applied-configuration",
        REVISION,
        "deployment.kubernetes.io/revision-history",
        "deployment.kubernetes.io/desired-replicas",
        "deployment.kubernetes.io/max-replicas",
        "deprecated.deployment.rollback.to",
    }
)
TIMED_OUT = "ProgressDeadlineExceeded"  # deploymentutil.TimedOutReason
NEW_RS_AVAILABLE = "NewReplicaSetAvailable"  # deploymentutil.NewRSAvailableReason


def deployment_path(target: Target) -> str:
    w = target.workload
    return f"{APPS}/namespaces/{w.namespace}/deployments/{w.name}"


def selector_string(selector: dict[str, Any]) -> str:
    """A LabelSelector as the `labelSelector` query parameter (metav1.LabelSelectorAsSelector)."""
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op in ("In", "NotIn"):
            parts.append(f"{key} {op.lower()} ({','.join(sorted(values))})")
        elif op == "Exists":
            parts.append(key)
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts)


def controlled_by(obj: dict[str, Any], owner: dict[str, Any]) -> bool:
    """metav1.IsControlledBy: the controller ownerReference is `owner`'s uid."""
    uid = owner["metadata"].get("uid")
    return any(
        ref.get("controller") and ref.get("uid") == uid
        for ref in obj["metadata"].get("ownerReferences") or []
    )


def revision_of(obj: dict[str, Any]) -> int:
    """deploymentutil.Revision: the revision annotation, 0 when absent, -1 when not a number."""
    value = (obj["metadata"].get("annotations") or {}).get(REVISION)
    if value is None:
        return 0
    return int(value) if str(value).isdigit() else -1


def equal_ignore_hash(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """equalIgnoreHash: two pod templates are equal but for the `pod-template-hash` label."""
    return _without_hash(a) == _without_hash(b)


def plan_deployment(
    deployment: dict[str, Any],
    replicasets: list[dict[str, Any]],
    target: Target,
    decision: Decision,
    by: str,
    now: datetime,
) -> Plan:
    """The JSON patch that reverts `deployment` as `decision` says, given the ReplicaSets listed
    by its selector (those it does not control are ignored)."""
    done = already_done([deployment], target, decision, now)
    if done:
        return Plan((), None, done)
    name = object_name(deployment)
    spec = deployment.get("spec") or {}
    if spec.get("paused"):
        raise ActionError(
            f"Deployment {name} is paused (spec.paused): a new template would not be rolled out. "
            f"Resume it first (kubectl rollout resume deployment/{deployment['metadata']['name']} "
            f"-n {deployment['metadata'].get('namespace')}); the next breach acts again"
        )
    template = spec.get("template") or {}
    annotations = dict(deployment["metadata"].get("annotations") or {})
    if decision.to == "fallback":
        fallback = target.rollback.fallback
        assert fallback is not None
        ops = fallback_ops(fallback, "/spec/template", template)
        images = (fallback.image,) if fallback.image else _images(template)
        candidate = Candidate("the fallback of rules.yaml", images=images, from_config=True)
        if not ops:
            return Plan((), candidate, "the pod template is already the fallback")
        note = last_action_note(
            target,
            decision,
            by,
            now,
            fallback=fallback.model_dump(mode="json", exclude_defaults=True),
        )
        ops.append(
            {
                "op": "add",
                "path": "/metadata/annotations",
                "value": {**annotations, LAST_ACTION: note},
            }
        )
        request = PlannedRequest(
            "PATCH", deployment_path(target), JSON_PATCH, ops,
            "install the fallback pod template", resource_version(deployment),
        )  # fmt: skip
        return Plan((request,), candidate)

    rs = _replicaset_to(deployment, replicasets, target, decision)
    rs_meta = rs["metadata"]
    revision = revision_of(rs)
    rs_template = rs["spec"]["template"]
    candidate = Candidate(
        f"ReplicaSet {rs_meta['name']} (revision {revision})",
        images=_images(rs_template),
        labels={**(rs_meta.get("labels") or {}), **_template_meta(rs_template, "labels")},
        annotations={
            **(rs_meta.get("annotations") or {}),
            **_template_meta(rs_template, "annotations"),
        },
    )
    if equal_ignore_hash(rs_template, template):
        return Plan(
            (),
            candidate,
            f"skipped rollback (current template already matches revision {revision})",
        )
    # kubectl: the Deployment keeps its own annotationsToSkip and takes the ReplicaSet's others.
    restored = {k: v for k, v in annotations.items() if k in ANNOTATIONS_TO_SKIP}
    restored.update(
        {
            k: v
            for k, v in (rs_meta.get("annotations") or {}).items()
            if k not in ANNOTATIONS_TO_SKIP
        }
    )
    restored[LAST_ACTION] = last_action_note(
        target, decision, by, now,
        revision=revision, replicaset=rs_meta["name"],
        hash=(rs_meta.get("labels") or {}).get(HASH_LABEL),
    )  # fmt: skip
    ops = [
        {"op": "replace", "path": "/spec/template", "value": _without_hash(rs_template)},
        # `add` replaces an existing member (RFC 6902) and works when there is none yet.
        {"op": "add", "path": "/metadata/annotations", "value": restored},
    ]
    purpose = (
        f"undo to revision {revision}: the pod template of ReplicaSet {rs_meta['name']}, "
        "without its pod-template-hash label, and its annotations (kubectl rollout undo)"
    )
    request = PlannedRequest(
        "PATCH", deployment_path(target), JSON_PATCH, ops, purpose, resource_version(deployment)
    )
    return Plan((request,), candidate)


def deployment_health(deployment: dict[str, Any]) -> WorkloadHealth:
    """`kubectl rollout status` (pkg/polymorphichelpers/rollout_status.go,
    DeploymentStatusViewer.Status), plus: done on the ReplicaSet the revert went back to."""
    meta, spec = deployment["metadata"], deployment.get("spec") or {}
    status = deployment.get("status") or {}
    name = meta["name"]
    if int(meta.get("generation") or 0) > int(status.get("observedGeneration") or 0):
        return WorkloadHealth(
            Health.PROGRESSING, "waiting for deployment spec update to be observed"
        )
    conditions = status.get("conditions") or []
    progressing: dict[str, Any] = next(
        (c for c in conditions if c.get("type") == "Progressing"), {}
    )
    if progressing.get("reason") == TIMED_OUT:
        return WorkloadHealth(
            Health.UNHEALTHY,
            f"deployment {name!r} exceeded its progress deadline: {progressing.get('message', '')}",
        )
    if spec.get("paused"):
        return WorkloadHealth(Health.PROGRESSING, f"deployment {name!r} is paused")
    replicas = int(spec.get("replicas", 1))
    updated = int(status.get("updatedReplicas") or 0)
    current = int(status.get("replicas") or 0)
    available = int(status.get("availableReplicas") or 0)
    waiting = f"waiting for deployment {name!r} rollout to finish: "
    if updated < replicas:
        return WorkloadHealth(
            Health.PROGRESSING,
            f"{waiting}{updated} out of {replicas} new replicas have been updated",
        )
    if current > updated:
        return WorkloadHealth(
            Health.PROGRESSING, f"{waiting}{current - updated} old replicas are pending termination"
        )
    if available < updated:
        return WorkloadHealth(
            Health.PROGRESSING, f"{waiting}{available} of {updated} updated replicas are available"
        )
    wanted = last_action(deployment).get("replicaset")
    message = str(progressing.get("message") or "")
    if wanted and progressing.get("reason") == NEW_RS_AVAILABLE and f'"{wanted}"' not in message:
        # The controller names the new ReplicaSet here (progress.go syncRolloutStatus).
        return WorkloadHealth(
            Health.UNHEALTHY, f"rolled out, but not the reverted ReplicaSet {wanted}: {message}"
        )
    return WorkloadHealth(Health.HEALTHY, f"deployment {name!r} successfully rolled out")


def _replicaset_to(
    deployment: dict[str, Any],
    replicasets: list[dict[str, Any]],
    target: Target,
    decision: Decision,
) -> dict[str, Any]:
    """kubectl's deploymentRevision: the ReplicaSet of the wanted revision, or of the
    second-highest one."""
    owned = [rs for rs in replicasets if controlled_by(rs, deployment)]
    by_revision = sorted(owned, key=revision_of, reverse=True)
    known = ", ".join(str(revision_of(rs)) for rs in by_revision) or "none"
    if decision.to == "revision":
        wanted = target.rollback.revision
        for rs in owned:
            if revision_of(rs) == wanted:
                return rs
        raise ActionError(
            f"Deployment {object_name(deployment)} has no ReplicaSet of revision {wanted} "
            f"(it has {known}; older ones are deleted beyond spec.revisionHistoryLimit): "
            "fix rollback.revision"
        )
    if len(by_revision) < 2:
        raise ActionError(
            f"Deployment {object_name(deployment)} has no rollout history to go back to "
            f"(revisions: {known}; spec.revisionHistoryLimit 0 keeps none): "
            "use rollback.to: fallback"
        )
    return by_revision[1]


def _without_hash(template: dict[str, Any]) -> dict[str, Any]:
    template = copy.deepcopy(template)
    labels = (template.get("metadata") or {}).get("labels")
    if labels is not None:
        labels.pop(HASH_LABEL, None)
    return template


def _template_meta(template: dict[str, Any], key: str) -> dict[str, str]:
    meta: dict[str, str] = (template.get("metadata") or {}).get(key) or {}
    return meta


def _images(template: dict[str, Any]) -> tuple[str, ...]:
    containers = (template.get("spec") or {}).get("containers") or []
    return tuple(c.get("image", "") for c in containers)


class DeploymentDriver:
    """`kind: deployment`: a plain Kubernetes Deployment, reverted as `kubectl rollout undo`."""

    kind = "deployment"

    def path(self, target: Target) -> str:
        return deployment_path(target)

    def read(self, api: KubeApi, target: Target, decision: Decision, log: Any) -> Read:
        deployment = api.get(deployment_path(target))
        selector = selector_string((deployment.get("spec") or {}).get("selector") or {})
        replicasets: list[dict[str, Any]] = []
        if decision.to != "fallback":
            ns = target.workload.namespace
            replicasets = api.list(f"{APPS}/namespaces/{ns}/replicasets", selector or None)
        return Read(deployment, {"replicasets": replicasets})

    def plan(self, read: Read, target: Target, decision: Decision, by: str, now: datetime) -> Plan:
        return plan_deployment(read.main, read.related["replicasets"], target, decision, by, now)

    def serving(self, api: KubeApi, target: Target) -> Revisions | None:
        return None  # no canary of its own that mlwatchdog can tell apart in the samples

    def health(self, obj: dict[str, Any]) -> WorkloadHealth:
        return deployment_health(obj)

    def offline_plan(self, target: Target, decision: Decision) -> Plan:
        path = deployment_path(target)
        if decision.to == "fallback":
            fallback = target.rollback.fallback
            assert fallback is not None
            ops = fallback_ops(fallback, "/spec/template", {})
            return Plan((PlannedRequest("PATCH", path, JSON_PATCH, ops, "install the fallback"),))
        which = (
            f"revision {target.rollback.revision}"
            if decision.to == "revision"
            else f"the second-highest {REVISION}"
        )
        purpose = (
            f"undo (kubectl rollout undo): /spec/template from the ReplicaSet of {which}, without "
            "its pod-template-hash label, and /metadata/annotations from it"
        )
        return Plan((PlannedRequest("PATCH", path, JSON_PATCH, None, purpose),))
