"""KServe: the plan that reverts an InferenceService, and how healthy it is afterwards. Pure.

- To prior (serverless mode): merge patch `{"spec":{"predictor":{"canaryTrafficPercent":0}}}`:
  all traffic goes to `status.components.predictor.previousRolledoutRevision`, confirmed later
  from `status.components.predictor.traffic`. In RawDeployment (`Standard`) or ModelMesh mode
  there are no revisions to split traffic over: the plan refuses, saying so, instead of sending a
  patch that does nothing.
- To fallback: the predictor's storageUri (and runtime) from rules.yaml, with
  canaryTrafficPercent removed so the fallback gets all traffic once it is ready.
The LAST_ACTION annotation goes into the same merge patch.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from mlwatchdog.actions.kube_api import KubeApi
from mlwatchdog.actions.plan import (
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
)
from mlwatchdog.actions.workloads.base import Read
from mlwatchdog.core import Decision, Health, WorkloadHealth
from mlwatchdog.errors import ActionError
from mlwatchdog.rules.schema import Fallback, Target

MODE_ANNOTATION = "serving.kserve.io/deploymentMode"
SOURCE_URI = "serving.kserve.io/storage-initializer-sourceuri"  # on each Knative revision
NO_REVISIONS = {"RawDeployment", "Standard", "ModelMesh"}


def isvc_path(target: Target) -> str:
    w = target.workload
    return f"{KSERVE}/namespaces/{w.namespace}/inferenceservices/{w.name}"


def revision_path(target: Target, revision: str) -> str:
    return f"{KNATIVE}/namespaces/{target.workload.namespace}/revisions/{revision}"


def deployment_mode(isvc: dict[str, Any]) -> str:
    annotations = isvc["metadata"].get("annotations") or {}
    mode = annotations.get(MODE_ANNOTATION) or (isvc.get("status") or {}).get("deploymentMode")
    return str(mode or "Serverless")


def previous_revision(isvc: dict[str, Any]) -> str | None:
    predictor = ((isvc.get("status") or {}).get("components") or {}).get("predictor") or {}
    previous: str | None = predictor.get("previousRolledoutRevision")
    return previous


def prior_body(note: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"spec": {"predictor": {"canaryTrafficPercent": 0}}}
    if note:
        body["metadata"] = {"annotations": {LAST_ACTION: note}}
    return body


def fallback_body(fallback: Fallback, key: str, note: str | None) -> dict[str, Any]:
    model = {"storageUri": fallback.storage_uri, "runtime": fallback.runtime}
    predictor = {key: {k: v for k, v in model.items() if v is not None}}
    body: dict[str, Any] = {"spec": {"predictor": {**predictor, "canaryTrafficPercent": None}}}
    if note:
        body["metadata"] = {"annotations": {LAST_ACTION: note}}
    return body


def plan_kserve(
    isvc: dict[str, Any],
    revision: dict[str, Any] | None,
    target: Target,
    decision: Decision,
    by: str,
    now: Any,
) -> Plan:
    """The merge patch that reverts `isvc`; `revision` is the Knative Revision gone back to (to
    prior), read for the policy, or None."""
    done = already_done([isvc], target, decision, now)
    if done:
        return Plan((), None, done)
    name = f"{isvc['metadata'].get('namespace')}/{isvc['metadata']['name']}"
    predictor = (isvc.get("spec") or {}).get("predictor") or {}
    rv = isvc["metadata"].get("resourceVersion")
    if decision.to == "fallback":
        fallback = target.rollback.fallback
        assert fallback is not None
        key = _model_key(predictor)
        if fallback.runtime and key != "model":
            raise ActionError(
                f"InferenceService {name} declares its model under predictor.{key}, which has "
                "no `runtime`: drop rollback.fallback.runtime, or use predictor.model"
            )
        current = predictor.get(key) or {}
        uri = fallback.storage_uri or current.get("storageUri")
        candidate = Candidate("the fallback of rules.yaml", storage_uri=uri, from_config=True)
        if (
            current.get("storageUri") == uri
            and fallback.runtime in (None, current.get("runtime"))
            and predictor.get("canaryTrafficPercent") in (None, 100)
        ):
            return Plan((), candidate, f"already serving the fallback {uri}")
        note = last_action_note(target, decision, by, now, storage_uri=uri)
        body = fallback_body(fallback, key, note)
        request = PlannedRequest(
            "PATCH", isvc_path(target), MERGE_PATCH, body, "serve the fallback", rv
        )
        return Plan((request,), candidate)

    mode = deployment_mode(isvc)
    if mode in NO_REVISIONS:
        raise ActionError(
            f"InferenceService {name} runs in {mode} mode, where canaryTrafficPercent does "
            "nothing: there are no revisions to split traffic between. Use rollback.to: fallback "
            "(a storage_uri to serve), or redeploy the previous model by hand"
        )
    previous = previous_revision(isvc)
    if not previous:
        raise ActionError(
            f"InferenceService {name} has no previous rolled-out revision "
            "(status.components.predictor.previousRolledoutRevision is empty): nothing to go "
            "back to"
        )
    meta = (revision or {}).get("metadata") or {}
    candidate = Candidate(
        f"revision {previous}",
        storage_uri=(meta.get("annotations") or {}).get(SOURCE_URI),
        labels=meta.get("labels") or {},
        annotations=meta.get("annotations") or {},
    )
    if predictor.get("canaryTrafficPercent") == 0:
        return Plan((), candidate, f"canaryTrafficPercent is already 0: all traffic on {previous}")
    note = last_action_note(target, decision, by, now, revision=previous)
    purpose = f"all traffic to the previous rolled-out revision {previous}"
    request = PlannedRequest("PATCH", isvc_path(target), MERGE_PATCH, prior_body(note), purpose, rv)
    return Plan((request,), candidate)


def kserve_health(isvc: dict[str, Any]) -> WorkloadHealth:
    """Ready, with the traffic where the revert put it (from the LAST_ACTION annotation)."""
    meta, status = isvc["metadata"], isvc.get("status") or {}
    observed, generation = status.get("observedGeneration"), meta.get("generation")
    if observed is not None and generation is not None and observed < generation:
        return WorkloadHealth(
            Health.PROGRESSING, f"the controller has not yet observed generation {generation}"
        )
    conditions = status.get("conditions") or []
    ready: dict[str, Any] = next((c for c in conditions if c.get("type") == "Ready"), {})
    if ready.get("status") != "True":
        why = ready.get("message") or ready.get("reason") or "no Ready condition yet"
        kind = Health.UNHEALTHY if ready.get("status") == "False" else Health.PROGRESSING
        return WorkloadHealth(kind, f"not Ready: {why}")
    predictor = (status.get("components") or {}).get("predictor") or {}
    traffic = predictor.get("traffic") or []
    wanted = last_action(isvc).get("revision")
    if wanted and traffic:
        share = sum(t.get("percent") or 0 for t in traffic if t.get("revisionName") == wanted)
        if share < 100:
            return WorkloadHealth(Health.PROGRESSING, f"{share}% of traffic on {wanted}")
        return WorkloadHealth(Health.HEALTHY, f"Ready, 100% of traffic on {wanted}")
    latest, ready_rev = predictor.get("latestCreatedRevision"), predictor.get("latestReadyRevision")
    if latest and ready_rev and latest != ready_rev:
        return WorkloadHealth(Health.PROGRESSING, f"revision {latest} is not ready yet")
    return WorkloadHealth(Health.HEALTHY, "Ready")


def _model_key(predictor: dict[str, Any]) -> str:
    """Where the predictor's storageUri lives: `model`, or a framework key such as `sklearn`."""
    if "model" in predictor:
        return "model"
    for key, value in predictor.items():
        if isinstance(value, dict) and "storageUri" in value:
            return key
    return "model"


class KServeDriver:
    """`kind: kserve`: a KServe InferenceService (its predictor)."""

    kind = "kserve"

    def path(self, target: Target) -> str:
        return isvc_path(target)

    def read(self, api: KubeApi, target: Target, decision: Decision, log: Any) -> Read:
        isvc = api.get(isvc_path(target))
        previous = previous_revision(isvc)
        revision = None
        if decision.to == "prior" and previous:
            try:  # only the policy needs it: its labels, annotations and storageUri
                revision = api.get(revision_path(target, previous))
            except ActionError as exc:
                log.info("Knative revision not readable", revision=previous, error=str(exc))
        return Read(isvc, {"revision": revision})

    def plan(self, read: Read, target: Target, decision: Decision, by: str, now: datetime) -> Plan:
        return plan_kserve(read.main, read.related["revision"], target, decision, by, now)

    def health(self, obj: dict[str, Any]) -> WorkloadHealth:
        return kserve_health(obj)

    def offline_plan(self, target: Target, decision: Decision) -> Plan:
        isvc = isvc_path(target)
        if decision.to == "fallback":
            fallback = target.rollback.fallback
            assert fallback is not None
            body = fallback_body(fallback, "model", None)
            return Plan((PlannedRequest("PATCH", isvc, MERGE_PATCH, body, "serve the fallback"),))
        purpose = "all traffic to status.components.predictor.previousRolledoutRevision"
        return Plan((PlannedRequest("PATCH", isvc, MERGE_PATCH, prior_body(None), purpose),))
