"""Performance checks through the real files source: predictions logged as they are served,
labels filed later (each up to 40 minutes after its prediction) in another source, joined by
request id or by time and customer; the Observer reads the delayed window, the core judges it,
and CBPE estimates the current window from the reference's labels before any label arrives.
"""

# ruff: noqa: F811  (a test takes the imported `postgres` fixture as a parameter of that name)
from __future__ import annotations

import asyncio
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
import structlog

from mlwatchdog.core import DataStatus, evaluate, measure
from mlwatchdog.daemon.app import create_app
from mlwatchdog.daemon.service import Daemon
from mlwatchdog.detectors import performance as perf
from mlwatchdog.replay.bundle import BundleWriter, Recorded, load_bundle
from mlwatchdog.report.page import ReportPage, render_report
from mlwatchdog.rules import parse_config
from mlwatchdog.rules.schema import Bundles
from mlwatchdog.sources.observe import Observer
from mlwatchdog.sources.probe import probe
from tests.servers.postgres import PostgresServer, postgres  # noqa: F401

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
HOURS = 3
DEGRADED_FROM = T0 + timedelta(hours=1, minutes=30)  # from then on the scores are noise
MAX_DELAY = timedelta(minutes=40)

RULES = """\
sources:
  live: {{type: files, url: "{root}/live"}}
  outcomes: {{type: files, url: "{root}/outcomes"}}
  training: {{type: files, url: "{root}/training.parquet", timestamp_column: null}}
targets:
  - name: fraud
    samples: {{source: live, window: 15m, min_samples: 100}}
    reference: {{source: training}}
    columns:
      features: {{amount: numeric}}
      predictions: {{score: numeric}}
    labels:
      source: outcomes
      column: is_fraud
      join: {join}
      delay: {delay}
    checks:
      - {{name: accuracy, type: performance, metric: accuracy, score: score, below: 0.85,
          min_samples: 200}}
      - {{name: auc, type: performance, metric: roc_auc, score: score, below: 0.6}}
      - {{name: est-accuracy, type: performance, metric: accuracy, estimate: cbpe,
          score: score, below: 0.85}}
    trigger: accuracy
    for: 2m
    verify: {{window: 1h}}
"""


def served(rng: np.random.Generator, start: datetime, seconds: int) -> pd.DataFrame:
    """One prediction a second: a calibrated score before DEGRADED_FROM, noise after."""
    stamps = pd.date_range(start, periods=seconds, freq="s", tz="UTC")
    truth = rng.beta(0.15, 0.15, seconds)  # the chance this transaction is fraud: mostly clear
    is_fraud = rng.random(seconds) < truth
    noisy = rng.random(seconds)
    score = np.where(stamps < pd.Timestamp(DEGRADED_FROM), truth, noisy)
    return pd.DataFrame({
        "timestamp": stamps,
        "request_id": [f"req-{start:%H%M}-{i}" for i in range(seconds)],
        "customer": rng.integers(0, 50, seconds),
        "amount": rng.gamma(2.0, 30.0, seconds),
        "score": score,
        "is_fraud": is_fraud.astype(int),
    })  # fmt: skip


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    """Predictions (live/, one parquet file per 10 minutes) and their labels (outcomes/, csv,
    each stamped when it was filed: up to MAX_DELAY after the prediction)."""
    root = tmp_path_factory.mktemp("performance")
    rng = np.random.default_rng(20261201)
    (root / "live").mkdir()
    (root / "outcomes").mkdir()
    frames = []
    for block in range(HOURS * 6):
        start = T0 + timedelta(minutes=10 * block)
        frame = served(rng, start, 600)
        frame.drop(columns="is_fraud").to_parquet(root / "live" / f"{block:03d}.parquet")
        frames.append(frame)
    rows = pd.concat(frames, ignore_index=True)
    filed = rows["timestamp"] + pd.to_timedelta(rng.integers(1, 2_400, len(rows)), unit="s")
    labels = pd.DataFrame({
        "timestamp": filed.dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "request_id": rows["request_id"],
        "is_fraud": rows["is_fraud"],
    }).sample(frac=1.0, random_state=3)  # fmt: skip
    for part, start in enumerate(range(0, len(labels), 2_000)):
        chunk = labels.iloc[start : start + 2_000]
        chunk.to_csv(root / "outcomes" / f"labels-{part}.csv", index=False)
    reference = served(rng, T0 - timedelta(days=1), 5_000)  # calibrated: before DEGRADED_FROM
    reference[["amount", "score", "is_fraud"]].to_parquet(root / "training.parquet")
    return root, rows


def config(root: Path, join: str = "{on: request_id}", delay: str = "40m") -> Any:
    return parse_config(RULES.format(root=root, join=join, delay=delay), env={})


def realised(rows: pd.DataFrame, start: datetime, end: datetime) -> float:
    window = rows[(rows["timestamp"] >= start) & (rows["timestamp"] < end)]
    return float(((window["score"] >= 0.5) == (window["is_fraud"] == 1)).mean())


def test_accuracy_is_judged_on_the_delayed_window_once_its_labels_are_in(
    world: tuple[Path, pd.DataFrame],
) -> None:
    root, rows = world
    rules = config(root)
    target, observer = rules.targets[0], Observer(rules)
    healthy_at = T0 + timedelta(hours=1)  # judges [08:05, 08:20), every label filed by 09:00
    degraded_at = T0 + timedelta(hours=2, minutes=20)  # judges [09:25, 09:40): 09:30 on is bad
    results = {}
    for now in (healthy_at, degraded_at):
        observation = observer.observe(target, now)
        assert observation.labels is not None
        assert observation.labels.status is DataStatus.OK, observation.labels.reason
        assert "900 of 900 predictions" in observation.labels.reason
        results[now] = {r.check: r for r in measure(target, observation)}
    good, bad = results[healthy_at]["accuracy"], results[degraded_at]["accuracy"]
    start = healthy_at - timedelta(minutes=55)
    assert good.value == pytest.approx(realised(rows, start, start + timedelta(minutes=15)))
    assert good.status is DataStatus.OK and not good.breaching
    start = degraded_at - timedelta(minutes=55)
    assert bad.value == pytest.approx(realised(rows, start, start + timedelta(minutes=15)))
    assert bad.breaching and "is below 0.85 (n=900 labelled rows)" in bad.reason
    assert bad.interval is not None and bad.interval[1] < 0.85
    assert results[healthy_at]["auc"].value > 0.75 and not results[healthy_at]["auc"].breaching


def test_labels_not_yet_filed_are_not_counted_and_too_few_never_breach(
    world: tuple[Path, pd.DataFrame],
) -> None:
    """With a delay shorter than the labels' the window's labels are still coming in: only
    those filed by `now` join, and with fewer than min_samples the check is insufficient,
    never breaching (at delay 0 about a fifth of the labels are in; at 10m, about half)."""
    root, rows = world
    labels = pd.concat(pd.read_csv(p) for p in sorted((root / "outcomes").glob("*.csv")))
    filed = pd.to_datetime(labels.set_index("request_id")["timestamp"], utc=True)
    statuses = []
    for delay in (timedelta(0), timedelta(minutes=10)):
        rules = config(root, delay=f"{int(delay.total_seconds())}s")
        target = rules.targets[0]
        now = T0 + timedelta(hours=2, minutes=15)  # the model is bad: breaching if judged
        end = now - delay
        in_window = rows[(rows["timestamp"] >= end - timedelta(minutes=15))
                         & (rows["timestamp"] < end)]  # fmt: skip
        expected = int((filed.loc[in_window["request_id"]] < pd.Timestamp(now)).sum())
        assert 0 < expected < 900
        observation = Observer(rules).observe(target, now)
        assert observation.labels is not None
        assert f"{expected:,} of 900 predictions" in observation.labels.reason
        [accuracy] = [r for r in measure(target, observation) if r.check == "accuracy"]
        statuses.append(accuracy.status)
        if expected < 200:
            assert accuracy.status is DataStatus.INSUFFICIENT and not accuracy.breaching
            assert f"{expected} labelled rows, need 200" in accuracy.reason
        else:
            assert accuracy.status is DataStatus.OK and accuracy.breaching
            assert f"(n={expected} labelled rows)" in accuracy.reason
    assert statuses == [DataStatus.INSUFFICIENT, DataStatus.OK]


def test_time_and_key_join_finds_the_same_labels(world: tuple[Path, pd.DataFrame]) -> None:
    """Labels stamped with the event time (not the filing time) and the customer, joined to the
    nearest prediction of that customer within a second: the same accuracy as by request id."""
    root, rows = world
    keyed = root / "keyed"
    keyed.mkdir(exist_ok=True)
    (keyed / "live").symlink_to(root / "live")
    (keyed / "training.parquet").symlink_to(root / "training.parquet")
    (keyed / "outcomes").mkdir()
    rows[["timestamp", "customer", "is_fraud"]].to_parquet(keyed / "outcomes" / "a.parquet")
    rules = config(keyed, join="{on_time: timestamp, key: customer, tolerance: 500ms}")
    now = T0 + timedelta(hours=2, minutes=20)
    observation = Observer(rules).observe(rules.targets[0], now)
    assert observation.labels is not None and "900 of 900" in observation.labels.reason
    [accuracy] = [r for r in measure(rules.targets[0], observation) if r.check == "accuracy"]
    start = now - timedelta(minutes=55)
    assert accuracy.value == pytest.approx(realised(rows, start, start + timedelta(minutes=15)))


def test_cbpe_estimates_the_current_window_before_its_labels_arrive(
    world: tuple[Path, pd.DataFrame],
) -> None:
    """At 09:00 the window [08:45, 09:00) has few labels; CBPE, calibrated on the reference,
    estimates its accuracy, and the labels filed later confirm it."""
    root, rows = world
    rules = config(root)
    target = rules.targets[0]
    now = T0 + timedelta(hours=1)
    observation = Observer(rules).observe(target, now)
    [estimate] = [r for r in measure(target, observation) if r.check == "est-accuracy"]
    assert estimate.status is DataStatus.OK, estimate.reason
    truth = realised(rows, now - timedelta(minutes=15), now)
    assert estimate.value == pytest.approx(truth, abs=0.03)
    assert "(cbpe estimate)" in estimate.reason and "n=900 rows" in estimate.reason
    # The estimate is what perf.cbpe gives on the window with the reference's calibration.
    reference = pd.read_parquet(root / "training.parquet")
    calibration = perf.isotonic_fit(reference["score"], reference["is_fraud"])
    window = rows[(rows["timestamp"] >= now - timedelta(minutes=15)) & (rows["timestamp"] < now)]
    direct = perf.cbpe("accuracy", calibration(window["score"]), window["score"] >= 0.5)
    assert estimate.value == pytest.approx(direct.value)


def test_the_state_machine_fires_on_accuracy_after_for(world: tuple[Path, pd.DataFrame]) -> None:
    root, _ = world
    rules = config(root)
    target, observer = rules.targets[0], Observer(rules)
    state, states = None, []
    for minute in range(0, 6):  # every minute from 10:20: windows wholly after 09:30
        now = T0 + timedelta(hours=2, minutes=20 + minute)
        evaluation = evaluate(target, observer.observe(target, now), state, now)
        state = evaluation.state
        states.append(state.checks["accuracy"].state.name)
    assert states[:2] == ["PENDING", "PENDING"]
    assert states[2:] == ["FIRING"] * 4
    page = render_report(ReportPage(target, now, evaluation, None))
    [result] = [r for r in evaluation.results if r.check == "accuracy"]
    assert result.interval is not None
    low, high = (f"{v:.4f}" for v in result.interval)
    assert "performance (accuracy)" in page and f"{result.value:.4f} [{low}, {high}]" in page


def test_a_bundle_replays_performance_checks_as_recorded(
    world: tuple[Path, pd.DataFrame], tmp_path: Path
) -> None:
    """The joined rows and the reference's labels go into the incident bundle, so replaying it
    gives the same results (labelled and CBPE) and the same decision, and a what-if on the
    limit changes them."""
    root, _ = world
    rules = config(root)
    target, observer = rules.targets[0], Observer(rules)
    now = T0 + timedelta(hours=2, minutes=20)
    observation = observer.observe(target, now)
    evaluation = evaluate(target, observation, None, now)
    assert any(r.breaching for r in evaluation.results)
    recorded = Recorded(
        target=target,
        config=rules,
        at=now,
        observation=observation,
        state_before=None,
        evaluation=evaluation,
        outcomes=(),
        state_after=evaluation.state,
        reference_frame=observer.reference_frame(target),
    )
    log = structlog.wrap_logger(structlog.PrintLogger(io.StringIO()))
    path = BundleWriter(Bundles(), str(tmp_path / "bundles"), log).write(recorded, "pending")
    bundle = load_bundle(path)
    again = bundle.replay()
    assert again.same_as_recorded, again.differences()
    replayed = {r.check: r for r in again.evaluation.results}
    assert replayed["accuracy"].breaching and replayed["est-accuracy"].status is DataStatus.OK
    looser = bundle.what_if(checks={"accuracy": {"below": 0.4}})
    assert not looser.evaluation.results[0].breaching


def test_labels_from_a_sql_table_join_the_files_predictions(
    world: tuple[Path, pd.DataFrame], postgres: PostgresServer
) -> None:
    """Labels in PostgreSQL (a boolean is_fraud, filed_at as the window column): the files'
    predictions join them by request id, and true counts as the positive class 1."""
    root, rows = world
    engine = sa.create_engine(postgres.url)
    labels = pd.concat(pd.read_csv(p) for p in sorted((root / "outcomes").glob("*.csv")))
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS outcomes")
        conn.exec_driver_sql(
            "CREATE TABLE outcomes (filed_at timestamptz, request_id text, is_fraud boolean)"
        )
    pd.DataFrame({
        "filed_at": pd.to_datetime(labels["timestamp"], utc=True),
        "request_id": labels["request_id"],
        "is_fraud": labels["is_fraud"].astype(bool),
    }).to_sql("outcomes", engine, if_exists="append", index=False)  # fmt: skip
    engine.dispose()
    text = RULES.format(root=root, join="{on: request_id}", delay="40m").replace(
        f'  outcomes: {{type: files, url: "{root}/outcomes"}}',
        '  outcomes: {type: sql, url: "${PG_URL}", table: outcomes, timestamp_column: filed_at}',
    )
    rules = parse_config(text, env={"PG_URL": postgres.url})
    now = T0 + timedelta(hours=2, minutes=20)
    observation = Observer(rules).observe(rules.targets[0], now)
    assert observation.labels is not None
    assert "900 of 900 predictions" in observation.labels.reason, observation.labels.reason
    [accuracy] = [r for r in measure(rules.targets[0], observation) if r.check == "accuracy"]
    start = now - timedelta(minutes=55)
    assert accuracy.value == pytest.approx(realised(rows, start, start + timedelta(minutes=15)))
    assert accuracy.breaching


def test_check_sources_names_a_label_column_missing_from_the_labels_and_the_reference(
    world: tuple[Path, pd.DataFrame],
) -> None:
    """`mlwatchdog check --sources` (the probe) reads the labels as an evaluation does: a label
    column that is not in the labels source, nor in the reference (CBPE), is a problem named."""
    root, _ = world
    text = RULES.format(root=root, join="{on: request_id}", delay="40m")
    now = T0 + timedelta(hours=2)
    [fine] = probe(parse_config(text, env={}), now)
    assert fine.labels is not None and fine.labels.status is DataStatus.OK
    assert fine.labels.rows == 900 and fine.problems == []
    [found] = probe(parse_config(text.replace("column: is_fraud", "column: chargeback")), now)
    problems = "\n".join(found.problems)
    assert "labels (error)" in problems and "chargeback" in problems
    assert "reference labels (error)" in problems
    assert "CBPE calibrates on its label column 'chargeback'" in problems


def test_the_daemon_shows_value_and_interval_in_api_and_metrics(
    world: tuple[Path, pd.DataFrame], tmp_path: Path
) -> None:
    """One evaluation by the daemon's runner: /api/v1/targets gives each performance check's
    value and interval, /metrics exports the value."""
    root, _ = world
    daemon_keys = (
        f"daemon: {{state_dir: {tmp_path / 'state'}, audit_log: {tmp_path / 'audit.jsonl'}, "
        "kubernetes: {mode: offline}}\n"
    )
    text = RULES.format(root=root, join="{on: request_id}", delay="40m")
    rules = parse_config(daemon_keys + text, env={})
    log = structlog.wrap_logger(structlog.PrintLogger(io.StringIO()))
    now = T0 + timedelta(hours=2, minutes=20)
    daemon = Daemon(rules, log, clock=lambda: now)
    assert daemon.runners["fraud"].run_once() is not None
    app = create_app(daemon)  # served without its lifespan: the scheduler is not started

    async def get(path: str) -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.get(path)

    [view] = asyncio.run(get("/api/v1/targets")).json()
    checks = {c["name"]: c for c in view["checks"]}
    accuracy = checks["accuracy"]
    assert accuracy["kind"] == "performance" and accuracy["state"] == "pending"
    low, high = accuracy["interval"]
    assert low < accuracy["value"] < high < 0.85
    assert checks["est-accuracy"]["interval"] is not None
    metrics = asyncio.run(get("/metrics")).text
    [line] = [
        m for m in metrics.splitlines()
        if m.startswith("mlwatchdog_check_value{") and 'check="accuracy"' in m
    ]  # fmt: skip
    assert float(line.rsplit(" ", 1)[1]) == pytest.approx(accuracy["value"])


def test_a_labels_table_without_timestamps_is_read_whole(
    world: tuple[Path, pd.DataFrame], tmp_path: Path
) -> None:
    """A fixed file of outcomes (`timestamp_column: null`) is joined whole, by request id."""
    root, rows = world
    rows[["request_id", "is_fraud"]].to_parquet(tmp_path / "outcomes.parquet")
    text = RULES.format(root=root, join="{on: request_id}", delay="40m").replace(
        f'  outcomes: {{type: files, url: "{root}/outcomes"}}',
        f'  outcomes: {{type: files, url: "{tmp_path}/outcomes.parquet", timestamp_column: null}}',
    )
    rules = parse_config(text, env={})
    now = T0 + timedelta(hours=2, minutes=20)
    observation = Observer(rules).observe(rules.targets[0], now)
    assert observation.labels is not None
    assert "900 of 900 predictions" in observation.labels.reason, observation.labels.reason
    [accuracy] = [r for r in measure(rules.targets[0], observation) if r.check == "accuracy"]
    start = now - timedelta(minutes=55)
    assert accuracy.value == pytest.approx(realised(rows, start, start + timedelta(minutes=15)))
