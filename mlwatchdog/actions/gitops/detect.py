"""Who else reconciles a workload: Argo CD or Flux, told from the object itself. Pure.

Upstream behaviour followed:
- Argo CD tracks a resource by the label `app.kubernetes.io/instance` (the default tracking
  method) or the annotation `argocd.argoproj.io/tracking-id`, whose value is
  `<app>:<group>/<kind>:<namespace>/<name>` (argo-cd common/common.go LabelKeyAppInstance,
  AnnotationKeyAppInstance; util/argo/resource_tracking.go ParseAppInstanceValue). The app name
  is `<namespace>_<app>` for an Application outside Argo CD's own namespace
  (pkg/apis/application/v1alpha1/types.go Application.InstanceName).
- Flux's kustomize-controller labels what it applies `kustomize.toolkit.fluxcd.io/name` and
  `.../namespace` (internal/controller/kustomization_controller.go: ssa.Owner{Group:
  kustomizev1.GroupVersion.Group} and SetOwnerLabels); helm-controller
  `helm.toolkit.fluxcd.io/name` and `.../namespace` (internal/postrender/common_renderer.go
  originLabels).
Flux labels are checked first: a Helm chart applied by Flux commonly also carries
`app.kubernetes.io/instance` (set by the chart, not by Argo CD).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

ARGO_LABEL = "app.kubernetes.io/instance"
ARGO_ANNOTATION = "argocd.argoproj.io/tracking-id"
FLUX_KUSTOMIZE = "kustomize.toolkit.fluxcd.io"
FLUX_HELM = "helm.toolkit.fluxcd.io"

Controller = Literal["argocd", "flux-kustomization", "flux-helmrelease"]

# controller -> (API prefix, plural, kind)
RESOURCES: dict[str, tuple[str, str, str]] = {
    "argocd": ("/apis/argoproj.io/v1alpha1", "applications", "Application"),
    "flux-kustomization": (
        "/apis/kustomize.toolkit.fluxcd.io/v1",
        "kustomizations",
        "Kustomization",
    ),
    "flux-helmrelease": ("/apis/helm.toolkit.fluxcd.io/v2", "helmreleases", "HelmRelease"),
}


@dataclass(frozen=True)
class Manager:
    """The GitOps object that reconciles a workload, and the evidence it was found by."""

    controller: Controller
    name: str
    namespace: str
    evidence: str  # e.g. "label app.kubernetes.io/instance=fraud"

    @property
    def kind(self) -> str:
        return RESOURCES[self.controller][2]

    @property
    def path(self) -> str:
        prefix, plural, _ = RESOURCES[self.controller]
        return f"{prefix}/namespaces/{self.namespace}/{plural}/{self.name}"

    def describe(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


def parse_tracking_id(value: str) -> tuple[str, str, str, str, str] | None:
    """(app, group, kind, namespace, name) of an Argo CD tracking id, or None when malformed
    (as ParseAppInstanceValue: three ':' parts, the last two with exactly one '/')."""
    parts = value.split(":", 2)
    if len(parts) != 3:
        return None
    group_kind, ns_name = parts[1].split("/"), parts[2].split("/")
    if len(group_kind) != 2 or len(ns_name) != 2:
        return None
    return parts[0], group_kind[0], group_kind[1], ns_name[0], ns_name[1]


def _argo_app(instance: str, default_ns: str) -> tuple[str, str]:
    """(namespace, name) of an Argo CD instance name: `<ns>_<app>` or `<app>`."""
    if "_" in instance:
        namespace, name = instance.split("_", 1)
        return namespace, name
    return default_ns, instance


def manager_of(obj: dict[str, Any], argocd_namespace: str = "argocd") -> Manager | None:
    """The Argo CD Application or Flux object that reconciles `obj`, or None."""
    meta = obj.get("metadata") or {}
    labels: dict[str, str] = meta.get("labels") or {}
    annotations: dict[str, str] = meta.get("annotations") or {}
    own_ns = str(meta.get("namespace") or "default")
    for group, controller in (
        (FLUX_KUSTOMIZE, "flux-kustomization"),
        (FLUX_HELM, "flux-helmrelease"),
    ):
        name = labels.get(f"{group}/name")
        if name:
            namespace = labels.get(f"{group}/namespace") or own_ns
            evidence = f"label {group}/name={name}"
            return Manager(controller, name, namespace, evidence)  # type: ignore[arg-type]
    tracking = annotations.get(ARGO_ANNOTATION)
    if tracking:
        parsed = parse_tracking_id(tracking)
        if parsed is not None:
            namespace, name = _argo_app(parsed[0], argocd_namespace)
            return Manager("argocd", name, namespace, f"annotation {ARGO_ANNOTATION}={tracking}")
    instance = labels.get(ARGO_LABEL)
    if instance:
        namespace, name = _argo_app(instance, argocd_namespace)
        return Manager("argocd", name, namespace, f"label {ARGO_LABEL}={instance}")
    return None


def unmanaged_refusal(manager: Manager, workload: str) -> str:
    """Why a workload a GitOps controller manages is not patched without `rollback.gitops`."""
    who = "Argo CD" if manager.controller == "argocd" else "Flux"
    heal = "self-heal" if manager.controller == "argocd" else "its next reconciliation"
    return (
        f"{workload} is managed by {who} ({manager.describe()}, found by its {manager.evidence}): "
        f"{heal} would put a patched object back to what Git says, so the revert would not hold. "
        "Set rollback.gitops on the target: mode: pause-sync (pause the sync, patch, restore on "
        "`mlwatchdog resolve INCIDENT`), mode: git (open a pull request reverting the manifest), "
        "or mode: patch (patch anyway: self-heal is off, or the label is not Argo CD's)"
    )
