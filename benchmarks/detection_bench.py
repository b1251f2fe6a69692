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
  `.venv-alibi`), configured with an expected run time (ERT) of one week of rows, fed row by row.
  Its threshold configuration simulates n_bootstraps streams of (reference + 2 x largest window)
  rows and compares every pair of their values, and it refuses a budget below 1/beta streams
  (beta = 1 - (1 - 1/ERT)^(1/features): about 50,400 for a week and 5 features). So it gets the
  fewest streams it accepts plus 10%, a reference subsample of ALIBI_REFERENCE_ROWS and windows
  ALIBI_WINDOWS; its thresholds are configured once and cached in CACHE, keyed by all of these
  (they depend on nothing else: the statistic is rank based and alibi simulates Gaussian data).

Measured on each stream:

* stationary: N(0, 1) features, one week on each of WEEKS streams, after a week of rows the
  windows look back on -> false alarms per week (an alarm is a check going to firing, or alibi's
  `is_drift` going to 1: a run of breaches is one alarm, as the daemon opens one incident for it;
  `--alarms restart` restarts each detector after an alarm instead, as after a person handled it,
  which counts a breach still in the rules' window again at the next evaluation);
* step: a mean shift of SHIFT sd in one of the features after a week of quiet -> delay in rows
  from the change to the first alarm (median and 90th percentile over REPEATS streams; misses
  within HORIZON rows counted);
* gradual: the same shift reached linearly over RAMP rows;
* occupancy: river's Occupancy sensors (a real data set with annotated change points, when river
  is importable) -> alarms per week before the first annotated change, delay after it. Its
  readings come every 16 minutes; each is one row, and every setting that stands for a time is
  divided by 16 so it means the same time as on the other streams (a day's window is 90 rows,
  evaluations every 4 rows, alibi's ERT a week of readings: 630 rows); settings that stand for a
  number of rows (min_samples, alibi's windows) stay. Delays are reported in minutes, which are
  rows on the synthetic streams.

Each synthetic stream has its own reference of REFERENCE_ROWS rows, drawn from the stream's seed
after its rows, and every method gets that same draw (alibi its first ALIBI_REFERENCE_ROWS): one
reference shared by all streams made the comparison hang on one draw's offset (`--one-reference`
runs it that way, as before, with the 8 stationary weeks as one stream).

The window length is a parameter of the rule, not of the data: the table repeats the step stream
with a one-day and a one-week window, where a fixed window's delay grows with its length.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import math
import os
import pickle
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from mlwatchdog.core import CheckState, DataStatus, Observation, evaluate
from mlwatchdog.detectors import Reference
from mlwatchdog.rules import Target, parse_config, parse_duration

WEEK = 7 * 24 * 60  # rows: one per minute
DAY = 24 * 60
START = datetime(2026, 1, 5, tzinfo=UTC)
FEATURES = 5
REFERENCE_ROWS = 5_000
SHIFT = 0.3  # sd, in one feature
STEP = 60  # rows between evaluations (hourly)
HORIZON = WEEK  # rows after a change within which an alarm counts as a detection
FEATURE_NAMES = [f"x{i}" for i in range(FEATURES)]

ALIBI_REFERENCE_ROWS = 500  # its configuration costs (reference + 2 x window)^2 per stream
ALIBI_WINDOWS = (60, 200)  # rows: an hour (the rules evaluate hourly), their newest sub-window
CACHE = Path.home() / ".cache" / "mlwatchdog-detection-bench"

OCCUPANCY_MINUTES_PER_ROW = 16
OCCUPANCY_COLUMNS = ["light", "co2"]  # the signals of people in the room (notebooks/real_drift)
# Both must drift, as in notebooks/real_drift.ipynb: CO2 alone drifts on a quieter working day.
OCCUPANCY_DRIFT_SHARE = 1.0


# The rules compared: name -> extra settings of the drift check (`check`), of `samples`, and of
# the target itself (`target`, merged over the generated target: e.g. its false_alarms rate).
def calibrated_rules(every: list[str]) -> dict[str, dict[str, Any]]:
    """Rules stating a false-alarm rate: alpha calibrated on the reference (issue 14, point 6)."""
    return {
        f"calibrated: false_alarms every {e}": {
            "check": {"threshold": None},
            "target": {"false_alarms": {"every": e}},
        }
        for e in every
    }


# 42h: alibi's measured rate with one reference for every stream (4 a week); 52h: with a
# reference per stream (3.25 a week), for comparisons at an equal rate (--every runs others).
CALIBRATED_EVERY = ["42h", "52h", "28d", "56d"]
UNCALIBRATED_RULES: dict[str, dict[str, Any]] = {
    "fixed window (before issue 14)": {"check": {"recent_rows": 0}},
    "defaults (recent sub-windows)": {},
    "defaults + floor 0.1 sd": {"check": {"effect": {"measure": "wasserstein", "min": 0.1}}},
}
RULES = {**UNCALIBRATED_RULES, **calibrated_rules(CALIBRATED_EVERY)}


@dataclass(frozen=True)
class Stream:
    """Rows of a stream (stamped one per minute from START for the core), the reference every
    method compares them with, and where it changes (None: never); `minutes_per_row` is the real
    time a row stands for; detection begins at row `begins` (windows may look back on the rows
    before it)."""

    name: str
    rows: pd.DataFrame
    reference: pd.DataFrame
    change: int | None
    minutes_per_row: int = 1
    begins: int = 0

    def rows_for(self, minutes: int) -> int:
        """How many rows of this stream span `minutes`."""
        return max(1, round(minutes / self.minutes_per_row))


def normal_rows(rng: np.random.Generator, n: int) -> pd.DataFrame:
    return pd.DataFrame(rng.normal(size=(n, FEATURES)), columns=FEATURE_NAMES)


def stamped(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.reset_index(drop=True)
    frame["timestamp"] = pd.date_range(START, periods=len(frame), freq="1min")
    return frame


def step_stream(
    seed: int, before: int, after: int, ramp: int = 0, reference: pd.DataFrame | None = None
) -> Stream:
    """`before` quiet rows, then `after` rows where x0's mean moves by SHIFT (over `ramp` rows);
    its reference is drawn after the rows from the same seed, unless one is given."""
    rng = np.random.default_rng(seed)
    rows = normal_rows(rng, before + after)
    if reference is None:
        reference = normal_rows(rng, REFERENCE_ROWS)
    ramped = np.minimum(np.arange(after) / ramp, 1.0) if ramp else np.ones(after)
    rows.loc[before:, "x0"] += SHIFT * ramped
    kind = f"gradual over {ramp} rows" if ramp else "step"
    return Stream(f"{kind}, {SHIFT} sd in 1 of {FEATURES}", stamped(rows), reference, before)


def stationary_streams(weeks: int, reference: pd.DataFrame | None = None) -> list[Stream]:
    """`weeks` streams of a week each, counted after a week the windows look back on, each with
    its own reference drawn after its rows; given one reference, a single stream of `weeks` weeks
    counted from its first row, as the benchmark measured before references were drawn per
    stream."""
    if reference is not None:
        rows = normal_rows(np.random.default_rng(1), weeks * WEEK)
        return [Stream("stationary", stamped(rows), reference, None)]
    streams = []
    for seed in range(1, weeks + 1):
        rng = np.random.default_rng(seed)
        rows = normal_rows(rng, 2 * WEEK)
        streams.append(
            Stream("stationary", stamped(rows), normal_rows(rng, REFERENCE_ROWS), None, begins=WEEK)
        )
    return streams


def target_for(
    window_rows: int,
    extra: dict[str, Any],
    columns: list[str] = FEATURE_NAMES,
    step: int = STEP,
    drift_share: float = 1 / FEATURES,
) -> Target:
    """The rules.yaml target a user writes for this stream: window in minutes = rows (the core
    sees one row per minute), evaluated every `step` rows; `extra["target"]` is merged over it."""
    check = {
        "name": "drift", "type": "drift", "test": "ks", "threshold": 0.01,
        "correction": "bonferroni", "drift_share": drift_share,
        **extra.get("check", {}),
    }  # fmt: skip
    target = {
        "name": "bench",
        "interval": f"{step}m",
        "samples": {"source": "s", "window": f"{window_rows}m", "min_samples": 30,
                    **extra.get("samples", {})},
        "reference": {"source": "s"},
        "columns": {"features": dict.fromkeys(columns, "numeric")},
        "checks": [check],
        "for": "0s",
        "resolve_after": "0s",
        "verify": {"window": f"{2 * window_rows}m"},
        **extra.get("target", {}),
    }  # fmt: skip
    text = yaml.safe_dump({"version": 1, "sources": {"s": {"type": "files", "url": "/x"}},
                           "targets": [target]})  # fmt: skip
    return parse_config(text, "bench.yaml").targets[0]


def mlwatchdog_alarms(
    stream: Stream, target: Target, start: int, restart: bool = False
) -> Iterator[int]:
    """Rows (stream positions) at which the target's check goes to firing, evaluating every
    `interval` rows from `start` on the last window of rows against the stream's reference; with
    `restart`, the state restarts after each alarm (else an alarm is a firing that begins)."""
    window = int(target.samples.window.total_seconds() // 60)
    step = int(target.interval.total_seconds() // 60)
    rows = stream.rows
    reference = Reference(stream.reference)
    state = None
    firing_before = False
    for end in range(start, len(rows) + 1, step):
        now = START + timedelta(minutes=end)
        observation = Observation(
            target.name, now, samples=rows.iloc[max(0, end - window) : end],
            samples_status=DataStatus.OK, reference=reference, reference_status=DataStatus.OK,
        )  # fmt: skip
        evaluation = evaluate(target, observation, state, now)
        state = evaluation.state
        firing = any(r.state is CheckState.FIRING for r in state.checks.values())
        if firing and not firing_before:
            yield end
        if firing and restart:
            state, firing = None, False
        firing_before = firing


def alibi_bootstraps(ert: int, features: int) -> int:
    """The fewest bootstrap streams alibi's CVM accepts for `ert` and `features`, plus 10%: its
    threshold at each step is the 1 - beta quantile over the streams not yet alarmed, and it
    refuses to estimate it from fewer than 1/beta of them."""
    beta = 1 - (1 - 1 / ert) ** (1 / features)
    return math.ceil(1.1 / beta / 1000) * 1000


_alibi_thresholds: dict[Path, Any] = {}  # read from CACHE once per process


def alibi_cvm(reference: np.ndarray, ert: int, windows: tuple[int, ...]) -> Any:
    """alibi-detect's `CVMDriftOnline` on `reference`, its thresholds configured by alibi (seeded)
    the first time and read from CACHE afterwards, whatever the reference's values."""
    import alibi_detect
    from alibi_detect.cd import CVMDriftOnline

    bootstraps = alibi_bootstraps(ert, reference.shape[1])
    settings = (alibi_detect.__version__, len(reference), reference.shape[1], ert, windows,
                bootstraps, "seed 0")  # fmt: skip
    key = hashlib.sha256(repr(settings).encode()).hexdigest()[:16]
    path = CACHE / f"cvm-thresholds-{key}.pkl"
    options = {"ert": ert, "window_sizes": list(windows), "n_bootstraps": bootstraps,
               "verbose": False}  # fmt: skip
    if path not in _alibi_thresholds and path.is_file():
        _alibi_thresholds[path] = pickle.loads(path.read_bytes())
        print(f"alibi CVM {settings}: thresholds read from {path}", file=sys.stderr)
    if path in _alibi_thresholds:
        thresholds = _alibi_thresholds[path]

        class Preconfigured(CVMDriftOnline):  # type: ignore[misc]
            def _configure_thresholds(self) -> None:
                self.thresholds = thresholds

        return Preconfigured(reference, **options)
    began = time.perf_counter()
    np.random.seed(0)  # alibi simulates its streams with the global generator
    detector = CVMDriftOnline(reference, **options)
    CACHE.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(detector.thresholds))
    _alibi_thresholds[path] = detector.thresholds
    print(f"alibi CVM {settings}: thresholds configured in {time.perf_counter() - began:.0f} s, "
          f"cached in {path}", file=sys.stderr)  # fmt: skip
    return detector


def alibi_alarms(stream: Stream, start: int, restart: bool = False) -> Iterator[int]:
    """Rows at which alibi's online CVM on the first ALIBI_REFERENCE_ROWS of the stream's
    reference (ERT a week of its rows), fed row by row from `start`, flags drift (`is_drift`
    going to 1); with `restart`, it restarts (its state, not its thresholds) after each alarm."""
    reference = stream.reference.to_numpy()[:ALIBI_REFERENCE_ROWS]
    detector = alibi_cvm(reference, stream.rows_for(WEEK), ALIBI_WINDOWS)
    values = stream.rows[list(stream.reference.columns)].to_numpy()
    drift_before = False
    for i in range(start, len(values)):
        drift = bool(detector.predict(values[i], return_test_stat=False)["data"]["is_drift"])
        if drift and not drift_before:
            yield i + 1
        if drift and restart:
            detector.reset_state()
            drift = False
        drift_before = drift


def agreed_changes(annotations: dict[str, list[int]], within: int = 5, least: int = 4) -> list[int]:
    """Rows that at least `least` annotators marked within `within` rows of each other (the
    median of each group), as notebooks/real_drift.ipynb reads them."""
    marks = sorted(m for marked in annotations.values() for m in marked)
    groups: list[list[int]] = []
    for mark in marks:
        if groups and mark - groups[-1][-1] <= within:
            groups[-1].append(mark)
        else:
            groups.append([mark])

    def annotators(group: list[int]) -> int:
        return sum(
            any(abs(m - g) <= within for m in marked for g in group)
            for marked in annotations.values()
        )

    return [int(np.median(g)) for g in groups if annotators(g) >= least]


def occupancy() -> Stream | None:
    """river's Occupancy readings (a CSV inside river's wheel, nothing downloaded): the first day
    is the reference, detection begins after it and the stream changes at the first agreed
    change point (Saturday morning, when the office empties). None without river."""
    try:
        from river.drift.datasets import Occupancy
    except ImportError:
        return None
    dataset = Occupancy()
    data = pd.read_csv(dataset.path, parse_dates=["time"]).rename(
        columns={"V1": "temperature", "V2": "humidity", "V3": "light", "V4": "co2"}
    )
    reference_rows = int((data["time"] < data["time"].iloc[0] + pd.Timedelta(days=1)).sum())
    first = agreed_changes(dataset.annotations)[0]
    values = data[OCCUPANCY_COLUMNS].astype(float)
    name = f"occupancy (river): {', '.join(OCCUPANCY_COLUMNS)}"
    reference = values.iloc[:reference_rows]
    return Stream(
        name, stamped(values), reference, first, OCCUPANCY_MINUTES_PER_ROW, reference_rows
    )


def alibi_available() -> bool:
    try:
        import alibi_detect  # noqa: F401
    except Exception:
        return False
    return True


Detector = Callable[[Stream, int], Iterator[int]]


@dataclass
class Outcome:
    """What one method did on one kind of stream."""

    alarms_per_week: float | None = None
    delays: list[int] | None = None  # minutes from the change to the first alarm
    misses: int = 0
    seconds: float = 0.0

    def alarms_text(self) -> str:
        return "" if self.alarms_per_week is None else f"{self.alarms_per_week:.2f}"

    def delay_text(self) -> str:
        if not self.delays:
            return f"missed all {self.misses}" if self.misses else ""
        median = statistics.median(self.delays)
        if len(self.delays) == 1 and not self.misses:
            return f"{median:,.0f}"
        p90 = float(np.quantile(self.delays, 0.9))
        missed = f", {self.misses} missed" if self.misses else ""
        return f"{median:,.0f} ({p90:,.0f}){missed}"


def false_alarms(detect: Detector, streams: list[Stream]) -> Outcome:
    """Alarms per week on `streams` that do not change, each detected from its `begins`."""
    began = time.perf_counter()
    count = sum(1 for stream in streams for _ in detect(stream, stream.begins))
    weeks = sum((len(s.rows) - s.begins) * s.minutes_per_row for s in streams) / WEEK
    return Outcome(count / weeks, seconds=time.perf_counter() - began)


def delays(detect: Detector, streams: list[Stream]) -> Outcome:
    """Delay from each stream's change to the first alarm after it, detecting from half a week
    before the change (or the stream's start)."""
    found: list[int] = []
    misses = 0
    began = time.perf_counter()
    for stream in streams:
        assert stream.change is not None
        start = max(0, stream.change - stream.rows_for(WEEK // 2))
        first = next((a for a in detect(stream, start) if a > stream.change), None)
        if first is None or first - stream.change > stream.rows_for(HORIZON):
            misses += 1
        else:
            found.append((first - stream.change) * stream.minutes_per_row)
    return Outcome(delays=found, misses=misses, seconds=time.perf_counter() - began)


def real_stream(detect: Detector, stream: Stream) -> Outcome:
    """Alarms per week from its beginning to its change, and the delay to the first alarm after."""
    assert stream.change is not None
    began = time.perf_counter()
    before = 0
    first = None
    for alarm in detect(stream, stream.begins):
        if alarm <= stream.change:
            before += 1
        else:
            first = alarm
            break
    weeks = (stream.change - stream.begins) * stream.minutes_per_row / WEEK
    delay = [] if first is None else [(first - stream.change) * stream.minutes_per_row]
    return Outcome(before / weeks, delay, int(first is None), time.perf_counter() - began)


def rule_methods(
    stream: Stream,
    window_minutes: int,
    drift_share: float = 1 / FEATURES,
    step_minutes: int = STEP,
    rules: dict[str, dict[str, Any]] = RULES,
    restart: bool = False,
) -> dict[str, Detector]:
    """The RULES as targets on `stream`'s clock and columns, evaluated every `step_minutes`, each
    a detector (of any stream with that clock and columns, against its own reference)."""
    columns = list(stream.reference.columns)
    found: dict[str, Detector] = {}
    for rule, extra in rules.items():
        stated = extra.get("target", {}).get("false_alarms")
        if stated:  # a time on the stream's clock, as the window and the interval are
            every = parse_duration(stated["every"]) // timedelta(minutes=1)
            scaled = {**stated, "every": f"{stream.rows_for(every)}m"}
            extra = {**extra, "target": {**extra["target"], "false_alarms": scaled}}
        target = target_for(
            stream.rows_for(window_minutes),
            extra,
            columns,
            stream.rows_for(step_minutes),
            drift_share,
        )
        found[f"mlwatchdog: {rule}"] = functools.partial(
            _rule_alarms, target=target, restart=restart
        )
    return found


def _rule_alarms(stream: Stream, start: int, target: Target, restart: bool) -> Iterator[int]:
    return mlwatchdog_alarms(stream, target, start, restart)


def alibi_method(restart: bool = False) -> dict[str, Detector]:
    """alibi's online CVM (ERT one week of a stream's rows), when alibi is importable."""
    if not alibi_available():
        return {}
    name = f"alibi-detect CVMDriftOnline (ERT 1 week, windows {'/'.join(map(str, ALIBI_WINDOWS))})"
    return {name: functools.partial(alibi_alarms, restart=restart)}


def machine() -> str:
    load = os.getloadavg()[0]
    return (
        f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}; "
        f"Python {platform.python_version()}; numpy {np.__version__}; "
        f"mlwatchdog {metadata.version('mlwatchdog')}; load average {load:.2f} at the start"
    )


COLUMNS = (
    "method", "window", "false alarms / week", "step: delay, median (p90)",
    "gradual: delay, median (p90)", "occupancy: false alarms / week before the change",
    "occupancy: delay", "s",
)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer weeks and streams")
    parser.add_argument("--markdown", action="store_true", help="print a markdown table")
    parser.add_argument(
        "--methods", default="", help="run only the methods whose name contains this (e.g. alibi)"
    )
    parser.add_argument(
        "--step",
        type=int,
        default=STEP,
        help=f"minutes between the rules' evaluations (default {STEP}: hourly; 1: every minute)",
    )
    parser.add_argument(
        "--windows",
        default="day,week,own",
        help="the rules' windows to run: day, week (and own: alibi's), comma separated",
    )
    parser.add_argument(
        "--every",
        default=",".join(CALIBRATED_EVERY),
        help="the calibrated rules' false_alarms.every, comma separated",
    )
    parser.add_argument(
        "--one-reference",
        action="store_true",
        help="one reference for every synthetic stream, and the stationary weeks as one stream "
        "(as measured before references were drawn per stream)",
    )
    parser.add_argument(
        "--alarms",
        choices=("onset", "restart"),
        default="onset",
        help="onset: a run of breaches is one alarm (the daemon's incidents); restart: each "
        "detector restarts after an alarm (as measured before 2026-12-06's last runs)",
    )
    args = parser.parse_args(argv)
    restart = args.alarms == "restart"
    weeks, repeats = (2, 3) if args.quick else (8, 10)
    print(
        f"{machine()}; rules evaluated every {args.step} min; alarms: {args.alarms}",
        file=sys.stderr,
    )
    windows = set(args.windows.split(","))

    shared = normal_rows(np.random.default_rng(0), REFERENCE_ROWS) if args.one_reference else None
    stationary = stationary_streams(weeks, shared)
    changed = [
        [step_stream(100 + i, WEEK, HORIZON, ramp, shared) for i in range(repeats)]
        for ramp in (0, DAY)
    ]
    real = occupancy()
    table: list[tuple[str, ...]] = []
    for window_minutes, window_name, key in (
        (DAY, "1 day", "day"),
        (WEEK, "1 week", "week"),
        (None, "its own", "own"),
    ):
        if key not in windows:
            continue
        if window_minutes is None:
            synthetic = alibi_method(restart)
            on_real = synthetic
        else:
            rules = {**UNCALIBRATED_RULES, **calibrated_rules(args.every.split(","))}
            synthetic = rule_methods(
                stationary[0], window_minutes, step_minutes=args.step, rules=rules, restart=restart
            )
            on_real = (
                rule_methods(real, window_minutes, OCCUPANCY_DRIFT_SHARE, args.step, rules, restart)
                if real
                else {}
            )
        for name, detect in synthetic.items():
            if args.methods not in name:
                continue
            print(f"{name}, window {window_name}: stationary ...", file=sys.stderr)
            outcomes = [false_alarms(detect, stationary)]
            for streams in changed:
                print(f"{name}, window {window_name}: {streams[0].name} ...", file=sys.stderr)
                outcomes.append(delays(detect, streams))
            if real:
                print(f"{name}, window {window_name}: {real.name} ...", file=sys.stderr)
                outcomes.append(real_stream(on_real[name], real))
            cells = [outcomes[0].alarms_text(), outcomes[1].delay_text(), outcomes[2].delay_text()]
            if real:
                cells += [outcomes[3].alarms_text(), outcomes[3].delay_text()]
            else:
                cells += ["(river not installed)", ""]
            seconds = sum(o.seconds for o in outcomes)
            table.append((name, window_name, *cells, f"{seconds:.0f}"))

    if args.markdown:
        print("| " + " | ".join(COLUMNS) + " |")
        print("|---|---|" + "---:|" * (len(COLUMNS) - 2))
        for row in table:
            print("| " + " | ".join(row) + " |")
    else:
        for row in (COLUMNS, *table):
            print("  ".join(row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
