"""The Kubernetes actuator over real HTTP, with the real `kubernetes` client, against the fake API
server of tests/kube (resourceVersion and 409s, spec and status apart, label selectors, every
object written validated against the real Argo Rollouts and KServe CRD schemas).

Each scenario asserts what a user would see: which requests reached the API, what the object
looks like afterwards, the Event and the audit line, and the outcome the decision core gets.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from mlwatchdog.actions.audit import AuditLog
from mlwatchdog.actions.plan import LAST_ACTION
from mlwatchdog.core import (
    Health,
    Incident,
    Phase,
    TargetState,
    adopted,
    record_action,
)
from mlwatchdog.rules import Target
from tests.kube.acting import INCIDENT, NOW, actuator, decision
from tests.kube.apiserver import FakeKubeAPI
from tests.kube.kserve_controller import complete_raw_rollout
from tests.kube.objects import (
    argo_blue_green,
    argo_canary,
    argo_promoted,
    argo_workload_ref,
    install_argo_controller,
    install_kserve_controller,
    kserve_canary,
    kserve_raw,
    without_hash,
)
from tests.kube.targets import kube_target

ROLLOUT = "/apis/argoproj.io/v1alpha1/namespaces/models/rollouts/fraud-model"
ISVC = "/apis/serving.kserve.io/v1beta1/namespaces/models/inferenceservices/fraud-model"
DEPLOYMENT = "/apis/apps/v1/namespaces/models/deployments/fraud-model"
EVENTS = "/api/v1/namespaces/models/events"


def rollout(api: FakeKubeAPI) -> dict[str, Any]:
    obj = api.get("argoproj.io/v1alpha1", "rollouts", "models", "fraud-model")
    assert obj is not None
    return obj


def isvc(api: FakeKubeAPI) -> dict[str, Any]:
    obj = api.get("serving.kserve.io/v1beta1", "inferenceservices", "models", "fraud-model")
    assert obj is not None
    return obj


def events(api: FakeKubeAPI) -> list[dict[str, Any]]:
    return [r.body for r in api.requests if r.method == "POST" and r.path == EVENTS]


# ------------------------------------------------------------------------------ Argo Rollouts


def test_canary_at_step_2_of_4_is_aborted_and_undone_to_the_stable_revision(
    api: FakeKubeAPI, audit: AuditLog
) -> None:
    seed = argo_canary(step=2, steps=4)
    api.seed(seed.objects)
    install_argo_controller(api)
    target = kube_target()
    outcome = actuator(api, audit).rollback(target, decision(target))

    assert outcome.ok and not outcome.dry_run, outcome.detail
    # The controller's status update after the abort makes the undo's resourceVersion stale:
    # a genuine 409, re-read, re-planned (no second abort), sent again.
    assert [(p.path, p.status) for p in api.patches()] == [
        (f"{ROLLOUT}/status", 200),
        (ROLLOUT, 409),
        (ROLLOUT, 200),
    ]
    patches = [p for p in api.patches() if p.status == 200]
    assert patches[0].body["status"] == {"abort": True}
    assert patches[0].content_type == "application/merge-patch+json"
    undo = patches[1]
    assert undo.content_type == "application/json-patch+json"
    ops = {op["path"]: op for op in undo.body}
    assert ops["/metadata/resourceVersion"]["op"] == "replace"  # optimistic concurrency
    stable = next(
        rs for rs in seed.replicasets if rs["metadata"]["name"].endswith(seed.stable_hash)
    )
    assert ops["/spec/template"]["value"] == without_hash(stable["spec"]["template"])
    assert "rollouts-pod-template-hash" not in ops["/spec/template"]["value"]["metadata"]["labels"]
    api.assert_all_valid()

    after = rollout(api)  # the emulated controller reacted to the new template
    assert after["spec"]["template"]["spec"]["containers"][0]["image"].endswith("fraud:1.4.0")
    assert after["status"]["stableRS"] == seed.stable_hash
    assert actuator(api, audit).health(target).status is Health.HEALTHY
    note = json.loads(after["metadata"]["annotations"][LAST_ACTION])
    assert note["incident"] == "fraud-20261125T115500Z" and note["hash"] == seed.stable_hash
    assert note["by"] == "mlwatchdog-0"

    [event] = events(api)
    assert event["reason"] == "MlwatchdogRollback" and event["type"] == "Normal"
    assert event["involvedObject"]["kind"] == "Rollout"
    assert event["involvedObject"]["uid"] == after["metadata"]["uid"]
    [line] = list(audit.entries())
    assert line["result"] == "sent" and line["who"] == "mlwatchdog-0"
    assert line["reasons"] == ["drift fired: 3 of 4 columns drifted"]
    assert line["before"]["spec"]["template"]["spec"]["containers"][0]["image"].endswith("1.5.0")
    assert line["after"]["spec"]["template"]["spec"]["containers"][0]["image"].endswith("1.4.0")
    assert [r["path"] for r in line["requests"]] == [ROLLOUT]  # the attempt that completed it


def test_the_same_incident_never_acts_twice(api: FakeKubeAPI, audit: AuditLog) -> None:
    seed = argo_canary(step=2, steps=4)
    api.seed(seed.objects)
    install_argo_controller(api)
    target = kube_target()
    act = actuator(api, audit)
    assert act.rollback(target, decision(target)).ok
    writes = len(api.writes())

    # A restarted daemon resumes the rollback; after the undo, the bad canary is now the
    # second-highest revision, so a blind re-run would roll *forward*. The annotation stops it.
    again = act.rollback(target, decision(target))
    assert again.ok and "already reverted for this incident" in again.detail
    # Another replica's incident (a different id) within the cooldown: not sent either.
    other = act.rollback(target, decision(target, "fraud-20261125T115600Z"))
    assert other.ok and "less than cooldown ago" in other.detail
    assert len(api.writes()) == writes
    assert [line["result"] for line in list(audit.entries())] == ["sent", "skipped", "skipped"]


def test_a_replica_taking_over_reads_the_revert_to_verify_from_the_workload(
    api: FakeKubeAPI, audit: AuditLog
) -> None:
    api.seed(argo_canary(step=2, steps=4).objects)
    install_argo_controller(api)
    target = kube_target()
    heir = actuator(api, audit)
    assert heir.read_last_action(target) == {}  # not reverted: nothing to continue

    assert actuator(api, audit).rollback(target, decision(target)).ok  # the leader, then killed
    state = adopted(target, heir.read_last_action(target) or {}, NOW + timedelta(minutes=1))
    assert state is not None and state.incident is not None
    assert state.phase is Phase.VERIFYING and state.incident.id == INCIDENT
    assert state.verify_until == NOW + target.verify_window

    api.down()  # unreadable: the heir starts afresh, as without a note
    assert heir.read_last_action(target) is None
    api.up()


def test_blue_green_is_aborted_and_undone(api: FakeKubeAPI, audit: AuditLog) -> None:
    seed = argo_blue_green()
    api.seed(seed.objects)
    install_argo_controller(api)
    target = kube_target()
    outcome = actuator(api, audit).rollback(target, decision(target))
    assert outcome.ok, outcome.detail
    sent = [p.path for p in api.patches() if p.status == 200]
    assert sent == [f"{ROLLOUT}/status", ROLLOUT]
    after = rollout(api)
    assert after["status"]["stableRS"] == seed.stable_hash
    assert after["spec"]["template"]["spec"]["containers"][0]["image"].endswith("1.4.0")
    api.assert_all_valid()


def test_a_paused_rollout_is_unpaused_with_the_undo(api: FakeKubeAPI, audit: AuditLog) -> None:
    api.seed(argo_canary(step=1, steps=4, paused=True).objects)
    target = kube_target()
    assert rollout(api)["spec"]["paused"] is True
    outcome = actuator(api, audit).rollback(target, decision(target))
    assert outcome.ok, outcome.detail
    undo = api.patches()[-1]
    assert {"op": "replace", "path": "/spec/paused", "value": False} in undo.body
    assert rollout(api)["spec"]["paused"] is False
    api.assert_all_valid()


def test_an_already_aborted_rollout_gets_no_second_abort(api: FakeKubeAPI, audit: AuditLog) -> None:
    api.seed(argo_canary(step=2, steps=4, aborted=True).objects)
    target = kube_target()
    outcome = actuator(api, audit).rollback(target, decision(target))
    assert outcome.ok, outcome.detail
    assert [p.path for p in api.patches()] == [ROLLOUT]  # the undo only
    assert next(iter(audit.entries()))["notes"] == ["already aborted: no abort sent"]


def test_after_full_promotion_the_second_highest_revision_comes_back(
    api: FakeKubeAPI, audit: AuditLog
) -> None:
    # With spec.rollbackWindow: before, the fake controller fast-tracked any old template, so
    # this passed without one; Argo runs such an undo as a new update (rollout/sync.go
    # isRollbackWithinWindow), and the planner now refuses it (next test).
    seed = argo_promoted(history=["registry.example.com/fraud:1.3.0"], rollback_window=1)
    api.seed(seed.objects)
    install_argo_controller(api)
    target = kube_target()
    outcome = actuator(api, audit).rollback(target, decision(target))
    assert outcome.ok, outcome.detail
    assert [p.path for p in api.patches()] == [ROLLOUT]  # nothing in progress: nothing to abort
    after = rollout(api)
    image = after["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "registry.example.com/fraud:1.4.0"  # not 1.3.0, the oldest
    # Completed at once: stable again on revision 2's ReplicaSet, all steps skipped.
    assert after["status"]["stableRS"] == after["status"]["currentPodHash"] == seed.hashes[1]
    assert after["status"]["phase"] == "Healthy"
    assert actuator(api, audit).health(target).status is Health.HEALTHY
    [line] = list(audit.entries())
    assert any("spec.rollbackWindow" in note for note in line["notes"]), line["notes"]
    api.assert_all_valid()


def test_after_full_promotion_without_a_rollback_window_the_undo_is_refused_naming_it(
    api: FakeKubeAPI, audit: AuditLog
) -> None:
    seed = argo_promoted(history=["registry.example.com/fraud:1.3.0"])
    api.seed(seed.objects)
    install_argo_controller(api)
    target = kube_target()
    outcome = actuator(api, audit).rollback(target, decision(target))
    assert not outcome.ok
    assert "spec.rollbackWindow: {revisions: 1}" in outcome.detail
    assert "every canary step and analysis" in outcome.detail
    assert api.patches() == []  # nothing sent: the bad version is not half-reverted
    after = rollout(api)
    assert after["status"]["stableRS"] == seed.hashes[-1] and after["status"]["phase"] == "Healthy"
    assert [line["result"] for line in audit.entries()] == ["failed"]
    [event] = events(api)
    assert event["reason"] == "MlwatchdogRollbackFailed" and "rollbackWindow" in event["message"]


def test_a_named_revision(api: FakeKubeAPI, audit: AuditLog) -> None:
    # Revision 1 is two back (revision 2 was created in between): a window of 2 reaches it.
    api.seed(argo_promoted(history=["registry.example.com/fraud:1.3.0"], rollback_window=2).objects)
    missing = kube_target(to="revision", revision=9)
    failed = actuator(api, audit).rollback(missing, decision(missing))
    assert not failed.ok and "no ReplicaSet of revision 9 (it has 3, 2, 1;" in failed.detail
    assert api.patches() == []  # only the Warning Event saying so

    target = kube_target(to="revision", revision=1)
    outcome = actuator(api, audit).rollback(target, decision(target))
    assert outcome.ok, outcome.detail
    image = rollout(api)["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "registry.example.com/fraud:1.3.0"


def test_a_workload_ref_rollout_has_its_deployment_patched(
    api: FakeKubeAPI, audit: AuditLog
) -> None:
    seed = argo_workload_ref()
    api.seed(seed.objects)
    target = kube_target()
    outcome = actuator(api, audit).rollback(target, decision(target))
    assert outcome.ok, outcome.detail
    assert [p.path for p in api.patches()] == [f"{ROLLOUT}/status", DEPLOYMENT, ROLLOUT]
    deployment = api.get("apps/v1", "deployments", "models", "fraud-model")
    assert deployment is not None
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"].endswith("1.4.0")
    assert LAST_ACTION in deployment["metadata"]["annotations"]
    assert LAST_ACTION in rollout(api)["metadata"]["annotations"]
    assert "template" not in rollout(api)["spec"]
    api.assert_all_valid()


def test_fallback_sets_the_image_and_env_keeping_other_env(
    api: FakeKubeAPI, audit: AuditLog
) -> None:
    api.seed(argo_promoted().objects)
    target = kube_target(
        to="fallback",
        fallback={"image": "registry.example.com/fraud-rules:2.0", "env": {"MODE": "rules"}},
    )
    outcome = actuator(api, audit).rollback(target, decision(target))
    assert outcome.ok, outcome.detail
    container = rollout(api)["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "registry.example.com/fraud-rules:2.0"
    assert {"name": "MODE", "value": "rules"} in container["env"]
    api.assert_all_valid()


def test_a_409_on_the_first_write_is_re_read_and_sent_once(
    api: FakeKubeAPI, audit: AuditLog
) -> None:
    api.seed(argo_canary(step=2, steps=4).objects)
    api.conflict_once(r"/rollouts/fraud-model$")  # a controller writes between our read and patch
    target = kube_target()
    outcome = actuator(api, audit).rollback(target, decision(target))
    assert outcome.ok, outcome.detail
    undos = [p for p in api.patches() if p.path == ROLLOUT]
    assert [p.status for p in undos] == [409, 200]
    aborts = [p for p in api.patches() if p.path.endswith("/status")]
    assert [p.status for p in aborts] == [200]  # re-planned: the abort is not sent again
    assert rollout(api)["spec"]["template"]["spec"]["containers"][0]["image"].endswith("1.4.0")


def test_a_403_fails_at_once_naming_the_rbac_rule(api: FakeKubeAPI, audit: AuditLog) -> None:
    api.seed(argo_canary(step=2, steps=4).objects)
    api.fail("PATCH", r"/rollouts/fraud-model/status$", 403, times=None)
    target = kube_target()
    outcome = actuator(api, audit).rollback(target, decision(target))
    assert not outcome.ok
    assert 'resources: ["rollouts/status"], verbs: ["patch"] in namespace models' in outcome.detail
    assert len(api.patches()) == 1  # no retry storm
    state, follow_ups = record_action(target, rolling_back(target), outcome, NOW)
    assert state.phase is Phase.ESCALATED
    assert follow_ups[0].reasons[0].startswith("rollback failed: PATCH rollouts.argoproj.io")
    assert list(audit.entries())[-1]["result"] == "failed"
    assert events(api)[-1]["reason"] == "MlwatchdogRollbackFailed"


def test_a_missing_rollout_says_what_to_check(api: FakeKubeAPI, audit: AuditLog) -> None:
    target = kube_target()
    outcome = actuator(api, audit).rollback(target, decision(target))
    assert not outcome.ok
    assert "rollouts.argoproj.io models/fraud-model not found" in outcome.detail
    assert "check workload.name and workload.namespace" in outcome.detail


def test_the_api_down_is_tried_a_bounded_number_of_times_then_escalates(
    api: FakeKubeAPI, audit: AuditLog
) -> None:
    api.seed(argo_canary(step=2, steps=4).objects)
    api.down()
    target = kube_target()
    outcome = actuator(api, audit, attempts=3).rollback(target, decision(target))
    assert not outcome.ok
    assert "Kubernetes API unreachable" in outcome.detail
    assert "gave up after 3 attempts" in outcome.detail
    state, _ = record_action(target, rolling_back(target), outcome, NOW)
    assert state.phase is Phase.ESCALATED
    api.up()
    assert api.writes() == []  # nothing half-done
    assert rollout(api)["status"].get("abort") is not True


def test_a_missing_status_subresource_falls_back_to_the_main_resource(
    api: FakeKubeAPI, audit: AuditLog
) -> None:
    api.seed(argo_canary(step=2, steps=4).objects)
    api.fail("PATCH", r"/rollouts/fraud-model/status$", 404)
    target = kube_target()
    outcome = actuator(api, audit).rollback(target, decision(target))
    assert outcome.ok, outcome.detail
    paths = [(p.path, p.status) for p in api.patches()]
    assert paths[:2] == [(f"{ROLLOUT}/status", 404), (ROLLOUT, 200)]
    assert api.patches()[1].body["status"] == {"abort": True}


def test_dry_run_sends_the_exact_patches_with_dry_run_all_and_changes_nothing(
    api: FakeKubeAPI, audit: AuditLog
) -> None:
    seed = argo_canary(step=2, steps=4)
    api.seed(seed.objects)
    install_argo_controller(api)
    before, version = rollout(api), api.resource_version
    target = kube_target(dry_run=True)
    outcome = actuator(api, audit).rollback(target, decision(target))
    assert outcome.ok and outcome.dry_run, outcome.detail
    assert "accepted by the API server with dryRun=All" in outcome.detail
    writes = api.writes()
    assert [w.path for w in writes] == [f"{ROLLOUT}/status", ROLLOUT]
    assert all(w.query.get("dryRun") == "All" for w in writes)
    assert rollout(api) == before and api.resource_version == version  # nothing stored
    [line] = list(audit.entries())
    assert line["result"] == "dry_run"
    undo = line["requests"][1]["body"]
    template = next(op for op in undo if op["path"] == "/spec/template")["value"]
    stable = next(
        rs for rs in seed.replicasets if rs["metadata"]["name"].endswith(seed.stable_hash)
    )
    assert template == without_hash(stable["spec"]["template"])
    # The server's answer is what the Rollout would have become: the stable template, annotated.
    answer = line["requests"][1]["server_answer"]
    assert without_hash(answer["spec"]["template"]) == without_hash(stable["spec"]["template"])
    assert LAST_ACTION in answer["metadata"]["annotations"]


def test_server_dry_run_shows_an_rbac_refusal_before_an_incident_needs_the_rollback(
    api: FakeKubeAPI, audit: AuditLog
) -> None:
    api.seed(argo_canary(step=2, steps=4).objects)
    api.fail("PATCH", r"/rollouts/fraud-model$", 403, times=None)
    target = kube_target(dry_run=True)
    outcome = actuator(api, audit).rollback(target, decision(target))
    assert outcome.dry_run and not outcome.ok
    assert "dry-run refused by the API server" in outcome.detail
    assert 'resources: ["rollouts"], verbs: ["patch"]' in outcome.detail
    [line] = list(audit.entries())
    assert line["result"] == "dry_run_refused"


def test_without_server_dry_run_the_requests_are_only_logged(
    api: FakeKubeAPI, audit: AuditLog
) -> None:
    api.seed(argo_canary(step=2, steps=4).objects)
    target = kube_target(dry_run=True)
    outcome = actuator(api, audit, server_dry_run=False).rollback(target, decision(target))
    assert outcome.ok and outcome.dry_run
    assert api.writes() == []
    [line] = list(audit.entries())
    assert line["result"] == "dry_run" and len(line["requests"]) == 2


def test_policy_refuses_a_candidate_not_allowed(api: FakeKubeAPI, audit: AuditLog) -> None:
    api.seed(argo_canary(step=2, steps=4).objects)
    target = kube_target(policy={"allowed_images": ["registry.example.com/fraud:2.*"]})
    outcome = actuator(api, audit).rollback(target, decision(target))
    assert not outcome.ok and outcome.refused
    assert "image registry.example.com/fraud:1.4.0 matches none of" in outcome.detail
    assert api.patches() == []
    assert next(iter(audit.entries()))["result"] == "refused"
    assert events(api)[0]["reason"] == "MlwatchdogRollbackRefused"
    state, follow_ups = record_action(target, rolling_back(target), outcome, NOW)
    assert state.phase is Phase.ESCALATED
    assert follow_ups[0].reasons[0].startswith("rollback refused by policy:")


def test_policy_approval_label_on_the_replicaset(api: FakeKubeAPI, audit: AuditLog) -> None:
    seed = argo_canary(step=2, steps=4)
    api.seed(seed.objects)
    policy = {"approval": {"label": "models.example.com/approved"}}
    target = kube_target(policy=policy)
    refused = actuator(api, audit).rollback(target, decision(target))
    assert refused.refused and "models.example.com/approved=true is required" in refused.detail

    name = next(
        rs["metadata"]["name"]
        for rs in seed.replicasets
        if seed.stable_hash in rs["metadata"]["name"]
    )
    path = f"/apis/apps/v1/namespaces/models/replicasets/{name}"

    def approve(rs: dict[str, Any]) -> None:
        rs["metadata"]["labels"]["models.example.com/approved"] = "true"

    api.mutate(path, approve)
    allowed = actuator(api, audit).rollback(target, decision(target, "second"))
    assert allowed.ok, allowed.detail


# ------------------------------------------------------------------------------------ KServe


def test_kserve_canary_at_10_percent_goes_back_to_the_previous_revision(
    api: FakeKubeAPI, audit: AuditLog
) -> None:
    seed = kserve_canary(percent=10)
    api.seed(seed.objects)
    install_kserve_controller(api)
    target = kube_target("kserve", policy={"allowed_storage_uris": ["s3://models/fraud/*"]})
    act = actuator(api, audit)
    assert act.health(target).status is Health.HEALTHY  # before: Ready, no revert recorded
    outcome = act.rollback(target, decision(target))
    assert outcome.ok, outcome.detail
    [patch] = api.patches()
    assert patch.path == ISVC and patch.content_type == "application/merge-patch+json"
    assert patch.body["spec"] == {"predictor": {"canaryTrafficPercent": 0}}
    assert patch.body["metadata"]["resourceVersion"]
    after = isvc(api)
    traffic = after["status"]["components"]["predictor"]["traffic"]
    assert {t["revisionName"]: t["percent"] for t in traffic}["fraud-model-predictor-00001"] == 100
    health = act.health(target)
    assert health.status is Health.HEALTHY and "fraud-model-predictor-00001" in health.reason
    assert next(iter(audit.entries()))["candidate"]["storage_uri"] == "s3://models/fraud/v1"
    api.assert_all_valid()


def test_kserve_traffic_not_yet_moved_is_progressing(api: FakeKubeAPI, audit: AuditLog) -> None:
    api.seed(kserve_canary(percent=10).objects)  # no controller: status never changes
    target = kube_target("kserve")
    act = actuator(api, audit)
    assert act.rollback(target, decision(target)).ok
    health = act.health(target)
    assert health.status is Health.PROGRESSING
    assert health.reason == "90% of traffic on fraud-model-predictor-00001"


def test_kserve_raw_deployment_goes_back_to_the_previous_storage_uri(
    api: FakeKubeAPI, audit: AuditLog
) -> None:
    api.seed(kserve_raw(history=("s3://models/fraud/v1",)).objects)
    install_kserve_controller(api)
    target = kube_target("kserve", policy={"allowed_storage_uris": ["s3://models/fraud/*"]})
    act = actuator(api, audit)
    outcome = act.rollback(target, decision(target))
    assert outcome.ok, outcome.detail
    [patch] = api.patches()
    assert patch.path == ISVC
    assert patch.body["spec"]["predictor"]["model"] == {"storageUri": "s3://models/fraud/v1"}
    assert isvc(api)["spec"]["predictor"]["model"]["storageUri"] == "s3://models/fraud/v1"
    health = act.health(target)  # the Deployment is still rolling the old model out
    assert health.status is Health.PROGRESSING and "still rolling out" in health.reason
    complete_raw_rollout(api)
    health = act.health(target)
    assert health.status is Health.HEALTHY
    assert (
        health.reason == "Ready, Deployment fraud-model-predictor rolled out s3://models/fraud/v1"
    )
    assert next(iter(audit.entries()))["candidate"]["storage_uri"] == "s3://models/fraud/v1"


def test_kserve_raw_deployment_without_an_older_model_is_refused_clearly(
    api: FakeKubeAPI, audit: AuditLog
) -> None:
    api.seed(kserve_raw(history=()).objects)
    target = kube_target("kserve")
    outcome = actuator(api, audit).rollback(target, decision(target))
    assert not outcome.ok
    assert "no older ReplicaSet of its Deployment fraud-model-predictor" in outcome.detail
    assert "Set rollback.to: fallback with fallback.storage_uri" in outcome.detail
    assert api.patches() == []


def test_kserve_fallback_points_the_predictor_at_the_fallback_model(
    api: FakeKubeAPI, audit: AuditLog
) -> None:
    approved = {"models.example.com/approved": "true", "models.example.com/version": "v2"}
    api.seed(kserve_raw(labels=approved).objects)  # fallback works in RawDeployment mode too
    install_kserve_controller(api)
    target = kube_target(
        "kserve",
        to="fallback",
        fallback={
            "storage_uri": "s3://models/fraud/safe",
            "labels": {"models.example.com/version": "safe"},
        },
        policy={"approval": {"label": "models.example.com/approved"}},
    )
    act = actuator(api, audit)
    outcome = act.rollback(target, decision(target))
    assert outcome.ok, outcome.detail
    after = isvc(api)
    assert after["spec"]["predictor"]["model"]["storageUri"] == "s3://models/fraud/safe"
    # nothing still claims the replaced model is approved or is what is served
    assert after["metadata"]["labels"] == {"models.example.com/version": "safe"}
    deployment = api.get("apps/v1", "deployments", "models", "fraud-model-predictor")
    assert deployment is not None
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert labels["models.example.com/version"] == "safe"
    assert "models.example.com/approved" not in labels
    complete_raw_rollout(api)
    assert act.health(target).status is Health.HEALTHY


def test_kserve_refused_candidate(api: FakeKubeAPI, audit: AuditLog) -> None:
    api.seed(kserve_canary(percent=10).objects)
    target = kube_target("kserve", policy={"allowed_storage_uris": ["s3://approved/*"]})
    outcome = actuator(api, audit).rollback(target, decision(target))
    assert outcome.refused and "storageUri s3://models/fraud/v1 matches none" in outcome.detail
    assert api.patches() == []


# ----------------------------------------------------------------------------------- helpers


def rolling_back(target: Target) -> TargetState:
    incident = Incident("fraud-20261125T115500Z", NOW - timedelta(minutes=5), acted_at=NOW)
    return TargetState(target.name, Phase.ROLLING_BACK, NOW, incident=incident, last_action_at=NOW)
