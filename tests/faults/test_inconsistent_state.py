"""A state file that is valid JSON of the right shape but says something the core never writes
(a hand edit, a bug, a file from another target) is set aside like a corrupt one: renamed, logged
with what is wrong, and the target starts afresh; it never steers a decision (resuming a rollback
that never happened, or verifying without a deadline)."""

from __future__ import annotations

import io
import json
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import structlog
import structlog.testing
import yaml

from mlwatchdog.core import CheckRecord, CheckState, Incident, Phase, TargetState, to_json
from mlwatchdog.daemon.service import Daemon
from mlwatchdog.rules import parse_config
from tests.integration.bundle_scenario import T0, TARGET, batch, rules

FIRING = CheckRecord(CheckState.FIRING, active_at=T0, fired_at=T0, last_breach_at=T0)
INCIDENT = Incident(f"{TARGET}-20261125T090000Z", T0, reasons=("prediction_drift: drifted",))

INCONSISTENT = {
    # Would resume (carry out) a rollback that was never decided to have acted.
    "rolling back, but the incident never acted": TargetState(
        TARGET, Phase.ROLLING_BACK, T0, {"prediction_drift": FIRING}, INCIDENT
    ),
    "verifying without a verify deadline or a last action": TargetState(
        TARGET, Phase.VERIFYING, T0, {"prediction_drift": FIRING}, INCIDENT
    ),
    "it is the state of 'fraud-model', not of 'credit-model'": TargetState(
        "fraud-model", Phase.HEALTHY, T0
    ),
    "phase degraded without an incident": TargetState(
        TARGET, Phase.DEGRADED, T0, {"prediction_drift": FIRING}
    ),
}


@pytest.mark.parametrize("problem", sorted(INCONSISTENT))
def test_an_inconsistent_state_file_is_set_aside_and_the_target_starts_afresh(
    problem: str, tmp_path: Path
) -> None:
    data = rules(tmp_path)
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    text = json.dumps(to_json(INCONSISTENT[problem]), indent=1)
    (state_dir / f"{TARGET}.json").write_text(text)
    rng = np.random.default_rng(3)
    for ago in range(60, -1, -10):  # a window of calm samples
        batch(tmp_path, rng, T0 - timedelta(seconds=ago), drifted=False)
    capture = structlog.testing.LogCapture()
    log = structlog.wrap_logger(
        structlog.PrintLogger(io.StringIO()),
        processors=[capture],
        wrapper_class=structlog.BoundLogger,
    )
    config = parse_config(yaml.safe_dump(data, sort_keys=False), "rules.yaml")

    daemon = Daemon(config, log, clock=lambda: T0)
    runner = daemon.runners[TARGET]
    assert runner.state is None  # not restored

    [aside] = state_dir.glob(f"{TARGET}.corrupt-*")
    assert aside.read_text() == text  # kept for a person to look at
    [logged] = [e for e in capture.entries if e["event"].startswith("state file unusable")]
    assert logged["log_level"] == "error"
    assert logged["moved_to"] == str(aside)
    assert problem in logged["problems"]

    evaluation = runner.run_once()
    assert evaluation is not None
    assert evaluation.state.phase is Phase.HEALTHY and evaluation.state.incident is None
    assert not evaluation.decisions
    assert not [e for e in capture.entries if "rollback" in e["event"]]  # nothing resumed
    assert not (tmp_path / "audit.jsonl").exists()  # nothing acted on
    saved = json.loads((state_dir / f"{TARGET}.json").read_text())
    assert saved["target"] == TARGET and saved["phase"] == "healthy"
