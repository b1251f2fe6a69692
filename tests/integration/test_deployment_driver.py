"""`workload.kind: deployment` through the real KubeActuator, over real HTTP with the real
`kubernetes` client, against FakeKubeAPI with the emulated deployment controller
(tests/kube/deployment_controller.py).

Each scenario names the upstream function whose behaviour it holds us to:
kubectl pkg/polymorphichelpers/rollback.go (DeploymentRollbacker.Rollback, deploymentRevision,
equalIgnoreHash, getDeploymentPatch, annotationsToSkip), rollout_status.go
(DeploymentStatusViewer.Status), and kubernetes pkg/controller/deployment (sync.go
getNewReplicaSet, util/deployment_util.go SetNewReplicaSetAnnotations, ListReplicaSets,
progress.go syncRolloutStatus).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from mlwatchdog.actions.audit import AuditLog
from mlwatchdog.actions.plan import LAST_ACTION
from mlwatchdog.actions.workloads import driver_for
from mlwatchdog.core import Health
from mlwatchdog.errors import ConfigError
from mlwatchdog.rules import parse_config
from tests.kube.acting import actuator, decision
from tests.kube.apiserver import FakeKubeAPI
from tests.kube.deployment_controller import (
    CHANGE_CAUSE,
    HASH_LABEL,
    REVISION,
    REVISION_HISTORY,
    deployment_with_history,
    install_deployment_controller,
    replicaset,
    without_hash,
)
from tests.kube.objects import uid
from tests.kube.targets import kube_target

DEPLOYMENT = "/apis/apps/v1/namespaces/models/deployments/fraud-model"
IMAGES = ["registry.example.com/fraud:1.3.0", "registry.example.com/fraud:1.4.0",
          "registry.example.com/fraud:1.5.0"]  # fmt: skip
CAUSES = ["initial", "model 1.4.0 (retrained on October)", "model 1.5.0"]


def deployment(api: FakeKubeAPI) -> dict[str, Any]:
    obj = api.get("apps/v1", "deployments", "models", "fraud-model")
    assert obj is not None
    return obj


def image(obj: dict[str, Any]) -> str:
    return str(obj["spec"]["template"]["spec"]["containers"][0]["image"])


def sent(api: FakeKubeAPI) -> list[str]:
    return [p.path for p in api.patches() if p.status == 200]


# --------------------------------------------------------------------------------- to: prior


def test_prior_goes_back_to_the_second_highest_revision_as_kubectl_rollout_undo(
    api: FakeKubeAPI, audit: AuditLog
) -> None:
    """kubectl rollback.go deploymentRevision (toRevision 0: second-highest revision) and
    getDeploymentPatch (JSON patch of /spec/template and /metadata/annotations); the controller
    (sync.go getNewReplicaSet, SetNewReplicaSetAnnotations) re-uses revision 2's ReplicaSet and
    gives it revision 4."""
    seed = deployment_with_history(IMAGES, CAUSES)
    api.seed(seed.objects)
    install_deployment_controller(api)
    target = kube_target("deployment")
    outcome = actuator(api, audit).rollback(target, decision(target))
    assert outcome.ok and not outcome.dry_run, outcome.detail

    [patch] = api.patches()
    assert patch.path == DEPLOYMENT and patch.content_type == "application/json-patch+json"
    ops = {op["path"]: op for op in patch.body}
    assert ops["/metadata/resourceVersion"]["op"] == "replace"  # optimistic concurrency
    rev2 = seed.replicasets[1]
    assert ops["/spec/template"]["value"] == without_hash(rev2["spec"]["template"])
    assert HASH_LABEL not in ops["/spec/template"]["value"]["metadata"]["labels"]
    annotations = ops["/metadata/annotations"]["value"]
    assert annotations[CHANGE_CAUSE] == CAUSES[1]  # the revision's, as kubectl copies it
    assert annotations[REVISION] == "3"  # annotationsToSkip: the Deployment's own is kept

    after = deployment(api)
    assert image(after) == IMAGES[1]
    # No new ReplicaSet: the old one is re-used with the next revision, its old one in history.
    assert len(api.list_objects("apps/v1", "replicasets", "models")) == 3
    reused = replicaset(api, rev2["metadata"]["name"])
    assert reused["metadata"]["annotations"][REVISION] == "4"
    assert reused["metadata"]["annotations"][REVISION_HISTORY] == "2"
    assert reused["spec"]["replicas"] == 3
    assert after["metadata"]["annotations"][REVISION] == "4"
    note = json.loads(after["metadata"]["annotations"][LAST_ACTION])
    assert note["incident"] == "fraud-20261125T115500Z" and note["revision"] == 2
    assert note["replicaset"] == rev2["metadata"]["name"]
    assert actuator(api, audit).health(target).status is Health.HEALTHY

    [line] = list(audit.entries())
    assert line["result"] == "sent" and image(line["before"]) == IMAGES[2]
    assert image(line["after"]) == IMAGES[1]
    assert line["candidate"]["description"] == f"ReplicaSet {rev2['metadata']['name']} (revision 2)"


def test_after_the_undo_a_second_run_never_rolls_forward(api: FakeKubeAPI, audit: AuditLog) -> None:
    """After the undo the bad template is the second-highest revision (3 of 4): kubectl run again
    would roll forward to it. The LAST_ACTION annotation stops the same incident and any other
    within the cooldown."""
    api.seed(deployment_with_history(IMAGES, CAUSES).objects)
    install_deployment_controller(api)
    target = kube_target("deployment")
    act = actuator(api, audit)
    assert act.rollback(target, decision(target)).ok
    writes = len(api.writes())
    again = act.rollback(target, decision(target))
    assert again.ok and "already reverted for this incident" in again.detail
    other = act.rollback(target, decision(target, "fraud-20261125T115600Z"))
    assert other.ok and "less than cooldown ago" in other.detail
    assert len(api.writes()) == writes and image(deployment(api)) == IMAGES[1]


def test_replicasets_the_deployment_does_not_control_are_not_history(
    api: FakeKubeAPI, audit: AuditLog
) -> None:
    """deploymentutil.ListReplicaSets keeps only ReplicaSets whose controller ownerReference is
    the Deployment: a stray one with the same labels and a high revision is not gone back to."""
    seed = deployment_with_history(IMAGES, CAUSES)
    stray = json.loads(json.dumps(seed.replicasets[0]))
    stray["metadata"].update(name="fraud-model-stray", uid=uid("models", "stray"))
    stray["metadata"]["annotations"][REVISION] = "9"
    stray["metadata"]["ownerReferences"][0]["uid"] = uid("models", "someone-else")
    api.seed(seed.objects, stray)
    install_deployment_controller(api)
    target = kube_target("deployment")
    assert actuator(api, audit).rollback(target, decision(target)).ok
    assert image(deployment(api)) == IMAGES[1]


# ------------------------------------------------------------------------------ to: revision


def test_a_named_revision(api: FakeKubeAPI, audit: AuditLog) -> None:
    """deploymentRevision with toRevision N: exactly that revision's ReplicaSet."""
    api.seed(deployment_with_history(IMAGES, CAUSES).objects)
    install_deployment_controller(api)
    target = kube_target("deployment", to="revision", revision=1)
    assert actuator(api, audit).rollback(target, decision(target)).ok
    assert image(deployment(api)) == IMAGES[0]


def test_a_revision_no_longer_kept_says_which_are(api: FakeKubeAPI, audit: AuditLog) -> None:
    api.seed(deployment_with_history(IMAGES, CAUSES).objects)
    target = kube_target("deployment", to="revision", revision=9)
    outcome = actuator(api, audit).rollback(target, decision(target))
    assert not outcome.ok and not sent(api)
    assert "no ReplicaSet of revision 9 (it has 3, 2, 1" in outcome.detail
    assert "fix rollback.revision" in outcome.detail


def test_a_revision_equal_to_the_current_template_is_skipped(
    api: FakeKubeAPI, audit: AuditLog
) -> None:
    """equalIgnoreHash: "skipped rollback (current template already matches revision N)"."""
    api.seed(deployment_with_history(IMAGES, CAUSES).objects)
    target = kube_target("deployment", to="revision", revision=3)
    outcome = actuator(api, audit).rollback(target, decision(target))
    assert outcome.ok and not sent(api)
    assert "current template already matches revision 3" in outcome.detail
    assert [line["result"] for line in audit.entries()] == ["skipped"]


def test_a_deployment_without_history_says_to_use_a_fallback(
    api: FakeKubeAPI, audit: AuditLog
) -> None:
    api.seed(deployment_with_history(IMAGES[:1]).objects)
    target = kube_target("deployment")
    outcome = actuator(api, audit).rollback(target, decision(target))
    assert not outcome.ok and "no rollout history" in outcome.detail
    assert "rollback.to: fallback" in outcome.detail


# ------------------------------------------------------------------------ refusals, conflicts


def test_a_paused_deployment_is_refused_saying_resume_it(api: FakeKubeAPI, audit: AuditLog) -> None:
    """DeploymentRollbacker.Rollback: "you cannot rollback a paused deployment; resume it first"
    (the controller would not roll a paused Deployment out: syncDeployment only scales it)."""
    api.seed(deployment_with_history(IMAGES, CAUSES, paused=True).objects)
    target = kube_target("deployment")
    outcome = actuator(api, audit).rollback(target, decision(target))
    assert not outcome.ok and not sent(api)
    assert "is paused" in outcome.detail
    assert "kubectl rollout resume deployment/fraud-model -n models" in outcome.detail
    assert image(deployment(api)) == IMAGES[2]


def test_a_409_is_re_read_and_sent_once(api: FakeKubeAPI, audit: AuditLog) -> None:
    api.seed(deployment_with_history(IMAGES, CAUSES).objects)
    install_deployment_controller(api)
    api.conflict_once(r"/deployments/fraud-model$")
    target = kube_target("deployment")
    assert actuator(api, audit).rollback(target, decision(target)).ok
    assert [(p.path, p.status) for p in api.patches()] == [(DEPLOYMENT, 409), (DEPLOYMENT, 200)]
    assert image(deployment(api)) == IMAGES[1]


def test_fallback_sets_the_image_keeping_the_rest(api: FakeKubeAPI, audit: AuditLog) -> None:
    api.seed(deployment_with_history(IMAGES, CAUSES).objects)
    install_deployment_controller(api)
    target = kube_target(
        "deployment", to="fallback", fallback={"image": "registry.example.com/fraud:safe"}
    )
    assert actuator(api, audit).rollback(target, decision(target)).ok
    after = deployment(api)
    assert image(after) == "registry.example.com/fraud:safe"
    assert after["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] == 8080
    assert after["metadata"]["annotations"][CHANGE_CAUSE] == CAUSES[2]  # nothing else touched
    assert json.loads(after["metadata"]["annotations"][LAST_ACTION])["to"] == "fallback"
    # A new template: a new ReplicaSet, revision 4.
    assert len(api.list_objects("apps/v1", "replicasets", "models")) == 4


# ---------------------------------------------------------------------------------- health


def test_a_rollout_that_does_not_become_available_is_progressing_not_healthy(
    api: FakeKubeAPI, audit: AuditLog
) -> None:
    """rollout_status.go DeploymentStatusViewer.Status: updated replicas not available yet."""
    api.seed(deployment_with_history(IMAGES, CAUSES).objects)
    install_deployment_controller(api, available=lambda t: False)
    target = kube_target("deployment")
    assert actuator(api, audit).rollback(target, decision(target)).ok
    health = actuator(api, audit).health(target)
    assert health.status is Health.PROGRESSING
    assert "old replicas are pending termination" in health.reason


def test_health_as_kubectl_rollout_status_judges_it() -> None:
    """DeploymentStatusViewer.Status, in its order; plus progress.go's Progressing message names
    the ReplicaSet rolled out, which must be the one reverted to."""
    driver = driver_for("deployment")
    seed = deployment_with_history(IMAGES, CAUSES)
    obj = seed.deployment

    def health(**status: Any) -> tuple[Health, str]:
        d = json.loads(json.dumps(obj))
        d["status"].update(status)
        result = driver.health(d)
        return result.status, result.reason

    assert health()[0] is Health.HEALTHY
    assert health(observedGeneration=0)[0] is Health.PROGRESSING
    timed_out = [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                  "message": 'ReplicaSet "x" has timed out progressing.'}]  # fmt: skip
    status, reason = health(conditions=timed_out)
    assert status is Health.UNHEALTHY and "exceeded its progress deadline" in reason
    assert health(updatedReplicas=1)[1].endswith("1 out of 3 new replicas have been updated")
    assert health(replicas=4)[1].endswith("1 old replicas are pending termination")
    assert health(availableReplicas=2)[1].endswith("2 of 3 updated replicas are available")
    # Reverted to revision 2's ReplicaSet, but the controller reports another one rolled out.
    note = json.dumps({"replicaset": seed.replicasets[1]["metadata"]["name"]})
    obj["metadata"]["annotations"][LAST_ACTION] = note
    status, reason = health()
    assert status is Health.UNHEALTHY and "not the reverted ReplicaSet" in reason


# ------------------------------------------------------------------------------ config, offline


def _config(kind: str, **rollback: Any) -> str:
    return json.dumps({
        "version": 1,
        "sources": {"live": {"type": "files", "url": "/x"}, "ref": {"type": "files", "url": "/y"}},
        "targets": [{
            "name": "fraud", "workload": {"kind": kind, "name": "fraud-model"},
            "samples": {"source": "live", "window": "5m"}, "reference": {"source": "ref"},
            "columns": {"features": {"amount": "numeric"}},
            "checks": [{"name": "drift", "type": "drift", "test": "ks", "threshold": 0.01}],
            "rollback": rollback,
        }],
    })  # fmt: skip


def test_rules_yaml_checks_deployment_rollback_settings() -> None:
    parse_config(_config("deployment", to="revision", revision=2), "rules.yaml")
    with pytest.raises(ConfigError, match="a Deployment fallback needs image, env or args"):
        parse_config(_config("deployment", to="fallback", fallback={"runtime": "x"}), "r.yaml")


def test_offline_dry_run_describes_the_undo() -> None:
    target = kube_target("deployment")
    [request] = driver_for("deployment").offline_plan(target, decision(target)).requests
    assert request.path == DEPLOYMENT and "second-highest" in request.purpose
    assert "pod-template-hash" in request.purpose
