"""`sources.probe`: what one read of a target's sources found, and which of it is a problem (what
`mlwatchdog check --sources` exits 1 for): only inputs a check of the target reads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from mlwatchdog.core import DataStatus
from mlwatchdog.rules import parse_config
from mlwatchdog.sources.probe import probe

AT = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)
METRIC = {"name": "errors", "type": "metric", "source": "prom", "query": "up", "above": 1}


def config(root: Path, checks: list[dict[str, Any]]) -> Any:
    return parse_config(
        yaml.safe_dump(
            {
                "daemon": {"kubernetes": {"mode": "offline"}},
                "sources": {
                    "live": {"type": "files", "url": str(root / "live")},
                    "training": {
                        "type": "files",
                        "url": str(root / "ref.parquet"),
                        "timestamp_column": None,
                    },
                    "prom": {"type": "prometheus", "url": "http://127.0.0.1:1", "timeout": "2s"},
                },
                "targets": [
                    {
                        "name": "model",
                        "samples": {"source": "live", "window": "10m", "min_samples": 500},
                        "reference": {"source": "training"},
                        "columns": {"features": {"x": "numeric", "color": "categorical"}},
                        "checks": checks,
                    }
                ],
            }
        )
    )


def write_reference(root: Path) -> None:
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"x": rng.normal(0, 1, 80), "color": rng.choice(["a", "b"], 80)})
    frame.to_parquet(root / "ref.parquet", index=False)


def test_a_target_of_metric_checks_only_is_not_failed_for_samples_it_never_reads(
    tmp_path: Path,
) -> None:
    (found,) = probe(config(tmp_path, [METRIC]), AT)  # no live folder, no reference file
    assert found.samples.used is False and found.samples.status is DataStatus.NO_DATA
    assert found.reference.used is False and found.reference.status is not DataStatus.OK
    (metric,) = found.metrics
    assert metric.status is DataStatus.ERROR and "127.0.0.1:1" in metric.reason
    assert found.problems == [f"metric errors (error): {metric.reason}"]


def test_too_few_rows_is_no_problem_a_file_without_a_declared_column_is(tmp_path: Path) -> None:
    write_reference(tmp_path)
    live = tmp_path / "live"
    live.mkdir()
    stamps = [AT - timedelta(seconds=10 * (i + 1)) for i in range(40)]
    pd.DataFrame({"timestamp": stamps, "x": np.arange(40.0), "color": ["a"] * 40}).to_parquet(
        live / "a.parquet", index=False
    )
    drift = [{"name": "drift", "type": "drift", "test": "ks"}]
    (found,) = probe(config(tmp_path, drift), AT)
    assert found.problems == []  # 40 rows, min_samples 500: insufficient, not missing
    assert found.samples.rows == 40 and found.samples.columns_missing == ()
    assert (found.samples.first, found.samples.last) == (stamps[-1], stamps[0])
    assert found.reference.rows == 80 and len(found.reference.fingerprint) > 12

    (live / "a.parquet").unlink()
    pd.DataFrame({"timestamp": stamps, "x": np.arange(40.0)}).to_parquet(
        live / "b.parquet", index=False
    )
    (found,) = probe(config(tmp_path, drift), AT)
    assert found.samples.status is DataStatus.ERROR
    (problem,) = found.problems
    assert problem.startswith("samples (error): no file under ")
    assert "missing_column" in problem and "color" in problem
