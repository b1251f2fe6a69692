"""One target's evaluation loop body: observe, evaluate, persist, act, record (the shell's steps).

The scheduler calls `run_once` at the target's interval, never twice at a time for one target.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Protocol

from mlwatchdog.actions.audit import AuditLog
from mlwatchdog.core import (
    ActionOutcome,
    CheckState,
    DataStatus,
    Decision,
    DecisionKind,
    Evaluation,
    Observation,
    Phase,
    TargetState,
    WorkloadHealth,
    adopted,
    evaluate,
    record_action,
)
from mlwatchdog.core.blind import Blindness, blindness
from mlwatchdog.core.people import fresh
from mlwatchdog.daemon.faults import Faults
from mlwatchdog.daemon.journal import Journal
from mlwatchdog.daemon.metrics import DaemonMetrics
from mlwatchdog.daemon.reload import carry_state
from mlwatchdog.daemon.reports import ReportWriter
from mlwatchdog.daemon.state_store import StateStore
from mlwatchdog.replay.bundle import BundleWriter, Recorded
from mlwatchdog.replay.timeline import timeline_rows
from mlwatchdog.rules import Target
from mlwatchdog.rules.schema import Revisions
from mlwatchdog.sources.observe import Observer

# Bundles kept in memory while their store fails (each holds a window): the newest few.
UNWRITTEN_BUNDLES = 16
# Evaluations kept in memory for the reports' timelines (at a 1m interval: the last 12 hours).
HISTORY = 720


class Actuator(Protocol):
    def rollback(self, target: Target, decision: Decision) -> ActionOutcome: ...

    def health(self, target: Target) -> WorkloadHealth | None: ...

    def serving(self, target: Target) -> Revisions | None: ...

    def read_last_action(self, target: Target) -> dict[str, Any] | None: ...


@dataclass(frozen=True)
class WindowSeen:
    """What an evaluation's window held, for the analysis endpoint: its row count (None: no
    window) and whether it could be tested."""

    rows: int | None
    status: DataStatus
    reason: str

    @classmethod
    def of(cls, observation: Observation) -> WindowSeen:
        samples = observation.samples
        status = observation.samples_status
        reason = observation.samples_reason or ("" if status is DataStatus.OK else "no samples")
        return cls(len(samples) if samples is not None else None, status, reason)


class TargetRunner:
    """Evaluates one target and carries out its decisions."""

    def __init__(
        self,
        target: Target,
        observer: Observer,
        actuator: Actuator,
        store: StateStore,
        metrics: DaemonMetrics,
        log: Any,
        clock: Callable[[], datetime],
        journal: Journal | None = None,
        bundles: BundleWriter | None = None,
        audit: AuditLog | None = None,
        faults: Faults | None = None,
        reports: ReportWriter | None = None,
    ) -> None:
        # What it evaluates: swapped whole (`rebind`, after a config reload) between evaluations.
        self._binding = (target, observer)
        self._next: tuple[Target, Observer] | None = None
        self._retiring = False
        self._forget_before: datetime | None = None  # forget_state_before, not yet applied
        self._leaving = False  # leave(), not yet applied
        self.retired = False
        self._swap_lock = threading.Lock()
        self.actuator = actuator
        self.store = store
        self.metrics = metrics
        self.log = log.bind(target=target.name)
        self.clock = clock
        self.journal = journal
        self.bundles = bundles  # incident bundles, on state changes and decisions
        self.audit = audit  # the actions' requests and responses, for the bundles
        self._outcomes: list[ActionOutcome] = []  # of the evaluation under way
        self.faults = faults  # failing writes: counted, logged, shown by /readyz
        self._unwritten: deque[tuple[Recorded, str]] = deque()  # bundles to write again
        self.reports = reports  # a report on every decision and escalation
        # The latest evaluations as timeline rows (one list per evaluation), for the reports.
        self.history: deque[list[dict[str, Any]]] = deque(maxlen=HISTORY)
        self._decided: list[Decision] = []  # carried out in the evaluation under way
        self.state: TargetState | None = store.load(target.name)
        self.last: Evaluation | None = None
        # What the last evaluation's window held, not its rows: kept for every target, so small.
        self.last_window: WindowSeen | None = None
        # In memory, rebuilt from the next evaluations after a restart (see `_watch_sight`).
        self.blindness = Blindness()
        # The scheduler never runs one target twice at a time; an evaluation asked for over
        # HTTP (API, alert webhook) waits for a running one instead of overlapping it.
        self.lock = threading.Lock()
        if self.state is not None:
            self.log.info(
                "state restored", state=self.state.phase, incident=_incident_id(self.state)
            )
            metrics.phase(target.name, self.state.phase)
        metrics.people(target.name, self.state)
        metrics.expect(target)

    @property
    def target(self) -> Target:
        return self._binding[0]

    @property
    def observer(self) -> Observer:
        return self._binding[1]

    def run_once(self) -> Evaluation | None:
        """One evaluation at the clock's now; failures are logged and counted, never raised."""
        return self.run_observed()[0]

    def run_observed(self) -> tuple[Evaluation | None, Observation | None]:
        """`run_once`, with what it observed (the window's rows), for a report written right
        after it; the runner itself keeps only `last_window`."""
        try:
            with self.lock:
                self._swap()
                if self.retired:
                    return None, None
                try:
                    return self._run_once()
                finally:
                    self._swap()
        finally:
            self._try_swap()  # one asked for while this evaluation was releasing the lock

    def rebind(self, target: Target, observer: Observer) -> None:
        """Evaluate this definition with this observer from now on (a config reload). Applied
        between evaluations, under the lock: a running one finishes with what it started with."""
        with self._swap_lock:
            self._next = (target, observer)
        self._try_swap()

    def retire(self) -> None:
        """The target left the config: no more evaluations, and its gauges go (after a running
        evaluation has finished, so it cannot set them again). Its state file stays."""
        with self._swap_lock:
            self._retiring = True
        self._try_swap()

    def forget_state_before(self, when: datetime) -> None:
        """This replica takes the target over (a shard won): a state it last evaluated before
        `when` is dropped, since another replica may have evaluated the target since; no pending
        timer or incident of then carries on. The next evaluation continues the incident the
        workload's LAST_ACTION annotation records, if any (`_adopted`). Applied before the next
        evaluation, as `rebind`: the caller (the election thread) never waits for one."""
        with self._swap_lock:
            self._forget_before = when
        self._try_swap()

    def leave(self) -> None:
        """Another replica evaluates the target now (a shard lost): its gauges go, after a
        running evaluation has finished (as `retire`), so that it cannot set them again."""
        with self._swap_lock:
            self._leaving = True
        self._try_swap()

    def _try_swap(self) -> None:
        """Apply a rebind or retire now, unless an evaluation runs: it applies it when it ends."""
        if self.lock.acquire(blocking=False):
            try:
                self._swap()
            finally:
                self.lock.release()

    def _swap(self) -> None:
        """With self.lock held: apply what `rebind` and `retire` asked for."""
        with self._swap_lock:
            binding, self._next = self._next, None
            retiring, self._retiring = self._retiring, False
            forget, self._forget_before = self._forget_before, None
            leaving, self._leaving = self._leaving, False
        if binding is not None:
            old = self.target
            self._binding = binding
            if old != binding[0]:
                self.state = carry_state(self.state, binding[0])  # saved by the next evaluation
                self.metrics.prune(old, binding[0])
                self.metrics.expect(binding[0])
        state = self.state
        if forget is not None and state is not None and not _since(state, forget):
            self.log.info(
                "state from before the takeover not carried on",
                phase=state.phase,
                evaluated_at=state.evaluated_at.isoformat() if state.evaluated_at else None,
            )
            self.state = None
        if leaving:
            self.metrics.forget(self.target.name)
        if retiring and not self.retired:
            self.retired = True
            self.metrics.forget(self.target.name)

    def _serving(self) -> Revisions | None:
        """The revisions the workload serves now (asked by the Observer only when the samples
        can be split by them)."""
        return self.actuator.serving(self.target)

    def _run_once(self) -> tuple[Evaluation | None, Observation | None]:
        previous = self.state.phase if self.state else None
        # A phase change that closes an incident is journalled under that incident.
        open_incident = _incident_id(self.state) if self.state else None
        now = self.clock()
        started = time.perf_counter()
        builds = self.observer.reference_builds
        try:
            if self.state is None:  # a takeover or a new pod: an incident may be under way
                self.state = self._adopted(now)
            if self.state is not None and self.state.phase is Phase.ROLLING_BACK:
                self._resume(now)  # unless paused or silenced: then once that is over
            observation = self.observer.observe(self.target, now, self._serving)
            self._watch_sight(observation, now)
            if self._verifying_a_sent_rollback():
                observation = replace(observation, workload=self.actuator.health(self.target))
            state_before = self.state
            evaluation = evaluate(self.target, observation, state_before, now)
        except Exception:
            # A bug or an unexpected source failure must not stop the daemon, nor act.
            self.log.exception("evaluation failed")
            self.metrics.failed(self.target.name)
            return None, None
        self.metrics.reference_builds.inc(self.observer.reference_builds - builds)
        self.last_window = WindowSeen.of(observation)
        state = evaluation.state
        # Saved before acting, so a restart never repeats a decision already carried out. If it
        # cannot be saved, nothing of this evaluation is kept or done: the next one decides
        # again from the state before, once the disk takes it.
        if not self._save(state):
            self.metrics.failed(self.target.name)
            self.log.error(
                "state not saved: this evaluation is dropped and its decisions not carried out; "
                "the next evaluation decides again",
                decisions=[str(d.kind) for d in evaluation.decisions],
            )
            self._write_bundles()
            return None, observation
        self._outcomes = []
        self._decided = []
        for decision in evaluation.decisions:
            state = self._carry_out(decision, state, now)
        self._bundle(observation, state_before, evaluation, state, now)
        for level, event, fields in check_changes(state_before, evaluation):
            getattr(self.log, level)(event, **fields)
        evaluation = Evaluation(state, evaluation.decisions, evaluation.results)
        self.last = evaluation
        self.history.append(timeline_rows(self.target.name, now, evaluation))
        self._report(evaluation, observation, previous, now)
        if state.phase != previous:
            incident = _incident_id(state) or open_incident
            self._record(
                now, "phase", state, phase=str(state.phase), previous=previous, incident=incident
            )
            change = {"from": previous, "to": state.phase}
            self.log.info("target state changed", **change, **_given(incident=incident))
        self._expired(state_before, state, now)
        seconds = time.perf_counter() - started
        self.metrics.record(self.target.name, evaluation, seconds, now.timestamp())
        self.metrics.people(self.target.name, state)
        # Routine: the changes above are what a person reads at info; this is for debugging.
        self.log.debug(
            "evaluated",
            at=now.isoformat(),
            state=state.phase,
            seconds=round(seconds, 4),
            checks={
                r.check: {
                    "state": state.checks[r.check].state.name.lower(),
                    "status": r.status,
                    "value": r.value,
                    "breaching": r.breaching,
                    "reason": r.reason,
                }
                for r in evaluation.results
            },
        )
        return evaluation, observation

    def _adopted(self, now: datetime) -> TargetState | None:
        """Without a state of its own, the incident another replica acted on, as the workload's
        LAST_ACTION annotation records it (core/takeover.py): verified here instead of decided
        again. None (start afresh, as without a note) when there is none to continue or the
        workload cannot be read."""
        note = self.actuator.read_last_action(self.target)
        state = adopted(self.target, note, now) if note else None
        if not note or state is None:
            return None
        incident, by, at, phase = note["incident"], note.get("by"), note["at"], str(state.phase)
        self.log.info(
            "incident adopted from the workload's last-action annotation",
            incident=incident, by=by, at=at, phase=phase,
        )  # fmt: skip
        detail = f"reverted by {by} at {at}: continued here from the workload's annotation"
        self._record(
            now, "adopted", state, incident=incident, by=by, acted_at=at, phase=phase, detail=detail
        )
        return state

    def _watch_sight(self, observation: Observation, now: datetime) -> None:
        """Whether the target is blind (its drift checks' inputs missing for longer than the
        samples window): exported on every evaluation, a warning when it changes. Kept in
        memory only: after a restart, a target still blind is found so again one window later."""
        before = self.blindness
        after = self.blindness = blindness(self.target, observation, before, now)
        self.metrics.blind(self.target.name, after)
        if after.blind and not before.blind:
            assert after.since is not None
            missing = [w for w in ("samples", "reference") if getattr(after, w) is not None]
            self.log.warning(
                "target blind", since=after.since.isoformat(), missing=missing,
                reason=after.reason, window_seconds=self.target.samples.window.total_seconds(),
            )  # fmt: skip
        elif before.blind and not after.blind:
            assert before.since is not None
            self.log.warning("target sees again", blind_since=before.since.isoformat())

    def timeline(self) -> list[dict[str, Any]]:
        """The kept evaluations as timeline rows, oldest first."""
        return [row for rows in list(self.history) for row in rows]

    def _report(
        self,
        evaluation: Evaluation,
        observation: Observation,
        previous: Phase | None,
        now: datetime,
    ) -> None:
        """A report of every evaluation that decided something (follow-ups of an action's
        outcome included) or escalated, written in the background."""
        escalated = evaluation.state.phase is Phase.ESCALATED and previous is not Phase.ESCALATED
        if self.reports is None or not (self._decided or escalated):
            return
        decided = Evaluation(evaluation.state, tuple(self._decided), evaluation.results)
        escalates = escalated or any(d.kind is DecisionKind.ESCALATE for d in self._decided)
        trigger = "escalation" if escalates else "decision"
        self.reports.submit(
            self.target, decided, observation, now, trigger=trigger, timeline=self.timeline()
        )

    def _carry_out(self, decision: Decision, state: TargetState, now: datetime) -> TargetState:
        self._decided.append(decision)
        self.metrics.decision(decision)
        self._record(
            now, "decision", state, decision=str(decision.kind), to=decision.to,
            dry_run=decision.dry_run, reasons=list(decision.reasons),
            **({"held": str(decision.held)} if decision.held else {}),
        )  # fmt: skip
        self.log.warning(
            f"decision: {decision.kind}",
            incident=decision.incident,
            to=decision.to,
            dry_run=decision.dry_run if decision.kind is DecisionKind.ROLLBACK else None,
            reasons=list(decision.reasons),
        )
        if decision.kind in (DecisionKind.HOLD, DecisionKind.ASK_APPROVAL):
            self._audit(now, str(decision.kind), "mlwatchdog", state, decision=decision)
        if decision.kind is not DecisionKind.ROLLBACK:
            return state
        outcome = self.actuator.rollback(self.target, decision)
        self._outcomes.append(outcome)
        self.metrics.action(self.target.name, outcome)
        self._record(now, "action", state, ok=outcome.ok, detail=outcome.detail)
        state, follow_ups = record_action(self.target, state, outcome, now)
        self._save(state, acted=True)
        self.log.info("action outcome", ok=outcome.ok, detail=outcome.detail, state=state.phase)
        for follow_up in follow_ups:
            state = self._carry_out(follow_up, state, now)
        return state

    def _resume(self, now: datetime) -> None:
        """A rollback was decided but its outcome never recorded (the daemon stopped in between):
        carry it out again; actuators are idempotent, so an object already reverted is left alone.
        """
        assert self.state is not None and self.state.incident is not None
        hold = self.state.silenced or self.state.paused
        if hold is not None and hold.active(now):
            return  # no action while paused or silenced: carried out once that is over
        incident = self.state.incident
        decision = Decision(
            DecisionKind.ROLLBACK,
            self.target.name,
            incident.id,
            incident.acted_at or now,
            incident.reasons,
            to=self.target.rollback.to,
            dry_run=self.target.rollback.dry_run,
        )
        self.log.warning("resuming an interrupted rollback", incident=incident.id)
        outcome = self.actuator.rollback(self.target, decision)
        self.metrics.action(self.target.name, outcome)
        state, follow_ups = record_action(self.target, self.state, outcome, now)
        self._save(state, acted=True)
        for follow_up in follow_ups:
            self._carry_out(follow_up, state, now)

    def _bundle(
        self,
        observation: Observation,
        before: TargetState | None,
        evaluation: Evaluation,
        after: TargetState,
        now: datetime,
    ) -> None:
        """An incident bundle when the phase or a check's state changed, or on a decision."""
        event = bundle_event(before, evaluation, after)
        if self.bundles is None or not event:
            self._write_bundles()
            return
        try:
            incidents = {d.incident for d in evaluation.decisions}
            since = now.isoformat()
            actions = (
                self.audit.tail(
                    lambda a: a.get("incident") in incidents, stop=lambda a: a.get("at", "") < since
                )
                if self.audit and self._outcomes
                else []
            )
            recorded = Recorded(
                target=self.target,
                config=self.observer.config,
                at=now,
                observation=observation,
                state_before=before,
                evaluation=evaluation,
                outcomes=tuple(self._outcomes),
                state_after=after,
                actions=tuple(actions),
                reference_frame=self._reference_rows(observation),
            )
        except Exception:  # a bug: a bundle is a record; failing to make one must not stop
            self.log.exception("incident bundle not made", bundle_event=event)
            return
        self._write_bundles((recorded, event))

    def _write_bundles(self, new: tuple[Recorded, str] | None = None) -> None:
        """Write `new` after the bundles a failing store left unwritten (oldest first); what
        still fails is kept for the next evaluation, the newest UNWRITTEN_BUNDLES of it."""
        if self.bundles is None:
            return
        if new is not None:
            self._unwritten.append(new)
            while len(self._unwritten) > UNWRITTEN_BUNDLES:
                lost = self._unwritten.popleft()
                self.log.error("incident bundle dropped: too many unwritten", bundle_event=lost[1])
        while self._unwritten:
            recorded, event = self._unwritten[0]
            try:
                self.bundles.write(recorded, event)
            except Exception as exc:  # OSError, or the store's own errors (s3fs, gcsfs)
                self._fault("bundle", f"{type(exc).__name__}: {exc}")
                return
            self._unwritten.popleft()
        self._fault("bundle", None)

    def _reference_rows(self, observation: Observation) -> Any:
        reference = observation.reference
        if reference is None or self.bundles is None:
            return None
        rows = max((c.n + c.n_dropped for c in reference.sample.columns), default=0)
        if rows * len(reference.columns) > self.bundles.settings.max_reference_cells:
            return None  # recorded by fingerprint and source only
        target = self.target
        # Read again only if the writer has no copy of this reference yet.
        return lambda: self.observer.reference_frame(target)

    # ------------------------------------------------------------------ a person in the loop

    def operate(
        self,
        what: str,
        by: str,
        change: Callable[[TargetState, datetime], TargetState],
        **details: Any,
    ) -> TargetState:
        """Apply a person's `change` (pause, resume, silence, an answer: `core.people`) to the
        state, between evaluations (under the lock); saved, audited, journalled, exported. What
        `change` raises (NotCurrent, ValueError) changes nothing; so does an OSError of the save,
        raised too: nothing is claimed that a restart would forget."""
        with self.lock:
            if self.retired:
                raise NotCurrentTarget(f"target {self.target.name!r} left the config")
            now = self.clock()
            after = change(fresh(self.target.name, self.state, now), now)
            try:
                self.store.save(after)
            except OSError as exc:
                self._fault("state", f"{type(exc).__name__}: {exc}")
                raise
            self._fault("state", None)
            self.state = after
            self._audit(now, what, by, after, **details)
            self._record(now, what, after, by=by, **details)
            self.metrics.people(self.target.name, after)
            self.log.warning(what, by=by, incident=_incident_id(after), **details)
            return after

    def _expired(self, before: TargetState | None, after: TargetState, now: datetime) -> None:
        """Audit a pause or silence that ended by itself in this evaluation."""
        for what in ("paused", "silenced"):
            hold = getattr(before, what) if before is not None else None
            if hold is not None and getattr(after, what) is None:
                event = "pause expired" if what == "paused" else "silence expired"
                until = hold.until.isoformat() if hold.until else None
                self._audit(now, event, "mlwatchdog", after, set_by=hold.by, until=until)
                self._record(now, event, after, set_by=hold.by, until=until)
                self.log.warning(event, set_by=hold.by, until=until)

    def _audit(
        self,
        now: datetime,
        what: str,
        who: str,
        state: TargetState,
        decision: Decision | None = None,
        **details: Any,
    ) -> None:
        """One audit record of a person's command, or of a decision held or waiting for one."""
        if self.audit is None:
            return
        record: dict[str, Any] = {
            "at": now.isoformat(),
            "who": who,
            "target": self.target.name,
            "incident": _incident_id(state),
            "result": what.replace(" ", "_"),
        }
        if decision is not None:
            record.update(
                incident=decision.incident,
                held=str(decision.held) if decision.held else None,
                to=decision.to,
                dry_run=decision.dry_run,
                deadline=decision.deadline.isoformat() if decision.deadline else None,
                reasons=list(decision.reasons),
            )
        self.audit.append({**record, **details})

    def _record(self, now: datetime, kind: str, state: TargetState, **fields: Any) -> None:
        if self.journal is None:
            return
        entry = {"at": now.isoformat(), "target": self.target.name, "kind": kind}
        self.journal.append({**entry, "incident": _incident_id(state), **fields})

    def _verifying_a_sent_rollback(self) -> bool:
        """The workload's own health matters once a rollback was really sent (not in dry-run)."""
        state = self.state
        return (
            state is not None
            and state.phase is Phase.VERIFYING
            and not self.target.rollback.dry_run
        )

    def _save(self, state: TargetState, *, acted: bool = False) -> bool:
        """Save `state` and make it the runner's; False when the disk refused it. After an
        action (`acted`) the state is kept in memory anyway, since the world has changed; the
        next evaluation's save writes it."""
        try:
            self.store.save(state)
        except OSError as exc:
            self._fault("state", f"{type(exc).__name__}: {exc}")
            if acted:
                self.state = state
            return False
        self._fault("state", None)
        self.state = state
        return True

    def _fault(self, what: str, error: str | None) -> None:
        if self.faults is not None:
            self.faults.report(what, self.target.name, error)


class NotCurrentTarget(ValueError):
    """A person's command for a target no longer in the config."""


def bundle_event(before: TargetState | None, evaluation: Evaluation, after: TargetState) -> str:
    """What makes an evaluation worth a bundle ('' when nothing changed): a decision, a change
    of the target's phase, or a change of a check's state."""
    if evaluation.decisions:
        return "decision-" + "-".join(str(d.kind) for d in evaluation.decisions)
    previous = before.phase if before else None
    if previous is not after.phase:
        return f"{previous or 'new'}-to-{after.phase}"
    old = before.checks if before else {}
    changed = [n for n, r in after.checks.items() if n not in old or old[n].state != r.state]
    return "checks-" + "-".join(changed) if changed else ""


# Data statuses that mean a check judged nothing because its input is missing or failing.
_MISSING = (DataStatus.NO_DATA, DataStatus.STALE, DataStatus.ERROR)


def check_changes(
    before: TargetState | None, evaluation: Evaluation
) -> list[tuple[str, str, dict[str, Any]]]:
    """The log events of what changed for the checks in `evaluation` (level, event, fields):
    a check's state (info), its data going missing (warning) and coming back (info). Once per
    change, never on every evaluation; a check seen for the first time counts as inactive with
    its data present."""
    events: list[tuple[str, str, dict[str, Any]]] = []
    for result in evaluation.results:
        old = before.checks.get(result.check) if before is not None else None
        new = evaluation.state.checks.get(result.check)
        if new is None:
            continue
        was = old.state if old is not None else CheckState.INACTIVE
        if new.state != was:
            events.append(("info", "check state changed", {
                "check": result.check, "from": was.name.lower(), "to": new.state.name.lower(),
                "status": str(result.status), "value": result.value,
                "threshold": result.threshold, "reason": result.reason,
            }))  # fmt: skip
        had = old.status if old is not None else DataStatus.OK
        if result.status in _MISSING and result.status != had:
            events.append(("warning", "check data missing", {
                "check": result.check, "status": str(result.status), "reason": result.reason,
            }))  # fmt: skip
        elif had in _MISSING and result.status not in _MISSING:
            events.append(("info", "check data back", {
                "check": result.check, "status": str(result.status), "missing": str(had),
            }))  # fmt: skip
    return events


def _given(**fields: Any) -> dict[str, Any]:
    """The fields that have a value (a log line without `incident=None` noise)."""
    return {k: v for k, v in fields.items() if v is not None}


def _since(state: TargetState, when: datetime) -> bool:
    """Whether the state was evaluated at or after `when`."""
    return state.evaluated_at is not None and state.evaluated_at >= when


def _incident_id(state: TargetState) -> str | None:
    return state.incident.id if state.incident else None
