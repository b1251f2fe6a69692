"""An incident recorded by the daemon's own runner on a virtual clock: calm samples, then drift,
a (dry-run) rollback, verification and escalation. Its bundles are what the bundle tests load,
replay and question."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import structlog
import yaml

from mlwatchdog.daemon.service import Daemon
from mlwatchdog.demo import customers, write_batch
from mlwatchdog.rules import parse_config

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
STEP = timedelta(seconds=10)
CALM_STEPS = 8  # then drift, to the end
STEPS = 40
TARGET = "credit-model"


def rules(tmp_path: Path, **daemon: Any) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "rules.yaml").read_text())
    data["daemon"].update(state_dir=str(tmp_path / "state"), jitter="0s", **daemon)
    data["daemon"]["audit_log"] = str(tmp_path / "audit.jsonl")
    data["sources"]["live"]["url"] = str(tmp_path / "live")
    data["sources"]["training"]["url"] = str(ROOT / "examples/data/reference.parquet")
    (target,) = data["targets"]
    target.update(interval="10s", resolve_after="1m", cooldown="10m", verify={"window": "2m"})
    target["for"] = "30s"
    target["samples"].update(window="1m", min_samples=100)
    return data


def run_incident(tmp_path: Path, **daemon: Any) -> Daemon:
    """Evaluate the target STEPS times, one STEP apart, writing each STEP's samples first."""
    config = parse_config(yaml.safe_dump(rules(tmp_path, **daemon), sort_keys=False), "rules.yaml")
    now = [T0]
    log = structlog.wrap_logger(structlog.PrintLogger(open("/dev/null", "w")))  # noqa: SIM115
    service = Daemon(config, log, clock=lambda: now[0])
    runner = service.runners[TARGET]
    rng = np.random.default_rng(20261125)
    for ago in range(60, 0, -10):  # a full window of calm history first
        batch(tmp_path, rng, T0 - timedelta(seconds=ago), drifted=False)
    for i in range(STEPS):
        now[0] = T0 + i * STEP
        batch(tmp_path, rng, now[0], drifted=i >= CALM_STEPS)
        runner.run_once()
    service.reports.wait()  # the decisions' reports (written in the background) are done
    return service


def batch(tmp_path: Path, rng: np.random.Generator, at: datetime, drifted: bool) -> None:
    frame = customers(rng, 300, drifted)
    offsets = rng.uniform(0, STEP.total_seconds(), len(frame))
    frame.insert(0, "timestamp", [at - timedelta(seconds=s) for s in offsets])
    write_batch(tmp_path / "live", frame, at)
