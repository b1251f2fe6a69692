"""KServe: the plan that reverts an InferenceService, and how healthy it is afterwards. Pure.

The rules below are KServe's own (kserve/kserve, read at v0.20): where each is implemented
upstream is named beside it, and tests/kube/kserve_controller.py emulates them.

- Deployment mode: `status.deploymentMode` first, then the `serving.kserve.io/deploymentMode`
  annotation (`utils.GetDeploymentMode`); `Serverless` is the old name of `Knative`,
  `RawDeployment` of `Standard`. Neither set: the plan refuses (the default is the cluster's).
- To prior, Knative mode, canary in progress (`latestRolledoutRevision` is not the latest ready
  revision): merge patch `canaryTrafficPercent: 0`. KServe routes `100 - canaryTrafficPercent`
  to `latestRolledoutRevision` (`ksvc_reconciler.go` createKnativeService), so that revision,
  not `previousRolledoutRevision`, is what the revert goes back to and health waits for.
- To prior, Knative mode, fully rolled out: the previous rolled-out revision's storageUri is
  written back (and canaryTrafficPercent removed), a new revision rolled out to 100%.
  `canaryTrafficPercent: 0` alone would only work while no new revision appears
  (`PropagateStatus` moves latestRolledoutRevision back only when the latest created revision
  is the latest ready one), and every change of the InferenceService's labels or annotations
  (the last-action annotation included) makes Knative create one: traffic would stay on the
  bad revision.
- To prior, Standard (RawDeployment) mode: no revisions; the predictor Deployment's older
  ReplicaSets (by `deployment.kubernetes.io/revision`) carry each earlier model's storageUri
  in their pod template's `internal.serving.kserve.io/storage-initializer-sourceuri`
  annotation (`predictor.go` addStorageInitializerAnnotations, `deployment_reconciler.go`
  createRawDefaultDeployment). The newest one with another storageUri is written back.
- To fallback: the predictor's storageUri (and runtime) from rules.yaml, canaryTrafficPercent
  removed, and the governance labels/annotations set (`fallback.labels`/`annotations`; the
  approval key of the policy removed unless given), since KServe copies the InferenceService's
  labels and annotations onto what it serves (`predictor.go` buildObjectMeta).
The LAST_ACTION annotation goes into the same merge patch.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from mlwatchdog.actions.kube_api import KubeApi
from mlwatchdog.actions.plan import (
    APPS,
    KNATIVE,
    KSERVE,
    LAST_ACTION,
    MERGE_PATCH,
    Candidate,
    Plan,
    PlannedRequest,
    already_done,
    last_action,
    last_action_note,
    resource_version,
)
from mlwatchdog.actions.workloads.base import Read
from mlwatchdog.core import Decision, Health, WorkloadHealth
from mlwatchdog.errors import ActionError
from mlwatchdog.rules.schema import Fallback, Policy, Revisions, Target

MODE_ANNOTATION = "serving.kserve.io/deploymentMode"
# On each Knative revision and each RawDeployment pod template (constants.go
# StorageInitializerSourceUriInternalAnnotationKey).
SOURCE_URI = "internal.serving.kserve.io/storage-initializer-sourceuri"
DEPLOYMENT_REVISION = "deployment.kubernetes.io/revision"
MODES = {"Serverless": "Knative", "Knative": "Knative", "RawDeployment": "Standard"}
MODES |= {"Standard": "Standard", "ModelMesh": "ModelMesh"}


def isvc_path(target: Target) -> str:
    w = target.workload
    return f"{KSERVE}/namespaces/{w.namespace}/inferenceservices/{w.name}"


def revision_path(target: Target, revision: str) -> str:
    return f"{KNATIVE}/namespaces/{target.workload.namespace}/revisions/{revision}"


def predictor_deployment(isvc: dict[str, Any]) -> str:
    """The predictor Deployment's name (constants.go PredictorServiceName)."""
    name = isvc["metadata"]["name"]
    component = ((isvc.get("spec") or {}).get("predictor") or {}).get("name")
    return f"{name}-{component}-predictor" if component else f"{name}-predictor"


def deployment_mode(isvc: dict[str, Any]) -> str:
    """`Knative`, `Standard`, `ModelMesh`, or '' when neither the status nor the annotation says
    (utils.go GetDeploymentMode: the status first)."""
    annotations = isvc["metadata"].get("annotations") or {}
    for mode in (
        (isvc.get("status") or {}).get("deploymentMode"),
        annotations.get(MODE_ANNOTATION),
    ):
        if mode:
            return MODES.get(str(mode), str(mode))
    return ""


def predictor_status(isvc: dict[str, Any]) -> dict[str, Any]:
    status: dict[str, Any] = ((isvc.get("status") or {}).get("components") or {}).get(
        "predictor"
    ) or {}
    return status


def previous_revision(isvc: dict[str, Any]) -> str | None:
    """The Knative revision `to: prior` goes back to (None: none to go back to)."""
    comp = predictor_status(isvc)
    rolled_out, ready = comp.get("latestRolledoutRevision"), comp.get("latestReadyRevision")
    if not rolled_out:
        return None
    if rolled_out != ready:  # a canary of `ready` against `rolled_out`
        return str(rolled_out)
    previous = comp.get("previousRolledoutRevision")
    return str(previous) if previous and previous != rolled_out else None


def canary_in_progress(isvc: dict[str, Any]) -> bool:
    comp = predictor_status(isvc)
    rolled_out = comp.get("latestRolledoutRevision")
    return bool(rolled_out) and rolled_out != comp.get("latestReadyRevision")


def prior_body(note: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"spec": {"predictor": {"canaryTrafficPercent": 0}}}
    if note:
        body["metadata"] = {"annotations": {LAST_ACTION: note}}
    return body


def model_body(
    key: str,
    model: Mapping[str, str | None],
    note: str | None,
    labels: Mapping[str, str | None] | None = None,
    annotations: Mapping[str, str | None] | None = None,
) -> dict[str, Any]:
    """Merge patch: the predictor's model, canaryTrafficPercent removed (the new revision takes
    all traffic once ready), labels/annotations (None removes one) and the note."""
    predictor = {key: {k: v for k, v in model.items() if v is not None}}
    body: dict[str, Any] = {"spec": {"predictor": {**predictor, "canaryTrafficPercent": None}}}
    meta: dict[str, Any] = {}
    if labels:
        meta["labels"] = dict(labels)
    if annotations or note:
        meta["annotations"] = {**(annotations or {}), **({LAST_ACTION: note} if note else {})}
    if meta:
        body["metadata"] = meta
    return body


def fallback_body(fallback: Fallback, key: str, note: str | None) -> dict[str, Any]:
    model = {"storageUri": fallback.storage_uri, "runtime": fallback.runtime}
    return model_body(key, model, note, fallback.labels, fallback.annotations)


def governance(
    isvc: dict[str, Any],
    policy: Policy,
    labels: Mapping[str, str | None],
    annotations: Mapping[str, str | None],
    served: Candidate | None = None,
) -> tuple[dict[str, str | None], dict[str, str | None]]:
    """The labels and annotations to write with a model change, so that none still describes
    the replaced model: the given ones, plus the policy's approval key set to what `served`
    carries (removed when it carries none, or when there is no `served`: a fallback)."""
    out_labels, out_annotations = dict(labels), dict(annotations)
    approval = policy.approval
    if approval is not None:
        meta = isvc["metadata"]
        if approval.label is not None:
            key, current, out, theirs = (
                approval.label,
                meta.get("labels") or {},
                out_labels,
                (served.labels if served else {}),
            )
        else:
            assert approval.annotation is not None
            key, current, out = approval.annotation, meta.get("annotations") or {}, out_annotations
            theirs = served.annotations if served else {}
        if key not in out:
            value = theirs.get(key)
            if value != current.get(key):
                out[key] = value
    current_labels = isvc["metadata"].get("labels") or {}
    current_annotations = isvc["metadata"].get("annotations") or {}
    # only changes: a value already there, or a removal of a key not there, is left out
    out_labels = {k: v for k, v in out_labels.items() if current_labels.get(k) != v}
    out_annotations = {k: v for k, v in out_annotations.items() if current_annotations.get(k) != v}
    return out_labels, out_annotations


def plan_kserve(
    isvc: dict[str, Any],
    revision: dict[str, Any] | None,
    target: Target,
    decision: Decision,
    by: str,
    now: Any,
    replicasets: list[dict[str, Any]] | None = None,
    deployment: dict[str, Any] | None = None,
) -> Plan:
    """The merge patch that reverts `isvc`. `revision`: the Knative Revision gone back to
    (Knative mode, to prior); `deployment`/`replicasets`: the predictor Deployment and its
    ReplicaSets (Standard mode, to prior). None when not read."""
    done = already_done([isvc], target, decision, now)
    if done:
        return Plan((), None, done)
    name = f"{isvc['metadata'].get('namespace')}/{isvc['metadata']['name']}"
    predictor = (isvc.get("spec") or {}).get("predictor") or {}
    key = _model_key(predictor)
    current = predictor.get(key) or {}
    rv = resource_version(isvc)
    comp = predictor_status(isvc)
    if decision.to == "fallback":
        fallback = target.rollback.fallback
        assert fallback is not None
        if fallback.runtime and key != "model":
            raise ActionError(
                f"InferenceService {name} declares its model under predictor.{key}, which has "
                "no `runtime`: drop rollback.fallback.runtime, or use predictor.model"
            )
        uri = fallback.storage_uri or current.get("storageUri")
        candidate = Candidate("the fallback of rules.yaml", storage_uri=uri, from_config=True)
        labels, annotations = governance(
            isvc, target.rollback.policy, fallback.labels, fallback.annotations
        )
        if (
            current.get("storageUri") == uri
            and fallback.runtime in (None, current.get("runtime"))
            and predictor.get("canaryTrafficPercent") in (None, 100)
            and not labels
            and not annotations
        ):
            return Plan((), candidate, f"already serving the fallback {uri}")
        note = last_action_note(
            target,
            decision,
            by,
            now,
            storage_uri=uri,
            replaced_storage_uri=current.get("storageUri"),
            from_revision=comp.get("latestCreatedRevision"),
            deployment_generation=_generation(deployment),
        )
        model = {"storageUri": fallback.storage_uri, "runtime": fallback.runtime}
        body = model_body(key, model, note, labels, annotations)
        request = PlannedRequest(
            "PATCH", isvc_path(target), MERGE_PATCH, body, "serve the fallback", rv
        )
        return Plan((request,), candidate)

    mode = deployment_mode(isvc)
    if mode == "Standard":
        return _plan_standard_prior(isvc, target, decision, by, now, replicasets, deployment)
    if mode == "ModelMesh":
        raise ActionError(
            f"InferenceService {name} runs in ModelMesh mode: there are no revisions or "
            "ReplicaSets of its own to go back to. Use rollback.to: fallback (a storage_uri "
            "to serve)"
        )
    if mode != "Knative":
        raise ActionError(
            f"InferenceService {name}: its deployment mode is not known yet (status."
            f"deploymentMode is empty and there is no {MODE_ANNOTATION} annotation): wait "
            "until KServe has reconciled it, or set the annotation"
        )
    previous = previous_revision(isvc)
    if not previous:
        raise ActionError(
            f"InferenceService {name} has no earlier rolled-out revision to go back to "
            f"(status.components.predictor: latestRolledoutRevision "
            f"{comp.get('latestRolledoutRevision')!r}, previousRolledoutRevision "
            f"{comp.get('previousRolledoutRevision')!r}). Use rollback.to: fallback"
        )
    meta = (revision or {}).get("metadata") or {}
    revision_annotations = meta.get("annotations") or {}
    candidate = Candidate(
        f"revision {previous}",
        storage_uri=revision_annotations.get(SOURCE_URI),
        labels=meta.get("labels") or {},
        annotations=revision_annotations,
    )
    if canary_in_progress(isvc):
        if predictor.get("canaryTrafficPercent") == 0:
            return Plan(
                (), candidate, f"canaryTrafficPercent is already 0: all traffic on {previous}"
            )
        note = last_action_note(target, decision, by, now, revision=previous)
        purpose = f"all traffic to the rolled-out revision {previous} (canaryTrafficPercent 0)"
        request = PlannedRequest(
            "PATCH", isvc_path(target), MERGE_PATCH, prior_body(note), purpose, rv
        )
        return Plan((request,), candidate)
    uri = candidate.storage_uri
    if not uri:
        why = "could not be read" if revision is None else f"has no {SOURCE_URI} annotation"
        raise ActionError(
            f"InferenceService {name} is fully rolled out to "
            f"{comp.get('latestRolledoutRevision')}; going back means serving the storageUri of "
            f"revision {previous}, which {why}. Use rollback.to: fallback with "
            "fallback.storage_uri"
        )
    return _restore_uri(isvc, key, uri, candidate, target, decision, by, now, None)


def _plan_standard_prior(
    isvc: dict[str, Any],
    target: Target,
    decision: Decision,
    by: str,
    now: Any,
    replicasets: list[dict[str, Any]] | None,
    deployment: dict[str, Any] | None,
) -> Plan:
    name = f"{isvc['metadata'].get('namespace')}/{isvc['metadata']['name']}"
    predictor = (isvc.get("spec") or {}).get("predictor") or {}
    key = _model_key(predictor)
    current = (predictor.get(key) or {}).get("storageUri")
    dep = predictor_deployment(isvc)
    if deployment is None:
        raise ActionError(
            f"InferenceService {name} runs in Standard (RawDeployment) mode, but its predictor "
            f"Deployment {dep} could not be read: check that it exists and that mlwatchdog may "
            "get deployments and list replicasets in that namespace"
        )
    skip = {current, last_action(isvc).get("replaced_storage_uri")}
    for rs in sorted(replicasets or [], key=_rs_revision, reverse=True):
        template = (rs.get("spec") or {}).get("template") or {}
        meta = template.get("metadata") or {}
        uri = (meta.get("annotations") or {}).get(SOURCE_URI)
        if uri and uri not in skip:
            candidate = Candidate(
                f"ReplicaSet {rs['metadata']['name']} (revision {_rs_revision(rs)}) of {dep}",
                storage_uri=uri,
                labels=meta.get("labels") or {},
                annotations=meta.get("annotations") or {},
            )
            return _restore_uri(isvc, key, uri, candidate, target, decision, by, now, deployment)
    raise ActionError(
        f"InferenceService {name} runs in Standard (RawDeployment) mode and no older ReplicaSet "
        f"of its Deployment {dep} records another storageUri (in {SOURCE_URI}; "
        "revisionHistoryLimit may have removed them): nothing to go back to. Set rollback.to: "
        "fallback with fallback.storage_uri"
    )


def _restore_uri(
    isvc: dict[str, Any],
    key: str,
    uri: str,
    candidate: Candidate,
    target: Target,
    decision: Decision,
    by: str,
    now: Any,
    deployment: dict[str, Any] | None,
) -> Plan:
    predictor = (isvc.get("spec") or {}).get("predictor") or {}
    current = (predictor.get(key) or {}).get("storageUri")
    labels, annotations = governance(isvc, target.rollback.policy, {}, {}, candidate)
    note = last_action_note(
        target,
        decision,
        by,
        now,
        storage_uri=uri,
        replaced_storage_uri=current,
        from_revision=predictor_status(isvc).get("latestCreatedRevision"),
        deployment_generation=_generation(deployment),
    )
    body = model_body(key, {"storageUri": uri}, note, labels, annotations)
    purpose = f"serve the previous model {uri} again ({candidate.description})"
    rv = resource_version(isvc)
    return Plan(
        (PlannedRequest("PATCH", isvc_path(target), MERGE_PATCH, body, purpose, rv),), candidate
    )


def kserve_health(isvc: dict[str, Any]) -> WorkloadHealth:
    """Ready, serving what the revert chose (from the LAST_ACTION annotation). The status'
    observedGeneration is the Knative Service's or the Deployment's, not the
    InferenceService's (inference_service_status.go), so it is compared with what was recorded
    of those, never with metadata.generation."""
    status = isvc.get("status") or {}
    conditions = status.get("conditions") or []
    ready: dict[str, Any] = next((c for c in conditions if c.get("type") == "Ready"), {})
    if ready.get("status") != "True":
        why = ready.get("message") or ready.get("reason") or "no Ready condition yet"
        kind = Health.UNHEALTHY if ready.get("status") == "False" else Health.PROGRESSING
        return WorkloadHealth(kind, f"not Ready: {why}")
    last = last_action(isvc)
    predictor = (isvc.get("spec") or {}).get("predictor") or {}
    wanted_uri = last.get("storage_uri")
    if wanted_uri and (predictor.get(_model_key(predictor)) or {}).get("storageUri") != wanted_uri:
        return WorkloadHealth(
            Health.UNHEALTHY, f"the predictor's storageUri is no longer {wanted_uri}"
        )
    if deployment_mode(isvc) == "Standard":
        return _standard_health(isvc, last)
    comp = predictor_status(isvc)
    traffic = comp.get("traffic") or []

    def share(revision: str) -> int:
        return sum(t.get("percent") or 0 for t in traffic if t.get("revisionName") == revision)

    wanted = last.get("revision")
    if wanted:
        if share(wanted) < 100:
            return WorkloadHealth(Health.PROGRESSING, f"{share(wanted)}% of traffic on {wanted}")
        return WorkloadHealth(Health.HEALTHY, f"Ready, 100% of traffic on {wanted}")
    latest, ready_rev = comp.get("latestCreatedRevision"), comp.get("latestReadyRevision")
    if "from_revision" in last and latest == last["from_revision"]:
        return WorkloadHealth(
            Health.PROGRESSING, f"no revision of {wanted_uri} yet (latest is still {latest})"
        )
    if latest and ready_rev and latest != ready_rev:
        return WorkloadHealth(Health.PROGRESSING, f"revision {latest} is not ready yet")
    if "from_revision" in last and ready_rev:
        if comp.get("latestRolledoutRevision") != ready_rev or share(ready_rev) < 100:
            return WorkloadHealth(
                Health.PROGRESSING, f"{share(ready_rev)}% of traffic on {ready_rev}"
            )
        return WorkloadHealth(Health.HEALTHY, f"Ready, 100% of traffic on {ready_rev}")
    return WorkloadHealth(Health.HEALTHY, "Ready")


def _standard_health(isvc: dict[str, Any], last: dict[str, Any]) -> WorkloadHealth:
    """RawDeployment: the status' observedGeneration is the Deployment's; PredictorReady has the
    reason NewReplicaSetAvailable once its rollout completed (PropagateRawStatus)."""
    status = isvc.get("status") or {}
    before = last.get("deployment_generation")
    observed = status.get("observedGeneration")
    dep = predictor_deployment(isvc)
    if before is not None and (observed is None or int(observed) <= int(before)):
        return WorkloadHealth(
            Health.PROGRESSING, f"Deployment {dep} has not yet rolled out the change"
        )
    conditions = status.get("conditions") or []
    predictor: dict[str, Any] = next(
        (c for c in conditions if c.get("type") == "PredictorReady"), {}
    )
    if last and predictor.get("reason") != "NewReplicaSetAvailable":
        why = predictor.get("reason") or "no reason"
        return WorkloadHealth(Health.PROGRESSING, f"Deployment {dep} is still rolling out ({why})")
    uri = last.get("storage_uri")
    return WorkloadHealth(
        Health.HEALTHY, f"Ready, Deployment {dep} rolled out {uri}" if uri else "Ready"
    )


def _model_key(predictor: dict[str, Any]) -> str:
    """Where the predictor's storageUri lives: `model`, or a framework key such as `sklearn`."""
    if "model" in predictor:
        return "model"
    for key, value in predictor.items():
        if isinstance(value, dict) and "storageUri" in value:
            return key
    return "model"


def _rs_revision(rs: dict[str, Any]) -> int:
    raw = ((rs.get("metadata") or {}).get("annotations") or {}).get(DEPLOYMENT_REVISION)
    try:
        return int(str(raw))
    except (TypeError, ValueError):
        return 0


def _generation(obj: dict[str, Any] | None) -> int | None:
    value = ((obj or {}).get("metadata") or {}).get("generation")
    return int(value) if value is not None else None


class KServeDriver:
    """`kind: kserve`: a KServe InferenceService (its predictor)."""

    kind = "kserve"

    def path(self, target: Target) -> str:
        return isvc_path(target)

    def read(self, api: KubeApi, target: Target, decision: Decision, log: Any) -> Read:
        isvc = api.get(isvc_path(target))
        related: dict[str, Any] = {"revision": None, "deployment": None, "replicasets": None}
        mode = deployment_mode(isvc)
        ns = target.workload.namespace
        if mode == "Standard":
            dep = predictor_deployment(isvc)
            try:  # the Deployment's generation is how health knows it rolled the change out
                related["deployment"] = api.get(f"{APPS}/namespaces/{ns}/deployments/{dep}")
            except ActionError as exc:
                if decision.to == "prior":
                    raise
                log.info("predictor Deployment not readable", deployment=dep, error=str(exc))
            if decision.to == "prior" and related["deployment"] is not None:
                deployment = related["deployment"]
                selector = ((deployment.get("spec") or {}).get("selector") or {}).get(
                    "matchLabels"
                ) or {}
                uid = deployment["metadata"].get("uid")
                replicasets = api.list(
                    f"{APPS}/namespaces/{ns}/replicasets",
                    ",".join(f"{k}={v}" for k, v in sorted(selector.items())) or None,
                )
                related["replicasets"] = [
                    rs
                    for rs in replicasets
                    if any(o.get("uid") == uid for o in rs["metadata"].get("ownerReferences") or [])
                ]
            return Read(isvc, related)
        previous = previous_revision(isvc)
        if decision.to == "prior" and previous:
            try:  # the policy's labels, annotations and storageUri, and the uri to restore
                related["revision"] = api.get(revision_path(target, previous))
            except ActionError as exc:
                log.info("Knative revision not readable", revision=previous, error=str(exc))
        return Read(isvc, related)

    def plan(self, read: Read, target: Target, decision: Decision, by: str, now: datetime) -> Plan:
        r = read.related
        return plan_kserve(
            read.main,
            r.get("revision"),
            target,
            decision,
            by,
            now,
            replicasets=r.get("replicasets"),
            deployment=r.get("deployment"),
        )

    def serving(self, api: KubeApi, target: Target) -> Revisions | None:
        """During a canary rollout (canaryTrafficPercent, a new revision not yet rolled out):
        the predictor's latestCreatedRevision (canary) and latestRolledoutRevision (stable),
        the Knative revision names a sample's revision column holds."""
        status = api.get(self.path(target)).get("status") or {}
        predictor = ((status.get("components") or {}).get("predictor")) or {}
        canary = predictor.get("latestCreatedRevision")
        stable = predictor.get("latestRolledoutRevision")
        if not canary or not stable or canary == stable:
            return None
        return Revisions(canary=str(canary), stable=str(stable))

    def health(self, obj: dict[str, Any]) -> WorkloadHealth:
        return kserve_health(obj)

    def offline_plan(self, target: Target, decision: Decision) -> Plan:
        isvc = isvc_path(target)
        if decision.to == "fallback":
            fallback = target.rollback.fallback
            assert fallback is not None
            body = fallback_body(fallback, "model", None)
            return Plan((PlannedRequest("PATCH", isvc, MERGE_PATCH, body, "serve the fallback"),))
        purpose = (
            "Knative mode, canary in progress: all traffic to status.components.predictor."
            "latestRolledoutRevision; fully rolled out (or Standard mode): the previous model's "
            "storageUri written back"
        )
        return Plan((PlannedRequest("PATCH", isvc, MERGE_PATCH, prior_body(None), purpose),))
