"""FakeKubeAPI through the real `kubernetes` client: each semantic the actuator tests rely on."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import urllib3
from kubernetes import config as kube_config
from kubernetes.client import (
    ApiClient,
    AppsV1Api,
    AuthenticationV1Api,
    Configuration,
    CoordinationV1Api,
    CoreV1Api,
    CustomObjectsApi,
    EventsV1Api,
    V1TokenReview,
    V1TokenReviewSpec,
)
from kubernetes.client.exceptions import ApiException
from kubernetes.leaderelection import electionconfig, leaderelection
from kubernetes.leaderelection.resourcelock.leaselock import LeaseLock

from mlwatchdog.actions.kube_api import KubeApi
from mlwatchdog.daemon.auth import Review, kubernetes_reviewer
from tests.kube import objects
from tests.kube.apiserver import FakeKubeAPI
from tests.kube.crds import vendor
from tests.kube.tokenreviews import API_AUDIENCES

GROUP, VERSION, NS = "argoproj.io", "v1alpha1", "models"
ROLLOUT_API = f"{GROUP}/{VERSION}"
ROLLOUT_PATH = f"/apis/{GROUP}/{VERSION}/namespaces/{NS}/rollouts/fraud-model"
JSON_PATCH = "application/json-patch+json"


def custom(api: FakeKubeAPI) -> CustomObjectsApi:
    return CustomObjectsApi(api.api_client())


def status_of(error: ApiException) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(error.body)
    return body


def rollout_body(
    name: str = "fraud-model", image: str = "registry.example.com/fraud:1.5.0"
) -> dict[str, Any]:
    """A Rollout as a client would POST it (no status, no server metadata)."""
    rollout = objects.argo_canary(name=name, canary_image=image).rollout
    del rollout["status"]
    for key in ("uid", "creationTimestamp"):
        del rollout["metadata"][key]
    return rollout


def get_rollout(api: FakeKubeAPI) -> dict[str, Any]:
    rollout = api.get(ROLLOUT_API, "rollouts", NS, "fraud-model")
    assert rollout is not None
    return rollout


# --- create, get, list -----------------------------------------------------------------------


def test_create_is_201_then_409_already_exists(kube_api: FakeKubeAPI) -> None:
    co = custom(kube_api)
    _, code, _ = co.create_namespaced_custom_object_with_http_info(
        GROUP, VERSION, NS, "rollouts", rollout_body()
    )
    assert code == 201
    created = get_rollout(kube_api)
    assert created["metadata"]["generation"] == 1
    assert created["metadata"]["uid"] and created["metadata"]["creationTimestamp"]
    assert "status" not in created  # a create drops status: it belongs to the controller

    with pytest.raises(ApiException) as caught:
        co.create_namespaced_custom_object(GROUP, VERSION, NS, "rollouts", rollout_body())
    assert caught.value.status == 409
    body = status_of(caught.value)
    assert body["reason"] == "AlreadyExists"
    assert body["message"] == 'rollouts.argoproj.io "fraud-model" already exists'


def test_get_missing_is_a_404_status(kube_api: FakeKubeAPI) -> None:
    with pytest.raises(ApiException) as caught:
        custom(kube_api).get_namespaced_custom_object(GROUP, VERSION, NS, "rollouts", "nope")
    assert caught.value.status == 404
    body = status_of(caught.value)
    assert body["kind"] == "Status" and body["status"] == "Failure"
    assert body["reason"] == "NotFound"
    assert body["message"] == 'rollouts.argoproj.io "nope" not found'
    assert body["details"] == {"name": "nope", "group": "argoproj.io", "kind": "rollouts"}


def test_list_honours_label_selectors(kube_api: FakeKubeAPI) -> None:
    seed = objects.argo_canary(history=["registry.example.com/fraud:1.3.0"])
    kube_api.seed(seed)
    extra = copy.deepcopy(seed.replicasets[0])
    extra["metadata"].update(name="other", uid="", labels={"app": "other", "tier": "gold"})
    kube_api.create(extra)
    apps = AppsV1Api(kube_api.api_client())
    stable, canary = seed.hashes[-2], seed.hashes[-1]

    def names(selector: str) -> set[str]:
        listed = apps.list_namespaced_replica_set(NS, label_selector=selector)
        return {rs.metadata.name for rs in listed.items}

    everything = {rs["metadata"]["name"] for rs in seed.replicasets} | {"other"}
    assert names("") == everything
    assert names("app=fraud-model") == everything - {"other"}
    assert names("app==other") == {"other"}
    assert names("app!=fraud-model") == {"other"}
    assert names(f"rollouts-pod-template-hash in ({stable},{canary})") == {
        f"fraud-model-{stable}",
        f"fraud-model-{canary}",
    }
    assert names(f"app=fraud-model,rollouts-pod-template-hash notin ({canary})") == {
        f"fraud-model-{seed.hashes[0]}",
        f"fraud-model-{stable}",
    }
    assert names("tier") == {"other"}
    assert names("!tier") == everything - {"other"}
    # `!=` and `notin` also match objects that lack the label, as in Kubernetes.
    assert names("tier!=gold") == everything - {"other"}

    listed = custom(kube_api).list_namespaced_custom_object(
        GROUP, VERSION, NS, "rollouts", label_selector="app in (fraud-model)"
    )
    assert listed["kind"] == "RolloutList" and len(listed["items"]) == 1
    assert int(listed["metadata"]["resourceVersion"]) == kube_api.resource_version

    with pytest.raises(ApiException) as caught:
        apps.list_namespaced_replica_set(NS, label_selector="app in (a")
    assert caught.value.status == 400


# --- patches -----------------------------------------------------------------------------------


def test_merge_patch_and_json_patch_on_a_rollout(kube_api: FakeKubeAPI) -> None:
    kube_api.seed(objects.argo_canary())
    co = custom(kube_api)
    before = get_rollout(kube_api)

    # v37 sends every custom-object patch as merge-patch+json unless told otherwise.
    patched = co.patch_namespaced_custom_object(
        GROUP, VERSION, NS, "rollouts", "fraud-model", {"spec": {"paused": True}}
    )
    assert patched["spec"]["paused"] is True
    assert patched["metadata"]["generation"] == before["metadata"]["generation"] + 1
    assert int(patched["metadata"]["resourceVersion"]) > int(before["metadata"]["resourceVersion"])
    assert kube_api.patches("/fraud-model")[-1].content_type == "application/merge-patch+json"

    patched = co.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        NS,
        "rollouts",
        "fraud-model",
        [
            {"op": "test", "path": "/spec/paused", "value": True},
            {"op": "replace", "path": "/spec/paused", "value": False},
            {"op": "add", "path": "/metadata/annotations", "value": {"mlwatchdog.io/x": "1"}},
        ],
        _content_type=JSON_PATCH,
    )
    assert patched["spec"]["paused"] is False
    assert patched["metadata"]["annotations"] == {"mlwatchdog.io/x": "1"}

    # A JSON-patch list without _content_type goes out as a merge patch: 400, as a real server.
    with pytest.raises(ApiException) as caught:
        co.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            NS,
            "rollouts",
            "fraud-model",
            [{"op": "remove", "path": "/spec/paused"}],
        )
    assert caught.value.status == 400
    assert "cannot unmarshal array" in status_of(caught.value)["message"]

    # A dict with the json-patch type is turned into a strategic merge patch by the client,
    # which custom resources refuse.
    with pytest.raises(ApiException) as caught:
        co.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            NS,
            "rollouts",
            "fraud-model",
            {"spec": {"paused": True}},
            _content_type=JSON_PATCH,
        )
    assert caught.value.status == 415
    assert kube_api.patches()[-1].content_type == "application/strategic-merge-patch+json"
    assert status_of(caught.value)["reason"] == "UnsupportedMediaType"

    # A JSON patch that is not a list of operations: 400 (raw HTTP: the client would not send it).
    answer = urllib3.request(
        "PATCH",
        kube_api.url + ROLLOUT_PATH,
        body=json.dumps({"op": "remove", "path": "/spec/paused"}),
        headers={"Content-Type": JSON_PATCH},
    )
    assert answer.status == 400 and answer.json()["reason"] == "BadRequest"

    # A failing `test` or a missing path: 422, the object untouched.
    unchanged = get_rollout(kube_api)
    for ops in (
        [{"op": "test", "path": "/spec/paused", "value": True}],
        [{"op": "replace", "path": "/spec/nothing/here", "value": 1}],
    ):
        with pytest.raises(ApiException) as caught:
            co.patch_namespaced_custom_object(
                GROUP, VERSION, NS, "rollouts", "fraud-model", ops, _content_type=JSON_PATCH
            )
        assert caught.value.status == 422
        assert kube_api.requests[-1].note  # the json-patch library's reason, for debugging
    assert get_rollout(kube_api) == unchanged


def test_a_noop_patch_keeps_the_resource_version(kube_api: FakeKubeAPI) -> None:
    kube_api.seed(objects.argo_canary())
    before = get_rollout(kube_api)
    after = custom(kube_api).patch_namespaced_custom_object(
        GROUP, VERSION, NS, "rollouts", "fraud-model", {"spec": {"replicas": 5}}
    )
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert after == before


def test_status_and_spec_are_written_apart(kube_api: FakeKubeAPI) -> None:
    kube_api.seed(objects.argo_canary())
    co = custom(kube_api)
    before = get_rollout(kube_api)

    after = co.patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        NS,
        "rollouts",
        "fraud-model",
        {"status": {"abort": True}, "spec": {"replicas": 9}, "metadata": {"labels": {"x": "y"}}},
    )
    assert after["status"]["abort"] is True
    assert after["spec"] == before["spec"]  # ignored through /status
    assert after["metadata"]["labels"] == before["metadata"]["labels"]
    assert after["metadata"]["generation"] == before["metadata"]["generation"]

    after = co.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        NS,
        "rollouts",
        "fraud-model",
        {"status": {"abort": False, "phase": "Healthy"}, "spec": {"replicas": 6}},
    )
    assert after["spec"]["replicas"] == 6
    assert after["status"]["abort"] is True  # ignored through the main resource
    assert after["status"]["phase"] == before["status"]["phase"]
    assert after["metadata"]["generation"] == before["metadata"]["generation"] + 1

    # PUT /status replaces the status and nothing else.
    whole = copy.deepcopy(after)
    whole["status"] = {"phase": "Healthy"}
    whole["spec"]["replicas"] = 1
    replaced = co.replace_namespaced_custom_object_status(
        GROUP, VERSION, NS, "rollouts", "fraud-model", whole
    )
    assert replaced["status"] == {"phase": "Healthy"} and replaced["spec"]["replicas"] == 6

    # No /status on a kind without the subresource.
    answer = urllib3.request(
        "GET", f"{kube_api.url}/apis/coordination.k8s.io/v1/namespaces/{NS}/leases/x/status"
    )
    assert answer.status == 404
    assert answer.json()["reason"] == "NotFound"


def test_stale_resource_version_in_a_patch_is_a_409(kube_api: FakeKubeAPI) -> None:
    kube_api.seed(objects.argo_canary())
    co = custom(kube_api)
    before = get_rollout(kube_api)
    stale = str(int(before["metadata"]["resourceVersion"]) - 1)

    with pytest.raises(ApiException) as caught:
        co.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            NS,
            "rollouts",
            "fraud-model",
            {"metadata": {"resourceVersion": stale}, "spec": {"paused": True}},
        )
    assert caught.value.status == 409
    body = status_of(caught.value)
    assert body["reason"] == "Conflict"
    assert body["message"] == (
        'Operation cannot be fulfilled on rollouts.argoproj.io "fraud-model": the object has been '
        "modified; please apply your changes to the latest version and try again"
    )

    with pytest.raises(ApiException) as caught:
        co.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            NS,
            "rollouts",
            "fraud-model",
            [
                {"op": "replace", "path": "/metadata/resourceVersion", "value": stale},
                {"op": "add", "path": "/spec/paused", "value": True},  # `replace` needs it to exist
            ],
            _content_type=JSON_PATCH,
        )
    assert caught.value.status == 409
    assert get_rollout(kube_api) == before

    # The current resourceVersion is a precondition that holds.
    current = before["metadata"]["resourceVersion"]
    after = co.patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        NS,
        "rollouts",
        "fraud-model",
        {"metadata": {"resourceVersion": current}, "status": {"abort": True}},
    )
    assert after["status"]["abort"] is True


def test_conflict_once_gives_one_real_409(kube_api: FakeKubeAPI) -> None:
    kube_api.seed(objects.argo_canary())
    co = custom(kube_api)
    read = co.get_namespaced_custom_object(GROUP, VERSION, NS, "rollouts", "fraud-model")
    kube_api.conflict_once(r"/rollouts/fraud-model$")
    read["spec"]["paused"] = True
    with pytest.raises(ApiException) as caught:
        co.replace_namespaced_custom_object(GROUP, VERSION, NS, "rollouts", "fraud-model", read)
    assert caught.value.status == 409
    assert status_of(caught.value)["reason"] == "Conflict"

    read = co.get_namespaced_custom_object(GROUP, VERSION, NS, "rollouts", "fraud-model")
    read["spec"]["paused"] = True
    replaced = co.replace_namespaced_custom_object(
        GROUP, VERSION, NS, "rollouts", "fraud-model", read
    )
    assert replaced["spec"]["paused"] is True


def test_put_without_resource_version_is_unconditional(kube_api: FakeKubeAPI) -> None:
    kube_api.seed(objects.argo_canary())
    body = get_rollout(kube_api)
    del body["metadata"]["resourceVersion"]
    kube_api.conflict_once(r"/rollouts/fraud-model$")  # a concurrent write does not matter then
    body["spec"]["paused"] = True
    replaced = custom(kube_api).replace_namespaced_custom_object(
        GROUP, VERSION, NS, "rollouts", "fraud-model", body
    )
    assert replaced["spec"]["paused"] is True


# --- fault injection ---------------------------------------------------------------------------


def test_injected_403_is_a_real_forbidden(kube_api: FakeKubeAPI) -> None:
    kube_api.seed(objects.argo_canary())
    kube_api.fail("PATCH", r"/rollouts/fraud-model/status$", 403)
    co = custom(kube_api)
    with pytest.raises(ApiException) as caught:
        co.patch_namespaced_custom_object_status(
            GROUP, VERSION, NS, "rollouts", "fraud-model", {"status": {"abort": True}}
        )
    assert caught.value.status == 403
    body = status_of(caught.value)
    assert body["reason"] == "Forbidden"
    assert body["message"] == (
        'rollouts.argoproj.io "fraud-model" is forbidden: User '
        '"system:serviceaccount:mlwatchdog:mlwatchdog" cannot patch resource "rollouts/status" '
        'in API group "argoproj.io" in the namespace "models"'
    )
    assert "abort" not in get_rollout(kube_api)["status"]
    # times=1: the next one goes through.
    co.patch_namespaced_custom_object_status(
        GROUP, VERSION, NS, "rollouts", "fraud-model", {"status": {"abort": True}}
    )
    assert get_rollout(kube_api)["status"]["abort"] is True
    assert [r.status for r in kube_api.writes()] == [403, 200]


def test_injected_5xx_and_a_concurrent_writer(kube_api: FakeKubeAPI) -> None:
    kube_api.seed(objects.argo_canary())
    co = custom(kube_api)
    kube_api.fail("*", r"/rollouts/fraud-model$", 503, times=2)
    for _ in range(2):
        with pytest.raises(ApiException) as caught:
            co.get_namespaced_custom_object(GROUP, VERSION, NS, "rollouts", "fraud-model")
        assert caught.value.status == 503
        assert status_of(caught.value)["reason"] == "ServiceUnavailable"
    kube_api.fail("PATCH", r"/rollouts/", 500, message="etcdserver: request timed out")
    with pytest.raises(ApiException) as caught:
        co.patch_namespaced_custom_object(
            GROUP, VERSION, NS, "rollouts", "fraud-model", {"spec": {"paused": True}}
        )
    assert caught.value.status == 500
    assert status_of(caught.value)["message"] == "etcdserver: request timed out"

    read = co.get_namespaced_custom_object(GROUP, VERSION, NS, "rollouts", "fraud-model")

    def concurrent_writer(api: FakeKubeAPI) -> None:
        api.mutate(ROLLOUT_PATH, lambda r: r["metadata"].setdefault("labels", {}).update(w="1"))

    kube_api.fail("PUT", r"/rollouts/fraud-model$", 409, before=concurrent_writer)
    with pytest.raises(ApiException) as caught:
        co.replace_namespaced_custom_object(GROUP, VERSION, NS, "rollouts", "fraud-model", read)
    assert caught.value.status == 409
    assert get_rollout(kube_api)["metadata"]["labels"]["w"] == "1"


def test_a_lost_response_after_the_write_happened(kube_api: FakeKubeAPI) -> None:
    kube_api.seed(objects.argo_canary())
    kube_api.drop_response("PATCH", r"/rollouts/fraud-model/status$")
    with pytest.raises(urllib3.exceptions.HTTPError):  # ProtocolError: nothing came back
        custom(kube_api).patch_namespaced_custom_object_status(
            GROUP, VERSION, NS, "rollouts", "fraud-model", {"status": {"abort": True}}
        )
    assert get_rollout(kube_api)["status"]["abort"] is True


def test_a_lost_put_response_is_retried_by_urllib3_into_a_409(kube_api: FakeKubeAPI) -> None:
    """With the client's default retries urllib3 re-sends a PUT (an "idempotent" method) whose
    response was lost; the first attempt was applied, so the retry's resourceVersion is stale."""
    kube_api.seed(objects.argo_canary())
    co = CustomObjectsApi(ApiClient(Configuration(host=kube_api.url)))  # default retries
    read = co.get_namespaced_custom_object(GROUP, VERSION, NS, "rollouts", "fraud-model")
    read["spec"]["paused"] = True
    kube_api.drop_response("PUT", r"/rollouts/fraud-model$")
    with pytest.raises(ApiException) as caught:
        co.replace_namespaced_custom_object(GROUP, VERSION, NS, "rollouts", "fraud-model", read)
    assert caught.value.status == 409
    assert [r.status for r in kube_api.writes()] == [200, 409]
    assert get_rollout(kube_api)["spec"]["paused"] is True


def test_down_refuses_connections_and_up_comes_back_on_the_same_port(kube_api: FakeKubeAPI) -> None:
    kube_api.seed(objects.argo_canary())
    co = custom(kube_api)  # retries=0: urllib3 gives up at once
    co.get_namespaced_custom_object(GROUP, VERSION, NS, "rollouts", "fraud-model")  # pooled conn
    url = kube_api.url
    kube_api.down()
    with pytest.raises(urllib3.exceptions.MaxRetryError) as caught:
        co.get_namespaced_custom_object(GROUP, VERSION, NS, "rollouts", "fraud-model")
    assert isinstance(caught.value.reason, urllib3.exceptions.NewConnectionError)
    assert isinstance(caught.value.reason.__cause__ or caught.value.reason, Exception)
    assert "Connection refused" in str(caught.value)

    kube_api.up()
    assert kube_api.url == url
    got = co.get_namespaced_custom_object(GROUP, VERSION, NS, "rollouts", "fraud-model")
    assert got["metadata"]["name"] == "fraud-model"


# --- validation ----------------------------------------------------------------------------------


def test_an_invalid_rollout_is_a_422_naming_the_path(kube_api: FakeKubeAPI) -> None:
    body = rollout_body()
    body["spec"]["replicas"] = "three"
    with pytest.raises(ApiException) as caught:
        custom(kube_api).create_namespaced_custom_object(GROUP, VERSION, NS, "rollouts", body)
    assert caught.value.status == 422
    status = status_of(caught.value)
    assert status["reason"] == "Invalid"
    assert status["message"] == (
        'Rollout.argoproj.io "fraud-model" is invalid: spec.replicas: Invalid value: "string": '
        'spec.replicas in body must be of type integer: "string"'
    )
    assert [c["field"] for c in status["details"]["causes"]] == ["spec.replicas"]
    assert (
        kube_api.validations[-1].errors
        and kube_api.get(ROLLOUT_API, "rollouts", NS, "fraud-model") is None
    )
    with pytest.raises(AssertionError):
        kube_api.assert_all_valid()


def test_patches_and_status_writes_are_validated_too(kube_api: FakeKubeAPI) -> None:
    kube_api.seed(objects.argo_canary(), objects.kserve_canary())
    co = custom(kube_api)
    cases = [
        (
            "rollouts",
            GROUP,
            VERSION,
            False,
            {"spec": {"strategy": {"canary": {"steps": [{"setWeight": "x"}]}}}},
        ),
        ("rollouts", GROUP, VERSION, True, {"status": {"currentStepIndex": "two"}}),
        ("rollouts", GROUP, VERSION, False, {"spec": {"selector": {"matchLabels": {"app": "z"}}}}),
        (
            "rollouts",
            GROUP,
            VERSION,
            False,
            {"metadata": {"labels": {"at": "2026-01-01T00:00:00Z"}}},
        ),
        (
            "inferenceservices",
            "serving.kserve.io",
            "v1beta1",
            False,
            {"spec": {"predictor": {"canaryTrafficPercent": "10"}}},
        ),
        (
            "inferenceservices",
            "serving.kserve.io",
            "v1beta1",
            True,
            {"status": {"modelStatus": {"transitionStatus": "Bogus"}}},
        ),
    ]
    messages = []
    for plural, group, version, status, patch in cases:
        call = (
            co.patch_namespaced_custom_object_status
            if status
            else co.patch_namespaced_custom_object
        )
        with pytest.raises(ApiException) as caught:
            call(group, version, NS, plural, "fraud-model", patch)
        assert caught.value.status == 422, patch
        messages.append(status_of(caught.value)["message"])
    assert "spec.strategy.canary.steps[0].setWeight" in messages[0]
    assert "status.currentStepIndex" in messages[1]
    assert messages[2].endswith(
        'spec.selector: Invalid value: "object": .spec.selector is immutable'
    )
    assert 'metadata.labels: Invalid value: "2026-01-01T00:00:00Z"' in messages[3]
    assert "spec.predictor.canaryTrafficPercent" in messages[4]
    assert 'status.modelStatus.transitionStatus: Unsupported value: "Bogus"' in messages[5]


def test_unknown_fields_are_pruned_with_a_warning(kube_api: FakeKubeAPI) -> None:
    kube_api.seed(objects.argo_canary())
    after = custom(kube_api).patch_namespaced_custom_object_status(
        GROUP, VERSION, NS, "rollouts", "fraud-model", {"status": {"aborted": True}}
    )
    assert "aborted" not in after["status"]  # a typo is silently dropped, as on a cluster
    assert kube_api.requests[-1].warnings == ['unknown field "status.aborted"']
    assert kube_api.validations[-1].pruned == ["status.aborted"]
    with pytest.raises(AssertionError, match=r"status\.aborted"):
        kube_api.assert_all_valid()
    kube_api.assert_all_valid(allow_pruned=True)


def test_every_factory_object_validates(kube_api: FakeKubeAPI) -> None:
    seeds = [
        objects.argo_canary(),
        objects.argo_canary(
            step=1, steps=6, paused=True, history=["registry.example.com/fraud:1.3.0"]
        ),
        objects.argo_canary(aborted=True, weight=50),
        objects.argo_blue_green(),
        objects.argo_blue_green(aborted=True),
        objects.argo_promoted(),
        objects.argo_workload_ref(),
        objects.kserve_canary(),
        objects.kserve_raw(),
    ]
    for seed in seeds:
        for obj in seed.objects:
            assert kube_api.validate(obj) == [], (obj["kind"], obj["metadata"]["name"])
    for i, seed in enumerate(seeds):
        ns = f"ns{i}"
        for obj in seed.objects:
            obj = copy.deepcopy(obj)
            obj["metadata"]["namespace"] = ns
            kube_api.create(obj)
    kube_api.assert_all_valid()

    paused = seeds[1].rollout
    assert paused["status"]["phase"] == "Paused" and paused["spec"]["paused"] is True
    assert paused["status"]["pauseConditions"][0]["reason"] == "CanaryPauseStep"
    assert [
        rs["metadata"]["annotations"]["rollout.argoproj.io/revision"] for rs in seeds[1].replicasets
    ] == ["1", "2", "3"]
    assert seeds[2].rollout["status"]["phase"] == "Degraded"
    promoted = seeds[5].rollout["status"]
    assert promoted["currentPodHash"] == promoted["stableRS"] and promoted["currentStepIndex"] == 4
    assert seeds[5].replicasets[0]["spec"]["replicas"] == 0
    assert "template" not in seeds[6].rollout["spec"] and seeds[6].deployment is not None
    traffic = seeds[7].isvc["status"]["components"]["predictor"]["traffic"]
    assert [(t["revisionName"], t["percent"]) for t in traffic] == [
        ("fraud-model-predictor-00002", 10),
        ("fraud-model-predictor-00001", 90),
    ]


# --- reactors ------------------------------------------------------------------------------------


def test_argo_controller_degrades_an_aborted_rollout(kube_api: FakeKubeAPI) -> None:
    objects.install_argo_controller(kube_api)
    kube_api.seed(objects.argo_canary(step=1))
    custom(kube_api).patch_namespaced_custom_object_status(
        GROUP, VERSION, NS, "rollouts", "fraud-model", {"status": {"abort": True}}
    )
    status = get_rollout(kube_api)["status"]
    assert status["phase"] == "Degraded"
    assert status["message"] == "RolloutAborted: Rollout aborted update to revision 2"
    assert status["currentStepIndex"] == 1


def test_argo_controller_rolls_back_to_the_stable_replicaset(kube_api: FakeKubeAPI) -> None:
    objects.install_argo_controller(kube_api)
    seed = objects.argo_canary(step=1)
    kube_api.seed(seed)
    stable_rs = seed.replicasets[0]
    rollback = objects.without_hash(stable_rs["spec"]["template"])
    co = custom(kube_api)
    response = co.patch_namespaced_custom_object(
        GROUP, VERSION, NS, "rollouts", "fraud-model", {"spec": {"template": rollback}}
    )
    rollout = get_rollout(kube_api)
    # The controller wrote status after our write: our response's resourceVersion is stale now.
    assert response["metadata"]["resourceVersion"] != rollout["metadata"]["resourceVersion"]
    status = rollout["status"]
    assert status["currentPodHash"] == status["stableRS"] == seed.stable_hash
    assert status["phase"] == "Healthy" and status["abort"] is False
    assert status["currentStepIndex"] == 4 and "pauseConditions" not in status
    rs = kube_api.get("apps/v1", "replicasets", NS, stable_rs["metadata"]["name"])
    assert rs is not None and rs["metadata"]["annotations"]["rollout.argoproj.io/revision"] == "3"


def test_argo_controller_starts_a_revision_for_a_new_template(kube_api: FakeKubeAPI) -> None:
    objects.install_argo_controller(kube_api)
    seed = objects.argo_canary()
    kube_api.seed(seed)
    template = objects.pod_template("fraud-model", "registry.example.com/fraud:1.6.0")
    custom(kube_api).patch_namespaced_custom_object(
        GROUP, VERSION, NS, "rollouts", "fraud-model", {"spec": {"template": template}}
    )
    status = get_rollout(kube_api)["status"]
    new_hash = objects.pod_template_hash(template)
    assert status["currentPodHash"] == new_hash and status["stableRS"] == seed.stable_hash
    assert status["phase"] == "Progressing"
    rs = kube_api.get("apps/v1", "replicasets", NS, f"fraud-model-{new_hash}")
    assert rs is not None and rs["metadata"]["annotations"]["rollout.argoproj.io/revision"] == "3"


def test_argo_controller_follows_a_workload_ref_deployment(kube_api: FakeKubeAPI) -> None:
    objects.install_argo_controller(kube_api)
    seed = objects.argo_workload_ref()
    kube_api.seed(seed)
    # A strategic merge patch, as `kubectl set image` would send: containers merge by name.
    AppsV1Api(kube_api.api_client()).patch_namespaced_deployment(
        "fraud-model",
        NS,
        {
            "spec": {
                "template": {
                    "spec": {
                        "containers": [
                            {"name": "model", "image": "registry.example.com/fraud:1.4.0"}
                        ]
                    }
                }
            }
        },
    )
    deployment = kube_api.get("apps/v1", "deployments", NS, "fraud-model")
    assert deployment is not None
    assert deployment["spec"]["template"]["spec"]["containers"][0]["ports"]  # kept by the SMP
    assert kube_api.requests[-1].content_type == "application/strategic-merge-patch+json"
    status = get_rollout(kube_api)["status"]
    assert status["currentPodHash"] == status["stableRS"] == seed.stable_hash
    assert status["phase"] == "Healthy"


# --- other kinds -------------------------------------------------------------------------------


def test_events_through_both_apis(kube_api: FakeKubeAPI) -> None:
    client = kube_api.api_client()
    core, events_v1 = CoreV1Api(client), EventsV1Api(client)
    involved = {
        "apiVersion": ROLLOUT_API,
        "kind": "Rollout",
        "name": "fraud-model",
        "namespace": NS,
    }
    core.create_namespaced_event(
        NS,
        {
            "metadata": {"name": "fraud-model.1"},
            "involvedObject": involved,
            "reason": "RolledBack",
            "message": "drift on feature amount",
            "type": "Warning",
            "source": {"component": "mlwatchdog"},
        },
    )
    events_v1.create_namespaced_event(
        NS,
        {
            "metadata": {"name": "fraud-model.2"},
            "eventTime": "2026-01-15T09:00:00.000000Z",
            "regarding": involved,
            "reason": "RolledBack",
            "note": "second",
            "type": "Normal",
            "action": "Rollback",
            "reportingController": "mlwatchdog.io/watchdog",
            "reportingInstance": "mlwatchdog-0",
        },
    )
    listed = core.list_namespaced_event(NS, field_selector="involvedObject.name=fraud-model")
    assert [e.message for e in listed.items] == ["drift on feature amount", "second"]
    # Raw JSON: the v37 model requires eventTime, which a legacy core/v1 event does not have (on
    # a real cluster too), so the typed list of both would not deserialize.
    raw = events_v1.list_namespaced_event(NS, _preload_content=False).json()
    assert [e["note"] for e in raw["items"]] == ["drift on feature amount", "second"]
    assert raw["items"][0]["regarding"] == involved
    typed = events_v1.list_namespaced_event(NS, field_selector="metadata.name=fraud-model.2")
    assert [e.reporting_controller for e in typed.items] == ["mlwatchdog.io/watchdog"]

    # events.k8s.io/v1 is strict on the server. (The v37 client refuses to send the first one at
    # all: its pydantic model requires eventTime; hence raw HTTP.)
    bad = {"metadata": {"name": "bad"}, "regarding": involved, "reason": "X", "type": "Normal"}
    url = f"{kube_api.url}/apis/events.k8s.io/v1/namespaces/{NS}/events"
    answer = urllib3.request("POST", url, json=bad)
    assert answer.status == 422
    assert answer.json()["message"] == (
        'Event.events.k8s.io "bad" is invalid: eventTime: Required value'
    )
    answer = urllib3.request("POST", url, json={**bad, "eventTime": "2026-01-15T09:00:00.000000Z"})
    assert answer.json()["message"] == (
        'Event.events.k8s.io "bad" is invalid: [reportingController: Required value, '
        "reportingInstance: Required value, action: Required value]"
    )


def test_kubeconfig_works_in_this_and_another_process(
    kube_api: FakeKubeAPI, tmp_path: Path
) -> None:
    kube_api.seed(objects.argo_canary())
    path = kube_api.write_kubeconfig(tmp_path / "kubeconfig", namespace=NS)
    client = kube_config.new_client_from_config(config_file=str(path))
    got = CustomObjectsApi(client).get_namespaced_custom_object(
        GROUP, VERSION, NS, "rollouts", "fraud-model"
    )
    assert got["metadata"]["name"] == "fraud-model"
    _, active = kube_config.list_kube_config_contexts(config_file=str(path))
    assert active["context"]["namespace"] == NS
    script = (
        "import sys\n"
        "from kubernetes import client, config\n"
        "config.load_kube_config(config_file=sys.argv[1])\n"
        "r = client.CustomObjectsApi().get_namespaced_custom_object("
        "'argoproj.io', 'v1alpha1', 'models', 'rollouts', 'fraud-model')\n"
        "print(r['metadata']['uid'])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == get_rollout(kube_api)["metadata"]["uid"]
    assert len([r for r in kube_api.requests if r.path == ROLLOUT_PATH]) == 2


def test_leader_election_with_a_lease_lock(kube_api: FakeKubeAPI) -> None:
    leaders: list[str] = []
    stop = {name: threading.Event() for name in ("a", "b")}

    def candidate(identity: str) -> threading.Thread:
        lock = LeaseLock("mlwatchdog-leader", NS, identity)
        lock.api_instance = CoordinationV1Api(kube_api.api_client())

        def lead() -> None:
            leaders.append(identity)
            stop[identity].wait(30)
            raise RuntimeError(f"{identity} stops leading")  # stops renewing the lease

        election = electionconfig.Config(
            lock,
            lease_duration=2,
            renew_deadline=1.5,
            retry_period=1,
            onstarted_leading=lead,
            onstopped_leading=lambda: None,
        )
        thread = threading.Thread(target=leaderelection.LeaderElection(election).run, daemon=True)
        thread.start()
        return thread

    threads = [candidate("a"), candidate("b")]
    deadline = time.monotonic() + 5
    while not leaders and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.2)  # the follower retries at least once meanwhile
    assert len(leaders) == 1, leaders
    first = leaders[0]
    second = "b" if first == "a" else "a"
    lease = kube_api.get("coordination.k8s.io/v1", "leases", NS, "mlwatchdog-leader")
    assert lease is not None and lease["spec"]["holderIdentity"] == first

    stop[first].set()
    deadline = time.monotonic() + 10
    while len(leaders) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert leaders == [first, second]
    lease = kube_api.get("coordination.k8s.io/v1", "leases", NS, "mlwatchdog-leader")
    assert lease is not None and lease["spec"]["holderIdentity"] == second
    stop[second].set()
    for thread in threads:
        thread.join(timeout=10)
    assert not any(t.is_alive() for t in threads)
    statuses = {r.status for r in kube_api.requests if "/leases" in r.path}
    assert statuses <= {200, 201, 404, 409}


# --- vendored schemas ----------------------------------------------------------------------------


def test_vendored_schemas_equal_fresh_extracts() -> None:
    source = vendor.DEFAULT_SOURCE
    if not source.is_dir():
        pytest.skip(
            "../shared/crds is absent (fresh clone): "
            "the vendored copies in tests/kube/crds are used"
        )
    for name, fresh in vendor.extract_all(source).items():
        assert vendor.load_vendored(name) == fresh, (
            f"{name} is stale: run tests/kube/crds/vendor.py"
        )
    assert (vendor.HERE / "SOURCES.md").read_text(encoding="utf-8") == vendor.sources_md(source)


def test_delete_answers_a_success_status_and_honours_preconditions(kube_api: FakeKubeAPI) -> None:
    kube_api.seed(objects.argo_canary())
    co = custom(kube_api)
    uid = get_rollout(kube_api)["metadata"]["uid"]
    with pytest.raises(ApiException) as caught:
        co.delete_namespaced_custom_object(
            GROUP,
            VERSION,
            NS,
            "rollouts",
            "fraud-model",
            body={"preconditions": {"resourceVersion": "1"}},
        )
    assert caught.value.status == 409
    assert (
        "Precondition failed: ResourceVersion in precondition: 1"
        in status_of(caught.value)["message"]
    )
    answer = co.delete_namespaced_custom_object(GROUP, VERSION, NS, "rollouts", "fraud-model")
    assert answer["status"] == "Success" and answer["details"]["uid"] == uid
    assert kube_api.get(ROLLOUT_API, "rollouts", NS, "fraud-model") is None
    with pytest.raises(ApiException) as caught:
        co.delete_namespaced_custom_object(GROUP, VERSION, NS, "rollouts", "fraud-model")
    assert caught.value.status == 404


def test_dry_run_stores_nothing(kube_api: FakeKubeAPI) -> None:
    rv = kube_api.resource_version
    custom(kube_api).create_namespaced_custom_object(
        GROUP, VERSION, NS, "rollouts", rollout_body(), dry_run="All"
    )
    assert kube_api.get(ROLLOUT_API, "rollouts", NS, "fraud-model") is None
    assert kube_api.resource_version == rv


def test_client_and_configuration_helpers_agree(kube_api: FakeKubeAPI) -> None:
    plain = ApiClient(Configuration(host=kube_api.url))
    listed = CustomObjectsApi(plain).list_namespaced_custom_object(GROUP, VERSION, NS, "rollouts")
    assert listed["items"] == []


# --- TokenReview ---------------------------------------------------------------------------------

GRAFANA = "system:serviceaccount:monitoring:grafana"
ALERTMANAGER = "system:serviceaccount:monitoring:alertmanager"


def token_review(token: str, audiences: list[str] | None = None) -> V1TokenReview:
    return V1TokenReview(
        api_version="authentication.k8s.io/v1",
        kind="TokenReview",
        spec=V1TokenReviewSpec(token=token, audiences=audiences),
    )


def test_token_review_through_the_kubernetes_client(kube_api: FakeKubeAPI) -> None:
    issued = kube_api.add_token("pod.token.grafana", GRAFANA)
    kube_api.add_token("scoped.token.am", ALERTMANAGER, audiences=["mlwatchdog"])
    auth = AuthenticationV1Api(kube_api.api_client())

    review, code, _ = auth.create_token_review_with_http_info(token_review("pod.token.grafana"))
    assert code == 201
    assert review.kind == "TokenReview" and review.spec.token == "pod.token.grafana"  # echoed
    assert review.status.authenticated is True and review.status.error is None
    assert review.status.user.username == GRAFANA and review.status.user.uid == issued.uid
    assert review.status.user.groups == [
        "system:serviceaccounts",
        "system:serviceaccounts:monitoring",
        "system:authenticated",
    ]
    assert review.status.audiences == list(API_AUDIENCES)  # none asked: the API server's own
    assert kube_api.requests[-1].body == {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenReview",
        "spec": {"token": "pod.token.grafana"},
    }

    # A token issued for other audiences is not authenticated, and the error says why.
    scoped = auth.create_token_review(token_review("scoped.token.am"))
    assert not scoped.status.authenticated and scoped.status.user.username is None
    assert scoped.status.error == (
        '[invalid bearer token, token audiences ["mlwatchdog"] is invalid for the target '
        f'audiences ["{API_AUDIENCES[0]}"]]'
    )
    asked = auth.create_token_review(token_review("scoped.token.am", ["other", "mlwatchdog"]))
    assert asked.status.authenticated and asked.status.audiences == ["mlwatchdog"]
    grafana_elsewhere = auth.create_token_review(token_review("pod.token.grafana", ["mlwatchdog"]))
    assert not grafana_elsewhere.status.authenticated

    unknown = auth.create_token_review(token_review("forged.token.x"))
    assert not unknown.status.authenticated and "invalid bearer token" in unknown.status.error
    # On the wire a false `authenticated` is absent (Go's omitempty), as kube-apiserver sends it.
    assert "authenticated" not in kube_api.requests[-1].response["status"]

    # Validated as the API server validates it; create only, cluster-scoped, nothing stored.
    rv = kube_api.resource_version
    with pytest.raises(ApiException) as caught:
        auth.create_token_review(token_review(""))
    assert caught.value.status == 400
    assert status_of(caught.value)["message"] == (
        "token is required for TokenReview in authentication"
    )
    wrong = token_review("pod.token.grafana")
    wrong.api_version = "authentication.k8s.io/v1beta1"
    with pytest.raises(ApiException) as caught:
        auth.create_token_review(wrong)
    assert caught.value.status == 400 and "does not match" in status_of(caught.value)["message"]
    for method, path in (
        ("GET", "/apis/authentication.k8s.io/v1/tokenreviews"),
        ("POST", "/apis/authentication.k8s.io/v1/namespaces/monitoring/tokenreviews"),
    ):
        answer = urllib3.request(method, kube_api.url + path, json={"spec": {"token": "a.b.c"}})
        assert answer.status == (405 if method == "GET" else 404), (method, path)
    # A misspelt field is dropped with a warning (fieldValidation=Warn), not an error.
    answer = urllib3.request(
        "POST",
        kube_api.url + "/apis/authentication.k8s.io/v1/tokenreviews",
        json={"spec": {"token": "pod.token.grafana", "audience": ["mlwatchdog"]}},
    )
    assert answer.status == 201 and answer.json()["status"]["authenticated"] is True
    assert answer.json()["spec"] == {"token": "pod.token.grafana"}
    assert answer.headers["Warning"] == '299 - "unknown field \\"spec.audience\\""'
    assert kube_api.resource_version == rv


def test_token_review_through_the_daemons_reviewer(kube_api: FakeKubeAPI) -> None:
    kube_api.add_token("pod.token.grafana", GRAFANA)
    kube_api.add_token("scoped.token.am", ALERTMANAGER, audiences=["mlwatchdog"])
    kube = KubeApi(kube_api.api_client(), timeout=5, attempts=2, sleep=lambda s: None)
    review = kubernetes_reviewer(kube)

    assert review("pod.token.grafana", []) == Review(True, username=GRAFANA)
    assert kube_api.requests[-1].body == {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenReview",
        "spec": {"token": "pod.token.grafana"},
    }
    assert kube_api.requests[-1].status == 201
    assert review("scoped.token.am", ["mlwatchdog"]) == Review(True, username=ALERTMANAGER)
    assert kube_api.requests[-1].body["spec"] == {
        "token": "scoped.token.am",
        "audiences": ["mlwatchdog"],
    }
    assert review("scoped.token.am", []) == Review(False)  # issued for another audience
    assert review("pod.token.grafana", ["mlwatchdog"]) == Review(False)
    assert review("forged.token.x", []) == Review(False)

    # The API cannot answer: an error (the caller gets 503 and retries), never "authenticated".
    kube_api.fail("POST", r"/tokenreviews$", 503, times=None)
    failed = review("pod.token.grafana", [])
    assert not failed.authenticated and failed.error.startswith("TokenReview failed")
