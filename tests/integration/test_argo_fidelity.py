"""The emulated Argo Rollouts controller (tests/kube/argo_controller.py) follows the upstream
rules a revert depends on. Each test names the argo-rollouts file and function (snapshot
9f8d111d8f8e) it follows; the writes go over real HTTP with the real `kubernetes` client.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubernetes.client import CustomObjectsApi

from tests.kube.apiserver import FakeKubeAPI
from tests.kube.argo_controller import (
    SCALE_DOWN_DEADLINE,
    complete_step,
    copy_template,
    install_argo_controller,
)
from tests.kube.objects import argo_blue_green, argo_canary, argo_promoted, pod_template
from tests.kube.resources import REPLICA_SETS, object_path

NS, NAME = "models", "fraud-model"


@pytest.fixture
def api() -> Iterator[FakeKubeAPI]:
    with FakeKubeAPI() as fake:
        install_argo_controller(fake)
        yield fake
    fake.assert_all_valid()
    assert not fake.reactor_errors, fake.reactor_errors


def rollout(api: FakeKubeAPI) -> dict[str, Any]:
    obj = api.get("argoproj.io/v1alpha1", "rollouts", NS, NAME)
    assert obj is not None
    return obj


def replicas(api: FakeKubeAPI, pod_hash: str) -> int:
    rs = api.get("apps/v1", "replicasets", NS, f"{NAME}-{pod_hash}")
    assert rs is not None
    return int(rs["spec"]["replicas"])


def undo_to(api: FakeKubeAPI, rs: dict[str, Any]) -> None:
    """What `kubectl argo rollouts undo` sends (pkg/kubectl-argo-rollouts/cmd/undo
    RunUndoRollout): a JSON patch of /spec/template with the ReplicaSet's, without its hash."""
    body = [{"op": "replace", "path": "/spec/template", "value": copy_template(rs)}]
    client = CustomObjectsApi(api.api_client())
    client.api_client.set_default_header("Content-Type", "application/json-patch+json")
    client.patch_namespaced_custom_object("argoproj.io", "v1alpha1", NS, "rollouts", NAME, body)


def patch_status(api: FakeKubeAPI, status: dict[str, Any]) -> None:
    CustomObjectsApi(api.api_client()).patch_namespaced_custom_object_status(
        "argoproj.io", "v1alpha1", NS, "rollouts", NAME, {"status": status}
    )


def set_window(api: FakeKubeAPI, revisions: int) -> None:
    CustomObjectsApi(api.api_client()).patch_namespaced_custom_object(
        "argoproj.io",
        "v1alpha1",
        NS,
        "rollouts",
        NAME,
        {"spec": {"rollbackWindow": {"revisions": revisions}}},
    )


def test_an_old_template_outside_the_rollback_window_is_a_new_update_from_step_0(
    api: FakeKubeAPI,
) -> None:
    """follows rollout/sync.go: isRollbackWithinWindow (no spec.rollbackWindow: never within)
    and resetRolloutStatus; rollout/canary.go: syncRolloutStatusCanary."""
    seed = argo_promoted(history=["registry.example.com/fraud:1.3.0"])
    api.seed(seed.objects)
    undo_to(api, seed.replicasets[1])  # revision 2, 1.4.0: created before the stable one
    status = rollout(api)["status"]
    assert status["currentPodHash"] == seed.hashes[1]
    assert status["stableRS"] == seed.hashes[2]  # the bad version stays stable
    assert status["phase"] == "Progressing" and status["currentStepIndex"] == 0
    assert replicas(api, seed.hashes[1]) == 1  # setWeight 20 of 5 replicas
    assert replicas(api, seed.hashes[2]) == 4
    # The steps run again: the next one is the indefinite pause.
    after = complete_step(api, NS, NAME)["status"]
    assert after["phase"] == "Paused" and after["pauseConditions"][0]["reason"] == "CanaryPauseStep"


def test_an_old_template_within_the_rollback_window_is_fast_tracked(api: FakeKubeAPI) -> None:
    """follows rollout/sync.go: isRollbackWithinWindow and shouldFullPromote ("Rollback within
    window"); rollout/canary.go: syncRolloutStatusCanary (SkipSteps)."""
    seed = argo_promoted(history=["registry.example.com/fraud:1.3.0"], rollback_window=1)
    api.seed(seed.objects)
    undo_to(api, seed.replicasets[1])
    status = rollout(api)["status"]
    assert status["currentPodHash"] == status["stableRS"] == seed.hashes[1]
    assert status["phase"] == "Healthy" and status["currentStepIndex"] == 4
    assert status["message"] == "Rollback within window"
    assert replicas(api, seed.hashes[1]) == 5 and replicas(api, seed.hashes[2]) == 0
    rs = api.get("apps/v1", "replicasets", NS, f"{NAME}-{seed.hashes[1]}")
    assert rs is not None and rs["metadata"]["annotations"]["rollout.argoproj.io/revision"] == "4"


def test_the_window_counts_the_replicasets_created_in_between(api: FakeKubeAPI) -> None:
    """follows rollout/sync.go: isRollbackWithinWindow (windowSize < revisions, counting the
    ReplicaSets created after the target and before the stable one)."""
    seed = argo_promoted(history=["registry.example.com/fraud:1.3.0"], rollback_window=1)
    api.seed(seed.objects)
    undo_to(api, seed.replicasets[0])  # revision 1: one ReplicaSet (revision 2) in between
    assert rollout(api)["status"]["phase"] == "Progressing"
    assert rollout(api)["status"]["stableRS"] == seed.hashes[2]


def test_back_to_the_stable_replicaset_during_an_update_skips_the_steps(api: FakeKubeAPI) -> None:
    """follows rollout/sync.go: isFastRollback (rollbackToStable) and rollout/canary.go:
    syncRolloutStatusCanary ("Rollback to stable ReplicaSets"), with no rollbackWindow."""
    seed = argo_canary(step=1, steps=4)
    api.seed(seed.objects)
    undo_to(api, seed.replicasets[0])
    status = rollout(api)["status"]
    assert status["currentPodHash"] == status["stableRS"] == seed.stable_hash
    assert status["phase"] == "Healthy" and "pauseConditions" not in status


def test_promote_full_skips_the_remaining_steps_and_analysis(api: FakeKubeAPI) -> None:
    """follows rollout/sync.go: shouldFullPromote ("Full promotion requested") and
    rollout/analysis.go: reconcileAnalysisRuns (promoteFull cancels the analysis);
    the patch is pkg/kubectl-argo-rollouts/cmd/promote getPatches (--full)."""
    seed = argo_promoted(history=["registry.example.com/fraud:1.3.0"])
    api.seed(seed.objects)
    undo_to(api, seed.replicasets[1])
    patch_status(api, {"promoteFull": True})
    status = rollout(api)["status"]
    assert status["currentPodHash"] == status["stableRS"] == seed.hashes[1]
    assert status["phase"] == "Healthy" and status["promoteFull"] is False
    assert status["message"] == "Full promotion requested"


def test_promote_full_sent_before_the_template_change_is_cleared(api: FakeKubeAPI) -> None:
    """follows rollout/sync.go: calculateBaseStatus (promoteFull kept only while currentPodHash
    != stableRS) and resetRolloutStatus (cleared when a new template is picked up): why a plan
    cannot send undo and promoteFull together."""
    seed = argo_promoted(history=["registry.example.com/fraud:1.3.0"])
    api.seed(seed.objects)
    patch_status(api, {"promoteFull": True})  # nothing in progress: cleared
    assert rollout(api)["status"]["promoteFull"] is False
    undo_to(api, seed.replicasets[1])
    status = rollout(api)["status"]
    assert status["phase"] == "Progressing" and status["stableRS"] == seed.hashes[2]


def test_an_analysis_step_of_the_new_update_runs_an_analysis(api: FakeKubeAPI) -> None:
    """follows rollout/analysis.go: reconcileAnalysisRuns (not skipped: not fully promoted, not
    aborted, no promoteFull, not a fast rollback) and reconcileStepBasedAnalysisRun."""
    seed = argo_promoted(history=["registry.example.com/fraud:1.3.0"])
    seed.rollout["spec"]["strategy"]["canary"]["steps"] = [
        {"setWeight": 10},
        {"analysis": {"templates": [{"templateName": "mlwatchdog-model-health"}]}},
    ]
    api.seed(seed.objects)
    undo_to(api, seed.replicasets[1])
    status = complete_step(api, NS, NAME)["status"]
    assert status["currentStepIndex"] == 1 and status["phase"] == "Progressing"
    assert status["canary"]["currentStepAnalysisRunStatus"]["status"] == "Running"
    set_window(api, 1)  # a later rollbackWindow changes nothing for the update in progress
    assert rollout(api)["status"]["stableRS"] == seed.hashes[2]


def test_abort_sends_traffic_to_stable_and_degrades(api: FakeKubeAPI) -> None:
    """follows utils/replicaset/canary.go: GetCurrentSetWeight (0 while aborted) and
    utils/rollout/rolloututil.go: CalculateRolloutPhase (RolloutAborted is Degraded)."""
    seed = argo_canary(step=2, steps=4)
    api.seed(seed.objects)
    assert replicas(api, seed.current_hash) == 3
    patch_status(api, {"abort": True})
    status = rollout(api)["status"]
    assert status["phase"] == "Degraded" and status["message"].startswith("RolloutAborted")
    assert replicas(api, seed.current_hash) == 0 and replicas(api, seed.stable_hash) == 5
    assert status["stableRS"] == seed.stable_hash


def test_promote_full_after_an_abort_promotes_the_canary(api: FakeKubeAPI) -> None:
    """follows rollout/canary.go: syncRolloutStatusCanary (promoteFull removes the abort before
    rollout/sync.go: shouldFullPromote)."""
    seed = argo_canary(step=2, steps=4, aborted=True)
    api.seed(seed.objects)
    patch_status(api, {"promoteFull": True})
    status = rollout(api)["status"]
    assert status["stableRS"] == seed.current_hash and status["phase"] == "Healthy"
    assert status["abort"] is False


def test_blue_green_within_scale_down_delay_is_fast_tracked(api: FakeKubeAPI) -> None:
    """follows rollout/sync.go: isFastRollback (isWithinScaleDownDelay, blue-green only) and
    rollout/controller.go newRSWithinDelay; the deadline from rollout/bluegreen.go
    scaleDownOldReplicaSetsForBlueGreen (utils/defaults GetScaleDownDelaySecondsOrDefault)."""
    seed = argo_blue_green()
    api.seed(seed.objects)
    patch_status(api, {"promoteFull": True})  # 1.5.0 promoted; 1.4.0 kept up for 30 s
    old = api.get("apps/v1", "replicasets", NS, f"{NAME}-{seed.stable_hash}")
    assert old is not None and SCALE_DOWN_DEADLINE in old["metadata"]["annotations"]
    assert replicas(api, seed.stable_hash) == 3
    undo_to(api, old)
    status = rollout(api)["status"]
    assert status["stableRS"] == seed.stable_hash and status["phase"] == "Healthy"
    assert status["blueGreen"]["activeSelector"] == seed.stable_hash


def test_blue_green_after_scale_down_delay_is_a_new_update(api: FakeKubeAPI) -> None:
    """follows rollout/sync.go: isFastRollback (the deadline has passed: utils/replicaset
    GetTimeRemainingBeforeScaleDownDeadline is nil) and rollout/bluegreen.go
    reconcileBlueGreenPause (autoPromotionEnabled false: paused before promotion)."""
    seed = argo_blue_green()
    api.seed(seed.objects)
    patch_status(api, {"promoteFull": True})
    past = (datetime.now(UTC) - timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    path = object_path(REPLICA_SETS, NS, f"{NAME}-{seed.stable_hash}")
    api.mutate(path, lambda rs: rs["metadata"]["annotations"].update({SCALE_DOWN_DEADLINE: past}))
    old = api.get("apps/v1", "replicasets", NS, f"{NAME}-{seed.stable_hash}")
    assert old is not None
    undo_to(api, old)
    status = rollout(api)["status"]
    assert status["stableRS"] == seed.current_hash and status["phase"] == "Paused"
    assert status["blueGreen"]["activeSelector"] == seed.current_hash


def test_a_new_template_is_a_new_revision_created_after_the_others(api: FakeKubeAPI) -> None:
    """follows rollout/sync.go: getAllReplicaSetsAndSyncRevision (a new ReplicaSet, the next
    revision) and isRollback (it is newer than stable: never a rollback)."""
    seed = argo_promoted(rollback_window=5)
    api.seed(seed.objects)
    client = CustomObjectsApi(api.api_client())
    template = pod_template(NAME, "registry.example.com/fraud:1.6.0")
    client.patch_namespaced_custom_object(
        "argoproj.io", "v1alpha1", NS, "rollouts", NAME, {"spec": {"template": template}}
    )
    status = rollout(api)["status"]
    assert status["phase"] == "Progressing" and status["stableRS"] == seed.hashes[-1]
