"""Events: one storage, two APIs (core/v1 and events.k8s.io/v1), and their create validation.

Stored in the core/v1 form; events.k8s.io/v1 renames fields (pkg/apis/events/v1/conversion.go).
Validation follows pkg/apis/core/validation/events.go: core/v1 creates get the lax legacy checks,
events.k8s.io/v1 creates the strict ones (eventTime, reportingController, action, ... required),
which is where hand-written events usually fail on a real cluster.
"""

from __future__ import annotations

import re
from typing import Any

from tests.kube.status import FieldError

# events.k8s.io/v1 name -> core/v1 name
RENAMED = {
    "regarding": "involvedObject",
    "note": "message",
    "reportingController": "reportingComponent",
    "deprecatedSource": "source",
    "deprecatedFirstTimestamp": "firstTimestamp",
    "deprecatedLastTimestamp": "lastTimestamp",
    "deprecatedCount": "count",
}
_BACK = {core: new for new, core in RENAMED.items()}


def to_core(event: dict[str, Any]) -> dict[str, Any]:
    core = {RENAMED.get(k, k): v for k, v in event.items()}
    core["apiVersion"], core["kind"] = "v1", "Event"
    return core


def from_core(core: dict[str, Any]) -> dict[str, Any]:
    event = {_BACK.get(k, k): v for k, v in core.items()}
    event["apiVersion"], event["kind"] = "events.k8s.io/v1", "Event"
    return event


_QUALIFIED = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$"
)


def validate_create(core: dict[str, Any], strict: bool) -> list[FieldError]:
    """Errors for creating `core` (core/v1 form); `strict` for events.k8s.io/v1 requests.

    Field paths are the core/v1 names even for events.k8s.io/v1, as the real server reports them.
    """
    errors = _legacy(core)
    if not strict:
        return errors
    if not core.get("eventTime"):
        errors.append(FieldError("FieldValueRequired", "eventTime"))
    if core.get("type") not in ("Normal", "Warning"):
        errors.append(
            FieldError(
                "FieldValueInvalid", "type", f"has invalid value: {core.get('type', '')}", "", True
            )
        )
    for field in ("firstTimestamp", "lastTimestamp", "count"):
        if core.get(field):
            errors.append(FieldError("FieldValueInvalid", field, "needs to be unset", "", True))
    source = core.get("source") or {}
    if source.get("component") or source.get("host"):
        errors.append(FieldError("FieldValueInvalid", "source", "needs to be unset", "", True))
    series = core.get("series")
    if series is not None:
        if (series.get("count") or 0) < 2:
            errors.append(
                FieldError("FieldValueInvalid", "series.count", "should be at least 2", "", True)
            )
        if not series.get("lastObservedTime"):
            errors.append(FieldError("FieldValueRequired", "series.lastObservedTime"))
    return errors


def _legacy(core: dict[str, Any]) -> list[FieldError]:
    errors: list[FieldError] = []
    namespace = (core.get("metadata") or {}).get("namespace", "")
    involved_ns = (core.get("involvedObject") or {}).get("namespace", "")
    mismatch = FieldError(
        "FieldValueInvalid",
        "involvedObject.namespace",
        "does not match event.namespace",
        involved_ns,
        True,
    )
    if not core.get("eventTime"):
        if (involved_ns and namespace != involved_ns) or (
            not involved_ns and namespace not in ("", "default")
        ):
            errors.append(mismatch)
        return errors
    if not involved_ns and namespace not in ("default", "kube-system"):
        errors.append(mismatch)
    controller = core.get("reportingComponent") or ""
    if not controller:
        errors.append(FieldError("FieldValueRequired", "reportingController"))
    elif not _QUALIFIED.match(controller):
        errors.append(
            FieldError(
                "FieldValueInvalid",
                "reportingController",
                "must be a qualified name",
                controller,
                True,
            )
        )
    for field, limit in (("reportingInstance", 128), ("action", 128), ("reason", 128)):
        value = core.get(field) or ""
        if not value:
            errors.append(FieldError("FieldValueRequired", field))
        elif len(value) > limit:
            errors.append(
                FieldError(
                    "FieldValueInvalid", field, f"can have at most {limit} characters", "", True
                )
            )
    if len(core.get("message") or "") > 1024:
        errors.append(
            FieldError("FieldValueInvalid", "message", "can have at most 1024 characters", "", True)
        )
    return errors
