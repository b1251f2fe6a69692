"""deploy/grafana/mlwatchdog-dashboard.json: valid JSON in Grafana's dashboard model, on the
`${datasource}` and `$target` variables, with a panel layout that fits the 24-column grid.
(That its queries read only exported metrics is in test_promql.py.)"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.deploy.manifests import DASHBOARD, promql_names


@pytest.fixture(scope="module")
def board() -> dict[str, Any]:
    with open(DASHBOARD, encoding="utf-8") as f:
        loaded: dict[str, Any] = json.load(f)
    return loaded


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in board["panels"] if p["type"] != "row"]


def target_labelled_metrics() -> set[str]:
    """Series names of the daemon's metrics that carry a `target` label."""
    from prometheus_client.metrics import MetricWrapperBase

    from mlwatchdog.daemon.metrics import DaemonMetrics

    names = set()
    for metric in vars(DaemonMetrics()).values():
        if isinstance(metric, MetricWrapperBase) and "target" in metric._labelnames:
            suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}
            for suffix in suffixes.get(metric._type, [""]):
                names.add(metric._name + suffix)
    return names


def test_dashboard_model(board: dict[str, Any]) -> None:
    assert 36 <= board["schemaVersion"] <= 41
    assert board["uid"] == "mlwatchdog" and board["title"]
    assert board["__inputs"] == []  # importable as is: no ${DS_...} placeholders to fill
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))


def test_template_variables(board: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in board["templating"]["list"]}
    datasource = variables["datasource"]
    assert datasource["type"] == "datasource" and datasource["query"] == "prometheus"
    target = variables["target"]
    assert target["type"] == "query"
    assert target["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    assert target["definition"] == "label_values(mlwatchdog_target_state, target)"
    assert target["query"]["query"] == target["definition"]
    assert target["multi"] and target["includeAll"] and target["allValue"] == ".*"


def test_every_query_uses_the_datasource_variable(board: dict[str, Any]) -> None:
    uid = {"type": "prometheus", "uid": "${datasource}"}
    for panel in panels(board):
        assert panel["datasource"] == uid, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == uid, panel["title"]
    for annotation in board["annotations"]["list"]:
        if "expr" in annotation:
            assert annotation["datasource"] == uid


def test_queries_on_per_target_metrics_filter_by_the_target_variable(
    board: dict[str, Any],
) -> None:
    per_target = target_labelled_metrics()
    assert "mlwatchdog_drift_statistic" in per_target
    for panel in panels(board):
        for target in panel["targets"]:
            expr = target["expr"]
            metrics, _ = promql_names(expr)
            for name in metrics & per_target:
                selectors = re.findall(rf"\b{name}\{{([^}}]*)\}}", expr)
                assert selectors, f"{panel['title']}: {name} without a selector"
                for selector in selectors:
                    assert 'target=~"$target"' in selector, f"{panel['title']}: {name}"


def test_panels_are_described_and_fit_the_grid(board: dict[str, Any]) -> None:
    cells: set[tuple[int, int]] = set()
    for panel in board["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        area = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & area, f"{panel['title']} overlaps another panel"
        cells |= area
        if panel["type"] != "row":
            assert panel.get("description"), panel["title"]


def test_the_panels_the_dashboard_promises(board: dict[str, Any]) -> None:
    by_title = {p["title"]: p for p in panels(board)}
    exprs = {t: " ".join(x["expr"] for x in p["targets"]) for t, p in by_title.items()}
    assert by_title["Target state"]["type"] == "state-timeline"
    assert by_title["Check states"]["type"] == "state-timeline"
    assert "mlwatchdog_check_threshold" in exprs["Drift statistic per column"]
    assert "by (target, check, column, test)" in exprs["Drift statistic per column"]
    assert "mlwatchdog_drift_pvalue" in exprs["Drift p-value per column"]
    assert "mlwatchdog_check_threshold" in exprs["Check value vs threshold"]
    assert "increase(mlwatchdog_decisions_total" in exprs["Decisions"]
    assert "mlwatchdog_actions_total" in exprs["Rollback outcomes"]
    assert "rate(mlwatchdog_evaluations_total" in exprs["Evaluations by result"]
    assert "histogram_quantile(0.95" in exprs["Evaluation duration"]
    assert "time() - max by (target)" in exprs["Time since last evaluation"]
    assert "mlwatchdog_leader" in exprs["Leader"]
    assert "mlwatchdog_reference_builds_total" in exprs["Reference builds"]
