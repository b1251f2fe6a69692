"""The kustomize base and the production overlay render to the expected objects, and the objects
refer to each other correctly: ServiceAccount, ConfigMap, the auth Secret, both Services,
ServiceMonitor, PDB, NetworkPolicy, RBAC subjects, namespaces, ports, the volume that outlives the
pod, and the rules.yaml the StatefulSet runs; the production overlay changes only what it must."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.manifests import (
    BASE,
    PRODUCTION,
    Object,
    by_kind,
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
    "StatefulSet",
    "Service",  # the ClusterIP Service
    "Service",  # the StatefulSet's headless Service
    "NetworkPolicy",
    "PodDisruptionBudget",
    "ServiceMonitor",
    "PrometheusRule",
]
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding"}
DIRECTORIES = pytest.mark.parametrize("directory", [BASE, PRODUCTION], ids=["base", "production"])
DATA = "/var/lib/mlwatchdog"  # the StatefulSet's volume
AUTH = "/var/run/secrets/mlwatchdog"  # where the Secret mlwatchdog-auth is mounted
AUTH_SECRET = "mlwatchdog-auth"


def report_renderer(directory: Path) -> None:
    if renderer_used(directory) == "python":
        print(f"{directory}: rendered by tests/deploy/manifests.render_python (no kustomize)")


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


@DIRECTORIES
def test_renders_the_expected_objects(directory: Path) -> None:
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


def services(objs: list[Object]) -> tuple[Object, Object]:
    """(the ClusterIP Service, the headless one)."""
    found = by_kind(objs, "Service")
    [headless] = [s for s in found if s["spec"].get("clusterIP") == "None"]
    [cluster_ip] = [s for s in found if s is not headless]
    return cluster_ip, headless


def pod_volumes(statefulset: Object) -> dict[str, Object]:
    """Volumes by name, the volumeClaimTemplates among them (as {"claim": template})."""
    volumes = {v["name"]: v for v in statefulset["spec"]["template"]["spec"]["volumes"]}
    for claim in statefulset["spec"].get("volumeClaimTemplates", []):
        volumes[claim["metadata"]["name"]] = {"claim": claim}
    return volumes


@DIRECTORIES
def test_the_statefulset_lines_up_with_the_other_objects(directory: Path) -> None:
    objs = render(directory)
    statefulset = one(objs, "StatefulSet")
    namespace = statefulset["metadata"]["namespace"]
    pod = statefulset["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert selects(statefulset["spec"]["selector"]["matchLabels"], labels)

    # ServiceAccount
    account = one(objs, "ServiceAccount")
    assert pod["spec"]["serviceAccountName"] == account["metadata"]["name"]
    assert account["metadata"]["namespace"] == namespace

    # ConfigMap volume, mounted where the container's --config points
    config_map = one(objs, "ConfigMap")
    [container] = pod["spec"]["containers"]
    volumes = pod_volumes(statefulset)
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    rules_mount = mounts["/etc/mlwatchdog"]
    assert rules_mount.get("readOnly") is True and "subPath" not in rules_mount  # live updates
    assert volumes[rules_mount["name"]]["configMap"]["name"] == config_map["metadata"]["name"]
    config_path = container["args"][container["args"].index("--config") + 1]
    assert config_path == "/etc/mlwatchdog/rules.yaml"
    assert "rules.yaml" in config_map["data"]

    # The Secret of daemon.auth: a directory (a rotated token reaches the pod), read-only
    auth_mount = mounts[AUTH]
    assert auth_mount.get("readOnly") is True and "subPath" not in auth_mount
    assert volumes[auth_mount["name"]]["secret"]["secretName"] == AUTH_SECRET

    # Services: both select the pods on the container's named port; the headless one is the
    # StatefulSet's serviceName
    cluster_ip, headless = services(objs)
    container_ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for service in (cluster_ip, headless):
        assert selects(service["spec"]["selector"], labels)
        [port] = service["spec"]["ports"]
        assert port["name"] == "http" and port["port"] == 8080
        assert port["targetPort"] in container_ports
    assert cluster_ip["spec"]["type"] == "ClusterIP"
    assert statefulset["spec"]["serviceName"] == headless["metadata"]["name"]

    # ServiceMonitor: the ClusterIP Service only (each pod scraped once), its /metrics
    monitor = one(objs, "ServiceMonitor")
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selects(selector, cluster_ip["metadata"]["labels"])
    assert not selects(selector, headless["metadata"]["labels"])
    assert namespace in monitor["spec"]["namespaceSelector"]["matchNames"]
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "http" and endpoint["path"] == "/metrics"

    # PodDisruptionBudget and NetworkPolicy select the pods
    budget = one(objs, "PodDisruptionBudget")
    assert selects(budget["spec"]["selector"]["matchLabels"], labels)
    assert budget["spec"]["minAvailable"] == 1
    assert statefulset["spec"]["replicas"] == 2
    assert selects(one(objs, "NetworkPolicy")["spec"]["podSelector"]["matchLabels"], labels)


@DIRECTORIES
def test_the_pod_is_locked_down(directory: Path) -> None:
    statefulset = one(render(directory), "StatefulSet")
    pod = statefulset["spec"]["template"]["spec"]
    [container] = pod["containers"]
    security = container["securityContext"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert security["seccompProfile"]["type"] == "RuntimeDefault"
    resources = container["resources"]
    assert {"cpu", "memory"} <= set(resources["requests"])
    assert {"cpu", "memory"} <= set(resources["limits"])
    # The Secret's files: read by the daemon's group (fsGroup) only.
    assert pod_volumes(statefulset)["auth"]["secret"]["defaultMode"] == 0o440


@DIRECTORIES
def test_the_state_outlives_the_pod(directory: Path) -> None:
    """/var/lib/mlwatchdog is each replica's own PersistentVolumeClaim, writable by uid 10001
    (fsGroup) and kept when the StatefulSet is deleted or scaled down; /tmp stays an emptyDir."""
    statefulset = one(render(directory), "StatefulSet")
    pod = statefulset["spec"]["template"]["spec"]
    [container] = pod["containers"]
    volumes = pod_volumes(statefulset)
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    claim = volumes[mounts[DATA]]["claim"]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert claim["spec"]["resources"]["requests"]["storage"]
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsGroup"] == 10001
    assert statefulset["spec"]["persistentVolumeClaimRetentionPolicy"] == {
        "whenDeleted": "Retain",
        "whenScaled": "Retain",
    }
    assert "emptyDir" in volumes[mounts["/tmp"]]
    assert [path for path, name in mounts.items() if "emptyDir" in volumes[name]] == ["/tmp"]


@DIRECTORIES
def test_probes_and_environment(directory: Path) -> None:
    [container] = one(render(directory), "StatefulSet")["spec"]["template"]["spec"]["containers"]
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


def secret_env(container: Object) -> dict[str, str]:
    """Environment variables from the Secret mlwatchdog-auth: name -> key."""
    return {
        e["name"]: e["valueFrom"]["secretKeyRef"]["key"]
        for e in container.get("env", [])
        if e.get("valueFrom", {}).get("secretKeyRef", {}).get("name") == AUTH_SECRET
    }


@DIRECTORIES
def test_the_rules_fit_the_pod(directory: Path) -> None:
    """rules.yaml in the ConfigMap against the pod it runs in: port, paths on the volume,
    credentials from the Secret (never in the file), the RBAC they need, in-cluster credentials,
    dry run by default."""
    objs = render(directory)
    text = one(objs, "ConfigMap")["data"]["rules.yaml"]
    rules: dict[str, Any] = yaml.safe_load(text)
    daemon = rules["daemon"]
    [container] = one(objs, "StatefulSet")["spec"]["template"]["spec"]["containers"]
    assert daemon["http"] == {"host": "0.0.0.0", "port": container["ports"][0]["containerPort"]}
    paths = [daemon["state_dir"], daemon["audit_log"], daemon["bundles"]["path"]]
    paths += [daemon["reports"]["path"], *([daemon["sink"]["path"]] if "sink" in daemon else [])]
    for path in paths:
        assert path.startswith(DATA + "/"), f"{path}: not on the StatefulSet's volume"

    # Credentials: token files from the mounted Secret, values from its keys, none written here.
    auth = daemon["auth"]
    assert auth["tokens"] and not auth.get("basic") and not auth.get("anonymous")
    for token in auth["tokens"]:
        assert set(token) == {"name", "file", "roles"}, token
        assert token["file"].startswith(AUTH + "/"), token["file"]
    for entry in auth.get("sink_paths", []):
        assert re.fullmatch(r"\$\{[A-Z0-9_]+\}", entry["secret"]), "a literal secret in git"
    referenced = set(re.findall(r"\$\{([A-Za-z0-9_]+)", text))
    assert referenced <= set(secret_env(container)), "a ${VAR} the pod does not have"
    # ServiceAccount tokens of Grafana and Alertmanager need the TokenReview grant.
    assert {a["service_account"] for a in auth["kubernetes"]["service_accounts"]} == {
        "monitoring:grafana",
        "monitoring:alertmanager",
    }
    assert any(
        r["apiGroups"] == ["authentication.k8s.io"] and r["resources"] == ["tokenreviews"]
        for r in one(objs, "ClusterRole")["rules"]
    )

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
        assert target["workload"]["kind"] in ("argo-rollout", "kserve")
    # Each InferenceService that logs here authenticates with a path secret of its own.
    logged = {(s["namespace"], s["inference_service"]) for s in sources.values()
              if s["type"] == "kserve"}  # fmt: skip
    assert logged == {(p["namespace"], p["inference_service"]) for p in auth.get("sink_paths", [])}


def rules_of(objs: dict[tuple[str, str, str], Object]) -> dict[str, Any]:
    rules: dict[str, Any] = yaml.safe_load(
        objs[("ConfigMap", "mlwatchdog", "mlwatchdog-rules")]["data"]["rules.yaml"]
    )
    return rules


def test_the_overlay_changes_what_production_needs_only() -> None:
    base = {key(o): o for o in render(BASE)}
    production = {key(o): o for o in render(PRODUCTION)}
    assert base.keys() == production.keys()
    changed = {k for k in base if base[k] != production[k]}
    statefulset = ("StatefulSet", "mlwatchdog", "mlwatchdog")
    assert changed == {
        statefulset,  # image, resources, the Secret required, sink path secrets
        ("ConfigMap", "mlwatchdog", "mlwatchdog-rules"),  # rules with the KServe sink
        ("ServiceAccount", "mlwatchdog", "mlwatchdog"),  # the IRSA annotation
        ("ServiceMonitor", "mlwatchdog", "mlwatchdog"),  # `release: prometheus`
        ("PrometheusRule", "mlwatchdog", "mlwatchdog"),
    }

    pod_before = base[statefulset]["spec"]["template"]["spec"]
    pod_after = production[statefulset]["spec"]["template"]["spec"]
    [before] = pod_before["containers"]
    [after] = pod_after["containers"]
    assert before["image"] == "registry.example.com/mlwatchdog:0.1.0"
    assert after["image"] == "registry.internal.example.com/platform/mlwatchdog:0.1.0"
    assert after["resources"]["limits"]["memory"] == "4Gi"
    # The env gains the sink path secrets, from the Secret; nothing else in the container moves.
    assert secret_env(before) == {}
    assert secret_env(after) == {"MLWATCHDOG_SINK_PATH_MODELS_CREDIT": "sink-path-models-credit"}
    assert [e for e in after["env"] if e["name"] not in secret_env(after)] == before["env"]
    moved = ("image", "resources", "env")
    assert {k: v for k, v in after.items() if k not in moved} == {
        k: v for k, v in before.items() if k not in moved
    }
    # The Secret goes from optional (base: starts without it) to required; the rest is equal.
    auth_before = next(v for v in pod_before["volumes"] if v["name"] == "auth")
    auth_after = next(v for v in pod_after["volumes"] if v["name"] == "auth")
    assert auth_before["secret"]["optional"] is True and auth_after["secret"]["optional"] is False
    assert {**auth_after["secret"], "optional": True} == auth_before["secret"]
    assert [v for v in pod_after["volumes"] if v["name"] != "auth"] == [
        v for v in pod_before["volumes"] if v["name"] != "auth"
    ]
    assert {k: v for k, v in pod_after.items() if k not in ("containers", "volumes")} == {
        k: v for k, v in pod_before.items() if k not in ("containers", "volumes")
    }
    spec_before = {k: v for k, v in base[statefulset]["spec"].items() if k != "template"}
    assert {k: v for k, v in production[statefulset]["spec"].items() if k != "template"} == (
        spec_before
    )


def test_the_production_rules_are_the_base_rules_plus_the_kserve_sink() -> None:
    base = rules_of({key(o): o for o in render(BASE)})
    production = rules_of({key(o): o for o in render(PRODUCTION)})
    added = ("sink",)
    assert {k: v for k, v in production["daemon"].items() if k not in (*added, "auth")} == {
        k: v for k, v in base["daemon"].items() if k != "auth"
    }
    auth_before, auth_after = base["daemon"]["auth"], production["daemon"]["auth"]
    assert auth_after["kubernetes"] == auth_before["kubernetes"]
    assert auth_after["tokens"][: len(auth_before["tokens"])] == auth_before["tokens"]
    assert {t["name"]: t["roles"] for t in auth_after["tokens"][len(auth_before["tokens"]) :]} == {
        "sink-proxy": ["sink"]
    }
    assert {k: production["sources"][k] for k in base["sources"]} == base["sources"]
    assert production["targets"][: len(base["targets"])] == base["targets"]
    assert [t["workload"]["kind"] for t in production["targets"][len(base["targets"]) :]] == [
        "kserve"
    ]


@DIRECTORIES
def test_the_python_renderer_matches_kustomize(directory: Path) -> None:
    if kustomize_command() is None:
        pytest.skip("neither kustomize nor kubectl (with kustomize v4+) is installed")
    expected = {key(o): o for o in render_binary(directory)}
    actual = {key(o): o for o in render_python(directory)}
    assert actual == expected
