"""Pause a GitOps controller's sync while a revert holds, and restore it. Pure: objects in,
requests (or why none) out; `gitops.intercept` and `gitops.resolve` do the I/O.

- Argo CD: automated sync is on when `spec.syncPolicy.automated` is set and its `enabled` is not
  false (argo-cd pkg/apis/application/v1alpha1/types.go SyncPolicy.IsAutomatedSyncEnabled);
  self-heal (`automated.selfHeal`) is what puts a patched object back. Pausing removes the
  `automated` block (as `argocd app set --sync-policy none` does); restoring puts back exactly the
  block recorded.
- Flux: `spec.suspend: true` stops reconciliation of a Kustomization or HelmRelease
  (kustomize-controller api/v1/kustomization_types.go, helm-controller api/v2/helmrelease_types.go
  `Suspend`); restoring sets it back to false (as `flux resume` does).
The PAUSED annotation on the controller's object records what it was, why, who and when; it is
written in the same merge patch that pauses, with the resourceVersion read, and removed in the
one that restores, so a pause is never recorded twice nor restored from a stale read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mlwatchdog.actions.gitops.detect import Manager
from mlwatchdog.actions.plan import MERGE_PATCH, PlannedRequest, resource_version

PAUSED = "mlwatchdog.io/paused-sync"


@dataclass(frozen=True)
class Restore:
    """What resolving an incident does to one controller object."""

    request: PlannedRequest | None
    result: str  # restored, already_enabled, not_paused
    detail: str


def paused_note(obj: dict[str, Any]) -> dict[str, Any]:
    """The PAUSED annotation of `obj`, parsed ({} when absent or not JSON)."""
    raw = ((obj.get("metadata") or {}).get("annotations") or {}).get(PAUSED)
    try:
        note = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return note if isinstance(note, dict) else {}


def sync_on(manager: Manager, obj: dict[str, Any]) -> bool:
    spec = obj.get("spec") or {}
    if manager.controller == "argocd":
        automated = (spec.get("syncPolicy") or {}).get("automated")
        return isinstance(automated, dict) and automated.get("enabled") is not False
    return spec.get("suspend") is not True


def plan_pause(
    manager: Manager,
    obj: dict[str, Any],
    target: str,
    incident: str,
    by: str,
    now: datetime,
    reasons: tuple[str, ...] = (),
) -> tuple[PlannedRequest | None, str]:
    """The merge patch that pauses `obj`'s sync, or None and why nothing is needed."""
    what = manager.describe()
    note = paused_note(obj)
    if note:
        if note.get("incident") == incident:
            return None, f"sync of {what} already paused for this incident at {note.get('at')}"
        return None, (
            f"sync of {what} is still paused by mlwatchdog for incident {note.get('incident')} "
            f"(since {note.get('at')}); it is restored when that incident is resolved"
        )
    if not sync_on(manager, obj):
        state = "automated sync is off" if manager.controller == "argocd" else "it is suspended"
        return None, f"{what}: {state} already (not by mlwatchdog): nothing to pause"
    spec = obj.get("spec") or {}
    if manager.controller == "argocd":
        was: dict[str, Any] = {"automated": (spec.get("syncPolicy") or {}).get("automated")}
        change: dict[str, Any] = {"syncPolicy": {"automated": None}}
        purpose = f"pause automated sync of {what} (self-heal would undo the revert)"
    else:
        was = {"suspend": bool(spec.get("suspend", False))}
        change = {"suspend": True}
        purpose = f"suspend {what} (its reconciliation would undo the revert)"
    record = {
        "incident": incident,
        "target": target,
        "by": by,
        "at": now.isoformat(),
        "why": "; ".join(reasons)[:300],
        "was": was,
    }
    body = {
        "metadata": {"annotations": {PAUSED: json.dumps(record, sort_keys=True)}},
        "spec": change,
    }
    rv = resource_version(obj)
    return PlannedRequest("PATCH", manager.path, MERGE_PATCH, body, purpose, rv), purpose


def plan_restore(manager: Manager, obj: dict[str, Any], incident: str) -> Restore:
    """The merge patch that restores `obj`'s sync as recorded for `incident`."""
    what = manager.describe()
    note = paused_note(obj)
    if note.get("incident") != incident:
        other = f" (it is paused for incident {note['incident']})" if note.get("incident") else ""
        return Restore(
            None,
            "not_paused",
            f"{what}: no sync paused by mlwatchdog for incident {incident}{other}; "
            "already restored, or never paused",
        )
    rv = resource_version(obj)
    unmark: dict[str, Any] = {"metadata": {"annotations": {PAUSED: None}}}
    if sync_on(manager, obj):
        return Restore(
            PlannedRequest(
                "PATCH", manager.path, MERGE_PATCH, unmark,
                f"forget the pause of {what}: someone re-enabled its sync by hand", rv,
            ),
            "already_enabled",
            f"{what}: sync was re-enabled by hand since the pause (at {note.get('at')}); left "
            "as it is, pause record removed",
        )  # fmt: skip
    was = note.get("was") or {}
    if manager.controller == "argocd":
        automated = was.get("automated") or {}
        body = {**unmark, "spec": {"syncPolicy": {"automated": automated}}}
        detail = f"{what}: automated sync restored to {json.dumps(automated, sort_keys=True)}"
    else:
        body = {**unmark, "spec": {"suspend": bool(was.get("suspend", False))}}
        detail = f"{what}: resumed (spec.suspend: {bool(was.get('suspend', False))})"
    request = PlannedRequest("PATCH", manager.path, MERGE_PATCH, body, f"restore {detail}", rv)
    return Restore(request, "restored", detail)
