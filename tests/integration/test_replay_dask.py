"""Replay on Dask gives the serial timeline exactly: three hours of generated history at 1-minute
steps, drifting in the middle, two targets; measured by a LocalCluster that replay starts, and by
the workers of a scheduler the test starts; and through `mlwatchdog replay --executor dask`.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlwatchdog.demo import PARTITIONING, customers, write_batch
from mlwatchdog.errors import MlwatchdogError
from mlwatchdog.replay import replay
from mlwatchdog.replay.parallel import Plan
from mlwatchdog.rules import Config, load_config

distributed = pytest.importorskip("distributed")

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "examples" / "data" / "reference.parquet"
COMMAND = str(Path(sys.executable).parent / "mlwatchdog")

# Three hours at 1-minute steps (181 times, three hourly partitions); drift from the middle.
START = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)
END = START + timedelta(hours=3)
DRIFT_START = START + timedelta(minutes=90)
STEP = timedelta(minutes=1)
ROWS_PER_MINUTE = 300  # one file per minute

RULES = """\
version: 1
daemon:
  state_dir: {state_dir}
sources:
  live: {{type: files, url: {live}, timestamp_column: timestamp, partitioning: "{partitioning}"}}
  training: {{type: files, url: {reference}, timestamp_column: null}}
targets:
  - name: credit-model
    workload: {{kind: argo-rollout, name: credit-model, namespace: models}}
    samples: {{source: live, window: 1m, min_samples: 200}}
    reference: {{source: training}}
    columns:
      features: {{age: numeric, income: numeric, credit_score: numeric, channel: categorical}}
      predictions: {{score: numeric}}
    checks:
      - {{name: feature_drift, type: drift, test: ks, columns: features, threshold: 0.01,
          correction: bh, drift_share: 0.3}}
      - {{name: channel_mix, type: drift, test: chi2, columns: [channel], threshold: 0.01}}
      - {{name: prediction_drift, type: drift, test: psi, columns: predictions, threshold: 0.2}}
    trigger: prediction_drift and (feature_drift or channel_mix)
    for: 3m
    resolve_after: 5m
    cooldown: 1h
    rollback: {{to: prior, dry_run: true}}
    verify: {{window: 15m}}
  - name: income-only
    workload: {{kind: argo-rollout, name: income, namespace: models}}
    samples: {{source: live, window: 2m, min_samples: 400}}
    reference: {{source: training}}
    columns: {{features: {{income: numeric, tenure_months: numeric}}}}
    checks:
      - {{name: income_drift, type: drift, test: psi, columns: [income], threshold: 0.1}}
      - {{name: tenure_drift, type: drift, test: ks, columns: [tenure_months], threshold: 0.01}}
    trigger: income_drift
    for: 2m
    rollback: {{to: prior, dry_run: true}}
"""


@pytest.fixture(scope="module")
def rules(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """rules.yaml and its live samples: a parquet file per minute, drifted from DRIFT_START."""
    directory = tmp_path_factory.mktemp("dask-history")
    live = directory / "live"
    rng = np.random.default_rng(8)
    at = START - timedelta(minutes=2)
    while at <= END:
        first = at - timedelta(minutes=1)
        batch = customers(rng, ROWS_PER_MINUTE, drifted=first >= DRIFT_START)
        offsets = rng.uniform(0, 60, ROWS_PER_MINUTE)
        batch.insert(0, "timestamp", [first + timedelta(seconds=s) for s in offsets])
        write_batch(live, batch, first)  # in the partition of its rows' hour
        at += timedelta(minutes=1)
    path = directory / "rules.yaml"
    path.write_text(
        RULES.format(
            state_dir=directory / "state", live=live, partitioning=PARTITIONING, reference=REFERENCE
        )
    )
    return path


@pytest.fixture(scope="module")
def config(rules: Path) -> Config:
    return load_config(rules)


@pytest.fixture(scope="module")
def serial(config: Config) -> pd.DataFrame:
    plans: list[Plan] = []
    timeline = replay(config, START, END, STEP, on_plan=plans.append)
    assert [p.executor for p in plans] == ["serial"]
    return timeline


@pytest.fixture(scope="module")
def cluster() -> Iterator[object]:
    """A scheduler with 2 worker processes of one thread, as a user would start one."""
    with distributed.LocalCluster(
        n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None
    ) as local:
        yield local


def decisions(timeline: pd.DataFrame) -> list[tuple[object, ...]]:
    decided = timeline[timeline["decision"] != ""]
    columns = ["time", "target", "decision", "decision_to", "incident"]
    return list(decided[columns].itertuples(index=False, name=None))


def test_the_serial_timeline_has_decisions_for_both_targets(serial: pd.DataFrame) -> None:
    times = pd.date_range(START, END, freq=STEP)
    assert len(serial) == len(times) * (3 + 2)
    assert set(serial["status"]) == {"ok"}
    made = decisions(serial)
    assert {(target, kind) for _, target, kind, *_ in made} >= {
        ("credit-model", "rollback"),
        ("income-only", "rollback"),
    }
    assert all(time >= DRIFT_START for time, *_ in made)


def test_dask_on_a_local_cluster_of_its_own_gives_the_serial_timeline(
    config: Config, serial: pd.DataFrame
) -> None:
    plans: list[Plan] = []
    timeline = replay(config, START, END, STEP, executor="dask", on_plan=plans.append)

    pd.testing.assert_frame_equal(timeline, serial)
    assert decisions(timeline) == decisions(serial)
    [plan] = plans
    assert (plan.executor, plan.local) == ("dask", True)
    assert plan.workers == len(os.sched_getaffinity(0))
    assert plan.tasks == math.ceil(len(serial["time"].unique()) / plan.chunk) * 2
    assert plan.tasks >= 2 * plan.workers  # a few tasks per worker by default


def test_dask_on_a_given_scheduler_in_small_chunks_gives_the_serial_timeline(
    config: Config, serial: pd.DataFrame, cluster: distributed.LocalCluster
) -> None:
    plans: list[Plan] = []
    address = cluster.scheduler_address
    timeline = replay(
        config, START, END, STEP, executor="dask", scheduler=address, chunk=7, on_plan=plans.append
    )

    pd.testing.assert_frame_equal(timeline, serial)
    assert decisions(timeline) == decisions(serial)
    # 181 times in chunks of 7: 26 chunks, a task per chunk and target, more than are ever
    # submitted at once (2 chunks per worker thread), so results arrive out of order and are
    # folded in time order.
    assert plans == [Plan("dask", 26 * 2, 7, 2, address, local=False)]
    # The workers of an existing cluster stay up for the next run.
    with distributed.Client(address) as client:
        assert sum(client.nthreads().values()) == 2


def test_cli_runs_on_the_given_scheduler_and_says_so(
    rules: Path, serial: pd.DataFrame, cluster: distributed.LocalCluster, tmp_path: Path
) -> None:
    out = tmp_path / "timeline.parquet"
    address = cluster.scheduler_address
    done = subprocess.run(
        [
            COMMAND, "replay", "--config", str(rules), "--from", START.isoformat(),
            "--to", END.isoformat(), "--step", "1m", "--out", str(out),
            "--executor", "dask", "--scheduler", address,
        ],
        capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path,
        env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1"},
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    pd.testing.assert_frame_equal(pd.read_parquet(out), serial)
    assert "executor dask: 16 task(s) of up to 23 time(s) on 2 worker thread(s)" in done.stdout
    assert f"an existing scheduler at {address}" in done.stdout


def test_without_distributed_the_error_says_what_to_install(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    with pytest.raises(MlwatchdogError, match=r"pip install 'mlwatchdog\[dask\]'"):
        replay(config, START, END, STEP, executor="dask")


def test_an_unknown_executor_is_refused(config: Config) -> None:
    with pytest.raises(ValueError, match="executor must be one of serial, dask, not 'ray'"):
        replay(config, START, END, STEP, executor="ray")
