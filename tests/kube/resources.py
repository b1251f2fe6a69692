"""The resource types the fake serves, and how a request path maps onto them.

Paths are exactly the real ones: `/api/v1/...` for the core group, `/apis/{group}/{version}/...`
otherwise, `namespaces/{ns}/{plural}[/{name}[/{subresource}]]`, plus the cluster-wide list
`/apis/{group}/{version}/{plural}`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ResourceType:
    group: str  # "" for the core group
    version: str
    plural: str
    kind: str
    status_subresource: bool = False
    custom: bool = False  # served from a CRD: no strategic merge patch, schema validation
    generation: bool = True  # metadata.generation is maintained (not for leases, events)
    # Objects are stored under this key; two API groups can serve one storage (events).
    storage: str = ""

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def prefix(self) -> str:
        return f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"

    @property
    def store_key(self) -> str:
        return self.storage or f"{self.plural}.{self.group}"

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"


ROLLOUTS = ResourceType(
    "argoproj.io", "v1alpha1", "rollouts", "Rollout", status_subresource=True, custom=True
)
INFERENCE_SERVICES = ResourceType(
    "serving.kserve.io",
    "v1beta1",
    "inferenceservices",
    "InferenceService",
    status_subresource=True,
    custom=True,
)
REVISIONS = ResourceType(
    "serving.knative.dev", "v1", "revisions", "Revision", status_subresource=True, custom=True
)
# GitOps controllers (issue 13): Argo CD's Application CRD declares `subresources: {}` (status is
# part of the object); Flux's Kustomization and HelmRelease have a status subresource.
APPLICATIONS = ResourceType("argoproj.io", "v1alpha1", "applications", "Application", custom=True)
KUSTOMIZATIONS = ResourceType(
    "kustomize.toolkit.fluxcd.io", "v1", "kustomizations", "Kustomization",
    status_subresource=True, custom=True,
)  # fmt: skip
HELM_RELEASES = ResourceType(
    "helm.toolkit.fluxcd.io", "v2", "helmreleases", "HelmRelease",
    status_subresource=True, custom=True,
)  # fmt: skip
# Flagger's Canary (the flagger-canary driver reads it; tests/kube/crds vendors its CRD).
CANARIES = ResourceType(
    "flagger.app", "v1beta1", "canaries", "Canary", status_subresource=True, custom=True
)
REPLICA_SETS = ResourceType("apps", "v1", "replicasets", "ReplicaSet", status_subresource=True)
DEPLOYMENTS = ResourceType("apps", "v1", "deployments", "Deployment", status_subresource=True)
LEASES = ResourceType("coordination.k8s.io", "v1", "leases", "Lease", generation=False)
# Both event APIs are views of one storage: an event created through either lists through both.
CORE_EVENTS = ResourceType("", "v1", "events", "Event", generation=False, storage="events")
EVENTS = ResourceType("events.k8s.io", "v1", "events", "Event", generation=False, storage="events")

RESOURCES = (
    ROLLOUTS,
    INFERENCE_SERVICES,
    REVISIONS,
    CANARIES,
    APPLICATIONS,
    KUSTOMIZATIONS,
    HELM_RELEASES,
    REPLICA_SETS,
    DEPLOYMENTS,
    LEASES,
    CORE_EVENTS,
    EVENTS,
)
BY_PREFIX_AND_PLURAL = {(r.prefix, r.plural): r for r in RESOURCES}
BY_API_VERSION_AND_KIND = {(r.api_version, r.kind): r for r in RESOURCES if r is not CORE_EVENTS}
BY_API_VERSION_AND_KIND[("v1", "Event")] = CORE_EVENTS


def by_plural(api_version: str, plural: str) -> ResourceType:
    for r in RESOURCES:
        if r.api_version == api_version and r.plural == plural:
            return r
    raise KeyError(f"FakeKubeAPI does not serve {plural} in {api_version}")


def by_kind(api_version: str, kind: str) -> ResourceType:
    try:
        return BY_API_VERSION_AND_KIND[(api_version, kind)]
    except KeyError:
        raise KeyError(f"FakeKubeAPI does not serve {kind} in {api_version}") from None


@dataclass(frozen=True)
class Target:
    """What a request path addresses."""

    rtype: ResourceType
    namespace: str  # "" for a cluster-wide list
    name: str  # "" for a collection
    subresource: str  # "" or "status"


_PATH = re.compile(
    r"^(?P<prefix>/api/v1|/apis/[^/]+/[^/]+)"
    r"(?:/namespaces/(?P<ns>[^/]+))?"
    r"/(?P<plural>[^/]+)(?:/(?P<name>[^/]+)(?:/(?P<sub>[^/]+))?)?/?$"
)


def parse_path(path: str) -> Target | None:
    m = _PATH.match(path)
    if not m:
        return None
    rtype = BY_PREFIX_AND_PLURAL.get((m["prefix"], m["plural"]))
    if rtype is None:
        return None
    if m["ns"] is None and m["name"]:  # every type served here is namespaced
        return None
    return Target(rtype, m["ns"] or "", m["name"] or "", m["sub"] or "")


def object_path(rtype: ResourceType, namespace: str, name: str, subresource: str = "") -> str:
    path = f"{rtype.prefix}/namespaces/{namespace}/{rtype.plural}/{name}"
    return f"{path}/{subresource}" if subresource else path


def discovery(path: str) -> dict[str, Any] | None:
    """Just enough discovery for tools that look (the typed client calls do not)."""
    if path == "/version":
        return {
            "major": "1",
            "minor": "33",
            "gitVersion": "v1.33.0-fakekubeapi",
            "platform": "linux/amd64",
        }
    if path == "/api":
        return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
    if path == "/apis":
        groups: dict[str, list[str]] = {}
        for r in RESOURCES:
            if r.group and r.version not in groups.setdefault(r.group, []):
                groups[r.group].append(r.version)
        return {
            "kind": "APIGroupList",
            "apiVersion": "v1",
            "groups": [
                {
                    "name": g,
                    "versions": [{"groupVersion": f"{g}/{v}", "version": v} for v in vs],
                    "preferredVersion": {"groupVersion": f"{g}/{vs[0]}", "version": vs[0]},
                }
                for g, vs in groups.items()
            ],
        }
    served = [r for r in RESOURCES if r.prefix == path.rstrip("/")]
    if not served:
        return None
    verbs = ["create", "delete", "get", "list", "patch", "update"]
    resources = []
    for r in served:
        resources.append(
            {
                "name": r.plural,
                "singularName": r.kind.lower(),
                "namespaced": True,
                "kind": r.kind,
                "verbs": verbs,
            }
        )
        if r.status_subresource:
            resources.append(
                {
                    "name": f"{r.plural}/status",
                    "singularName": "",
                    "namespaced": True,
                    "kind": r.kind,
                    "verbs": ["get", "patch", "update"],
                }
            )
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": served[0].api_version,
        "resources": resources,
    }
