"""Every manifest under deploy/ parses and validates against its schema, offline:
- built-in kinds: Kubernetes' OpenAPI schemas as JSON schema (the `kubernetes-validate` package
  bundles them per Kubernetes version), strict, so unknown fields are errors;
- Rollout, AnalysisTemplate, InferenceService: the real CRDs' openAPIV3Schema (vendored in
  tests/kube/crds), Draft 4 as the apiserver, plus the fields the apiserver would prune;
- ServiceMonitor, PrometheusRule: prometheus-operator's CRD schemas (tests/deploy/schemas).
Each validator is also shown to reject a broken object, so a pass means something.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from jsonschema import Draft4Validator

from tests.deploy.manifests import (
    BASE,
    DEPLOY,
    EXAMPLES,
    PRODUCTION,
    PRODUCTION_SINK,
    Object,
    load_all,
    manifest_files,
    render,
    undeclared_fields,
)
from tests.deploy.schemas.vendor import load as load_prometheus_operator
from tests.kube import schemas as kube_schemas
from tests.kube.crds.vendor import load_vendored

# The oldest Kubernetes the manifests support (PDB policy/v1, seccompProfile field) and the
# newest the package knows.
KUBERNETES_VERSIONS = ("1.29.0", kubernetes_validate.latest_version())

CUSTOM_SCHEMAS = {
    ("argoproj.io/v1alpha1", "Rollout"): ("crds", "rollout.v1alpha1.json.gz"),
    ("argoproj.io/v1alpha1", "AnalysisTemplate"): ("crds", "analysistemplate.v1alpha1.json.gz"),
    ("serving.kserve.io/v1beta1", "InferenceService"): (
        "crds",
        "inferenceservice.v1beta1.json.gz",
    ),
    ("flagger.app/v1beta1", "Canary"): ("crds", "canary.v1beta1.json.gz"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"): (
        "prometheus-operator",
        "servicemonitor.monitoring.coreos.com.v1.json.gz",
    ),
    ("monitoring.coreos.com/v1", "PrometheusRule"): (
        "prometheus-operator",
        "prometheusrule.monitoring.coreos.com.v1.json.gz",
    ),
}


@functools.cache
def custom_schema(api_version: str, kind: str) -> dict[str, Any]:
    where, name = CUSTOM_SCHEMAS[(api_version, kind)]
    return load_vendored(name) if where == "crds" else load_prometheus_operator(name)


def is_custom(obj: Object) -> bool:
    return (obj["apiVersion"], obj["kind"]) in CUSTOM_SCHEMAS


def builtin_errors(obj: Object) -> list[str]:
    errors = []
    for version in KUBERNETES_VERSIONS:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            errors.append(f"Kubernetes {version}: {path}: {exc.message}")
    return errors


def custom_errors(obj: Object) -> list[str]:
    schema = custom_schema(obj["apiVersion"], obj["kind"])
    errors = [str(e) for e in kube_schemas.validate_metadata(obj)]
    # ObjectMeta is checked above; the schemas' own `metadata` is {type: object}.
    for error in Draft4Validator(schema).iter_errors(obj):
        path = ".".join(str(p) for p in error.absolute_path)
        errors.append(f"{path}: {error.message}")
    body = {k: v for k, v in obj.items() if k != "metadata"}
    errors += [f"{f}: not in the CRD schema (pruned)" for f in undeclared_fields(body, schema)]
    return errors


def errors_of(obj: Object) -> list[str]:
    return custom_errors(obj) if is_custom(obj) else builtin_errors(obj)


def documents() -> list[tuple[str, Object]]:
    """(deploy-relative path[index], object) of every document in every manifest file."""
    return [
        (f"{path.relative_to(DEPLOY).as_posix()}[{i}]", doc)
        for path in manifest_files()
        for i, doc in enumerate(load_all(path))
    ]


@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: p.name)
def test_every_manifest_parses_into_kubernetes_objects(path: Path) -> None:
    docs = load_all(path)
    assert docs, f"{path} is empty"
    for doc in docs:
        assert isinstance(doc, dict) and {"apiVersion", "kind", "metadata"} <= set(doc), doc
        assert doc["metadata"].get("name"), f"{path}: a {doc['kind']} without a name"


def test_manifest_files_cover_every_kind_we_ship() -> None:
    kinds = {doc["kind"] for _, doc in documents()}
    assert kinds >= {
        "Namespace",
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "ClusterRole",
        "ClusterRoleBinding",
        "StatefulSet",
        "Service",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "ServiceMonitor",
        "PrometheusRule",
        "Rollout",
        "AnalysisTemplate",
        "InferenceService",
        "ConfigMap",
    }


# Patches (of overlays and components) are partial objects: they are validated once rendered
# (below).
PATCHES = {
    (kustomization.parent / patch["path"]).relative_to(DEPLOY).as_posix()
    for kustomization in (DEPLOY / "kustomize").rglob("kustomization.yaml")
    for patch in load_all(kustomization)[0].get("patches", [])
}
WHOLE = [
    (n, d) for n, d in documents() if "/overlays/" not in n and n.rsplit("[", 1)[0] not in PATCHES
]


@pytest.mark.parametrize("name, obj", WHOLE, ids=[f"{n}-{d['kind']}" for n, d in WHOLE])
def test_every_document_validates(name: str, obj: Object) -> None:
    assert errors_of(obj) == [], name


@pytest.mark.parametrize(
    "directory", [BASE, PRODUCTION, PRODUCTION_SINK], ids=["base", "production", "production-sink"]
)
def test_every_rendered_object_validates(directory: Path) -> None:
    for obj in render(directory):
        assert errors_of(obj) == [], f"{obj['kind']} {obj['metadata']['name']}"


def test_the_custom_resources_use_the_api_versions_with_schemas() -> None:
    for name, obj in documents():
        group = obj["apiVersion"].split("/")[0]
        if group in ("argoproj.io", "serving.kserve.io", "monitoring.coreos.com"):
            assert is_custom(obj), f"{name}: no vendored schema for {obj['apiVersion']}"


# --- the validators reject what the apiserver would reject --------------------------------------


def example(kind: str) -> Object:
    for path in [*EXAMPLES.glob("*.yaml"), *BASE.glob("*.yaml")]:
        if path.name in ("kustomization.yaml", "rules.yaml"):
            continue
        for doc in load_all(path):
            if doc["kind"] == kind:
                return copy.deepcopy(doc)
    raise AssertionError(f"no {kind} in deploy/")


def test_builtin_validation_rejects_unknown_fields_and_wrong_types() -> None:
    statefulset = example("StatefulSet")
    statefulset["spec"]["template"]["spec"]["containers"][0]["securityContex"] = {}
    assert any("securityContex" in e for e in builtin_errors(statefulset))
    claim = example("StatefulSet")["spec"]["volumeClaimTemplates"][0]
    claim["spec"]["accessModes"] = "ReadWriteOnce"  # a list in the schema
    broken = example("StatefulSet")
    broken["spec"]["volumeClaimTemplates"] = [claim]
    assert builtin_errors(broken)
    policy = example("NetworkPolicy")
    policy["spec"]["ingress"][0]["from"][0]["namespaceSelectr"] = {}
    assert any("namespaceSelectr" in e for e in builtin_errors(policy))
    service = example("Service")
    service["spec"]["ports"][0]["port"] = "eighty"
    assert builtin_errors(service)


@pytest.mark.parametrize(
    "kind, breaks",
    [
        ("Rollout", lambda o: o["spec"]["strategy"]["canary"]["steps"][0].update(setWeight="x")),
        ("Rollout", lambda o: o["spec"]["strategy"]["canary"].update(stepz=[])),
        ("AnalysisTemplate", lambda o: o["spec"]["metrics"][0].pop("provider")),
        ("AnalysisTemplate", lambda o: o["spec"]["metrics"][0]["provider"].update(prometeus={})),
        ("InferenceService", lambda o: o["spec"]["predictor"]["logger"].update(mode="every")),
        ("InferenceService", lambda o: o["spec"]["predictor"].update(canaryTraffic=10)),
        ("ServiceMonitor", lambda o: o["spec"]["endpoints"][0].update(interval=30)),
        ("ServiceMonitor", lambda o: o["spec"]["endpoints"][0].update(metricsPath="/m")),
        ("PrometheusRule", lambda o: o["spec"]["groups"][0]["rules"][0].pop("expr")),
        ("PrometheusRule", lambda o: o["spec"]["groups"][0]["rules"][0].update(fore="5m")),
    ],
)
def test_custom_resource_validation_rejects_broken_objects(kind: str, breaks: Any) -> None:
    obj = example(kind)
    assert custom_errors(obj) == []
    breaks(obj)
    assert custom_errors(obj), f"a broken {kind} passed validation"
