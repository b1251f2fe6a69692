"""Label selectors as k8s.io/apimachinery/pkg/labels parses them (the `labelSelector` query),
and the few field selectors the served types support (`fieldSelector`).

Semantics worth keeping: `a!=b` and `a notin (x)` also match objects WITHOUT label `a`, which is a
classic source of "why did my list return that?" surprises.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from tests.kube.events import RENAMED
from tests.kube.status import ApiError, bad_request

Requirement = Callable[[Mapping[str, str]], bool]

_SET = re.compile(r"^(?P<key>[^\s!=<>(),]+)\s+(?P<op>in|notin)\s*\((?P<values>[^)]*)\)$")
_BINARY = re.compile(r"^(?P<key>[^\s!=<>(),]+)\s*(?P<op>==|!=|=|>|<)\s*(?P<value>[^\s!=<>(),]*)$")
_EXISTS = re.compile(r"^(?P<neg>!?)\s*(?P<key>[^\s!=<>(),]+)$")


def _split(selector: str) -> list[str]:
    """Split on commas that are not inside `( ... )`."""
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    for ch in selector:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
    parts.append("".join(current).strip())
    return [p for p in parts if p]


def _requirement(text: str) -> Requirement:
    if m := _SET.match(text):
        key = m["key"]
        values = {v.strip() for v in m["values"].split(",") if v.strip()}
        if m["op"] == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: labels.get(key) not in values
    if m := _BINARY.match(text):
        key, op, value = m["key"], m["op"], m["value"]
        if op in ("=", "=="):
            return lambda labels: labels.get(key) == value
        if op == "!=":
            return lambda labels: labels.get(key) != value
        try:
            bound = int(value)
        except ValueError:
            why = f"for 'Gt', 'Lt' operators, the value must be an integer: {value}"
            raise _error(text, why) from None
        return _compare(key, op, bound)
    if m := _EXISTS.match(text):
        key = m["key"]
        if m["neg"]:
            return lambda labels: key not in labels
        return lambda labels: key in labels
    raise _error(text, "found unexpected token")


def _compare(key: str, op: str, bound: int) -> Requirement:
    """`a>1` / `a<1`: only labels holding an integer can match."""

    def match(labels: Mapping[str, str]) -> bool:
        try:
            number = int(labels[key])
        except (KeyError, ValueError):
            return False
        return number > bound if op == ">" else number < bound

    return match


def _error(text: str, why: str) -> ApiError:
    return bad_request(f"unable to parse requirement: {why} in {text!r}")


def parse(selector: str | None) -> Callable[[Mapping[str, str]], bool]:
    """A predicate over an object's labels; an empty selector matches everything."""
    requirements = [_requirement(part) for part in _split(selector or "")]
    return lambda labels: all(req(labels) for req in requirements)


# --- field selectors ---------------------------------------------------------------------

_EVENT_FIELDS = re.compile(
    r"^(involvedObject\.(kind|namespace|name|uid|apiVersion|resourceVersion|fieldPath)"
    r"|reason|reportingComponent|source|type)$"
)


def parse_fields(selector: str, events: bool) -> Callable[[dict[str, Any]], bool]:
    """metadata.name / metadata.namespace for every type; the event fields for events (given
    in core/v1 names, as the events.k8s.io names are mapped: regarding.name, ...)."""
    checks: list[tuple[list[str], str, bool]] = []
    for part in filter(None, (p.strip() for p in selector.split(","))):
        m = re.match(r"^([^!=]+?)\s*(==|=|!=)\s*(.*)$", part)
        if not m:
            raise bad_request(f"invalid selector: '{selector}'; can't understand '{part}'")
        label, op, value = m.groups()
        core_label = label
        if events:
            head, _, rest = label.partition(".")
            core_label = ".".join(filter(None, [RENAMED.get(head, head), rest]))
        if label not in ("metadata.name", "metadata.namespace") and not (
            events and _EVENT_FIELDS.match(core_label)
        ):
            raise bad_request(f"field label not supported: {label}")
        checks.append((core_label.split("."), value, op == "!="))

    def match(obj: dict[str, Any]) -> bool:
        for path, value, negate in checks:
            current: Any = obj
            for step in path:
                current = current.get(step) if isinstance(current, dict) else None
            if (str(current) if current is not None else "") == value:
                if negate:
                    return False
            elif not negate:
                return False
        return True

    return match
