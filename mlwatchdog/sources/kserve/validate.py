"""Checks a logger event against what the targets reading it declare, so that accepted data can
never blind a window; the sink route calls it before storing.

The `type: kserve` sources selecting the event (by inference_service, namespace, component) and
the targets reading them (samples or reference) give the declared columns, their kinds and the
sources' input_names / output_names. A row must fit what `pairing.py` does with it: a named
row names declared columns, a positional one has as many values as its side's declared columns
(features for requests, predictions for responses) or names, and each value is of its column's
kind. An event no source reads is refused too: it would only fill the disk.
"""

from __future__ import annotations

from typing import Any

from mlwatchdog.rules import Config, KServeSource, Target
from mlwatchdog.sources.kserve.events import InvalidEvent, selects
from mlwatchdog.sources.kserve.lines import Event

_Plan = list[tuple[str, Any, str]]  # (column, key or position of its value, its kind)


def check_event(event: Event, config: Config) -> None:
    """Raise InvalidEvent (422, the reason naming the column and target) unless every target
    reading the event can use each of its rows."""
    sources = [
        (name, spec)
        for name, spec in config.sources.items()
        if isinstance(spec, KServeSource)
        and selects(spec, event.inference_service, event.namespace, event.component)
    ]
    if not sources:
        raise InvalidEvent(
            f"no `type: kserve` source reads inference_service {event.inference_service!r}, "
            f"namespace {event.namespace!r}, component {event.component!r}; add one "
            "(its filters select events by these) or point the logger elsewhere",
            reason="no_source",
        )
    for name, spec in sources:
        for target in config.targets:
            if name in (target.samples.source, target.reference.source):
                _check_rows(event, name, spec, target)


def _check_rows(event: Event, source: str, spec: KServeSource, target: Target) -> None:
    plans: dict[tuple[Any, bool], _Plan] = {}
    for i, row in enumerate(event.rows):
        keyed = event.names is None and isinstance(row, dict)
        layout = event.names or (tuple(row) if keyed else len(row))
        plan = plans.get((layout, keyed))
        if plan is None:
            plan = plans[(layout, keyed)] = _plan(event, i, layout, keyed, source, spec, target)
        for column, key, kind in plan:
            reason = _wrong_kind(row[key], kind)
            if reason is not None:
                raise InvalidEvent(
                    f"{event.kind} row {i}: column {column!r} of target {target.name!r} is "
                    f"{kind}, but the value is {_shown(row[key])}",
                    reason=reason,
                )


def _plan(
    event: Event,
    i: int,
    layout: tuple[str, ...] | int,
    keyed: bool,
    source: str,
    spec: KServeSource,
    target: Target,
) -> _Plan:
    """Which value of rows of this layout fills which column of `target`; raises InvalidEvent
    for a layout the reader could not use."""
    request = event.kind == "request"
    columns = target.columns.all
    side = target.columns.features if request else target.columns.predictions
    names = spec.input_names if request else spec.output_names
    option = "input_names" if request else "output_names"
    where = f"target {target.name!r} (source {source!r})"
    if isinstance(layout, tuple) and any(name in columns for name in layout):
        found = [(name, j) for j, name in enumerate(layout) if name in columns]
    else:
        if keyed and names is None:
            assert isinstance(layout, tuple)
            raise InvalidEvent(
                f"{event.kind} row {i} names {list(layout)[:10]}, none of the columns {where} "
                f"declares ({list(columns)}); rename them, or set {option} to read their "
                "values by position",
                reason="unknown_column",
            )
        if names == []:  # told to skip this side's positional values
            return []
        width = len(layout) if isinstance(layout, tuple) else layout
        expected = list(side) if names is None else names
        if width != len(expected):
            declared = (
                f"{len(expected)} {'features' if request else 'predictions'} {expected}"
                if names is None
                else f"{option} {expected}"
            )
            raise InvalidEvent(
                f"{event.kind} row {i} has {width} positional value(s), but {where} declares "
                f"{declared} for them; set {option} on the source to name them (or [] to "
                "skip them)",
                reason="column_count",
            )
        found = [(name, j) for j, name in enumerate(expected) if name in columns]
    return [
        (name, layout[j] if keyed and isinstance(layout, tuple) else j, columns[name])
        for name, j in found
    ]


def _wrong_kind(value: Any, kind: str) -> str | None:
    """None when `value` fits a column of `kind`, else the metric's reason."""
    if value is None:
        return None
    numeric = kind == "numeric"
    if isinstance(value, bool):  # JSON true/false: a category, not a number
        return "not_numeric" if numeric else None
    if isinstance(value, int | float):
        try:
            float(value)
        except OverflowError:  # an integer no float can hold
            return "not_numeric" if numeric else "not_categorical"
        return None
    if isinstance(value, str):
        return "not_numeric" if numeric else None
    return "not_numeric" if numeric else "not_categorical"


_JSON_TYPES = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}


def _shown(value: Any) -> str:
    text = repr(value)
    text = text if len(text) <= 40 else text[:37] + "..."
    kind = _JSON_TYPES.get(type(value), "a list" if isinstance(value, list) else "an object")
    return f"{kind} ({text})"
