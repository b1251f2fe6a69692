"""The verdict a progressive-delivery controller asks for (Argo Rollouts' `web` metric, Flagger's
`rollout` webhook): pass, fail or inconclusive, for one target from one evaluation. Pure.

- fail: the target's trigger holds on checks that fire with data now (what would make the
  daemon roll back), or the target is escalated (a person must look);
- inconclusive: no evaluation yet, the last one is older than `max_age` (the daemon is not
  evaluating the target), a check of the trigger had no data now, or the daemon is itself
  reverting or verifying a revert (neither promote nor abort behind its back);
- pass: otherwise. A pending check passes: its `for` says a shorter breach is noise.

Never a pass on missing data: a check without data is unknown, as in `decide`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from mlwatchdog.core.decide import Evaluation
from mlwatchdog.core.model import CheckState, DataStatus, Phase
from mlwatchdog.rules import Target, parse_trigger


class Verdict(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True)
class Judgment:
    verdict: Verdict
    reason: str


# Phases in which the daemon itself acts on the workload: the analysis must not race it.
_ACTING = (Phase.ROLLING_BACK, Phase.VERIFYING, Phase.AWAITING_APPROVAL)


def judge(
    target: Target, evaluation: Evaluation | None, now: datetime, max_age: timedelta
) -> Judgment:
    """The verdict on `target` from `evaluation` (None: not evaluated yet) at `now`."""
    evaluated_at = evaluation.state.evaluated_at if evaluation is not None else None
    if evaluation is None or evaluated_at is None:
        return Judgment(
            Verdict.INCONCLUSIVE, f"target {target.name} has not been evaluated yet: no data"
        )
    state = evaluation.state
    age = now - evaluated_at
    if age > max_age:
        return Judgment(
            Verdict.INCONCLUSIVE,
            f"the last evaluation of target {target.name} ({evaluated_at.isoformat()}) "
            f"is {int(age.total_seconds())}s old, more than {int(max_age.total_seconds())}s: "
            "the daemon is not evaluating it (its log says why)",
        )
    results = {r.check: r for r in evaluation.results}
    trigger = parse_trigger(target.trigger, [c.name for c in target.checks])
    firing = {
        name: record.state is CheckState.FIRING
        if name in results and results[name].status is DataStatus.OK
        else None
        for name, record in state.checks.items()
    }
    if trigger.holds(firing):
        fired = sorted(n for n, f in firing.items() if f)
        return Judgment(
            Verdict.FAIL,
            f"trigger {target.trigger!r} holds: "
            + "; ".join(f"{n} firing: {results[n].reason}" for n in fired),
        )
    if state.phase is Phase.ESCALATED:
        why = "; ".join(state.incident.reasons) if state.incident else ""
        return Judgment(
            Verdict.FAIL,
            f"target {target.name} is escalated: a person must look" + (f" ({why})" if why else ""),
        )
    blind = sorted(
        n for n in trigger.names if n not in results or results[n].status is not DataStatus.OK
    )
    if blind:
        return Judgment(
            Verdict.INCONCLUSIVE,
            "no data to judge: "
            + "; ".join(
                f"{n} {results[n].status}: {results[n].reason}" if n in results else f"{n}: none"
                for n in blind
            ),
        )
    if state.phase in _ACTING:
        return Judgment(
            Verdict.INCONCLUSIVE,
            f"target {target.name} is {state.phase}: the daemon is acting, neither promote nor "
            "abort now",
        )
    return Judgment(Verdict.PASS, f"target {target.name} is {state.phase}: no trigger holds")
