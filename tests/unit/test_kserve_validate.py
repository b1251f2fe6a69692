"""What the sink takes: an event must be read by a `type: kserve` source, and each of its rows
must fit every target reading that source, as the reader will pair it (column counts, names,
value kinds). And what it takes never blinds a window: the reader pairs it as validated."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from mlwatchdog.rules import Config, parse_config
from mlwatchdog.sources.kserve import Event, InvalidEvent, check_event
from mlwatchdog.sources.kserve.lines import stamp
from mlwatchdog.sources.kserve.pairing import pair

RULES = """
sources:
  credit: {type: kserve, inference_service: credit, namespace: models}
  shared: {type: kserve, namespace: shared}
  vision: {type: kserve, namespace: vision, input_names: [x, y, z], output_names: []}
  spare: {type: kserve, namespace: spare}
  training: {type: files, url: /data/training.csv, timestamp_column: null}
targets:
  - name: credit-model
    samples: {source: credit}
    reference: {source: training}
    columns:
      features: {age: numeric, income: numeric, channel: categorical}
      predictions: {score: numeric}
    checks: [{name: drift, type: drift, test: ks}]
  - name: shared-samples
    samples: {source: shared}
    reference: {source: training}
    columns:
      features: {age: numeric, income: numeric, channel: categorical}
    checks: [{name: drift, type: drift, test: ks}]
  - name: shared-reference
    samples: {source: training}
    reference: {source: shared}
    columns:
      features: {age: numeric, income: numeric}
    checks: [{name: drift, type: drift, test: ks}]
  - name: vision-model
    samples: {source: vision}
    reference: {source: training}
    columns:
      features: {x: numeric, z: numeric}
    checks: [{name: drift, type: drift, test: ks}]
"""
AT = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def config() -> Config:
    return parse_config(RULES)


def event(
    kind: str,
    rows: list[Any],
    isvc: str = "credit",
    namespace: str = "models",
    names: tuple[str, ...] | None = None,
) -> Event:
    return Event(stamp(AT), kind, "e1", isvc, namespace, "predictor", "", rows=rows, names=names)


ACCEPTED = [
    ("v1 positional rows", event("request", [[31, 52.5, "web"], [40, None, 3]])),
    ("v1 named rows with more keys", event("request", [{"age": 1, "zip": "10115"}])),
    ("a number or a boolean as a category", event("request", [[1, 2.0, 7], [1, 2.0, True]])),
    ("v1 predictions", event("response", [[0.5], [None], [float("nan")]])),
    ("v1 named predictions", event("response", [{"score": 0.7, "label": 1}])),
    ("a v2 output named by the server", event("response", [[0.5]], names=("output-0",))),
    ("v2 inputs named as the columns", event("request", [[1, 2.0]], names=("age", "income"))),
    ("input_names count the inputs", event("request", [[1, 2, 3]], "cam", "vision")),
    ("output_names: [] skips the outputs", event("response", [[0.1, 0.9, 5]], "cam", "vision")),
    ("a source no target reads", event("request", [["anything"]], "x", "spare")),
]


@pytest.mark.parametrize("sent", [e for _, e in ACCEPTED], ids=[i for i, _ in ACCEPTED])
def test_events_the_targets_can_use_are_accepted(config: Config, sent: Event) -> None:
    check_event(sent, config)


REFUSED = [
    ("no source", event("request", [[1, 2.0, "web"]], "fraud"), "no_source", "'fraud'"),
    (
        "too many inputs",
        event("request", [[1, 2.0, "web"], [1, 2.0, "web", 4]]),
        "column_count",
        "request row 1 has 4 positional value(s), but target 'credit-model' (source 'credit') "
        "declares 3 features ['age', 'income', 'channel']",
    ),
    (
        "too few outputs",
        event("response", [[]]),
        "column_count",
        "declares 1 predictions ['score']",
    ),
    (
        "a second target declares fewer features",
        event("request", [[1, 2.0, "web"]], "any", "shared"),
        "column_count",
        "target 'shared-reference' (source 'shared') declares 2 features ['age', 'income']",
    ),
    (
        "outputs for a target that declares no prediction",
        event("response", [[0.5]], "any", "shared"),
        "column_count",
        "target 'shared-samples' (source 'shared') declares 0 predictions []",
    ),
    (
        "input_names count the inputs",
        event("request", [[1, 2]], "cam", "vision"),
        "column_count",
        "declares input_names ['x', 'y', 'z']",
    ),
    (
        "unknown names alone",
        event("request", [{"height": 1.8}]),
        "unknown_column",
        "names ['height'], none of the columns",
    ),
    (
        "a numeric column's string",
        event("request", [{"age": "31"}]),
        "not_numeric",
        "column 'age' of target 'credit-model' is numeric, but the value is a string ('31')",
    ),
    ("a numeric column's boolean", event("response", [[True]]), "not_numeric", "a boolean"),
    ("a numeric column's list", event("request", [{"income": [1]}]), "not_numeric", "a list"),
    ("an integer beyond float", event("response", [[10**400]]), "not_numeric", "an integer"),
    (
        "a categorical column's object",
        event("request", [[1, 2.0, {"a": 1}]]),
        "not_categorical",
        "column 'channel' of target 'credit-model' is categorical, but the value is an object",
    ),
    (
        "a v2 tensor of text for a number",
        event("request", [["31", 2.0]], names=("age", "income")),
        "not_numeric",
        "column 'age'",
    ),
]


@pytest.mark.parametrize(
    ("sent", "reason", "says"), [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED]
)
def test_events_a_target_cannot_use_are_refused_naming_why(
    config: Config, sent: Event, reason: str, says: str
) -> None:
    with pytest.raises(InvalidEvent) as refused:
        check_event(sent, config)
    assert refused.value.status == 422
    assert refused.value.reason == reason
    assert says in str(refused.value)


def test_what_is_accepted_pairs_as_it_was_validated(config: Config) -> None:
    """Accepted events of several layouts, read together: every value in its column, nothing
    set aside, numbers as floats."""
    sent = [
        event("request", [[31, 52.5, "web"]]),
        event("response", [[0.5]]),
        event("request", [{"channel": "app", "income": 1.5, "age": 7, "zip": "1"}]),
        event("response", [{"score": 0.7, "label": 1, "age": 7}]),  # echoes a feature
        event("request", [[2, 3.0]], names=("age", "income")),
        event("response", [[0.1]], names=("output-0",)),
    ]
    sent = [
        Event(e.time, e.kind, f"e{i // 2}", *e_meta(e), rows=e.rows, names=e.names)
        for i, e in enumerate(sent)
    ]
    for each in sent:
        check_event(each, config)
    target = config.target("credit-model")
    spec = config.sources["credit"]
    rows, counts, aside = pair(
        sent, list(target.columns.all), spec, AT - timedelta(hours=1), None, None
    )
    assert aside == [] and counts == {"paired": 3, "alone": 0, "waiting": 0}
    values = rows[["age", "income", "channel", "score"]].astype(object)
    assert values.where(values.notna(), None).to_dict("records") == [
        {"age": 31.0, "income": 52.5, "channel": "web", "score": 0.5},
        {"age": 7.0, "income": 1.5, "channel": "app", "score": 0.7},
        {"age": 2.0, "income": 3.0, "channel": None, "score": 0.1},
    ]


def e_meta(e: Event) -> tuple[str, str, str, str]:
    return (e.inference_service, e.namespace, e.component, e.endpoint)
