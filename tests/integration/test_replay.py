"""Replay over generated history: date-partitioned sample files written with the demo's helpers,
a rules file modelled on rules.yaml, then `replay()` and the `mlwatchdog replay` command.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlwatchdog.demo import PARTITIONING, customers, write_batch
from mlwatchdog.replay import TIMELINE_COLUMNS, replay
from mlwatchdog.rules import Config, load_config

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "examples" / "data" / "reference.parquet"
COMMAND = str(Path(sys.executable).parent / "mlwatchdog")

# 20 minutes across an hour boundary (two hourly partitions); drift from minute 8.
START = datetime(2026, 11, 25, 5, 50, tzinfo=UTC)
END = START + timedelta(minutes=20)
DRIFT_START = START + timedelta(minutes=8)
STEP = timedelta(seconds=30)
BATCH = timedelta(seconds=20)  # one file per 20 s of 20 rows/s, as the demo writes them
ROWS_PER_BATCH = 400

RULES = """\
version: 1
daemon:
  state_dir: {state_dir}
sources:
  live:
    type: files
    url: {live}
    timestamp_column: timestamp
    partitioning: "{partitioning}"
  training:
    type: files
    url: {reference}
    timestamp_column: null
targets:
  - name: credit-model
    workload: {{kind: argo-rollout, name: credit-model, namespace: models}}
    interval: 10s
    samples: {{source: live, window: 1m, min_samples: 200}}
    reference: {{source: training}}
    columns:
      features:
        age: numeric
        income: numeric
        credit_score: numeric
        tenure_months: numeric
        n_products: numeric
        channel: categorical
        region: categorical
      predictions:
        score: numeric
    checks:
      - {{name: feature_drift, type: drift, test: ks, columns: features, threshold: 0.01,
          correction: bh, drift_share: 0.3}}
      - {{name: channel_mix, type: drift, test: chi2, columns: [channel, region],
          threshold: 0.01, drift_share: 0.5}}
      - {{name: prediction_drift, type: drift, test: psi, columns: predictions, threshold: 0.2,
          drift_share: 1.0}}
    trigger: prediction_drift and (feature_drift or channel_mix)
    for: 30s
    resolve_after: 1m
    cooldown: 10m
    no_data: hold
    rollback: {{to: prior, dry_run: true}}
    verify: {{window: 2m}}
"""


def write_history(live: Path, drift_start: datetime | None, seed: int) -> None:
    """Batches from a window before START to END; rows from drift_start on are drifted."""
    rng = np.random.default_rng(seed)
    at = START - timedelta(minutes=2)
    while at <= END:
        first = at - BATCH
        drifted = drift_start is not None and first >= drift_start
        batch = customers(rng, ROWS_PER_BATCH, drifted)
        offsets = rng.uniform(0, BATCH.total_seconds(), ROWS_PER_BATCH)
        batch.insert(0, "timestamp", [first + timedelta(seconds=s) for s in offsets])
        write_batch(live, batch, at)
        at += BATCH


def write_rules(directory: Path, live: Path) -> Path:
    path = directory / "rules.yaml"
    path.write_text(
        RULES.format(
            state_dir=directory / "state",
            live=live,
            partitioning=PARTITIONING,
            reference=REFERENCE,
        )
    )
    return path


@pytest.fixture(scope="module")
def drifting(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with rules.yaml and its live samples, which drift from DRIFT_START."""
    directory = tmp_path_factory.mktemp("drifting")
    write_history(directory / "live", DRIFT_START, seed=1)
    return write_rules(directory, directory / "live")


@pytest.fixture(scope="module")
def drifting_timeline(drifting: Path) -> pd.DataFrame:
    return replay(load_config(drifting), START, END, STEP)


def decided(timeline: pd.DataFrame) -> pd.DataFrame:
    return timeline[timeline["decision"] != ""]


def test_the_history_is_in_hourly_partitions(drifting: Path) -> None:
    live = drifting.parent / "live"
    assert sorted(p.relative_to(live).as_posix() for p in live.glob("*/*")) == [
        "dt=2026-11-25/hour=05",
        "dt=2026-11-25/hour=06",
    ]


def test_timeline_has_the_documented_columns_and_a_row_per_time_and_check(
    drifting: Path, drifting_timeline: pd.DataFrame
) -> None:
    config: Config = load_config(drifting)
    checks = [c.name for c in config.targets[0].checks]
    timeline = drifting_timeline

    # README: "per time, target and check, the status, value, threshold, check state, target
    # state, incident and decisions".
    assert TIMELINE_COLUMNS == (
        "time", "target", "check", "status", "value", "threshold", "breaching", "check_state",
        "target_state", "incident", "decision", "decision_to", "reason",
    )  # fmt: skip
    assert list(timeline.columns) == list(TIMELINE_COLUMNS)
    times = pd.date_range(START, END, freq=STEP)
    assert len(timeline) == len(times) * len(checks)
    assert list(timeline["time"].drop_duplicates()) == list(times)
    assert list(timeline["check"][: len(checks)]) == checks
    assert set(timeline["target"]) == {"credit-model"}
    # The files cover every window: every check had data at every step.
    assert set(timeline["status"]) == {"ok"}


def test_drift_gives_one_rollback_after_the_drift_began_plus_for(
    drifting: Path, drifting_timeline: pd.DataFrame
) -> None:
    target = load_config(drifting).targets[0]
    timeline = drifting_timeline

    rollbacks = timeline[timeline["decision"].str.contains("rollback")]
    assert len(rollbacks) == 1
    rollback = rollbacks.iloc[0]
    assert rollback["time"] >= DRIFT_START + target.for_
    # Pending from the first breach of the prediction check, acting once it lasted `for`.
    breaches = timeline[(timeline["check"] == "prediction_drift") & timeline["breaching"]]
    first_breach = breaches.iloc[0]
    assert first_breach["time"] >= DRIFT_START
    assert first_breach["check_state"] == "pending"
    assert rollback["time"] >= first_breach["time"] + target.for_
    # The window holds drifted rows from DRIFT_START; all of them a window later.
    assert rollback["time"] <= DRIFT_START + target.samples.window + target.for_ + STEP
    assert rollback["decision_to"] == "prior"
    assert rollback["incident"].startswith("credit-model-")
    before = timeline[timeline["time"] < DRIFT_START]
    assert decided(before).empty
    assert set(before["target_state"]) <= {"healthy", "degraded"}
    # The samples stay drifted: the rollback does not verify, the incident escalates, once.
    after = decided(timeline[timeline["time"] > rollback["time"]])
    assert list(after["decision"]) == ["escalate"]
    assert after.iloc[0]["time"] >= rollback["time"] + target.verify.window
    assert set(after["incident"]) == {rollback["incident"]}
    assert timeline.iloc[-1]["target_state"] == "escalated"


def test_no_drift_gives_no_decision(tmp_path: Path) -> None:
    write_history(tmp_path / "live", None, seed=2)
    timeline = replay(load_config(write_rules(tmp_path, tmp_path / "live")), START, END, STEP)

    assert decided(timeline).empty
    assert set(timeline["target_state"]) <= {"healthy", "degraded"}
    assert set(timeline["check_state"]) <= {"inactive", "pending"}


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.run(
        [COMMAND, "replay", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=cwd,
        env=env,
    )


def test_cli_writes_the_timeline_of_the_python_api(
    drifting: Path, drifting_timeline: pd.DataFrame, tmp_path: Path
) -> None:
    out = tmp_path / "timeline.parquet"
    done = run_cli(
        "--config", str(drifting),
        "--from", "2026-11-25T05:50",  # README's form: no zone is UTC
        "--to", "2026-11-25T07:10:00+01:00",
        "--step", "30s",
        "--out", str(out),
        cwd=tmp_path,
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    pd.testing.assert_frame_equal(pd.read_parquet(out), drifting_timeline)
    rollback = decided(drifting_timeline).iloc[0]
    assert f"{len(drifting_timeline) // 3} step(s), {len(drifting_timeline)} row(s)" in done.stdout
    assert f"{rollback['time']:%Y-%m-%d %H:%M:%S} credit-model: rollback" in done.stdout
    # The drift checks' transitions to firing, counted from the timeline: the measured rate.
    onsets = 0
    for _, history in drifting_timeline.groupby("check"):
        firing = (history["check_state"] == "firing").to_numpy()
        onsets += int(firing[0]) + int((firing[1:] & ~firing[:-1]).sum())
    assert onsets >= 2
    assert f"credit-model: {onsets} drift alarm(s) in 0.0139 days" in done.stdout
    # Replay reads history only: it leaves the daemon's state alone.
    assert not (drifting.parent / "state").exists()


@pytest.mark.parametrize(
    ("start", "end", "code", "message"),
    [
        # Unparsable or missing times are usage errors (typer's BadParameter): exit 2.
        ("yesterday", "2026-11-25T06:10Z", 2, "'yesterday' is not an ISO 8601 time"),
        ("2026-11-25T05:50Z", "25/11/2026 06:10", 2, "'25/11/2026 06:10' is not an ISO 8601"),
        ("2026-11-25T05:50Z", "", 2, "give both --from and --to"),
        # A valid but reversed range is an error of the replay: exit 1.
        (
            "2026-11-25T06:10Z",
            "2026-11-25T05:50Z",
            1,
            "error: --to (2026-11-25T05:50:00+00:00) is before --from (2026-11-25T06:10:00+00:00)",
        ),
    ],
    ids=["unparsable-from", "unparsable-to", "missing-to", "reversed"],
)
def test_cli_rejects_bad_times_with_a_clear_message(
    drifting: Path, tmp_path: Path, start: str, end: str, code: int, message: str
) -> None:
    out = tmp_path / "timeline.parquet"
    args = ["--config", str(drifting), "--from", start, "--step", "30s", "--out", str(out)]
    done = run_cli(*args, *(["--to", end] if end else []), cwd=tmp_path)

    assert done.returncode == code, (done.stdout, done.stderr)
    assert message in done.stderr
    assert not out.exists()
