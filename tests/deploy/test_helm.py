"""The Helm chart (deploy/helm/mlwatchdog), linted and rendered by a real helm binary (`make helm`
installs it into .venv/bin; see deploy/helm/install_helm.py):
- every object it renders, with default values and with every toggle, validates against the
  Kubernetes schemas and the prometheus-operator CRDs, like the kustomize manifests;
- the defaults are closed: a NetworkPolicy, credentials required, least-privilege RBAC, rules
  that pass `mlwatchdog check`, dry run;
- released as mlwatchdog in namespace mlwatchdog it renders the kustomize base's objects with the
  same specs (container args, env, ports, probes, security, volumes, RBAC rules, alerts,
  rules.yaml), so the two ways to install cannot drift apart;
- each value does what values.yaml says, and bad values fail the render with a clear message.
"""

from __future__ import annotations

import copy
import functools
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlwatchdog.daemon.shards import lease_names
from tests.deploy.manifests import BASE, DEPLOY, Object, by_kind, key, one, render
from tests.deploy.test_manifests import errors_of
from tests.deploy.test_rbac import EXPECTED, EXPECTED_NAMES, grants
from tests.deploy.test_rules_check import mlwatchdog

CHART = DEPLOY / "helm" / "mlwatchdog"
RELEASE = NAMESPACE = "mlwatchdog"


def helm_binary() -> str | None:
    beside = Path(sys.executable).with_name("helm")
    return str(beside) if beside.exists() else shutil.which("helm")


HELM = helm_binary()
pytestmark = pytest.mark.skipif(
    HELM is None, reason="no helm binary: `make helm` installs it into .venv/bin (linux-amd64)"
)


def helm(*args: str, values: dict[str, Any] | None = None) -> subprocess.CompletedProcess[str]:
    """helm ARGS [-f values.yaml], with its homes in a temporary folder (no user config)."""
    assert HELM is not None
    with tempfile.TemporaryDirectory() as home:
        command = [HELM, *args]
        if values is not None:
            # A values file rather than --set: config holds YAML with commas and braces.
            path = Path(home) / "values.yaml"
            path.write_text(yaml.safe_dump(values), encoding="utf-8")
            command += ["-f", str(path)]
        env = {**os.environ, "HOME": home}
        for name in ("HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"):
            env[name] = str(Path(home) / name)
        return subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)


@functools.cache
def _template(values_yaml: str, release: str, namespace: str) -> tuple[Object, ...]:
    values = yaml.safe_load(values_yaml)
    done = helm("template", release, str(CHART), "--namespace", namespace, values=values)
    assert done.returncode == 0, f"helm template failed:\n{done.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(done.stdout) if doc is not None)


def template(
    values: dict[str, Any] | None = None, release: str = RELEASE, namespace: str = NAMESPACE
) -> list[Object]:
    """The objects `helm template` renders (a fresh copy each call)."""
    return copy.deepcopy(list(_template(yaml.safe_dump(values or {}), release, namespace)))


def template_error(values: dict[str, Any]) -> str:
    done = helm("template", RELEASE, str(CHART), "--namespace", NAMESPACE, values=values)
    assert done.returncode != 0, "the render should have failed"
    return done.stderr


def container(objs: list[Object]) -> Object:
    [only] = one(objs, "StatefulSet")["spec"]["template"]["spec"]["containers"]
    return dict(only)


def rules_of(objs: list[Object]) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(one(objs, "ConfigMap")["data"]["rules.yaml"])
    return loaded


ALL_OFF = {
    "networkPolicy": {"enabled": False},
    "serviceMonitor": {"enabled": False},
    "prometheusRule": {"enabled": False},
    "podDisruptionBudget": {"enabled": False},
}
ALL_ON = {
    "namespace": {"create": True},
    "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
    "prometheusRule": {"enabled": True, "labels": {"release": "prometheus"}},
    "auth": {"optional": False, "env": [{"name": "MLWATCHDOG_SINK_PATH_X", "key": "sink-x"}]},
    "image": {"digest": "sha256:" + "a" * 64},
    "imagePullSecrets": [{"name": "regcred"}],
    "serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/r"}},
    "podAnnotations": {"example.com/team": "ml"},
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "tolerations": [{"key": "ml", "operator": "Exists", "effect": "NoSchedule"}],
    "persistence": {"size": "50Gi", "storageClassName": "fast"},
}
VALUE_SETS = pytest.mark.parametrize(
    "values", [{}, ALL_OFF, ALL_ON], ids=["defaults", "toggles-off", "everything-set"]
)


# --- helm itself --------------------------------------------------------------------------------


@VALUE_SETS
def test_helm_lint_strict_passes(values: dict[str, Any]) -> None:
    done = helm("lint", "--strict", str(CHART), "--namespace", NAMESPACE, values=values)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 chart(s) failed" in done.stdout


@VALUE_SETS
def test_every_rendered_object_validates(values: dict[str, Any]) -> None:
    objs = template(values)
    assert len({key(o) for o in objs}) == len(objs), "two objects with one name"
    for obj in objs:
        assert errors_of(obj) == [], f"{obj['kind']} {obj['metadata']['name']}"


# --- closed by default --------------------------------------------------------------------------


def test_the_defaults_are_closed(tmp_path: Path) -> None:
    objs = template()
    labels = one(objs, "StatefulSet")["spec"]["template"]["metadata"]["labels"]
    policy = one(objs, "NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress"]
    assert all(
        policy["podSelector"]["matchLabels"][k] == v
        for k, v in labels.items()
        if k in policy["podSelector"]["matchLabels"]
    )
    assert all(rule["from"] for rule in policy["ingress"]), "an ingress rule open to everyone"

    # Credentials required: tokens from the mounted Secret and ServiceAccount tokens, no
    # anonymous access; dry run until the user says otherwise.
    rules = rules_of(objs)
    auth = rules["daemon"]["auth"]
    assert auth["tokens"] and auth["kubernetes"]["service_accounts"]
    assert not auth.get("anonymous") and not auth.get("basic")
    assert all(t["rollback"]["dry_run"] is True for t in rules["targets"])

    # The rules pass the daemon's own check.
    path = tmp_path / "rules.yaml"
    path.write_text(one(objs, "ConfigMap")["data"]["rules.yaml"], encoding="utf-8")
    done = subprocess.run(
        [*mlwatchdog(), "check", str(path)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr

    # Least privilege: exactly what the daemon sends (tests/deploy/test_rbac.py).
    granted, names = grants(objs)
    assert granted == EXPECTED
    assert names == EXPECTED_NAMES


@pytest.mark.parametrize(
    "toggle, kind",
    [
        ("networkPolicy", "NetworkPolicy"),
        ("serviceMonitor", "ServiceMonitor"),
        ("prometheusRule", "PrometheusRule"),
        ("podDisruptionBudget", "PodDisruptionBudget"),
    ],
)
def test_each_toggle_adds_or_removes_its_object(toggle: str, kind: str) -> None:
    assert len(by_kind(template(), kind)) == 1
    assert by_kind(template({toggle: {"enabled": False}}), kind) == []


def test_the_namespace_object_is_optional_and_restricted() -> None:
    assert by_kind(template(), "Namespace") == []
    namespace = one(template({"namespace": {"create": True}}), "Namespace")["metadata"]
    assert namespace["name"] == NAMESPACE
    assert namespace["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


# --- the chart and the kustomize base agree -----------------------------------------------------


def essentials(obj: Object) -> Object:
    """What an object does, without the labels helm adds (chart, version, managed-by)."""
    body = {k: copy.deepcopy(v) for k, v in obj.items() if k not in ("metadata",)}
    spec = body.get("spec") or {}
    if "template" in spec:
        spec["template"].pop("metadata", None)
    for claim in spec.get("volumeClaimTemplates", []):
        claim.pop("metadata", None)
    return body


def test_the_chart_renders_what_kustomize_renders() -> None:
    chart = {key(o): o for o in template({"namespace": {"create": True}})}
    base = {key(o): o for o in render(BASE)}
    assert sorted(chart) == sorted(base)
    for k, obj in base.items():
        if k[0] == "Namespace":
            assert chart[k]["metadata"]["labels"] == obj["metadata"]["labels"]
            continue
        assert essentials(chart[k]) == essentials(obj), f"{k}: the chart and kustomize differ"
        # The selector labels (what Services, the PDB and the NetworkPolicy select) are there.
        for label in ("app.kubernetes.io/name", "app.kubernetes.io/part-of"):
            assert chart[k]["metadata"]["labels"][label] == obj["metadata"]["labels"][label], k

    # Spelled out, the essentials the brief names (already inside the comparison above).
    ours, theirs = container(list(chart.values())), container(list(base.values()))
    for field in (
        "image",
        "args",
        "env",
        "ports",
        "startupProbe",
        "livenessProbe",
        "readinessProbe",
        "securityContext",
        "volumeMounts",
        "resources",
    ):
        assert ours[field] == theirs[field], field


def test_the_chart_ships_the_kustomize_rules_and_alerts() -> None:
    """files/ holds copies (helm reads no file outside the chart): equal, byte for byte."""
    for name in ("rules.yaml", "prometheusrule.yaml"):
        assert (CHART / "files" / name).read_bytes() == (BASE / name).read_bytes(), (
            f"deploy/helm/mlwatchdog/files/{name} differs from deploy/kustomize/base/{name}: "
            "copy the one you changed over the other"
        )


# --- values -------------------------------------------------------------------------------------


def test_image_tag_digest_and_pull_secrets() -> None:
    assert container(template())["image"] == "registry.example.com/mlwatchdog:0.1.0"
    tagged = {"image": {"repository": "ghcr.io/acme/mlwatchdog", "tag": "3f2c1ab"}}
    assert container(template(tagged))["image"] == "ghcr.io/acme/mlwatchdog:3f2c1ab"
    digest = "sha256:" + "b" * 64
    pinned = template(
        {"image": {"tag": "0.2.0", "digest": digest}, "imagePullSecrets": [{"name": "regcred"}]}
    )
    assert container(pinned)["image"] == f"registry.example.com/mlwatchdog@{digest}"
    pod = one(pinned, "StatefulSet")["spec"]["template"]["spec"]
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]


def test_replicas_resources_and_persistence() -> None:
    resources = {"requests": {"cpu": "1", "memory": "4Gi"}, "limits": {"cpu": "4", "memory": "8Gi"}}
    objs = template(
        {
            "replicas": 3,
            "resources": resources,
            "persistence": {"size": "50Gi", "storageClassName": "fast"},
        }
    )
    statefulset = one(objs, "StatefulSet")["spec"]
    assert statefulset["replicas"] == 3
    assert container(objs)["resources"] == resources
    [claim] = statefulset["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "50Gi"
    assert claim["spec"]["storageClassName"] == "fast"


def test_tokens_come_from_the_existing_secret() -> None:
    values = {
        "auth": {
            "existingSecret": "team-tokens",
            "optional": False,
            "env": [{"name": "MLWATCHDOG_SINK_PATH_X", "key": "sink-x"}],
        }
    }
    objs = template(values)
    volumes = {
        v["name"]: v for v in one(objs, "StatefulSet")["spec"]["template"]["spec"]["volumes"]
    }
    assert volumes["auth"]["secret"] == {
        "secretName": "team-tokens",
        "optional": False,
        "defaultMode": 0o440,
    }
    env = {e["name"]: e["valueFrom"] for e in container(objs)["env"]}
    assert env["MLWATCHDOG_SINK_PATH_X"] == {
        "secretKeyRef": {"name": "team-tokens", "key": "sink-x"}
    }
    assert not by_kind(objs, "Secret"), "the chart must never hold a credential"


def own_config(port: int, lease: str) -> dict[str, Any]:
    rules: dict[str, Any] = yaml.safe_load((BASE / "rules.yaml").read_text(encoding="utf-8"))
    rules["daemon"]["http"]["port"] = port
    rules["daemon"]["leader_election"]["lease"] = lease
    return rules


@pytest.mark.parametrize("as_text", [True, False], ids=["string", "map"])
def test_the_config_sets_the_rules_port_and_lease(as_text: bool) -> None:
    rules = own_config(9090, "fraud-watchdog")
    objs = template({"config": yaml.safe_dump(rules) if as_text else rules})
    assert rules_of(objs) == rules
    assert container(objs)["ports"] == [{"name": "http", "containerPort": 9090, "protocol": "TCP"}]
    for service in by_kind(objs, "Service"):
        assert service["spec"]["ports"][0]["port"] == 9090
    [_, named] = one(objs, "Role")["rules"]
    assert named["resourceNames"] == ["fraud-watchdog"]


def test_shards_grant_each_shard_lease_by_name() -> None:
    """daemon.leader_election.shards: 3: the Role names the three Leases the elector takes
    (mlwatchdog/daemon/shards.py lease_names), and no other."""
    rules = own_config(8080, "fraud-watchdog")
    rules["daemon"]["leader_election"]["shards"] = 3
    [create, named] = one(template({"config": rules}), "Role")["rules"]
    assert named["resourceNames"] == lease_names("fraud-watchdog", 3)
    assert named["verbs"] == ["get", "update"] and "resourceNames" not in create


def test_another_release_name_names_everything_after_it() -> None:
    objs = template(release="fraud", namespace="ml-ops")
    assert {o["metadata"]["name"] for o in objs} == {
        "fraud-mlwatchdog",
        "fraud-mlwatchdog-rules",
        "fraud-mlwatchdog-pods",
        "fraud-mlwatchdog-leader-election",
    }
    statefulset = one(objs, "StatefulSet")
    assert statefulset["spec"]["serviceName"] == "fraud-mlwatchdog-pods"
    assert statefulset["spec"]["template"]["spec"]["serviceAccountName"] == "fraud-mlwatchdog"
    for obj in objs:
        if obj["kind"] not in ("ClusterRole", "ClusterRoleBinding"):
            assert obj["metadata"]["namespace"] == "ml-ops", key(obj)
    assert one(objs, "ClusterRoleBinding")["subjects"][0]["namespace"] == "ml-ops"


# --- bad values fail the render, saying what to do ----------------------------------------------


def test_a_loopback_host_is_refused() -> None:
    rules = own_config(8080, "mlwatchdog")
    rules["daemon"]["http"]["host"] = "127.0.0.1"
    assert "set daemon.http.host: 0.0.0.0" in template_error({"config": rules})


def test_replicas_without_leader_election_are_refused() -> None:
    rules = own_config(8080, "mlwatchdog")
    rules["daemon"]["leader_election"]["enabled"] = False
    error = template_error({"config": rules})
    assert "daemon.leader_election.enabled: false" in error and "replicas: 1" in error
    assert one(template({"config": rules, "replicas": 1}), "StatefulSet")["spec"]["replicas"] == 1


def test_an_open_network_policy_is_refused() -> None:
    assert "networkPolicy.from is empty" in template_error({"networkPolicy": {"from": []}})


def test_a_config_that_is_not_yaml_is_refused() -> None:
    assert "config: not YAML" in template_error({"config": "daemon: [unclosed"})


def test_a_misspelt_value_is_refused_naming_it() -> None:
    """values.schema.json: a typo is an error, not a silently ignored setting."""
    error = template_error({"networkPolicy": {"enabeld": False}})
    assert "/networkPolicy" in error and "'enabeld' not allowed" in error
    assert "'replicsa' not allowed" in template_error({"replicsa": 3})
