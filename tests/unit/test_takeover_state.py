"""A replica that takes a shard over (daemon/service.py `_leading_changed`) carries a target's
state on only when it evaluated the target itself less than one lease_duration ago: another
replica may have led it in between, and a stale pending timer would fire at once."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import structlog

from mlwatchdog.core import CheckState, Observation
from mlwatchdog.daemon.metrics import DaemonMetrics
from mlwatchdog.daemon.runner import TargetRunner
from mlwatchdog.daemon.state_store import StateStore
from mlwatchdog.rules import Target
from tests.unit.test_reload import T0, _observation, config, metric, rules, target


class Breaching:
    """The errors metric above its threshold at every evaluation."""

    reference_builds = 0

    def observe(self, target: Target, now: datetime, serving: Any = None) -> Observation:
        return _observation(target.name, now, errors=0.2)


def runner_at(tmp_path: Path, clock: list[datetime]) -> TargetRunner:
    checked = config(rules(target("a", metric("errors", 0.05), **{"for": "10m"}))).target("a")
    log = structlog.get_logger()
    observer: Any = Breaching()
    return TargetRunner(
        checked, observer, None, StateStore(tmp_path, log), DaemonMetrics(), log, lambda: clock[0]
    )


def pending_since(runner: TargetRunner) -> datetime | None:
    assert runner.state is not None
    record = runner.state.checks["errors"]
    assert record.state is CheckState.PENDING
    return record.active_at


def test_a_state_older_than_the_takeover_starts_afresh(tmp_path: Path) -> None:
    clock = [T0]
    runner = runner_at(tmp_path, clock)
    runner.run_once()
    assert pending_since(runner) == T0  # pending, 10 minutes to go

    # The shard was led elsewhere for an hour; taken back: the timer of then does not count.
    clock[0] = T0 + timedelta(hours=1)
    runner.forget_state_before(clock[0] - timedelta(seconds=15))
    assert runner.state is None  # no evaluation running: applied at once
    runner.run_once()
    assert pending_since(runner) == clock[0]  # not firing: the breach starts now


def test_a_state_evaluated_just_before_is_kept(tmp_path: Path) -> None:
    clock = [T0]
    runner = runner_at(tmp_path, clock)
    runner.run_once()
    clock[0] = T0 + timedelta(seconds=5)
    runner.forget_state_before(clock[0] - timedelta(seconds=15))  # evaluated 5 s ago: kept
    runner.run_once()
    assert pending_since(runner) == T0
