"""Investigation reports: what an on-call engineer opens from an alert. One folder per report
under `daemon.reports.path`: `index.html` (mlwatchdog's page of the decision: state, checks
against thresholds, per-column drift, metric values, state history, actions), `evidently.html`
(Evidently's data drift report of the current window against the reference) and `report.json`.

Written by the alert webhook and `POST /api/v1/targets/{name}/evaluate?report=true`.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from mlwatchdog.actions.audit import AuditLog
from mlwatchdog.core import CheckState, Evaluation, Observation, base_check, to_json
from mlwatchdog.daemon.journal import Journal, for_target
from mlwatchdog.detectors import ColumnResult
from mlwatchdog.rules import MetricCheck, PerformanceCheck, Target
from mlwatchdog.rules.schema import Reports
from mlwatchdog.rules.secret import Redactor

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class ReportInfo:
    id: str
    target: str
    created_at: str
    phase: str
    evidently: bool  # False when Evidently could not render (the reason is in report.json)


class ReportWriter:
    """Writes and lists reports; keeps the newest `settings.keep`."""

    def __init__(
        self,
        settings: Reports,
        journal: Journal,
        audit: AuditLog,
        observer: Any,
        log: Any,
        redactor: Redactor | None = None,
    ) -> None:
        self.settings = settings
        self.directory = Path(settings.path)
        self.journal = journal
        self.audit = audit
        self.observer = observer
        self.log = log
        self.redactor = redactor if redactor is not None else Redactor()
        # Publishing a report (the rename into place) and pruning old ones never overlap.
        self._publish = threading.Lock()

    def write(
        self,
        target: Target,
        evaluation: Evaluation,
        observation: Observation | None,
        now: datetime,
        alerts: list[dict[str, Any]] | None = None,
    ) -> ReportInfo:
        report_id = f"{target.name}-{now:%Y%m%dT%H%M%S%fZ}"
        # Written in a hidden folder and renamed into place when whole: a reader never sees half
        # a report, and pruning (which lists only published ones) never deletes one being written.
        folder = self.directory / f".writing-{report_id}-{uuid.uuid4().hex[:8]}"
        folder.mkdir(parents=True)
        try:
            info = self._write(folder, report_id, target, evaluation, observation, now, alerts)
            with self._publish:
                final = self.directory / report_id
                if final.exists():  # the same target and microsecond: keep the newer
                    shutil.rmtree(final, ignore_errors=True)
                os.replace(folder, final)
                self._prune()
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        self.log.info("investigation report written", report=report_id, target=target.name)
        return info

    def _write(
        self,
        folder: Path,
        report_id: str,
        target: Target,
        evaluation: Evaluation,
        observation: Observation | None,
        now: datetime,
        alerts: list[dict[str, Any]] | None,
    ) -> ReportInfo:
        evidently_error = self._evidently(target, observation, folder / "evidently.html")
        phase = str(evaluation.state.phase)
        info = ReportInfo(report_id, target.name, now.isoformat(), phase, not evidently_error)
        summary = {
            **info.__dict__,
            "evidently_error": evidently_error,
            "alerts": alerts or [],
            "state": to_json(evaluation.state),
            "decisions": [to_json(d) for d in evaluation.decisions],
            "results": [to_json(r) for r in evaluation.results],
        }
        page = render_page(
            target,
            evaluation,
            observation,
            history=self.journal.tail(for_target(target.name), limit=50),
            actions=self.audit.tail(for_target(target.name), limit=20),
            alerts=alerts or [],
            evidently_error=evidently_error,
            created_at=now,
        )
        scrub = self.redactor.text
        (folder / "index.html").write_text(scrub(page), encoding="utf-8")
        summary_text = json.dumps(self.redactor.data(summary), indent=2, default=str)
        (folder / "report.json").write_text(summary_text, encoding="utf-8")
        return info

    def list(self) -> list[ReportInfo]:
        infos = []
        for path in self.directory.glob("*/report.json"):
            if not _ID.match(path.parent.name):
                continue  # a report still being written
            try:
                data = json.loads(path.read_text())
                infos.append(ReportInfo(**{k: data[k] for k in ReportInfo.__dataclass_fields__}))
            except (ValueError, KeyError, TypeError, OSError):
                continue  # a report being written or removed
        return sorted(infos, key=lambda r: r.created_at, reverse=True)

    def file(self, report_id: str, name: str) -> Path | None:
        """The path of a report's file, or None (also for any name that could escape the folder)."""
        if not _ID.match(report_id) or name not in ("index.html", "evidently.html", "report.json"):
            return None
        path = self.directory / report_id / name
        return path if path.is_file() else None

    def _evidently(self, target: Target, observation: Observation | None, out: Path) -> str:
        """Evidently's data drift report; '' when written, else why not."""
        if observation is None or observation.samples is None or len(observation.samples) == 0:
            return "no current samples in the window"
        try:
            reference = self.observer.reference_frame(target)
        except Exception as exc:  # a source failure: the rest of the report still helps
            return f"the reference could not be read: {exc}"
        if reference is None or len(reference) == 0:
            return "the reference is empty"
        try:
            from evidently import DataDefinition, Dataset, Report
            from evidently.presets import DataDriftPreset

            kinds = target.columns.all
            numeric = [c for c, k in kinds.items() if str(k) == "numeric"]
            categorical = [c for c, k in kinds.items() if str(k) != "numeric"]
            definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
            columns = list(kinds)
            current = _sample(observation.samples[columns], self.settings.max_rows)
            reference = _sample(reference[columns], self.settings.max_rows)
            snapshot = Report([DataDriftPreset()]).run(
                Dataset.from_pandas(current, data_definition=definition),
                Dataset.from_pandas(reference, data_definition=definition),
            )
            snapshot.save_html(str(out))
        except Exception as exc:  # Evidently is a view: its failure must not lose the report
            self.log.warning("evidently report failed", target=target.name, error=str(exc))
            return f"Evidently failed: {type(exc).__name__}: {exc}"
        return ""

    def _prune(self) -> None:
        """Delete the oldest published reports beyond `keep` (by id: target, then time)."""
        published = sorted(
            (p for p in self.directory.iterdir() if p.is_dir() and _ID.match(p.name)),
            key=lambda p: p.name.rsplit("-", 1)[-1],
        )
        for old in published[: max(0, len(published) - self.settings.keep)]:
            shutil.rmtree(old, ignore_errors=True)


def _sample(frame: Any, rows: int) -> Any:
    return frame.sample(rows, random_state=0) if len(frame) > rows else frame


# ------------------------------------------------------------------------------------ the page

_YES = "<span class='yes'>yes</span>"
_NO = "<span class='no'>no</span>"
_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px;color:#1d2433;max-width:1200px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;width:100%;margin:6px 0}
th,td{border:1px solid #d8dce3;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f3f5f8}td.num{text-align:right;font-variant-numeric:tabular-nums}
.phase{display:inline-block;padding:2px 10px;border-radius:10px;color:#fff;font-weight:600}
.healthy{background:#2e7d32}.degraded{background:#ef6c00}.rolling_back{background:#6a1b9a}
.verifying{background:#1565c0}.escalated{background:#c62828}
.yes{color:#c62828;font-weight:600}.no{color:#2e7d32}.muted{color:#6b7280}
"""


def render_page(
    target: Target,
    evaluation: Evaluation,
    observation: Observation | None,
    history: list[dict[str, Any]],
    actions: list[dict[str, Any]],
    alerts: list[dict[str, Any]],
    evidently_error: str,
    created_at: datetime,
) -> str:
    """mlwatchdog's own page of one evaluation. Every value is escaped."""
    e = html.escape
    state = evaluation.state
    phase = str(state.phase)
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>mlwatchdog: {e(target.name)} at {e(created_at.isoformat())}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Investigation of {e(target.name)}</h1>",
        f"<p class='muted'>{e(created_at.isoformat())} &middot; workload "
        f"{e(target.workload.kind)} {e(target.workload.namespace)}/{e(target.workload.name or '-')}"
        "</p>",
        "<section id='decision'><h2>Decision</h2>",
        f"<p>State <span class='phase {e(phase)}'>{e(phase)}</span> since "
        f"{e(str(state.since))}; incident {e(state.incident.id if state.incident else 'none')}</p>",
    ]
    if evaluation.decisions:
        parts.append("<ul>")
        for d in evaluation.decisions:
            what = f"{d.kind} to {d.to}" if d.to else str(d.kind)
            dry = " (dry-run)" if d.kind == "rollback" and d.dry_run else ""
            reasons = "; ".join(d.reasons)
            parts.append(f"<li><b>{e(what)}{dry}</b>: {e(reasons)}</li>")
        parts.append("</ul>")
    else:
        parts.append("<p>No decision in this evaluation.</p>")
    parts.append("</section>")

    parts.append("<section id='checks'><h2>Checks</h2><table><tr><th>check</th><th>kind</th>"
                 "<th>data</th><th>value</th><th>threshold</th><th>breaching</th><th>state</th>"
                 "<th>active since</th><th>reason</th></tr>")  # fmt: skip
    for result in evaluation.results:
        check = target.check(base_check(result.check))
        record = state.checks.get(result.check)
        kind = (
            "metric"
            if isinstance(check, MetricCheck)
            else f"performance ({check.metric})"
            if isinstance(check, PerformanceCheck)
            else f"drift ({check.test})"
        )
        breach = _YES if result.breaching else _NO
        check_state = CheckState(record.state).name.lower() if record else "-"
        parts.append(
            f"<tr><td>{e(result.check)}</td><td>{e(kind)}</td><td>{e(str(result.status))}</td>"
            f"<td class='num'>{_num(result.value)}{_interval(result.interval)}</td>"
            f"<td class='num'>{_num(result.threshold)}"
            f"</td><td>{breach}</td><td>{e(check_state)}</td>"
            f"<td>{e(str(record.active_at) if record and record.active_at else '-')}</td>"
            f"<td>{e(result.reason)}</td></tr>"
        )
    parts.append("</table></section>")

    parts.append("<section id='columns'><h2>Drift per column</h2><table><tr><th>check</th>"
                 "<th>column</th><th>test</th><th>n reference</th><th>n current</th>"
                 "<th>statistic</th><th>p-value</th><th>effect (floor)</th><th>drifted</th>"
                 "</tr>")  # fmt: skip
    for result in evaluation.results:
        for row in result.columns:
            pvalue = row.pvalue_adjusted if row.pvalue_adjusted is not None else row.pvalue
            drifted = {True: _YES, False: _NO}
            parts.append(
                f"<tr><td>{e(result.check)}</td><td>{e(row.column)}</td><td>{e(str(row.test))}"
                f"</td><td class='num'>{row.n_reference}</td><td class='num'>{row.n_current}</td>"
                f"<td class='num'>{_num(row.statistic)}</td><td class='num'>{_num(pvalue)}</td>"
                f"<td class='num'>{e(_effect(row))}</td>"
                f"<td>{drifted.get(row.drifted, 'insufficient')}</td></tr>"  # type: ignore[arg-type]
            )
    parts.append("</table>")
    if evidently_error:
        parts.append(f"<p class='muted'>Evidently report unavailable: {e(evidently_error)}</p>")
    else:
        parts.append("<p><a href='evidently.html'>Evidently data drift report</a></p>")
    parts.append("</section>")

    metrics = observation.metrics if observation is not None else {}
    parts.append("<section id='metrics'><h2>Metrics</h2>")
    if metrics:
        parts.append("<table><tr><th>check</th><th>data</th><th>value</th><th>note</th></tr>")
        for name, reading in metrics.items():
            parts.append(
                f"<tr><td>{e(name)}</td><td>{e(str(reading.status))}</td>"
                f"<td class='num'>{_num(reading.value)}</td><td>{e(reading.reason)}</td></tr>"
            )
        parts.append("</table>")
    else:
        parts.append("<p class='muted'>No metric checks.</p>")
    parts.append("</section>")

    parts.append("<section id='history'><h2>State history</h2>")
    parts.append(_entries_table(history, ("at", "kind", "incident", "phase", "decision", "detail")))
    parts.append("</section><section id='actions'><h2>Actions</h2>")
    parts.append(_entries_table(actions, ("at", "who", "result", "to", "dry_run", "detail")))
    parts.append("</section><section id='alerts'><h2>Alerts</h2>")
    parts.append(_entries_table(alerts, ("status", "alertname", "labels", "startsAt")))
    parts.append("</section></body></html>")
    return "\n".join(parts)


def _entries_table(entries: list[dict[str, Any]], columns: tuple[str, ...]) -> str:
    if not entries:
        return "<p class='muted'>None.</p>"
    e = html.escape
    head = "".join(f"<th>{e(c)}</th>" for c in columns)
    rows = []
    for entry in entries:
        cells = []
        for c in columns:
            value = entry.get(c)
            if c == "alertname" and value is None:
                value = (entry.get("labels") or {}).get("alertname")
            text = json.dumps(value) if isinstance(value, dict | list) else str(value or "")
            cells.append(f"<td>{e(text)}</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def _effect(row: ColumnResult) -> str:
    """The effect and its floor, e.g. 'wasserstein 0.52 (>= 0.1)'; '-' without a floor."""
    if row.effect_measure is None:
        return "-"
    return f"{row.effect_measure} {_num(row.effect)} (>= {row.min_effect:g})"


def _interval(interval: tuple[float, float] | None) -> str:
    """A performance check's confidence interval after its value ('' for other checks)."""
    return "" if interval is None else f" [{_num(interval[0])}, {_num(interval[1])}]"


def _num(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3g}" if abs(value) < 1e-3 and value != 0 else f"{value:.4f}"
