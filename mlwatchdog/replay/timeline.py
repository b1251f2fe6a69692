"""Replay over a time range: at each virtual `now`, observe the historical window and run the same
core the daemon runs, carrying state forward; the result is a timeline table.

Actions are dry-run here, with the outcome the dry-run actuator reports in the daemon, so a replay
of a dry-run daemon's history reaches the same states and decisions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pandas as pd

from mlwatchdog.core import (
    ActionOutcome,
    CheckResult,
    CheckState,
    DecisionKind,
    Evaluation,
    Observation,
    TargetState,
    WorkloadHealth,
    decide,
    measure,
    record_action,
)
from mlwatchdog.core.measure import base_check
from mlwatchdog.replay.parallel import Plan, measuring
from mlwatchdog.rules import Config, DriftCheck, Target

TIMELINE_COLUMNS = (
    "time", "target", "check", "status", "value", "threshold", "breaching", "check_state",
    "target_state", "incident", "decision", "decision_to", "reason",
)  # fmt: skip


def step_times(start: datetime, end: datetime, step: timedelta) -> list[datetime]:
    """start, start + step, ... up to and including end."""
    if step <= timedelta(0):
        raise ValueError("step must be positive")
    if end < start:
        raise ValueError(f"--to ({end.isoformat()}) is before --from ({start.isoformat()})")
    count = int((end - start) / step) + 1
    return [start + i * step for i in range(count)]


def replay_step(
    target: Target, observation: Observation, state: TargetState | None, now: datetime
) -> Evaluation:
    """One evaluation as a dry-run daemon makes it: evaluate, then a dry-run rollback outcome."""
    results = measure(target, observation)
    return replay_decide(target, results, state, now, observation.workload)


def replay_decide(
    target: Target,
    results: tuple[CheckResult, ...],
    state: TargetState | None,
    now: datetime,
    workload: WorkloadHealth | None = None,
) -> Evaluation:
    """The deciding half of `replay_step`, on measured results: decide, then a dry-run rollback
    outcome for each rollback decision."""
    next_state, decided = decide(target, results, state, now, workload)
    decisions = list(decided)
    for decision in decided:
        if decision.kind is DecisionKind.ROLLBACK:
            outcome = ActionOutcome(decision.incident, ok=True, dry_run=True, detail="replay")
            next_state, follow_ups = record_action(target, next_state, outcome, now)
            decisions += follow_ups
    return Evaluation(next_state, tuple(decisions), results)


def replay(
    config: Config,
    start: datetime,
    end: datetime,
    step: timedelta = timedelta(minutes=1),
    targets: Sequence[str] | None = None,
    progress: Callable[[Iterable[datetime]], Iterable[datetime]] | None = None,
    *,
    executor: str = "serial",
    scheduler: str | None = None,
    chunk: int | None = None,
    on_plan: Callable[[Plan], None] | None = None,
) -> pd.DataFrame:
    """The timeline of `config`'s targets from `start` to `end`: one row per time, target, check.

    `progress` wraps the iteration over times (e.g. a progress bar). The windows are measured by
    `executor`: "serial" in this process, or "dask" in tasks of `chunk` times on the scheduler at
    `scheduler` (None: a LocalCluster for the run); `on_plan` is told how (`parallel.measuring`).
    Either way the decisions are folded here, in time order, so the timeline is the same.
    """
    chosen = [t for t in config.targets if targets is None or t.name in targets]
    unknown = sorted(set(targets or ()) - {t.name for t in chosen})
    if unknown:
        raise ValueError(
            f"no target(s) {unknown}; the config has {[t.name for t in config.targets]}"
        )
    states: dict[str, TargetState | None] = {t.name: None for t in chosen}
    rows: list[dict[str, Any]] = []
    times = step_times(start, end, step)
    with measuring(
        config, chosen, times, executor=executor, scheduler=scheduler, chunk=chunk, on_plan=on_plan
    ) as measured:
        for now, step_results in zip(progress(times) if progress else times, measured, strict=True):
            for target, results in zip(chosen, step_results, strict=True):
                evaluation = replay_decide(target, results, states[target.name], now)
                states[target.name] = evaluation.state
                rows += timeline_rows(target.name, now, evaluation)
    return pd.DataFrame(rows, columns=list(TIMELINE_COLUMNS))


def timeline_rows(target: str, now: datetime, evaluation: Evaluation) -> list[dict[str, Any]]:
    """One row per check; the step's decisions go on the first check's row."""
    state = evaluation.state
    decisions = evaluation.decisions
    rows = []
    for i, result in enumerate(evaluation.results):
        rows.append(
            {
                "time": now,
                "target": target,
                "check": result.check,
                "status": str(result.status),
                "value": result.value,
                "threshold": result.threshold,
                "breaching": result.breaching,
                "check_state": state.checks[result.check].state.name.lower(),
                "target_state": str(state.phase),
                "incident": state.incident.id if state.incident else None,
                "decision": ",".join(str(d.kind) for d in decisions) if i == 0 else "",
                "decision_to": next((d.to for d in decisions if d.to), None) if i == 0 else None,
                "reason": result.reason,
            }
        )
    return rows


@dataclass(frozen=True)
class AlarmRate:
    """How often a target's drift checks went to firing over a replayed period: on a period known
    to be quiet, its measured false-alarm rate, to hold against `false_alarms.every`."""

    target: str
    alarms: int
    span: timedelta
    stated: timedelta | None  # the target's false_alarms.every

    def __str__(self) -> str:
        days = self.span / timedelta(days=1)
        text = f"{self.target}: {self.alarms} drift alarm(s) in {days:.3g} days"
        if self.alarms:
            text += f", one per {self.span / self.alarms / timedelta(days=1):.3g} days"
        if self.stated is not None:
            text += f" (false_alarms states one per {self.stated / timedelta(days=1):.3g} at most)"
        return text


def alarm_rates(timeline: pd.DataFrame, config: Config) -> list[AlarmRate]:
    """Per target in the timeline: its drift checks' transitions to firing, over the period."""
    rates = []
    for target in config.targets:
        rows = timeline[timeline["target"] == target.name]
        if rows.empty:
            continue
        drift = {c.name for c in target.checks if isinstance(c, DriftCheck)}
        alarms = 0
        for check, history in rows.groupby("check", sort=False):
            if base_check(str(check)) not in drift:
                continue
            firing = history.sort_values("time")["check_state"] == CheckState.FIRING.name.lower()
            alarms += int((firing & ~firing.shift(fill_value=False)).sum())
        span = rows["time"].max() - rows["time"].min()
        stated = target.false_alarms.every if target.false_alarms else None
        rates.append(AlarmRate(target.name, alarms, span.to_pytimedelta(), stated))
    return rates
