"""The report's pages from Jinja2 templates (package data, autoescaped): one evaluation's report,
the index of reports, and the daemon's landing page. One time format everywhere: UTC, ISO 8601,
to the second (`utc_text`)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any

import jinja2
from markupsafe import Markup

from mlwatchdog.core import CheckState, Evaluation, Observation, base_check
from mlwatchdog.detectors import ColumnResult
from mlwatchdog.detectors.registry import REGISTRY
from mlwatchdog.report.figures import column_figures, timeline_figures
from mlwatchdog.rules import DriftCheck, MetricCheck, PerformanceCheck, Target

HISTORY_COLUMNS = ("at", "kind", "incident", "phase", "decision", "detail")
ACTION_COLUMNS = ("at", "who", "result", "to", "dry_run", "detail")
ALERT_COLUMNS = ("status", "alertname", "labels", "startsAt")


def utc_text(value: Any) -> str:
    """A time as every page shows it: 2026-11-25T12:00:00Z ('-' for none; text that is not a
    time is shown as it is)."""
    if value is None or value == "":
        return "-"
    moment = value
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
    if hasattr(moment, "to_pydatetime"):
        moment = moment.to_pydatetime()
    if not isinstance(moment, datetime):
        return str(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("mlwatchdog.report", "templates"),
        autoescape=True,  # every value is escaped; only our own SVG is marked safe
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["utc"] = utc_text
    return env


@dataclass(frozen=True)
class ReportPage:
    """What one report shows. `timeline`: rows as `replay.timeline` makes them (time, check,
    value, threshold, check_state, ...); `marks`: (time, label) of decisions on the timeline;
    `evidently_error`: None when there is no Evidently page at all (a report built offline)."""

    target: Target
    created_at: datetime
    evaluation: Evaluation
    observation: Observation | None
    why: str = "on demand"
    timeline: Sequence[Mapping[str, Any]] = ()
    marks: Sequence[tuple[datetime, str]] = ()
    history: Sequence[Mapping[str, Any]] = ()
    actions: Sequence[Mapping[str, Any]] = ()
    alerts: Sequence[Mapping[str, Any]] = ()
    evidently_error: str | None = None
    source: str = ""
    index_link: bool = False
    connect: bool = True  # False: the timeline has the changes only (bundles): points, no lines
    timeline_what: str = "at every evaluation"


def render_report(page: ReportPage) -> str:
    target, evaluation, observation = page.target, page.evaluation, page.observation
    state = evaluation.state
    records = state.checks
    active = {
        r.check
        for r in evaluation.results
        if r.breaching or (r.check in records and records[r.check].state > CheckState.INACTIVE)
    }
    samples = observation.samples if observation is not None else None
    reference = observation.reference if observation is not None else None
    base_results = [r for r in evaluation.results if "[" not in r.check]
    figures = column_figures(target, base_results, reference, samples, active)
    if reference is None or samples is None:
        no_plots = (
            "No per-column plots: this report has no window and reference to draw them from"
            + (" (a replay timeline keeps the results only)." if page.source else ".")
        )
    else:
        no_plots = "No drift check tested any column in this evaluation."
    chosen = {f.check for f in figures}
    note = (
        "The drift checks that are breaching, pending or firing."
        if chosen and chosen <= active
        else "Every drift check (none is active)."
    )
    times = [utc_text(r["time"]) for r in page.timeline]
    span = f", {min(times)} to {max(times)}" if times else ""
    metrics = observation.metrics if observation is not None else {}
    return (
        environment()
        .get_template("report.html.j2")
        .render(
            target=target,
            created_at=page.created_at,
            why=page.why,
            source=page.source,
            index_link=page.index_link,
            phase=str(state.phase),
            since=state.since,
            incident=state.incident.id if state.incident else None,
            decisions=[
                {
                    "what": f"{d.kind} to {d.to}" if d.to else str(d.kind),
                    "dry_run": str(d.kind) == "rollback" and d.dry_run,
                    "reasons": "; ".join(d.reasons),
                }
                for d in evaluation.decisions
            ],
            checks=[_check_row(target, r, records.get(r.check)) for r in evaluation.results],
            timelines=[
                _safe(f)
                for f in timeline_figures(target, page.timeline, page.marks, connect=page.connect)
            ],
            timeline_span=span,
            timeline_what=page.timeline_what,
            column_figures=[_safe(f) for f in figures],
            plots_note=note,
            no_plots_reason=no_plots,
            columns=[_column_row(r.check, c) for r in evaluation.results for c in r.columns],
            evidently_error=page.evidently_error,
            metrics=[
                {"name": n, "status": str(m.status), "value": _num(m.value), "reason": m.reason}
                for n, m in metrics.items()
            ],
            history=_table(page.history, HISTORY_COLUMNS),
            actions=_table(page.actions, ACTION_COLUMNS),
            alerts=_table(page.alerts, ALERT_COLUMNS),
        )
    )


def render_index(reports: Sequence[Any]) -> str:
    """The list of reports (objects with id, created_at, target, phase, decision, trigger)."""
    return environment().get_template("index.html.j2").render(reports=reports)


def render_landing(now: datetime, targets: Sequence[Mapping[str, Any]]) -> str:
    """The daemon's front page: each target's state and latest report, and where to go next."""
    return environment().get_template("landing.html.j2").render(now=now, targets=targets)


# ------------------------------------------------------------------------------------ rows


def _check_row(target: Target, result: Any, record: Any) -> dict[str, Any]:
    try:
        check = target.check(base_check(result.check))
    except StopIteration:
        check = None
    kind, compared, test, floor = "-", "-", "-", "-"
    threshold = result.threshold
    if isinstance(check, DriftCheck):
        kind = f"drift ({check.test})"
        compared = f"drift_share {threshold:g}" if threshold is not None else "-"
        # As measured; a replay timeline keeps no test threshold: then the check's setting.
        limit = result.test_threshold
        if limit is None:
            limit = check.threshold or REGISTRY[check.test].default_threshold
        if str(check.test) == "psi":
            test = f"PSI \u2265 {limit:g}"
        else:
            correction = "" if str(check.correction) == "none" else f", {check.correction}"
            test = f"p < alpha {limit:g}{correction}"
        if check.effect is not None:
            minimum = result.effect_floor if result.effect_floor is not None else check.effect.min
            floor = f"{check.effect.measure} \u2265 {minimum:g}"
    elif isinstance(check, MetricCheck | PerformanceCheck):
        kind = "metric" if isinstance(check, MetricCheck) else f"performance ({check.metric})"
        side = "above" if check.above is not None else "below"
        compared = f"{side} {threshold:g}" if threshold is not None else "-"
    value = _num(result.value)
    if result.interval is not None:
        value += f" [{_num(result.interval[0])}, {_num(result.interval[1])}]"
    return {
        "name": result.check,
        "kind": kind,
        "status": str(result.status),
        "value": value,
        "compared": compared,
        "test_threshold": test,
        "effect_floor": floor,
        "breaching": result.breaching,
        "state": CheckState(record.state).name.lower() if record else "-",
        "active_at": record.active_at if record else None,
        "reason": result.reason,
    }


def _column_row(check: str, row: ColumnResult) -> dict[str, Any]:
    pvalue = row.pvalue_adjusted if row.pvalue_adjusted is not None else row.pvalue
    effect = "-"
    if row.effect_measure is not None:
        effect = f"{row.effect_measure} {_num(row.effect)} (>= {row.min_effect:g})"
    return {
        "check": check,
        "column": row.column,
        "test": str(row.test),
        "n_reference": row.n_reference,
        "n_current": row.n_current,
        "statistic": _num(row.statistic),
        "pvalue": _num(pvalue),
        "effect": effect,
        "drifted": row.drifted,
    }


def _table(entries: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> dict[str, Any]:
    rows = []
    for entry in entries:
        cells = []
        for c in columns:
            value = entry.get(c)
            if c == "alertname" and value is None:
                value = (entry.get("labels") or {}).get("alertname")
            if c in ("at", "startsAt") and value:
                text = utc_text(value)
            elif isinstance(value, dict | list):
                text = json.dumps(value)
            else:
                text = "" if value is None else str(value)
            cells.append(text)
        rows.append(cells)
    return {"columns": list(columns), "rows": rows}


def _safe(figure: Any) -> dict[str, Any]:
    """A figure for the template: its SVG (escaped where it was built) marked safe."""
    return {**figure.__dict__, "svg": Markup(figure.svg)}


def _num(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:.3g}" if abs(value) < 1e-3 and value != 0 else f"{value:.4f}"
