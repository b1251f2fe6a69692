"""Cross-reference checks of a parsed rules.yaml: names that must exist and fit together.

Returns problems as (key path, message) pairs, so the loader can put file and line on each.
"""

from __future__ import annotations

import contextlib
import copy
from typing import Any

from pydantic import TypeAdapter, ValidationError

from mlwatchdog.detectors import EFFECT_KINDS, REGISTRY, ColumnKind
from mlwatchdog.rules.schema import (
    Config,
    DriftCheck,
    FilesSource,
    KServeSource,
    PerformanceCheck,
    PrometheusSource,
    Source,
    SqlSource,
    Target,
    format_duration,
)
from mlwatchdog.rules.trigger import TriggerSyntaxError, parse_trigger

Path = tuple[str | int, ...]
_SOURCE: TypeAdapter[Any] = TypeAdapter(Source)
_NAME_KEYS = {"source", "trigger", "name"}  # problems about names, whatever the values
_TAGS = {"drift", "metric", "performance"}  # pydantic puts a union's tag into error locations


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


def partial_reference_problems(data: dict[str, Any]) -> list[tuple[Path, str]]:
    """Cross-checks of the parts of an invalid config that validate on their own, so a single
    `check` run lists schema mistakes and cross-reference mistakes together."""
    raw_sources = data.get("sources") if isinstance(data.get("sources"), dict) else {}
    sources: dict[str, Any] = {}
    for name, spec in (raw_sources or {}).items():
        # A source that does not validate is reported by the schema; references to it are fine.
        with contextlib.suppress(ValidationError):
            sources[str(name)] = _SOURCE.validate_python(spec)
    broken = set(map(str, raw_sources or {})) - set(sources)
    raw_targets = data.get("targets") if isinstance(data.get("targets"), list) else []
    problems: list[tuple[Path, str]] = []
    for i, raw in enumerate(raw_targets or []):
        target, dropped = _validate_without_errors(raw)
        if target is None:
            continue
        config = Config.model_construct(sources=sources, targets=[target])
        for path, message in _target_problems(config, target, ("targets", i)):
            inner = path[2:]
            if dropped and path[-1] not in _NAME_KEYS:
                continue  # it may only reflect a default standing in for an invalid value
            if any(inner[: len(d)] == d for d in dropped):
                continue  # that part has a schema error already
            if path[-1] == "source" and _value_at(raw, inner) in broken:
                continue
            problems.append((path, message))
    return problems


def _validate_without_errors(raw: Any, rounds: int = 3) -> tuple[Target | None, list[Path]]:
    """The target with its invalid keys removed (so defaults stand in), and the keys removed."""
    data, dropped = copy.deepcopy(raw), list[Path]()
    for _ in range(rounds):
        try:
            return Target.model_validate(data), dropped
        except ValidationError as exc:
            for error in exc.errors():
                loc = tuple(k for k in error["loc"] if not (isinstance(k, str) and k in _TAGS))
                if error["type"] == "missing" or not _drop(data, loc):
                    return None, dropped
                dropped.append(loc)
    return None, dropped


def _drop(data: Any, path: Path) -> bool:
    if not path:  # the object as a whole is invalid: nothing to remove
        return False
    parent = _value_at(data, path[:-1])
    if isinstance(parent, dict) and path[-1] in parent:
        del parent[path[-1]]
        return True
    return False


def _value_at(data: Any, path: Path) -> Any:
    for key in path:
        try:
            data = data[key]
        except (KeyError, IndexError, TypeError):
            return None
    return data


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
    live = config.sources.get(target.samples.source)
    if (
        target.samples.revisions is not None
        and isinstance(live, FilesSource | SqlSource | KServeSource)
        and live.revision_column is None
    ):
        problems.append((
            at + ("samples", "revisions"),
            f"source {target.samples.source!r} has no revision_column to tell the canary's "
            "rows from the stable ones; add one (e.g. revision_column: pod_hash)",
        ))  # fmt: skip
    names = [c.name for c in target.checks]
    for j, check in enumerate(target.checks):
        check_at = at + ("checks", j)
        if check.name in names[:j]:  # one issue, at the repeat (as for target names)
            problems.append((check_at + ("name",), f"check name {check.name!r} is used twice"))
        if isinstance(check, DriftCheck):
            problems += [(check_at + ("columns",), p) for p in _column_problems(target, check)]
            problems += [(check_at + ("effect",), p) for p in _effect_problems(target, check)]
        elif isinstance(check, PerformanceCheck):
            problems += [(check_at + p, m) for p, m in _performance_problems(target, check)]
        else:
            need = "metric checks read a `type: prometheus` source"
            problem = _source_problem(config, check.source, PrometheusSource, need)
            if problem:
                problems.append((check_at + ("source",), problem))
    if target.labels is not None:
        need = "labels come from a `type: files`, `sql` or `kserve` source"
        sample_kinds = (FilesSource, SqlSource, KServeSource)
        problem = _source_problem(config, target.labels.source, sample_kinds, need)
        if problem:
            problems.append((at + ("labels", "source"), problem))
        if target.labels.column in target.columns.all:
            problems.append((
                at + ("labels", "column"),
                f"label column {target.labels.column!r} is also declared under `columns:`; the "
                "label is the realised outcome, not a model input or output",
            ))  # fmt: skip
    try:
        parse_trigger(target.trigger, names)
    except TriggerSyntaxError as exc:
        problems.append((at + ("trigger",), str(exc)))
    if target.rollback.enabled and target.verify_window <= target.samples.window:
        problems.append((
            at + ("verify", "window"),
            f"verify.window ({format_duration(target.verify_window)}) must be longer than "
            f"samples.window ({format_duration(target.samples.window)}): recovery is judged on "
            "windows of samples taken wholly after the rollback",
        ))  # fmt: skip
    fallback = target.rollback.fallback
    if target.rollback.to == "fallback" and fallback is not None:
        if target.workload.kind in ("argo-rollout", "deployment") and not (
            fallback.image or fallback.env or fallback.args
        ):
            what = "an Argo" if target.workload.kind == "argo-rollout" else "a Deployment"
            problems.append(
                (at + ("rollback", "fallback"), f"{what} fallback needs image, env or args")
            )
        if target.workload.kind == "kserve" and not (fallback.storage_uri or fallback.runtime):
            problems.append(
                (at + ("rollback", "fallback"), "a KServe fallback needs storage_uri or runtime")
            )
        if target.workload.kind != "kserve" and (fallback.labels or fallback.annotations):
            problems.append((
                at + ("rollback", "fallback"),
                "fallback.labels and fallback.annotations are set on a KServe InferenceService "
                "only: remove them, or use workload.kind: kserve",
            ))  # fmt: skip
    if target.rollback.to == "revision" and target.workload.kind not in (
        "argo-rollout",
        "deployment",
    ):
        problems.append((
            at + ("rollback", "to"),
            "to: revision names an Argo Rollout or Deployment revision; a KServe "
            "InferenceService goes back to its previous rolled-out revision with to: prior, and "
            "Flagger rolls a Canary back to its primary with to: prior",
        ))  # fmt: skip
    if target.rollback.to == "fallback" and target.workload.kind == "flagger-canary":
        problems.append((
            at + ("rollback", "to"),
            "Flagger rolls a Canary back to its primary only: use to: prior (the daemon answers "
            "the Canary's rollback webhook; it sends no pod template)",
        ))  # fmt: skip
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


def _effect_problems(target: Target, check: DriftCheck) -> list[str]:
    """An effect measure must be defined on every column the check tests."""
    if check.effect is None:
        return []
    want = EFFECT_KINDS[check.effect.measure]
    declared = target.columns.all
    other = [c for c in drift_columns(target, check) if ColumnKind(declared.get(c, want)) != want]
    if not other:
        return []
    use = "jensen_shannon" if want is ColumnKind.NUMERIC else "ks_d or wasserstein"
    return [
        f"check {check.name!r}: effect {check.effect.measure!s} measures {want!s} columns, "
        f"and {other} {'is' if len(other) == 1 else 'are'} not; use {use} for those "
        "(in a check of their own)"
    ]


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


def _performance_problems(target: Target, check: PerformanceCheck) -> list[tuple[Path, str]]:
    problems: list[tuple[Path, str]] = []
    if check.estimate is None and target.labels is None:
        problems.append((
            ("metric",),
            f"performance check {check.name!r} needs the target's `labels:` (source, column, "
            "join), or `estimate: cbpe` to estimate it without labels",
        ))  # fmt: skip
    if check.estimate == "cbpe" and target.labels is None:
        problems.append((
            ("estimate",),
            "estimate: cbpe calibrates on the reference's labels: give the target's `labels:` "
            "(its `column` must be in the reference source too)",
        ))  # fmt: skip
    declared = target.columns.all
    for key in ("prediction", "score"):
        column = getattr(check, key)
        if column is not None and column not in declared:
            problems.append((
                (key,),
                f"column {column!r} is not declared under `columns:` (have {sorted(declared)})",
            ))  # fmt: skip
    if check.score is not None and declared.get(check.score) == "categorical":
        problems.append(((("score",)), f"score column {check.score!r} must be numeric"))
    numeric = ("rmse", "mae")
    if check.metric in numeric and declared.get(check.prediction or "") == "categorical":
        problems.append((
            ("prediction",),
            f"{check.metric} needs a numeric prediction; {check.prediction!r} is categorical",
        ))  # fmt: skip
    return problems
