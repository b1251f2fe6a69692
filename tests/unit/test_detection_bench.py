"""The detection benchmark (benchmarks/detection_bench.py) on small streams: it sees a step when
it comes, measures the sub-windows' shorter delay, tests each stream against its own reference,
counts false alarms per week after the windows' warm-up, reads river's Occupancy with its
annotated change, and lets a rule carry target-level settings. alibi-detect is not needed."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import timedelta

import pandas as pd
import pytest

from benchmarks import detection_bench as bench


def test_the_defaults_catch_a_step_sooner_than_the_fixed_window() -> None:
    stream = bench.step_stream(7, before=bench.DAY, after=bench.DAY)
    methods = bench.rule_methods(stream, bench.DAY)

    fixed = bench.delays(methods["mlwatchdog: fixed window (before issue 14)"], [stream])
    defaults = bench.delays(methods["mlwatchdog: defaults (recent sub-windows)"], [stream])

    assert fixed.misses == defaults.misses == 0
    assert fixed.delays and defaults.delays
    assert 0 < defaults.delays[0] < fixed.delays[0] <= bench.DAY


def test_each_stream_is_tested_against_its_own_reference_drawn_from_its_seed() -> None:
    stream = bench.step_stream(7, before=bench.DAY, after=bench.DAY)
    again = bench.step_stream(7, before=bench.DAY, after=bench.DAY)
    other = bench.step_stream(8, before=bench.DAY, after=bench.DAY)
    pd.testing.assert_frame_equal(stream.reference, again.reference)  # deterministic
    assert not stream.reference.equals(other.reference)
    assert len(stream.reference) == bench.REFERENCE_ROWS

    # The same rows against a reference 1 sd off in x0 alarm at the first evaluation; against
    # their own reference they stay quiet until the change.
    shifted = stream.reference.assign(x0=stream.reference["x0"] + 1)
    off = dataclasses.replace(stream, reference=shifted)
    detect = bench.rule_methods(stream, bench.DAY)["mlwatchdog: fixed window (before issue 14)"]
    assert next(detect(off, 0)) == bench.STEP
    assert next(detect(stream, 0)) > bench.DAY


def test_false_alarms_are_counted_per_stationary_week_after_a_week_of_warm_up() -> None:
    streams = bench.stationary_streams(2)
    assert [(len(s.rows), s.begins) for s in streams] == [(2 * bench.WEEK, bench.WEEK)] * 2
    assert not streams[0].reference.equals(streams[1].reference)

    def daily(stream: bench.Stream, start: int) -> Iterator[int]:
        return iter(range(start + bench.DAY, len(stream.rows) + 1, bench.DAY))

    assert bench.false_alarms(daily, streams).alarms_per_week == 7


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
    stream = loaded
    reference = stream.reference

    # A day of readings every 16 minutes is the reference; detection begins after it.
    assert stream.minutes_per_row == 16 and len(reference) == stream.begins == 90
    assert stream.change is not None and stream.begins < stream.change < len(stream.rows)
    # The agreed change point: the lights stay off on the day after it (Saturday).
    day = stream.rows_for(bench.DAY)
    before = stream.rows["light"].iloc[stream.change - day : stream.change].mean()
    after = stream.rows["light"].iloc[stream.change : stream.change + day].mean()
    assert after < before / 2

    detect = bench.rule_methods(stream, bench.DAY, bench.OCCUPANCY_DRIFT_SHARE)[
        "mlwatchdog: fixed window (before issue 14)"
    ]
    outcome = bench.real_stream(detect, stream)
    assert outcome.alarms_per_week == 0
    assert outcome.delays and 0 < outcome.delays[0] <= bench.DAY


def test_a_run_of_breaches_is_one_alarm_unless_the_detectors_restart() -> None:
    """As the daemon opens one incident for a breach that lasts: a window that keeps breaching is
    one alarm; restarting the rule after each alarm counts it again at every evaluation."""
    stream = bench.step_stream(7, before=bench.DAY, after=bench.DAY)
    off = dataclasses.replace(stream, reference=stream.reference.assign(x0=lambda f: f.x0 + 1))
    name = "mlwatchdog: fixed window (before issue 14)"
    onset = bench.rule_methods(stream, bench.DAY)[name]
    restart = bench.rule_methods(stream, bench.DAY, restart=True)[name]
    assert list(onset(off, 0)) == [bench.STEP]
    assert list(restart(off, 0)) == list(range(bench.STEP, 2 * bench.DAY + 1, bench.STEP))
