"""Which GitOps controller manages an object, told from its labels and annotations, as the
upstream controllers write them (argo-cd util/argo/resource_tracking.go, common/common.go;
kustomize-controller internal/controller/kustomization_controller.go SetOwnerLabels;
helm-controller internal/postrender/common_renderer.go originLabels)."""

from __future__ import annotations

from typing import Any

import pytest

from mlwatchdog.actions.gitops.detect import manager_of, parse_tracking_id


def obj(labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None) -> Any:
    meta = {"name": "fraud-model", "namespace": "models"}
    return {"metadata": {**meta, "labels": labels or {}, "annotations": annotations or {}}}


def test_an_object_without_tracking_is_unmanaged() -> None:
    assert manager_of(obj({"app": "fraud-model"})) is None


def test_argo_cd_default_label_names_the_application_in_the_argocd_namespace() -> None:
    found = manager_of(obj({"app.kubernetes.io/instance": "fraud"}))
    assert found is not None
    assert (found.controller, found.namespace, found.name) == ("argocd", "argocd", "fraud")
    assert found.path == "/apis/argoproj.io/v1alpha1/namespaces/argocd/applications/fraud"
    other = manager_of(obj({"app.kubernetes.io/instance": "fraud"}), argocd_namespace="gitops")
    assert other is not None and other.namespace == "gitops"


def test_argo_cd_tracking_annotation_wins_and_names_an_app_in_any_namespace() -> None:
    tracking = "team-ml_fraud:argoproj.io/Rollout:models/fraud-model"
    found = manager_of(obj(annotations={"argocd.argoproj.io/tracking-id": tracking}))
    assert found is not None and (found.namespace, found.name) == ("team-ml", "fraud")


@pytest.mark.parametrize("value", ["fraud", "fraud:argoproj.io/Rollout", "a:b:c/d", "a:b/c:d"])
def test_a_malformed_tracking_id_is_not_parsed(value: str) -> None:
    assert parse_tracking_id(value) is None


def test_flux_labels_win_over_a_chart_instance_label() -> None:
    labels = {
        "app.kubernetes.io/instance": "fraud-model",  # set by the Helm chart, not Argo CD
        "helm.toolkit.fluxcd.io/name": "fraud",
        "helm.toolkit.fluxcd.io/namespace": "flux-system",
    }
    found = manager_of(obj(labels))
    assert found is not None
    assert (found.controller, found.namespace, found.name) == (
        "flux-helmrelease", "flux-system", "fraud"
    )  # fmt: skip
    assert found.path.startswith("/apis/helm.toolkit.fluxcd.io/v2/namespaces/flux-system/")


def test_a_flux_kustomization_label_without_namespace_means_the_objects_own() -> None:
    found = manager_of(obj({"kustomize.toolkit.fluxcd.io/name": "apps"}))
    assert found is not None and (found.kind, found.namespace) == ("Kustomization", "models")
