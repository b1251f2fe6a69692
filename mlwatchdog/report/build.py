"""`mlwatchdog report`: the report's page built offline, from an incident bundle (the window and
reference it holds give the per-column plots; the bundles of the same target beside it give the
timeline) or from a replay timeline (`mlwatchdog replay --out`: the timeline and the checks)."""

from __future__ import annotations

import json
import posixpath
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import fsspec
import pandas as pd

from mlwatchdog.core import (
    CheckRecord,
    CheckResult,
    CheckState,
    DataStatus,
    Decision,
    DecisionKind,
    Evaluation,
    Incident,
    Phase,
    TargetState,
    from_json,
)
from mlwatchdog.errors import InputError
from mlwatchdog.replay.bundle import list_bundles, load_bundle
from mlwatchdog.replay.timeline import TIMELINE_COLUMNS, timeline_rows
from mlwatchdog.report.page import ReportPage, render_report
from mlwatchdog.rules import Config
from mlwatchdog.sources.tables import read_parquet

MAX_BUNDLES = 500  # of the same target, for the timeline


def from_bundle(path: str) -> str:
    """The page of the evaluation a bundle recorded."""
    bundle = load_bundle(path)
    recorded = bundle.recorded
    target = recorded.target
    timeline, history, marks = _bundle_history(path, target.name, recorded.at)
    evaluation = Evaluation(
        recorded.state_after, recorded.evaluation.decisions, recorded.evaluation.results
    )
    return render_report(
        ReportPage(
            target=target,
            created_at=recorded.at,
            evaluation=evaluation,
            observation=recorded.observation,
            why=f"bundle event {bundle.manifest.get('event', '')}",
            timeline=timeline,
            marks=marks,
            history=history,
            actions=list(recorded.actions),
            source=f"bundle {posixpath.basename(path.rstrip('/'))}",
            connect=False,  # bundles are written on changes: what lies between is unknown
            timeline_what="at each change of state (the bundles of this target beside it)",
        )
    )


def from_timeline(path: str, config: Config, target_name: str | None) -> str:
    """The page of a replay timeline's latest decision (or its last step without one)."""
    frame = _read_timeline(path)
    names = sorted(frame["target"].dropna().unique())
    if target_name is None:
        if len(names) != 1:
            raise InputError(f"{path} has targets {names}; choose one with --target")
        target_name = names[0]
    if target_name not in names:
        raise InputError(f"{path} has no rows of target {target_name!r}; it has {names}")
    try:
        target = config.target(target_name)
    except StopIteration:
        raise InputError(
            f"target {target_name!r} is not in the rules file; give the one the timeline was "
            "replayed with (--config)"
        ) from None
    rows: list[dict[str, Any]] = [
        {str(k): (None if _missing(v) else v) for k, v in r.items()}
        for r in frame[frame["target"] == target_name].to_dict("records")
    ]
    for row in rows:
        row["time"] = pd.Timestamp(row["time"]).to_pydatetime()
    rows.sort(key=lambda r: r["time"])
    decided = [r["time"] for r in rows if r.get("decision")]
    moment: datetime = (decided or [r["time"] for r in rows])[-1]
    step = [r for r in rows if r["time"] == moment]
    marks = [(r["time"], str(r["decision"])) for r in rows if r.get("decision")]
    history = [
        {"at": r["time"], "kind": "decision", "incident": r.get("incident"),
         "phase": r.get("target_state"), "decision": r.get("decision")}
        for r in rows if r.get("decision")
    ]  # fmt: skip
    return render_report(
        ReportPage(
            target=target,
            created_at=moment,
            evaluation=_evaluation_of(target_name, step, moment),
            observation=None,
            why="replay timeline",
            timeline=rows,
            marks=marks,
            history=history,
            source=f"timeline {posixpath.basename(path)}",
            timeline_what="at every replayed step",
        )
    )


def _evaluation_of(target: str, step: Sequence[Mapping[str, Any]], at: datetime) -> Evaluation:
    """One step of a timeline as the Evaluation the page shows (results, check states, the
    decisions; their reasons are not in a timeline)."""
    first = step[0]
    incident = first.get("incident")
    kinds = [k for k in str(first.get("decision") or "").split(",") if k]
    decisions = tuple(
        Decision(DecisionKind(k), target, incident or "", at, (), to=first.get("decision_to"))
        for k in kinds
        if k in DecisionKind.__members__.values()
    )
    state = TargetState(
        target=target,
        phase=Phase(first.get("target_state") or "healthy"),
        checks={
            str(r["check"]): CheckRecord(
                state=CheckState[str(r.get("check_state") or "inactive").upper()]
            )
            for r in step
        },
        incident=Incident(incident, at) if incident else None,
        evaluated_at=at,
    )
    results = tuple(
        CheckResult(
            check=str(r["check"]),
            status=DataStatus(r.get("status") or "no_data"),
            breaching=bool(r.get("breaching")),
            value=r.get("value"),
            threshold=r.get("threshold"),
            reason=str(r.get("reason") or ""),
        )
        for r in step
    )
    return Evaluation(state, decisions, results)


def _read_timeline(path: str) -> pd.DataFrame:
    if path.endswith(".parquet"):
        frame = read_parquet(path)
    elif path.endswith(".csv"):
        frame = pd.read_csv(path)
    else:
        raise InputError(f"{path}: a timeline is a .parquet or .csv file (mlwatchdog replay --out)")
    missing = [c for c in TIMELINE_COLUMNS if c not in frame.columns]
    if missing:
        raise InputError(f"{path} is not a replay timeline: no column(s) {missing}")
    frame["time"] = pd.to_datetime(frame["time"], utc=True)
    return frame


def _bundle_history(
    path: str, target: str, until: datetime
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[tuple[datetime, str]]]:
    """Timeline rows, state history and decision marks from the manifests of the bundles of
    `target` beside `path`, up to `until` (bundles are written on every change: the points
    where something happened)."""
    parent = posixpath.dirname(path.rstrip("/"))
    timeline: list[dict[str, Any]] = []
    history: list[dict[str, Any]] = []
    marks: list[tuple[datetime, str]] = []
    fs, _ = fsspec.core.url_to_fs(parent or ".")
    manifests = []
    for found in list_bundles(parent or "."):
        _, root = fsspec.core.url_to_fs(found)
        try:
            with fs.open(posixpath.join(root, "manifest.json"), "r") as f:
                manifest = json.load(f)
        except (OSError, ValueError):
            continue
        if manifest.get("target") != target:
            continue
        at = datetime.fromisoformat(manifest["at"])
        if at <= until:
            manifests.append((at, manifest))
    for at, manifest in manifests[-MAX_BUNDLES:]:
        recorded = manifest["evaluation"]
        evaluation = Evaluation(
            from_json(TargetState, manifest["state_after"]),
            tuple(from_json(Decision, d) for d in recorded["decisions"]),
            tuple(from_json(CheckResult, r) for r in recorded["results"]),
        )
        timeline += timeline_rows(target, at, evaluation)
        state = evaluation.state
        kinds = ",".join(str(d.kind) for d in evaluation.decisions)
        history.append(
            {"at": at, "kind": manifest.get("event"), "phase": str(state.phase),
             "incident": state.incident.id if state.incident else None, "decision": kinds}
        )  # fmt: skip
        marks += [(at, str(d.kind)) for d in evaluation.decisions]
    return timeline, history, marks


def _missing(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False
