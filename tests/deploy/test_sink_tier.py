"""The KServe sink as its own tier (deploy/kustomize/components/sink-replicas, the overlay
production-sink, and the chart's `sink.enabled`): `mlwatchdog sink` pods behind their own
Service, on a ReadWriteMany volume the evaluating StatefulSet mounts at daemon.sink.path too.
Checked offline: every object validates; the sink pods run `sink` with the daemon's image, rules
and credentials; selectors keep the two tiers apart; the NetworkPolicy is closed; the sink's
ServiceAccount may only create TokenReviews; and the chart renders what kustomize renders."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.manifests import (
    BASE,
    PRODUCTION,
    PRODUCTION_SINK,
    SINK_COMPONENT,
    Object,
    by_kind,
    key,
    kustomize_command,
    render,
    render_binary,
    render_python,
)
from tests.deploy.test_helm import HELM, essentials, template, template_error
from tests.deploy.test_manifests import errors_of

NAMESPACE = "mlwatchdog"


def named(objs: list[Object], kind: str, name: str) -> Object:
    [found] = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def pod(obj: Object) -> Object:
    spec: Object = obj["spec"]["template"]["spec"]
    return spec


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def sink_rules(objs: list[Object]) -> dict[str, Any]:
    rules: dict[str, Any] = yaml.safe_load(
        named(objs, "ConfigMap", "mlwatchdog-rules")["data"]["rules.yaml"]
    )
    return rules


def check_sink_tier(objs: list[Object], prefix: str = "mlwatchdog") -> None:
    """What makes the sink tier work, whichever way it was rendered."""
    sink, daemon = named(objs, "Deployment", f"{prefix}-sink"), named(objs, "StatefulSet", prefix)
    [sink_container], [daemon_container] = pod(sink)["containers"], pod(daemon)["containers"]
    assert sink_container["args"] == ["sink", "--config", "/etc/mlwatchdog/rules.yaml"]
    assert sink_container["image"] == daemon_container["image"]
    assert sink_container.get("env", []) == [
        e for e in daemon_container["env"] if "secretKeyRef" in e.get("valueFrom", {})
    ], "the sink pods need the same secrets as environment variables"
    volumes = {v["name"]: v for v in pod(sink)["volumes"]}
    daemon_volumes = {v["name"]: v for v in pod(daemon)["volumes"]}
    for shared in ("rules", "auth", "sink"):
        assert volumes[shared] == daemon_volumes[shared], shared

    # One ReadWriteMany claim, mounted where the rules store and read the events, in both.
    claim = named(objs, "PersistentVolumeClaim", f"{prefix}-sink")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    assert volumes["sink"]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    path = sink_rules(objs)["daemon"]["sink"]["path"] if prefix == "mlwatchdog" else None
    for container in (sink_container, daemon_container):
        [mount] = [m for m in container["volumeMounts"] if m["name"] == "sink"]
        assert path is None or mount["mountPath"] == path
        assert not mount.get("readOnly")

    # The tiers apart: the daemon's Services, PDB and NetworkPolicy never select a sink pod (it
    # has no API), the sink's select the sink pods only.
    sink_labels = sink["spec"]["template"]["metadata"]["labels"]
    daemon_labels = daemon["spec"]["template"]["metadata"]["labels"]
    assert selects(sink["spec"]["selector"]["matchLabels"], sink_labels)
    assert not selects(sink["spec"]["selector"]["matchLabels"], daemon_labels)
    assert not selects(daemon["spec"]["selector"]["matchLabels"], sink_labels)
    for service in by_kind(objs, "Service"):
        picks_sink = selects(service["spec"]["selector"], sink_labels)
        assert picks_sink == (service["metadata"]["name"] == f"{prefix}-sink"), key(service)
        assert picks_sink != selects(service["spec"]["selector"], daemon_labels), key(service)
    for kind in ("PodDisruptionBudget", "NetworkPolicy"):
        for obj in by_kind(objs, kind):
            selector = (obj["spec"].get("selector") or obj["spec"]["podSelector"])["matchLabels"]
            is_sink = obj["metadata"]["name"] == f"{prefix}-sink"
            assert selects(selector, sink_labels) == is_sink, key(obj)

    # Closed: every ingress rule names its peers; the loggers and Prometheus may post.
    policy = named(objs, "NetworkPolicy", f"{prefix}-sink")["spec"]
    assert policy["policyTypes"] == ["Ingress"]
    assert all(rule["from"] for rule in policy["ingress"])
    peers = [p for rule in policy["ingress"] for p in rule["from"]]
    assert any("serving.kserve.io/inferenceservice" in str(p["podSelector"]) for p in peers)

    # Least privilege: the sink's ServiceAccount may create TokenReviews, nothing else.
    assert pod(sink)["serviceAccountName"] == f"{prefix}-sink"
    binding = named(objs, "ClusterRoleBinding", f"{prefix}-sink")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": f"{prefix}-sink", "namespace": NAMESPACE}
    ]
    role = named(objs, "ClusterRole", binding["roleRef"]["name"])
    assert role["rules"] == [
        {"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"], "verbs": ["create"]}
    ]
    assert not [
        b
        for b in [*by_kind(objs, "RoleBinding"), *by_kind(objs, "ClusterRoleBinding")]
        if b is not binding and any(s["name"] == f"{prefix}-sink" for s in b["subjects"])
    ]


# --- kustomize -----------------------------------------------------------------------------------


def test_production_sink_is_production_plus_the_sink_tier() -> None:
    objs = render(PRODUCTION_SINK)
    for obj in objs:
        assert errors_of(obj) == [], key(obj)
    check_sink_tier(objs)
    production = {key(o) for o in render(PRODUCTION)}
    added = {key(o) for o in objs} - production
    assert {k[0] for k in added} == {
        "PersistentVolumeClaim", "ServiceAccount", "ClusterRole", "ClusterRoleBinding",
        "Deployment", "Service", "NetworkPolicy", "PodDisruptionBudget", "ServiceMonitor",
    }  # fmt: skip
    assert production <= {key(o) for o in objs}
    # The rules need a kserve source, and the overlay's secrets reach the sink pods.
    rules = sink_rules(objs)
    assert any(s["type"] == "kserve" for s in rules["sources"].values())
    volumes = {v["name"]: v for v in pod(named(objs, "Deployment", "mlwatchdog-sink"))["volumes"]}
    assert volumes["auth"]["secret"]["optional"] is False


def test_the_python_renderer_matches_kustomize_for_the_sink_tier() -> None:
    if kustomize_command() is None:
        pytest.skip("neither kustomize nor kubectl (with kustomize v4+) is installed")
    expected = {key(o): o for o in render_binary(PRODUCTION_SINK)}
    assert {key(o): o for o in render_python(PRODUCTION_SINK)} == expected


# --- helm -----------------------------------------------------------------------------------------

helm_only = pytest.mark.skipif(HELM is None, reason="no helm binary: `make helm`")
PRODUCTION_RULES = (PRODUCTION / "rules.yaml").read_text(encoding="utf-8")


def base_with_the_component(folder: Path) -> list[Object]:
    """kustomize: the base, the sink component and the production rules (which have a kserve
    source): what the chart renders with sink.enabled and that config."""
    (folder / "rules.yaml").write_text(PRODUCTION_RULES, encoding="utf-8")
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [os.path.relpath(BASE, folder)],
        "components": [os.path.relpath(SINK_COMPONENT, folder)],
        "configMapGenerator": [
            {
                "name": "mlwatchdog-rules",
                "namespace": NAMESPACE,
                "behavior": "replace",
                "files": ["rules.yaml"],
                "options": {
                    "disableNameSuffixHash": True,
                    "labels": {
                        "app.kubernetes.io/name": "mlwatchdog",
                        "app.kubernetes.io/part-of": "mlwatchdog",
                    },
                },
            }
        ],
    }
    (folder / "kustomization.yaml").write_text(yaml.safe_dump(kustomization), encoding="utf-8")
    return render(folder)


@helm_only
def test_the_chart_renders_what_kustomize_renders_with_the_sink_tier(tmp_path: Path) -> None:
    chart = {
        key(o): o
        for o in template(
            {"namespace": {"create": True}, "config": PRODUCTION_RULES, "sink": {"enabled": True}}
        )
    }
    base = {key(o): o for o in base_with_the_component(tmp_path)}
    assert sorted(chart) == sorted(base)
    for k, obj in base.items():
        if k[0] == "Namespace":
            continue
        assert essentials(chart[k]) == essentials(obj), f"{k}: the chart and kustomize differ"
        for label in ("app.kubernetes.io/name", "app.kubernetes.io/part-of"):
            assert chart[k]["metadata"]["labels"][label] == obj["metadata"]["labels"][label], k
    check_sink_tier(list(chart.values()))


@helm_only
def test_the_sink_values() -> None:
    storage = {"size": "1Ti", "storageClassName": "efs"}
    env = [{"name": "MLWATCHDOG_SINK_PATH_MODELS_CREDIT", "key": "k"}]
    values = {
        "config": PRODUCTION_RULES,
        "sink": {"enabled": True, "replicas": 5, "storage": storage},
        "auth": {"optional": False, "env": env},
    }
    objs = template(values, release="fraud", namespace=NAMESPACE)
    for obj in objs:
        assert errors_of(obj) == [], key(obj)
    check_sink_tier(objs, prefix="fraud-mlwatchdog")
    assert named(objs, "Deployment", "fraud-mlwatchdog-sink")["spec"]["replicas"] == 5
    claim = named(objs, "PersistentVolumeClaim", "fraud-mlwatchdog-sink")["spec"]
    assert claim["storageClassName"] == "efs"
    assert claim["resources"]["requests"]["storage"] == "1Ti"
    # Off by default: the base's objects only.
    assert not [o for o in template() if o["metadata"]["name"].endswith("-sink")]


@helm_only
def test_the_sink_tier_needs_a_kserve_source_and_the_mounted_path() -> None:
    error = template_error({"sink": {"enabled": True}})  # the base rules read files only
    assert "no source of `type: kserve`" in error
    rules = yaml.safe_load(PRODUCTION_RULES)
    rules["daemon"]["sink"]["path"] = "/data/sink"
    error = template_error({"sink": {"enabled": True}, "config": rules})
    assert "set daemon.sink.path: /var/lib/mlwatchdog/sink" in error
    open_policy = {"sink": {"enabled": True, "networkPolicy": {"from": []}}}
    assert "sink.networkPolicy.from is empty" in template_error(
        {**open_policy, "config": PRODUCTION_RULES}
    )
