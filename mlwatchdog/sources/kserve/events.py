"""A KServe logger CloudEvent as the sink stores it: `event_record` checks its type, attributes,
time and body and makes its `Event`; the sink route (`daemon/sink.py`) calls it with the event's
attributes (as the CloudEvents SDK names them: id, type, time as a datetime, extensions) and data.

KServe's payload logger sends one CloudEvent for each inference request and one for its response,
with the same ce-id. The body is v1 (`instances` / `predictions`) or v2, the open inference
protocol (`inputs` / `outputs` tensors); either becomes the event's rows, one per instance.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from mlwatchdog.rules import KServeSource, Sink
from mlwatchdog.sources.kserve.lines import Event, stamp

REQUEST = "org.kubeflow.serving.inference.request"
RESPONSE = "org.kubeflow.serving.inference.response"
MAX_ATTRIBUTE = 256  # characters of a stored attribute (ce-id, extensions)
MAX_TENSOR_DEPTH = 32  # nesting of a v2 tensor's `data`: one level per dimension at most

_KINDS = {REQUEST: "request", RESPONSE: "response"}
_V1 = {"request": "instances", "response": "predictions"}
_V2 = {"request": "inputs", "response": "outputs"}


class InvalidEvent(ValueError):
    """An event the sink does not store: `status` is the HTTP status to answer with, `reason` a
    short token for the metric (mlwatchdog_sink_events_total)."""

    def __init__(self, message: str, status: int = 422, reason: str = "invalid_payload") -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


def event_record(
    attributes: Mapping[str, Any], data: Any, received: datetime, sink: Sink | None = None
) -> Event:
    """The event of these CloudEvent attributes and data to store, timed by its ce-time (else
    `received`); raises InvalidEvent. With `sink`, a ce-time too far from `received` is refused
    (its limits)."""
    kind = _KINDS.get(str(attributes.get("type")))
    if kind is None:
        raise InvalidEvent(
            f"unknown ce-type {attributes.get('type')!r}; the sink takes {REQUEST} and {RESPONSE}",
            reason="unknown_type",
        )
    ce_id = _bounded("ce-id", str(attributes.get("id")))
    moment = attributes.get("time") or received
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)  # a naive ce-time is UTC
    if sink is not None:
        check_time(moment, received, sink)
    try:
        time = stamp(moment)
    except ValueError as exc:
        raise InvalidEvent(f"ce-time {exc}", reason="invalid_cloudevent") from None
    rows, names = _payload_rows(_json_body(data), kind)
    return Event(  # KServe's extensions: pkg/logger/worker.go
        time,
        kind,
        ce_id,
        inference_service=attribute(attributes, "inferenceservicename"),
        namespace=attribute(attributes, "namespace"),
        component=attribute(attributes, "component"),
        endpoint=attribute(attributes, "endpoint"),
        rows=rows,
        names=names,
    )


def attribute(attributes: Mapping[str, Any], extension: str) -> str:
    """A KServe extension of the event as stored ("" when absent); long ones are refused."""
    return _bounded(f"ce-{extension}", str(attributes.get(extension) or ""))


def selects(source: KServeSource, inference_service: str, namespace: str, component: str) -> bool:
    """Source `source` reads the events of this inference service, namespace and component."""
    return all(
        wanted is None or value == wanted
        for value, wanted in [
            (inference_service, source.inference_service),
            (namespace, source.namespace),
            (component, source.component),
        ]
    )


def check_time(moment: datetime, now: datetime, sink: Sink) -> None:
    """Refuse a ce-time beyond the sink's limits: stored under it, rows would be misfiled."""
    ahead = moment - now
    if ahead > sink.max_clock_skew:
        raise InvalidEvent(
            f"ce-time {moment.isoformat()} is {_duration(ahead)} ahead of the daemon's clock, "
            f"more than daemon.sink.max_clock_skew ({_duration(sink.max_clock_skew)}): fix the "
            "sender's clock (NTP), or raise max_clock_skew",
            reason="clock_skew",
        )
    if -ahead > sink.max_event_age:
        raise InvalidEvent(
            f"ce-time {moment.isoformat()} is {_duration(-ahead)} old, older than "
            f"daemon.sink.max_event_age ({_duration(sink.max_event_age)}): fix the sender's clock "
            "(NTP), or raise max_event_age to take events sent this late",
            reason="too_old",
        )


def _duration(span: timedelta) -> str:
    """As rules.yaml spells durations: 3h, 5m, 2d4h, 1m30s."""
    seconds = int(span.total_seconds())
    parts = [(seconds // 86_400, "d"), (seconds % 86_400 // 3600, "h")]
    parts += [(seconds % 3600 // 60, "m"), (seconds % 60, "s")]
    return "".join(f"{n}{unit}" for n, unit in parts if n) or "0s"


def _bounded(name: str, value: str) -> str:
    if len(value) > MAX_ATTRIBUTE:
        raise InvalidEvent(
            f"{name} has {len(value)} characters; the sink takes at most {MAX_ATTRIBUTE}",
            400,
            "long_attribute",
        )
    return value


def _json_body(data: Any) -> dict[str, Any]:
    # The SDK parses JSON only under a JSON Content-Type; KServe copies the client's, which curl
    # sets to application/x-www-form-urlencoded, so any text is tried as JSON.
    if isinstance(data, bytes | str):
        try:
            data = json.loads(data)
        except RecursionError:
            raise too_deep() from None
        except ValueError as exc:
            raise InvalidEvent(f"the body is not JSON: {exc}", 400, "not_json") from None
    if data is None:
        raise InvalidEvent("the event has no body", 400, "not_json")
    if not isinstance(data, dict):
        raise InvalidEvent(
            f"the body is a JSON {type(data).__name__}, not an object with instances or inputs"
        )
    return data


def too_deep() -> InvalidEvent:
    return InvalidEvent(
        "the event nests JSON too deep (KServe's bodies nest a few levels)", 400, "too_deep"
    )


def _payload_rows(body: dict[str, Any], kind: str) -> tuple[list[Any], tuple[str, ...] | None]:
    v1, v2 = _V1[kind], _V2[kind]
    if isinstance(body.get(v1), list):
        return [item if isinstance(item, list | dict) else [item] for item in body[v1]], None
    if isinstance(body.get(v2), list):
        return _v2_rows(body[v2], v2)
    raise InvalidEvent(
        f"a {kind} body needs a list `{v1}` (v1) or `{v2}` (v2, open inference protocol); "
        f"it has {sorted(body)[:10]}"
    )


def _v2_rows(tensors: list[Any], field: str) -> tuple[list[Any], tuple[str, ...] | None]:
    """Rows of v2 tensors: named by the tensors when each holds one value per row, else
    positional (the tensors' values side by side)."""
    if not tensors:
        raise InvalidEvent(f"`{field}` has no tensors")
    columns: list[tuple[str, int, list[Any]]] = []
    batch: int | None = None
    for i, tensor in enumerate(tensors):
        name, shape, data = _tensor(tensor, f"{field}[{i}]")
        rows, width = (shape[0] if shape else 1), math.prod(shape[1:])
        if len(data) != rows * width:
            raise InvalidEvent(
                f"{field}[{i}] ({name!r}): shape {shape} holds {rows * width} values, "
                f"but its data has {len(data)}"
            )
        if batch is not None and rows != batch:
            raise InvalidEvent(
                f"{field}[{i}] ({name!r}) has {rows} rows but {field}[0] has {batch}: "
                "tensors share the batch dimension"
            )
        batch = rows
        columns.append((name, width, data))
    names = tuple(name for name, _, _ in columns)
    if all(width == 1 for _, width, _ in columns) and len(set(names)) == len(names):
        return [
            list(values) for values in zip(*(data for _, _, data in columns), strict=True)
        ], names
    side_by_side = [
        [v for _, w, data in columns for v in data[r * w : (r + 1) * w]] for r in range(batch or 0)
    ]
    return side_by_side, None


def _tensor(tensor: Any, where: str) -> tuple[str, list[int], list[Any]]:
    if not isinstance(tensor, dict):
        raise InvalidEvent(f"{where} is not a tensor (an object with name, shape and data)")
    name, shape, data = tensor.get("name"), tensor.get("shape"), tensor.get("data")
    if not isinstance(name, str):
        raise InvalidEvent(f"{where} has no `name`")
    if not isinstance(shape, list) or not all(
        isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape
    ):
        raise InvalidEvent(f"{where} ({name!r}): `shape` must list non-negative integers")
    if not isinstance(data, list):
        raise InvalidEvent(f"{where} ({name!r}): `data` must be a list")
    return name, shape, _flatten(data, where)


def _flatten(data: list[Any], where: str) -> list[Any]:
    """Row-major values of `data`, which the protocol allows flat or nested (without recursion:
    a hostile body must not exhaust the stack)."""
    if not any(isinstance(v, list) for v in data):
        return data
    flat: list[Any] = []
    stack = [iter(data)]
    while stack:
        for value in stack[-1]:
            if isinstance(value, list):
                if len(stack) >= MAX_TENSOR_DEPTH:
                    raise InvalidEvent(
                        f"{where}: `data` nests more than {MAX_TENSOR_DEPTH} levels deep",
                        400,
                        "too_deep",
                    )
                stack.append(iter(value))
                break
            flat.append(value)
        else:
            stack.pop()
    return flat
