"""A blind target: the pure record (`core.blind.blindness`) of how long a target's samples and
reference have been missing, and the daemon showing it: the gauges, the API's target view and
one log warning per change, on a target whose sample folder is empty."""

from __future__ import annotations

import asyncio
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import structlog
import structlog.testing
import yaml
from prometheus_client import generate_latest

from mlwatchdog.core import DataStatus, Observation
from mlwatchdog.core.blind import Blindness, Missing, blindness
from mlwatchdog.daemon.app import create_app
from mlwatchdog.daemon.service import Daemon
from mlwatchdog.rules import Target, parse_config

T0 = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)
WINDOW = timedelta(minutes=15)
STEP = timedelta(minutes=5)  # the evaluation interval of these tests


def rules(root: Path, *checks: dict[str, Any]) -> dict[str, Any]:
    return {
        "daemon": {
            "kubernetes": {"mode": "offline"},
            "state_dir": str(root / "state"),
            "audit_log": str(root / "audit.jsonl"),
        },
        "sources": {
            "live": {"type": "files", "url": str(root / "live")},
            "training": {
                "type": "files",
                "url": str(root / "ref.parquet"),
                "timestamp_column": None,
            },
            "prom": {"type": "prometheus", "url": "http://127.0.0.1:1"},
        },
        "targets": [
            {
                "name": "model",
                "samples": {"source": "live", "window": "15m", "min_samples": 30},
                "reference": {"source": "training"},
                "columns": {"features": {"x": "numeric"}},
                "checks": list(checks) or [{"name": "drift", "type": "drift", "test": "ks"}],
                "interval": "5m",
            }
        ],
    }


def target(*checks: dict[str, Any]) -> Target:
    return parse_config(yaml.safe_dump(rules(Path("/nonexistent"), *checks))).targets[0]


def seen(
    at: datetime,
    samples: DataStatus = DataStatus.OK,
    reference: DataStatus = DataStatus.OK,
    why: str = "",
) -> Observation:
    return Observation(
        "model", at, samples_status=samples, samples_reason=f"samples: {why}",
        reference_status=reference, reference_reason=f"reference: {why}",
    )  # fmt: skip


def run(model: Target, observations: list[Observation]) -> list[Blindness]:
    """The record after each observation, from none."""
    records, record = [], Blindness()
    for observation in observations:
        record = blindness(model, observation, record, observation.at)
        records.append(record)
    return records


# ------------------------------------------------------------------------ the pure record


def test_missing_samples_blind_the_target_only_after_longer_than_its_window() -> None:
    model = target()
    times = [T0 + i * STEP for i in range(6)]  # missing from T0 on: 0, 5, 10, 15, 20, 25 min
    records = run(model, [seen(t, DataStatus.NO_DATA, why=f"none at {t:%H:%M}") for t in times])
    assert [r.blind for r in records] == [False, False, False, False, True, True]
    assert all(r.samples == Missing(T0, DataStatus.NO_DATA, r.samples.reason) for r in records)
    assert records[3].since is None and records[3].reason == ""  # 15m: not longer than 15m
    assert records[4].since == T0 and records[5].since == T0  # since the first evaluation
    # The reason is the source's latest; the reference was there all along.
    assert records[5].reason == "samples (no_data): samples: none at 06:25"
    assert records[5].reference is None
    # One second past the window is enough (no need to wait for a step).
    late = blindness(model, seen(T0 + WINDOW + timedelta(seconds=1), DataStatus.ERROR),
                     records[3], T0 + WINDOW + timedelta(seconds=1))  # fmt: skip
    assert late.blind and late.since == T0 and late.samples is not None
    assert late.samples.status is DataStatus.ERROR


def test_a_missing_reference_blinds_too_and_says_so() -> None:
    model = target()
    times = [T0 + i * STEP for i in range(5)]
    records = run(
        model,
        [seen(t, reference=DataStatus.ERROR, why="cannot read source 'training'") for t in times],
    )
    assert [r.blind for r in records] == [False, False, False, False, True]
    last = records[-1]
    assert last.samples is None and last.reference is not None and last.since == T0
    assert last.reason == "reference (error): reference: cannot read source 'training'"


def test_both_missing_name_both_and_the_older_since() -> None:
    model = target()
    statuses = [(DataStatus.OK, DataStatus.STALE)] + [(DataStatus.NO_DATA, DataStatus.STALE)] * 4
    records = run(model, [seen(T0 + i * STEP, s, r) for i, (s, r) in enumerate(statuses)])
    assert [r.blind for r in records] == [False, False, False, False, True]
    last = records[-1]
    assert last.since == T0  # the reference's; the samples went missing 5 minutes later
    assert last.reason == "reference (stale): reference: "  # samples: 15m, not longer yet
    after = blindness(model, seen(T0 + 5 * STEP, DataStatus.NO_DATA, DataStatus.STALE, "x"),
                      last, T0 + 5 * STEP)  # fmt: skip
    assert after.reason == "samples (no_data): samples: x; reference (stale): reference: x"


def test_seeing_again_clears_the_record_and_a_new_gap_starts_from_scratch() -> None:
    model = target()
    missing = [seen(T0 + i * STEP, DataStatus.NO_DATA) for i in range(5)]
    back = seen(T0 + 5 * STEP)
    gap = [seen(T0 + (6 + i) * STEP, DataStatus.NO_DATA) for i in range(4)]
    records = run(model, [*missing, back, *gap])
    assert records[4].blind
    assert records[5] == Blindness()  # one window with data: sees again, nothing left over
    assert [r.blind for r in records[6:]] == [False, False, False, False]
    assert records[-1].samples is not None and records[-1].samples.since == T0 + 6 * STEP


def test_insufficient_rows_do_not_blind_nor_do_metric_checks_without_data() -> None:
    # Too few rows: the source answered; the checks say 'insufficient' in their own status.
    model = target()
    insufficient = [seen(T0 + i * STEP, DataStatus.INSUFFICIENT) for i in range(8)]
    assert not any(r.blind or r.samples for r in run(model, insufficient))
    # A target of metric checks only does not need its samples or reference: never blind.
    metric = {"name": "errors", "type": "metric", "source": "prom", "query": "up", "above": 1}
    alert_only = target(metric)
    missing = [seen(T0 + i * STEP, DataStatus.ERROR, DataStatus.ERROR) for i in range(8)]
    assert run(alert_only, missing)[-1] == Blindness()


def test_the_window_is_the_targets_own() -> None:
    model = target()
    longer = model.model_copy(
        update={"samples": model.samples.model_copy(update={"window": timedelta(hours=1)})}
    )
    observations = [seen(T0 + i * STEP, DataStatus.NO_DATA) for i in range(14)]
    assert [r.blind for r in run(longer, observations)] == [False] * 13 + [True]  # at 65m


# ------------------------------------------------------------------------------ the daemon


def live_rows(at: datetime, n: int = 200) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    return pd.DataFrame(
        {"timestamp": [at - timedelta(seconds=3 * (i + 1)) for i in range(n)],
         "x": rng.normal(0, 1, n)}
    )  # fmt: skip


def blind_series(daemon: Daemon) -> dict[str, float]:
    lines = generate_latest(daemon.metrics.registry).decode().splitlines()
    return {
        line.split("{")[0]: float(line.rsplit(" ", 1)[1])
        for line in lines
        if line.startswith("mlwatchdog_target_blind") and 'target="model"' in line
    }


def test_an_empty_sample_folder_makes_the_target_blind_in_metrics_api_and_log(
    tmp_path: Path,
) -> None:
    (tmp_path / "live").mkdir()
    pd.DataFrame({"x": np.random.default_rng(1).normal(0, 1, 500)}).to_parquet(
        tmp_path / "ref.parquet", index=False
    )
    capture = structlog.testing.LogCapture()
    log = structlog.wrap_logger(
        structlog.PrintLogger(io.StringIO()),
        processors=[capture],
        wrapper_class=structlog.BoundLogger,  # not a level filter another test configured
    )
    now = [T0]
    daemon = Daemon(parse_config(yaml.safe_dump(rules(tmp_path))), log, clock=lambda: now[0])
    runner = daemon.runners["model"]
    app = create_app(daemon)  # served without its lifespan: the scheduler is not started

    def get(path: str) -> Any:
        async def request() -> httpx.Response:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                return await client.get(path)

        response = asyncio.run(request())
        assert response.status_code == 200, response.text
        return response.json()

    def view() -> dict[str, Any]:
        (found,) = get("/api/v1/targets")
        return found  # type: ignore[no-any-return]

    def warnings() -> list[dict[str, Any]]:
        return [e for e in capture.entries if e["event"] in ("target blind", "target sees again")]

    assert view()["blind"] is False and view()["blind_since"] is None  # not evaluated yet
    for _ in range(4):  # T0 .. T0+15m: missing, not for longer than the window
        assert runner.run_once() is not None
        assert blind_series(daemon) == {
            "mlwatchdog_target_blind": 0.0, "mlwatchdog_target_blind_since_seconds": 0.0
        }  # fmt: skip
        assert view()["blind"] is False and view()["blind_reason"] == ""
        now[0] += STEP
    assert warnings() == []

    for _ in range(2):  # T0+20m, T0+25m: blind, one warning
        assert runner.run_once() is not None
        assert blind_series(daemon) == {
            "mlwatchdog_target_blind": 1.0,
            "mlwatchdog_target_blind_since_seconds": T0.timestamp(),
        }
        now[0] += STEP
    (warning,) = warnings()
    assert warning["log_level"] == "warning" and warning["event"] == "target blind"
    assert warning["since"] == T0.isoformat() and warning["missing"] == ["samples"]
    assert warning["target"] == "model" and warning["window_seconds"] == 900
    assert f"no files under {tmp_path / 'live'}" in warning["reason"]
    found = view()
    assert found["blind"] is True
    assert datetime.fromisoformat(found["blind_since"]) == T0
    assert found["blind_reason"].startswith(f"samples (no_data): no files under {tmp_path}")
    assert found["blind_reason"].endswith("06:25:00)")  # the latest evaluation's reason
    assert found["phase"] == "healthy"  # blind is shown beside the phase, it does not change it
    assert get("/api/v1/targets/model")["blind"] is True

    # Samples arrive: it sees again, once.
    live_rows(now[0]).to_parquet(tmp_path / "live" / "batch.parquet", index=False)
    assert runner.run_once() is not None
    assert blind_series(daemon)["mlwatchdog_target_blind"] == 0.0
    assert blind_series(daemon)["mlwatchdog_target_blind_since_seconds"] == 0.0
    assert [w["event"] for w in warnings()] == ["target blind", "target sees again"]
    assert warnings()[1]["blind_since"] == T0.isoformat()
    assert view()["blind"] is False and view()["blind_since"] is None

    # A removed target's blind gauges go with its other gauges.
    daemon.metrics.forget("model")
    assert blind_series(daemon) == {}
