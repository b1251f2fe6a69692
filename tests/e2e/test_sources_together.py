"""The daemon on real sources together: samples from PostgreSQL and from its own KServe sink,
metrics from a real Prometheus scraping an exporter the test controls.

Two targets share a reference table in PostgreSQL. `sql-model` reads its live window from a
PostgreSQL table; `sink-model` from what KServe-shaped CloudEvents posted to `/sink/kserve` stored.
Both act on `feature_drift and error_rate`. Drift plus an error-rate breach gives exactly one
dry-run rollback per target; with Prometheus down the error-rate check has no data, and the same
drift gives none.
"""

# ruff: noqa: F811  (pytest fixtures imported from tests/servers are used as arguments)

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import sqlalchemy as sa
from prometheus_client import Gauge

from mlwatchdog.demo import customers
from tests.servers.ports import free_port
from tests.servers.postgres import PostgresServer, postgres  # noqa: F401
from tests.servers.prometheus import PrometheusServer, exporter, running_prometheus

COMMAND = str(Path(sys.executable).parent / "mlwatchdog")
FEATURES = ("age", "income", "credit_score", "tenure_months", "n_products")
TARGETS = ("sql-model", "sink-model")
ROWS_PER_TICK = 40  # per source, every TICK seconds
TICK = 0.5
SINK_TOKEN = "e2e-sink-token-0123456789"  # daemon.auth.tokens, role sink


def write_config(tmp_path: Path, port: int, db_url: str, prometheus_url: str) -> Path:
    features = "\n".join(f"        {name}: numeric" for name in FEATURES)
    target_body = f"""
    interval: 2s
    reference: {{source: reference}}
    columns:
      features:
{features}
      predictions: {{score: numeric}}
    checks:
      - {{name: feature_drift, type: drift, test: ks, columns: features, threshold: 0.01,
         correction: bh, drift_share: 0.3}}
      - {{name: error_rate, type: metric, source: prometheus, above: 0.02,
         query: 'max(model_error_ratio{{model="$target"}})'}}
    trigger: feature_drift and error_rate
    for: 6s
    resolve_after: 10s
    cooldown: 10m
    rollback: {{to: prior, dry_run: true}}
    verify: {{window: 20s}}"""
    text = f"""
daemon:
  http: {{host: 127.0.0.1, port: {port}}}
  state_dir: {tmp_path / "state"}
  jitter: 0s
  sink: {{path: {tmp_path / "sink"}, pair_timeout: 5s}}
  auth:
    tokens: [{{name: kserve-logger, token: "{SINK_TOKEN}", roles: [sink]}}]
sources:
  reference: {{type: sql, url: "{db_url}", table: reference_rows, timestamp_column: null}}
  live_db: {{type: sql, url: "{db_url}", table: live_rows, timestamp_column: logged_at,
             timeout: 5s}}
  sink: {{type: kserve, inference_service: credit, namespace: models}}
  prometheus: {{type: prometheus, url: "{prometheus_url}", timeout: 2s}}
targets:
  - name: sql-model
    workload: {{kind: argo-rollout, name: credit, namespace: models}}
    samples: {{source: live_db, window: 10s, min_samples: 100}}{target_body}
  - name: sink-model
    workload: {{kind: kserve, name: credit, namespace: models}}
    samples: {{source: sink, window: 10s, min_samples: 100}}{target_body}
"""
    path = tmp_path / "rules.yaml"
    path.write_text(text, encoding="utf-8")
    return path


class Feeder(threading.Thread):
    """Every TICK: rows into PostgreSQL's live table and KServe events into the daemon's sink."""

    def __init__(self, engine: sa.Engine, sink_url: str) -> None:
        super().__init__(daemon=True)
        self.engine, self.sink_url = engine, sink_url
        self.drifted = False
        self.failures: list[str] = []
        self._stop_event = threading.Event()
        self.rng = np.random.default_rng(5)

    def run(self) -> None:
        with httpx.Client(timeout=5) as client:
            while not self._stop_event.wait(TICK):
                try:
                    self._tick(client)
                except Exception as exc:  # reported by the test, not lost in a thread
                    self.failures.append(repr(exc))

    def _tick(self, client: httpx.Client) -> None:
        now = datetime.now(UTC)
        frame = customers(self.rng, ROWS_PER_TICK, self.drifted).fillna(0.0)
        rows = frame[list(FEATURES)]
        with self.engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO live_rows (logged_at, age, income, credit_score, tenure_months,"
                    " n_products) VALUES (:t, :age, :income, :credit_score, :tenure_months,"
                    " :n_products)"
                ),
                [
                    {"t": now, **{k: float(v) for k, v in r.items()}}
                    for r in rows.to_dict("records")
                ],
            )
        event_id = str(uuid.uuid4())
        instances = [{k: float(v) for k, v in r.items()} for r in rows.to_dict("records")]
        for kind, body in (
            ("request", {"instances": instances}),
            ("response", {"predictions": frame["score"].tolist()}),
        ):
            answer = client.post(
                self.sink_url,
                content=json.dumps(body),
                headers={
                    "ce-specversion": "1.0",
                    "ce-id": event_id,
                    "ce-type": f"org.kubeflow.serving.inference.{kind}",
                    "ce-source": "http://localhost:9081/",
                    "ce-time": now.isoformat(),
                    "ce-inferenceservicename": "credit",
                    "ce-namespace": "models",
                    "ce-component": "predictor",
                    "ce-endpoint": "default",
                    "content-type": "application/json",
                    "authorization": f"Bearer {SINK_TOKEN}",
                },
            )
            if answer.status_code != 200:
                self.failures.append(f"sink answered {answer.status_code}: {answer.text}")

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=10)


class Daemon:
    """`mlwatchdog run` as a real process, its output in a file, its /metrics read over HTTP."""

    def __init__(self, config: Path, port: int, log: Path) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [COMMAND, "run", "--config", str(config)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )

    def metric(self, name: str, **labels: str) -> float | None:
        text = httpx.get(f"{self.url}/metrics", timeout=5).text
        for line in text.splitlines():
            if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
        return None

    def rollbacks(self, target: str) -> float:
        return self.metric("mlwatchdog_decisions_total", target=target, kind="rollback") or 0.0

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-6000:]


def wait_until(what: str, condition: Callable[[], Any], daemon: Daemon, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert daemon.process.poll() is None, f"daemon exited:\n{daemon.output()}"
        try:
            result = condition()
        except httpx.HTTPError:
            result = None
        if result:
            return result
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}\n{daemon.output()}")


@pytest.fixture
def world(
    tmp_path: Path, postgres: PostgresServer
) -> Iterator[tuple[Path, sa.Engine, Gauge, Callable[[], PrometheusServer], int]]:
    engine = sa.create_engine(postgres.url)
    reference = customers(np.random.default_rng(1), 5000, drifted=False)[[*FEATURES, "score"]]
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS reference_rows, live_rows"))
    reference.fillna(0.0).to_sql("reference_rows", engine, index=False)
    with engine.begin() as conn:
        columns = ", ".join(f"{name} double precision" for name in (*FEATURES, "score"))
        conn.execute(sa.text(f"CREATE TABLE live_rows (logged_at timestamptz, {columns})"))
    with exporter() as metrics, running_prometheus(scrape=[metrics.address]) as prometheus:
        errors = Gauge(
            "model_error_ratio", "errors / requests", ["model"], registry=metrics.registry
        )
        for target in TARGETS:
            errors.labels(target).set(0.001)
        port = free_port()
        config = write_config(tmp_path, port, postgres.url, prometheus.url)
        yield config, engine, errors, lambda: prometheus, port
    engine.dispose()


def run_scenario(
    tmp_path: Path,
    world: tuple[Path, sa.Engine, Gauge, Callable[[], PrometheusServer], int],
    prometheus_down: bool,
) -> Daemon:
    config, engine, errors, prometheus, port = world
    daemon = Daemon(config, port, tmp_path / "daemon.log")
    feeder = Feeder(engine, f"{daemon.url}/sink/kserve")
    try:
        wait_until("/healthz", lambda: httpx.get(f"{daemon.url}/healthz").is_success, daemon, 30)
        feeder.start()
        # Calm: every target evaluated with data on both checks, nothing breaching.
        for target in TARGETS:
            for check in ("feature_drift", "error_rate"):
                wait_until(
                    f"{target}/{check} evaluated with data",
                    lambda t=target, c=check: (
                        daemon.metric("mlwatchdog_check_value", target=t, check=c) is not None
                    ),
                    daemon,
                    60,
                )
        assert all(daemon.rollbacks(t) == 0 for t in TARGETS)
        if prometheus_down:
            prometheus().stop()
        feeder.drifted = True
        for target in TARGETS:
            errors.labels(target).set(0.05)
        # The drift check fires on both targets (from PostgreSQL and from the sink).
        for target in TARGETS:
            wait_until(
                f"{target} feature_drift firing",
                lambda t=target: (
                    daemon.metric("mlwatchdog_check_state", target=t, check="feature_drift") == 2
                ),
                daemon,
                60,
            )
        if prometheus_down:
            time.sleep(12)  # for (6s) and several evaluations more: still no action
        else:
            for target in TARGETS:
                wait_until(f"{target} rollback", lambda t=target: daemon.rollbacks(t), daemon, 60)
            time.sleep(6)  # more evaluations: the incident does not act again
        assert not feeder.failures, feeder.failures[:3]
        return daemon
    finally:
        feeder.stop()
        daemon.stop()


def test_drift_and_error_rate_roll_back_once_per_target(
    tmp_path: Path, world: tuple[Path, sa.Engine, Gauge, Callable[[], PrometheusServer], int]
) -> None:
    daemon = run_scenario(tmp_path, world, prometheus_down=False)
    assert daemon.process.returncode == 0, daemon.output()
    log = [json.loads(line) for line in daemon.log.read_text().splitlines() if line.startswith("{")]
    decided = [e for e in log if e.get("event") == "decision: rollback"]
    assert sorted(e["target"] for e in decided) == sorted(TARGETS), daemon.output()
    for event in decided:
        assert event["dry_run"] is True
        assert any(r.startswith("error_rate: 0.05 is above 0.02") for r in event["reasons"])
        assert any(r.startswith("feature_drift:") for r in event["reasons"])
    # The planned requests match each workload's kind: an Argo abort, a KServe traffic patch.
    planned: dict[str, list[dict[str, Any]]] = {}
    for event in log:
        if event.get("event") == "dry-run rollback: would send":
            planned.setdefault(event["target"], []).append(event)
    assert planned["sql-model"][0]["path"].endswith("/rollouts/credit/status")
    assert planned["sql-model"][0]["body"] == {"status": {"abort": True}}
    kserve_patch = {"spec": {"predictor": {"canaryTrafficPercent": 0}}}
    assert [p["body"] for p in planned["sink-model"]] == [kserve_patch]


def test_prometheus_down_gives_no_rollback(
    tmp_path: Path, world: tuple[Path, sa.Engine, Gauge, Callable[[], PrometheusServer], int]
) -> None:
    daemon = run_scenario(tmp_path, world, prometheus_down=True)
    assert daemon.process.returncode == 0, daemon.output()
    log = [json.loads(line) for line in daemon.log.read_text().splitlines() if line.startswith("{")]
    assert not [e for e in log if e.get("event") == "decision: rollback"], daemon.output()
    # The error-rate check reported its missing data (an error naming Prometheus), not a breach:
    # a warning when it went missing, once, not on every evaluation after.
    for target in TARGETS:
        seen = [
            e for e in log
            if e.get("event") in ("check data missing", "check data back")
            and e.get("target") == target and e.get("check") == "error_rate"
        ]  # fmt: skip
        warning = seen[-1]
        assert warning["event"] == "check data missing", seen
        assert warning["level"] == "warning" and warning["status"] == "error", warning
        assert "cannot reach" in warning["reason"] or "within" in warning["reason"]
        assert [e["status"] for e in seen].count("error") == 1, seen
        changed = [e for e in log if e.get("event") == "check state changed"]
        assert not [e for e in changed if e["target"] == target and e["check"] == "error_rate"]
