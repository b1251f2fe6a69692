"""Least privilege for the daemon's ServiceAccount (deploy/kustomize/base/rbac.yaml).

Two directions:
- what is granted equals EXPECTED below, written by hand with what uses each permission, and
  nothing is a wildcard;
- what the daemon really sends (its actuators, leader election and the TokenReview of a caller's
  ServiceAccount token, run against the fake kube-apiserver of tests/kube, mapped to RBAC rules by
  the daemon's own `rbac_rule`, the text its 403 errors print) is exactly what is granted: every
  request allowed, no grant unused.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import structlog
import yaml

from mlwatchdog.actions.actuator import KubeActuator
from mlwatchdog.actions.audit import AuditLog
from mlwatchdog.actions.kube_api import KubeApi, rbac_rule
from mlwatchdog.core import Decision, DecisionKind
from mlwatchdog.daemon.auth import Authenticator, kubernetes_reviewer
from mlwatchdog.daemon.leader import LeaderElector
from mlwatchdog.daemon.shards import lease_names
from mlwatchdog.rules import Target
from mlwatchdog.rules.schema import Auth, LeaderElection
from tests.deploy.manifests import BASE, PRODUCTION, Object, one, render
from tests.kube.apiserver import FakeKubeAPI
from tests.kube.deployment_controller import deployment_with_history, install_deployment_controller
from tests.kube.objects import (
    argo_canary,
    argo_workload_ref,
    install_argo_controller,
    install_kserve_controller,
    kserve_canary,
)
from tests.kube.targets import kube_target

# (scope, apiGroup, resource, verb): "cluster" is the ClusterRole (bound cluster-wide: the
# watched workloads live in other namespaces), "mlwatchdog" the Role in the daemon's namespace.
EXPECTED = {
    # Argo Rollouts (mlwatchdog/actions/actuator.py, argo.py)
    ("cluster", "argoproj.io", "rollouts", "get"),  # read before planning, verify, dry-run
    ("cluster", "argoproj.io", "rollouts", "patch"),  # undo: JSON patch of spec.template
    ("cluster", "argoproj.io", "rollouts/status", "patch"),  # abort: {"status":{"abort":true}}
    ("cluster", "apps", "replicasets", "list"),  # the Rollout's ReplicaSets, by its selector
    ("cluster", "apps", "deployments", "get"),  # a workloadRef Rollout's Deployment
    ("cluster", "apps", "deployments", "patch"),  # ... whose template is undone instead
    # KServe (actions/kserve.py)
    ("cluster", "serving.kserve.io", "inferenceservices", "get"),  # read, verify
    ("cluster", "serving.kserve.io", "inferenceservices", "patch"),  # canaryTrafficPercent 0
    ("cluster", "serving.knative.dev", "revisions", "get"),  # previous revision, for policy
    # GitOps pause-sync (actions/gitops): the Argo CD Application / Flux object that manages
    # the workload is read, its sync paused with the revert, and restored on resolve
    ("cluster", "argoproj.io", "applications", "get"),
    ("cluster", "argoproj.io", "applications", "patch"),
    ("cluster", "kustomize.toolkit.fluxcd.io", "kustomizations", "get"),
    ("cluster", "kustomize.toolkit.fluxcd.io", "kustomizations", "patch"),
    ("cluster", "helm.toolkit.fluxcd.io", "helmreleases", "get"),
    ("cluster", "helm.toolkit.fluxcd.io", "helmreleases", "patch"),
    # Flagger (actions/workloads/flagger.py): the Canary is read; Flagger rolls it back itself
    ("cluster", "flagger.app", "canaries", "get"),
    # Kubernetes Events on the rolled-back object (actuator.py `_event`)
    ("cluster", "", "events", "create"),
    # daemon.auth.kubernetes: callers' ServiceAccount tokens (daemon/auth.py kubernetes_reviewer)
    ("cluster", "authentication.k8s.io", "tokenreviews", "create"),
    # Leader election Lease (daemon/leader.py, kubernetes.leaderelection LeaseLock)
    ("mlwatchdog", "coordination.k8s.io", "leases", "create"),  # the first replica creates it
    ("mlwatchdog", "coordination.k8s.io", "leases", "get"),  # every replica reads it
    ("mlwatchdog", "coordination.k8s.io", "leases", "update"),  # renew, release (PUT)
}
# Grants limited to named objects: only the one Lease.
EXPECTED_NAMES = {("coordination.k8s.io", "leases", "get"): ["mlwatchdog"]}
EXPECTED_NAMES[("coordination.k8s.io", "leases", "update")] = ["mlwatchdog"]

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
Grant = tuple[str, str, str, str]


def grants(objs: list[Object]) -> tuple[set[Grant], dict[tuple[str, str, str], list[str]]]:
    """Every (scope, apiGroup, resource, verb) granted, and the resourceNames limits."""
    granted: set[Grant] = set()
    names: dict[tuple[str, str, str], list[str]] = {}
    for kind, scope in (("ClusterRole", "cluster"), ("Role", None)):
        role = one(objs, kind)
        for rule in role["rules"]:
            assert set(rule) <= {"apiGroups", "resources", "verbs", "resourceNames"}, rule
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    for verb in rule["verbs"]:
                        granted.add((scope or role["metadata"]["namespace"], group, resource, verb))
                        if "resourceNames" in rule:
                            names[(group, resource, verb)] = rule["resourceNames"]
    return granted, names


@pytest.mark.parametrize("directory", [BASE, PRODUCTION], ids=["base", "production"])
def test_granted_is_exactly_what_the_daemon_needs(directory: Path) -> None:
    objs = render(directory)
    granted, names = grants(objs)
    assert granted == EXPECTED, (
        f"granted but not expected: {sorted(granted - EXPECTED)}; "
        f"expected but not granted: {sorted(EXPECTED - granted)}"
    )
    assert names == EXPECTED_NAMES


def test_the_lease_names_granted_are_the_ones_the_shipped_config_leads() -> None:
    """rules.yaml's daemon.leader_election (lease, shards) names the Leases the daemon takes;
    rbac.yaml must grant exactly those (a changed shards needs rbac.yaml changed with it)."""
    rules = yaml.safe_load((BASE / "rules.yaml").read_text(encoding="utf-8"))
    election = LeaderElection(**rules["daemon"]["leader_election"])
    _, names = grants(render(BASE))
    for verb in ("get", "update"):
        assert names[("coordination.k8s.io", "leases", verb)] == lease_names(
            election.lease, election.shards
        )


def test_no_wildcards_or_dangerous_grants() -> None:
    for kind in ("Role", "ClusterRole"):
        for rule in one(render(BASE), kind)["rules"]:
            for field in ("apiGroups", "resources", "verbs", "resourceNames"):
                assert "*" not in rule.get(field, []), f"{kind}: wildcard in {field}"
            assert "nonResourceURLs" not in rule
            assert not {"escalate", "bind", "impersonate", "delete", "deletecollection"} & set(
                rule["verbs"]
            )
            assert not {"secrets", "pods/exec", "serviceaccounts/token"} & set(rule["resources"])
    # Only the ServiceAccount is bound; the ClusterRole is not aggregated into others.
    assert "aggregationRule" not in one(render(BASE), "ClusterRole")


# --- what the daemon really sends ----------------------------------------------------------------

_RULE = re.compile(
    r'^apiGroups: \["(?P<group>[^"]*)"\], resources: \["(?P<resource>[^"]+)"\], '
    r'verbs: \["(?P<verb>[^"]+)"\](?: in namespace (?P<ns>\S+))?$'
)


def needed(method: str, path: str) -> tuple[str, str, str, str | None]:
    """(apiGroup, resource, verb, namespace) of one request, by the daemon's own rbac_rule."""
    match = _RULE.match(rbac_rule(method, path))
    assert match, rbac_rule(method, path)
    return match["group"], match["resource"], match["verb"], match["ns"]


def roll_back(api: FakeKubeAPI, audit_path: Path, target: Target) -> None:
    kube = KubeApi(api.api_client(), timeout=5, attempts=2, sleep=lambda s: None)
    actuator = KubeActuator(
        kube, AuditLog(audit_path), structlog.get_logger(), "mlwatchdog-0", clock=lambda: NOW
    )
    decision = Decision(
        DecisionKind.ROLLBACK,
        target.name,
        "fraud-20261125T115500Z",
        NOW,
        ("drift fired",),
        to=target.rollback.to,
        dry_run=target.rollback.dry_run,
    )
    outcome = actuator.rollback(target, decision)
    assert outcome.ok, outcome.detail
    actuator.health(target)  # verification reads the workload


def lead_once(api: FakeKubeAPI, namespace: str, lease: str) -> None:
    """The daemon's LeaderElector takes the Lease, then releases it as on SIGTERM."""
    settings = LeaderElection(
        enabled=True,
        lease=lease,
        namespace=namespace,
        lease_duration=timedelta(seconds=3),
        renew_deadline=timedelta(seconds=2),
        retry_period=timedelta(seconds=1),
    )
    elector = LeaderElector(api.api_client(), settings, "mlwatchdog-0", structlog.get_logger())
    elector.start()
    deadline = time.monotonic() + 10
    while not elector.is_leader() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert elector.is_leader()
    elector.stop()  # reads the Lease and hands it back (PUT without holderIdentity)


def review_a_caller(api: FakeKubeAPI, auth: Auth) -> None:
    """Grafana posts an alert with its ServiceAccount token, as the shipped daemon.auth allows:
    the daemon's Authenticator has it reviewed through the Kubernetes API."""
    assert auth.kubernetes is not None
    rule = auth.kubernetes.service_accounts[0]
    namespace, name = rule.service_account.split(":")
    token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJncmFmYW5hIn0.c2lnbmF0dXJl"
    audiences = list(auth.kubernetes.audiences) or None  # None: the API server's own
    api.add_token(token, f"system:serviceaccount:{namespace}:{name}", audiences)
    kube = KubeApi(api.api_client(), timeout=5, attempts=2, sleep=lambda s: None)
    authenticator = Authenticator(lambda: auth, kubernetes_reviewer(kube))
    principal = authenticator.authenticate(f"Bearer {token}", "/api/v1/alerts")
    assert principal is not None and principal.roles == set(rule.roles)


def gitops_scenarios() -> list[tuple[str, Any, Target]]:
    """Workloads managed by Argo CD / Flux, rolled back with rollback.gitops.mode pause-sync."""
    from tests.integration.test_gitops import application, flux_object

    pause = {"mode": "pause-sync"}
    argo = argo_canary(step=2, steps=4)
    argo.rollout["metadata"].setdefault("labels", {})["app.kubernetes.io/instance"] = "fraud"
    found: list[tuple[str, Any, Target]] = [
        ("argo cd", SimpleNamespace(objects=[*argo.objects, application()]),
         kube_target("argo-rollout", gitops=pause)),
    ]  # fmt: skip
    for kind, group in (("Kustomization", "kustomize"), ("HelmRelease", "helm")):
        seed = kserve_canary(percent=10)
        seed.isvc["metadata"]["labels"] = {
            f"{group}.toolkit.fluxcd.io/name": "fraud",
            f"{group}.toolkit.fluxcd.io/namespace": "flux-system",
        }
        objects = SimpleNamespace(objects=[*seed.objects, flux_object(kind)])
        found.append((f"flux {kind}", objects, kube_target("kserve", gitops=pause)))
    return found


def flagger_canary() -> dict[str, Any]:
    """The shipped Canary example, mid-analysis: Flagger asks its rollback webhook."""
    from tests.integration.test_flagger_webhook import seeded_canary

    return seeded_canary("Progressing")


def test_every_request_the_daemon_sends_is_granted_and_every_grant_is_used(
    tmp_path: Path,
) -> None:
    objs = render(BASE)
    granted, names = grants(objs)
    namespace = one(objs, "Namespace")["metadata"]["name"]
    rules = yaml.safe_load(one(objs, "ConfigMap")["data"]["rules.yaml"])
    lease = rules["daemon"]["leader_election"]["lease"]

    requests: list[tuple[str, str]] = []
    scenarios = [
        ("argo canary, prior", argo_canary(step=2, steps=4), kube_target("argo-rollout")),
        ("argo workloadRef", argo_workload_ref(), kube_target("argo-rollout")),
        ("kserve canary, prior", kserve_canary(percent=10), kube_target("kserve")),
        ("deployment, prior", deployment_with_history(["fraud:1", "fraud:2"]),
         kube_target("deployment")),
        ("flagger canary", SimpleNamespace(objects=[flagger_canary()]),
         kube_target("flagger-canary")),
        *gitops_scenarios(),
    ]  # fmt: skip
    for i, (_name, seed, target) in enumerate(scenarios):
        with FakeKubeAPI() as api:
            api.seed(seed.objects)
            install_argo_controller(api)
            install_kserve_controller(api)
            if target.workload and target.workload.kind == "deployment":
                install_deployment_controller(api)
            roll_back(api, tmp_path / f"audit-{i}.jsonl", target)
            requests += [(r.method, r.path) for r in api.requests]
    with FakeKubeAPI() as api:
        lead_once(api, namespace, lease)
        review_a_caller(api, Auth.model_validate(rules["daemon"]["auth"]))
        requests += [(r.method, r.path) for r in api.requests]

    used: set[Grant] = set()
    for method, path in requests:
        group, resource, verb, ns = needed(method, path)
        scope = namespace if (ns == namespace and group == "coordination.k8s.io") else "cluster"
        grant = (scope, group, resource, verb)
        assert grant in granted, f"{method} {path} needs {rbac_rule(method, path)}"
        limited = names.get((group, resource, verb))
        if limited:
            assert path.rsplit("/", 1)[-1] in limited, f"{method} {path}: not a granted name"
        used.add(grant)
    assert used == granted, f"granted but never used: {sorted(granted - used)}"
