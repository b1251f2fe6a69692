"""What kube-apiserver does to a custom resource before storing it, against the vendored schemas.

In the order the apiserver does it on every create, update and patch (main or status):
1. prune: fields the structural schema does not declare are dropped (with a `Warning` header,
   fieldValidation=Warn being the default), as are nulls in non-nullable fields;
2. default: `default:` values of missing fields are filled in (e.g. container port `protocol`);
3. validate: the OpenAPI schema (jsonschema Draft 4 is what it is: `x-kubernetes-*` keys are
   unknown keywords to it, and `format` is not checked), plus the structural rules jsonschema
   cannot see: `x-kubernetes-list-type` map/set uniqueness and the `self == oldSelf`
   immutability rule (the only CEL rule in these CRDs; other CEL rules are not evaluated).
ObjectMeta is checked for every kind: name, label and annotation syntax.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from pathlib import Path
from typing import Any

from jsonschema import Draft4Validator
from jsonschema.exceptions import ValidationError

from tests.kube.crds.vendor import load_vendored
from tests.kube.status import FieldError

CRDS = Path(__file__).parent / "crds"

# (apiVersion, kind) -> vendored schema file
SCHEMA_FILES = {
    ("argoproj.io/v1alpha1", "Rollout"): "rollout.v1alpha1.json.gz",
    ("serving.kserve.io/v1beta1", "InferenceService"): "inferenceservice.v1beta1.json.gz",
    ("argoproj.io/v1alpha1", "Application"): "application.v1alpha1.json.gz",
    ("kustomize.toolkit.fluxcd.io/v1", "Kustomization"): "kustomization.v1.json.gz",
    ("helm.toolkit.fluxcd.io/v2", "HelmRelease"): "helmrelease.v2.json.gz",
    ("flagger.app/v1beta1", "Canary"): "canary.v1beta1.json.gz",
}

OBJECT_META_FIELDS = frozenset(
    {
        "name",
        "generateName",
        "namespace",
        "selfLink",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "labels",
        "annotations",
        "ownerReferences",
        "finalizers",
        "managedFields",
    }
)


@functools.cache
def schema_for(api_version: str, kind: str) -> dict[str, Any] | None:
    name = SCHEMA_FILES.get((api_version, kind))
    return load_vendored(name) if name else None


@functools.cache
def _validator(api_version: str, kind: str) -> Draft4Validator:
    return Draft4Validator(schema_for(api_version, kind))


def has_schema(api_version: str, kind: str) -> bool:
    return (api_version, kind) in SCHEMA_FILES


# --- 1 and 2: pruning and defaulting ---------------------------------------------------------


def prune_and_default(obj: dict[str, Any]) -> list[str]:
    """Prune and default `obj` in place; returns the pruned field paths (the warnings)."""
    pruned: list[str] = []
    metadata = obj.get("metadata")
    if isinstance(metadata, dict):
        for key in [k for k in metadata if k not in OBJECT_META_FIELDS]:
            del metadata[key]
            pruned.append(f"metadata.{key}")
    schema = schema_for(obj.get("apiVersion", ""), obj.get("kind", ""))
    if schema is None:
        return pruned
    for key in list(obj):
        if key in ("apiVersion", "kind", "metadata"):
            continue
        sub = schema.get("properties", {}).get(key)
        if sub is None:
            del obj[key]
            pruned.append(key)
        elif obj[key] is None and not sub.get("nullable"):
            del obj[key]
        else:
            obj[key] = _walk(obj[key], sub, key, pruned)
    for key, sub in schema.get("properties", {}).items():
        if key not in obj and "default" in sub:
            obj[key] = _walk(copy.deepcopy(sub["default"]), sub, key, pruned)
    return pruned


def _walk(value: Any, schema: dict[str, Any], path: str, pruned: list[str]) -> Any:
    if schema.get("x-kubernetes-int-or-string"):
        return value
    preserve = bool(schema.get("x-kubernetes-preserve-unknown-fields"))
    if isinstance(value, dict):
        props: dict[str, Any] = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        for key in list(value):
            sub = props.get(key) if key in props else extra if isinstance(extra, dict) else None
            if sub is None:
                if not preserve and extra is not True:
                    del value[key]
                    pruned.append(f"{path}.{key}")
                continue
            if value[key] is None and not sub.get("nullable"):
                del value[key]
                continue
            value[key] = _walk(value[key], sub, f"{path}.{key}", pruned)
        for key, sub in props.items():
            if key not in value and "default" in sub:
                value[key] = _walk(copy.deepcopy(sub["default"]), sub, f"{path}.{key}", pruned)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [
            _walk(item, schema["items"], f"{path}[{i}]", pruned) for i, item in enumerate(value)
        ]
    return value


# --- 3: validation ------------------------------------------------------------------------------

_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")

_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used "
    "for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
_NAME_PART_MSG = (
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
    "with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for "
    "validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
)
_LABEL_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value', "
    " or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
)


def _qualified_name_errors(key: str) -> list[str]:
    """IsQualifiedName: `[prefix/]name`, prefix a DNS subdomain, name at most 63 characters."""
    prefix, _, name = key.rpartition("/")
    errors = []
    if "/" in key and not prefix:
        errors.append("prefix part must be non-empty")
    if prefix and (len(prefix) > 253 or not _DNS1123_SUBDOMAIN.match(prefix)):
        errors.append(f"prefix part {_SUBDOMAIN_MSG}")
    if not name:
        errors.append("name part must be non-empty")
    elif len(name) > 63:
        errors.append("name part must be no more than 63 characters")
    elif not _QUALIFIED_NAME.match(name):
        errors.append(_NAME_PART_MSG)
    return errors


def validate_metadata(obj: dict[str, Any]) -> list[FieldError]:
    metadata = obj.get("metadata")
    if not isinstance(metadata, dict):
        return [
            FieldError("FieldValueRequired", "metadata.name", "name or generateName is required")
        ]
    errors: list[FieldError] = []
    name = metadata.get("name")
    if not name:
        errors.append(
            FieldError("FieldValueRequired", "metadata.name", "name or generateName is required")
        )
    elif not isinstance(name, str) or len(name) > 253 or not _DNS1123_SUBDOMAIN.match(name):
        errors.append(FieldError("FieldValueInvalid", "metadata.name", _SUBDOMAIN_MSG, name, True))
    for field, values in (
        ("labels", metadata.get("labels")),
        ("annotations", metadata.get("annotations")),
    ):
        if values is None:
            continue
        if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
            errors.append(
                FieldError("FieldValueInvalid", f"metadata.{field}", "must be a map of strings")
            )
            continue
        for key, value in values.items():
            errors += [
                FieldError("FieldValueInvalid", f"metadata.{field}", msg, key, True)
                for msg in _qualified_name_errors(key)
            ]
            if field == "labels" and (len(value) > 63 or not _LABEL_VALUE.match(value)):
                detail = (
                    "must be no more than 63 characters" if len(value) > 63 else _LABEL_VALUE_MSG
                )
                errors.append(
                    FieldError("FieldValueInvalid", "metadata.labels", detail, value, True)
                )
    return errors


def validate(obj: dict[str, Any], old: dict[str, Any] | None = None) -> list[FieldError]:
    """Every error the apiserver would report for `obj` (after pruning and defaulting)."""
    errors = validate_metadata(obj)
    api_version, kind = obj.get("apiVersion", ""), obj.get("kind", "")
    schema = schema_for(api_version, kind)
    if schema is None:
        return errors
    # The schema's own `metadata` ({type: object}) says nothing useful; ObjectMeta is checked above.
    for error in _validator(api_version, kind).iter_errors(obj):
        errors += _field_errors(error)
    errors += _structural_errors(obj, old, schema, "")
    return errors


def _path(parts: Any) -> str:
    path = ""
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


_JSON_TYPES = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    dict: "object",
    list: "array",
    type(None): "null",
}


def _field_errors(error: ValidationError) -> list[FieldError]:
    """A jsonschema error in kube-openapi's words (as kubeOpenAPIResultToFieldErrors puts it)."""
    path = _path(error.absolute_path)
    where = path or "<root>"
    if error.validator == "required":
        missing = [p for p in error.validator_value if p not in error.instance]
        return [FieldError("FieldValueRequired", f"{path}.{p}" if path else p) for p in missing]
    if error.validator == "type":
        actual = _JSON_TYPES.get(type(error.instance), "unknown")
        expected = error.validator_value
        return [
            FieldError(
                "FieldValueTypeInvalid",
                where,
                f'{where} in body must be of type {expected}: "{actual}"',
                actual,
                True,
            )
        ]
    if error.validator == "enum":
        supported = ", ".join(json.dumps(v) for v in error.validator_value)
        return [
            FieldError(
                "FieldValueNotSupported",
                where,
                f"supported values: {supported}",
                error.instance,
                True,
            )
        ]
    wording = {
        "minimum": f"should be greater than or equal to {error.validator_value}",
        "maximum": f"should be less than or equal to {error.validator_value}",
        "pattern": f"should match '{error.validator_value}'",
        "minLength": f"should be at least {error.validator_value} chars long",
        "maxLength": f"should be at most {error.validator_value} chars long",
        "minItems": f"should have at least {error.validator_value} items",
        "maxItems": f"should have at most {error.validator_value} items",
    }.get(str(error.validator))
    detail = f"{where} in body {wording}" if wording else error.message
    return [FieldError("FieldValueInvalid", where, detail, error.instance, True)]


def _structural_errors(value: Any, old: Any, schema: dict[str, Any], path: str) -> list[FieldError]:
    """List-type uniqueness and `self == oldSelf`, walking value (and old) along the schema."""
    errors: list[FieldError] = []
    if old is not None:
        for rule in schema.get("x-kubernetes-validations", []):
            if rule.get("rule", "").replace(" ", "") == "self==oldSelf" and value != old:
                actual = _JSON_TYPES.get(type(value), "unknown")
                message = rule.get("message") or "failed rule: self == oldSelf"
                errors.append(FieldError("FieldValueInvalid", path, message, actual, True))
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            sub = props.get(key) or (extra if isinstance(extra, dict) else None)
            if sub is not None:
                old_item = old.get(key) if isinstance(old, dict) else None
                errors += _structural_errors(item, old_item, sub, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        errors += _list_type_errors(value, schema, path)
        if isinstance(schema.get("items"), dict):
            for i, item in enumerate(value):
                errors += _structural_errors(item, None, schema["items"], f"{path}[{i}]")
    return errors


def _list_type_errors(value: list[Any], schema: dict[str, Any], path: str) -> list[FieldError]:
    list_type = schema.get("x-kubernetes-list-type")
    if list_type not in ("set", "map"):
        return []
    keys = schema.get("x-kubernetes-list-map-keys", [])
    seen: list[Any] = []
    errors = []
    for i, item in enumerate(value):
        if list_type == "map" and isinstance(item, dict):
            # Missing key fields take their defaults (e.g. protocol TCP) before this check.
            ident: Any = {k: item.get(k) for k in keys}
        else:
            ident = item
        if ident in seen:
            errors.append(FieldError("FieldValueDuplicate", f"{path}[{i}]", "", ident, True))
        seen.append(ident)
    return errors


def messages(errors: list[FieldError]) -> list[str]:
    return [str(e) for e in errors]
