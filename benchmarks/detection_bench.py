"""Detection delay against false alarms per week, side by side in one run.

    .venv/bin/python benchmarks/detection_bench.py [--quick] [--markdown]
    make bench-detection-alibi      # the same in .venv-alibi, adding alibi-detect's online CVM

Streams arrive at one row per minute, so a week is 10,080 rows. Every method sees the same rows:

* mlwatchdog, as a user configures it: a rules.yaml target (KS, alpha 0.01, Bonferroni over the
  columns, `for: 0s` so a breach is an alarm at once) run through the daemon's own core
  (`mlwatchdog.core.evaluate`: the measure, the check state machine, the decision), evaluated
  every STEP rows on the last WINDOW rows, once with each rule in RULES (today's fixed window,
  and the defaults, whatever the current release does by default);
* alibi-detect `CVMDriftOnline` (when importable: it needs numpy < 2, so it runs from
  `.venv-alibi`), configured with an expected run time of one week of rows, fed row by row.

Measured on each stream:

* stationary: N(0, 1) features for WEEKS weeks -> false alarms per week (an alarm is a check
  going to firing, or alibi's `is_drift`; after an alarm each detector starts afresh, as after a
  person handled it);
* step: a mean shift of SHIFT sd in one of the features after a week of quiet -> delay in rows
  from the change to the first alarm (median and 90th percentile over REPEATS streams; misses
  within HORIZON rows counted);
* gradual: the same shift reached linearly over RAMP rows;
* occupancy: river's Occupancy sensors (a real data set with annotated change points, when river
  is importable) -> alarms per week before the first annotated change, delay after it.

The window length is a parameter of the rule, not of the data: the table repeats the step stream
with a one-day and a one-week window, where a fixed window's delay grows with its length.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import metadata
from typing import Any

import numpy as np
import pandas as pd
import yaml

from mlwatchdog.core import CheckState, DataStatus, Observation, evaluate
from mlwatchdog.detectors import Reference
from mlwatchdog.rules import Target, parse_config

WEEK = 7 * 24 * 60  # rows: one per minute
DAY = 24 * 60
START = datetime(2026, 1, 5, tzinfo=UTC)
FEATURES = 5
REFERENCE_ROWS = 5_000
SHIFT = 0.3  # sd, in one feature
STEP = 60  # rows between evaluations (hourly)
HORIZON = WEEK  # rows after a change within which an alarm counts as a detection

# The rules compared: name -> extra settings of the drift check (and of `samples`).
RULES: dict[str, dict[str, Any]] = {
    "fixed window (before issue 14)": {"check": {"recent_rows": 0}},
    "defaults (recent sub-windows)": {},
    "defaults + floor 0.1 sd": {"check": {"effect": {"measure": "wasserstein", "min": 0.1}}},
}


@dataclass(frozen=True)
class Stream:
    """Rows of a stream (one per minute from START) and where it changes (None: never)."""

    name: str
    rows: pd.DataFrame
    change: int | None


def normal_rows(rng: np.random.Generator, n: int) -> pd.DataFrame:
    return pd.DataFrame(rng.normal(size=(n, FEATURES)), columns=[f"x{i}" for i in range(FEATURES)])


def stamped(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.reset_index(drop=True)
    frame["timestamp"] = pd.date_range(START, periods=len(frame), freq="1min")
    return frame


def step_stream(seed: int, before: int, after: int, ramp: int = 0) -> Stream:
    """`before` quiet rows, then `after` rows where x0's mean moves by SHIFT (over `ramp` rows)."""
    rng = np.random.default_rng(seed)
    rows = normal_rows(rng, before + after)
    ramped = np.minimum(np.arange(after) / ramp, 1.0) if ramp else np.ones(after)
    rows.loc[before:, "x0"] += SHIFT * ramped
    kind = f"gradual over {ramp} rows" if ramp else "step"
    return Stream(f"{kind}, {SHIFT} sd in 1 of {FEATURES}", stamped(rows), before)


def target_for(window_rows: int, extra: dict[str, Any]) -> Target:
    """The rules.yaml target a user writes for this stream: window in minutes = rows."""
    check = {
        "name": "drift", "type": "drift", "test": "ks", "threshold": 0.01,
        "correction": "bonferroni", "drift_share": 1 / FEATURES,
        **extra.get("check", {}),
    }  # fmt: skip
    target = {
        "name": "bench",
        "interval": f"{STEP}m",
        "samples": {"source": "s", "window": f"{window_rows}m", "min_samples": 30,
                    **extra.get("samples", {})},
        "reference": {"source": "s"},
        "columns": {"features": {f"x{i}": "numeric" for i in range(FEATURES)}},
        "checks": [check],
        "for": "0s",
        "resolve_after": "0s",
        "verify": {"window": f"{2 * window_rows}m"},
    }  # fmt: skip
    text = yaml.safe_dump({"version": 1, "sources": {"s": {"type": "files", "url": "/x"}},
                           "targets": [target]})  # fmt: skip
    return parse_config(text, "bench.yaml").targets[0]


def mlwatchdog_alarms(
    stream: Stream, reference: Reference, target: Target, start: int
) -> Iterator[int]:
    """Rows (stream positions) at which the target's check goes to firing, evaluating every
    STEP rows from `start` on the last window of rows; the state restarts after each alarm."""
    window = int(target.samples.window.total_seconds() // 60)
    rows = stream.rows
    state = None
    for end in range(start, len(rows) + 1, STEP):
        now = START + timedelta(minutes=end)
        observation = Observation(
            target.name, now, samples=rows.iloc[max(0, end - window) : end],
            samples_status=DataStatus.OK, reference=reference, reference_status=DataStatus.OK,
        )  # fmt: skip
        evaluation = evaluate(target, observation, state, now)
        state = evaluation.state
        if any(r.state is CheckState.FIRING for r in state.checks.values()):
            yield end
            state = None


def alibi_alarms(stream: Stream, reference: np.ndarray, ert: int, window: int) -> Iterator[int]:
    from alibi_detect.cd import CVMDriftOnline

    def fresh() -> Any:
        return CVMDriftOnline(reference, ert=ert, window_sizes=[window], n_bootstraps=10_000,
                              verbose=False)  # fmt: skip

    detector = fresh()
    values = stream.rows[[f"x{i}" for i in range(FEATURES)]].to_numpy()
    for i, row in enumerate(values):
        if detector.predict(row)["data"]["is_drift"]:
            yield i + 1
            detector.reset_state()


def alibi_available() -> bool:
    try:
        import alibi_detect  # noqa: F401
    except Exception:
        return False
    return True


@dataclass
class Outcome:
    method: str
    stream: str
    alarms_per_week: float | None = None
    delays: list[int] | None = None
    misses: int = 0
    seconds: float = 0.0

    def delay_text(self) -> str:
        if not self.delays:
            return f"missed all {self.misses}" if self.misses else ""
        median = statistics.median(self.delays)
        p90 = float(np.quantile(self.delays, 0.9))
        missed = f", {self.misses} missed" if self.misses else ""
        return f"{median:,.0f} (p90 {p90:,.0f}){missed}"


Detector = Callable[[Stream, int], Iterator[int]]


def false_alarms(name: str, detect: Detector, weeks: int, seed: int) -> Outcome:
    stream = Stream(
        "stationary", stamped(normal_rows(np.random.default_rng(seed), weeks * WEEK)), None
    )
    began = time.perf_counter()
    count = sum(1 for _ in detect(stream, 0))
    return Outcome(name, "stationary", count / weeks, seconds=time.perf_counter() - began)


def delays(name: str, detect: Detector, streams: list[Stream]) -> Outcome:
    found: list[int] = []
    misses = 0
    began = time.perf_counter()
    for stream in streams:
        assert stream.change is not None
        first = next((a for a in detect(stream, stream.change - WEEK // 2)
                      if a > stream.change), None)  # fmt: skip
        if first is None or first - stream.change > HORIZON:
            misses += 1
        else:
            found.append(first - stream.change)
    return Outcome(name, streams[0].name, delays=found, misses=misses,
                   seconds=time.perf_counter() - began)  # fmt: skip


def methods(reference: pd.DataFrame, window_rows: int) -> dict[str, Detector]:
    ref = Reference(reference)
    found: dict[str, Detector] = {}
    for rule, extra in RULES.items():
        target = target_for(window_rows, extra)
        found[f"mlwatchdog: {rule}"] = lambda stream, start, target=target: mlwatchdog_alarms(
            stream, ref, target, start
        )
    if alibi_available():
        values = reference.to_numpy()
        found["alibi-detect CVMDriftOnline (ERT one week)"] = lambda stream, start: alibi_alarms(
            stream, values, WEEK, min(window_rows, 500)
        )
    return found


def machine() -> str:
    load = os.getloadavg()[0]
    return (
        f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}; "
        f"Python {platform.python_version()}; numpy {np.__version__}; "
        f"mlwatchdog {metadata.version('mlwatchdog')}; load average {load:.2f} at the start"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer weeks and streams")
    parser.add_argument("--markdown", action="store_true", help="print a markdown table")
    args = parser.parse_args(argv)
    weeks, repeats = (2, 3) if args.quick else (8, 10)
    print(machine(), file=sys.stderr)

    reference = normal_rows(np.random.default_rng(0), REFERENCE_ROWS)
    outcomes: list[Outcome] = []
    for window_rows, window_name in ((DAY, "1 day"), (WEEK, "1 week")):
        for name, detect in methods(reference, window_rows).items():
            label = f"{name}, window {window_name}"
            print(f"{label}: stationary ...", file=sys.stderr)
            outcomes.append(false_alarms(label, detect, weeks, seed=1))
            for ramp in (0, DAY):
                streams = [step_stream(100 + i, WEEK, HORIZON, ramp) for i in range(repeats)]
                print(f"{label}: {streams[0].name} ...", file=sys.stderr)
                outcomes.append(delays(label, detect, streams))

    rows = [
        (o.method, o.stream,
         "" if o.alarms_per_week is None else f"{o.alarms_per_week:.2f}",
         o.delay_text(), f"{o.seconds:.1f}")
        for o in outcomes
    ]  # fmt: skip
    header = ("method", "stream", "false alarms / week", "delay in rows: median (p90)", "s")
    if args.markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for row in rows:
            print("| " + " | ".join(row) + " |")
    else:
        for row in (header, *rows):
            print("  ".join(row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
