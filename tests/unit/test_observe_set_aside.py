"""What a read sets aside, seen from the Observer and the daemon: values that are not what their
column declares become missing and are counted (window and reference), the drift tests still
run on the rest, every item reaches `on_set_aside`, and the daemon exports them as
`mlwatchdog_source_set_aside_total` while a target with a corrupt file in its window is tested."""

from __future__ import annotations

import gc
import io
import json
import weakref
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import structlog
from prometheus_client import generate_latest

from mlwatchdog.core import DataStatus, evaluate
from mlwatchdog.daemon.service import Daemon
from mlwatchdog.detectors import Reference
from mlwatchdog.rules import Config, parse_config
from mlwatchdog.sources.base import SetAside
from mlwatchdog.sources.observe import Observer, as_declared

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)

RULES = """\
daemon:
  kubernetes: {{mode: offline}}
  state_dir: "{root}/state"
  audit_log: "{root}/audit.jsonl"
sources:
  live: {{type: files, url: "{root}/live"}}
  training: {{type: files, url: "{root}/{reference}", timestamp_column: null}}
targets:
  - name: model
    samples: {{source: live, window: 15m, min_samples: 30}}
    reference: {{source: training}}
    columns:
      features: {{x: numeric, y: numeric, color: categorical}}
    checks:
      - {{name: drift, type: drift, test: ks, threshold: {alpha}}}
    verify: {{window: 30m}}
"""


def rules(root: Path, reference: str = "reference.parquet", alpha: float = 0.05) -> str:
    return RULES.format(root=root, reference=reference, alpha=alpha)


def live_rows(seed: int, n: int = 200) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    stamps = [NOW - timedelta(seconds=4 * (i + 1)) for i in range(n)]
    return pd.DataFrame(
        {
            "timestamp": [s.replace(tzinfo=None) for s in stamps],
            "x": rng.normal(0.3, 1.0, n),
            "y": rng.integers(0, 50, n),
            "color": rng.choice(["red", "green", "blue"], n),
        }
    )


def reference_rows(n: int = 500) -> pd.DataFrame:
    return live_rows(1, n).drop(columns="timestamp")


def write_csv(frame: pd.DataFrame, path: Path, x_text: dict[int, str] | None = None) -> None:
    """`frame` as csv; `x_text` replaces some rows' x with raw text ("abc")."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = frame.astype({"x": object})
    for row, value in (x_text or {}).items():
        text.loc[row, "x"] = value
    path.write_text(text.to_csv(index=False))


def observer_for(root: Path, **kwargs: Any) -> tuple[Config, Observer, list[tuple[str, SetAside]]]:
    config = parse_config(rules(root, **kwargs), env={})
    calls: list[tuple[str, SetAside]] = []
    observer = Observer(config, on_set_aside=lambda source, item: calls.append((source, item)))
    return config, observer, calls


# ------------------------------------------------------------------------------ values


def test_a_string_in_a_numeric_column_is_set_aside_and_the_rest_tested(tmp_path: Path) -> None:
    rows = live_rows(7)
    reference_rows().to_parquet(tmp_path / "reference.parquet", index=False)
    write_csv(rows, tmp_path / "live" / "batch.csv", x_text={17: "abc"})
    config, observer, calls = observer_for(tmp_path, alpha=0.5)
    target = config.targets[0]
    seen = observer.observe(target, NOW)
    assert seen.samples_status is DataStatus.OK, seen.samples_reason
    assert seen.samples_reason == "200 rows; 1 value set aside (not_numeric: x)"
    assert seen.samples["x"].dtype == np.float64 and seen.samples["x"].isna().sum() == 1
    # Every other value kept as it was (the window comes ordered by time, so compare sorted).
    kept = sorted(seen.samples["x"].dropna().tolist())
    assert kept == sorted(rows["x"].drop(index=17).tolist())
    assert calls == [("live", SetAside("value", "not_numeric", 1, "x"))]
    tested = evaluate(target, seen, None, NOW).results[0]
    assert tested.status is DataStatus.OK, tested.reason

    # The same window with that value missing (an empty csv field): the same results, to the bit.
    clean = tmp_path / "clean"
    clean.mkdir()
    reference_rows().to_parquet(clean / "reference.parquet", index=False)
    write_csv(rows, clean / "live" / "batch.csv", x_text={17: ""})
    config, observer, _ = observer_for(clean, alpha=0.5)
    baseline = observer.observe(config.targets[0], NOW)
    assert baseline.samples_reason == "200 rows" and baseline.samples["x"].isna().sum() == 1
    (want,) = evaluate(config.targets[0], baseline, None, NOW).results
    assert [c.column for c in tested.columns] == ["x", "y"]  # KS takes numeric columns
    assert tested.columns[0].n_current == 199 and tested.columns[0].n_dropped == 1
    assert tested == want


def test_values_that_are_not_numbers_become_missing_numbers_stay_exact() -> None:
    frame = pd.DataFrame(
        {
            "x": pd.Series(
                [
                    0.1 + 0.2,  # exactly, not through text
                    "abc",
                    {"a": 1},
                    [1],
                    True,  # a boolean is not a number
                    10**400,  # no float holds it
                    "2.5e-3",  # text that reads as a number (how a csv column holds it)
                    "1_000",  # Python's float() would take it; no csv reader would
                    None,  # missing: not counted
                    float("nan"),
                    2**53 + 1,  # rounded once, to the nearest float
                    Decimal("0.1"),
                    np.int64(-7),
                ],
                dtype=object,
            ),
            "count": np.arange(13),  # integers stay integers
            "flag": [True] * 13,  # a boolean column declared numeric: every value set aside
            "label": ["abc"] * 13,  # categorical: left alone
        }
    )
    kinds = {"x": "numeric", "count": "numeric", "flag": "numeric", "label": "categorical"}
    typed, aside = as_declared(frame, kinds)
    assert aside == [
        SetAside("value", "not_numeric", 6, "x"),
        SetAside("value", "not_numeric", 13, "flag"),
    ]
    x = typed["x"].tolist()
    assert x[0] == 0.30000000000000004 and x[6] == 0.0025 and x[10] == 2.0**53 and x[11] == 0.1
    assert x[12] == -7.0
    assert all(np.isnan(x[i]) for i in (1, 2, 3, 4, 5, 7, 8, 9))
    assert typed["x"].dtype == typed["flag"].dtype == np.float64
    assert typed["count"].dtype == np.int64 and typed["label"].tolist() == ["abc"] * 13
    assert frame["x"][1] == "abc"  # the caller's frame is not changed


def test_the_reference_is_read_as_declared_and_its_count_reported_once(tmp_path: Path) -> None:
    reference = reference_rows()
    reference["x"] = reference["x"].astype(object)
    reference.loc[3, "x"] = "unknown"
    reference.loc[4, "x"] = json.dumps({"x": 1})
    write_csv(reference, tmp_path / "reference.csv")
    write_csv(live_rows(7), tmp_path / "live" / "batch.csv")
    config, observer, calls = observer_for(tmp_path, reference="reference.csv")
    target = config.targets[0]
    first = observer.observe(target, NOW)
    assert first.reference_status is DataStatus.OK, first.reference_reason
    assert first.reference_reason == "2 values set aside (not_numeric: x)"
    assert first.reference is not None and first.reference.sample.columns[0].n_dropped == 2
    assert calls == [("training", SetAside("value", "not_numeric", 2, "x"))]
    second = observer.observe(target, NOW)  # the built Reference is kept: read and counted once
    assert second.reference is first.reference and second.reference_reason == first.reference_reason
    assert len(calls) == 1
    # The rows a bundle records are the rows the Reference was built from (its fingerprint).
    rows = observer.reference_frame(target)
    kinds = target.columns.all
    rebuilt = Reference(rows, columns=list(kinds), kinds=list(kinds.values()))
    assert rebuilt.fingerprint == first.reference.fingerprint


def test_every_item_of_every_read_reaches_on_set_aside(tmp_path: Path) -> None:
    reference_rows().to_parquet(tmp_path / "reference.parquet", index=False)
    live = tmp_path / "live"
    write_csv(live_rows(7), live / "a.csv", x_text={0: "abc", 1: "def"})
    (live / "b.parquet").write_bytes(b"PAR1 cut short")
    config, observer, calls = observer_for(tmp_path)
    seen = observer.observe(config.targets[0], NOW)
    assert seen.samples_status is DataStatus.OK
    assert [(source, a.what, a.reason, a.count) for source, a in calls] == [
        ("live", "file", "corrupt", 1),
        ("live", "value", "not_numeric", 2),
    ]
    assert f"1 file set aside (corrupt: {live / 'b.parquet'}: " in seen.samples_reason
    assert seen.samples_reason.endswith("; 2 values set aside (not_numeric: x)")
    observer.observe(config.targets[0], NOW)
    assert len(calls) == 4  # every read counts what it left out


def test_observers_built_as_before_still_work(tmp_path: Path) -> None:
    reference_rows().to_parquet(tmp_path / "reference.parquet", index=False)
    write_csv(live_rows(7), tmp_path / "live" / "a.csv", x_text={0: "abc"})
    config = parse_config(rules(tmp_path), env={})
    first = Observer(config)
    again = Observer(config, first)
    seen = again.observe(config.targets[0], NOW)
    assert seen.samples_status is DataStatus.OK and "not_numeric" in seen.samples_reason


# ------------------------------------------------------------------------------ the daemon


@pytest.fixture
def quiet_log() -> Any:
    return structlog.wrap_logger(
        structlog.PrintLogger(io.StringIO()), wrapper_class=structlog.BoundLogger
    )


def set_aside_series(daemon: Daemon) -> dict[str, float]:
    text = generate_latest(daemon.metrics.registry).decode()
    prefix = "mlwatchdog_source_set_aside_total{"
    return {
        line[len(prefix) - 1 : line.index("}") + 1]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(prefix)
    }


def test_a_corrupt_file_in_the_window_is_tested_end_to_end_and_counted(
    tmp_path: Path, quiet_log: Any
) -> None:
    reference_rows().to_parquet(tmp_path / "reference.parquet", index=False)
    live = tmp_path / "live"
    live.mkdir()
    rows = live_rows(7)
    rows.iloc[:100].to_parquet(live / "a.parquet", index=False)
    (live / "b.parquet").write_bytes(b"PAR1\x00 the writer crashed here")
    write_csv(rows.iloc[100:].reset_index(drop=True), live / "c.csv", x_text={5: "abc"})
    path = tmp_path / "rules.yaml"
    path.write_text(rules(tmp_path))
    daemon = Daemon(parse_config(path.read_text(), env={}), quiet_log, clock=lambda: NOW,
                    config_path=path)  # fmt: skip
    runner = daemon.runners["model"]
    evaluation = runner.run_once()
    assert evaluation is not None
    (drift,) = evaluation.results
    assert drift.status is DataStatus.OK, drift.reason
    assert [c.n_current for c in drift.columns] == [199, 200]  # 200 rows, x: 1 set aside
    assert runner.last_window is not None
    assert str(live / "b.parquet") in runner.last_window.reason
    assert set_aside_series(daemon) == {
        '{reason="corrupt",source="live",what="file"}': 1.0,
        '{reason="not_numeric",source="live",what="value"}': 1.0,
    }
    runner.run_once()
    assert set_aside_series(daemon)['{reason="corrupt",source="live",what="file"}'] == 2.0
    # A reloaded config's Observer reports to the same counter.
    path.write_text(rules(tmp_path, alpha=0.01))
    assert daemon.reload() is True, daemon.reload_errors
    assert daemon.runners["model"].run_once() is not None
    assert set_aside_series(daemon) == {
        '{reason="corrupt",source="live",what="file"}': 3.0,
        '{reason="not_numeric",source="live",what="value"}': 3.0,
    }


def test_the_runner_keeps_what_its_window_held_but_not_its_rows(
    tmp_path: Path, quiet_log: Any
) -> None:
    """At thousands of targets each kept window costs its rows again (benchmarks/README.md,
    "2,000 targets: memory"): a report written after the evaluation gets them from
    run_observed; the runner keeps their count and status only."""
    reference_rows().to_parquet(tmp_path / "reference.parquet", index=False)
    live = tmp_path / "live"
    live.mkdir()
    rows = live_rows(7)
    rows.iloc[:100].to_parquet(live / "a.parquet", index=False)
    rows.iloc[100:].to_parquet(live / "b.parquet", index=False)
    path = tmp_path / "rules.yaml"
    path.write_text(rules(tmp_path))
    daemon = Daemon(parse_config(path.read_text(), env={}), quiet_log, clock=lambda: NOW,
                    config_path=path)  # fmt: skip
    runner = daemon.runners["model"]
    evaluation, observation = runner.run_observed()
    assert evaluation is not None and observation is not None
    assert len(observation.samples) == 200  # two files: a window of its own, not a cached file
    window = weakref.ref(observation.samples)
    del observation
    gc.collect()
    assert window() is None, "the runner still holds the window's rows"
    assert runner.last_window is not None
    assert (runner.last_window.rows, runner.last_window.status) == (200, DataStatus.OK)
