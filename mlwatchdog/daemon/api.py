"""The HTTP API (/api/v1): targets with their state and checks, one target in detail, evaluate now,
incidents, investigation reports, and the alert webhook. Its OpenAPI schema is at /openapi.json.

Views are built from the runners' last evaluation and state; numbers that are not finite are
given as null (JSON has no NaN).
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from pydantic import BaseModel

from mlwatchdog.core import CheckState, Evaluation, TargetState, to_json
from mlwatchdog.daemon.alerts import AlertWebhook, annotate, matched_targets, summary
from mlwatchdog.daemon.journal import for_target, incidents
from mlwatchdog.daemon.people import ApprovalView, HoldView, people_fields
from mlwatchdog.daemon.reports import ReportInfo
from mlwatchdog.report.page import render_landing
from mlwatchdog.rules import Target

if TYPE_CHECKING:
    from mlwatchdog.daemon.runner import TargetRunner
    from mlwatchdog.daemon.service import Daemon


class CheckView(BaseModel):
    name: str
    kind: str  # "drift", "metric" or "performance"
    state: str  # inactive, pending, firing
    status: str | None  # the last evaluation's data status: ok, no_data, stale, error, ...
    value: float | None
    threshold: float | None
    breaching: bool
    reason: str
    active_at: datetime | None
    fired_at: datetime | None
    interval: list[float | None] | None = None  # performance checks: the value's interval


class TargetView(BaseModel):
    name: str
    workload: dict[str, Any]
    phase: str | None  # None before the first evaluation
    since: datetime | None
    incident: str | None
    evaluated_at: datetime | None
    # Blind: the drift checks' samples or reference missing for longer than the samples window.
    blind: bool
    blind_since: datetime | None  # since when the input that blinds it has been missing
    blind_reason: str  # what is missing and why; "" when not blind
    # A person in the loop (daemon/people.py): paused (no action), silenced (no action, no
    # escalation), and the rollback waiting for approval (rollback.confirm) or its answer.
    paused: HoldView | None = None
    silenced: HoldView | None = None
    approval: ApprovalView | None = None
    checks: list[CheckView]


class TargetPlacement(BaseModel):
    shard: int  # fnv-1a of the name mod daemon.leader_election.shards
    evaluated_here: bool  # this replica leads the shard (always, without shards)


class StatusView(BaseModel):
    """Shards (daemon.leader_election.shards): which this replica leads, what it evaluates."""

    identity: str | None  # the Leases' holderIdentity of this replica; None without election
    shards: int
    leases: list[str]  # shard i is led through leases[i]
    leading: list[int]
    targets: dict[str, TargetPlacement]


class ColumnView(BaseModel):
    check: str
    column: str
    test: str
    status: str
    n_reference: int
    n_current: int
    n_dropped: int
    statistic: float | None
    pvalue: float | None
    drifted: bool | None
    effect: float | None = None  # the effect size, when the check has an effect floor
    effect_measure: str | None = None
    min_effect: float | None = None


class TargetDetail(TargetView):
    columns: list[ColumnView]
    decisions: list[dict[str, Any]]
    state: dict[str, Any] | None
    config: dict[str, Any]


class ReportView(BaseModel):
    id: str
    target: str
    created_at: str
    phase: str
    evidently: bool
    url: str
    decision: str = ""  # the evaluation's decisions, e.g. "rollback to prior (dry-run)"
    trigger: str = "on demand"  # why it was written: decision, escalation, alert, on demand


class IncidentView(BaseModel):
    id: str
    target: str | None
    started_at: str | None
    phase: str | None
    events: list[dict[str, Any]]


class EvaluateResult(BaseModel):
    target: TargetDetail
    report: ReportView | None


class Investigation(BaseModel):
    target: str
    phase: str | None
    decisions: list[dict[str, Any]]
    report: ReportView | None
    annotation_error: str | None = None


class AlertResult(BaseModel):
    investigated: list[Investigation]
    firing: int
    unmatched: int  # firing alerts that matched no target
    message: str


class ResolveResult(BaseModel):
    """What resolving an incident did to each GitOps object paused for it (restored,
    already_enabled: someone re-enabled its sync by hand, not_paused: nothing to restore)."""

    incident: str
    by: str
    results: list[dict[str, Any]]
    message: str


def api_router(daemon: Daemon) -> APIRouter:
    router = APIRouter()

    def runner_of(name: str) -> TargetRunner:
        runner = daemon.runners.get(name)
        if runner is None:
            raise HTTPException(404, f"no target {name!r}; targets: {sorted(daemon.runners)}")
        return runner

    def report_view(info: ReportInfo) -> ReportView:
        # external_url, or a link relative to the daemon: never the request's Host header,
        # which the caller chooses.
        base = (daemon.config.daemon.alerts.external_url or "").rstrip("/")
        return ReportView(**info.__dict__, url=f"{base}/reports/{info.id}/")

    def elsewhere(name: str | None) -> str:
        what = f"target {name!r} is" if name else "those are"
        return (
            f"{what} evaluated by the replica leading its shard "
            "(daemon.leader_election.shards; GET /api/v1/status on each replica says which)"
        )

    @router.get(
        "/api/v1/status",
        summary="Shards (daemon.leader_election.shards): which this replica leads, which "
        "targets it evaluates",
    )
    def status() -> StatusView:
        return StatusView(**daemon.placement())

    @router.get("/api/v1/targets", summary="Every target: state and checks")
    def list_targets() -> list[TargetView]:
        return [target_view(r) for r in daemon.runners.values()]

    @router.get("/api/v1/targets/{name}", summary="One target: checks, columns, decisions")
    def get_target(name: str) -> TargetDetail:
        return target_detail(runner_of(name))

    @router.post("/api/v1/targets/{name}/evaluate", summary="Evaluate a target now")
    def evaluate_now(
        name: str,
        request: Request,
        report: bool = Query(False, description="also write an investigation report"),
    ) -> EvaluateResult:
        runner = runner_of(name)
        if not daemon.evaluated_here(name):
            raise HTTPException(409, elsewhere(name))
        daemon.log.info("evaluation asked for over HTTP", target=name, by=principal_name(request))
        evaluation, observation = runner.run_observed()
        if evaluation is None:
            raise HTTPException(500, "the evaluation failed; the daemon's log says why")
        written = None
        if report:
            info = daemon.reports.write(
                runner.target, evaluation, observation, daemon.clock(),
                timeline=runner.timeline(),
            )  # fmt: skip
            written = report_view(info)
        return EvaluateResult(target=target_detail(runner), report=written)

    @router.get("/api/v1/incidents", summary="Incidents, newest first, from the journal")
    def list_incidents(
        target: str | None = None, limit: int = Query(50, ge=1, le=1000)
    ) -> list[IncidentView]:
        found = incidents(daemon.journal.entries(for_target(target)))[:limit]
        return [IncidentView(**_finite(i)) for i in found]

    @router.get(
        "/api/v1/audit",
        summary="The audit trail: every rollback, dry-run, refusal and failure, newest first",
    )
    def audit_trail(
        target: str | None = None, limit: int = Query(100, ge=1, le=10_000)
    ) -> list[dict[str, Any]]:
        found = daemon.audit.tail(for_target(target), limit=limit)
        return [_finite(r) for r in reversed(found)]

    @router.get("/api/v1/reports", summary="Investigation reports, newest first")
    def list_reports() -> list[ReportView]:
        return [report_view(info) for info in daemon.reports.list()]

    # Dashboards link here (deploy/grafana): they know the target, not the report's id.
    @router.get(
        "/reports/latest",
        summary="Redirect to the target's newest report (the latest decision's, as reports are "
        "written on decisions)",
        response_class=RedirectResponse,
        status_code=307,
        responses={404: {"description": "The target has no report yet"}},
    )
    def latest_report(
        target: str = Query(..., description="the target's name, as in rules.yaml"),
    ) -> RedirectResponse:
        newest = next((r for r in daemon.reports.list() if r.target == target), None)
        if newest is None:
            raise HTTPException(
                404,
                f"no report of target {target!r} yet: one is written on each decision, or ask "
                f"for one with POST /api/v1/targets/{target}/evaluate?report=true",
            )
        return RedirectResponse(f"{newest.id}/", status_code=307)  # relative: /reports/<id>/

    @router.get(
        "/reports/",
        summary="Investigation reports, newest first (HTML)",
        response_class=HTMLResponse,
    )
    def reports_index() -> HTMLResponse:
        return HTMLResponse(daemon.reports.index_html())

    @router.get("/", summary="The landing page: targets, their state and reports (HTML)",
                response_class=HTMLResponse)  # fmt: skip
    def landing() -> HTMLResponse:
        latest = daemon.reports.latest()
        rows = []
        for name, runner in daemon.runners.items():
            state, workload = runner.state, runner.target.workload
            active = [
                f"{check} ({CheckState(record.state).name.lower()})"
                for check, record in (state.checks.items() if state else ())
                if record.state > CheckState.INACTIVE
            ]
            rows.append(
                {
                    "name": name,
                    "workload": f"{workload.kind} {workload.namespace}/{workload.name or '-'}",
                    "phase": str(state.phase) if state else None,
                    "since": state.since if state else None,
                    "incident": state.incident.id if state and state.incident else None,
                    "active": ", ".join(active),
                    "evaluated_at": state.evaluated_at if state else None,
                    "report": latest.get(name),
                }
            )
        return HTMLResponse(render_landing(daemon.clock(), rows))

    @router.get(
        "/reports/{report_id}/",
        summary="An investigation report (HTML)",
        response_class=HTMLResponse,
        responses={404: {"description": "No such report"}},
    )
    def report_index(report_id: str) -> FileResponse:
        return report_file(report_id, "index.html")

    @router.get(
        "/reports/{report_id}/{name}",
        summary="A file of an investigation report: index.html, evidently.html, report.json",
        response_class=HTMLResponse,
        responses={
            200: {"content": {"text/html": {}, "application/json": {}}},
            404: {"description": "No such report or file"},
        },
    )
    def report_file(report_id: str, name: str) -> FileResponse:
        path = daemon.reports.file(report_id, name)
        if path is None:
            raise HTTPException(404, f"no {name!r} in report {report_id!r}")
        return FileResponse(path)

    @router.post("/api/v1/alerts", summary="Grafana or Alertmanager webhook: investigate now")
    def alert_webhook(payload: AlertWebhook, request: Request) -> AlertResult:
        # Credentials were checked by AuthMiddleware before this body was read.
        runners = daemon.runners
        matched = matched_targets((r.target for r in runners.values()), payload.alerts)
        # Shards: another replica evaluates those; an evaluation here would be a second one.
        led_elsewhere = [name for name in matched if not daemon.evaluated_here(name)]
        matched = {n: alerts for n, alerts in matched.items() if n not in led_elsewhere}
        firing = [a for a in payload.alerts if a.status == "firing"]
        unmatched = [a for a in firing if not any(a in v for v in matched.values())]
        investigations = []
        for name, alerts in matched.items():
            runner = runners[name]
            evaluation, observation = runner.run_observed()
            if evaluation is None:
                investigations.append(
                    Investigation(target=name, phase=None, decisions=[], report=None)
                )
                continue
            now = daemon.clock()
            info = daemon.reports.write(
                runner.target, evaluation, observation, now, summary(alerts),
                trigger="alert", timeline=runner.timeline(),
            )  # fmt: skip
            view = report_view(info)
            grafana = daemon.config.daemon.alerts.grafana
            error = None
            if grafana is not None:
                text = f"mlwatchdog investigated {name}: {info.phase}. Report: {view.url}"
                error = annotate(grafana, name, text, now) or None
            investigations.append(
                Investigation(
                    target=name,
                    phase=str(evaluation.state.phase),
                    decisions=[_finite(to_json(d)) for d in evaluation.decisions],
                    report=view,
                    annotation_error=error,
                )
            )
        if investigations:
            message = f"investigated {', '.join(matched)}"
        elif firing:
            message = (
                "no target matched the firing alerts: label them target=<name>, or set "
                "targets[].alerts in rules.yaml"
            )
        else:
            message = "no firing alerts"
        if led_elsewhere:
            message += f"; not here: {', '.join(led_elsewhere)}, {elsewhere(None)}"
        return AlertResult(
            investigated=investigations,
            firing=len(firing),
            unmatched=len(unmatched),
            message=message,
        )

    # --- GitOps (issue 13): a person resolves an incident; sync paused for it is restored ----
    @router.post(
        "/api/v1/incidents/{incident}/resolve",
        summary="Resolve an incident: restore the Argo CD / Flux sync paused for it (operate)",
    )
    def resolve_incident(incident: str, request: Request) -> ResolveResult:
        by = principal_name(request)
        daemon.log.info("incident resolved over HTTP", incident=incident, by=by)
        results = daemon.resolve_incident(incident, by)
        if results is None:
            raise HTTPException(404, f"no incident {incident!r} in the journal")
        failed = [r for r in results if r["result"] == "failed"]
        if failed:
            raise HTTPException(502, "; ".join(r["detail"] for r in failed))
        restored = [r for r in results if r["result"] == "restored"]
        message = (
            f"sync restored on {', '.join(r['object'] for r in restored)}"
            if restored
            else "nothing to restore: no sync is paused for this incident"
        )
        return ResolveResult(incident=incident, by=by, results=results, message=message)

    # --- end GitOps ---------------------------------------------------------------------------

    return router


def target_view(runner: TargetRunner) -> TargetView:
    return TargetView(**_view_fields(runner))


def target_detail(runner: TargetRunner) -> TargetDetail:
    evaluation = runner.last
    columns = []
    if evaluation is not None:
        for result in evaluation.results:
            for row in result.columns:
                pvalue = row.pvalue_adjusted if row.pvalue_adjusted is not None else row.pvalue
                columns.append(
                    ColumnView(
                        check=result.check,
                        column=row.column,
                        test=str(row.test),
                        status=str(row.status),
                        n_reference=row.n_reference,
                        n_current=row.n_current,
                        n_dropped=row.n_dropped,
                        statistic=_number(row.statistic),
                        pvalue=_number(pvalue),
                        drifted=row.drifted,
                        effect=_number(row.effect),
                        effect_measure=row.effect_measure,
                        min_effect=row.min_effect,
                    )
                )
    return TargetDetail(
        **_view_fields(runner),
        columns=columns,
        decisions=[_finite(to_json(d)) for d in evaluation.decisions] if evaluation else [],
        state=_finite(to_json(runner.state)) if runner.state else None,
        config=_finite(runner.target.model_dump(mode="json", by_alias=True)),
    )


def _view_fields(runner: TargetRunner) -> dict[str, Any]:
    target, state = runner.target, runner.state
    return {
        "name": target.name,
        "workload": target.workload.model_dump(mode="json"),
        "phase": str(state.phase) if state else None,
        "since": state.since if state else None,
        "incident": state.incident.id if state and state.incident else None,
        "evaluated_at": state.evaluated_at if state else None,
        "blind": runner.blindness.blind,
        "blind_since": runner.blindness.since,
        "blind_reason": runner.blindness.reason,
        **people_fields(state),
        "checks": check_views(target, state, runner.last),
    }


def check_views(
    target: Target, state: TargetState | None, evaluation: Evaluation | None
) -> list[CheckView]:
    """Each check of `target`: its state in `state`, its result in `evaluation`."""
    results = {r.check: r for r in evaluation.results} if evaluation else {}
    checks = []
    for check in target.checks:
        record = state.checks.get(check.name) if state else None
        result = results.get(check.name)
        checks.append(
            CheckView(
                name=check.name,
                kind=check.type,
                state=CheckState(record.state).name.lower() if record else "inactive",
                status=str(result.status) if result else None,
                value=_number(result.value) if result else None,
                threshold=_number(result.threshold) if result else None,
                breaching=bool(result and result.breaching),
                reason=result.reason if result else "",
                active_at=record.active_at if record else None,
                fired_at=record.fired_at if record else None,
                interval=[_number(v) for v in result.interval]
                if result and result.interval
                else None,
            )
        )
    return checks


def _number(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _finite(data: Any) -> Any:
    """JSON-ready data with NaN and infinities as None."""
    if isinstance(data, float):
        return _number(data)
    if isinstance(data, dict):
        return {k: _finite(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [_finite(v) for v in data]
    return data


def principal_name(request: Request) -> str:
    """Who made the request (AuthMiddleware's principal), for the log."""
    principal = request.scope.get("state", {}).get("principal")
    return str(getattr(principal, "name", "anonymous"))
