"""The report's plots say what the tests computed: KS's D drawn where scipy finds it and labelled
with its value, pending and firing stretches from the check states, one time format."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pandas as pd
from scipy import stats

from mlwatchdog.core import DataStatus, MetricReading, Observation, evaluate
from mlwatchdog.detectors import Reference
from mlwatchdog.replay.timeline import timeline_rows
from mlwatchdog.report import svg
from mlwatchdog.report.figures import _bands, column_svg, timeline_figures
from mlwatchdog.report.page import utc_text
from mlwatchdog.rules.schema import DriftCheck
from tests.unit.test_core_scenarios import at, make_target


def test_ks_plot_marks_d_where_the_cdfs_are_furthest_apart() -> None:
    rng = np.random.default_rng(1)
    ref, cur = rng.normal(0, 1, 2000), rng.normal(0.4, 1, 700)
    reference = Reference(pd.DataFrame({"x": ref}))
    result = reference.test(pd.DataFrame({"x": cur}), "ks").rows()[0]
    check = DriftCheck.model_validate({"name": "d", "type": "drift", "test": "ks"})
    drawn = column_svg(
        result,
        reference.sample.columns[0],
        reference.prepare(pd.DataFrame({"x": cur})).columns[0],
        check,
        0.05,
    )
    expected = stats.ks_2samp(ref, cur)
    assert f"D = {expected.statistic:.3f}" in drawn
    # The segment spans the gap between the two CDFs at D's place: its height is D in pixels.
    segment = re.search(r'class="ks-d" x1="[\d.]+" x2="[\d.]+" y1="([\d.]+)" y2="([\d.]+)"', drawn)
    assert segment is not None
    inner = svg.HEIGHT - svg.MARGIN_TOP - svg.MARGIN_BOTTOM  # y from 0 to 1
    height = (float(segment.group(2)) - float(segment.group(1))) / inner
    assert abs(height - expected.statistic) < 0.002
    assert drawn.count('class="line reference"') == 1 and drawn.count('class="line current"') == 1


def test_bands_follow_the_check_states() -> None:
    xs = [0.0, 10.0, 20.0, 30.0, 40.0, 50.0]
    states = ["inactive", "pending", "pending", "firing", "firing", "inactive"]
    assert _bands(xs, states) == [
        svg.Band(10.0, 30.0, "pending"),
        svg.Band(30.0, 50.0, "firing"),
    ]


def test_one_time_format() -> None:
    moment = datetime(2026, 11, 25, 12, 0, 5, 123456, tzinfo=UTC)
    assert utc_text(moment) == "2026-11-25T12:00:05Z"
    assert utc_text(moment.isoformat()) == "2026-11-25T12:00:05Z"
    assert utc_text(moment.astimezone(timezone(timedelta(hours=2)))) == "2026-11-25T12:00:05Z"
    assert utc_text(None) == "-"


def test_svg_text_is_escaped() -> None:
    drawn = svg.bar_chart("<script>x</script>", ["<b>"], [("a&b", [0.5], "#000", "c")])
    assert "<script>" not in drawn and "&lt;script&gt;" in drawn and "a&amp;b" in drawn


def test_a_metric_checks_series_against_its_limit_with_its_states_and_decisions() -> None:
    target = make_target(
        {
            "workload": {"kind": "none"},
            "checks": [
                {"name": "error_rate", "type": "metric", "source": "prom",
                 "query": "sum(rate(errors[5m]))", "above": 0.02},
            ],
            "trigger": "error_rate",
        }
    )  # fmt: skip
    values = [0.01] * 6 + [0.03] * 8 + [0.01] * 4
    state, rows, marks = None, [], []
    for i, value in enumerate(values):
        now = at(i)
        observation = Observation(
            "credit-model", now, metrics={"error_rate": MetricReading(DataStatus.OK, value)}
        )
        evaluation = evaluate(target, observation, state, now)
        state = evaluation.state
        rows += timeline_rows(target.name, now, evaluation)
        marks += [(now, str(d.kind)) for d in evaluation.decisions]
    assert [label for _, label in marks] == ["escalate"]  # workload none: a human is called
    (figure,) = timeline_figures(target, rows, marks)
    drawn = figure.svg
    assert "error_rate: metric value" in drawn and "above 0.02" in drawn
    assert drawn.count("<circle") == len(values)  # every evaluation's value
    assert 'class="band pending"' in drawn and 'class="band firing"' in drawn
    assert drawn.count('class="marker"') == 1 and ">escalate<" in drawn
