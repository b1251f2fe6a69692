"""KS checks alone: CPU per evaluation of a 20-feature KS check with its recent sub-windows.

    PYTHONPATH=. .venv/bin/python benchmarks/ks_checks_bench.py [--evaluations N] [--warm WARM]

`core.measure` (what the daemon runs on each observation, the reading left out) on stationary
windows of 1,000-1,019 rows (the row count changes each evaluation, as a time window's does)
against references of 1,000, 5,000 and 10,000 rows, 20 normal numeric features; one check: KS,
threshold 0.01, Benjamini-Hochberg, drift_share 0.3, the default sub-windows (the newest 200 and
400 rows). scipy's `auto` gives exact p-values at these sizes. Every evaluation starts from an
empty exact-result cache (`ks.EXACT_CACHE`), the worst case; the daemon's cache only lowers it.
Prints CPU ms per evaluation (median over the evaluations) and exact p-values computed per
evaluation; then the same after WARM evaluations that keep the cache (the last EVALUATIONS of
them, window sizes cycling as before), as a daemon's cache is after a while. Runs on any
checkout with `core.measure` (PYTHONPATH picks the code measured).
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from daemon_bench import FEATURES, KS_CHECK, machine

import mlwatchdog
from mlwatchdog.core import DataStatus, Observation
from mlwatchdog.core.measure import measure
from mlwatchdog.detectors import Reference, ks
from mlwatchdog.rules import parse_config

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def target() -> Any:
    rules = {
        "version": 1,
        "sources": {"live": {"type": "files", "url": "/nonexistent"}},
        "targets": [
            {
                "name": "model",
                "samples": {"source": "live", "window": "1m", "min_samples": 100},
                "reference": {"source": "live"},
                "columns": {"features": dict.fromkeys(FEATURES, "numeric")},
                "checks": [KS_CHECK],
            }
        ],
    }
    return parse_config(yaml.safe_dump(rules), "rules.yaml").targets[0]


def window(rng: np.random.Generator, rows: int) -> pd.DataFrame:
    frame = pd.DataFrame(rng.normal(size=(rows, len(FEATURES))), columns=FEATURES)
    stamps = pd.date_range(end=NOW, periods=rows, freq=timedelta(minutes=1) / rows, tz="UTC")
    frame.insert(0, "timestamp", stamps)
    return frame


def evaluate(
    the_target: Any, reference: Reference, frame: pd.DataFrame, calls: list[int]
) -> tuple[float, int]:
    """CPU seconds of one `measure` and the exact p-values it computed."""
    ok = DataStatus.OK
    seen = Observation("model", NOW, frame, ok, "", reference, ok, time_column="timestamp")
    calls[0] = 0
    started = time.process_time()
    measure(the_target, seen)
    return time.process_time() - started, calls[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--evaluations", type=int, default=20, help="timed, per size [20]")
    parser.add_argument("--warm", type=int, default=200, help="evaluations warming the cache")
    args = parser.parse_args()
    the_target = target()
    calls = [0]
    kernel = ks._EXACT_KERNEL
    assert kernel is not None, "scipy's exact kernel is missing"

    def counting(*a: Any) -> Any:
        calls[0] += 1
        return kernel(*a)

    ks._EXACT_KERNEL = counting
    print(f"{machine()}; mlwatchdog from {Path(mlwatchdog.__file__).parent}\n")
    print(
        "| reference rows | window rows | cold: CPU ms per evaluation | cold: exact p-values "
        f"| after {args.warm}: CPU ms per evaluation | after {args.warm}: exact p-values |"
    )
    print("|---:|---:|---:|---:|---:|---:|")
    for reference_rows in (1_000, 5_000, 10_000):
        rng = np.random.default_rng(reference_rows)
        reference = Reference(pd.DataFrame(rng.normal(size=(reference_rows, 20)), columns=FEATURES))
        cold = []
        for e in range(args.evaluations):
            ks.EXACT_CACHE.clear()
            cold.append(evaluate(the_target, reference, window(rng, 1_000 + e), calls))
        ks.EXACT_CACHE.clear()
        warm = [
            evaluate(the_target, reference, window(rng, 1_000 + e % args.evaluations), calls)
            for e in range(args.warm)
        ]
        warm = warm[-args.evaluations :]
        print(
            f"| {reference_rows:,} | 1,000-{1_000 + args.evaluations - 1:,} | "
            f"{statistics.median(c for c, _ in cold) * 1000:.1f} | "
            f"{statistics.fmean(n for _, n in cold):.1f} | "
            f"{statistics.median(c for c, _ in warm) * 1000:.1f} | "
            f"{statistics.fmean(n for _, n in warm):.1f} |"
        )


if __name__ == "__main__":
    main()
