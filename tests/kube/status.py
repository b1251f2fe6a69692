"""Kubernetes `Status` error bodies, worded as kube-apiserver words them.

Clients (and the code under test) branch on `code` and `reason`, and people read `message` in
logs, so both follow k8s.io/apimachinery/pkg/api/errors; `details.kind` is the resource (plural),
as the real errors carry it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

# The service account the daemon runs as in the chart; used in the Forbidden wording.
DEFAULT_USER = "system:serviceaccount:mlwatchdog:mlwatchdog"

REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    410: "Expired",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


@dataclass
class ApiError(Exception):
    """An error answer; `body()` is the Status JSON the apiserver would send."""

    code: int
    reason: str
    message: str
    details: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    note: str = ""  # for the request log only, never sent

    def __post_init__(self) -> None:
        super().__init__(f"{self.code} {self.reason}: {self.message}")

    def body(self) -> dict[str, Any]:
        status: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            status["details"] = self.details
        return status


def success(name: str, group: str, plural: str, uid: str) -> dict[str, Any]:
    """What DELETE answers for a resource that is gone at once (no finalizers)."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {"name": name, "group": group, "kind": plural, "uid": uid},
    }


def qualified(group: str, plural: str) -> str:
    """`rollouts.argoproj.io`, `deployments.apps`, `events` (core group): as errors name them."""
    return f"{plural}.{group}" if group else plural


def _details(group: str, plural: str, name: str) -> dict[str, Any]:
    details: dict[str, Any] = {"kind": plural}
    if name:
        details["name"] = name
    if group:
        details["group"] = group
    return details


def not_found(group: str, plural: str, name: str) -> ApiError:
    return ApiError(
        404,
        "NotFound",
        f'{qualified(group, plural)} "{name}" not found',
        _details(group, plural, name),
    )


def not_found_path() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource", {})


def already_exists(group: str, plural: str, name: str) -> ApiError:
    return ApiError(
        409,
        "AlreadyExists",
        f'{qualified(group, plural)} "{name}" already exists',
        _details(group, plural, name),
    )


def conflict(group: str, plural: str, name: str, why: str | None = None) -> ApiError:
    why = why or (
        "the object has been modified; please apply your changes to the latest version and "
        "try again"
    )
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {qualified(group, plural)} "{name}": {why}',
        _details(group, plural, name),
    )


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def unsupported_media_type(accepted: list[str]) -> ApiError:
    return ApiError(
        415,
        "UnsupportedMediaType",
        "the body of the request was in an unknown format - accepted media types include: "
        + ", ".join(accepted),
    )


def invalid(kind: str, group: str, name: str, causes: list[FieldError]) -> ApiError:
    """422 Invalid, as errors.NewInvalid: one error inline, several as `[a, b]`."""
    qualified_kind = f"{kind}.{group}" if group else kind
    errors = [str(c) for c in causes]
    joined = errors[0] if len(errors) == 1 else "[" + ", ".join(errors) + "]"
    return ApiError(
        422,
        "Invalid",
        f'{qualified_kind} "{name}" is invalid: {joined}',
        {
            "name": name,
            "group": group,
            "kind": kind,
            "causes": [{"reason": c.type, "message": c.body(), "field": c.field} for c in causes],
        },
    )


def generic_invalid() -> ApiError:
    """What a JSON patch that fails to apply (a failing `test`, a missing path) gets: 422 with a
    generic message; the real server drops the json-patch library's own text."""
    return ApiError(
        422, "Invalid", "the server rejected our request due to an error in our request", {}
    )


def forbidden(
    group: str, plural: str, name: str, verb: str, namespace: str, subresource: str = ""
) -> ApiError:
    resource = f"{plural}/{subresource}" if subresource else plural
    target = f'{qualified(group, plural)} "{name}"' if name else qualified(group, plural)
    where = f' in the namespace "{namespace}"' if namespace else " at the cluster scope"
    return ApiError(
        403,
        "Forbidden",
        f'{target} is forbidden: User "{DEFAULT_USER}" cannot {verb} resource "{resource}" '
        f'in API group "{group}"{where}',
        _details(group, plural, name),
    )


def internal(message: str) -> ApiError:
    return ApiError(
        500,
        "InternalError",
        f"Internal error occurred: {message}",
        {"causes": [{"message": message}]},
    )


_WORDS = {
    "FieldValueRequired": "Required value",
    "FieldValueInvalid": "Invalid value",
    "FieldValueTypeInvalid": "Invalid value",
    "FieldValueNotSupported": "Unsupported value",
    "FieldValueDuplicate": "Duplicate value",
    "FieldValueForbidden": "Forbidden",
    "FieldValueTooLong": "Too long",
    "FieldValueTooMany": "Too many",
}


@dataclass(frozen=True)
class FieldError:
    """One field.Error: `Error()` is `<field>: <body>`, the body starting with the type's words."""

    type: str  # FieldValueInvalid, FieldValueRequired, FieldValueTypeInvalid, ...
    field: str
    detail: str = ""
    value: Any = None
    has_value: bool = False

    def body(self) -> str:
        words = _WORDS.get(self.type, self.type)
        if self.has_value:
            words = f"{words}: {go_value(self.value)}"
        return f"{words}: {self.detail}" if self.detail else words

    def __str__(self) -> str:
        return f"{self.field}: {self.body()}"


def go_value(value: Any) -> str:
    """How field.Error prints a value: strings quoted, numbers and bools bare, objects as JSON."""
    if isinstance(value, str):
        return json.dumps(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, separators=(",", ":"), sort_keys=True)
