"""deploy/kustomize/base/networkpolicy.yaml admits who it should: its rules evaluated for a few
peers with a small evaluator of NetworkPolicy's semantics (as the Kubernetes docs define them:
the rules of a policy and the peers of a rule are OR'ed; namespaceSelector and podSelector in
one peer are AND'ed; a peer without namespaceSelector means the policy's own namespace; no
`from` or no `ports` means all; a pod selected for Ingress takes only what some rule admits)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.manifests import BASE, PRODUCTION, Object, one, render

Labels = dict[str, str]


@dataclass(frozen=True)
class Pod:
    """A pod that connects: its namespace, that namespace's labels and its own labels."""

    namespace: str
    labels: Labels
    namespace_labels: Labels = field(default_factory=dict)

    def namespace_labels_as_served(self) -> Labels:
        # The API server labels every namespace with its name (Kubernetes 1.21+).
        return {**self.namespace_labels, "kubernetes.io/metadata.name": self.namespace}


def selects(selector: Object, labels: Labels) -> bool:
    """A LabelSelector: every matchLabels pair and matchExpression must hold; {} selects all."""
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values")
        held = {
            "In": key in labels and labels[key] in (values or []),
            "NotIn": key not in labels or labels[key] not in (values or []),
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[operator]
        if not held:
            return False
    return True


def peer_admits(peer: Object, source: Pod, policy_namespace: str) -> bool:
    assert "ipBlock" not in peer, "ipBlock peers are matched by address, not labels"
    if "namespaceSelector" in peer:
        namespace_ok = selects(peer["namespaceSelector"], source.namespace_labels_as_served())
    else:
        namespace_ok = source.namespace == policy_namespace
    return namespace_ok and selects(peer.get("podSelector") or {}, source.labels)


def port_admits(ports: list[Object] | None, port: int, named: dict[str, int]) -> bool:
    if not ports:
        return True
    for entry in ports:
        if entry.get("protocol", "TCP") != "TCP":
            continue
        if "port" not in entry:
            return True  # every port of the protocol
        given = entry["port"]
        first: int = named.get(given, -1) if isinstance(given, str) else given
        if first <= port <= int(entry.get("endPort", first)):
            return True
    return False


def admits(policy: Object, source: Pod, port: int, named_ports: dict[str, int]) -> bool:
    """Whether `policy` lets `source` open a TCP connection to `port` of a pod it selects."""
    spec = policy["spec"]
    if "Ingress" not in spec.get("policyTypes", ["Ingress"]):
        return True  # the policy does not isolate the pod for ingress
    namespace = policy["metadata"]["namespace"]
    return any(
        port_admits(rule.get("ports"), port, named_ports)
        and (
            not rule.get("from")
            or any(peer_admits(peer, source, namespace) for peer in rule["from"])
        )
        for rule in spec.get("ingress") or []
    )


def test_the_evaluator_follows_the_documented_semantics() -> None:
    """The docs' own contrast: one peer with both selectors (AND) against two peers (OR)."""
    both = {
        "namespaceSelector": {"matchLabels": {"user": "alice"}},
        "podSelector": {"matchLabels": {"role": "client"}},
    }
    either = [
        {"namespaceSelector": both["namespaceSelector"]},
        {"podSelector": both["podSelector"]},
    ]

    def policy(peers: list[Object], ports: list[Object] | None = None) -> Object:
        rule: Object = {"from": peers, **({"ports": ports} if ports else {})}
        spec = {"policyTypes": ["Ingress"], "ingress": [rule]}
        return {"metadata": {"namespace": "db"}, "spec": spec}

    alice_client = Pod("a", {"role": "client"}, {"user": "alice"})
    alice_other = Pod("a", {"role": "server"}, {"user": "alice"})
    db_client = Pod("db", {"role": "client"})
    bob_client = Pod("b", {"role": "client"}, {"user": "bob"})
    assert [admits(policy([both]), p, 80, {}) for p in (alice_client, alice_other, db_client)] == [
        True,
        False,
        False,
    ]
    assert [admits(policy(either), p, 80, {}) for p in (alice_other, db_client, bob_client)] == [
        True,
        True,
        False,  # a podSelector alone means the policy's own namespace
    ]
    named = policy([both], [{"port": "http", "protocol": "TCP"}])
    assert admits(named, alice_client, 8080, {"http": 8080})
    assert not admits(named, alice_client, 9090, {"http": 8080})
    ranged = policy([both], [{"port": 8000, "endPort": 8100}])
    assert admits(ranged, alice_client, 8080, {}) and not admits(ranged, alice_client, 9000, {})
    assert admits(policy([both], [{"protocol": "TCP"}]), alice_client, 9000, {})  # any port
    assert not admits(policy([both], [{"protocol": "UDP"}]), alice_client, 9000, {})
    isolated = {"metadata": {"namespace": "db"}, "spec": {"policyTypes": ["Ingress"]}}
    assert not admits(isolated, alice_client, 80, {})  # selected, no rule: nothing gets in


PROMETHEUS = Pod("monitoring", {"app.kubernetes.io/name": "prometheus", "prometheus": "k8s"})
GRAFANA = Pod("monitoring", {"app.kubernetes.io/name": "grafana"})
ALERTMANAGER = Pod("monitoring", {"app.kubernetes.io/name": "alertmanager"})
PREDICTOR = {"serving.kserve.io/inferenceservice": "credit", "component": "predictor"}
WATCHED = {"mlwatchdog.io/watched": "true"}


@pytest.mark.parametrize(
    "source, port, admitted",
    [
        (PROMETHEUS, 8080, True),  # /metrics
        (PROMETHEUS, 9090, False),  # only the http port
        (GRAFANA, 8080, True),  # alerts
        (ALERTMANAGER, 8080, True),
        (Pod("monitoring", {"app.kubernetes.io/name": "node-exporter"}), 8080, False),
        (Pod("default", {"app.kubernetes.io/name": "prometheus"}), 8080, False),  # not monitoring
        (Pod("default", {"app": "random"}), 8080, False),
        (Pod("models", PREDICTOR, WATCHED), 8080, True),  # KServe's logger
        (Pod("models", PREDICTOR), 8080, False),  # namespace not marked as watched
        (Pod("models", {"app": "batch-job"}, WATCHED), 8080, False),  # not an InferenceService
        (Pod("mlwatchdog", {"app": "debug"}), 8080, False),  # its own namespace too
        (Pod("argo-rollouts", {"app.kubernetes.io/name": "argo-rollouts"}), 8080, True),  # web
        (Pod("models", {"app.kubernetes.io/name": "argo-rollouts"}), 8080, False),
    ],
    ids=lambda v: v.namespace + "/" + next(iter(v.labels.values())) if isinstance(v, Pod) else None,
)
@pytest.mark.parametrize("directory", [BASE, PRODUCTION], ids=["base", "production"])
def test_the_policy_admits_the_sources_only(
    directory: Path, source: Pod, port: int, admitted: bool
) -> None:
    objs = render(directory)
    policy = one(objs, "NetworkPolicy")
    pod = one(objs, "StatefulSet")["spec"]["template"]
    assert policy["metadata"]["namespace"] == one(objs, "Namespace")["metadata"]["name"]
    assert selects(policy["spec"]["podSelector"], pod["metadata"]["labels"])
    assert policy["spec"]["policyTypes"] == ["Ingress"]  # calls out are not restricted
    [container] = pod["spec"]["containers"]
    named: dict[str, Any] = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert named == {"http": 8080}
    assert admits(policy, source, port, named) is admitted
