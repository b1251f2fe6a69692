"""The bundled demo: synthetic credit-model samples, written live into a partitioned folder, that
drift after a while; `mlwatchdog demo` (and `make run`) runs the daemon on them.
"""

from __future__ import annotations

import shutil
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

# The columns the generator drifts; the others keep their distribution.
DRIFTED_COLUMNS = ("income", "credit_score", "channel", "score")


def customers(rng: np.random.Generator, n: int, drifted: bool) -> pd.DataFrame:
    """n applicants and the model's score; `drifted` shifts income, credit score and channel."""
    channel_p = [0.30, 0.55, 0.15] if drifted else [0.50, 0.35, 0.15]
    income = rng.lognormal(np.log(52_000 * (1.25 if drifted else 1.0)), 0.45, n)
    income[rng.random(n) < 0.01] = np.nan  # a few missing incomes, as in real logs
    credit = rng.normal(620 if drifted else 650, 75 if drifted else 60, n)
    frame = pd.DataFrame(
        {
            "age": rng.normal(41, 12, n).clip(18, 90).round(),
            "income": income,
            "credit_score": credit.round(),
            "tenure_months": rng.integers(0, 121, n),
            "n_products": rng.choice([1, 2, 3, 4, 5], n, p=[0.4, 0.3, 0.15, 0.1, 0.05]),
            "channel": rng.choice(["web", "app", "branch"], n, p=channel_p),
            "region": rng.choice(["north", "south", "east", "west"], n),
        }
    )
    logit = -4 + 0.04 * (700 - frame["credit_score"]) + 0.3 * (frame["channel"] == "app")
    frame["score"] = 1 / (1 + np.exp(-logit))  # the model's predicted default probability
    return frame


PARTITIONING = "dt=%Y-%m-%d/hour=%H"


def write_batch(out: Path, frame: pd.DataFrame, at: datetime) -> Path:
    """Write one batch as a parquet file in its hourly partition, atomically (readers skip .tmp)."""
    directory = out / at.strftime(PARTITIONING)
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / f"part-{at:%Y%m%dT%H%M%S%f}.parquet"
    tmp = directory / f".{final.name}.tmp"
    frame.to_parquet(tmp, index=False)
    tmp.rename(final)
    return final


class LiveWriter(threading.Thread):
    """Writes `rate` rows/s as a file every `every` seconds; drifted after `drift_after` s."""

    def __init__(
        self,
        out: Path,
        log: Any,
        drift_after: float = 60.0,
        rate: float = 20.0,
        every: float = 2.0,
        seed: int = 7,
    ) -> None:
        super().__init__(name="demo-writer", daemon=True)
        self.out, self.log = out, log
        self.drift_after, self.rate, self.every = drift_after, rate, every
        self.rng = np.random.default_rng(seed)
        self.stopped = threading.Event()

    def run(self) -> None:
        started = time.monotonic()
        drifting = False
        while not self.stopped.is_set():
            now = datetime.now(UTC)
            drifted = time.monotonic() - started >= self.drift_after
            if drifted and not drifting:
                self.log.warning("demo: live samples drift from now on", columns=DRIFTED_COLUMNS)
                drifting = True
            n = int(self.rate * self.every)
            batch = customers(self.rng, n, drifted)
            offsets = np.sort(self.rng.uniform(0, self.every, n))
            batch.insert(0, "timestamp", [now - timedelta(seconds=s) for s in offsets[::-1]])
            write_batch(self.out, batch, now)
            self.stopped.wait(self.every)

    def stop(self) -> None:
        self.stopped.set()


def fresh_workdir(workdir: Path) -> tuple[Path, Path]:
    """Empty `<workdir>/live` and `<workdir>/state`, the demo's own folders."""
    live, state = workdir / "live", workdir / "state"
    for folder in (live, state):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    return live, state


def backfill(out: Path, minutes: float, seed: int = 11) -> None:
    """Undrifted history for the last `minutes`, so the first evaluation already has a window."""
    rng = np.random.default_rng(seed)
    now = datetime.now(UTC)
    for step in range(int(minutes * 60 // 10), 0, -1):
        at = now - timedelta(seconds=10 * step)
        batch = customers(rng, 200, drifted=False)
        batch.insert(0, "timestamp", [at - timedelta(seconds=s) for s in rng.uniform(0, 10, 200)])
        write_batch(out, batch, at)
