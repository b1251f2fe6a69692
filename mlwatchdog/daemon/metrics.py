"""The daemon's own Prometheus metrics (all `mlwatchdog_*`), in a registry per daemon."""

from __future__ import annotations

import platform
from collections.abc import Iterable
from importlib.metadata import PackageNotFoundError, version

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
)

from mlwatchdog import __version__
from mlwatchdog.core import (
    ActionOutcome,
    DataStatus,
    Decision,
    Evaluation,
    Phase,
    TargetState,
    base_check,
)
from mlwatchdog.core.blind import Blindness
from mlwatchdog.rules import DriftCheck, Target, drift_columns
from mlwatchdog.sources.base import SetAside


class DaemonMetrics:
    """Evaluations, durations, per-column drift, check and target states, decisions."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        # The standard process_* and python_* series, as the default registry would give them.
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            r.register(collector)
        self.build = Info(
            "mlwatchdog_build",
            "The running mlwatchdog: its version, Python's, and numpy's and scipy's (the test "
            "results depend on them).",
            registry=r,
        )
        self.build.info(build_labels())
        self.evaluations = Counter(
            "mlwatchdog_evaluations",
            "Evaluations by result: ok (every check had data), no_data, or error (it failed).",
            ["target", "result"],
            registry=r,
        )
        self.evaluations_skipped = Counter(
            "mlwatchdog_evaluations_skipped",
            "Scheduled evaluations not run because the daemon is saturated, by reason: busy (the "
            "target's previous run was still running or queued) or late (it waited in the queue "
            "past its misfire grace, the target's interval). No target label: at thousands of "
            "targets that would be thousands of series; the log line says which.",
            ["reason"],
            registry=r,
        )
        for reason in ("busy", "late"):
            self.evaluations_skipped.labels(reason)
        self.duration = Histogram(
            "mlwatchdog_evaluation_duration_seconds",
            "Time to observe, test and decide for one target.",
            ["target"],
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.last_evaluation = Gauge(
            "mlwatchdog_last_evaluation_timestamp_seconds",
            "Unix time of the target's last completed evaluation.",
            ["target"],
            registry=r,
        )
        self.drift_statistic = Gauge(
            "mlwatchdog_drift_statistic",
            "Drift statistic per column (KS D, PSI, chi-square).",
            ["target", "check", "column", "test"],
            registry=r,
        )
        self.drift_pvalue = Gauge(
            "mlwatchdog_drift_pvalue",
            "Drift p-value per column (after the check's correction); KS and chi2 only.",
            ["target", "check", "column", "test"],
            registry=r,
        )
        self.check_value = Gauge(
            "mlwatchdog_check_value",
            "The check's value: share of drifted columns, or the metric value.",
            ["target", "check"],
            registry=r,
        )
        self.check_threshold = Gauge(
            "mlwatchdog_check_threshold",
            "The limit the check's value is compared with: the drift share for drift checks "
            "(not a test's alpha or PSI limit: see mlwatchdog_check_test_threshold), the limit "
            "for metric checks.",
            ["target", "check"],
            registry=r,
        )
        self.check_test_threshold = Gauge(
            "mlwatchdog_check_test_threshold",
            "A drift check's per-column test threshold as used: alpha for the p-value tests (ks, "
            "chi2: a column drifts when its p-value is below it), the PSI limit for psi (when "
            "its PSI is at or above it).",
            ["target", "check", "test"],
            registry=r,
        )
        self.drift_effect = Gauge(
            "mlwatchdog_drift_effect",
            "Effect size per column (the check's effect.measure), for drift checks with an "
            "effect floor.",
            ["target", "check", "column", "measure"],
            registry=r,
        )
        self.check_effect_floor = Gauge(
            "mlwatchdog_check_effect_floor",
            "A drift check's effect floor (effect.min): a column drifts only when its effect "
            "is at least this, whatever its test says.",
            ["target", "check", "measure"],
            registry=r,
        )
        self.check_state = Gauge(
            "mlwatchdog_check_state",
            "Check state: 0 inactive, 1 pending, 2 firing.",
            ["target", "check"],
            registry=r,
        )
        self.check_status = Gauge(
            "mlwatchdog_check_data_status",
            "1 for the check's data status in the last evaluation (ok, no_data, ...).",
            ["target", "check", "status"],
            registry=r,
        )
        self.target_phase = Gauge(
            "mlwatchdog_target_state",
            "1 for the target's current state (healthy, degraded, rolling_back, ...).",
            ["target", "state"],
            registry=r,
        )
        self.target_blind = Gauge(
            "mlwatchdog_target_blind",
            "1 while the target is blind: its samples or reference have been missing (no data, "
            "stale, or the source failing) for longer than its samples window, so its drift "
            "checks judge nothing and it cannot roll back on drift. The log line 'target blind' "
            "says what is missing and why; `mlwatchdog check --sources rules.yaml` reads each "
            "source once and shows what it finds. Fix the source (the model's logger, the "
            "bucket, the database, credentials) or the rules file's url.",
            ["target"],
            registry=r,
        )
        self.target_blind_since = Gauge(
            "mlwatchdog_target_blind_since_seconds",
            "Unix time since when the input that blinds the target has been missing (the first "
            "evaluation that found it so); 0 while the target is not blind.",
            ["target"],
            registry=r,
        )
        # A person in the loop (pause, silence, rollback.confirm): README "A person in the loop".
        self.target_paused = Gauge(
            "mlwatchdog_target_paused",
            "1 while a person paused the target: it is evaluated and reported, its rollbacks are "
            "held (decisions kind=hold); `mlwatchdog resume` ends it.",
            ["target"],
            registry=r,
        )
        self.target_silenced_until = Gauge(
            "mlwatchdog_target_silenced_until_seconds",
            "Unix time the target's silence ends (no rollback, no escalation until then); 0 when "
            "not silenced.",
            ["target"],
            registry=r,
        )
        self.awaiting_approval = Gauge(
            "mlwatchdog_incident_awaiting_approval",
            "1 while the target's incident waits for a person to approve or reject its rollback "
            "(rollback.confirm; `mlwatchdog approve INCIDENT`).",
            ["target"],
            registry=r,
        )
        self.approval_deadline = Gauge(
            "mlwatchdog_incident_approval_deadline_seconds",
            "Unix time by which the waiting rollback must be answered, else on_timeout applies; "
            "0 when none waits.",
            ["target"],
            registry=r,
        )
        self.decisions = Counter(
            "mlwatchdog_decisions",
            "Decisions made: rollback (with to and dry_run) and escalate.",
            ["target", "kind", "to", "dry_run"],
            registry=r,
        )
        self.last_decision = Gauge(
            "mlwatchdog_last_decision_timestamp_seconds",
            "Unix time of the target's latest decision of each kind (its report: "
            "/reports/latest?target=<target> on the daemon).",
            ["target", "kind"],
            registry=r,
        )
        self.actions = Counter(
            "mlwatchdog_actions",
            "Rollback outcomes: sent, dry_run, standby (left to the leader), refused, failed.",
            ["target", "result"],
            registry=r,
        )
        self.leader = Gauge(
            "mlwatchdog_leader",
            "1 while this replica holds the leader Lease (or runs without leader election); "
            "with shards, while it leads at least one shard.",
            registry=r,
        )
        self.shard_leader = Gauge(
            "mlwatchdog_shard_leader",
            "1 while this replica leads the shard (daemon.leader_election.shards; without "
            'shards the one shard is "0" and this is mlwatchdog_leader): with shards it '
            "evaluates and acts for that shard's targets.",
            ["shard"],
            registry=r,
        )
        self.evaluated_here = Gauge(
            "mlwatchdog_target_evaluated_here",
            "1 while this replica evaluates the target (it leads the target's shard, or runs "
            "without shards); 0 while another replica does.",
            ["target", "shard"],
            registry=r,
        )
        self.reference_builds = Counter(
            "mlwatchdog_reference_builds",
            "References built (sorted and binned); grows only when reference data changes.",
            registry=r,
        )
        self.config_reload_ok = Gauge(
            "mlwatchdog_config_last_reload_successful",
            "1 when the last load of the rules file succeeded; 0 when a reload failed and the "
            "daemon still runs the last good config.",
            registry=r,
        )
        self.config_reload_at = Gauge(
            "mlwatchdog_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful load of the rules file.",
            registry=r,
        )
        self.config_reloads = Counter(
            "mlwatchdog_config_reloads",
            "Reloads of the rules file by result: success or failure.",
            ["result"],
            registry=r,
        )
        for result in ("success", "failure"):
            self.config_reloads.labels(result)
        self.write_failures = Counter(
            "mlwatchdog_write_failures",
            "Failed writes of state files, the audit trail, the journal, bundles and the KServe "
            "sink's store (disk full, too many open files, the store down): what was not written "
            "is kept and retried (the sink's events are refused, 503).",
            ["what"],
            registry=r,
        )
        self.writes_failing = Gauge(
            "mlwatchdog_writes_failing",
            "Writes failing now, by what (state counts per target); /readyz says which.",
            ["what"],
            registry=r,
        )
        for what in ("state", "audit", "journal", "bundle", "sink"):
            self.write_failures.labels(what)
            self.writes_failing.labels(what).set(0)
        self.sink_events = Counter(
            "mlwatchdog_sink_events",
            "Answers of the KServe sink by result (stored, refused) and reason (ok, or why: "
            "invalid_cloudevent, not_json, too_deep, no_source, column_count, not_numeric, "
            "clock_skew, too_old, forbidden_service, not_stored, disconnected: the sender went "
            "away or its body was cut at max_event_bytes, ...).",
            ["result", "reason"],
            registry=r,
        )

        self.source_set_aside = Counter(
            "mlwatchdog_source_set_aside",
            "Input a sample read left out so the rest could be tested, counted in items: what "
            "(file, row, value) and why (corrupt, truncated, empty, missing_column, duplicate, "
            "unreadable, unknown_format, bad_timestamp, not_numeric, ...). Counted on every read: "
            "a file that stays corrupt adds 1 each evaluation that reads it.",
            ["source", "what", "reason"],
            registry=r,
        )

    def record(self, target: str, evaluation: Evaluation, seconds: float, at: float) -> None:
        """Export one evaluation's results and the target's new state."""
        ok = all(r.status is DataStatus.OK for r in evaluation.results)
        self.evaluations.labels(target, "ok" if ok else "no_data").inc()
        self.duration.labels(target).observe(seconds)
        self.last_evaluation.labels(target).set(at)
        for result in evaluation.results:
            check = result.check
            record = evaluation.state.checks[check]
            self.check_state.labels(target, check).set(int(record.state))
            for status in DataStatus:
                self.check_status.labels(target, check, status).set(result.status is status)
            if result.value is not None:
                self.check_value.labels(target, check).set(result.value)
            if result.threshold is not None:
                self.check_threshold.labels(target, check).set(result.threshold)
            tests = {str(row.test) for row in result.columns}
            if result.test_threshold is not None:
                for test in tests:
                    self.check_test_threshold.labels(target, check, test).set(result.test_threshold)
            measures = {str(row.effect_measure) for row in result.columns if row.effect_measure}
            if result.effect_floor is not None:
                for measure in measures:
                    self.check_effect_floor.labels(target, check, measure).set(result.effect_floor)
            for row in result.columns:
                labels = (target, check, row.column, str(row.test))
                if row.statistic is not None:
                    self.drift_statistic.labels(*labels).set(row.statistic)
                pvalue = row.pvalue_adjusted if row.pvalue_adjusted is not None else row.pvalue
                if pvalue is not None:
                    self.drift_pvalue.labels(*labels).set(pvalue)
                if row.effect is not None and row.effect_measure is not None:
                    measure = str(row.effect_measure)
                    self.drift_effect.labels(target, check, row.column, measure).set(row.effect)
        self.phase(target, evaluation.state.phase)

    def expect(self, target: Target) -> None:
        """Start the target's decision and rollback-outcome counters at 0: a counter series
        that first appears at 1 is no increase to Prometheus, so a first rollback, refusal or
        failure would be missed by increase() in alerts and panels."""
        rollback = target.rollback
        dry_run = str(rollback.dry_run).lower()
        self.decisions.labels(target.name, "rollback", rollback.to, dry_run)
        self.decisions.labels(target.name, "escalate", "", "")
        for result in ("sent", "dry_run", "standby", "refused", "failed"):
            self.actions.labels(target.name, result)

    def phase(self, target: str, phase: Phase) -> None:
        for each in Phase:
            self.target_phase.labels(target, each).set(each is phase)

    def blind(self, target: str, blindness: Blindness) -> None:
        """Whether the target is blind, and since when (0 when it is not)."""
        self.target_blind.labels(target).set(blindness.blind)
        since = blindness.since.timestamp() if blindness.since is not None else 0
        self.target_blind_since.labels(target).set(since)

    def people(self, target: str, state: TargetState | None) -> None:
        """The target's pause, silence and waiting approval (all 0 when none)."""
        paused = state.paused if state else None
        silenced = state.silenced if state else None
        incident = state.incident if state else None
        asked = incident.confirmation if incident else None
        waiting = bool(state and state.phase is Phase.AWAITING_APPROVAL and asked)
        self.target_paused.labels(target).set(paused is not None)
        until = silenced.until if silenced else None
        self.target_silenced_until.labels(target).set(until.timestamp() if until else 0)
        self.awaiting_approval.labels(target).set(waiting)
        deadline = asked.deadline.timestamp() if waiting and asked else 0
        self.approval_deadline.labels(target).set(deadline)

    def decision(self, decision: Decision) -> None:
        to = decision.to or ""
        dry_run = str(decision.dry_run).lower() if decision.kind == "rollback" else ""
        self.decisions.labels(decision.target, decision.kind, to, dry_run).inc()
        self.last_decision.labels(decision.target, decision.kind).set(decision.at.timestamp())

    def action(self, target: str, outcome: ActionOutcome) -> None:
        if outcome.refused:
            result = "refused"
        elif not outcome.ok:
            result = "failed"
        elif outcome.standby:
            result = "standby"
        else:
            result = "dry_run" if outcome.dry_run else "sent"
        self.actions.labels(target, result).inc()

    def set_aside(self, source: str, item: SetAside) -> None:
        """A read of `source` set `item` aside (the Observer's on_set_aside)."""
        self.source_set_aside.labels(source, item.what, item.reason).inc(item.count)

    def failed(self, target: str) -> None:
        self.evaluations.labels(target, "error").inc()

    def config_loaded(self, at: float, reload: bool = False) -> None:
        """The rules file was loaded (at start) or reloaded successfully at `at`."""
        self.config_reload_ok.set(1)
        self.config_reload_at.set(at)
        if reload:
            self.config_reloads.labels("success").inc()

    def config_failed(self) -> None:
        """A reload failed; the last good config stays (and so does its timestamp)."""
        self.config_reload_ok.set(0)
        self.config_reloads.labels("failure").inc()

    def forget(self, target: str, checks: Iterable[str] | None = None) -> None:
        """Remove the gauges' label sets of a removed target (or of some of its checks), so
        dashboards show no ghosts. Counters keep their history."""
        names = None if checks is None else set(checks)
        for gauge in self._target_gauges(check_level=names is not None):
            for labels in _label_sets(gauge):
                if labels[0] == target and (names is None or labels[1] in names):
                    gauge.remove(*labels)

    def prune(self, old: Target, new: Target) -> None:
        """After a target's definition changed: drop the series its new checks no longer give
        (removed checks; columns or tests a drift check no longer tests)."""
        kept = {c.name for c in new.checks}
        self.forget(new.name, [c.name for c in old.checks if c.name not in kept])
        tested = {
            (c.name, column, str(c.test))
            for c in new.checks
            if isinstance(c, DriftCheck)
            for column in drift_columns(new, c)
        }
        for gauge in (self.drift_statistic, self.drift_pvalue):
            for labels in _label_sets(gauge):
                if labels[0] == new.name and labels[1:] not in tested:
                    gauge.remove(*labels)
        # A check whose test or effect measure changed: drop the old test's or measure's series.
        # Per-revision checks (`drift[canary]`) follow the check they are of.
        drift_checks = {c.name: c for c in new.checks if isinstance(c, DriftCheck)}

        def test(check: str) -> str | None:
            found = drift_checks.get(base_check(check))
            return str(found.test) if found else None

        def measure(check: str) -> str | None:
            found = drift_checks.get(base_check(check))
            return str(found.effect.measure) if found and found.effect else None

        for labels in _label_sets(self.check_test_threshold):
            if labels[0] == new.name and labels[2] != test(labels[1]):
                self.check_test_threshold.remove(*labels)
        for labels in _label_sets(self.check_effect_floor):
            if labels[0] == new.name and labels[2] != measure(labels[1]):
                self.check_effect_floor.remove(*labels)
        columns = {(check, column) for check, column, _ in tested}
        for labels in _label_sets(self.drift_effect):
            _, check, column, measured = labels
            gone = (base_check(check), column) not in columns or measured != measure(check)
            if labels[0] == new.name and gone:
                self.drift_effect.remove(*labels)

    def _target_gauges(self, check_level: bool) -> list[Gauge]:
        gauges = [
            self.drift_statistic,
            self.drift_pvalue,
            self.check_value,
            self.check_threshold,
            self.check_test_threshold,
            self.drift_effect,
            self.check_effect_floor,
            self.check_state,
            self.check_status,
        ]
        target_level = [
            self.last_evaluation, self.last_decision, self.target_phase, self.target_blind,
            self.target_blind_since, self.target_paused, self.target_silenced_until,
            self.awaiting_approval, self.approval_deadline,
        ]  # fmt: skip
        return gauges if check_level else [*gauges, *target_level]


def build_labels() -> dict[str, str]:
    """mlwatchdog_build_info's labels: the versions that make this daemon's numbers."""

    def installed(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "unknown"

    return {
        "version": __version__,
        "python": platform.python_version(),
        "numpy": installed("numpy"),
        "scipy": installed("scipy"),
    }


def _label_sets(gauge: Gauge) -> list[tuple[str, ...]]:
    """The label values of every series of `gauge` (in its label names' order)."""
    return [tuple(s.labels.values()) for family in gauge.collect() for s in family.samples]
