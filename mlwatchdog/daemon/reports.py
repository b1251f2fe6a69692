"""Investigation reports: what an on-call engineer opens from an alert or a decision. One folder
per report under `daemon.reports.path` (default: `reports` beside `state_dir`): `index.html`
(mlwatchdog's page, `mlwatchdog.report`: the decision, checks against their thresholds, each
check's timeline, reference-against-current plots per column, metric values, state history,
actions), `evidently.html` (Evidently's data drift report of the current window against the
reference) and `report.json`.

Written by the runner on every decision and escalation (in the background, so the evaluation
loop never waits for it), by the alert webhook, and by
`POST /api/v1/targets/{name}/evaluate?report=true`.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import threading
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from mlwatchdog.actions.audit import AuditLog
from mlwatchdog.core import Evaluation, Observation, to_json
from mlwatchdog.daemon.journal import Journal, for_target
from mlwatchdog.report.page import ReportPage, render_index, render_report, utc_text
from mlwatchdog.rules import Target
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
    decision: str = ""  # the decisions of the evaluation, e.g. "rollback to prior (dry-run)"
    trigger: str = "on demand"  # why it was written: decision, escalation, alert, on demand


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
        directory: str | None = None,
    ) -> None:
        self.settings = settings
        # `directory`: where the daemon put it (default: `DaemonSettings.beside_state`).
        self.directory = Path(directory or settings.path or ".mlwatchdog/reports")
        self.journal = journal
        self.audit = audit
        self.observer = observer
        self.log = log
        self.redactor = redactor if redactor is not None else Redactor()
        # Publishing a report (the rename into place) and pruning old ones never overlap.
        self._publish = threading.Lock()
        # Reports of decisions are written by one daemon thread, off the evaluation thread: at
        # exit it is waited for a while (`wait`), never for long (Evidently can take seconds).
        self._queue: queue.SimpleQueue[tuple[tuple[Any, ...], dict[str, Any]]] = queue.SimpleQueue()
        self._pending = 0
        self._idle = threading.Condition()
        self._worker: threading.Thread | None = None

    def submit(self, *args: Any, **kwargs: Any) -> None:
        """`write` in the background; a failure is logged, never raised into the caller."""
        with self._idle:
            self._pending += 1
            if self._worker is None:
                self._worker = threading.Thread(target=self._work, name="reports", daemon=True)
                self._worker.start()
        self._queue.put((args, kwargs))

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the reports submitted are written; False if some still are at `timeout`."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def _work(self) -> None:
        while True:
            args, kwargs = self._queue.get()
            try:
                self._write_logged(*args, **kwargs)
            finally:
                with self._idle:
                    self._pending -= 1
                    self._idle.notify_all()

    def _write_logged(self, *args: Any, **kwargs: Any) -> ReportInfo | None:
        try:
            return self.write(*args, **kwargs)
        except Exception:  # a report is a view: failing to write one must not stop anything
            self.log.exception("investigation report not written")
            return None

    def write(
        self,
        target: Target,
        evaluation: Evaluation,
        observation: Observation | None,
        now: datetime,
        alerts: list[dict[str, Any]] | None = None,
        *,
        trigger: str = "on demand",
        timeline: Sequence[Mapping[str, Any]] = (),
    ) -> ReportInfo:
        """Write one report of `evaluation`; `timeline`: the target's recent evaluations as
        timeline rows (`replay.timeline.timeline_rows`), drawn per check."""
        report_id = f"{target.name}-{now:%Y%m%dT%H%M%S%fZ}"
        # Written in a hidden folder and renamed into place when whole: a reader never sees half
        # a report, and pruning (which lists only published ones) never deletes one being written.
        folder = self.directory / f".writing-{report_id}-{uuid.uuid4().hex[:8]}"
        folder.mkdir(parents=True)
        try:
            info = self._write(
                folder, report_id, target, evaluation, observation, now, alerts, trigger, timeline
            )
            with self._publish:
                final = self.directory / report_id
                if final.exists():  # the same target and microsecond: keep the newer
                    shutil.rmtree(final, ignore_errors=True)
                os.replace(folder, final)
                self._prune()
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        self.log.info(
            "investigation report written", report=report_id, target=target.name, trigger=trigger
        )
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
        trigger: str,
        timeline: Sequence[Mapping[str, Any]],
    ) -> ReportInfo:
        evidently_error = self._evidently(target, observation, folder / "evidently.html")
        phase = str(evaluation.state.phase)
        info = ReportInfo(
            report_id, target.name, utc_text(now), phase, not evidently_error,
            decision=decisions_text(evaluation), trigger=trigger,
        )  # fmt: skip
        summary = {
            **info.__dict__,
            "evidently_error": evidently_error,
            "alerts": alerts or [],
            "state": to_json(evaluation.state),
            "decisions": [to_json(d) for d in evaluation.decisions],
            "results": [to_json(r) for r in evaluation.results],
        }
        # Up to this evaluation: a report written in the background, or of an earlier
        # evaluation, shows no later events.
        history = _until(self.journal.tail(for_target(target.name), limit=200), now)
        page = render_report(
            ReportPage(
                target=target,
                created_at=now,
                evaluation=evaluation,
                observation=observation,
                why=trigger,
                timeline=timeline,
                marks=journal_marks(history),
                history=history[-50:],
                actions=_until(self.audit.tail(for_target(target.name), limit=20), now),
                alerts=alerts or [],
                evidently_error=evidently_error,
                index_link=True,
            )
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
                fields = {k: data[k] for k in ReportInfo.__dataclass_fields__ if k in data}
                infos.append(ReportInfo(**fields))
            except (ValueError, KeyError, TypeError, OSError):
                continue  # a report being written or removed
        # Ids end with the time to the microsecond: the order within one second.
        return sorted(infos, key=lambda r: (utc_text(r.created_at), r.id[-23:]), reverse=True)

    def index_html(self) -> str:
        """The index page of every report, newest first."""
        return render_index(self.list())

    def latest(self) -> dict[str, ReportInfo]:
        """Each target's newest report."""
        newest: dict[str, ReportInfo] = {}
        for info in self.list():
            newest.setdefault(info.target, info)
        return newest

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


def decisions_text(evaluation: Evaluation) -> str:
    """The decisions as the index lists them: "rollback to prior (dry-run), escalate"."""
    texts = []
    for d in evaluation.decisions:
        text = f"{d.kind} to {d.to}" if d.to else str(d.kind)
        if str(d.kind) == "rollback" and d.dry_run:
            text += " (dry-run)"
        texts.append(text)
    return ", ".join(texts)


def journal_marks(entries: Sequence[Mapping[str, Any]]) -> list[tuple[datetime, str]]:
    """The journal's decisions as timeline markers: (time, "rollback")."""
    marks = []
    for entry in entries:
        if entry.get("kind") != "decision" or not entry.get("at"):
            continue
        try:
            at = datetime.fromisoformat(str(entry["at"]))
        except ValueError:
            continue
        marks.append((at, str(entry.get("decision") or "decision")))
    return marks


def _until(entries: Sequence[Mapping[str, Any]], now: datetime) -> list[Mapping[str, Any]]:
    """The records at or before `now` (those without a readable time are kept)."""
    kept = []
    for entry in entries:
        try:
            at = datetime.fromisoformat(str(entry.get("at")))
        except ValueError:
            at = None
        if at is None or at.tzinfo is None or at <= now:
            kept.append(entry)
    return kept
