"""Daemon throughput: how many targets of 20 features one daemon process evaluates per minute.

    .venv/bin/python benchmarks/daemon_bench.py [--quick] [--workdir DIR] [--readme]

Every target watches its own folder of live samples (parquet, one file per 10 s, about 1,000 rows
per minute, 20 normal float columns) against one shared reference file of 10,000 rows, with two
checks over the 20 features: KS with the Benjamini-Hochberg correction, and PSI; window 1m.

1. In process, as fast as possible: the daemon's own objects (`Observer`, `TargetRunner`,
   `StateStore`, `DaemonMetrics`, the dry-run actuator, JSON logs to /dev/null) evaluate every
   target in turn on a virtual clock that moves 1 minute per round (interval 1m, as in
   production: every window holds new files, so no cache of earlier reads can serve it), for up
   to DURATION seconds or ROUNDS rounds: in one thread (the latency of one evaluation), then in
   4 threads, as the daemon's scheduler runs them (the throughput). Twice: with minute
   partitions (`dt=%Y-%m-%d/hour=%H/minute=%M`: a 1-minute window opens 2 folders, ~9 files) and
   with hourly ones (`dt=%Y-%m-%d/hour=%H`, as in rules.yaml and the demo), where a window lists
   every file of its hour's folder: the samples are written from 06:00 to the last round's
   instant (06:30:30 with 20 rounds, so ~30 minutes' files, as on average through an hour).
2. The real daemon (`mlwatchdog run`, a subprocess) on 50 targets every 6 s on average (500
   target-evaluations per minute, minute partitions, the samples written before it starts), for
   2 minutes after its first round: its CPU share, RSS, achieved evaluations per minute (from its
   /metrics), mean evaluation time (from its histogram) and errors. 50 targets at 6 s rather than
   500 at 1 m: the same load, but in 20 rounds instead of 2 bursts, so 2 minutes measure the
   steady state. The config says `interval: 5.5s` with `jitter: 1s`: APScheduler 3 adds each
   run's random jitter to the next run's time, so the mean period is interval + jitter / 2.

Thousands of targets (`--daemon-targets 2000`): `--daemon-distinct 50` writes 50 targets'
samples and hard-links the others' to them (each target still reads, parses and caches its own
files); the targets are one `for_each` entry of the rules file (2,000 targets with their 2,000
sources: 0.4 MB and 26,000 values, within its bounds of 1 MiB and 100,000). The samples are
written ahead, up to the end of the run, so a window's listing (which reaches `late_files`, 5
minutes, past its end) finds files of the future, which no production folder holds: the files
cache holds those too (about 1 MB a target here), so RSS is overstated by that much.

--readme writes the results into the "## Daemon throughput" section at the end of
benchmarks/README.md (replacing that section if present; the rest of the file is left alone).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import yaml
from prometheus_client.parser import text_string_to_metric_families

import mlwatchdog
from mlwatchdog.actions.dryrun import DryRunActuator
from mlwatchdog.core import evaluate
from mlwatchdog.daemon.logs import configure_logging
from mlwatchdog.daemon.metrics import DaemonMetrics
from mlwatchdog.daemon.runner import TargetRunner
from mlwatchdog.daemon.state_store import StateStore
from mlwatchdog.detectors import ks
from mlwatchdog.rules import load_config, parse_duration
from mlwatchdog.sources.observe import Observer

try:
    import psutil  # type: ignore[import-untyped]
except ImportError:  # /proc is read instead
    psutil = None

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "benchmarks" / "README.md"
SECTION = "## Daemon throughput"
COMMAND = shutil.which("mlwatchdog") or str(Path(sys.executable).parent / "mlwatchdog")

FEATURES = [f"f{i:02d}" for i in range(20)]
REFERENCE_ROWS = 10_000
ROWS_PER_MINUTE = 1_000
FILE_EVERY = 10  # seconds of samples per file
MINUTE_LAYOUT = "dt=%Y-%m-%d/hour=%H/minute=%M"
HOUR_LAYOUT = "dt=%Y-%m-%d/hour=%H"
WORKERS = 4  # the daemon's scheduler threads (Daemon(workers=4))
# Each target's KS check over its 20 features.
KS_CHECK = {"name": "feature_drift", "type": "drift", "test": "ks", "columns": "features",
            "threshold": 0.01, "correction": "bh", "drift_share": 0.3}  # fmt: skip


# ----------------------------------------------------------------------------------- the data


def write_reference(path: Path, rng: np.random.Generator) -> None:
    frame = pd.DataFrame(rng.normal(0.0, 1.0, (REFERENCE_ROWS, len(FEATURES))), columns=FEATURES)
    frame.to_parquet(path, index=False)


def write_live(
    folder: Path, layout: str, start: datetime, end: datetime, rng: np.random.Generator
) -> int:
    """One parquet file per FILE_EVERY seconds of [start, end), in `layout`'s folders."""
    n = ROWS_PER_MINUTE * FILE_EVERY // 60
    files = 0
    at = start
    while at < end:
        frame = pd.DataFrame(rng.normal(0.0, 1.0, (n, len(FEATURES))), columns=FEATURES)
        offsets = np.sort(rng.uniform(0, FILE_EVERY, n))
        frame.insert(0, "timestamp", pd.to_datetime(at, utc=True) + pd.to_timedelta(offsets, "s"))
        directory = folder / at.strftime(layout)
        directory.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(directory / f"part-{at:%Y%m%dT%H%M%S}.parquet", index=False)
        files += 1
        at += timedelta(seconds=FILE_EVERY)
    return files


def write_config(
    path: Path,
    workdir: Path,
    n_targets: int,
    layout: str,
    interval: str,
    port: int = 0,
    jitter: str = "1s",
    bundles: bool = True,
) -> None:
    """N targets, each on its own live folder (a source each), all against the one reference
    file: one `targets:` entry with `for_each`, so thousands fit in the rules file's bounds."""
    sources: dict[str, Any] = {
        "reference": {
            "type": "files",
            "url": str(workdir / "reference.parquet"),
            "timestamp_column": None,
        }
    }
    for i in range(n_targets):
        sources[f"live-{i:03d}"] = {
            "type": "files",
            "url": str(workdir / "live" / f"model-{i:03d}"),
            "timestamp_column": "timestamp",
            "partitioning": layout,
        }
    template = {
        "for_each": [{"i": f"{i:03d}"} for i in range(n_targets)],
        "name": "model-{{i}}",
        "interval": interval,
        "samples": {"source": "live-{{i}}", "window": "1m", "min_samples": 100},
        "reference": {"source": "reference"},
        "columns": {"features": dict.fromkeys(FEATURES, "numeric")},
        "checks": [
            KS_CHECK,
            {
                "name": "feature_psi",
                "type": "drift",
                "test": "psi",
                "columns": "features",
                "threshold": 0.2,
                "drift_share": 0.3,
            },
        ],
        "trigger": "any",
    }
    rules = {
        "version": 1,
        "daemon": {
            "http": {"host": "127.0.0.1", "port": port},
            "state_dir": str(workdir / "state"),
            "log_level": "info",
            "jitter": jitter,
            "bundles": {"enabled": bundles},
        },
        "sources": sources,
        "targets": [template],
    }
    path.write_text(yaml.safe_dump(rules, sort_keys=False))


def prepare(
    workdir: Path,
    n_targets: int,
    layout: str,
    start: datetime,
    end: datetime,
    distinct: int | None = None,
) -> Path:
    """A fresh workdir with the reference, every target's live files and the config. With
    `distinct`, only that many targets' files are written; the others' are hard links to them
    (target i has target i % distinct's), which writes thousands of targets' data in a minute."""
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    rng = np.random.default_rng(20261125)
    write_reference(workdir / "reference.parquet", rng)
    live = workdir / "live"
    for i in range(n_targets):
        if distinct is None or i < distinct:
            write_live(live / f"model-{i:03d}", layout, start, end, rng)
            continue
        original = live / f"model-{i % distinct:03d}"
        for file in original.rglob("*.parquet"):
            link = live / f"model-{i:03d}" / file.relative_to(original)
            link.parent.mkdir(parents=True, exist_ok=True)
            os.link(file, link)
    config = workdir / "rules.yaml"
    write_config(config, workdir, n_targets, layout, "1m")
    return config


# ----------------------------------------------------------------------------- in process


# What a run times (each from a cold exact-KS cache, on the same windows):
EVALUATION = "evaluation"  # run_once: read, test, decide, save, metrics, log
CHECKS = "checks alone"  # core.evaluate on the observation run_once would read (not timed)
FULL_RE_READ = "full re-read"  # run_once with the files cache off: every file of the window's
# folders read and parsed again on every evaluation, as a reader that keeps nothing


@dataclass
class InProcess:
    label: str
    threads: int
    mode: str
    evaluations: int
    seconds: float
    cpu_seconds: float
    others: float  # cores busy with other processes meanwhile (a shared machine)
    latencies: list[float] = field(default_factory=list)
    failed: int = 0
    files_read: float = 0.0

    @property
    def per_minute(self) -> float:
        return self.evaluations / self.seconds * 60

    @property
    def cpu_per_evaluation(self) -> float:
        return self.cpu_seconds / self.evaluations

    def quantile(self, q: float) -> float:
        return float(np.quantile(self.latencies, q)) if self.latencies else float("nan")


class Clock:
    """A target's virtual clock: the instant its next evaluation is at."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def runners_for(config_path: Path, start: datetime) -> tuple[list[TargetRunner], Observer]:
    """The daemon's own evaluation objects for every target, each on its own virtual clock."""
    config = load_config(config_path)
    shutil.rmtree(config.daemon.state_dir, ignore_errors=True)  # no state from an earlier run
    devnull = open(os.devnull, "w")  # noqa: SIM115 (the loggers write to it until exit)
    with contextlib.redirect_stdout(devnull):
        log = configure_logging(config.daemon.log_level)  # JSON lines rendered, then dropped
    store = StateStore(config.daemon.state_dir, log)
    metrics = DaemonMetrics()
    observer = Observer(config)
    actuator = DryRunActuator(log)
    runners = [
        TargetRunner(t, observer, actuator, store, metrics, log, Clock(start))
        for t in config.targets
    ]
    return runners, observer


def run_in_process(
    label: str,
    config: Path,
    start: datetime,
    step: timedelta,
    rounds: int,
    threads: int,
    duration: float,
    mode: str = EVALUATION,
) -> InProcess:
    """Every target at `start` (untimed: builds the reference), then round k at start + k * step
    for k = 1..rounds, for at most `duration` seconds. `mode` says what is timed (CHECKS: CPU
    time of the core's evaluation alone, in one thread)."""
    ks.EXACT_CACHE.clear()  # every mode starts cold and sees the same windows
    runners, observer = runners_for(config, start)
    if mode == FULL_RE_READ:
        for reader in observer.readers.values():
            reader.cache_bytes = 0  # type: ignore[attr-defined]
    for runner in runners:
        assert runner.run_once() is not None, f"{runner.target.name}: evaluation failed"
        assert runner.last is not None
        statuses = {str(r.status) for r in runner.last.results}
        assert statuses == {"ok"}, f"{runner.target.name}: {statuses} (no data in the window?)"
    latencies: list[list[float]] = [[] for _ in range(threads)]
    failures = [0] * threads
    reached = [0] * threads
    deadline = time.perf_counter() + duration
    checks_cpu = [0.0]  # CHECKS: the core's CPU time only

    def checks_alone(runner: TargetRunner, k: int) -> None:
        now = runner.clock()
        observation = runner.observer.observe(runner.target, now)
        started, cpu = time.perf_counter(), time.process_time()
        evaluation = evaluate(runner.target, observation, runner.state, now)
        checks_cpu[0] += time.process_time() - cpu
        latencies[k].append(time.perf_counter() - started)
        runner.state = evaluation.state  # as run_once keeps it (pending timers go on)

    def work(k: int) -> None:  # one thread's share of the targets; a target never runs twice
        mine = runners[k::threads]
        for round_ in range(1, rounds + 1):
            for runner in mine:
                runner.clock.now = start + round_ * step  # type: ignore[attr-defined]
                if mode == CHECKS:
                    checks_alone(runner, k)
                else:
                    started = time.perf_counter()
                    if runner.run_once() is None:
                        failures[k] += 1
                    latencies[k].append(time.perf_counter() - started)
                if time.perf_counter() >= deadline:
                    reached[k] = round_
                    return
        reached[k] = rounds

    busy0, cpu0, wall0 = machine_busy(), time.process_time(), time.perf_counter()
    pool = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    if mode == CHECKS:
        cpu = checks_cpu[0]
    others = busy_since(busy0, wall) - cpu / wall
    flat = [x for each in latencies for x in each]
    # Files each window lists and reads, on average over the rounds run (hourly: it grows).
    reader = observer.readers[runners[0].target.samples.source]
    window = runners[0].target.samples.window
    instants = [start + k * step for k in range(1, max(reached) + 1)]
    listed: Callable[[datetime, datetime], list[str]] = reader.files  # type: ignore[attr-defined]
    files = statistics.fmean(len(listed(t - window, t)) for t in instants)
    return InProcess(label, threads, mode, len(flat), wall, cpu, others, flat, sum(failures), files)


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    with contextlib.suppress(OSError):
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]]
        idle = fields[3] + fields[4]  # idle + iowait
        tick = os.sysconf("SC_CLK_TCK")
        return (sum(fields) - idle) / tick, sum(fields) / tick
    return float("nan"), float("nan")


def busy_since(start: tuple[float, float], wall: float) -> float:
    """Cores the whole machine kept busy on average since `start`."""
    busy, _ = machine_busy()
    return (busy - start[0]) / wall


# --------------------------------------------------------------------------------- the daemon


@dataclass
class DaemonRun:
    targets: int
    interval: str
    jitter: str
    seconds: float
    cpu_share: float  # of one core
    cpu_per_evaluation: float
    others: float  # cores busy with other processes meanwhile
    rss_mean_mb: float
    rss_max_mb: float
    evaluations_per_minute: float
    mean_evaluation: float
    errors: float
    no_data: float
    exit_code: int
    started_in: float


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of the process so far."""
    if psutil is not None:
        times = psutil.Process(pid).cpu_times()
        return float(times.user + times.system)
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    if psutil is not None:
        return int(psutil.Process(pid).memory_info().rss)
    statm = Path(f"/proc/{pid}/statm").read_text().split()
    return int(statm[1]) * os.sysconf("SC_PAGE_SIZE")


def scrape(client: httpx.Client) -> dict[str, float]:
    """Totals over all targets: evaluations by result, and the duration histogram's sum/count."""
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for s in family.samples:
            if s.name == "mlwatchdog_evaluations_total":
                key = f"evaluations_{s.labels['result']}"
            elif s.name in (
                "mlwatchdog_evaluation_duration_seconds_sum",
                "mlwatchdog_evaluation_duration_seconds_count",
            ):
                key = s.name.rsplit("_", 1)[1]
            else:
                continue
            totals[key] = totals.get(key, 0.0) + s.value
    return totals


def run_daemon(
    workdir: Path,
    n_targets: int,
    interval: str,
    jitter: str,
    duration: float,
    log: Callable[[str], None],
    distinct: int | None = None,
    bundles: bool = True,
) -> DaemonRun:
    # Every target's first evaluation: 0.1-0.5 s of CPU each (2,000 targets: minutes).
    ready_within = 120 + 0.6 * n_targets
    now = datetime.now(UTC).replace(microsecond=0)
    start = now - timedelta(minutes=2)
    # Until the end of the measurement, however long the start took (rows written ahead lie
    # outside the window until it gets there).
    end = now + timedelta(seconds=ready_within + duration + 120)
    shared = f", {distinct} distinct (the others hard links)" if distinct else ""
    log(f"daemon: writing {n_targets} targets' samples{shared} ...")
    prepare(workdir, n_targets, MINUTE_LAYOUT, start, end, distinct)
    port = free_port()
    config = workdir / "rules.yaml"
    write_config(config, workdir, n_targets, MINUTE_LAYOUT, interval, port, jitter, bundles)
    output = workdir / "daemon.log"
    env = {k: v for k, v in os.environ.items() if k != "MLWATCHDOG_PORT"}
    with output.open("wb") as out:
        launched = time.monotonic()
        proc = subprocess.Popen(
            [COMMAND, "run", "--config", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            env=env,
        )
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10.0)
        try:
            while True:  # ready: every target evaluated once
                if proc.poll() is not None:
                    raise SystemExit(f"the daemon exited ({proc.returncode}); see {output}")
                with contextlib.suppress(httpx.TransportError):
                    if client.get("/readyz").status_code == 200:
                        break
                if time.monotonic() - launched > ready_within:
                    raise SystemExit(
                        f"the daemon was not ready within {ready_within:g} s; see {output}"
                    )
                time.sleep(0.2)
            started_in = time.monotonic() - launched
            log(f"daemon: ready in {started_in:.1f} s; measuring for {duration:g} s ...")
            busy0 = machine_busy()
            before, cpu0, wall0 = scrape(client), cpu_seconds(proc.pid), time.monotonic()
            rss: list[int] = []
            while time.monotonic() - wall0 < duration:
                rss.append(rss_bytes(proc.pid))
                time.sleep(1.0)
            after, cpu1, wall1 = scrape(client), cpu_seconds(proc.pid), time.monotonic()
            busy = busy_since(busy0, wall1 - wall0)
        finally:
            client.close()
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    seconds = wall1 - wall0

    def delta(key: str) -> float:
        return after.get(key, 0.0) - before.get(key, 0.0)

    count = delta("count")
    return DaemonRun(
        targets=n_targets,
        interval=interval,
        jitter=jitter,
        seconds=seconds,
        cpu_share=(cpu1 - cpu0) / seconds,
        cpu_per_evaluation=(cpu1 - cpu0) / count if count else float("nan"),
        others=busy - (cpu1 - cpu0) / seconds,
        rss_mean_mb=statistics.fmean(rss) / 2**20,
        rss_max_mb=max(rss) / 2**20,
        evaluations_per_minute=count / seconds * 60,
        mean_evaluation=delta("sum") / count if count else float("nan"),
        errors=delta("evaluations_error"),
        no_data=delta("evaluations_no_data"),
        exit_code=proc.returncode,
        started_in=started_in,
    )


# -------------------------------------------------------------------------------- reporting


def machine() -> str:
    info: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, val = line.partition(":")
            info.setdefault(key.strip(), val.strip())
    model = info.get("model name") or platform.processor() or "unknown CPU"
    if "cpu family" in info:
        model += f" (family {info['cpu family']})"
    if "hypervisor" in info.get("flags", "").split():
        model += ", a virtual machine"
    return (
        f"{os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), {model}; "
        f"Linux {platform.release()}; Python {platform.python_version()}"
    )


def code_version() -> str:
    """The commit measured (the checkout `mlwatchdog` is imported from, as PYTHONPATH says), and
    whether its working tree had changes to the package."""
    tree = Path(mlwatchdog.__file__).resolve().parents[1]
    try:
        commit = subprocess.run(
            ["git", "-C", str(tree), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "-C", str(tree), "status", "--porcelain", "--", "mlwatchdog"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split("\n")
    except (OSError, subprocess.CalledProcessError):
        return "unknown commit"
    files = sorted(line[3:] for line in changed if line.strip())
    return f"commit {commit}" + (
        f" with uncommitted changes to {', '.join(files)}" if files else ""
    )


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds >= 0.01 else f"{seconds * 1000:.1f} ms"


def report(runs: list[InProcess], daemon: DaemonRun | None, command: str) -> str:
    lines = [
        SECTION,
        "",
        f"`{command}`, on {machine()}; {code_version()}.",
        "",
        f"Each target: 20 numeric features; KS (BH correction) + PSI over them; window 1m of "
        f"~{ROWS_PER_MINUTE:,} rows in parquet files of {FILE_EVERY} s each, a folder per "
        f"target; one shared reference of {REFERENCE_ROWS:,} rows. In process: the daemon's "
        "`TargetRunner.run_once` (read the window, test, decide, save the state with fsync, "
        "metrics, JSON log line) on every target in turn, as fast as it goes, in 1 thread and "
        f"in {WORKERS} (the daemon's scheduler threads), on a virtual clock that moves 1 minute "
        "per round (every window new, as at `interval: 1m`). *Files* is the mean number of files "
        "a window lists. *Other load* is what other processes "
        "kept busy on the machine meanwhile, in cores: wall-clock figures are only as good as "
        "it is low; CPU per evaluation is not affected much.",
        "",
        "| layout | timed | threads | files | evaluations/min | median | p95 | CPU/evaluation "
        "| CPU used | other load |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        alone = r.mode == CHECKS  # its wall clock includes the untimed reads
        lines.append(
            f"| {r.label} | {r.mode} | {r.threads} | {r.files_read:.0f} | "
            f"{'-' if alone else f'{r.per_minute:,.0f}'} | "
            f"{ms(r.quantile(0.5))} | {ms(r.quantile(0.95))} | {ms(r.cpu_per_evaluation)} | "
            f"{'-' if alone else f'{r.cpu_seconds / r.seconds:.2f}'} | {r.others:.1f} |"
        )
    lines.append("")
    timed_modes = {r.mode for r in runs}
    for label in dict.fromkeys(r.label for r in runs if timed_modes != {CHECKS}):

        def cpu(mode: str, label: str = label) -> float:
            found = [r for r in runs if r.label == label and r.mode == mode and r.threads == 1]
            return found[0].cpu_per_evaluation if found else float("nan")

        lines.append(
            f"- {label}: an evaluation costs {cpu(EVALUATION) / cpu(CHECKS):.2f}x the checks "
            "alone on the same windows; with a full re-read of the window's files it costs "
            f"{cpu(FULL_RE_READ) / cpu(EVALUATION):.2f}x the incremental read's evaluation."
        )
    runs = [r for r in runs if r.mode == EVALUATION]
    best = next((r for r in runs if r.threads == 1), None)
    pooled = next(
        (r for r in runs if r.threads == WORKERS and best and r.label == best.label), None
    )
    if best is not None:
        lines += [
            "",
            f"At {ms(best.cpu_per_evaluation)} of CPU per evaluation ({best.label}), one core "
            f"evaluates about {60 / best.cpu_per_evaluation:,.0f} targets per minute.",
        ]
        if pooled is not None:
            lines[-1] += (
                f" With the daemon's {WORKERS} threads the process evaluated "
                f"{pooled.per_minute:,.0f} per minute on {pooled.cpu_seconds / pooled.seconds:.2f} "
                f"cores of this {os.cpu_count()}-CPU machine: the threads share one interpreter, "
                "and overlap only where pyarrow, numpy and fsync release the GIL."
            )
    hourly = next((r for r in runs if r.threads == 1 and r.label.startswith("hourly")), None)
    if best is not None and hourly is not None:
        lines += [
            "",
            f"Hourly partitions (the layout of rules.yaml and the demo) cost "
            f"{hourly.cpu_per_evaluation / best.cpu_per_evaluation:.2f}x the CPU of minute "
            f"partitions, with {hourly.files_read:.0f} files listed per window (the hour's "
            f"folder) instead of {best.files_read:.0f}: the files source keeps each file it read "
            "with its first and last timestamp, so a file outside the window is passed over "
            "unopened, and one the window has passed keeps only those bounds.",
        ]
    if daemon is not None:
        nominal = parse_duration(daemon.interval).total_seconds()
        nominal += parse_duration(daemon.jitter).total_seconds() / 2
        lines += [
            "",
            f"The real daemon (`mlwatchdog run`, a subprocess) on {daemon.targets} targets, "
            f"`interval: {daemon.interval}` with `jitter: {daemon.jitter}` (APScheduler 3 adds "
            "each run's jitter to the next run's time: the mean period is interval + jitter/2, "
            f"{nominal:g} s here, {60 * daemon.targets / nominal:,.0f} target-evaluations/min), "
            f"minute partitions, measured for {daemon.seconds:.0f} s after every target was "
            "evaluated once:",
            "",
            "| target-evaluations/min | CPU (of one core) | CPU/evaluation | RSS mean / max "
            "| mean evaluation | errors | no data | ready after | other load |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
            f"| {daemon.evaluations_per_minute:,.0f} | {daemon.cpu_share:.0%} | "
            f"{ms(daemon.cpu_per_evaluation)} | "
            f"{daemon.rss_mean_mb:.0f} / {daemon.rss_max_mb:.0f} MB | "
            f"{ms(daemon.mean_evaluation)} | {daemon.errors:.0f} | {daemon.no_data:.0f} | "
            f"{daemon.started_in:.1f} s | {daemon.others:.1f} |",
        ]
    return "\n".join(wrap(line) for line in lines) + "\n"


def wrap(line: str, width: int = 100) -> str:
    """A paragraph wrapped at `width`, as the rest of README.md; tables and headings as they are."""
    if line.startswith(("|", "#")) or len(line) <= width:
        return line
    return textwrap.fill(line, width, break_long_words=False, break_on_hyphens=False)


def write_readme(section: str) -> None:
    """Replace the trailing "## Daemon throughput" section of README.md, or append it."""
    text = README.read_text() if README.exists() else ""
    match = re.search(rf"^{re.escape(SECTION)}\s*$", text, flags=re.MULTILINE)
    if match:
        rest = text[match.end() :]
        following = re.search(r"^## ", rest, flags=re.MULTILINE)  # keep any later section
        tail = rest[following.start() :] if following else ""
        text = text[: match.start()] + section + ("\n" + tail if tail else "")
    else:
        text = (text.rstrip("\n") + "\n\n" if text.strip() else "") + section
    README.write_text(text)


# ------------------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="short runs, fewer targets")
    parser.add_argument("--targets", type=int, help="targets in process (default 50; quick 10)")
    parser.add_argument("--duration", type=float, help="seconds per in-process run [40; quick 8]")
    parser.add_argument("--rounds", type=int, help="minutes of samples in process [20; quick 5]")
    parser.add_argument("--daemon-targets", type=int, help="daemon targets [50; quick 10]")
    parser.add_argument("--daemon-interval", default="5.5s", help="daemon interval [5.5s]")
    parser.add_argument("--daemon-jitter", default="1s", help="daemon jitter [1s]")
    parser.add_argument("--daemon-seconds", type=float, help="daemon measurement [120; quick 30]")
    parser.add_argument(
        "--daemon-distinct",
        type=int,
        help="write only this many targets' samples, the others hard links to them (thousands "
        "of targets in a minute; the exact-KS cache then serves them more often) [all distinct]",
    )
    parser.add_argument(
        "--daemon-no-bundles",
        action="store_true",
        help="daemon.bundles.enabled: false (each target's first evaluation writes a bundle "
        "with the reference's rows: 6.5 MB and ~0.5 s of CPU here)",
    )
    parser.add_argument("--no-daemon", action="store_true", help="skip the daemon run")
    parser.add_argument("--daemon-only", action="store_true", help="skip the in-process runs")
    parser.add_argument(
        "--checks-only", action="store_true", help="in process, time the checks alone; no daemon"
    )
    parser.add_argument("--workdir", type=Path, help="where the data goes (default: a temp dir)")
    parser.add_argument("--readme", action="store_true", help=f"write {SECTION!r} in README.md")
    args = parser.parse_args()
    quick = args.quick
    n_targets = args.targets or (10 if quick else 50)
    duration = args.duration or (8.0 if quick else 40.0)
    daemon_targets = args.daemon_targets or (10 if quick else 50)
    daemon_seconds = args.daemon_seconds or (30.0 if quick else 120.0)
    rounds = args.rounds or (5 if quick else 20)

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    command = "python benchmarks/daemon_bench.py" + (" --quick" if quick else "")
    base = args.workdir or Path(tempfile.mkdtemp(prefix="mlwatchdog-daemon-bench-"))
    log(f"data in {base}; {machine()}")
    # Virtual time: round k evaluates every target at START + k minutes (interval 1m, as in
    # production), so each window holds new files, as it would in the daemon.
    start = datetime(2026, 11, 25, 6, 10, 30, tzinfo=UTC)
    step = timedelta(minutes=1)
    runs: list[InProcess] = []
    for label, layout, first in (
        ()
        if args.daemon_only
        else (
            ("minute partitions", MINUTE_LAYOUT, start - timedelta(minutes=2)),
            (
                "hourly partitions",
                HOUR_LAYOUT,
                start.replace(minute=0, second=0),
            ),
        )
    ):
        workdir = base / ("minute" if layout == MINUTE_LAYOUT else "hour")
        log(f"{label}: writing {n_targets} targets' samples ...")
        config = prepare(workdir, n_targets, layout, first, start + rounds * step)
        for mode, threads in (
            ((CHECKS, 1),)
            if args.checks_only
            else ((CHECKS, 1), (EVALUATION, 1), (FULL_RE_READ, 1), (EVALUATION, WORKERS))
        ):
            log(f"{label}: {mode}, {threads} thread(s) for up to {duration:g} s ...")
            run = run_in_process(label, config, start, step, rounds, threads, duration, mode)
            if run.failed:
                raise SystemExit(f"{label}: {run.failed} evaluation(s) failed")
            runs.append(run)
        shutil.rmtree(workdir, ignore_errors=True)
    daemon = None
    if not (args.no_daemon or args.checks_only):
        daemon = run_daemon(
            base / "daemon",
            daemon_targets,
            args.daemon_interval,
            args.daemon_jitter,
            daemon_seconds,
            log,
            args.daemon_distinct,
            not args.daemon_no_bundles,
        )
        if daemon.errors or daemon.no_data or daemon.exit_code != 0:
            log(
                f"warning: {daemon.errors:g} errors, {daemon.no_data:g} without data, "
                f"exit code {daemon.exit_code}"
            )
    if not args.workdir:
        shutil.rmtree(base, ignore_errors=True)
    section = report(runs, daemon, command)
    print(section)
    if args.readme:
        write_readme(section)
        log(f"wrote {SECTION!r} in {README}")


if __name__ == "__main__":
    main()
