"""The kustomize base and the production overlay render to one of each object, and the objects
refer to each other correctly: ServiceAccount, ConfigMap, Service, ServiceMonitor, PDB, RBAC
subjects, namespaces, ports and the rules.yaml the Deployment runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.manifests import (
    BASE,
    PRODUCTION,
    key,
    kustomize_command,
    one,
    render,
    render_binary,
    render_python,
    renderer_used,
)

KINDS = [
    "Namespace",
    "ServiceAccount",
    "Role",
    "RoleBinding",
    "ClusterRole",
    "ClusterRoleBinding",
    "ConfigMap",
    "Deployment",
    "Service",
    "PodDisruptionBudget",
    "ServiceMonitor",
    "PrometheusRule",
]
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding"}
DIRECTORIES = pytest.mark.parametrize("directory", [BASE, PRODUCTION], ids=["base", "production"])


def report_renderer(directory: Path) -> None:
    if renderer_used(directory) == "python":
        print(f"{directory}: rendered by tests/deploy/manifests.render_python (no kustomize)")


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


@DIRECTORIES
def test_renders_exactly_one_of_each_kind(directory: Path) -> None:
    report_renderer(directory)
    objs = render(directory)
    assert sorted(o["kind"] for o in objs) == sorted(KINDS)
    assert len({key(o) for o in objs}) == len(objs)


@DIRECTORIES
def test_everything_lives_in_the_namespace(directory: Path) -> None:
    objs = render(directory)
    namespace = one(objs, "Namespace")["metadata"]["name"]
    for obj in objs:
        if obj["kind"] in CLUSTER_SCOPED:
            assert "namespace" not in obj["metadata"], key(obj)
        else:
            assert obj["metadata"].get("namespace") == namespace, key(obj)


@DIRECTORIES
def test_the_deployment_lines_up_with_the_other_objects(directory: Path) -> None:
    objs = render(directory)
    deployment = one(objs, "Deployment")
    namespace = deployment["metadata"]["namespace"]
    pod = deployment["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert selects(deployment["spec"]["selector"]["matchLabels"], labels)

    # ServiceAccount
    account = one(objs, "ServiceAccount")
    assert pod["spec"]["serviceAccountName"] == account["metadata"]["name"]
    assert account["metadata"]["namespace"] == namespace

    # ConfigMap volume, mounted where the container's --config points
    config_map = one(objs, "ConfigMap")
    [container] = pod["spec"]["containers"]
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    rules_mount = mounts["/etc/mlwatchdog"]
    assert rules_mount.get("readOnly") is True and "subPath" not in rules_mount  # live updates
    assert volumes[rules_mount["name"]]["configMap"]["name"] == config_map["metadata"]["name"]
    config_path = container["args"][container["args"].index("--config") + 1]
    assert config_path == "/etc/mlwatchdog/rules.yaml"
    assert "rules.yaml" in config_map["data"]

    # Service: selects the pods, targets the container's named port
    service = one(objs, "Service")
    assert selects(service["spec"]["selector"], labels)
    [port] = service["spec"]["ports"]
    assert port["name"] == "http" and port["port"] == 8080
    container_ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert port["targetPort"] in container_ports

    # ServiceMonitor: selects the Service, scrapes its named port's /metrics
    monitor = one(objs, "ServiceMonitor")
    assert selects(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
    assert namespace in monitor["spec"]["namespaceSelector"]["matchNames"]
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["port"] == port["name"] and endpoint["path"] == "/metrics"

    # PodDisruptionBudget
    budget = one(objs, "PodDisruptionBudget")
    assert selects(budget["spec"]["selector"]["matchLabels"], labels)
    assert budget["spec"]["minAvailable"] == 1
    assert deployment["spec"]["replicas"] == 2


@DIRECTORIES
def test_the_pod_is_locked_down(directory: Path) -> None:
    pod = one(render(directory), "Deployment")["spec"]["template"]["spec"]
    [container] = pod["containers"]
    security = container["securityContext"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert security["seccompProfile"]["type"] == "RuntimeDefault"
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    for writable in ("/var/lib/mlwatchdog", "/tmp"):
        assert "emptyDir" in volumes[mounts[writable]], writable
    resources = container["resources"]
    assert {"cpu", "memory"} <= set(resources["requests"])
    assert {"cpu", "memory"} <= set(resources["limits"])


@DIRECTORIES
def test_probes_and_environment(directory: Path) -> None:
    [container] = one(render(directory), "Deployment")["spec"]["template"]["spec"]["containers"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"


@DIRECTORIES
def test_rbac_binds_the_service_account(directory: Path) -> None:
    objs = render(directory)
    account = one(objs, "ServiceAccount")["metadata"]
    for binding_kind, role_kind in (("RoleBinding", "Role"), ("ClusterRoleBinding", "ClusterRole")):
        binding = one(objs, binding_kind)
        role = one(objs, role_kind)
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": role_kind,
            "name": role["metadata"]["name"],
        }
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": account["name"], "namespace": account["namespace"]}
        ]
    assert one(objs, "Role")["metadata"]["namespace"] == account["namespace"]


@DIRECTORIES
def test_the_rules_fit_the_pod(directory: Path) -> None:
    """rules.yaml in the ConfigMap against the pod it runs in: port, writable paths, the
    Lease RBAC allows, in-cluster credentials, dry run by default."""
    objs = render(directory)
    rules: dict[str, Any] = yaml.safe_load(one(objs, "ConfigMap")["data"]["rules.yaml"])
    daemon = rules["daemon"]
    [container] = one(objs, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert daemon["http"] == {"host": "0.0.0.0", "port": container["ports"][0]["containerPort"]}
    for path in (daemon["state_dir"], daemon["audit_log"]):
        assert path.startswith("/var/lib/mlwatchdog/"), path
    assert daemon["kubernetes"]["mode"] == "in-cluster"
    election = daemon["leader_election"]
    assert election["enabled"] is True
    lease_rules = [r for r in one(objs, "Role")["rules"] if "resourceNames" in r]
    assert [r["resourceNames"] for r in lease_rules] == [[election["lease"]]]
    sources = rules["sources"]
    assert sources["prometheus"] == {
        "type": "prometheus",
        "url": "http://prometheus-operated.monitoring.svc:9090",
        "timeout": "10s",
    }
    assert any(s["type"] == "files" and s["url"].startswith("s3://") for s in sources.values())
    for target in rules["targets"]:
        assert target["rollback"]["dry_run"] is True, f"{target['name']}: dry_run by default"
        assert target["workload"]["kind"] == "argo-rollout"


def test_the_overlay_changes_the_image_and_resources_only() -> None:
    base = {key(o): o for o in render(BASE)}
    production = {key(o): o for o in render(PRODUCTION)}
    assert base.keys() == production.keys()
    deployment = ("Deployment", "mlwatchdog", "mlwatchdog")
    [before] = base[deployment]["spec"]["template"]["spec"]["containers"]
    [after] = production[deployment]["spec"]["template"]["spec"]["containers"]
    assert before["image"] == "registry.example.com/mlwatchdog:0.1.0"
    assert after["image"] == "registry.internal.example.com/platform/mlwatchdog:0.1.0"
    assert after["resources"]["limits"]["memory"] == "4Gi"
    assert {k: v for k, v in after.items() if k not in ("image", "resources")} == {
        k: v for k, v in before.items() if k not in ("image", "resources")
    }
    changed = {k for k in base if base[k] != production[k]}
    assert changed == {
        deployment,
        ("ServiceAccount", "mlwatchdog", "mlwatchdog"),  # the IRSA annotation
        ("ServiceMonitor", "mlwatchdog", "mlwatchdog"),  # `release: prometheus`
        ("PrometheusRule", "mlwatchdog", "mlwatchdog"),
    }


@DIRECTORIES
def test_the_python_renderer_matches_kustomize(directory: Path) -> None:
    if kustomize_command() is None:
        pytest.skip("neither kustomize nor kubectl (with kustomize v4+) is installed")
    expected = {key(o): o for o in render_binary(directory)}
    actual = {key(o): o for o in render_python(directory)}
    assert actual == expected
