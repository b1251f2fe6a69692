"""Config reload: the pure plan (what a new rules.yaml changes), the state a kept target carries
over (and the core evaluating it), the Observer keeping unchanged sources, the file watcher, and
`Daemon.reload` applying a plan to runners and metrics (no scheduler started, no HTTP)."""

from __future__ import annotations

import io
import os
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog
import structlog.testing
import yaml
from prometheus_client import generate_latest

from mlwatchdog.actions.dryrun import DryRunActuator
from mlwatchdog.core import (
    CheckRecord,
    CheckState,
    DataStatus,
    DecisionKind,
    Incident,
    MetricReading,
    Observation,
    Phase,
    TargetState,
    evaluate,
)
from mlwatchdog.daemon.metrics import DaemonMetrics
from mlwatchdog.daemon.reload import (
    ConfigWatcher,
    carry_state,
    changed_keys,
    fingerprint,
    plan_reload,
    restart_needed,
)
from mlwatchdog.daemon.runner import TargetRunner
from mlwatchdog.daemon.service import Daemon
from mlwatchdog.daemon.state_store import StateStore
from mlwatchdog.rules import Config, Target, parse_config
from mlwatchdog.sources.observe import Observer
from tests.unit.test_rules import line_of

T0 = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)


def target(name: str, *checks: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """An alert-only target over metric checks (`errors` above 0.05 by default)."""
    return {
        "name": name,
        "samples": {"source": "live"},
        "reference": {"source": "training"},
        "columns": {"features": {"x": "numeric"}},
        "checks": list(checks) or [metric("errors", 0.05)],
        **fields,
    }


def metric(name: str, above: float, source: str = "prom") -> dict[str, Any]:
    return {"name": name, "type": "metric", "source": source, "query": name, "above": above}


def rules(*targets: dict[str, Any], **daemon: Any) -> dict[str, Any]:
    return {
        "daemon": {"kubernetes": {"mode": "offline"}, **daemon},
        "sources": {
            "live": {"type": "files", "url": "/nonexistent/live"},
            "training": {"type": "files", "url": "/nonexistent/ref", "timestamp_column": None},
            "prom": {"type": "prometheus", "url": "http://127.0.0.1:1"},
            "prom2": {"type": "prometheus", "url": "http://127.0.0.1:2"},
        },
        "targets": list(targets) or [target("a")],
    }


def config(data: dict[str, Any]) -> Config:
    return parse_config(yaml.safe_dump(data))


# ------------------------------------------------------------------------------------ the plan


def test_the_same_file_plans_nothing() -> None:
    data = rules(target("a"), target("b"))
    plan = plan_reload(config(data), config(data))
    assert plan.empty
    assert plan.unchanged == ("a", "b")
    assert plan.added == plan.removed == plan.changed == plan.rescheduled == ()


def test_added_removed_changed_and_unchanged_targets() -> None:
    old = config(rules(target("a"), target("b"), target("c")))
    new = config(rules(target("a"), target("b", metric("errors", 0.1)), target("d")))
    plan = plan_reload(old, new)
    assert (plan.added, plan.removed, plan.changed, plan.unchanged) == (
        ("d",),
        ("c",),
        ("b",),
        ("a",),
    )
    assert plan.rescheduled == () and plan.sources == () and plan.settings == ()
    assert not plan.empty
    assert plan.config.target("b").check("errors").above == 0.1  # type: ignore[union-attr]


def test_a_redefined_source_changes_every_target_reading_it() -> None:
    data = rules(target("a"), target("b", metric("latency", 1.0, source="prom2")))
    old = config(data)
    data["sources"]["prom2"]["url"] = "http://prometheus.example:9090"
    data["sources"]["extra"] = {"type": "prometheus", "url": "http://127.0.0.1:3"}
    plan = plan_reload(old, config(data))
    assert plan.sources == ("extra", "prom2")
    assert plan.changed == ("b",) and plan.unchanged == ("a",)


def test_a_new_interval_reschedules_the_target_and_a_new_jitter_every_target() -> None:
    old = config(rules(target("a"), target("b")))
    plan = plan_reload(old, config(rules(target("a", interval="5m"), target("b"))))
    assert plan.changed == ("a",) and plan.rescheduled == ("a",)
    plan = plan_reload(old, config(rules(target("a"), target("b"), jitter="10s")))
    assert plan.changed == () and plan.rescheduled == ("a", "b")
    assert plan.settings == ("daemon.jitter",)


def test_restart_only_settings_are_named_and_kept_the_rest_applies() -> None:
    old = config(rules())
    new = config(
        rules(
            http={"host": "127.0.0.2", "port": 9999},
            state_dir="/elsewhere/state",
            log_level="debug",
            kubernetes={"mode": "kubeconfig"},
            leader_election={"lease": "other"},
            sink={"path": "/elsewhere/sink"},
            audit_log="/elsewhere/audit.jsonl",
            reload_interval="30s",
        )
    )
    plan = plan_reload(old, new)
    assert plan.restart_only == (
        "daemon.http.host",
        "daemon.http.port",
        "daemon.state_dir",
        "daemon.log_level",
        "daemon.sink.path",
        "daemon.kubernetes.mode",
        "daemon.leader_election.lease",
        "daemon.audit_log",
    )
    assert plan.settings == ("daemon.reload_interval",)
    running = plan.config.daemon
    assert running.http == old.daemon.http and running.state_dir == old.daemon.state_dir
    assert running.kubernetes.mode == "offline" and running.leader_election.lease == "mlwatchdog"
    assert running.sink == old.daemon.sink and running.log_level == "info"
    assert running.audit_log == old.daemon.audit_log
    assert running.reload_interval == timedelta(seconds=30)
    assert plan.config.targets == new.targets


def test_changed_keys_are_dotted_paths() -> None:
    assert changed_keys({"a": 1, "b": {"c": 2, "d": 3}}, {"a": 1, "b": {"c": 4}}, "x") == [
        "x.b.c",
        "x.b.d",
    ]
    assert changed_keys(1, 1, "x") == []


def test_reload_interval_is_zero_or_at_least_100ms() -> None:
    assert config(rules(reload_interval="0s")).daemon.reload_interval == timedelta(0)
    assert config(rules()).daemon.reload_interval == timedelta(seconds=5)
    with pytest.raises(Exception, match="reload_interval is 0s"):
        config(rules(reload_interval="10ms"))


def test_acting_for_real_needs_what_the_daemon_started_with() -> None:
    live = config(rules(target("a"), target("b", rollback={"dry_run": False})))
    issues, _ = restart_needed(live, "r.yaml", kubernetes=False, elected=False, sink=False)
    assert [(i.file, i.path) for i in issues] == [("r.yaml", "targets[1].rollback.dry_run")]
    assert "without a Kubernetes API" in issues[0].message
    issues, _ = restart_needed(live, "r.yaml", kubernetes=True, elected=False, sink=False)
    assert len(issues) == 1 and "leader election" in issues[0].message
    assert restart_needed(live, "r.yaml", kubernetes=True, elected=True, sink=False)[0] == []
    data = rules(target("a", rollback={"dry_run": False}), leader_election={"enabled": False})
    assert restart_needed(config(data), "r.yaml", kubernetes=True, elected=False, sink=False) == (
        [],
        [],
    )
    data = rules()
    data["sources"]["logger"] = {"type": "kserve"}
    _, warnings = restart_needed(config(data), "r", kubernetes=False, elected=False, sink=False)
    assert len(warnings) == 1 and "['logger']" in warnings[0] and "restart" in warnings[0]
    assert restart_needed(config(data), "r", kubernetes=False, elected=False, sink=True) == (
        [],
        [],
    )


# ----------------------------------------------------------------------- state across a reload

FOR = {"for": "1m", "resolve_after": "1m"}


def _observation(name: str, at: datetime, **values: float) -> Observation:
    readings = {k: MetricReading(DataStatus.OK, v) for k, v in values.items()}
    return Observation(target=name, at=at, metrics=readings)


def test_a_kept_target_keeps_its_incident_and_timers_and_the_core_evaluates_it() -> None:
    old = config(
        rules(target("a", metric("errors", 0.05), metric("latency", 1.0), trigger="all", **FOR))
    ).target("a")
    new = config(
        rules(target("a", metric("errors", 0.05), metric("saturation", 0.9), trigger="all", **FOR))
    ).target("a")
    # Before the reload: errors pending since T0, latency firing, an incident open.
    state = evaluate(old, _observation("a", T0, errors=0.2, latency=2.0), None, T0).state
    assert state.phase is Phase.DEGRADED and state.incident is not None
    incident = state.incident
    assert state.checks["errors"].active_at == T0

    carried = carry_state(state, new)
    assert carried is not None
    assert set(carried.checks) == {"errors", "saturation"}  # latency gone, saturation new
    assert carried.checks["errors"] == state.checks["errors"]
    assert carried.checks["saturation"] == CheckRecord()
    assert (carried.phase, carried.incident, carried.since) == (
        state.phase,
        incident,
        state.since,
    )
    assert carry_state(None, new) is None

    # The core on the carried state (and on the state as it was: the same outcome): errors
    # keeps its pending timer and fires a minute after T0; saturation starts pending now.
    t1 = T0 + timedelta(seconds=70)
    seen = _observation("a", t1, errors=0.2, saturation=0.95)
    for previous in (carried, state):
        after = evaluate(new, seen, previous, t1)
        assert set(after.state.checks) == {"errors", "saturation"}
        assert after.state.checks["errors"].state is CheckState.FIRING
        assert after.state.checks["errors"].active_at == T0
        assert after.state.checks["saturation"].state is CheckState.PENDING
        assert after.state.checks["saturation"].active_at == t1
        assert after.state.incident == incident and after.decisions == ()
    # A minute later both fire: the one incident escalates (alert-only target).
    t2 = t1 + timedelta(minutes=1)
    later = evaluate(new, _observation("a", t2, errors=0.2, saturation=0.95), after.state, t2)
    (decision,) = later.decisions
    assert decision.kind is DecisionKind.ESCALATE and decision.incident == incident.id


def test_a_removed_check_in_a_verifying_state_does_not_break_the_core() -> None:
    old = config(rules(target("a", metric("errors", 0.05), metric("gone", 1.0)))).target("a")
    new = config(rules(target("a", metric("errors", 0.05), metric("fresh", 1.0)))).target("a")
    state = TargetState(
        target="a",
        phase=Phase.VERIFYING,
        since=T0,
        checks={
            "errors": CheckRecord(CheckState.FIRING, T0, T0, T0),
            "gone": CheckRecord(CheckState.FIRING, T0, T0, T0),
        },
        incident=Incident("a-1", T0, acted_at=T0),
        last_action_at=T0,
        verify_until=T0 + timedelta(minutes=20),
    )
    assert old.check("gone")
    now = T0 + timedelta(minutes=30)
    after = evaluate(new, _observation("a", now, errors=0.0, fresh=0.0), state, now)
    assert after.state.phase is Phase.HEALTHY and set(after.state.checks) == {"errors", "fresh"}


# ----------------------------------------------------------------------------- the Observer


def test_the_observer_keeps_readers_and_references_of_unchanged_sources() -> None:
    data = rules()
    first = Observer(config(data))
    first._references[("training", None, None, ())] = ((1,), "built")  # type: ignore[assignment]
    first._references[("live", None, None, ())] = ((1,), "built")  # type: ignore[assignment]
    data["sources"]["live"]["url"] = "/nonexistent/other"
    data["sources"]["prom2"]["timeout"] = "3s"
    second = Observer(config(data), previous=first)
    assert second.readers["training"] is first.readers["training"]
    assert second.readers["live"] is not first.readers["live"]
    assert second.metric_readers["prom"] is first.metric_readers["prom"]
    assert second.metric_readers["prom2"] is not first.metric_readers["prom2"]
    assert list(second._references) == [("training", None, None, ())]
    assert Observer(config(data)).readers["training"] is not first.readers["training"]


# ---------------------------------------------------------------------------- the file watcher


def test_the_watcher_sees_replaced_files_and_configmap_symlink_swaps(tmp_path: Path) -> None:
    # As the kubelet mounts a ConfigMap: rules.yaml -> ..data/rules.yaml, ..data -> a folder.
    for version, text in (("v1", "a: 1\n"), ("v2", "a: 2\n")):
        (tmp_path / version).mkdir()
        (tmp_path / version / "rules.yaml").write_text(text)
    os.symlink("v1", tmp_path / "..data")
    path = tmp_path / "rules.yaml"
    os.symlink("..data/rules.yaml", path)
    calls: list[Path] = []
    watcher = ConfigWatcher(path, lambda p: calls.append(p) or True, lambda: 0, None, settle=0)
    assert watcher.poll() is None and calls == []
    os.symlink("v2", tmp_path / "..data.tmp")
    os.replace(tmp_path / "..data.tmp", tmp_path / "..data")  # the kubelet's atomic swap
    assert watcher.poll() is True and calls == [path]
    assert watcher.poll() is None
    tmp = tmp_path / "new.yaml"  # kubectl cp / an editor: a new file renamed over it
    tmp.write_text("a: 3\n")
    os.replace(tmp, tmp_path / "v2" / "rules.yaml")
    assert watcher.poll() is True and len(calls) == 2
    assert watcher.poll(force=True) is True and len(calls) == 3  # SIGHUP: even unchanged
    (tmp_path / "v2" / "rules.yaml").unlink()
    assert fingerprint(path) is None
    assert watcher.poll() is True and len(calls) == 4  # gone: a reload that will fail


def test_the_watcher_reloads_on_request_without_polling(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("a: 1\n")
    reloaded = threading.Event()

    def reload(_: Path) -> bool:
        reloaded.set()
        return True

    watcher = ConfigWatcher(path, reload, lambda: 0, structlog.get_logger(), settle=0.01)
    watcher.start()
    try:
        path.write_text("a: 2\n")
        assert not reloaded.wait(0.5)  # interval 0: no polling
        watcher.request()
        assert reloaded.wait(5)
    finally:
        watcher.stop()


# ------------------------------------------------------------------------- Daemon.reload


def test_daemon_reload_swaps_targets_keeps_state_and_removes_gauges(tmp_path: Path) -> None:
    data = rules(
        target("a", metric("errors", 0.05), metric("latency", 1.0)),
        target("b"),
        state_dir=str(tmp_path / "state"),
        audit_log=str(tmp_path / "audit.jsonl"),
        reload_interval="0s",
    )
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(data))
    # Its own logger: structlog's global config (cached loggers) may be set by other tests.
    capture = structlog.testing.LogCapture()
    log = structlog.wrap_logger(
        structlog.PrintLogger(io.StringIO()),
        processors=[capture],
        wrapper_class=structlog.BoundLogger,  # not a level filter another test configured
    )
    daemon = Daemon(config(data), log, clock=lambda: T0, config_path=path)
    for runner in daemon.runners.values():
        runner.run_once()  # Prometheus at 127.0.0.1:1 refuses: error readings, gauges set
    a_state = daemon.runners["a"].state
    assert a_state is not None and set(a_state.checks) == {"errors", "latency"}

    def series(name: str, target: str) -> list[str]:
        lines = generate_latest(daemon.metrics.registry).decode().splitlines()
        return [s for s in lines if s.startswith(name + "{") and f'target="{target}"' in s]

    assert len(series("mlwatchdog_check_state", "a")) == 2
    assert series("mlwatchdog_target_state", "b")

    # Invalid: nothing changes, the gauge says so.
    path.write_text(yaml.safe_dump(data) + "bogus: 1\n")
    assert daemon.reload() is False
    assert list(daemon.runners) == ["a", "b"] and daemon.runners["a"].target.check("latency")
    text = generate_latest(daemon.metrics.registry).decode()
    assert "mlwatchdog_config_last_reload_successful 0.0" in text
    assert 'mlwatchdog_config_reloads_total{result="failure"} 1.0' in text
    last = len(path.read_text().splitlines())
    assert daemon.reload_errors == [f"{path}:{last}: bogus: unknown key 'bogus'; remove it"]
    # A broken template likewise: the running targets stay.
    template = {**target("{{m}}"), "for_each": [{"m": "c"}, {"n": "d"}]}
    path.write_text(yaml.safe_dump({**data, "targets": [*data["targets"], template]}))
    assert daemon.reload() is False
    assert list(daemon.runners) == ["a", "b"]
    item = line_of(path.read_text(), "n: d")
    assert daemon.reload_errors == [
        f"{path}:{item}: targets[2].for_each[1]: for_each[1] {{n: d}} has no m, which the entry "
        "uses ({{m}}); give every item a m"
    ]

    # Valid: a's latency check replaced by saturation, b removed, c added (by a template).
    runner_a, runner_b = daemon.runners["a"], daemon.runners["b"]
    template["for_each"] = [{"m": "c"}]
    data["targets"] = [target("a", metric("errors", 0.05), metric("saturation", 0.9)), template]
    path.write_text(yaml.safe_dump(data))
    assert daemon.reload() is True
    assert list(daemon.runners) == ["a", "c"]
    assert daemon.runners["a"] is runner_a and runner_a.target == daemon.config.target("a")
    assert runner_a.observer is daemon.observer and runner_b.retired
    assert runner_a.state is not None and set(runner_a.state.checks) == {"errors", "saturation"}
    assert runner_a.state.checks["errors"] == a_state.checks["errors"]
    assert series("mlwatchdog_target_state", "b") == []
    assert [s for s in series("mlwatchdog_check_state", "a") if "latency" in s] == []
    assert series("mlwatchdog_check_state", "a")  # errors' series stays
    text = generate_latest(daemon.metrics.registry).decode()
    assert "mlwatchdog_config_last_reload_successful 1.0" in text
    assert 'mlwatchdog_config_reloads_total{result="success"} 1.0' in text
    assert (tmp_path / "state" / "b.json").exists()
    assert runner_b.run_once() is None  # a removed target is evaluated no more
    assert daemon.runners["c"].run_once() is not None
    assert daemon.scheduler.get_job("c") is not None and daemon.scheduler.get_job("b") is None
    assert daemon.reload() is True and daemon.reload_errors == []  # unchanged: a no-op

    # A restart-only setting: named in a warning, the running value kept, the rest applied.
    data["daemon"].update(http={"port": 9999}, jitter="7s")
    path.write_text(yaml.safe_dump(data))
    capture.entries.clear()
    assert daemon.reload() is True
    logs = capture.entries
    (warning,) = [e for e in logs if e["event"].startswith("config change needs a restart")]
    assert warning["key"] == "daemon.http.port" and warning["log_level"] == "warning"
    (reloaded,) = [e for e in logs if e["event"] == "config reloaded"]
    assert reloaded["settings"] == ["daemon.jitter"] and reloaded["changed"] == []
    assert daemon.config.daemon.http.port == 8080
    assert daemon.config.daemon.jitter == timedelta(seconds=7)
    assert daemon.reload(tmp_path / "missing.yaml") is False
    assert Daemon(config(data), structlog.get_logger()).reload() is False  # no file to reload


def now() -> datetime:
    return T0


class BlockingObserver:
    """Observes metric readings; the first observation waits until `release` is set."""

    def __init__(self) -> None:
        self.reference_builds = 0
        self.entered = threading.Event()
        self.release = threading.Event()
        self.seen: list[Target] = []

    def observe(self, target: Target, now: datetime, serving: Any = None) -> Observation:
        self.seen.append(target)
        self.entered.set()
        assert self.release.wait(10)
        return _observation(target.name, now, errors=0.2, latency=2.0, saturation=0.95)


def test_a_running_evaluation_finishes_with_the_definition_it_started_with(
    tmp_path: Path,
) -> None:
    old = config(rules(target("a", metric("errors", 0.05), metric("latency", 1.0)))).target("a")
    new = config(rules(target("a", metric("errors", 0.05), metric("saturation", 0.9)))).target("a")
    observer: Any = BlockingObserver()  # for the Observer; offline dry-run: nothing acts here
    metrics, log = DaemonMetrics(), structlog.get_logger()
    actuator = DryRunActuator(log)
    runner = TargetRunner(old, observer, actuator, StateStore(tmp_path, log), metrics, log, now)
    results: list[Any] = []
    running = threading.Thread(target=lambda: results.append(runner.run_once()))
    running.start()
    assert observer.entered.wait(10)
    runner.rebind(new, observer)  # returns at once: applied once the evaluation ends
    assert runner.target is old
    observer.release.set()
    running.join(10)
    (evaluation,) = results
    assert [r.check for r in evaluation.results] == ["errors", "latency"]  # all old, no mix
    assert observer.seen == [old] and runner.target is new
    assert runner.state is not None and set(runner.state.checks) == {"errors", "saturation"}
    labels = {s.labels["check"] for f in metrics.check_state.collect() for s in f.samples}
    assert labels == {"errors"}  # latency's series went once the evaluation had set it

    # Retired while evaluating: the evaluation ends, then the gauges go and stay gone.
    observer.entered.clear()
    observer.release.clear()
    running = threading.Thread(target=runner.run_once)
    running.start()
    assert observer.entered.wait(10)
    runner.retire()
    assert not runner.retired
    observer.release.set()
    running.join(10)
    assert runner.retired and runner.run_once() is None
    assert [s for f in metrics.target_phase.collect() for s in f.samples] == []
    assert [s for f in metrics.check_state.collect() for s in f.samples] == []
