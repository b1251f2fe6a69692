"""The three PATCH flavours, with the status codes kube-apiserver answers when they fail.

- merge patch (RFC 7386): the body must be a JSON object; an array (what the Python client sends
  when given a JSON-patch list without `_content_type`) is a 400, as the real server's strict
  decoding (fieldValidation defaults to Warn) makes it.
- JSON patch (RFC 6902, `jsonpatch` library): a body that is not a list of operations is a 400; an
  operation that fails (a `test` that does not hold, a path that does not exist) is a 422 with
  the generic message, as patch.go answers it.
- strategic merge patch: only for built-in kinds (custom resources answer 415). Approximated: maps
  merge as in a merge patch, and the lists Kubernetes merges by key (containers by `name`, ports
  by `containerPort`, ...) merge element-wise; other lists are replaced. `$patch: delete|replace`
  is honoured; `$setElementOrder`/`$retainKeys` directives are dropped.
"""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch
import jsonpointer

from tests.kube.status import bad_request, generic_invalid

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"

# patchMergeKey of the list fields in the built-in types this fake serves (core/v1 PodSpec,
# Container, ObjectMeta, apps/v1 status). Keyed by field name alone: good enough here.
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "volumes": "name",
    "imagePullSecrets": "name",
    "env": "name",
    "ports": "containerPort",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "hostAliases": "ip",
    "ownerReferences": "uid",
    "conditions": "type",
}
# Lists of scalars with patchStrategy=merge: the patch's items are added (a set union).
MERGE_SCALAR_LISTS = {"finalizers"}


def merge_patch(document: Any, patch: Any) -> Any:
    """RFC 7386: objects merge recursively, null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(document) if isinstance(document, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def apply_merge_patch(document: dict[str, Any], patch: Any) -> dict[str, Any]:
    if not isinstance(patch, dict):
        kind = "array" if isinstance(patch, list) else type(patch).__name__
        raise bad_request(
            f"error decoding patch: json: cannot unmarshal {kind} into Go value of type "
            "map[string]interface {}"
        )
    result: dict[str, Any] = merge_patch(document, patch)
    return result


def apply_json_patch(document: dict[str, Any], patch: Any) -> dict[str, Any]:
    """The patched document, or ApiError. On a failed operation the library's own text goes to
    `ApiError.note` (the request log shows it) since the real answer does not carry it."""
    if not isinstance(patch, list) or not all(isinstance(op, dict) for op in patch):
        kind = "object" if isinstance(patch, dict) else "value"
        raise bad_request(f"json: cannot unmarshal {kind} into Go value of type jsonpatch.Patch")
    try:
        result = jsonpatch.JsonPatch(patch).apply(copy.deepcopy(document))
    except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException, TypeError) as exc:
        error = generic_invalid()
        error.note = f"{type(exc).__name__}: {exc}"
        raise error from exc
    if not isinstance(result, dict):  # e.g. `replace` of the root with a list
        raise generic_invalid()
    return result


def strategic_merge_patch(document: Any, patch: Any, field: str = "") -> Any:
    """An approximation of strategic merge patch; see the module docstring."""
    if isinstance(patch, dict):
        if patch.get("$patch") == "replace":
            return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
        if patch.get("$patch") == "delete":
            return None
        result = copy.deepcopy(document) if isinstance(document, dict) else {}
        for key, value in patch.items():
            if key.startswith("$"):  # $setElementOrder/..., $retainKeys, $deleteFromPrimitiveList
                continue
            if value is None:
                result.pop(key, None)
                continue
            merged = strategic_merge_patch(result.get(key), value, key)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        return result
    if isinstance(patch, list):
        if field in MERGE_SCALAR_LISTS and isinstance(document, list):
            return document + [v for v in patch if v not in document]
        key = MERGE_KEYS.get(field)
        if key is None or not isinstance(document, list):
            return [v for v in copy.deepcopy(patch) if not _is_directive(v)]
        return _merge_list(document, patch, key)
    return copy.deepcopy(patch)


def _is_directive(value: Any) -> bool:
    return isinstance(value, dict) and "$patch" in value and len(value) <= 2


def _merge_list(document: list[Any], patch: list[Any], key: str) -> list[Any]:
    result = copy.deepcopy(document)
    for item in patch:
        if not isinstance(item, dict) or key not in item:
            continue
        index = next(
            (
                i
                for i, old in enumerate(result)
                if isinstance(old, dict) and old.get(key) == item[key]
            ),
            None,
        )
        if item.get("$patch") == "delete":
            if index is not None:
                result.pop(index)
        elif index is None:
            result.append({k: v for k, v in item.items() if k != "$patch"})
        else:
            result[index] = strategic_merge_patch(result[index], item)
    return result


def apply_strategic_merge_patch(document: dict[str, Any], patch: Any) -> dict[str, Any]:
    if not isinstance(patch, dict):
        raise bad_request(
            "error decoding patch: json: cannot unmarshal array into Go value of type "
            "map[string]interface {}"
        )
    result: dict[str, Any] = strategic_merge_patch(document, patch)
    return result
