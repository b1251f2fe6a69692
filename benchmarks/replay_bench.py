"""Replay at scale: a year of one-minute windows for 20 features, serial against Dask on this
machine, and the largest range replayed within 16 GiB.

    .venv/bin/python benchmarks/replay_bench.py [--ranges 1d,7d,30d] [--executors serial,dask]
        [--cache DIR] [--rows-per-minute 200] [--markdown]

1. Data, generated once into `--cache` (default `~/.cache/mlwatchdog-replay-bench`, reused while
   its parameters are the same; the generation time is reported on its own): one target's live
   samples in the demo's layout (`dt=%Y-%m-%d/hour=%H`), a parquet file per hour,
   `--rows-per-minute` rows with 20 standard-normal float64 features and their timestamps, for
   the longest range plus an hour before it; 6 of the 20 features shift by +0.5 sd from 12:00 to
   15:00 on the first day (the drift period); a reference of 20,000 rows. Rules: window 1m, KS
   (Benjamini-Hochberg) and PSI over the 20 features, a dry-run rollback on the KS check.
2. For each range (from the first day's 00:01, at 1-minute steps) and executor, in a fresh Python
   process: `mlwatchdog.replay.replay(config, start, end, step, executor=...)` (dask: no
   scheduler given, so replay starts a LocalCluster of one single-thread worker process per CPU,
   and its start-up counts), timed end to end, while a thread samples the resident memory (RSS)
   of that process and all of its children (the Dask nanny and worker processes) every 0.2 s:
   the peak of the sum is "peak RSS" (shared pages counted once per process: an upper bound).
3. The timelines of the executors are compared (`pd.testing.assert_frame_equal`) for each range.

A year (525,600 evaluations) is extrapolated from each executor's rate on the longest range run,
and labelled so, unless `--ranges` includes 365d.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mlwatchdog-replay-bench"
FEATURES = [f"f{i:02d}" for i in range(20)]
DRIFTED = FEATURES[:6]
SHIFT = 0.5  # standard deviations
REFERENCE_ROWS = 20_000
LAYOUT = "dt=%Y-%m-%d/hour=%H"
DAY0 = datetime(2025, 1, 1, tzinfo=UTC)
DRIFT = (DAY0 + timedelta(hours=12), DAY0 + timedelta(hours=15))
START = DAY0 + timedelta(minutes=1)  # the first full 1-minute window
STEP = timedelta(minutes=1)
YEAR = 525_600  # one-minute evaluations in 365 days
BOUND = 16 * 2**30  # the memory bound asked about
SAMPLE_EVERY = 0.2  # seconds between RSS samples


def parse_range(text: str) -> timedelta:
    match = re.fullmatch(r"(\d+)([hdw])", text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r}: write e.g. 6h, 1d, 7d, 30d or 365d")
    return timedelta(hours=int(match.group(1)) * {"h": 1, "d": 24, "w": 168}[match.group(2)])


# ----------------------------------------------------------------------------------- the data


def generate(cache: Path, days: int, rows_per_minute: int) -> dict[str, Any]:
    """The reference, the live files and rules.yaml in `cache`, unless already there."""
    wanted = {"days": days, "rows_per_minute": rows_per_minute, "features": len(FEATURES)}
    manifest = cache / "manifest.json"
    if manifest.exists():
        have = json.loads(manifest.read_text())
        same = all(have.get(k) == v for k, v in wanted.items() if k != "days")
        if same and have.get("days", 0) >= days:  # the first days are the same whatever the span
            return have
    shutil.rmtree(cache, ignore_errors=True)
    cache.mkdir(parents=True)
    began = time.perf_counter()
    rng = np.random.default_rng(20250101)
    reference = pd.DataFrame(
        rng.normal(0.0, 1.0, (REFERENCE_ROWS, len(FEATURES))), columns=FEATURES
    )
    reference.to_parquet(cache / "reference.parquet", index=False)
    n = rows_per_minute * 60
    hour = DAY0 - timedelta(hours=1)
    files = 0
    while hour < DAY0 + timedelta(days=days):
        values = rng.normal(0.0, 1.0, (n, len(FEATURES)))
        seconds = np.sort(rng.uniform(0.0, 3600.0, n))
        stamps = pd.Timestamp(hour) + pd.to_timedelta(seconds, "s")
        frame = pd.DataFrame(values, columns=FEATURES)
        drifted = np.asarray((stamps >= DRIFT[0]) & (stamps < DRIFT[1]))
        frame.loc[drifted, DRIFTED] += SHIFT
        frame.insert(0, "timestamp", stamps)
        folder = cache / "live" / hour.strftime(LAYOUT)
        folder.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(folder / f"part-{hour:%Y%m%dT%H}.parquet", index=False)
        files += 1
        hour += timedelta(hours=1)
    write_rules(cache)
    os.sync()  # written to disk now, not by the kernel while the replays are timed
    size = sum(p.stat().st_size for p in (cache / "live").rglob("*.parquet"))
    done = {**wanted, "files": files, "bytes": size, "seconds": time.perf_counter() - began}
    manifest.write_text(json.dumps(done))
    return done


def write_rules(cache: Path) -> None:
    features = dict.fromkeys(FEATURES, "numeric")
    drift = {"type": "drift", "columns": "features", "drift_share": 0.3}
    rules = {
        "version": 1,
        "daemon": {"state_dir": str(cache / "state")},
        "sources": {
            "live": {
                "type": "files",
                "url": str(cache / "live"),
                "timestamp_column": "timestamp",
                "partitioning": LAYOUT,
            },
            "training": {
                "type": "files",
                "url": str(cache / "reference.parquet"),
                "timestamp_column": None,
            },
        },
        "targets": [
            {
                "name": "model",
                "workload": {"kind": "argo-rollout", "name": "model", "namespace": "models"},
                "samples": {"source": "live", "window": "1m", "min_samples": 100},
                "reference": {"source": "training"},
                "columns": {"features": features},
                "checks": [
                    {"name": "feature_drift", "test": "ks", "threshold": 0.01, "correction": "bh"}
                    | drift,
                    {"name": "feature_psi", "test": "psi", "threshold": 0.2} | drift,
                ],
                "trigger": "feature_drift",
                "for": "5m",
                "resolve_after": "10m",
                "cooldown": "6h",
                "rollback": {"to": "prior", "dry_run": True},
                "verify": {"window": "30m"},
            }
        ],
    }
    (cache / "rules.yaml").write_text(yaml.safe_dump(rules, sort_keys=False))


# ------------------------------------------------------------------------------ one measurement


class PeakRss(threading.Thread):
    """Samples the RSS of this process and of its children; keeps the peaks."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        import psutil  # type: ignore[import-untyped]

        self.me = psutil.Process()
        self.tree = 0
        self.driver = 0
        self.cpu: dict[int, float] = {}  # CPU seconds of each process of the tree, last seen
        self.stopped = threading.Event()

    def sample(self) -> None:
        driver = self.me.memory_info().rss
        total = driver
        self.cpu[self.me.pid] = sum(self.me.cpu_times()[:2])
        for child in self.me.children(recursive=True):
            with contextlib.suppress(Exception):  # a process that just ended
                total += child.memory_info().rss
                self.cpu[child.pid] = sum(child.cpu_times()[:2])
        self.driver, self.tree = max(self.driver, driver), max(self.tree, total)

    def run(self) -> None:
        while not self.stopped.wait(SAMPLE_EVERY):
            self.sample()


def machine_busy() -> float:
    """CPU seconds the whole machine spent busy since boot, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")  # less idle, iowait


def run_one(cache: Path, executor: str, span: timedelta) -> dict[str, Any]:
    """One replay, in this (fresh) process: time, peaks, and the timeline written to the cache."""
    from mlwatchdog.replay import replay
    from mlwatchdog.rules import load_config

    config = load_config(cache / "rules.yaml")
    end = START + span - STEP
    sampler = PeakRss()
    sampler.sample()
    baseline = sampler.driver
    own_before = sum(sampler.cpu.values())
    sampler.start()
    plans: list[Any] = []
    busy = machine_busy()
    began = time.perf_counter()
    timeline = replay(config, START, end, STEP, executor=executor, on_plan=plans.append)
    wall = time.perf_counter() - began
    busy = machine_busy() - busy
    sampler.stopped.set()
    sampler.join()
    sampler.sample()
    own = sum(sampler.cpu.values()) - own_before  # workers: up to their last sample
    evaluations = len(timeline) // 2
    out = cache / "timelines" / f"{executor}-{span.days}d{span.seconds // 3600}h.parquet"
    out.parent.mkdir(exist_ok=True)
    timeline.to_parquet(out, index=False)
    decided = timeline[timeline["decision"] != ""]
    return {
        "executor": executor,
        "hours": span.total_seconds() / 3600,
        "evaluations": evaluations,
        "rows": len(timeline),
        "wall": wall,
        "rate": evaluations / wall,
        "cpu": own / wall,  # cores this replay kept busy (driver and workers)
        "other": max(busy - own, 0.0) / wall,  # cores the rest of the machine kept busy
        "peak_tree": sampler.tree,
        "peak_driver": sampler.driver,
        "baseline_driver": baseline,
        "timeline_bytes": int(timeline.memory_usage(deep=True).sum()),
        "plan": str(plans[0]) if plans else "",
        "tasks": getattr(plans[0], "tasks", 0) if plans else 0,
        "decisions": [f"{r.time:%Y-%m-%d %H:%M} {r.decision}" for r in decided.itertuples()],
        "timeline": str(out),
    }


# ----------------------------------------------------------------------------------- the report


@dataclass
class Row:
    range: str
    executor: str
    evaluations: int
    wall: float
    rate: float
    speedup: float
    peak_tree: int
    peak_driver: int
    tasks: int
    year_hours: float
    cpu: float
    other: float


def gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def label(span: timedelta) -> str:
    return (
        f"{span.days} d" if span.days and not span.seconds else f"{span.total_seconds() / 3600:g} h"
    )


def table(rows: list[Row], measured_year: bool) -> str:
    year = "a year (365 d)" + ("" if measured_year else ", extrapolated")
    head = (
        "| range | executor | evaluations | wall s | evaluations/s | vs serial | peak RSS, "
        f"driver + workers | of which driver | tasks | {year} | CPU used | other load |\n"
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    return head + "".join(
        f"| {r.range} | {r.executor} | {r.evaluations:,} | {r.wall:,.1f} | {r.rate:,.0f} | "
        f"{r.speedup:.2f}x | {gib(r.peak_tree)} | {gib(r.peak_driver)} | {r.tasks:,} | "
        f"{r.year_hours * 60:,.0f} min | {r.cpu:.2f} | {r.other:.2f} |\n"
        for r in rows
    )


def machine() -> str:
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    import psutil

    memory = psutil.virtual_memory().total
    packages = ["numpy", "scipy", "pandas", "pyarrow", "dask", "distributed", "mlwatchdog"]
    return (
        f"{model}, {len(os.sched_getaffinity(0))} CPUs, {gib(memory)} RAM; Linux "
        f"{platform.release()}; Python {platform.python_version()}; "
        + ", ".join(f"{p} {version(p)}" for p in packages)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ranges", default="1d,7d,30d", help="comma-separated, e.g. 1d,7d,30d")
    parser.add_argument("--executors", default="serial,dask")
    parser.add_argument("--cache", type=Path, default=CACHE)
    parser.add_argument("--rows-per-minute", type=int, default=200)
    parser.add_argument("--markdown", action="store_true", help="print the table as markdown")
    parser.add_argument("--run", nargs=2, metavar=("EXECUTOR", "RANGE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:  # a child: one measurement, as JSON on the last line
        print(json.dumps(run_one(args.cache, args.run[0], parse_range(args.run[1]))))
        return
    spans = sorted(parse_range(r) for r in args.ranges.split(","))
    executors = args.executors.split(",")
    days = math.ceil(spans[-1] / timedelta(days=1))
    print(machine(), flush=True)
    print(f"load average at start: {os.getloadavg()[0]:.2f}", flush=True)
    data = generate(args.cache, days, args.rows_per_minute)
    print(
        f"data: {data['files']:,} hourly parquet files, {data['bytes'] / 2**30:.2f} GiB, "
        f"{data['rows_per_minute']} rows/min x {len(FEATURES)} features, {days} day(s); "
        f"generated in {data['seconds']:.0f} s (once, in {args.cache})",
        flush=True,
    )
    results: dict[tuple[timedelta, str], dict[str, Any]] = {}
    for span in spans:
        for executor in executors:
            child = subprocess.run(
                [sys.executable, __file__, "--cache", str(args.cache), "--run", executor,
                 f"{int(span.total_seconds() // 3600)}h"],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            if child.returncode != 0:
                sys.exit(f"{executor} {label(span)} failed:\n{child.stderr[-3000:]}")
            result = json.loads(child.stdout.strip().splitlines()[-1])
            results[span, executor] = result
            print(
                f"{label(span):>6} {executor:6} {result['evaluations']:>9,} evaluations "
                f"{result['wall']:8.1f} s {result['rate']:6.0f}/s peak {gib(result['peak_tree'])} "
                f"(driver {gib(result['peak_driver'])}, "
                f"timeline {result['timeline_bytes'] / 2**20:.0f} MiB) CPU {result['cpu']:.2f}, "
                f"other load {result['other']:.2f}; {result['plan']}",
                flush=True,
            )
        first = results[span, executors[0]]
        for executor in executors[1:]:
            pd.testing.assert_frame_equal(
                pd.read_parquet(results[span, executor]["timeline"]),
                pd.read_parquet(first["timeline"]),
            )
        print(f"{label(span):>6} identical timelines; decisions: {first['decisions']}", flush=True)
    rows = []
    longest = spans[-1]
    for span in spans:
        for executor in executors:
            r = results[span, executor]
            serial = results.get((span, "serial"))
            rows.append(
                Row(
                    label(span), executor, r["evaluations"], r["wall"], r["rate"],
                    serial["wall"] / r["wall"] if serial else float("nan"),
                    r["peak_tree"], r["peak_driver"], r["tasks"],
                    YEAR / results[longest, executor]["rate"] / 3600,
                    r["cpu"], r["other"],
                )
            )  # fmt: skip
    print(f"load average at end: {os.getloadavg()[0]:.2f}")
    measured_year = longest >= timedelta(days=365)
    largest = max(rows, key=lambda r: (r.evaluations, -r.peak_tree))
    print(
        f"largest range replayed: {largest.range} ({largest.evaluations:,} evaluations), peak "
        f"{gib(max(r.peak_tree for r in rows if r.range == largest.range))} of the "
        f"{gib(BOUND)} bound"
    )
    print(table(rows, measured_year) if args.markdown else "\n".join(str(asdict(r)) for r in rows))


if __name__ == "__main__":  # the Dask workers are spawned processes: they import this module
    main()
