"""The detection benchmark (benchmarks/detection_bench.py) on small streams: it sees a step when
it comes, measures the sub-windows' shorter delay, reads river's Occupancy with its annotated
change, and lets a rule carry target-level settings. alibi-detect is not needed."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

from benchmarks import detection_bench as bench


def test_the_defaults_catch_a_step_sooner_than_the_fixed_window() -> None:
    reference = bench.normal_rows(np.random.default_rng(0), bench.REFERENCE_ROWS)
    stream = bench.step_stream(7, before=bench.DAY, after=bench.DAY)
    methods = bench.rule_methods(reference, stream, bench.DAY)

    fixed = bench.delays(methods["mlwatchdog: fixed window (before issue 14)"], [stream])
    defaults = bench.delays(methods["mlwatchdog: defaults (recent sub-windows)"], [stream])

    assert fixed.misses == defaults.misses == 0
    assert fixed.delays and defaults.delays
    assert 0 < defaults.delays[0] < fixed.delays[0] <= bench.DAY


def test_a_rule_carries_target_level_settings_into_the_target() -> None:
    plain = bench.target_for(bench.DAY, {})
    held = bench.target_for(bench.DAY, {"target": {"for": "2h", "resolve_after": "1h"}})

    assert plain.for_ == timedelta(0)
    assert held.for_ == timedelta(hours=2) and held.resolve_after == timedelta(hours=1)
    assert held.checks == plain.checks and held.samples == plain.samples


def test_occupancy_changes_when_the_office_empties_and_is_detected_without_false_alarms() -> None:
    pytest.importorskip("river", reason="river (the dev extra) ships the Occupancy data set")
    loaded = bench.occupancy()
    assert loaded is not None
    stream, reference = loaded

    # A day of readings every 16 minutes is the reference; detection begins after it.
    assert stream.minutes_per_row == 16 and len(reference) == stream.begins == 90
    assert stream.change is not None and stream.begins < stream.change < len(stream.rows)
    # The agreed change point: the lights stay off on the day after it (Saturday).
    day = stream.rows_for(bench.DAY)
    before = stream.rows["light"].iloc[stream.change - day : stream.change].mean()
    after = stream.rows["light"].iloc[stream.change : stream.change + day].mean()
    assert after < before / 2

    detect = bench.rule_methods(reference, stream, bench.DAY, bench.OCCUPANCY_DRIFT_SHARE)[
        "mlwatchdog: fixed window (before issue 14)"
    ]
    outcome = bench.real_stream(detect, stream)
    assert outcome.alarms_per_week == 0
    assert outcome.delays and 0 < outcome.delays[0] <= bench.DAY
