"""Cross-reference checks of a parsed rules.yaml: names that must exist and fit together.

Returns problems as (key path, message) pairs, so the loader can put file and line on each.
"""

from __future__ import annotations

from mlwatchdog.detectors import REGISTRY, ColumnKind
from mlwatchdog.rules.schema import (
    Config,
    DriftCheck,
    FilesSource,
    KServeSource,
    PrometheusSource,
    SqlSource,
    Target,
)
from mlwatchdog.rules.trigger import TriggerSyntaxError, parse_trigger

Path = tuple[str | int, ...]


def reference_problems(config: Config) -> list[tuple[Path, str]]:
    """Every cross-reference problem in `config`; empty when it is consistent."""
    problems: list[tuple[Path, str]] = []
    seen: set[str] = set()
    for i, target in enumerate(config.targets):
        at: Path = ("targets", i)
        if target.name in seen:
            problems.append((at + ("name",), f"target name {target.name!r} is used twice"))
        seen.add(target.name)
        problems += _target_problems(config, target, at)
    return problems


def _source_problem(
    config: Config, name: str, kind: type | tuple[type, ...], what: str
) -> str | None:
    source = config.sources.get(name)
    if source is None:
        return (
            f"no source named {name!r}; define it under `sources:` (have {sorted(config.sources)})"
        )
    if not isinstance(source, kind):
        return f"source {name!r} is of type {source.type}; {what}"
    return None


def _target_problems(config: Config, target: Target, at: Path) -> list[tuple[Path, str]]:
    problems: list[tuple[Path, str]] = []
    need_samples = "samples and references come from a `type: files`, `sql` or `kserve` source"
    for key in ("samples", "reference"):
        spec = getattr(target, key)
        sample_kinds = (FilesSource, SqlSource, KServeSource)
        problem = _source_problem(config, spec.source, sample_kinds, need_samples)
        if problem:
            problems.append((at + (key, "source"), problem))
    names = [c.name for c in target.checks]
    for j, check in enumerate(target.checks):
        check_at = at + ("checks", j)
        if names.count(check.name) > 1:
            problems.append((check_at + ("name",), f"check name {check.name!r} is used twice"))
        if isinstance(check, DriftCheck):
            problems += [(check_at + ("columns",), p) for p in _column_problems(target, check)]
        else:
            need = "metric checks read a `type: prometheus` source"
            problem = _source_problem(config, check.source, PrometheusSource, need)
            if problem:
                problems.append((check_at + ("source",), problem))
    try:
        parse_trigger(target.trigger, names)
    except TriggerSyntaxError as exc:
        problems.append((at + ("trigger",), str(exc)))
    fallback = target.rollback.fallback
    if target.rollback.to == "fallback" and fallback is not None:
        if target.workload.kind == "argo-rollout" and not (
            fallback.image or fallback.env or fallback.args
        ):
            problems.append(
                (at + ("rollback", "fallback"), "an Argo fallback needs image, env or args")
            )
        if target.workload.kind == "kserve" and not (fallback.storage_uri or fallback.runtime):
            problems.append(
                (at + ("rollback", "fallback"), "a KServe fallback needs storage_uri or runtime")
            )
    return problems


def drift_columns(target: Target, check: DriftCheck) -> list[str]:
    """The columns a drift check tests: a named group (only the kinds its test takes) or a list."""
    if isinstance(check.columns, list):
        return list(check.columns)
    group = {
        "features": target.columns.features,
        "predictions": target.columns.predictions,
        "all": target.columns.all,
    }[check.columns]
    kinds = REGISTRY[check.test].kinds
    return [c for c, kind in group.items() if ColumnKind(kind) in kinds]


def _column_problems(target: Target, check: DriftCheck) -> list[str]:
    declared = target.columns.all
    kinds = REGISTRY[check.test].kinds
    if isinstance(check.columns, str):
        if not drift_columns(target, check):
            wanted = " or ".join(sorted(str(k) for k in kinds))
            return [f"no {wanted} column among `{check.columns}` for test {check.test!s}"]
        return []
    problems = []
    for column in check.columns:
        if column not in declared:
            problems.append(
                f"column {column!r} is not declared under `columns:` (have {sorted(declared)})"
            )
        elif ColumnKind(declared[column]) not in kinds:
            takers = [
                str(t) for t, s in REGISTRY.items() if ColumnKind(declared[column]) in s.kinds
            ]
            problems.append(
                f"test {check.test!s} does not take {declared[column]} column {column!r}; "
                f"use {' or '.join(takers)} for it"
            )
    return problems
