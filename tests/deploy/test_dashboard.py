"""deploy/grafana/mlwatchdog-dashboard.json: valid JSON in Grafana's dashboard model, on the
`${datasource}`, `$target`, `$check` and `$column` variables, with a panel layout that fits the
24-column grid, one drift panel per test type with that test's own threshold, and links to the
latest decision's report. (That its queries read only exported metrics is in test_promql.py;
that each returns data from a real daemon scraped by a real Prometheus is in
tests/e2e/test_dashboard_queries.py.)"""

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


def labelled_metrics(label: str = "target") -> set[str]:
    """Series names of the daemon's metrics that carry `label`."""
    from prometheus_client.metrics import MetricWrapperBase

    from mlwatchdog.daemon.metrics import DaemonMetrics

    names = set()
    for metric in vars(DaemonMetrics()).values():
        if isinstance(metric, MetricWrapperBase) and label in metric._labelnames:
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
    # Each narrows the next: the checks of the chosen targets, the columns of the chosen checks.
    definitions = {
        "target": "label_values(mlwatchdog_target_state, target)",
        "check": 'label_values(mlwatchdog_check_state{target=~"$target"}, check)',
        "column": (
            'label_values(mlwatchdog_drift_statistic{target=~"$target",check=~"$check"}, column)'
        ),
    }
    for name, definition in definitions.items():
        variable = variables[name]
        assert variable["type"] == "query"
        assert variable["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert variable["definition"] == definition
        assert variable["query"]["query"] == variable["definition"]
        assert variable["multi"] and variable["includeAll"] and variable["allValue"] == ".*"
    # Report links start with how the browser reaches the daemon: the user's to set.
    url = variables["mlwatchdog_url"]
    assert url["type"] == "textbox" and url["query"].startswith("http")


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


@pytest.mark.parametrize("label", ["target", "check", "column"])
def test_queries_filter_by_the_variable_of_each_label_they_carry(
    board: dict[str, Any], label: str
) -> None:
    labelled = labelled_metrics(label)
    assert "mlwatchdog_drift_statistic" in labelled
    for panel in panels(board):
        for target in panel["targets"]:
            expr = target["expr"]
            metrics, _ = promql_names(expr)
            for name in metrics & labelled:
                selectors = re.findall(rf"\b{name}\{{([^}}]*)\}}", expr)
                assert selectors, f"{panel['title']}: {name} without a selector"
                for selector in selectors:
                    assert f'{label}=~"${label}"' in selector, f"{panel['title']}: {name}"


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
    assert "mlwatchdog_check_threshold" in exprs["Check value vs threshold"]
    assert "increase(mlwatchdog_decisions_total" in exprs["Decisions"]
    assert "mlwatchdog_actions_total" in exprs["Rollback outcomes"]
    assert "rate(mlwatchdog_evaluations_total" in exprs["Evaluations by result"]
    assert "histogram_quantile(0.95" in exprs["Evaluation duration"]
    assert "time() - max by (target)" in exprs["Time since last evaluation"]
    assert "mlwatchdog_leader" in exprs["Leader"]
    assert "mlwatchdog_reference_builds_total" in exprs["Reference builds"]
    assert "mlwatchdog_last_decision_timestamp_seconds" in exprs["Latest decision"]
    assert "mlwatchdog_build_info" in exprs["Version"]
    for title, metric in (
        ("Process CPU", "process_cpu_seconds_total"),
        ("Process memory", "process_resident_memory_bytes"),
        ("Open file descriptors", "process_open_fds"),
    ):
        # Every job has process_* series: only the daemon's own scrapes are shown.
        assert metric in exprs[title]
        assert "and on (job, instance) mlwatchdog_build_info" in exprs[title], title


# One panel per test type and statistic, in its unit, each with the threshold that test used
# (mlwatchdog_check_test_threshold: alpha or the PSI limit; never the drift share).
PER_TEST = {
    "KS p-value per column": ("mlwatchdog_drift_pvalue", "ks", "alpha"),
    "KS statistic D per column": ("mlwatchdog_drift_statistic", "ks", None),
    "Chi-square p-value per column": ("mlwatchdog_drift_pvalue", "chi2", "alpha"),
    "Chi-square statistic per column": ("mlwatchdog_drift_statistic", "chi2", None),
    "PSI per column": ("mlwatchdog_drift_statistic", "psi", "limit"),
}


@pytest.mark.parametrize("title", PER_TEST)
def test_one_panel_per_test_type_with_its_own_threshold(board: dict[str, Any], title: str) -> None:
    metric, test, line = PER_TEST[title]
    [panel] = [p for p in panels(board) if p["title"] == title]
    [values, *threshold] = panel["targets"]
    assert metric in values["expr"] and f'test="{test}"' in values["expr"]
    assert "by (target, check, column)" in values["expr"]
    defaults = panel["fieldConfig"]["defaults"]
    assert defaults["custom"]["axisLabel"], "the axis says what its unit is"
    if metric == "mlwatchdog_drift_pvalue":
        assert defaults["custom"]["scaleDistribution"] == {"type": "log", "log": 10}
        assert defaults["max"] == 1
    if line is None:
        assert threshold == []
        return
    [limit] = threshold
    assert "mlwatchdog_check_test_threshold" in limit["expr"]
    assert f'test="{test}"' in limit["expr"]
    assert limit["legendFormat"].startswith(f"{line} ")
    [dashed] = panel["fieldConfig"]["overrides"]
    assert dashed["matcher"] == {"id": "byRegexp", "options": f"{line} .*"}


def test_the_drift_share_is_drawn_only_against_the_check_value(board: dict[str, Any]) -> None:
    """The drift share (mlwatchdog_check_threshold) is the limit of the share of drifted columns:
    on a per-column panel it would read as an alpha or a PSI limit."""
    for panel in panels(board):
        if any("mlwatchdog_check_threshold" in t["expr"] for t in panel["targets"]):
            assert panel["title"] == "Check value vs threshold"


def test_effect_sizes_are_drawn_against_their_floor(board: dict[str, Any]) -> None:
    [panel] = [p for p in panels(board) if p["title"] == "Effect size per column"]
    values, floor = panel["targets"]
    assert "mlwatchdog_drift_effect" in values["expr"] and "measure" in values["legendFormat"]
    assert "mlwatchdog_check_effect_floor" in floor["expr"]


REPORT_LINK = "${mlwatchdog_url}/reports/latest?target=${__field.labels.target}"


def test_series_of_a_target_link_to_its_latest_decisions_report(board: dict[str, Any]) -> None:
    linked = {
        p["title"]
        for p in panels(board)
        if any(link["url"] == REPORT_LINK for link in p["fieldConfig"]["defaults"].get("links", []))
    }
    assert {
        "Target state",
        "Check states",
        "Latest decision",
        "Decisions",
        "Check value vs threshold",
        *PER_TEST,
        "Effect size per column",
    } <= linked
    for panel in panels(board):
        if panel["title"] in linked:  # the link needs the series' target label
            for target in panel["targets"]:
                grouping = re.search(r"by \(([^)]*)\)", target["expr"])
                assert grouping and "target" in grouping.group(1), panel["title"]
