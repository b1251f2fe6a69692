"""Injected faults: which requests they hit, and the real-looking Status each one answers."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.kube.resources import parse_path
from tests.kube.status import REASONS, ApiError, conflict, forbidden, internal, not_found

_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
_DEFAULT_MESSAGES = {
    400: "the server rejected our request for an unknown reason",
    401: "Unauthorized",
    422: "the server rejected our request due to an error in our request",
    429: "Too many requests, please try again later.",
    503: "the server is currently unable to handle the request",
    504: "Timeout: request did not complete within requested timeout - context deadline exceeded",
}


@dataclass
class Fault:
    method: str  # "*" for any
    pattern: re.Pattern[str]
    status: int  # 0 with drop: answer normally but lose the response
    times: int | None  # None: until clear_faults()
    message: str | None
    before: Callable[[Any], None] | None  # called with the FakeKubeAPI
    drop: bool = False

    def matches(self, method: str, path: str) -> bool:
        return self.method in ("*", method) and bool(self.pattern.search(path))


def fault_error(fault: Fault, method: str, path: str) -> ApiError:
    """The Status an injected fault answers, worded for the request it hits."""
    target = parse_path(path)
    group, plural, name, ns, sub = "", "", "", "", ""
    if target is not None:
        rtype = target.rtype
        group, plural, name, ns, sub = (
            rtype.group,
            rtype.plural,
            target.name,
            target.namespace,
            target.subresource,
        )
    code, message = fault.status, fault.message
    if code == 403:
        verb = _VERBS.get(method) or ("get" if name else "list")
        error = forbidden(group, plural, name, verb, ns, sub)
    elif code == 404 and target is not None:
        error = not_found(group, plural, name)
    elif code == 409 and target is not None:
        error = conflict(group, plural, name)
    elif code == 500:
        error = internal(message or "injected fault")
    else:
        error = ApiError(
            code,
            REASONS.get(code, "Unknown"),
            message or _DEFAULT_MESSAGES.get(code, f"injected status {code}"),
            {"kind": plural, "name": name, "group": group} if target is not None else None,
        )
        if code in (429, 503):
            error.headers["Retry-After"] = "1"
    if message:
        error.message = message
    return error
