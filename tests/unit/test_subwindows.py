"""Recent sub-windows (on by default): a step change breaches within a bounded number of rows
however long the window, which the whole-window test alone misses; on stationary data the
check's false-alarm rate per evaluation stays at about alpha (Bonferroni across sub-windows)."""

from __future__ import annotations

import asyncio
import io
import itertools
import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import structlog
import yaml

from mlwatchdog.core import CheckResult, DataStatus, Observation
from mlwatchdog.core.measure import measure, subwindow_rows
from mlwatchdog.daemon.app import create_app
from mlwatchdog.daemon.service import Daemon
from mlwatchdog.detectors import Reference
from mlwatchdog.rules import DriftCheck, Target, parse_config

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
WEEK = timedelta(days=7)
ALPHA = 0.05


def rules(root: Path, **check: Any) -> dict[str, Any]:
    return {
        "version": 1,
        "daemon": {
            "kubernetes": {"mode": "offline"},
            "state_dir": str(root / "state"),
            "audit_log": str(root / "audit.jsonl"),
        },
        "sources": {"live": {"type": "files", "url": str(root / "live")}},
        "targets": [{
            "name": "model",
            "samples": {"source": "live", "window": "7d", "min_samples": 100},
            "reference": {"source": "live"},
            "columns": {"features": {"x": "numeric"}},
            "checks": [{"name": "drift", "type": "drift", "test": "ks", "threshold": ALPHA,
                        **check}],
        }],
    }  # fmt: skip


def make_target(features: Sequence[str] = ("x",), **check: Any) -> Target:
    spec = rules(Path("/nonexistent"), **check)
    spec["targets"][0]["columns"]["features"] = dict.fromkeys(features, "numeric")
    return parse_config(yaml.safe_dump(spec), "rules.yaml").targets[0]


@pytest.fixture(scope="module")
def reference() -> Reference:
    return Reference(pd.DataFrame({"x": np.random.default_rng(1).normal(size=20_000)}))


def window(rng: np.random.Generator, n: int, changed: int = 0, shift: float = 1.0) -> pd.DataFrame:
    """`n` rows over a week, oldest first; the newest `changed` rows shifted by `shift` sd."""
    x = rng.normal(size=n)
    x[n - changed :] += shift
    stamps = pd.date_range(end=NOW - timedelta(seconds=1), periods=n, freq=WEEK / n, tz="UTC")
    return pd.DataFrame({"timestamp": stamps, "x": x})


def judge(target: Target, reference: Reference, frame: pd.DataFrame) -> CheckResult:
    ok = DataStatus.OK
    seen = Observation("model", NOW, frame, ok, "", reference, ok, time_column="timestamp")
    return measure(target, seen)[0]


def first_breach(target: Target, reference: Reference, n: int, seed: int) -> int | None:
    """The fewest changed rows (in steps of 25) at which the check breaches."""
    for changed in range(25, 1001, 25):
        frame = window(np.random.default_rng(seed), n, changed)
        if judge(target, reference, frame).breaching:
            return changed
    return None


BOUND = 200  # post-change rows: the smallest sub-window, max(min_samples, 200)


@pytest.mark.parametrize("n", [120_000, 480_000])  # a week at ~0.2/s, and a window 4x longer
def test_a_step_change_breaches_within_a_bound_that_does_not_grow_with_the_window(
    reference: Reference, n: int
) -> None:
    default = make_target()
    changed = first_breach(default, reference, n, seed=n)
    assert changed is not None and changed <= BOUND, changed
    frame = window(np.random.default_rng(n), n, BOUND)
    whole_only = make_target(recent_rows=0)
    assert not judge(whole_only, reference, frame).breaching  # diluted in the week: missed
    caught = judge(default, reference, frame)
    assert caught.breaching and caught.status is DataStatus.OK
    # The reason says which rows breached, and when they were taken.
    first = frame["timestamp"].iloc[-200]
    assert f"in the most recent 200 of {n} rows, {first:%Y-%m-%d %H:%M:%S}" in caught.reason
    check = default.checks[0]
    assert isinstance(check, DriftCheck)
    assert f"alpha 0.05/{len(subwindow_rows(check, 100, n))}" in caught.reason


def test_on_stationary_data_the_false_alarm_rate_stays_at_about_alpha(
    reference: Reference,
) -> None:
    target = make_target()
    check = target.checks[0]
    assert isinstance(check, DriftCheck)
    n, evaluations = 4_000, 400
    assert subwindow_rows(check, 100, n) == [200, 400, 800, 1600, 4000]
    rng = np.random.default_rng(20261205)
    alarms = sum(judge(target, reference, window(rng, n)).breaching for _ in range(evaluations))
    rate = alarms / evaluations
    tolerance = 3 * math.sqrt(ALPHA * (1 - ALPHA) / evaluations)
    # Five tests at alpha each would alarm at up to 5x alpha; corrected, at most alpha.
    assert rate <= ALPHA + tolerance, rate
    assert rate > 0  # it still alarms at all: the correction is not switched off by accident


def test_a_sub_window_that_cannot_breach_is_passed_over_with_the_same_results(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Sub-windows are tested only when they could breach (for KS: most exact p-values are
    never computed); every result, breaching or not, is what testing each of them gives, over
    corrections, drift shares, effect floors and changes in some columns' newest rows."""
    features = [f"x{i}" for i in range(8)]
    rng = np.random.default_rng(16)
    reference = Reference(pd.DataFrame(rng.normal(size=(3_000, 8)), columns=features))
    targets = [
        make_target(features, correction=correction, drift_share=share, **floor)
        for correction in ("none", "bh", "bonferroni")
        for share in (0.25, 0.5)
        for floor in ({}, {"effect": {"measure": "wasserstein", "min": 0.2}})
    ]
    frames = []
    for changed, shifted, shift in itertools.product((0, 150, 300), (1, 2, 4), (0.3, 0.6)):
        frame = window(rng, 1_200).drop(columns="x")
        values = rng.normal(size=(1_200, 8))
        values[1_200 - changed :, :shifted] += shift
        frames.append(frame.assign(**dict(zip(features, values.T, strict=True))))
    could_drift = Reference.could_drift
    answers: list[bool] = []

    def spy(self: Reference, *args: Any, **kwargs: Any) -> bool:
        answers.append(could_drift(self, *args, **kwargs))
        return answers[-1]

    monkeypatch.setattr(Reference, "could_drift", spy)
    screened = [judge(t, reference, f) for t in targets for f in frames]
    monkeypatch.setattr(Reference, "could_drift", lambda *args, **kwargs: True)
    assert screened == [judge(t, reference, f) for t in targets for f in frames]
    assert True in answers and False in answers
    assert any(r.breaching and "most recent" in r.reason for r in screened)
    assert any(not r.breaching for r in screened)


def test_psi_and_small_windows_test_the_whole_window_only() -> None:
    psi = make_target(test="psi", threshold=0.1).checks[0]
    ks = make_target().checks[0]
    ks_set = make_target(recent_rows=500).checks[0]
    assert isinstance(psi, DriftCheck) and isinstance(ks, DriftCheck)
    assert isinstance(ks_set, DriftCheck)
    assert subwindow_rows(psi, 100, 100_000) == [100_000]  # PSI has no p-value to correct
    assert subwindow_rows(ks, 100, 399) == [399]  # no sub-window of at most half the window
    assert subwindow_rows(ks, 300, 1200) == [300, 600, 1200]  # m follows min_samples
    assert subwindow_rows(ks_set, 100, 2000) == [500, 1000, 2000]


def test_the_reason_shows_effects_and_the_columns_the_floor_held_back(
    reference: Reference,
) -> None:
    # The whole window only: on a few hundred rows an effect carries sampling noise of several
    # hundredths of an sd, so a sub-window can clear the floor by chance (see DESIGN.md).
    target = make_target(effect={"measure": "wasserstein", "min": 0.1}, recent_rows=0)
    rng = np.random.default_rng(5)
    small = judge(target, reference, window(rng, 100_000, changed=100_000, shift=0.05))
    assert not small.breaching
    assert "0 of 1 column(s) drifted by ks; below the effect floor: x (wasserstein 0.0" in (
        small.reason
    )
    assert small.columns[0].effect is not None and small.columns[0].effect < 0.1
    large = judge(target, reference, window(rng, 100_000, changed=100_000, shift=0.5))
    assert large.breaching
    assert large.reason.startswith("1 of 1 column(s) drifted by ks: x (wasserstein 0.")
    assert ">= 0.1)" in large.reason


def test_the_daemon_orders_rows_by_time_and_its_api_shows_effects(tmp_path: Path) -> None:
    """From files to the API: rows shuffled in the file are taken in time order, so the newest
    rows form the sub-window (named with its time span), and the column view shows the effect."""
    rng = np.random.default_rng(11)
    (tmp_path / "live").mkdir()
    pd.DataFrame({"x": rng.normal(size=20_000)}).to_parquet(tmp_path / "ref.parquet")
    frame = window(rng, 20_000, changed=400)
    frame.sample(frac=1.0, random_state=3).to_parquet(tmp_path / "live" / "batch.parquet")
    config = rules(tmp_path, effect={"measure": "wasserstein", "min": 0.1})
    config["sources"]["training"] = {
        "type": "files", "url": str(tmp_path / "ref.parquet"), "timestamp_column": None
    }  # fmt: skip
    config["targets"][0]["reference"] = {"source": "training"}
    log = structlog.wrap_logger(structlog.PrintLogger(io.StringIO()))
    daemon = Daemon(parse_config(yaml.safe_dump(config)), log, clock=lambda: NOW)
    assert daemon.runners["model"].run_once() is not None

    async def detail() -> httpx.Response:
        transport = httpx.ASGITransport(app=create_app(daemon))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.get("/api/v1/targets/model")

    response = asyncio.run(detail())
    assert response.status_code == 200, response.text
    (column,) = response.json()["columns"]
    assert column["effect_measure"] == "wasserstein" and column["min_effect"] == 0.1
    assert column["drifted"] is True and column["effect"] >= 0.1
    assert column["n_current"] in (200, 400)  # a recent sub-window's rows, not the window's
    reason = daemon.runners["model"].last.results[0].reason  # type: ignore[union-attr]
    newest = frame["timestamp"].iloc[-1]
    assert "of 20000 rows, " in reason and f"to {newest:%Y-%m-%d %H:%M:%S}" in reason
