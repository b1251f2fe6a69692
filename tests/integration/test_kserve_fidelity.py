"""The fake KServe controller follows kserve/kserve's rules, and mlwatchdog's KServe reverts
complete under them. Each test names the upstream file and function it relies on (kserve/kserve
at aaac4e294, the commit of the vendored CRD)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import structlog
from kubernetes.client import CustomObjectsApi

from mlwatchdog.actions.actuator import KubeActuator
from mlwatchdog.actions.audit import AuditLog
from mlwatchdog.actions.kube_api import KubeApi
from mlwatchdog.core import Decision, DecisionKind, Health
from mlwatchdog.rules import Target
from tests.kube.apiserver import FakeKubeAPI
from tests.kube.kserve_controller import (
    install_kserve_controller,
    kserve_canary,
    kserve_promoted,
    kserve_raw,
)
from tests.kube.targets import kube_target

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
REV = "fraud-model-predictor-{:05d}"
APPROVED = "models.example.com/approved"


@pytest.fixture
def api() -> Iterator[FakeKubeAPI]:
    with FakeKubeAPI() as fake:
        install_kserve_controller(fake)
        yield fake
    fake.assert_all_valid()
    assert not fake.reactor_errors, fake.reactor_errors


def act(api: FakeKubeAPI, tmp_path: Path) -> KubeActuator:
    kube = KubeApi(api.api_client(), timeout=5, attempts=2, sleep=lambda s: None)
    audit = AuditLog(tmp_path / "audit.jsonl")
    return KubeActuator(kube, audit, structlog.get_logger(), "mlwatchdog-0", clock=lambda: NOW)


def decide(target: Target) -> Decision:
    return Decision(
        DecisionKind.ROLLBACK,
        target.name,
        "fraud-1",
        NOW,
        ("drift",),
        to=target.rollback.to,
        dry_run=target.rollback.dry_run,
    )


def isvc(api: FakeKubeAPI) -> dict[str, Any]:
    obj = api.get("serving.kserve.io/v1beta1", "inferenceservices", "models", "fraud-model")
    assert obj is not None
    return obj


def traffic(api: FakeKubeAPI) -> dict[str, int]:
    shares: dict[str, int] = {}
    for t in isvc(api)["status"]["components"]["predictor"]["traffic"]:
        shares[t["revisionName"]] = shares.get(t["revisionName"], 0) + t["percent"]
    return shares


def patch_isvc(api: FakeKubeAPI, body: dict[str, Any]) -> None:
    CustomObjectsApi(api.api_client()).patch_namespaced_custom_object(
        "serving.kserve.io", "v1beta1", "models", "inferenceservices", "fraud-model", body
    )


def test_canary_traffic_goes_to_latest_rolled_out_not_previous_rolled_out(
    api: FakeKubeAPI, tmp_path: Path
) -> None:
    """ksvc_reconciler.go createKnativeService: the `100 - canaryTrafficPercent` share goes to
    latestRolledoutRevision; previousRolledoutRevision is the one before it."""
    api.seed(kserve_canary(percent=10, history=("s3://models/fraud/v0",)).objects)
    comp = isvc(api)["status"]["components"]["predictor"]
    assert comp["previousRolledoutRevision"] == REV.format(1)  # v0, not what the canary shares
    target = kube_target("kserve")
    actuator = act(api, tmp_path)
    outcome = actuator.rollback(target, decide(target))
    assert outcome.ok, outcome.detail
    assert traffic(api)[REV.format(2)] == 100  # v1, the revision the canary ran against
    health = actuator.health(target)
    assert health.status is Health.HEALTHY and REV.format(2) in health.reason


def test_canary_with_no_previous_rolled_out_revision_still_reverts(
    api: FakeKubeAPI, tmp_path: Path
) -> None:
    """ksvc_reconciler.go createKnativeService needs only latestRolledoutRevision; a first
    canary has no previousRolledoutRevision at all (inference_service_status.go
    PropagateStatus sets it only when a second revision rolls out)."""
    api.seed(kserve_canary(percent=10).objects)
    assert "previousRolledoutRevision" not in isvc(api)["status"]["components"]["predictor"]
    target = kube_target("kserve")
    actuator = act(api, tmp_path)
    assert actuator.rollback(target, decide(target)).ok
    # the last-action annotation made Knative create revision 3 (the canary's model) at 0%
    assert traffic(api) == {REV.format(3): 0, REV.format(1): 100}
    assert actuator.health(target).status is Health.HEALTHY


def test_zero_percent_after_full_rollout_rolls_back_when_no_revision_appears(
    api: FakeKubeAPI,
) -> None:
    """inference_service_status.go PropagateStatus: traffic split over the rolled-out revision
    itself (latest 0%, prev 100%, both the same) moves latestRolledoutRevision back to
    previousRolledoutRevision; the next createKnativeService sends 100% there."""
    api.seed(kserve_promoted().objects)
    patch_isvc(api, {"spec": {"predictor": {"canaryTrafficPercent": 0}}})
    comp = isvc(api)["status"]["components"]["predictor"]
    assert comp["latestRolledoutRevision"] == REV.format(1)
    assert traffic(api) == {REV.format(2): 0, REV.format(1): 100}


def test_zero_percent_with_an_annotation_change_stays_on_the_bad_revision(
    api: FakeKubeAPI,
) -> None:
    """predictor.go buildPredictorResources copies the InferenceService's annotations onto the
    Knative revision template, so Knative creates a new revision; PropagateStatus then never
    takes the rollback branch (it needs the latest ready revision to be latestRolledout):
    `canaryTrafficPercent: 0` plus an annotation leaves all traffic on the bad revision. This is
    why mlwatchdog restores the previous storageUri after a full rollout."""
    api.seed(kserve_promoted().objects)
    patch_isvc(
        api,
        {
            "metadata": {"annotations": {"example.com/note": "x"}},
            "spec": {"predictor": {"canaryTrafficPercent": 0}},
        },
    )
    assert traffic(api) == {REV.format(3): 0, REV.format(2): 100}


def test_after_full_rollout_the_previous_storage_uri_is_served_again(
    api: FakeKubeAPI, tmp_path: Path
) -> None:
    """The revert mlwatchdog sends after a full rollout: the storageUri of
    previousRolledoutRevision (its internal.serving.kserve.io/storage-initializer-sourceuri,
    predictor.go addStorageInitializerAnnotations) becomes a new revision that
    createKnativeService sends 100% to; the approval label is taken from that revision
    (buildObjectMeta put the InferenceService's labels of that time on it)."""
    api.seed(kserve_promoted(prev_labels={APPROVED: "true"}, labels={APPROVED: "pending"}).objects)
    target = kube_target("kserve", policy={"approval": {"label": APPROVED}})
    actuator = act(api, tmp_path)
    outcome = actuator.rollback(target, decide(target))
    assert outcome.ok, outcome.detail
    after = isvc(api)
    assert after["spec"]["predictor"]["model"]["storageUri"] == "s3://models/fraud/v1"
    assert after["metadata"]["labels"][APPROVED] == "true"
    comp = after["status"]["components"]["predictor"]
    assert comp["latestRolledoutRevision"] == REV.format(3)
    assert traffic(api) == {REV.format(3): 100}
    health = actuator.health(target)
    assert health.status is Health.HEALTHY and REV.format(3) in health.reason


def test_status_observed_generation_is_not_the_inference_services(
    api: FakeKubeAPI, tmp_path: Path
) -> None:
    """inference_service_status.go PropagateRawStatus: status.observedGeneration is the
    Deployment's status.observedGeneration; health waits for it to pass the Deployment's
    generation recorded at the revert, and for Progressing NewReplicaSetAvailable."""
    from tests.kube.kserve_controller import complete_raw_rollout

    api.seed(kserve_raw(history=("s3://models/fraud/v1",), mode="Standard").objects)
    target = kube_target("kserve")
    actuator = act(api, tmp_path)
    assert actuator.rollback(target, decide(target)).ok
    after = isvc(api)
    assert after["status"]["observedGeneration"] == 2  # the Deployment's, its template changed
    assert actuator.health(target).status is Health.PROGRESSING
    complete_raw_rollout(api)
    assert actuator.health(target).status is Health.HEALTHY


def test_deployment_mode_in_status_wins_over_the_annotation(
    api: FakeKubeAPI, tmp_path: Path
) -> None:
    """utils.go GetDeploymentMode: status.deploymentMode first, the annotation second."""
    seed = kserve_raw(history=("s3://models/fraud/v1",))
    seed.isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] = "Serverless"
    api.seed(seed.objects)
    target = kube_target("kserve")
    outcome = act(api, tmp_path).rollback(target, decide(target))
    assert outcome.ok, outcome.detail
    assert isvc(api)["spec"]["predictor"]["model"]["storageUri"] == "s3://models/fraud/v1"
