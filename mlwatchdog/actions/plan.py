"""A rollback as data: the requests to send, what they go back to, or why nothing is needed.

Pure. Each workload driver (`actions.workloads`) builds a `Plan` from the objects read from the
cluster, or describes one without a cluster (dry-run with `daemon.kubernetes.mode: offline`).
The actuator sends a plan, or only logs it in dry-run.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mlwatchdog.core import Decision
from mlwatchdog.core.takeover import note_time
from mlwatchdog.rules import Target

ARGO = "/apis/argoproj.io/v1alpha1"
KSERVE = "/apis/serving.kserve.io/v1beta1"
APPS = "/apis/apps/v1"
KNATIVE = "/apis/serving.knative.dev/v1"
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
LAST_ACTION = "mlwatchdog.io/last-action"  # annotation on the reverted object: who, when, why


def resource_version(obj: Mapping[str, Any]) -> str | None:
    """The object's metadata.resourceVersion: the precondition a write is planned from."""
    rv = (obj.get("metadata") or {}).get("resourceVersion")
    return None if rv is None else str(rv)


def object_name(obj: Mapping[str, Any]) -> str:
    """namespace/name (name alone for a cluster-scoped object), for messages."""
    meta = obj["metadata"]
    return f"{meta.get('namespace', '')}/{meta['name']}".lstrip("/")


@dataclass(frozen=True)
class PlannedRequest:
    """One HTTP request to the Kubernetes API; `body` None means it is read from the cluster.

    `precondition`: the object's resourceVersion (as read) goes into the request, so the API
    answers 409 instead of applying it when the object changed since it was read.
    """

    method: str
    path: str
    content_type: str
    body: Any
    purpose: str
    precondition: str | None = None


@dataclass(frozen=True)
class Candidate:
    """What a rollback goes to, as the policy judges it."""

    description: str
    images: tuple[str, ...] = ()
    storage_uri: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    from_config: bool = False  # the fallback of rules.yaml: no registry labels to check


@dataclass(frozen=True)
class Plan:
    """The requests that carry a rollback out; none when `done` says it is already in place."""

    requests: tuple[PlannedRequest, ...]
    candidate: Candidate | None = None
    done: str = ""
    notes: tuple[str, ...] = ()


def with_precondition(request: PlannedRequest) -> Any:
    """The body as sent: with the resourceVersion the plan was made from, when it has one."""
    rv = request.precondition
    if rv is None:
        return request.body
    if request.content_type == JSON_PATCH:
        return [{"op": "replace", "path": "/metadata/resourceVersion", "value": rv}, *request.body]
    body = dict(request.body)
    body["metadata"] = {**body.get("metadata", {}), "resourceVersion": rv}
    return body


def last_action_note(
    target: Target, decision: Decision, by: str, now: datetime, **details: Any
) -> str:
    """The LAST_ACTION annotation's value: written in the same patch as the revert itself."""
    note = {
        "target": target.name,
        "incident": decision.incident,
        "to": decision.to,
        "by": by,
        "at": now.isoformat(),
        "reasons": list(decision.reasons)[:5],
        **details,
    }
    return json.dumps(note, sort_keys=True)


def last_action(obj: dict[str, Any]) -> dict[str, Any]:
    """The LAST_ACTION annotation of `obj`, parsed ({} when absent or not JSON)."""
    raw = (obj.get("metadata", {}).get("annotations") or {}).get(LAST_ACTION)
    try:
        note = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return note if isinstance(note, dict) else {}


def already_done(
    objects: list[dict[str, Any]], target: Target, decision: Decision, now: datetime
) -> str:
    """Why the revert must not be sent again ('' when it must be sent): this incident already
    acted on the object, or some replica reverted it less than `cooldown` ago."""
    for obj in objects:
        last = last_action(obj)
        at = note_time(last)
        if at is None:
            continue  # a hand-edited annotation is not a reason to skip a rollback
        who = f"by {last.get('by', '?')} at {last['at']} (incident {last.get('incident')})"
        if last.get("incident") == decision.incident:
            return f"already reverted for this incident {who}"
        if last.get("target") == target.name and now - at < target.cooldown:
            return f"already reverted {who}, less than cooldown ago"
    return ""
