"""`mlwatchdog check --sources`: the installed command reads each target's sources once, as the
daemon would, and prints what it found: exit 0 when every input has data, 1 naming what is
missing (an absent folder, a Prometheus that is down), with secrets masked."""

from __future__ import annotations

import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from tests.e2e.test_cli_check import COMMAND
from tests.servers.ports import free_port
from tests.servers.prometheus import binaries, running_prometheus

AT = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)


def check_sources(path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "MLWATCHDOG_PORT"}
    return subprocess.run(
        [COMMAND, "check", "--sources", str(path), *extra],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**environ, "COLUMNS": "200"},
    )


def write_rules(tmp_path: Path, live: Path, prometheus: str) -> Path:
    rules: dict[str, Any] = {
        "daemon": {"kubernetes": {"mode": "offline"}, "state_dir": str(tmp_path / "state")},
        "sources": {
            "live": {"type": "files", "url": str(live)},
            "training": {
                "type": "files",
                "url": str(tmp_path / "reference.parquet"),
                "timestamp_column": None,
            },
            "prom": {"type": "prometheus", "url": prometheus},
        },
        "targets": [
            {
                "name": "credit",
                "samples": {"source": "live", "window": "10m", "min_samples": 30},
                "reference": {"source": "training"},
                "columns": {"features": {"x": "numeric", "color": "categorical"}},
                "checks": [
                    {"name": "drift", "type": "drift", "test": "ks"},
                    {
                        "name": "errors",
                        "type": "metric",
                        "source": "prom",
                        "query": "vector(0.0125)",
                        "above": 0.05,
                    },
                ],
            }
        ],
    }
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    rng = np.random.default_rng(3)
    pd.DataFrame({"x": rng.normal(0, 1, 300), "color": rng.choice(["a", "b"], 300)}).to_parquet(
        tmp_path / "reference.parquet", index=False
    )
    return path


def write_window(live: Path, n: int = 120) -> None:
    """n rows every 4 s up to AT, and one value that is not a number (set aside)."""
    rng = np.random.default_rng(5)
    rows = pd.DataFrame(
        {
            "timestamp": [AT - timedelta(seconds=4 * (i + 1)) for i in range(n)],
            "x": rng.normal(0, 1, n).astype(object),
            "color": rng.choice(["a", "b"], n),
        }
    )
    rows.loc[7, "x"] = "abc"
    live.mkdir(parents=True)
    (live / "batch.csv").write_text(rows.to_csv(index=False))


def test_a_config_whose_sources_all_answer_shows_what_they_gave(tmp_path: Path) -> None:
    binaries()  # skips without a Prometheus to run
    live = tmp_path / "live"
    write_window(live)
    with running_prometheus() as prometheus:
        path = write_rules(tmp_path, live, prometheus.url)
        done = check_sources(path, "--at", AT.isoformat())
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "SUCCESS: 1 target(s), 2 check(s), 3 source(s)" in out
    assert "credit: window [2026-11-25 05:50:00, 06:00:00) UTC, 10m" in out
    samples = next(line for line in out.splitlines() if "│ samples" in line)
    assert "│ live " in samples and "│ ok " in samples and "│  120 │" in samples
    assert "05:52:00 to 05:59:56" in samples  # the rows' time range
    assert "120 rows; 1 value set aside (not_numeric: x)" in samples
    reference = next(line for line in out.splitlines() if "│ reference" in line)
    assert "│ ok " in reference and "│  300 │" in reference and "fingerprint " in reference
    metric = next(line for line in out.splitlines() if "│ metric errors" in line)
    assert "│ prom " in metric and "│ ok " in metric and "value 0.0125" in metric
    assert "MISSING" not in out


def test_a_missing_folder_and_a_prometheus_that_is_down_are_named_exit_1(tmp_path: Path) -> None:
    down = f"http://watchdog:hunter22secret@127.0.0.1:{free_port()}"  # nothing listens there
    path = write_rules(tmp_path, tmp_path / "nowhere", down)
    done = check_sources(path)  # the window ending now
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert "Traceback" not in out
    assert "SUCCESS: 1 target(s)" in out  # the file is valid; its sources are not
    problems = [line.strip() for line in done.stdout.splitlines() if "MISSING" in line]
    assert len(problems) == 2, out
    assert problems[0].startswith(
        f"MISSING credit: samples (no_data): no files under {tmp_path / 'nowhere'} for ["
    )
    assert problems[1].startswith("MISSING credit: metric errors (error): ")
    assert "127.0.0.1" in problems[1]  # which Prometheus failed...
    assert "hunter22secret" not in out  # ...without its password
    reference = next(line for line in out.splitlines() if "│ reference" in line)
    assert "│ ok " in reference  # what does answer is still shown


def test_plain_check_reads_no_source_and_a_bad_at_is_refused(tmp_path: Path) -> None:
    path = write_rules(tmp_path, tmp_path / "nowhere", "http://127.0.0.1:1")
    plain = subprocess.run(
        [COMMAND, "check", str(path)], capture_output=True, text=True, check=False
    )
    assert plain.returncode == 0, plain.stderr  # a missing folder is not checked without --sources
    assert plain.stdout.splitlines()[1] == "  SUCCESS: 1 target(s), 2 check(s), 3 source(s)"
    done = check_sources(path, "--at", "yesterday")
    assert done.returncode == 2 and "not an ISO 8601 time" in done.stderr
