"""Reading parquet starts no native threads: arrow's pool threads still alive at interpreter exit
abort the process (apache/arrow#34314, "terminate called without an active exception"), which
made `mlwatchdog evaluate` exit with SIGABRT about once in 100 runs on a loaded machine."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

SCRIPT = """
import json, os, sys
from mlwatchdog.replay.bundle import read_parquet as bundles_read
from mlwatchdog.sources.tables import read_table

def threads():
    tasks = os.listdir("/proc/self/task")
    return sorted(open(f"/proc/self/task/{t}/comm").read().strip() for t in tasks)

before = threads()
read_table(sys.argv[1])
read_table(sys.argv[1], ["x3", "t"])
bundles_read(sys.argv[1])
print(json.dumps({"before": before, "after": threads()}))
"""


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="counts threads in /proc")
def test_reading_parquet_leaves_no_arrow_thread_behind(tmp_path: Path) -> None:
    path = tmp_path / "window.parquet"
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(5_000, 20)), columns=[f"x{i}" for i in range(20)])
    frame["t"] = pd.date_range("2026-12-06", periods=len(frame), freq="1s", tz="UTC")
    frame.to_parquet(path, row_group_size=1_000)  # several row groups: work for a pool
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(path)],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    seen = json.loads(done.stdout)
    assert seen["after"] == seen["before"], "a read left native threads running until exit"
