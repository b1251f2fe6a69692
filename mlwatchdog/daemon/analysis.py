"""GET /api/v1/analysis/{target}[?revision=]: the verdict on a target for a progressive-delivery
controller, with the checks and figures behind it. Argo Rollouts' `web` metric provider calls it
from an AnalysisTemplate (deploy/examples/argo-analysis-web.yaml); Flagger's `pre-rollout` and
`rollout` webhooks get the same answer (`daemon/flagger.py`). The verdict itself is
`core/verdict.py`.

What Argo does with the answer (argoproj/argo-rollouts metricproviders/webmetric/webmetric.go
Provider.Run and parseResponse; utils/evaluate/evaluate.go EvaluateResult):
- a status outside 2xx is a measurement *Error*, not a failure or an inconclusive; so every
  verdict is answered 200 and said in the JSON (only an unknown target is 404: a config error);
- `jsonPath: "{$.verdict}"` makes the verdict string the `result`; with `successCondition:
  result == "pass"` and `failureCondition: result == "fail"` both set, "inconclusive" makes
  neither true, which is Argo's Inconclusive: the Rollout pauses for a person, never promotes.

No `?evaluate=true`: Argo calls at its metric `interval`, the scheduler already evaluates at the
target's, and an evaluation can roll back, which the `read` role this route needs must not do.
`evaluated_at` says how fresh the answer is; one older than MAX_AGE_INTERVALS intervals is
inconclusive.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel

from mlwatchdog.core import Evaluation
from mlwatchdog.core.verdict import judge
from mlwatchdog.daemon.api import CheckView, check_views

if TYPE_CHECKING:
    from mlwatchdog.daemon.runner import TargetRunner, WindowSeen
    from mlwatchdog.daemon.service import Daemon

# An evaluation older than this many of the target's intervals no longer speaks for now.
MAX_AGE_INTERVALS = 3


class WindowView(BaseModel):
    """The sample window of the evaluation judged."""

    rows: int | None  # rows in the window; None when there were no samples
    status: str | None  # ok, no_data, stale, error, insufficient; None before any evaluation
    reason: str


class AnalysisCheck(CheckView):
    rows: int | None  # rows the check judged (drift: its columns' most); None for a metric


class AnalysisAnswer(BaseModel):
    target: str
    revision: str | None  # as asked, echoed
    # What was judged: "target" is the target's latest evaluation, every revision's rows of its
    # window together (per-revision judgment answers "revision" once it exists).
    scope: str
    verdict: str  # pass, fail, inconclusive
    reason: str
    state: str | None  # the target's phase; None before its first evaluation
    incident: str | None
    evaluated_at: datetime | None
    window: WindowView
    checks: list[AnalysisCheck]


@dataclass(frozen=True)
class Judged:
    """The evaluation answering for a revision, and what it covers."""

    scope: str
    evaluation: Evaluation | None
    window: WindowSeen | None


def evaluation_for(runner: TargetRunner, revision: str | None) -> Judged:
    """The one place that picks the evaluation to answer from. Per-revision judgment plugs in
    here (the revision's own evaluation, scope "revision"); until then the target's latest
    evaluation answers for any revision, and says so with scope "target"."""
    return Judged("target", runner.last, runner.last_window)


def analysis_answer(runner: TargetRunner, revision: str | None) -> AnalysisAnswer:
    target = runner.target
    judged = evaluation_for(runner, revision)
    evaluation, seen = judged.evaluation, judged.window
    judgment = judge(target, evaluation, runner.clock(), MAX_AGE_INTERVALS * target.interval)
    state = evaluation.state if evaluation is not None else None
    results = {r.check: r for r in evaluation.results} if evaluation is not None else {}
    checks = []
    for view in check_views(target, state, evaluation):
        result = results.get(view.name)
        rows = max((c.n_current for c in result.columns), default=None) if result else None
        checks.append(AnalysisCheck(**view.model_dump(), rows=rows))
    if seen is None:
        window = WindowView(rows=None, status=None, reason="not evaluated yet")
    else:
        window = WindowView(rows=seen.rows, status=str(seen.status), reason=seen.reason)
    return AnalysisAnswer(
        target=target.name,
        revision=revision,
        scope=judged.scope,
        verdict=str(judgment.verdict),
        reason=judgment.reason,
        state=str(state.phase) if state is not None else None,
        incident=state.incident.id if state is not None and state.incident else None,
        evaluated_at=state.evaluated_at if state is not None else None,
        window=window,
        checks=checks,
    )


def analysis_router(daemon: Daemon) -> APIRouter:
    router = APIRouter()

    @router.get(
        "/api/v1/analysis/{name}",
        summary="The verdict on a target (pass, fail, inconclusive) for Argo Rollouts' web "
        "metric: always 200, the verdict is in the JSON",
        responses={404: {"description": "no such target"}},
    )
    def analysis(
        name: str,
        revision: str | None = Query(
            None, description="the revision asked about (Argo: the canary's pod-template-hash)"
        ),
    ) -> AnalysisAnswer:
        runner = daemon.runners.get(name)
        if runner is None:
            raise HTTPException(404, f"no target {name!r}; targets: {sorted(daemon.runners)}")
        answer = analysis_answer(runner, revision or None)  # `?revision=`: none asked
        daemon.log.info(
            "analysis answered", target=name, revision=revision, verdict=answer.verdict,
            reason=answer.reason,
        )  # fmt: skip
        return answer

    return router
