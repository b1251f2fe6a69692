"""A real `mlwatchdog run` (dry_run false) reverts the shipped example Rollout
(deploy/examples/argo-rollout.yaml) in the emulated cluster, and the revert really completes:
a good version promoted, a bad one fully promoted, drift, one undo that Argo fast-tracks within
spec.rollbackWindow (tests/kube/argo_controller.py), verification, the target healthy again."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.client import CustomObjectsApi

from tests.deploy.manifests import EXAMPLES, load_all, one
from tests.e2e.daemon_process import (
    INTERVAL,
    TARGET,
    VERIFY,
    DaemonProcess,
    Feeder,
    environment,
    is_ready,
    value,
    wait_for,
    write_config,
)
from tests.kube.apiserver import FakeKubeAPI
from tests.kube.argo_controller import install_argo_controller
from tests.kube.objects import pod_template_hash
from tests.servers.ports import free_port

pytestmark = pytest.mark.timeout(120)

NS, NAME = "models", "fraud-model"
ROLLOUT = f"/apis/argoproj.io/v1alpha1/namespaces/{NS}/rollouts/{NAME}"
OLD, BAD = "registry.example.com/fraud:1.4.0", "registry.example.com/fraud:1.6.0"


def example_rollout() -> dict[str, Any]:
    rollout: dict[str, Any] = one(load_all(EXAMPLES / "argo-rollout.yaml"), "Rollout")
    return rollout


def with_image(template: dict[str, Any], image: str) -> dict[str, Any]:
    template = copy.deepcopy(template)
    template["spec"]["containers"][0]["image"] = image
    return template


def get_rollout(api: FakeKubeAPI) -> dict[str, Any]:
    obj = api.get("argoproj.io/v1alpha1", "rollouts", NS, NAME)
    assert obj is not None
    return obj


def release(api: FakeKubeAPI, client: CustomObjectsApi, template: dict[str, Any]) -> None:
    """A new version, as CI would apply it, then `kubectl argo rollouts promote --full` once the
    controller shows it in progress (pkg/kubectl-argo-rollouts/cmd/promote getPatches)."""
    client.patch_namespaced_custom_object(
        "argoproj.io", "v1alpha1", NS, "rollouts", NAME, {"spec": {"template": template}}
    )
    status = get_rollout(api)["status"]
    assert status["phase"] in ("Progressing", "Paused") and status["currentStepIndex"] == 0
    assert status["currentPodHash"] != status["stableRS"]  # a canary from step 0
    client.patch_namespaced_custom_object_status(
        "argoproj.io", "v1alpha1", NS, "rollouts", NAME, {"status": {"promoteFull": True}}
    )
    status = get_rollout(api)["status"]
    assert status["phase"] == "Healthy" and status["stableRS"] == pod_template_hash(template)


@pytest.fixture
def api() -> Iterator[FakeKubeAPI]:
    with FakeKubeAPI() as fake:
        install_argo_controller(fake)
        yield fake
    assert not fake.internal_errors, fake.internal_errors
    assert not fake.reactor_errors, fake.reactor_errors


def daemon_config(tmp_path: Path, kubeconfig: Path) -> tuple[Path, int]:
    port = free_port()
    rules: dict[str, Any] = yaml.safe_load(write_config(tmp_path, port, dry_run=False).read_text())
    rules["daemon"].update(
        audit_log=str(tmp_path / "audit.jsonl"),
        kubernetes={"mode": "kubeconfig", "kubeconfig": str(kubeconfig), "attempts": 2},
        leader_election={
            "enabled": True,
            "lease": "mlwatchdog",
            "namespace": NS,
            "identity": "mlwatchdog-0",
            "lease_duration": "4s",
            "renew_deadline": "3s",
            "retry_period": "1s",
        },
    )
    (target,) = rules["targets"]
    target["workload"] = {"kind": "argo-rollout", "name": NAME, "namespace": NS}
    target["rollback"]["policy"] = {"allowed_images": ["registry.example.com/fraud:*"]}
    path = tmp_path / "rules-argo.yaml"
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    return path, port


def test_the_shipped_rollout_is_reverted_and_the_revert_completes(
    tmp_path: Path, api: FakeKubeAPI, processes: list[DaemonProcess], feeder: Feeder
) -> None:
    client = CustomObjectsApi(api.api_client())
    rollout = example_rollout()
    good = rollout["spec"]["template"]  # the example's own version, 1.5.0
    first = copy.deepcopy(rollout)
    first["spec"]["template"] = with_image(good, OLD)
    client.create_namespaced_custom_object("argoproj.io", "v1alpha1", NS, "rollouts", first)
    assert get_rollout(api)["status"]["phase"] == "Healthy"  # initial deploy
    release(api, client, good)
    release(api, client, with_image(good, BAD))
    good_hash, bad_hash = pod_template_hash(good), pod_template_hash(with_image(good, BAD))
    replicasets_before = {
        rs["metadata"]["name"] for rs in api.list_objects("apps/v1", "replicasets", NS)
    }
    assert len(replicasets_before) == 3

    kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig", namespace=NS)
    config, port = daemon_config(tmp_path, kubeconfig)
    daemon = DaemonProcess(
        config, port, tmp_path / "daemon.log", env=environment(KUBECONFIG=str(kubeconfig))
    )
    processes.append(daemon)
    wait_for(daemon, "readiness", lambda: is_ready(daemon), timeout=60)
    wait_for(
        daemon,
        "the Lease",
        lambda: daemon.events("became the leader: this replica acts"),
        timeout=30,
    )

    feeder.drift.set()  # the bad version's inputs and scores drift
    wait_for(
        daemon,
        "the revert sent",
        lambda: value(daemon.metrics(), "mlwatchdog_actions_total", result="sent"),
        timeout=45,
    )
    feeder.drift.clear()  # the old version serves again: the samples are clean
    after = get_rollout(api)
    assert after["status"]["currentPodHash"] == after["status"]["stableRS"] == good_hash
    assert after["status"]["phase"] == "Healthy"  # fast-tracked within spec.rollbackWindow

    wait_for(
        daemon,
        "the target healthy after verification",
        lambda: daemon.targets()[TARGET]["phase"] == "healthy",
        timeout=VERIFY + INTERVAL * 10,
    )
    # Verified on the Rollout too: read while verifying, Healthy on the reverted ReplicaSet.
    final = get_rollout(api)
    status = final["status"]
    assert status["stableRS"] == status["currentPodHash"] == good_hash != bad_hash
    assert status["phase"] == "Healthy"
    assert status["currentStepIndex"] == len(final["spec"]["strategy"]["canary"]["steps"])
    assert "currentStepAnalysisRunStatus" not in status.get("canary", {})  # no analysis ran
    # No second update started: no new ReplicaSet, the daemon wrote the Rollout once.
    replicasets = {rs["metadata"]["name"] for rs in api.list_objects("apps/v1", "replicasets", NS)}
    assert replicasets == replicasets_before
    undo = [p for p in api.patches() if p.path == ROLLOUT and p.status == 200][-1]
    assert undo.content_type == "application/json-patch+json"  # the undo, nothing after it
    assert api.patches()[-1] is undo
    image = final["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "registry.example.com/fraud:1.5.0"
    records = [
        json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines() if line
    ]
    assert [r["result"] for r in records] == ["sent"]
    assert [r["path"] for r in records[0]["requests"]] == [ROLLOUT]  # no abort: nothing to abort
    assert value(daemon.metrics(), "mlwatchdog_actions_total", result="sent") == 1
    api.assert_all_valid()
